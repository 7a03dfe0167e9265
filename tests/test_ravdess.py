from pathlib import Path

import numpy as np
import pytest

from multimodal_fer.datasets import RawSample, SampleError, SubjectKFold
from multimodal_fer.datasets.ravdess import RAVDESS, parse_recording_name
from multimodal_fer.errors import DataError
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing
from multimodal_fer.types import UNION_LABEL_SPACE

from adapter_checks import (
    assert_subject_disjoint,
    dominant_hz,
    fit_through_config,
    kill_midway_then_resume,
    prepared,
    tiny_datamodule,
)
from data.ravdess.generate import (
    CORRUPT_VIDEO,
    TRACK_HZ,
    TRUNCATED_WAV,
    WAV_HZ,
    write_fake_ravdess,
)


def _datamodule(raw, root, preprocessing=None, **kwargs):
    return tiny_datamodule(RAVDESS(**kwargs), raw, root, preprocessing=preprocessing)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("ravdess_raw")
    return raw, write_fake_ravdess(raw)


@pytest.fixture(scope="module")
def built(fake, tmp_path_factory):
    """The fake prepared once with the default options: (data module, :func:`prepared` result)."""
    raw, _ = fake
    datamodule = _datamodule(raw, tmp_path_factory.mktemp("ravdess_cache") / "cache")
    return datamodule, prepared(datamodule)


def test_ravdess_prepares_expected_samples_labels_and_failures(fake, built):
    _, expected = fake
    _, result = built
    assert result["samples"] == expected["samples"]
    assert result["failures"] == expected["failures"]
    assert {r["source"]: r["reason"] for r in result["rejections"]} == expected["rejections"]
    # wav-only recordings have no face, video-only ones no audio; the others both, however they were paired
    assert {k: tuple(bool(v) for v in p) for k, p in result["present"].items()} == expected["present"]
    summary = result["summary"]
    assert summary["usable"] == 12 and summary["failed"] == 2 and summary["rejected_while_listing"] == 7
    assert summary["splits"] == {"unassigned": 12}  # RAVDESS has no official split
    assert summary["modalities"] == {"face": 10, "audio": 11}
    assert summary["expression_counts"] == {
        "neutral": 1, "calm": 2, "happy": 3, "sad": 1, "anger": 1, "fear": 2, "disgust": 1, "surprise": 1
    }  # fmt: skip
    assert summary["failures"]["unreadable audio file"] == 1 and summary["failures"]["unreadable video file"] == 1
    # actor-independent 6-fold CV by default: one actor tests, the next fold's actor validates, four train
    assert_subject_disjoint(result)
    assert [len(result["subjects"][name]) for name in ("train", "val", "test")] == [4, 1, 1]
    assert set().union(*result["subjects"].values()) == {f"Actor_{n:02d}" for n in range(1, 7)}


def test_ravdess_cache_holds_faces_and_the_chosen_audio(fake, built):
    _, expected = fake
    datamodule, result = built
    reader = result["reader"]
    records = datamodule.sample_records()
    index = {r["key"]: i for i, r in enumerate(records)}
    audio, lengths = reader.array("audio"), reader.array("audio_lengths")
    for key, hz in expected["audio_hz"].items():
        i = index[key]
        assert abs(dominant_hz(audio[i][: lengths[i]], 16000) - hz) < 5, key  # wav 440 Hz, AAC track 220 Hz
    faces, present = reader.array("face"), reader.array("present")
    for key, (has_face, has_audio) in expected["present"].items():
        i = index[key]
        assert bool(faces[i].any()) == has_face and bool(lengths[i] > 0) == has_audio
        assert tuple(present[i]) == (has_face, has_audio)
    # invalid codes never reach the cache: no rejected recording is a sample, every label is in range
    assert not {"01-09-01-01-01-02", "01-01-02-01-01-03", "02-07-01-01-01-04", "02-08-01-01-01-06"} & set(index)
    usable = reader.usable
    assert set(np.asarray(reader.array("expr"))[usable].tolist()) <= set(range(8))
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["face"].shape == (4, 3, 32, 32) and batch["audio"].shape == (4, 16000)
    assert set(batch["present"]) == {"face", "audio"}


def test_ravdess_options_pairing_channels_and_audio_source(fake):
    raw, expected = fake
    files = RAVDESS(pair_audio_with_video=False).list_samples(raw)
    assert sorted(s.source for s in files.samples) == expected["files"]
    assert {s.key for s in files.samples} == {Path(f).stem for f in expected["files"]}
    av = next(s for s in files.samples if s.key == "01-01-01-01-01-01-01")
    assert av.locators == {"video": av.source, "audio": av.source}  # an AV file alone: its own AAC track

    song = RAVDESS(channels=["song"])
    assert song.label_space.expressions == ("neutral", "calm", "happy", "sad", "anger", "fear")
    assert {s.key for s in song.list_samples(raw).samples} == {k for k in expected["samples"] if k.startswith("02")}
    speech = RAVDESS(channels=["speech"]).list_samples(raw)
    assert all(s.key.startswith("01") for s in speech.samples) and len(speech.samples) == 11
    assert RAVDESS().label_space.num_expressions == 8

    # audio_source: the audio-only wav by default, the audio-video file's AAC track on request
    for source, hz in (("wav", WAV_HZ), ("mp4", TRACK_HZ)):
        adapter = RAVDESS(audio_source=source)
        sample = next(s for s in adapter.list_samples(raw).samples if s.key == "01-01-01-01-01-01")
        media = adapter.load(raw, sample)
        assert media.audio_rate == 48000 and abs(dominant_hz(media.audio, 48000) - hz) < 5
        assert media.video is not None and media.video.endswith("01-01-01-01-01-01-01.mp4")
    with pytest.raises(ValueError, match="speech"):
        RAVDESS(channels=["shout"])
    with pytest.raises(ValueError, match="audio_source"):
        RAVDESS(audio_source="flac")


def test_ravdess_code_table_and_load_failures(fake):
    raw, _ = fake
    assert parse_recording_name("03-01-06-01-02-01-12.wav").subject == "Actor_12"
    assert parse_recording_name("03-01-06-01-02-01-12.wav").recording == "01-06-01-02-01-12"
    assert parse_recording_name("03-01-06-01-02-01-25.wav") == "unknown actor code 25"
    assert parse_recording_name("01-01-06-01-02-01-12.wav") == "modality code 01 on a .wav file"
    assert parse_recording_name("03-03-06-01-02-01-12.wav") == "unknown vocal channel code 03"
    assert parse_recording_name("03-01-06-01-02-01-1a.wav") == "file name fields are not two-digit codes"
    adapter = RAVDESS()
    video_only = "Video_Speech_Actor_03/Actor_03/02-01-07-01-02-02-03.mp4"
    cases = {
        "missing video file": {"video": "Actor_01/01-01-02-01-01-01-01.mp4", "audio": None},
        "missing audio file": {"video": None, "audio": "Actor_01/03-01-02-01-01-01-01.wav"},
        "no audio track": {"video": None, "audio": video_only},  # a video-only file asked for sound
        "unreadable video file": {"video": CORRUPT_VIDEO[0], "audio": None},
        "unreadable audio file": {"video": None, "audio": TRUNCATED_WAV[0]},
    }
    for reason, locators in cases.items():
        sample = RawSample(key="k", subject="Actor_01", source="s", locators=locators)
        with pytest.raises(SampleError) as error:
            adapter.load(raw, sample)
        assert error.value.reason == reason


def test_ravdess_refuses_a_folder_without_recordings(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "Audio_Speech_Actors_01-24.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match="No RAVDESS recordings"):
        _datamodule(tmp_path / "empty", tmp_path / "cache").prepare()


def test_ravdess_clips_from_the_videos(fake, tmp_path):
    raw, expected = fake
    settings = MediaPreprocessing(image_size=32, audio_seconds=1.0, clip_frames=4)
    datamodule = _datamodule(raw, tmp_path / "cache", preprocessing=settings, channels=["speech"])
    reader = datamodule.prepare()
    records = datamodule.sample_records()
    clips = reader.array("face_clip")
    assert clips.shape[1:] == (4, 3, 32, 32)
    for i in reader.usable:
        has_face = expected["present"][records[i]["key"]][0]
        assert bool(clips[i].any()) == has_face
        if has_face:  # the frames move by a pixel: the clip is not one still repeated
            assert any(not np.array_equal(clips[i][0], clips[i][t]) for t in range(1, 4))


def test_ravdess_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: _datamodule(raw, root), tmp_path, count=5)
    assert straight == resumed


def test_ravdess_label_space_maps_into_the_union_space():
    space = RAVDESS().label_space
    space.in_vocabulary()
    expr, _, _ = space.map_labels(UNION_LABEL_SPACE, np.arange(8), np.zeros((8, 0)), np.zeros((8, 0)))
    assert [UNION_LABEL_SPACE.expressions[i] for i in expr] == [
        "neutral", "calm", "happy", "sad", "anger", "fear", "disgust", "surprise"
    ]  # fmt: skip
    assert isinstance(RAVDESS().default_protocol(), SubjectKFold)


def test_ravdess_fits_through_its_config(fake, tmp_path):
    raw, _ = fake  # with the recording that has no audio at all: absent audio is masked, never refused
    fit_through_config(
        "ravdess.yaml",
        raw,
        tmp_path / "cache",
        tmp_path,
        ["--data.init_args.preprocessing.image_size=32", "--data.init_args.preprocessing.audio_seconds=1.0"],
    )


def test_ravdess_batches_without_audio_give_encoder_valid_lengths(built):
    datamodule, _ = built
    for loader in (datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader()):
        for batch in loader:
            batch = datamodule.on_after_batch_transfer(batch, 0)
            lengths = batch["audio_lengths"]
            assert bool(((lengths >= 1) & (lengths <= batch["audio"].shape[1])).all()), lengths
