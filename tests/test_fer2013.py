import json
import pickle

import numpy as np
import pytest

from multimodal_fer.datasets import OfficialSplits, SampleError
from multimodal_fer.datasets.fer2013 import FER2013, decode_pixels
from multimodal_fer.errors import DataError
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing
from multimodal_fer.types import UNION_LABEL_SPACE

from adapter_checks import (
    assert_subject_disjoint,
    fit_through_config,
    kill_midway_then_resume,
    prepared,
    tiny_datamodule,
)
from data.fer2013.generate import write_fake_fer2013


def _datamodule(raw, root, **kwargs):
    return tiny_datamodule(FER2013(**kwargs), raw, root, OfficialSplits(), MediaPreprocessing(image_size=48))


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("fer2013_raw")
    return raw, write_fake_fer2013(raw)


def test_fer2013_prepares_expected_samples_labels_and_failures(fake, tmp_path):
    raw, expected = fake
    result = prepared(_datamodule(raw, tmp_path / "cache"))
    assert result["samples"] == expected["samples"]
    assert result["failures"] == expected["failures"]
    assert {r["source"]: r["reason"] for r in result["rejections"]} == expected["rejections"]
    summary = result["summary"]
    assert summary["splits"] == {"test": 3, "train": 8, "val": 3}
    assert summary["expression_counts"]["happy"] == 4 and sum(summary["expression_counts"].values()) == 14
    expr = np.asarray(result["reader"].array("expr"))[result["reader"].usable]
    assert ((expr >= 0) & (expr < 7)).all()  # code 7 never reaches the cache
    # Usage is the protocol: Training → train, PublicTest → val, PrivateTest → test
    for split in ("train", "val", "test"):
        assert result["splits"][split] == sorted(k for k, (s, _) in expected["samples"].items() if s == split)
    assert_subject_disjoint(result)
    # the pre-cropped grey faces are only resized (48 → 48 here): grey replicated to RGB, pixels unchanged
    faces = result["reader"].array("face")
    lines = (result["reader"].root / "samples.jsonl").read_text().splitlines()
    index = {json.loads(line)["key"]: i for i, line in enumerate(lines)}
    for key, pixels in expected["pixels"].items():
        assert (np.asarray(faces[index[key]]) == pixels[None]).all()


def test_fer2013_reads_the_icml_csv_with_spaced_header(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    expected = write_fake_fer2013(raw, variant="icml")
    listing = FER2013().list_samples(raw)
    assert {r.source: r.reason for r in listing.rejected} == expected["rejections"]
    loaded, failed = {}, {}
    for sample in listing.samples:
        try:
            loaded[sample.key] = (sample.split, FER2013().label_space.expressions[sample.labels.expr])
            np.testing.assert_array_equal(FER2013().load(raw, sample).image, expected["pixels"][sample.key])
        except SampleError as error:
            del loaded[sample.key]
            failed[sample.source] = error.reason
    assert loaded == expected["samples"] and failed == expected["failures"]


def test_fer2013_listing_is_small_and_picklable(fake):
    raw, _ = fake
    listing = FER2013().list_samples(raw)
    # locators hold a byte offset and a row digest, not the 2304 pixel values
    assert all(len(pickle.dumps(dict(s.locators))) < 200 for s in listing.samples)
    adapter = pickle.loads(pickle.dumps(FER2013()))
    assert adapter.load(raw, listing.samples[3]).face_aligned


def test_fer2013_pixel_strings_are_checked():
    assert decode_pixels(" ".join(["7"] * 2304)).shape == (48, 48)
    with pytest.raises(SampleError, match="2303 pixels"):
        decode_pixels(" ".join(["7"] * 2303))
    with pytest.raises(SampleError, match="non-numeric"):
        decode_pixels(" ".join(["7"] * 2303 + ["a"]))
    with pytest.raises(SampleError, match="outside 0-255"):
        decode_pixels(" ".join(["7"] * 2303 + ["-1"]))


def test_fer2013_refuses_a_missing_csv_and_missing_columns(tmp_path):
    with pytest.raises(DataError, match="No FER2013 CSV"):
        FER2013().list_samples(tmp_path)
    (tmp_path / "train.csv").write_text("emotion,pixels\n0," + " ".join(["1"] * 2304) + "\n")
    with pytest.raises(DataError, match="Usage"):
        FER2013(csv_file="train.csv").list_samples(tmp_path)
    with pytest.raises(ValueError, match="relative"):
        FER2013(csv_file="/abs/fer2013.csv")


def test_fer2013_changed_row_fails_at_load(fake, tmp_path):
    raw, _ = fake
    copy = tmp_path / "raw"
    copy.mkdir()
    (copy / "fer2013.csv").write_bytes((raw / "fer2013.csv").read_bytes())
    listing = FER2013().list_samples(copy)
    text = (copy / "fer2013.csv").read_text().replace("\n0,", "\n1,", 1)  # relabel the first row after listing
    (copy / "fer2013.csv").write_text(text)
    with pytest.raises(SampleError, match="changed since listing"):
        FER2013().load(copy, listing.samples[0])


def test_fer2013_maps_into_the_union_space():
    space = FER2013().label_space
    space.in_vocabulary()
    expr, _, _ = space.map_labels(UNION_LABEL_SPACE, np.arange(7), np.zeros((7, 0)), np.zeros((7, 0)))
    assert [UNION_LABEL_SPACE.expressions[i] for i in expr] == [
        "anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"
    ]  # fmt: skip


def test_fer2013_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: _datamodule(raw, root), tmp_path, count=5)
    assert straight == resumed


def test_fer2013_fits_through_its_config(fake, tmp_path):
    raw, _ = fake
    fit_through_config(
        "fer2013.yaml", raw, tmp_path / "cache", tmp_path, ["--data.init_args.preprocessing.image_size=32"]
    )
