"""Linear probes on fixed features (``mfer probe``): probes on synthetic features, run look-up, tables, a real suite."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from multimodal_fer.errors import MissingDependencyError
from multimodal_fer.evaluation.feature_probes import (
    ProbeError,
    SplitFeatures,
    default_subsets,
    probe_subset,
    score_keys,
)
from multimodal_fer.evaluation.probe_features import merge_modalities, single_modality_runs
from multimodal_fer.evaluation.probe_report import markdown, parse_subset, summarise, write_tables

from conftest import CONFIGS, TINY_DATA

CLASSES = 4


def _split(rng: np.random.Generator, n: int, start: int) -> SplitFeatures:
    """``face`` features hold the class and valence; ``physio`` features hold arousal only; ``noise`` holds nothing."""
    expr = rng.integers(0, CLASSES, n)
    face = 3.0 * np.eye(CLASSES)[expr] + rng.normal(size=(n, CLASSES))
    face = np.concatenate([face, rng.normal(size=(n, 4))], axis=1)  # (n, 8)
    physio = rng.normal(size=(n, 6))
    valence = face[:, 4] - 0.5 * face[:, 5]  # linear in the face's features
    arousal = 0.8 * physio[:, 0] + 0.3 * physio[:, 1]  # linear in physiology's
    return SplitFeatures(
        features={"face": face, "physio": physio, "noise": rng.normal(size=(n, 8))},
        expr=expr,
        va=np.stack([valence, arousal], axis=1),
        index=np.arange(start, start + n),
        dimensions=("valence", "arousal"),
        num_expressions=CLASSES,
    )


@pytest.fixture(scope="module")
def splits() -> dict[str, SplitFeatures]:
    rng = np.random.default_rng(0)
    return {"train": _split(rng, 240, 0), "val": _split(rng, 80, 240), "test": _split(rng, 120, 320)}


def test_a_probe_on_informative_features_beats_one_on_noise(splits: dict[str, SplitFeatures]) -> None:
    face = probe_subset(splits, ("face",))
    noise = probe_subset(splits, ("noise",))
    assert list(face) == score_keys(("valence", "arousal"), CLASSES) == ["expr_f1", "ccc_valence", "ccc_arousal"]
    assert face["expr_f1"] > 0.9 and noise["expr_f1"] < 0.45  # 4 classes: chance is about 0.25
    assert face["ccc_valence"] > 0.99  # ridge on a noiseless linear target
    assert abs(noise["ccc_valence"]) < 0.3 and abs(face["ccc_arousal"]) < 0.3


def test_concatenated_features_carry_what_each_modality_carries(splits: dict[str, SplitFeatures]) -> None:
    both = probe_subset(splits, ("face", "physio"))
    physio = probe_subset(splits, ("physio",))
    assert physio["ccc_arousal"] > 0.99 and physio["expr_f1"] < 0.45
    assert both["ccc_arousal"] > 0.98 and both["ccc_valence"] > 0.98 and both["expr_f1"] > 0.9


def test_unlabeled_entries_are_left_out_of_fits_and_scores(splits: dict[str, SplitFeatures]) -> None:
    holes = {}
    for name, split in splits.items():
        expr, va = split.expr.copy(), split.va.copy()
        expr[::3] = -1
        va[1::4, 0] = np.nan
        holes[name] = SplitFeatures(split.features, expr, va, split.index, split.dimensions, split.num_expressions)
    scores = probe_subset(holes, ("face", "physio"))
    assert all(math.isfinite(v) for v in scores.values())
    assert scores["ccc_valence"] > 0.98 and scores["expr_f1"] > 0.9
    test = holes["test"]
    nothing = np.full_like(test.expr, -1)
    unlabeled = SplitFeatures(test.features, nothing, test.va * np.nan, test.index, num_expressions=CLASSES)
    scores = probe_subset({**holes, "test": unlabeled}, ("face",))
    assert all(math.isnan(v) for v in scores.values())  # nothing labeled to score: undefined, not 0


def test_bad_probe_inputs_are_refused_by_name(splits: dict[str, SplitFeatures]) -> None:
    held = r"\(features of \['face', 'noise', 'physio'\]\)"
    with pytest.raises(ProbeError, match=r"No features of \['depth'\] to probe " + held):
        probe_subset(splits, ("depth",))
    with pytest.raises(ProbeError, match="empty modality subset"):
        probe_subset(splits, ())
    with pytest.raises(ProbeError, match=r"\['val'\] are missing"):
        probe_subset({"train": splits["train"], "test": splits["test"]}, ("face",))
    train = splits["train"]
    with pytest.raises(ProbeError, match="one row per sample"):
        SplitFeatures({"face": train.features["face"][:-1]}, train.expr, train.va, train.index)
    with pytest.raises(ProbeError, match=r"expected \(N, 2\)"):
        SplitFeatures({}, train.expr, train.va[:, :1], train.index)
    with pytest.raises(ProbeError, match="face\\+audio"):
        parse_subset("face++audio")
    assert parse_subset("audio+physio") == ("audio", "physio")


def test_a_missing_scikit_learn_names_the_extra_that_brings_it(
    splits: dict[str, SplitFeatures], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(MissingDependencyError, match=r"extra 'dev'.*scikit-learn=="):
        probe_subset(splits, ("face",))


def test_default_subsets_are_each_modality_the_named_groups_and_all() -> None:
    every = ("face", "audio", "depth", "physio")
    assert default_subsets(every) == [
        ("face",),
        ("audio",),
        ("depth",),
        ("physio",),
        ("audio", "physio"),
        ("face", "audio", "depth"),
        every,
    ]
    assert default_subsets(("audio", "physio")) == [("audio",), ("physio",), ("audio", "physio")]
    assert default_subsets(("face",)) == [("face",)]


def test_summary_gives_mean_std_and_the_gain_over_the_best_single_per_seed(tmp_path: Path) -> None:
    subsets = [("audio",), ("physio",), ("audio", "physio")]
    per_seed = {
        0: {"audio": {"ccc_arousal": 0.70}, "physio": {"ccc_arousal": 0.50}, "audio+physio": {"ccc_arousal": 0.75}},
        1: {"audio": {"ccc_arousal": 0.60}, "physio": {"ccc_arousal": 0.65}, "audio+physio": {"ccc_arousal": 0.62}},
        2: {"audio": {"ccc_arousal": 0.80}, "physio": {"ccc_arousal": 0.40}, "audio+physio": {"ccc_arousal": math.nan}},
    }
    summary = summarise(per_seed, subsets, ["ccc_arousal"])
    audio = summary["subsets"]["audio"]["ccc_arousal"]
    assert audio["mean"] == pytest.approx(0.70) and audio["std"] == pytest.approx(0.10) and audio["n"] == 3
    fused = summary["subsets"]["audio+physio"]["ccc_arousal"]
    assert fused["n"] == 2 and fused["per_seed"]["2"] is None  # an undefined score is left out, not averaged
    gain = summary["gain"]
    assert gain["subset"] == "audio+physio" and gain["over"] == ["audio", "physio"]
    entry = gain["scores"]["ccc_arousal"]
    assert entry["per_seed"]["0"] == pytest.approx(0.05) and entry["per_seed"]["1"] == pytest.approx(-0.03)
    assert entry["seeds_higher"] == 1 and entry["n"] == 2
    table = markdown(summary)
    assert "| audio | 0.700 ± 0.100 |" in table
    assert "| CCC arousal | 0.010 ± 0.057 | 1/3 |" in table
    text, data = write_tables(summary, tmp_path / "out")
    assert text.read_text() == table
    assert "NaN" not in data.read_text() and json.loads(data.read_text())["seeds"] == [0, 1, 2]
    single = summarise({0: per_seed[0]}, [("audio",)], ["ccc_arousal"])
    assert "gain" not in single and "| audio | 0.700 |" in markdown(single)  # one seed: no std


def _fake_run(suite: Path, name: str, modalities: list[str], seed: int) -> Path:
    folder = suite / name
    folder.mkdir(parents=True)
    config = {"seed_everything": seed, "data": {"init_args": {"modalities": modalities}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "run.json").write_text(json.dumps({"seed": seed}))
    return folder


def test_single_modality_runs_are_found_by_seed_and_modality(tmp_path: Path) -> None:
    suite = tmp_path / "fusion-singles"
    for index, (modality, seed) in enumerate((m, s) for m in ("physio", "face") for s in (0, 1)):
        _fake_run(suite, f"{index:03d}-{modality}-seed={seed}", [modality], seed)
    _fake_run(suite, "004-both-seed=0", ["face", "physio"], 0)  # a fused run: not a probe's input
    (suite / "suite.json").write_text("{}")
    (suite / "latest").symlink_to(suite / "003-face-seed=1")  # the experiment's newest run, not another run
    runs = single_modality_runs(suite)
    assert list(runs) == [0, 1] and list(runs[0]) == ["face", "physio"]  # canonical modality order
    assert runs[1]["physio"].name == "001-physio-seed=1"
    assert list(single_modality_runs(suite, cells="*-seed=1")) == [1]

    _fake_run(suite, "005-face-long-seed=0", ["face"], 0)
    with pytest.raises(ProbeError, match=r"Two face runs of seed 0: 002-face-seed=0 and 005-face-long-seed=0.*--cells"):
        single_modality_runs(suite)
    assert single_modality_runs(suite, cells="00[0-3]-*")[0]["face"].name == "002-face-seed=0"
    with pytest.raises(ProbeError, match="holds no single-modality run.*fusion_singles.yaml.*loosen --cells"):
        single_modality_runs(suite, cells="nothing-*")
    with pytest.raises(ProbeError, match="is not a folder"):
        single_modality_runs(tmp_path / "missing")


def test_runs_that_read_different_samples_are_not_merged(splits: dict[str, SplitFeatures]) -> None:
    def only(modality: str, shift: int = 0) -> dict[str, SplitFeatures]:
        return {
            name: SplitFeatures(
                {modality: s.features[modality]}, s.expr, s.va, s.index + shift, s.dimensions, s.num_expressions
            )
            for name, s in splits.items()
        }

    merged = merge_modalities({"face": only("face"), "physio": only("physio")})
    assert sorted(merged["test"].features) == ["face", "physio"]
    assert probe_subset(merged, ("face", "physio")) == probe_subset(splits, ("face", "physio"))
    with pytest.raises(ProbeError, match="physio run and the face run read different train samples"):
        merge_modalities({"face": only("face"), "physio": only("physio", shift=1)})


@pytest.mark.slow  # two 1-epoch fits with their tests, then their features and probes
def test_probe_verb_on_a_real_suite_of_single_modality_runs(tmp_path: Path, tiny_cache: Path) -> None:
    from multimodal_fer.benchmarking import load_suite, run_suite
    from multimodal_fer.cli import main
    from multimodal_fer.evaluation.probe_features import extract_features

    data = {f"data.init_args.{key}": value for key, value in {**TINY_DATA, "root": str(tiny_cache)}.items()}
    document = {
        "name": "singles",
        "base": [str(CONFIGS / "quickstart.yaml"), str(CONFIGS / "overlays" / "fusion_concat.yaml")],
        "overrides": {**data, "trainer.max_epochs": 1, "trainer.logger": False, "trainer.accelerator": "cpu"},
        "grid": {
            "overrides": [
                {"name": "audio", "data.init_args.modalities": ["audio"]},
                {"name": "physio", "data.init_args.modalities": ["physio"]},
            ],
            "seed_everything": [0],
        },
    }
    path = tmp_path / "singles.yaml"
    path.write_text(yaml.safe_dump(document))
    outcomes = run_suite(load_suite(path), tmp_path / "runs", entry_point=main, report=lambda line: None)
    assert [o.status for o in outcomes] == ["done", "done"], [o.error for o in outcomes]
    suite = tmp_path / "runs" / "singles"

    features = extract_features(suite / "000-audio-seed=0")
    train_subjects = TINY_DATA["num_subjects"] - TINY_DATA["val_subjects"] - TINY_DATA["test_subjects"]
    assert features["train"].features["audio"].shape == (train_subjects * TINY_DATA["samples_per_subject"], 128)
    assert np.isfinite(features["test"].features["audio"]).all()

    main(["probe", str(suite), "--out", str(tmp_path / "probes"), "--data.init_args.num_workers=0"])
    summary = json.loads((tmp_path / "probes" / "probes.json").read_text())
    assert list(summary["subsets"]) == ["audio", "physio", "audio+physio"]
    assert summary["runs"] == {"0": {"audio": "000-audio-seed=0", "physio": "001-physio-seed=0"}}
    assert summary["scores"] == ["expr_f1", "ccc_valence", "ccc_arousal"]
    assert summary["gain"]["subset"] == "audio+physio"
    table = (tmp_path / "probes" / "probes.md").read_text()
    assert "| audio+physio |" in table and "audio+physio − best single" in table
    with pytest.raises(ProbeError, match="Subset face needs runs of modalities the suite lacks"):
        main(["probe", str(suite), "--subsets", "face"])
