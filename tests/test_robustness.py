"""Test-time corruptions: each kind degrades its modality only, the same way every run; suites and reports use them."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from test_report import write_results

from multimodal_fer.benchmarking import SuiteError, load_suite, run_suite
from multimodal_fer.benchmarking.run_lookup import test_condition_name as condition_name  # not a test
from multimodal_fer.benchmarking.runner import corruption_sets, missing_results
from multimodal_fer.cli import main
from multimodal_fer.corruption_conditions import Corruption, parse_condition
from multimodal_fer.datamodules import SynthAffectDataModule
from multimodal_fer.datamodules.corruption import (
    MAX_FACE_OCCLUDERS,
    FaceOcclusionDataset,
    corrupt_batch,
    counter_uniform,
    occlude_face,
)
from multimodal_fer.errors import DataError
from multimodal_fer.reporting import build_report, write_report
from multimodal_fer.run_folder import RunFolder
from multimodal_fer.types import PRESENT_KEY

from conftest import CONFIGS, TINY_DATA, tiny_data_args, tiny_trainer_args

QUICKSTART = str(CONFIGS / "quickstart.yaml")
B = 6


def _batch(clip: bool = False, points: bool = False) -> dict:
    """A normalised device batch of every modality, as the data module's transform leaves it."""
    generator = torch.Generator().manual_seed(0)
    face_shape = (B, 4, 3, 16, 16) if clip else (B, 3, 16, 16)
    depth = torch.randn(B, 256, 6, generator=generator) if points else torch.randn(B, 2, 16, 16, generator=generator)
    if not points:
        depth[:, 1] = (torch.rand(B, 16, 16, generator=generator) > 0.2).float()
        depth[:, :1] *= depth[:, 1:]
    return {
        "face": torch.randn(face_shape, generator=generator),
        "audio": torch.randn(B, 4000, generator=generator) * 0.1,
        "audio_lengths": torch.tensor([4000, 3000, 4000, 2000, 4000, 3500]),
        "depth": depth,
        "physio": torch.randn(B, 3, 256, generator=generator),
        "expr": torch.arange(B),
        "index": torch.tensor([3, 8, 11, 20, 21, 40]),
        PRESENT_KEY: {m: torch.ones(B, dtype=torch.bool) for m in ("face", "audio", "depth", "physio")},
    }


def _copy(batch: dict) -> dict:
    return {k: ({m: p.clone() for m, p in v.items()} if isinstance(v, dict) else v.clone()) for k, v in batch.items()}


def _assert_only(before: dict, after: dict, changed: set[str]) -> None:
    """Every field but ``changed`` (``present.<m>`` for masks) is byte-identical; every one of ``changed`` differs."""

    def flat(batch: dict) -> dict:
        masks = {f"present.{m}": p for m, p in batch[PRESENT_KEY].items()}
        return {**{k: v for k, v in batch.items() if k != PRESENT_KEY}, **masks}

    old, new = flat(before), flat(after)
    assert old.keys() == new.keys()
    for key in old:
        same = old[key].dtype == new[key].dtype and torch.equal(old[key], new[key])
        assert same != (key in changed), f"{key} {'unchanged' if same else 'changed'}"


CASES = [
    ("face", "noise", {"face"}, False),
    ("face", "drop", {"present.face"}, False),
    ("face", "noise", {"face"}, True),
    ("face", "drop", {"face"}, True),  # clip frames zeroed
    ("audio", "noise", {"audio"}, False),
    ("audio", "drop", {"audio"}, False),
    ("audio", "occlusion", {"audio"}, False),
    ("physio", "noise", {"physio"}, False),
    ("physio", "drop", {"physio"}, False),
    ("physio", "occlusion", {"physio"}, False),
    ("depth", "noise", {"depth"}, False),
    ("depth", "drop", {"present.depth"}, False),
    ("depth", "occlusion", {"depth"}, False),
]


@pytest.mark.parametrize(("modality", "kind", "changed", "clip"), CASES)
def test_each_kind_changes_its_modality_only_and_strength_zero_is_identity(modality, kind, changed, clip) -> None:
    batch = _batch(clip=clip)
    after = corrupt_batch(_copy(batch), Corruption(modality, kind, 0.5))
    _assert_only(batch, after, changed)
    _assert_only(batch, corrupt_batch(_copy(batch), Corruption(modality, kind, 0.0)), set())


@pytest.mark.parametrize("kind", ["noise", "drop"])
def test_point_clouds_get_noise_on_xyz_or_are_marked_absent(kind: str) -> None:
    batch = _batch(points=True)
    after = corrupt_batch(_copy(batch), Corruption("depth", kind, 0.5), depth_input="points")
    _assert_only(batch, after, {"depth"} if kind == "noise" else {"present.depth"})
    if kind == "noise":
        assert torch.equal(after["depth"][..., 3:], batch["depth"][..., 3:])  # normals untouched
    with pytest.raises(DataError, match="depth_input=map"):
        corrupt_batch(_copy(batch), Corruption("depth", "occlusion", 0.5), depth_input="points")


@pytest.mark.parametrize(("modality", "kind"), [(m, k) for m, k, _, clip in CASES if not clip])
def test_draws_depend_on_seed_and_cache_index_only(modality: str, kind: str) -> None:
    batch = _batch()
    corruption = Corruption(modality, kind, 0.5)
    first, second = corrupt_batch(_copy(batch), corruption), corrupt_batch(_copy(batch), corruption)
    _assert_only(first, second, set())
    # The same samples in another batch (reordered, fewer) get the same corruption.
    part = {
        k: ({m: p[[4, 1]] for m, p in v.items()} if isinstance(v, dict) else v[[4, 1]]) for k, v in _copy(batch).items()
    }
    part = corrupt_batch(part, corruption)
    key = modality if kind != "drop" or modality in ("audio", "physio") else None
    if key is not None:
        assert torch.equal(part[key], first[key][[4, 1]])
    else:
        assert torch.equal(part[PRESENT_KEY][modality], first[PRESENT_KEY][modality][[4, 1]])
    other = corrupt_batch(_copy(batch), Corruption(modality, kind, 0.5, seed=1))
    compare = (lambda b: b[key]) if key is not None else (lambda b: b[PRESENT_KEY][modality])  # noqa: E731
    if kind != "drop" or key is not None:  # six coin flips may agree by chance
        assert not torch.equal(compare(other), compare(first))


def test_strength_has_its_documented_meaning() -> None:
    batch = _batch()
    noisy = corrupt_batch(_copy(batch), Corruption("physio", "noise", 0.5))
    added = (noisy["physio"] - batch["physio"]).std(dim=-1)
    assert torch.allclose(added / batch["physio"].std(dim=-1), torch.full_like(added, 0.5), atol=0.08)
    audio = corrupt_batch(_copy(batch), Corruption("audio", "noise", 1.0))["audio"]
    assert torch.equal(audio[3, 2000:], batch["audio"][3, 2000:])  # padding beyond audio_lengths stays as it was
    dropped = corrupt_batch(_copy(batch), Corruption("physio", "drop", 0.3))["physio"]
    frames = (torch.arange(256) * 100) // 256  # each of the 100 frames holds 2 or 3 of the 256 samples
    for zeroed in (dropped == 0).all(dim=1):
        assert len(set(frames[zeroed].tolist())) == 30 and zeroed.sum() == sum(
            (frames == f).sum() for f in set(frames[zeroed].tolist())
        )
    span = corrupt_batch(_copy(batch), Corruption("audio", "occlusion", 0.25))["audio"]
    zeroed = span == 0
    assert zeroed.sum(dim=1).tolist() == [1000, 750, 1000, 500, 1000, 875]  # a quarter of each valid length
    for row, length in zip(zeroed, batch["audio_lengths"].tolist(), strict=True):
        where = row.nonzero()[:, 0]
        assert where.max() - where.min() + 1 == where.numel() and where.max() < length  # one span inside the audio
    depth = corrupt_batch(_copy(batch), Corruption("depth", "occlusion", 0.25))["depth"]
    assert ((depth[:, 1] == 0) & (batch["depth"][:, 1] == 1)).any()
    removed = (depth[:, 1] == 0).float().mean(dim=(1, 2))
    assert (removed >= 0.25 - 1e-6).all()  # an 8×8 patch, plus pixels that had no reading before
    uniform = counter_uniform(0, torch.arange(2000), "samples", 1)
    assert 0.45 < float((uniform < 0.5).float().mean()) < 0.55 and uniform.min() > 0 and uniform.max() < 1


def test_face_occluders_cover_a_growing_nested_area_and_the_same_on_every_clip_frame() -> None:
    rng = np.random.default_rng(0)
    face = rng.integers(0, 255, (3, 32, 32), dtype=np.uint8)
    masks = [occlude_face(face, None, strength, seed=0, index=7)[1] for strength in (0.0, 0.1, 0.3, 0.6)]
    assert not masks[0].any()
    for weaker, stronger, strength in zip(masks[1:], masks[2:], (0.3, 0.6), strict=False):
        assert stronger.mean() >= strength and (stronger | weaker == stronger).all()
    occluded, mask = occlude_face(face, None, 0.3, seed=0, index=7)
    assert np.array_equal(occluded[:, ~mask], face[:, ~mask]) and (occluded[:, mask] != face[:, mask]).any()
    clip = np.stack([face, face // 2, face])
    occluded_clip, clip_mask = occlude_face(clip, None, 0.3, seed=0, index=7)
    assert np.array_equal(clip_mask, mask) and np.array_equal(occluded_clip[0], occluded)
    assert np.array_equal(occluded_clip[1][:, mask], occluded[:, mask])  # the same occluder on a darker frame
    assert MAX_FACE_OCCLUDERS >= 16


def test_face_occlusion_dataset_changes_faces_only() -> None:
    class Faces:
        def __len__(self) -> int:
            return 4

        def __getitems__(self, positions):
            generator = torch.Generator().manual_seed(1)
            faces = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8, generator=generator)
            chosen = list(positions)
            return {"face": faces[chosen].clone(), "index": torch.tensor(chosen) * 10, "expr": torch.tensor(chosen)}

    dataset = FaceOcclusionDataset(Faces(), Corruption("face", "occlusion", 0.4))
    clean, occluded = Faces().__getitems__([0, 2]), dataset.__getitems__([0, 2])
    assert torch.equal(clean["expr"], occluded["expr"]) and torch.equal(clean["index"], occluded["index"])
    assert not torch.equal(clean["face"], occluded["face"])
    assert torch.equal(dataset.__getitems__([2])["face"][0], occluded["face"][1])  # per sample, not per batch
    assert torch.equal(
        FaceOcclusionDataset(Faces(), Corruption("face", "occlusion", 0.0)).__getitems__([0])["face"][0],
        clean["face"][0],
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{modality: sound, kind: noise, strength: 0.5}", "modality"),
        ("{modality: audio, kind: blur, strength: 0.5}", "kind"),
        ("{modality: audio, kind: noise, strength: 1.5}", "strength"),
        ("{modality: audio, kind: noise, strength: -0.1}", "strength"),
    ],
)
def test_bad_settings_are_refused_while_parsing(value: str, message: str) -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(SynthAffectDataModule, "data")
    assert parser.parse_args(["--data.test_corruption={modality: audio, kind: noise, strength: 0.5}"])
    with pytest.raises(Exception, match=message):
        parser.parse_args([f"--data.test_corruption={value}"])
    with pytest.raises(ValueError, match="two decimals"):
        Corruption("audio", "noise", 0.125)


def test_settings_that_cannot_apply_are_refused_by_the_data_module(tmp_path: Path) -> None:
    def datamodule(**settings):
        return SynthAffectDataModule(root=str(tmp_path), num_subjects=4, val_subjects=1, test_subjects=1, **settings)

    with pytest.raises(ValueError, match="does not load"):
        datamodule(modalities=["face"], test_corruption=Corruption("audio", "noise", 0.5))
    with pytest.raises(ValueError, match="withholds"):
        datamodule(withheld_modalities=["audio"], test_corruption=Corruption("audio", "noise", 0.5))
    with pytest.raises(ValueError, match="physio_features"):
        datamodule(physio_features=True, test_corruption=Corruption("physio", "drop", 0.5))
    with pytest.raises(ValueError, match="depth_input=map"):
        datamodule(depth_input="points", test_corruption=Corruption("depth", "occlusion", 0.5))
    dm = datamodule(test_corruption={"modality": "audio", "kind": "noise", "strength": 0.5})
    assert dm.test_condition == "test-noise-audio-0.50"
    assert condition_name(corruption=Corruption("audio", "noise", 0.5)) == "test-noise-audio-0.50"
    parsed = parse_condition("test-withheld-face-occlusion-depth-1.00-seed3-last")
    assert parsed is not None and (parsed.modality, parsed.kind, parsed.strength, parsed.seed) == (
        "depth",
        "occlusion",
        1.0,
        3,
    )
    assert parsed.clean == "test-withheld-face-last" and parse_condition("test-withheld-audio") is None


def test_data_module_corrupts_test_batches_only(tiny_cache: Path) -> None:
    def batches(corruption, stage: str) -> dict:
        dm = SynthAffectDataModule(root=str(tiny_cache), **TINY_DATA, test_corruption=corruption)
        dm.trainer = SimpleNamespace(training=False, testing=stage == "test", predicting=False)
        loader = dm.test_dataloader() if stage == "test" else dm.val_dataloader()
        return dm.on_after_batch_transfer(next(iter(loader)), 0)

    clean = batches(None, "test")
    for corruption, changed in [
        (Corruption("audio", "noise", 0.5), {"audio"}),
        (Corruption("face", "occlusion", 0.5), {"face"}),
    ]:
        corrupted = batches(corruption, "test")
        _assert_only(
            {k: v for k, v in clean.items() if k != "landmarks"},
            {k: v for k, v in corrupted.items() if k != "landmarks"},
            changed,
        )
        _assert_only(batches(None, "val"), batches(corruption, "val"), set())  # validation stays clean
        _assert_only(corrupted, batches(corruption, "test"), set())  # the same corrupted test set every time


@pytest.mark.slow  # three runs of mfer: about 20 s on two shared cores
def test_mfer_test_writes_the_corrupted_results_beside_the_fits(tmp_path: Path, tiny_cache: Path) -> None:
    common = ["--config", QUICKSTART, *tiny_data_args(tiny_cache), *tiny_trainer_args(tmp_path)]
    main(["fit", *common, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"])
    folder = tmp_path / "tests" / "run"
    fitted = (folder / "results-test.json").read_bytes()
    setting = "--data.init_args.test_corruption={modality: audio, kind: noise, strength: 0.5}"
    main(["test", *common, "--ckpt_path=best", setting])
    results = json.loads((folder / "results-test-noise-audio-0.50.json").read_text())
    assert results["condition"] == "test-noise-audio-0.50"
    assert results["data"]["test_corruption"] == {"modality": "audio", "kind": "noise", "strength": 0.5, "seed": 0}
    assert (folder / "results-test.json").read_bytes() == fitted
    main(["test", *common, "--ckpt_path=best", setting])  # a second test never overwrites the first
    again = json.loads((folder / "results-test-noise-audio-0.50.2.json").read_text())
    assert again["metrics"] == results["metrics"]  # the same corrupted test set, the same figures


def _suite(tmp_path: Path, **test) -> Path:
    path = tmp_path / "robust.yaml"
    document = {
        "base": [QUICKSTART],
        "grid": {"data.init_args.modalities": [["face"], ["face", "audio"]]},
        "test": test,
    }
    path.write_text(yaml.safe_dump(document))
    return path


def test_suite_expands_corruptions_into_extra_tests_run_once(tmp_path: Path) -> None:
    corrupt = {"modalities": ["audio", "face"], "kinds": ["noise", "drop"], "strengths": [0.25, 1.0]}
    suite = load_suite(_suite(tmp_path, corrupt=corrupt))
    assert len(suite.corruptions) == 8 and suite.corruptions[0] == Corruption("audio", "noise", 0.25)
    assert [c.modality for c in corruption_sets(suite, suite.cells[0])] == ["face"] * 4  # the face-only cell
    assert len(corruption_sets(suite, suite.cells[1])) == 8
    calls: list[list[str]] = []

    def entry_point(arguments: list[str]) -> None:
        calls.append(arguments)
        options = dict(item[2:].split("=", 1) for item in arguments if item.startswith("--") and "=" in item)
        folder = tmp_path / "out" / options["run.experiment"] / options["run.name"]
        folder.mkdir(parents=True, exist_ok=True)
        corruption = options.get("data.init_args.test_corruption")
        condition = "test" if corruption is None else f"test-{Corruption(**json.loads(corruption)).suffix}"
        (folder / f"results-{condition}.json").write_text("{}")

    run_suite(suite, tmp_path / "out", entry_point=entry_point, report=lambda line: None)
    assert [call[0] for call in calls] == ["fit", *["test"] * 4, "fit", *["test"] * 8]
    assert (
        '--data.init_args.test_corruption={"modality": "face", "kind": "noise", "strength": 0.25, "seed": 0}'
        in calls[1]
    )
    folder = RunFolder(tmp_path / "out", suite.name, suite.cells[1].name)
    assert missing_results(suite, suite.cells[1], folder) == []
    (folder.path / "results-test-drop-audio-1.00.json").unlink()
    calls.clear()
    run_suite(suite, tmp_path / "out", entry_point=entry_point, report=lambda line: None)
    assert len(calls) == 1 and calls[0][-1].endswith('"kind": "drop", "strength": 1.0, "seed": 0}')
    for bad, message in [
        ({"modalities": ["audio"], "kinds": ["blur"], "strengths": [0.5]}, "kind"),
        ({"modalities": ["audio"], "kinds": ["noise"], "strengths": [2]}, "strength"),
        ({"modalities": ["audio"], "kinds": ["noise"]}, "lacks"),
        ({"modalities": [], "kinds": ["noise"], "strengths": [0.5]}, "empty"),
    ]:
        with pytest.raises(SuiteError, match=message):
            load_suite(_suite(tmp_path, corrupt=bad))


def test_report_shows_a_robustness_heat_map_and_table(tmp_path: Path) -> None:
    root = tmp_path / "runs" / "robust"
    clean = [0.60, 0.50]
    for seed, f1 in enumerate(clean):
        folder = root / f"fused-seed{seed}"
        write_results(folder, seed, {"expr/f1_macro": f1}, modalities=("face", "audio"))
        for strength, share in [(0.5, 0.9), (1.0, 0.5)]:
            condition = f"test-noise-audio-{strength:.2f}"
            write_results(folder, seed, {"expr/f1_macro": f1 * share}, condition, modalities=("face", "audio"))
        write_results(folder, seed, {"expr/f1_macro": f1 * 0.8}, "test-drop-face-0.50", modalities=("face", "audio"))
    report = build_report([root], resamples=20)
    section = next(s for s in report.sections if s.title.startswith("Robustness"))
    (table,) = section.tables
    assert table.columns == ["modality · kind", "0.50", "1.00"]
    assert table.rows == [["face · drop", "0.800", "–"], ["audio · noise", "0.900", "0.500"]]
    assert section.images and section.images[0].png.startswith(b"\x89PNG")
    written = write_report(report, tmp_path / "out" / "report.html")
    page = written.html.read_text()
    assert "Robustness · synthaffect" in page and 'alt="synthaffect' in page
    assert "| audio · noise | 0.900 | 0.500 |" in written.markdown.read_text()
    (csv_file,) = [path for path in written.csv if "robustness" in path.name]
    lines = csv_file.read_text().splitlines()
    assert lines[0].startswith("modality,kind,seed,0.50 ratio,1.00 ratio") and lines[2].startswith("audio,noise,0,0.9")
