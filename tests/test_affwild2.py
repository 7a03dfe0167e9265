import json
import shutil

import numpy as np
import pytest

from multimodal_fer.datasets import OfficialSplits, SubjectHoldout
from multimodal_fer.datasets.affwild2 import AffWild2, audio_track_name
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
from data.affwild2.generate import AUDIO_RATE, BL, BR, CONFLICT, A, C, D, wav_signal, write_fake_affwild2


def _datamodule(raw, root, audio_seconds=0.05, split=None, **kwargs):
    adapter = AffWild2(**kwargs)
    preprocessing = MediaPreprocessing(image_size=32, audio_seconds=audio_seconds)
    split = split or OfficialSplits(val_fraction=0.1)
    return tiny_datamodule(adapter, raw, root, split, preprocessing, modalities=list(adapter.modalities))


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("affwild2_abaw6")
    return raw, write_fake_affwild2(raw, edition="abaw6")


@pytest.fixture(scope="module", params=["abaw6", "abaw3"])
def edition(request, tmp_path_factory, fake):
    """Both editions' folder names (ABAW6: 6th ABAW Annotations, EXPR_Recognition_Challenge; ABAW3: 3rd ABAW
    Annotations/Third ABAW Annotations, EXPR_Classification_Challenge)."""
    if request.param == "abaw6":
        return fake
    raw = tmp_path_factory.mktemp(f"affwild2_{request.param}")
    return raw, write_fake_affwild2(raw, edition=request.param)


def _same(actual, expected):
    if expected is None:
        return bool(np.isnan(actual).all())
    return np.allclose(actual, expected) and not np.isnan(actual).any()


def test_affwild2_prepares_expected_frames_labels_rejections_and_failures(edition, tmp_path):
    raw, expected = edition
    result = prepared(_datamodule(raw, tmp_path / "cache"))
    assert result["samples"] == expected["samples"]
    for key in expected["samples"]:
        assert _same(result["va"][key], expected["va"][key]), key
        assert _same(result["au"][key], expected["au"][key]), key
    assert {s: r.split(":")[0] for s, r in result["failures"].items()} == expected["failures"]
    assert sorted((r["source"], r["reason"]) for r in result["rejections"]) == expected["rejections"]
    summary = result["summary"]
    assert summary["splits"] == {"test": 5, "train": 8}
    assert summary["va_labelled"] == 7 and sum(summary["expression_counts"].values()) == 12
    assert summary["failures"]["label line without a frame image"] == 3
    assert summary["failures"]["video in both Train_Set and Validation_Set"] == 2
    assert_subject_disjoint(result)
    # the official Validation_Set is the test split; validation is a whole training video carved out
    assert result["subjects"]["test"] == {C, D}
    assert len(result["subjects"]["val"]) == 1 and result["subjects"]["val"] < {A, BL, BR}
    # nothing of the conflicting video reaches the cache
    assert not any(key.startswith(CONFLICT) for key in result["samples"])
    records = {r["key"]: r for r in _datamodule(raw, tmp_path / "cache").sample_records()}
    assert records[f"{A}/00004"]["frame"] == 3 and records[f"{A}/00004"]["sequence"] == A
    assert records[f"{BR}/00001"]["subject"] == BR


def test_affwild2_invalid_codes_never_become_labels(fake, tmp_path):
    raw, _ = fake
    result = prepared(_datamodule(raw, tmp_path / "cache"))
    reader = result["reader"]
    usable = reader.usable
    expr = np.asarray(reader.array("expr"))[usable]
    au = np.asarray(reader.array("au"))[usable]
    va = np.asarray(reader.array("va"))[usable]
    assert ((expr >= -1) & (expr < 8)).all()
    assert np.isin(au[~np.isnan(au)], [0.0, 1.0]).all()
    assert (np.abs(va[~np.isnan(va)]) <= 1).all()
    # an AU row with one -1 is NaN as a whole; a VA row with one -5 is NaN in both dimensions
    assert np.isnan(au).all(axis=1).sum() == np.isnan(au).any(axis=1).sum()
    assert np.isnan(va).all(axis=1).sum() == np.isnan(va).any(axis=1).sum()
    assert f"{A}/00002" not in result["samples"]  # -5, -1 and an all -1 AU row: labelled nowhere


def test_affwild2_label_space_and_task_subsets(fake, tmp_path):
    raw, _ = fake
    space = AffWild2().label_space
    space.in_vocabulary()
    expr, au, va = space.map_labels(UNION_LABEL_SPACE, np.arange(8), np.eye(8, 12), np.zeros((8, 2)))
    assert [UNION_LABEL_SPACE.expressions[i] for i in expr] == [
        "neutral", "anger", "disgust", "fear", "happy", "sad", "surprise", "other"
    ]  # fmt: skip
    columns = [UNION_LABEL_SPACE.action_units.index(n) for n in (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26)]
    assert np.array_equal(au[:, columns], np.eye(8, 12)) and np.isnan(np.delete(au, columns, axis=1)).all()
    assert np.isnan(va[:, 2]).all()
    # one track: its labels only, and the cross-track conflict disappears (the video is only in VA Train_Set)
    only_va = AffWild2(tasks=["va"])
    assert only_va.label_space.tasks == ("va",)
    result = prepared(_datamodule(raw, tmp_path / "va", tasks=["va"], split=SubjectHoldout(1, 1)))
    keys = set(result["samples"])
    assert f"{CONFLICT}/00001" in keys and f"{BR}/00001" not in keys
    assert all(label is None for _, label in result["samples"].values())
    assert not any("Recognition" in r["source"] or "Classification" in r["source"] for r in result["rejections"])


def test_affwild2_frame_step_keeps_every_other_frame(fake):
    raw, _ = fake
    listing = AffWild2(frame_step=2).list_samples(raw)
    assert {s.frame % 2 for s in listing.samples} == {0}
    assert {s.key for s in listing.samples} == {
        f"{A}/00001", f"{A}/00003", f"{BL}/00001", f"{BL}/00003", f"{BR}/00001", f"{BR}/00003",
        f"{C}/00001", f"{C}/00003", f"{D}/00001",
    }  # fmt: skip
    reasons = sorted(r.reason for r in listing.rejected)
    assert reasons.count("label line without a frame image") == 3 and "unknown expression code 9" in reasons


def test_affwild2_finds_or_is_told_its_annotation_folder(edition, tmp_path):
    raw, expected = edition
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    assert len(AffWild2(annotations_dir=expected["annotations"]).list_samples(copy).samples) == 14
    shutil.copytree(copy / expected["annotations"], copy / "other edition")
    with pytest.raises(DataError, match="Several Aff-Wild2 annotation folders"):
        AffWild2().list_samples(copy)
    chosen = AffWild2(annotations_dir="other edition").list_samples(copy)
    original = AffWild2(annotations_dir=expected["annotations"]).list_samples(copy)
    assert [s.key for s in chosen.samples] == [s.key for s in original.samples]
    assert all(r.source.startswith("other edition/") for r in chosen.rejected)
    with pytest.raises(DataError, match="must be a folder inside raw_root"):
        AffWild2(annotations_dir=str(tmp_path)).list_samples(copy)
    with pytest.raises(DataError, match="holds none of the challenge folders"):
        AffWild2(annotations_dir="cropped_aligned").list_samples(copy)
    with pytest.raises(DataError, match="No cropped folder"):
        AffWild2(images="cropped").list_samples(copy)
    empty = tmp_path / "empty"
    (empty / "cropped_aligned").mkdir(parents=True)
    with pytest.raises(DataError, match="No Aff-Wild2 annotations"):
        AffWild2().list_samples(empty)
    with pytest.raises(ValueError, match="tasks"):
        AffWild2(tasks=["va", "valence"])


def test_affwild2_audio_windows_are_centred_on_frames_and_shared_by_left_and_right(fake, tmp_path):
    raw, expected = fake
    assert audio_track_name(BL) == audio_track_name(BR) == "2-24-640x360"
    with pytest.raises(DataError, match="pass --data.init_args.dataset.init_args.fps"):
        AffWild2(audio=True).list_samples(raw)
    adapter = AffWild2(audio=True, fps=30, audio_window_seconds=0.05)
    listing = adapter.list_samples(raw)
    by_key = {s.key: s for s in listing.samples}
    ramp, length = wav_signal(), round(0.05 * AUDIO_RATE)
    for frame in (1, 2, 3):
        media = adapter.load(raw, by_key[f"{C}/{frame:05d}"])
        centre = round((frame - 1) / 30 * AUDIO_RATE)
        start = max(centre - length // 2, 0)
        assert media.audio_rate == AUDIO_RATE and np.array_equal(media.audio, ramp[start : start + length])
    result = prepared(_datamodule(raw, tmp_path / "cache", audio=True, fps=30, audio_window_seconds=0.05))
    assert result["samples"] == expected["samples"]
    audio = np.asarray(result["reader"].array("audio"))
    index = {r["key"]: i for i, r in enumerate(_datamodule(raw, tmp_path / "cache").sample_records())}
    for left, right in expected["shared"]:
        assert np.array_equal(audio[index[left]], audio[index[right]]) and np.abs(audio[index[left]]).max() > 1000
    assert not np.array_equal(audio[index[expected["shared"][0][0]]], audio[index[expected["shared"][1][0]]])
    for key in expected["no_audio"]:
        assert result["present"][key].tolist() == [True, False]  # face present, audio absent
    assert result["summary"]["modalities"] == {"face": 13, "audio": 11}
    first = audio[index[f"{C}/00001"]]
    assert np.array_equal(first, np.round(ramp[:length] * 32767).astype(np.int16))


def test_affwild2_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: _datamodule(raw, root), tmp_path, count=6)
    assert straight == resumed


def test_affwild2_fits_through_its_config(fake, tmp_path):
    raw, _ = fake
    extra = ["--data.init_args.preprocessing.image_size=32"]
    fit_through_config("affwild2.yaml", raw, tmp_path / "cache", tmp_path, extra)


def test_affwild2_fits_through_its_config_with_audio(fake, tmp_path):
    raw, _ = fake
    fit_through_config(
        "affwild2.yaml",
        raw,
        tmp_path / "cache",
        tmp_path,
        [
            "--data.init_args.preprocessing.image_size=32",
            "--data.init_args.dataset.init_args.audio=true",
            "--data.init_args.dataset.init_args.fps=30",
            "--data.init_args.modalities=[face,audio]",
        ],
    )
    summary = json.loads((tmp_path / "cache" / "summary.json").read_text())
    assert summary["modalities"] == {"face": 13, "audio": 11}


def test_affwild2_validation_as_val_and_cropped_images(fake, tmp_path):
    raw, _ = fake
    listing = AffWild2(validation_as="val").list_samples(raw)
    assert {s.split for s in listing.samples if s.subject in (C, D)} == {"val"}
    assert {s.split for s in listing.samples if s.subject not in (C, D)} == {"train"}
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    shutil.copytree(copy / "cropped_aligned", copy / "cropped")
    adapter = AffWild2(images="cropped")
    sample = adapter.list_samples(copy).samples[0]
    assert sample.source == f"cropped/{A}/00001.jpg"
    assert adapter.load(copy, sample).face_aligned is False
    assert AffWild2().load(copy, sample).face_aligned is True
