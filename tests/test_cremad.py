import numpy as np
import pytest

from multimodal_fer.datasets import SubjectKFold
from multimodal_fer.datasets.cremad import CREMAD, parse_clip_name
from multimodal_fer.errors import DataError
from multimodal_fer.types import UNION_LABEL_SPACE

from adapter_checks import (
    assert_subject_disjoint,
    dominant_hz,
    fit_through_config,
    kill_midway_then_resume,
    prepared,
    tiny_datamodule,
)
from data.cremad.generate import CORRUPT_WAV, MP3_CLIPS, TRACK_HZ, WAV_HZ, write_fake_cremad


def _datamodule(raw, root, **kwargs):
    return tiny_datamodule(CREMAD(**kwargs), raw, root)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("cremad_raw")
    return raw, write_fake_cremad(raw / "CREMA-D")


def test_cremad_prepares_expected_samples_labels_and_failures(fake, tmp_path):
    raw, expected = fake
    datamodule = _datamodule(raw / "CREMA-D", tmp_path / "cache")
    result = prepared(datamodule)
    assert result["samples"] == expected["samples"]
    assert result["failures"] == expected["failures"]
    assert {r["source"]: r["reason"] for r in result["rejections"]} == expected["rejections"]
    assert {k: tuple(bool(v) for v in p) for k, p in result["present"].items()} == expected["present"]
    summary = result["summary"]
    assert summary["usable"] == 12 and summary["failed"] == 2 and summary["rejected_while_listing"] == 5
    assert summary["splits"] == {"unassigned": 12}  # CREMA-D has no official split
    assert summary["modalities"] == {"face": 11, "audio": 12}
    assert summary["expression_counts"] == {"anger": 2, "disgust": 1, "fear": 2, "happy": 2, "neutral": 2, "sad": 3}
    # speaker-independent 5-fold CV by default: one actor tests, one validates, three train
    assert_subject_disjoint(result)
    assert [len(result["subjects"][name]) for name in ("train", "val", "test")] == [3, 1, 1]
    assert set().union(*result["subjects"].values()) == {"1001", "1002", "1003", "1004", "1005"}

    reader = result["reader"]
    records = datamodule.sample_records()
    index = {r["key"]: i for i, r in enumerate(records)}
    audio, lengths = reader.array("audio"), reader.array("audio_lengths")
    for key, hz in expected["audio_hz"].items():  # the wav where there is one, else the flv's MP3 track
        i = index[key]
        assert abs(dominant_hz(audio[i][: lengths[i]], 16000) - hz) < 5, key
    # the flv wins over its mp4 conversion; a clip with only an mp4 reads the mp4
    assert records[index["1003_MTI_SAD_XX"]]["source"] == "VideoFlash/1003_MTI_SAD_XX.flv"
    assert records[index["1003_TIE_NEU_XX"]]["source"] == "VideoFlash/1003_TIE_NEU_XX.mp4"
    # invalid codes never reach the cache as labels
    assert not {"1002_DFA_BOR_XX", "1003_DFA_ANG", "1005_XYZ_ANG_XX", "1092_DFA_ANG_XX"} & set(index)
    assert set(np.asarray(reader.array("expr"))[reader.usable].tolist()) <= set(range(6))


def test_cremad_accepts_the_folder_above_and_the_mp3_audio(fake):
    raw, expected = fake
    listing = CREMAD().list_samples(raw)
    assert {s.key for s in listing.samples} == set(expected["samples"]) | {CORRUPT_WAV, "1005_TSI_HAP_XX"}
    assert all(s.source.startswith("CREMA-D/") for s in listing.samples)
    assert {r.source for r in listing.rejected} == {f"CREMA-D/{s}" for s in expected["rejections"]}

    adapter = CREMAD(audio_folder="AudioMP3")
    samples = {s.key: s for s in adapter.list_samples(raw / "CREMA-D").samples}
    assert samples["1002_IOM_SAD_XX"].locators == {"video": None, "audio": "AudioMP3/1002_IOM_SAD_XX.mp3"}
    # clips without an mp3 take their voice from the video
    assert samples["1004_TAI_ANG_MD"].locators["audio"] == "VideoFlash/1004_TAI_ANG_MD.flv"
    for key in MP3_CLIPS:
        media = adapter.load(raw / "CREMA-D", samples[key])
        assert abs(dominant_hz(media.audio, media.audio_rate) - WAV_HZ) < 5
    media = adapter.load(raw / "CREMA-D", samples["1004_TAI_ANG_MD"])
    assert abs(dominant_hz(media.audio, media.audio_rate) - TRACK_HZ) < 5 and media.video.endswith(".flv")
    with pytest.raises(ValueError, match="audio_folder"):
        CREMAD(audio_folder="AudioFLAC")


def test_cremad_name_table_and_missing_folders(tmp_path):
    assert parse_clip_name("1001_DFA_ANG_XX") == ("1001", "ANG")
    assert parse_clip_name("1091_WSI_SAD_HI") == ("1091", "SAD")
    assert parse_clip_name("1000_WSI_SAD_HI") == "unknown actor id 1000"
    assert parse_clip_name("1001_DFA_ANG_XX_2") == "file name has 5 fields, not the 4 of AAAA_SSS_EEE_LL"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No CREMA-D media"):
        _datamodule(tmp_path / "empty", tmp_path / "cache").prepare()
    (tmp_path / "wav_only" / "AudioWAV").mkdir(parents=True)
    with pytest.raises(DataError, match="AudioMP3"):
        CREMAD(audio_folder="AudioMP3").list_samples(tmp_path / "wav_only")


def test_cremad_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: _datamodule(raw, root), tmp_path, count=5)
    assert straight == resumed


def test_cremad_label_space_maps_into_the_union_space():
    space = CREMAD().label_space
    space.in_vocabulary()
    expr, _, _ = space.map_labels(UNION_LABEL_SPACE, np.arange(6), np.zeros((6, 0)), np.zeros((6, 0)))
    assert [UNION_LABEL_SPACE.expressions[i] for i in expr] == ["anger", "disgust", "fear", "happy", "neutral", "sad"]
    assert isinstance(CREMAD().default_protocol(), SubjectKFold)


def test_cremad_fits_through_its_config(fake, tmp_path):
    raw, _ = fake
    fit_through_config(
        "cremad.yaml",
        raw / "CREMA-D",
        tmp_path / "cache",
        tmp_path,
        ["--data.init_args.preprocessing.image_size=32", "--data.init_args.preprocessing.audio_seconds=1.0"],
    )
