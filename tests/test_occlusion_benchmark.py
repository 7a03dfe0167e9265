"""mfer occlusion-benchmark: the bootstrap maths by hand, the spec's checks, and the verb end to end on SynthAffect
and on RAF-DB's fake raw files (any prepared face data set with an occlusion split)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from multimodal_fer.benchmarking.run_lookup import RunLookupError
from multimodal_fer.cli import main
from multimodal_fer.datamodules import SynthAffectDataModule
from multimodal_fer.errors import CorruptCacheError, DataError
from multimodal_fer.evaluation.occlusion_evaluation import check_recogniser, compact_seed
from multimodal_fer.evaluation.occlusion_inputs import open_occlusion_split
from multimodal_fer.evaluation.occlusion_spec import SpecError, load_spec, parse_spec
from multimodal_fer.evaluation.occlusion_statistics import (
    difference_entry,
    draw_weights,
    recovery_entry,
    recovery_share,
    score_entry,
    seed_values,
)
from multimodal_fer.evaluation.subject_bootstrap import SamplePredictions
from multimodal_fer.preprocessing.cache import CacheReader
from multimodal_fer.types import LabelSpace

from conftest import CONFIGS, TINY_DATA, tiny_data_args
from data.rafdb.generate import write_fake_rafdb
from restoration_fakes import restorer_run

QUICKSTART = str(CONFIGS / "quickstart.yaml")
RAFDB = str(CONFIGS / "data" / "rafdb.yaml")
SPACE = LabelSpace(expressions=("a", "b"))


# ------------------------------------------------------------------------------------------------ bootstrap maths
def _predictions(correct: list[bool], subject: list[int]) -> SamplePredictions:
    """Two-class predictions: sample i is labelled i % 2 and predicted right where ``correct[i]``."""
    target = np.arange(len(correct)) % 2
    predicted = np.where(correct, target, 1 - target)
    logits = np.eye(2)[predicted]
    return SamplePredictions(np.arange(len(correct)), np.asarray(subject), {"expr": target}, {"expr": logits}, SPACE)


def test_recovery_share_is_computed_per_draw_from_seed_means() -> None:
    # two seeds, a test set (row 0) and two draws (rows 1, 2)
    clean = np.array([[0.8, 0.9, 0.7], [0.6, 0.7, 0.7]])
    occluded = np.array([[0.4, 0.5, 0.7], [0.2, 0.3, 0.7]])
    restored = np.array([[0.5, 0.7, 0.6], [0.3, 0.5, 0.6]])
    share = recovery_share(restored, occluded, clean)
    # row 0: (0.4 − 0.3) / (0.7 − 0.3) = 0.25; row 1: (0.6 − 0.4) / (0.8 − 0.4) = 0.5; row 2: cost 0 → undefined
    assert share[:2] == pytest.approx([0.25, 0.5])
    assert np.isnan(share[2])
    entry = recovery_entry(restored, occluded, clean, level=0.95)
    assert entry["share"] == pytest.approx(0.25) and entry["undefined_draws"] == 1
    assert entry["low"] == entry["high"] == pytest.approx(0.5)  # the one defined draw
    assert entry["per_seed"] == pytest.approx([0.25, 0.25])


def test_scores_interval_contains_the_point_and_identical_pipelines_differ_by_exactly_zero() -> None:
    subject = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    seeds = [
        _predictions([True, True, False, True, True, False, True, True, False, False, True, True], subject),
        _predictions([True, False, True, True, True, True, False, True, True, False, True, False], subject),
    ]
    weights = draw_weights(np.asarray(subject), resamples=400, seed=3)
    assert weights.shape == (401, 12) and np.all(weights[0] == 1)
    assert np.array_equal(weights[1:, 0::2], weights[1:, 1::2])  # a subject's samples are drawn together
    values = seed_values(seeds, "expr/f1_macro", weights)
    assert values.shape == (2, 401)
    entry = score_entry(values, level=0.95)
    assert entry["mean"] == pytest.approx(values[:, 0].mean())
    assert entry["std"] == pytest.approx(np.std(values[:, 0], ddof=1))
    assert entry["low"] <= entry["mean"] <= entry["high"] and entry["low"] < entry["high"]
    same = difference_entry(values, values.copy(), level=0.95)
    assert same["difference"] == 0.0 and same["low"] == 0.0 and same["high"] == 0.0 and same["wins"] == 0.0
    # one kind's rows get the same draw, restricted to them
    rows = np.array([0, 2, 4, 6, 8, 10])
    by_hand = [_f1_of(s, rows) for s in seeds]
    assert seed_values(seeds, "expr/f1_macro", weights, rows)[:, 0] == pytest.approx(by_hand)


def _f1_of(predictions: SamplePredictions, rows: np.ndarray) -> float:
    target, predicted = predictions.targets["expr"][rows], predictions.outputs["expr"][rows].argmax(1)
    scores = []
    for c in (0, 1):
        tp = np.sum((target == c) & (predicted == c))
        denominator = np.sum(target == c) + np.sum(predicted == c)
        if denominator:
            scores.append(2 * tp / denominator)
    return float(np.mean(scores))


def test_a_candidate_better_on_every_subject_wins_every_draw() -> None:
    subject = [0, 0, 1, 1, 2, 2]
    weak = _predictions([True, False, True, False, False, True], subject)
    strong = _predictions([True] * 6, subject)
    weights = draw_weights(np.asarray(subject), 200, 0)
    entry = difference_entry(
        seed_values([strong], "expr/f1_macro", weights), seed_values([weak], "expr/f1_macro", weights), 0.95
    )
    assert entry["difference"] > 0 and entry["wins"] == 1.0 and entry["low"] > 0


# -------------------------------------------------------------------------------------------------------- the spec
def test_the_spec_refuses_unknown_keys_pipelines_and_references(tmp_path: Path) -> None:
    base = {
        "split": "split",
        "recognisers": [
            {"label": "R"},
            {"label": "R+mask", "conditions": ["clean", "occluded"], "restores": True, "reference": "R"},
        ],
        "seeds": [{"seed": 0, "runs": {"R": "a", "R+mask": "b"}, "restorer": "c"}],
        "fills": ["mirror"],
    }
    spec = parse_spec(base, tmp_path)
    assert spec.split == tmp_path / "split" and spec.seeds[0].runs["R"] == tmp_path / "a"
    assert "R restored_mirror_true_mask" in spec.pipelines()
    assert [(r.pipeline, r.reference) for r in spec.recoveries] == [
        ("R restored", "R"), ("R restored_true_mask", "R"), ("R restored_mirror", "R"),
        ("R restored_mirror_true_mask", "R"), ("R+mask occluded", "R"),
    ]  # fmt: skip
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['sedes'\]"):
        parse_spec({**base, "sedes": []}, tmp_path)
    with pytest.raises(SpecError, match="not one of the evaluated pipelines"):
        parse_spec({**base, "comparisons": [{"candidate": "R restored", "baseline": "R+mask restored"}]}, tmp_path)
    with pytest.raises(SpecError, match="name as reference another recogniser"):
        parse_spec({**base, "recognisers": [{"label": "R"}, {"label": "R+mask", "restores": True}]}, tmp_path)
    with pytest.raises(SpecError, match=r"missing \['R\+mask'\]"):
        parse_spec({**base, "seeds": [{"runs": {"R": "a"}}]}, tmp_path)
    with pytest.raises(SpecError, match="trivial fills"):
        parse_spec({**base, "fills": ["blur"]}, tmp_path)
    selective = parse_spec(
        {**base, "recognisers": [{"label": "R", "max_occluded_fraction": 0.3}, base["recognisers"][1]]}
    )
    assert selective.recognisers[0].max_occluded_fraction == 0.3 and "R restored_selective" in selective.pipelines()
    assert ("R restored_selective", "R") in [(r.pipeline, r.reference) for r in selective.recoveries]
    assert selective.to_dict()["recognisers"][0]["max_occluded_fraction"] == 0.3
    for entry in (
        {"label": "R", "conditions": ["occluded", "restored_selective"]},  # the condition without its share
        {"label": "R", "conditions": ["occluded", "restored"], "max_occluded_fraction": 0.3},  # the share alone
    ):
        with pytest.raises(SpecError, match="restored_selective and max_occluded_fraction go together"):
            parse_spec({**base, "recognisers": [entry, base["recognisers"][1]]}, tmp_path)
    with pytest.raises(SpecError, match=r"max_occluded_fraction must be a share in \(0, 1\]"):
        parse_spec({**base, "recognisers": [{"label": "R", "max_occluded_fraction": 1.5}, base["recognisers"][1]]})


def test_recognisers_of_another_size_or_label_space_are_refused(tmp_path: Path) -> None:
    class Model(torch.nn.Module):
        def __init__(self, space: LabelSpace) -> None:
            super().__init__()
            self.encoders = torch.nn.ModuleDict({"face": torch.nn.Identity()})
            self.label_space = space

    split = type("Split", (), {"root": tmp_path, "image_size": 32, "label_space": SPACE})()
    check_recogniser("R", tmp_path / "best.ckpt", Model(SPACE), 32, split)
    with pytest.raises(DataError, match="trained on 48-pixel faces but the occlusion split .* 32-pixel"):
        check_recogniser("R", tmp_path / "best.ckpt", Model(SPACE), 48, split)
    with pytest.raises(DataError, match="evaluate it on an occlusion split of the data set it was trained on"):
        check_recogniser("R", tmp_path / "best.ckpt", Model(LabelSpace(expressions=("x", "y", "z"))), 32, split)


# ------------------------------------------------------------------------------------------ R-aug's training faces
def test_clean_faces_with_online_occlusion_occlude_about_half_and_leave_the_rest_clean(tiny_cache: Path) -> None:
    module = SynthAffectDataModule(
        root=str(tiny_cache), **TINY_DATA, modalities=["face"], clean_faces=True, online_occlusion_probability=0.5
    )
    dataset = module.dataset("train")
    batch = dataset.__getitems__(list(range(len(dataset))))
    clean = np.asarray(CacheReader(tiny_cache).array("face_clean"))[module.splits["train"]]
    occluded = batch["occlusion_mask"].bool().flatten(1).any(dim=1).numpy()
    assert 0 < occluded.sum() < occluded.size  # 8 faces, probability 0.5
    assert np.array_equal(batch["face"].numpy()[~occluded], clean[~occluded])  # the others: the clean renders
    assert (batch["occlusion_type"].numpy()[~occluded] == -1).all() and (
        batch["occlusion_type"].numpy()[occluded] >= 0
    ).all()
    visible = ~batch["occlusion_mask"].bool().expand_as(batch["face"]).numpy()
    assert np.array_equal(batch["face"].numpy()[visible], clean[visible])
    with pytest.raises(ValueError, match="restoration_targets"):
        SynthAffectDataModule(root=str(tiny_cache), clean_faces=True, restoration_targets=True)


# ---------------------------------------------------------------------------------------------------- end to end
def _fit(root: Path, name: str, arguments: list[str]) -> Path:
    run = [f"--run.root={root}", "--run.experiment=seed0", f"--run.name={name}", "--trainer.logger=false"]
    settings = ["--trainer.accelerator=cpu", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]
    main(["fit", *arguments, *run, *settings, "--data.init_args.modalities=[face]"])
    return root / "seed0" / name


def _write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_verb_on_synthaffect_and_its_clear_errors(tiny_cache: Path, tmp_path: Path) -> None:
    split = tmp_path / "occluded"
    main(["occlusion-split", "--config", QUICKSTART, *tiny_data_args(tiny_cache), "--output", str(split)])
    recogniser = _fit(tmp_path / "runs", "R", ["--config", QUICKSTART, *tiny_data_args(tiny_cache)])
    restorer = restorer_run(tmp_path / "runs" / "seed0" / "restoration", 32)
    spec = {
        "split": str(split),
        "fills": ["mean_colour"],
        "resamples": 50,
        "recognisers": [
            {"label": "R"},
            {"label": "R-other", "conditions": ["clean", "occluded"]},
            {"label": "R+self", "conditions": ["clean", "occluded"], "restores": True, "reference": "R"},
            {
                "label": "R-sel",
                "conditions": ["occluded", "restored", "restored_selective"],
                "max_occluded_fraction": 0.3,
            },
        ],
        "seeds": [
            {
                "seed": s,
                "restorer": str(restorer),
                "runs": {
                    "R": str(recogniser),
                    "R-other": str(recogniser),
                    "R+self": str(recogniser),
                    "R-sel": str(recogniser),
                },
            }
            for s in (0, 1)
        ],
        "comparisons": [
            {"candidate": "R restored", "baseline": "R-other occluded"},
            {"candidate": "R occluded", "baseline": "R-other occluded"},
        ],
    }
    out = tmp_path / "bench"
    main(["occlusion-benchmark", str(_write_spec(tmp_path / "spec.yaml", spec)), "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"] == ["expr/f1_macro", "au/f1_mean", "va/ccc_valence", "va/ccc_arousal"]
    assert summary["faces"]["all"] == 2 * 4 * 7 and summary["units"] == 2  # 2 test subjects × 4 faces × 7 kinds
    assert "2 test subjects" in summary["unit_note"]
    f1 = summary["results"]["expr/f1_macro"]
    scores = f1["all"]["scores"]
    assert set(scores) == {
        "R clean", "R occluded", "R restored", "R restored_true_mask", "R restored_mean_colour",
        "R restored_mean_colour_true_mask", "R clean_restored", "R-other clean", "R-other occluded", "R+self clean",
        "R+self occluded", "R-sel occluded", "R-sel restored", "R-sel restored_mean_colour", "R-sel restored_selective",
    }  # fmt: skip
    for entry in scores.values():
        assert entry["low"] <= entry["mean"] <= entry["high"] and entry["std"] == 0.0  # both seeds: the same run
    same = f1["all"]["comparisons"]["R occluded vs R-other occluded"]
    assert same["difference"] == same["low"] == same["high"] == 0.0  # the same model on the same faces
    assert set(f1["hand"]["scores"]) == set(scores) and f1["hand"]["scores"]["R clean"]["per_seed"][0] >= 0
    recovery = f1["all"]["recoveries"]["R+self occluded"]
    assert recovery["reference"] == "R" and (recovery["share"] == 0.0 or np.isnan(recovery["share"]))
    assert "restoration/psnr_occluded" in summary["restoration"]["all"]
    assert "fill/mean_colour/restoration/psnr_occluded" in summary["restoration"]["scarf"]
    saved = np.load(out / "predictions-seed1.npz")
    assert saved["p0_output_expr"].shape == (56, 8) and saved["subject"].shape == (56,)
    text = (out / "summary.md").read_text()
    assert "Paired differences" in text and "per occlusion kind, R+self" in text

    # Selective restoration: the scan assembles each share's pipeline from 'occluded' and 'restored'; run for real
    # (restored_selective, the restorer's rule at 0.3) it scores what the scan assembled at 0.3.
    scan = summary["selective"]
    assert set(scan["recognisers"]) == {"R", "R-sel"} and scan["fractions"][-1] == 1.0
    assert saved["predicted_share"].shape == (56,) and 0.0 <= saved["predicted_share"].min()
    at = scan["fractions"].index(0.3)
    assert scan["recognisers"]["R-sel"]["scores"][at] == pytest.approx(scores["R-sel restored_selective"]["mean"])
    assert scan["recognisers"]["R"]["scores"][-1] == pytest.approx(scores["R restored"]["mean"])
    assert scan["restored_faces"][-1] == pytest.approx(1.0)
    assert "## Selective restoration" in text and "max_occluded_fraction" in text

    evaluated = summary["evaluated"]["1"]  # where each seed's figures come from, kept in its predictions file
    assert "occlusion-benchmark" in evaluated["command"] and evaluated["machine"]["cpu_count"] >= 1
    assert "sha" in evaluated["git"] and summary["summarised"]["time"]
    assert "Seed 1 evaluated by `" in text and "Summarised by `" in text

    (out / "summary.json").unlink()
    main(["occlusion-benchmark", str(tmp_path / "spec.yaml"), "--out", str(out), "--report-only"])
    rebuilt = json.loads((out / "summary.json").read_text())
    assert rebuilt.pop("summarised")["command"].endswith("--report-only")
    assert rebuilt == {k: v for k, v in summary.items() if k != "summarised"}  # rebuilt from the predictions alone

    compact = tmp_path / "compact"  # decisions only (expression class, AU on/off, affect): the same tables
    for seed in (0, 1):
        compact_seed(out / f"predictions-seed{seed}.npz", compact / f"predictions-seed{seed}.npz")
    main(["occlusion-benchmark", str(tmp_path / "spec.yaml"), "--out", str(compact), "--report-only"])
    from_decisions = json.loads((compact / "summary.json").read_text())
    assert {k: v for k, v in from_decisions.items() if k != "summarised"} == rebuilt
    kept = np.load(compact / "predictions-seed1.npz")
    assert "p0_output_expr" not in kept and kept["p0_class_expr"].dtype == np.uint8
    assert kept["p0_on_au"].dtype == bool and kept["p0_output_va"].dtype == saved["p0_output_va"].dtype
    assert np.array_equal(kept["p0_class_expr"], saved["p0_output_expr"].argmax(axis=1))

    with pytest.raises(DataError, match="not an occlusion split.*mfer occlusion-split"):
        main(
            [
                "occlusion-benchmark",
                str(_write_spec(tmp_path / "s1.yaml", {**spec, "split": str(tiny_cache)})),
                "--out",
                str(tmp_path / "x"),
            ]
        )
    unfinished = tmp_path / "runs" / "seed0" / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "checkpoints/last.ckpt").write_bytes(b"weights")
    (unfinished / "run.json").write_text("{}")
    broken = {**spec, "seeds": [{**spec["seeds"][0], "runs": {**spec["seeds"][0]["runs"], "R-other": str(unfinished)}}]}
    with pytest.raises(RunLookupError, match="has not ended.*--ckpt_path last"):
        main(["occlusion-benchmark", str(_write_spec(tmp_path / "s2.yaml", broken)), "--out", str(tmp_path / "x")])
    small = restorer_run(tmp_path / "runs" / "seed0" / "small_restorer", 16)
    other = {**spec, "seeds": [{**spec["seeds"][0], "restorer": str(small)}]}
    with pytest.raises(DataError, match="trained on 16-pixel faces.*train a restorer at 32 pixels"):
        main(["occlusion-benchmark", str(_write_spec(tmp_path / "s3.yaml", other)), "--out", str(tmp_path / "x")])
    with pytest.raises(CorruptCacheError):
        open_occlusion_split(tmp_path / "nowhere")
    assert load_spec(tmp_path / "spec.yaml").resamples == 50


def test_the_verb_runs_on_a_prepared_real_data_set_rafdb(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_fake_rafdb(raw)
    cache = tmp_path / "rafdb"
    data = [
        "--config", QUICKSTART, "--config", RAFDB, f"--data.init_args.raw_root={raw}", f"--data.init_args.root={cache}",
        "--data.init_args.preprocessing.image_size=32", "--data.init_args.num_workers=0",
        "--data.init_args.preparation_workers=0", "--data.init_args.batch_size=4",
    ]  # fmt: skip
    main(["prepare", *data])
    main(["occlusion-split", *data, "--split", "test", "--types", "sunglasses,medical_mask,scarf"])
    split = Path(f"{cache}_occluded_test")
    recogniser = _fit(tmp_path / "runs", "R", data)
    restorer = restorer_run(tmp_path / "runs" / "seed0" / "restoration", 32)
    spec = {
        "split": str(split),
        "resamples": 30,
        "recognisers": [{"label": "R"}],
        "seeds": [{"seed": 0, "restorer": str(restorer), "runs": {"R": str(recogniser)}}],
        "comparisons": [{"candidate": "R restored", "baseline": "R occluded"}],
    }
    out = tmp_path / "bench"
    main(["occlusion-benchmark", str(_write_spec(tmp_path / "spec.json", spec)), "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"] == ["expr/f1_macro"]  # RAF-DB labels expressions only
    assert summary["faces"] == {"all": 9, "sunglasses": 3, "medical_mask": 3, "scarf": 3}
    assert summary["units"] == 3 and "Every source image is its own subject" in summary["unit_note"]
    entry = summary["results"]["expr/f1_macro"]["all"]["scores"]["R restored"]
    assert entry["low"] <= entry["mean"] <= entry["high"]
    assert "its own subject" in (out / "summary.md").read_text()


def test_a_checkout_that_moves_during_the_evaluation_is_named_beside_the_commit_the_code_came_from(monkeypatch):
    from multimodal_fer.callbacks import results_writer
    from multimodal_fer.evaluation.occlusion_benchmark import with_write_time
    from multimodal_fer.evaluation.occlusion_tables import _describe

    started = {"command": "mfer occlusion-benchmark s.yaml", "git": {"sha": "a" * 40, "dirty": False}, "machine": {}}
    monkeypatch.setattr(results_writer, "git_revision", lambda: {"sha": "a" * 40, "dirty": False})
    unchanged = with_write_time(started)
    assert "git_at_write" not in unchanged and unchanged["written"] and unchanged["git"] == started["git"]
    assert "checked out by the time" not in _describe(unchanged)

    monkeypatch.setattr(results_writer, "git_revision", lambda: {"sha": "b" * 40, "dirty": True})
    moved = with_write_time(started)
    assert moved["git"] == started["git"] and moved["git_at_write"]["sha"] == "b" * 40
    assert "at commit aaaaaaa (checked out by the time it wrote: bbbbbbb (uncommitted changes))" in _describe(moved)
