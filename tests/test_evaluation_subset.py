"""Testing on a listed subset of the test split (real-occlusion lists such as RAN's Occlusion-RAF-DB)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal_fer.datamodules.evaluation_subset import select_subset, subset_name
from multimodal_fer.datasets import RAFDB, OfficialSplits
from multimodal_fer.errors import DataError

from adapter_checks import REPO, fake_rafdb_data_args, prepared_fake_rafdb, tiny_datamodule
from conftest import run_args, run_folder

#: A cache of six samples: three test, two train, one test sample that failed preparation (index 5).
RECORDS = [
    {"key": "test_0001", "source": "Image/aligned/test_0001_aligned.jpg"},
    {"key": "test_0002", "source": "Image/aligned/test_0002_aligned.jpg"},
    {"key": "test_0003", "source": "Image/aligned/test_0003_aligned.jpg"},
    {"key": "train_00001", "source": "Image/aligned/train_00001_aligned.jpg"},
    {"key": "train_00002", "source": "Image/aligned/train_00002_aligned.jpg"},
    {"key": "test_0004", "source": "Image/aligned/test_0004_aligned.jpg"},
]
USABLE = np.array([0, 1, 2, 3, 4])
SPLITS = {"train": np.array([3]), "val": np.array([4]), "test": np.array([0, 1, 2])}


def _list(tmp_path: Path, text: str, name: str = "occlusion list.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _select(path: Path, records=RECORDS, split: str = "test"):
    return select_subset(path, records, USABLE, SPLITS, split)


def test_entries_match_keys_and_source_names_in_any_of_their_forms(tmp_path: Path) -> None:
    text = (
        "# RAN's format: name, their label code, another code\n"
        "test_0003_aligned 3 4\n"  # the source's stem
        "\n"
        "Image/aligned/test_0001_aligned.jpg\n"  # the source's path
        "test_0003_aligned 3 4\n"  # repeated
        "test_0004_aligned 6 1\n"  # failed preparation: left out, recorded
    )
    path = _list(tmp_path, text)
    subset = _select(path)
    assert subset.indices.tolist() == [0, 2] and subset.indices.dtype == np.int64
    assert subset.name == "occlusion-list"
    described = subset.describe()
    assert described == {
        "name": "occlusion-list",
        "path": str(path),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "entries": 4,
        "evaluated": 2,
        "repeated": 1,
        "failed_preparation": ["test_0004_aligned"],
    }
    # keys themselves, file names with an extension and folder-like entries with a trailing slash
    other = _select(_list(tmp_path, "test_0002\ntest_0001_aligned.jpg\nsome/folder/test_0003/\n", "b.txt"))
    assert other.indices.tolist() == [0, 1, 2] and other.repeated == 0 and other.failed_preparation == ()


def test_unknown_ambiguous_and_misplaced_entries_stop_with_the_entries_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"2 of its 3 entries name no sample.*'test_9999'.*'nonsense'.*samples.jsonl"):
        _select(_list(tmp_path, "test_0001\ntest_9999\nnonsense\n"))
    twins = [*RECORDS, {"key": "elsewhere/test_0001", "source": "Other/test_0001_aligned.jpg"}]
    with pytest.raises(DataError, match=r"1 entries name several samples: 'test_0001_aligned'"):
        _select(_list(tmp_path, "test_0001_aligned\n"), records=twins)
    with pytest.raises(DataError, match=r"outside the test split being tested \(1 in train, 1 in val;.*evaluate_split"):
        _select(_list(tmp_path, "test_0001\ntrain_00001\ntrain_00002\n"))
    # the same list is right for a test of the validation split... once it names only validation samples
    assert _select(_list(tmp_path, "train_00002\n"), split="val").indices.tolist() == [4]
    with pytest.raises(DataError, match=r"every listed sample failed preparation \('test_0004'\)"):
        _select(_list(tmp_path, "test_0004\n"))


def test_empty_unreadable_and_nameless_caches_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="lists no sample"):
        _select(_list(tmp_path, "# only a comment\n\n"))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(DataError, match="not a UTF-8 text file"):
        _select(binary)
    with pytest.raises(DataError, match="cannot be read"):
        _select(tmp_path / "absent.txt")
    with pytest.raises(DataError, match="records no sample names.*mfer prepare"):
        _select(_list(tmp_path, "test_0001\n"), records=[])
    assert subset_name("lists/Occlusion RAF-DB (RAN).txt") == "Occlusion-RAF-DB-RAN"


@pytest.fixture(scope="module")
def rafdb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Fake RAF-DB raw files and their prepared cache (test_0004 fails preparation)."""
    return prepared_fake_rafdb(tmp_path_factory.mktemp("rafdb_raw"), tmp_path_factory.mktemp("rafdb_cache") / "rafdb")


def test_the_test_loader_reads_only_the_listed_samples(rafdb: tuple[Path, Path], tmp_path: Path) -> None:
    raw, cache = rafdb
    listed = _list(tmp_path, "test_0003_aligned 3 4\ntest_0001_aligned 4 3\ntest_0004_aligned 6 1\n", "occ.txt")
    datamodule = tiny_datamodule(RAFDB(), raw, cache, split=OfficialSplits(val_fraction=0.2), test_subset=str(listed))
    assert datamodule.test_condition == "test-subset-occ"
    datamodule.setup()
    keys = [record["key"] for record in datamodule.sample_records()]
    assert sorted(keys[i] for i in datamodule.subset.indices) == ["test_0001", "test_0003"]
    batch = next(iter(datamodule.test_dataloader()))
    assert sorted(keys[i] for i in batch["index"].tolist()) == ["test_0001", "test_0003"]
    assert datamodule.subset.failed_preparation == ("test_0004_aligned",)
    # training and validation are untouched
    plain = tiny_datamodule(RAFDB(), raw, cache, split=OfficialSplits(val_fraction=0.2))
    plain.setup()
    for split in ("train", "val", "test"):
        assert np.array_equal(plain.splits[split], datamodule.splits[split])
    assert len(datamodule.dataset("val")) == plain.splits["val"].size
    with pytest.raises(DataError, match="is not a file"):
        tiny_datamodule(RAFDB(), raw, cache, test_subset=str(tmp_path / "absent.txt"))


def test_mfer_test_writes_the_subset_results_beside_the_plain_ones(rafdb: tuple[Path, Path], tmp_path: Path) -> None:
    from multimodal_fer.cli import main

    raw, cache = rafdb
    common = [
        "--config",
        str(REPO / "configs" / "quickstart.yaml"),
        "--config",
        str(REPO / "configs" / "data" / "rafdb.yaml"),
        *fake_rafdb_data_args(raw, cache),
        "--trainer.logger=false",
        "--trainer.accelerator=cpu",
        *run_args(tmp_path),
    ]
    smoothing = "--model.init_args.expr_label_smoothing=0.1"  # given to the fit only
    main(["fit", *common, "--trainer.max_epochs=1", "--test_after_fit=true", "--seed_everything=1", smoothing])
    folder = run_folder(tmp_path)
    listed = _list(tmp_path, "test_0002_aligned 6 4\ntest_0003_aligned 3 4\n", "rafdb_occlusion_list.txt")
    main(["test", *common, "--ckpt_path=best", f"--data.init_args.test_subset={listed}", "--results.predictions=true"])
    plain = json.loads((folder / "results-test.json").read_text())
    subset = json.loads((folder / "results-test-subset-rafdb_occlusion_list.json").read_text())
    assert plain["data"]["test_subset"] is None and plain["condition"] == "test"
    assert subset["condition"] == "test-subset-rafdb_occlusion_list"
    # the test command ran with its own default seed (0); the results name the seed the checkpoint trained with
    assert subset["seed"] == plain["seed"] == 1 and subset["config"]["seed_everything"] == 0
    # and the model is the one trained (--ckpt_path best takes the checkpoint's settings, as a file path does)
    assert subset["config"]["model"]["init_args"]["expr_label_smoothing"] == 0.1
    # a checkpoint of another version, with a setting the model no longer has, is still tested (that one left out)
    best = next((folder / "checkpoints").glob("best-*.ckpt"))
    saved = torch.load(best, weights_only=False)
    saved["hyper_parameters"]["setting_of_an_older_version"] = 1
    torch.save(saved, best)
    main(["test", *common, "--ckpt_path=best", "--results.filename=older.json"])
    older = json.loads((folder / "older.json").read_text())
    assert older["config"]["model"]["init_args"]["expr_label_smoothing"] == 0.1
    assert subset["data"]["test_subset"]["evaluated"] == 2 and subset["data"]["test_subset"]["entries"] == 2
    with np.load(folder / "results-test-subset-rafdb_occlusion_list.predictions.npz") as predictions:
        scored = predictions["index"].tolist()
    records = [json.loads(line) for line in (cache / "samples.jsonl").read_text().splitlines()]
    assert sorted(records[i]["key"] for i in scored) == ["test_0002", "test_0003"]
