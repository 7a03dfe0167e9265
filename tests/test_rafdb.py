import numpy as np
import pytest

from multimodal_fer.datamodules import FERDataModule
from multimodal_fer.datasets import RAFDB, OfficialSplits
from multimodal_fer.errors import DataError, StaleCacheError
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing
from multimodal_fer.types import UNION_LABEL_SPACE

from adapter_checks import (
    assert_subject_disjoint,
    fit_through_config,
    kill_midway_then_resume,
    prepared,
    tiny_datamodule,
)
from data.rafdb.generate import write_fake_rafdb


def _datamodule(raw, root, **kwargs):
    return tiny_datamodule(RAFDB(**kwargs), raw, root, split=OfficialSplits(val_fraction=0.2))


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("rafdb_raw")
    return raw, write_fake_rafdb(raw)


def test_rafdb_prepares_expected_samples_labels_and_failures(fake, tmp_path):
    raw, expected = fake
    result = prepared(_datamodule(raw / "basic", tmp_path / "cache"))
    assert result["samples"] == expected["samples"]
    # sources are relative to the raw root given (here the basic folder itself)
    relative = {source.removeprefix("basic/"): reason for source, reason in expected["failures"].items()}
    assert {s: r.split(":")[0] for s, r in result["failures"].items()} == relative
    assert result["rejected"] == expected["rejected"]
    reasons = {r["reason"] for r in result["rejections"]}
    assert reasons == {"malformed label line", "unknown expression code 9"}
    summary = result["summary"]
    assert summary["splits"] == {"test": 3, "train": 10}
    assert summary["expression_counts"]["happy"] == 3 and sum(summary["expression_counts"].values()) == 13
    assert summary["modalities"] == {"face": 13}
    assert summary["failures"] == {
        "malformed label line": 1,
        "missing image file": 1,
        "unknown expression code 9": 1,
        "unreadable image: OSError": 1,
    }
    assert_subject_disjoint(result)
    # the official test images are the test split; validation is carved from training images
    assert result["splits"]["test"] == ["test_0001", "test_0002", "test_0003"]
    assert len(result["splits"]["val"]) == 2 and not set(result["splits"]["val"]) & set(result["splits"]["test"])


def test_rafdb_accepts_the_folder_above_basic_and_maps_into_the_union_space(fake, tmp_path):
    raw, expected = fake
    result = prepared(_datamodule(raw, tmp_path / "cache"))
    assert result["samples"] == expected["samples"]
    space = RAFDB().label_space
    space.in_vocabulary()
    expr, _, _ = space.map_labels(UNION_LABEL_SPACE, np.arange(7), np.zeros((7, 0)), np.zeros((7, 0)))
    assert [UNION_LABEL_SPACE.expressions[i] for i in expr] == [
        "surprise", "fear", "disgust", "happy", "sad", "anger", "neutral"
    ]  # fmt: skip


def test_rafdb_batches_hold_aligned_faces(fake, tmp_path):
    raw, _ = fake
    datamodule = _datamodule(raw, tmp_path / "cache")
    datamodule.prepare()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["face"].shape == (4, 3, 32, 32) and batch["face"].dtype.is_floating_point is False
    assert batch["present"]["face"].all()
    assert (batch["expr"] >= 0).all() and (batch["expr"] < 7).all()


def test_rafdb_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: _datamodule(raw, root), tmp_path, count=5)
    assert straight == resumed


def test_rafdb_cache_refuses_changed_settings_and_missing_raw_root(fake, tmp_path):
    raw, _ = fake
    _datamodule(raw, tmp_path / "cache").prepare()
    with pytest.raises(StaleCacheError, match="images"):
        _datamodule(raw, tmp_path / "cache", images="original").prepare()
    with pytest.raises(DataError, match="is not a folder"):
        _datamodule(tmp_path / "elsewhere_missing", tmp_path / "other").prepare()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No RAF-DB label file"):
        _datamodule(tmp_path / "empty", tmp_path / "other").prepare()
    # training from the complete cache needs no raw files
    offline = FERDataModule(
        dataset=RAFDB(), root=str(tmp_path / "cache"), preprocessing=MediaPreprocessing(image_size=32)
    )
    offline.setup()
    assert offline.splits["test"].size == 3


def test_rafdb_fits_through_its_config(fake, tmp_path):
    raw, _ = fake
    fit_through_config(
        "rafdb.yaml", raw, tmp_path / "cache", tmp_path, ["--data.init_args.preprocessing.image_size=32"]
    )
