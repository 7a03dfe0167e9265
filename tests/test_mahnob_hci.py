import json
import re

import numpy as np
import pytest

from multimodal_fer.datasets import MAHNOBHCI, SubjectKFold, WithinSubjectKFold
from multimodal_fer.datasets.base import SampleError
from multimodal_fer.datasets.mahnob_hci import read_bdf_facts
from multimodal_fer.errors import DataError, StaleCacheError
from multimodal_fer.fingerprints import fingerprint
from multimodal_fer.media.signals import resample_signal
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing
from multimodal_fer.types import UNION_LABEL_SPACE

from adapter_checks import (
    assert_subject_disjoint,
    dominant_hz,
    fit_through_config,
    kill_midway_then_resume,
    tiny_datamodule,
)
from data.mahnob_hci.generate import (
    AUDIO_HZ,
    BEFORE,
    CLIP_SECONDS,
    FPS,
    PHYSICAL,
    RATE,
    SESSIONS,
    STRIDE_SECONDS,
    WINDOW_SECONDS,
    bdf_name,
    window_samples,
    write_fake_mahnob,
)

FAKE_TIMING = {"window_seconds": WINDOW_SECONDS, "stride_seconds": STRIDE_SECONDS}
#: Package channel → BDF label of the default channels.
DEFAULT_LABELS = {"ecg": "EXG1", "gsr": "GSR1", "rsp": "Resp", "temp": "Temp"}


def _adapter(**options):
    options.setdefault("media", [])
    return MAHNOBHCI(**FAKE_TIMING, **options)


def _datamodule(raw, root, split=None, modalities=None, preprocessing=None, **options):
    return tiny_datamodule(
        _adapter(**options),
        raw,
        root,
        split=split or SubjectKFold(num_folds=4),
        preprocessing=preprocessing,
        modalities=modalities or ["physio"],
    )


def _failures(root):
    return [json.loads(line) for line in (root / "failures.jsonl").read_text().splitlines() if line.strip()]


def _unit(rating):
    return (rating - 1) / 4 - 1


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("mahnob_raw")
    return raw, write_fake_mahnob(raw)


@pytest.fixture(scope="module")
def built(fake, tmp_path_factory):
    """The fake prepared once, physiology only: (data module, reader, records by key)."""
    raw, _ = fake
    datamodule = _datamodule(raw, tmp_path_factory.mktemp("mahnob_cache") / "cache")
    reader = datamodule.prepare()
    datamodule.setup()
    records = {r["key"]: i for i, r in enumerate(datamodule.sample_records())}
    return datamodule, reader, records


def test_mahnob_prepares_expected_windows_failures_and_rejections(fake, built):
    _, expected = fake
    datamodule, reader, records = built
    assert list(records) == expected["listed"]  # two windows per usable session, in session order
    failures = _failures(reader.root)
    assert {f["key"]: f["reason"] for f in failures if f["index"] is not None} == expected["failed"]
    assert {f["source"]: f["reason"] for f in failures if f["index"] is None} == expected["rejections"]
    details = {f["key"]: f["detail"] for f in failures if f["index"] is not None}
    assert re.fullmatch(r"temp: constant at 31\.5\d* over 1280 samples", details["4/w00"])  # 24-bit quantised
    assert details["134/w01"].startswith("gsr: ") and "at or beyond the limits" in details["134/w01"]
    assert "ends after 2560" in details["264/w01"]  # the file was cut 10 s in: 2,560 samples at 256 Hz
    usable = {key for key, i in records.items() if i in set(reader.usable.tolist())}
    assert usable == set(expected["listed"]) - set(expected["failed"])
    summary = datamodule.summary()
    assert summary["usable"] == 21 and summary["failed"] == 3 and summary["rejected_while_listing"] == 13
    assert summary["modalities"] == {"physio": 21, "face": 0, "audio": 0} and summary["va_labelled"] == 21
    assert summary["failures"]["sampling rate other than declared"] == 2
    assert summary["failures"]["flat signal"] == 1 and summary["failures"]["clipped signal"] == 1
    assert summary["failures"]["truncated signal"] == 1 and summary["failures"]["missing Status events"] == 1
    assert summary["failures"]["session without session.xml"] == 1
    assert summary["failures"]["session without BDF"] == 1


def test_mahnob_self_reports_map_to_the_unit_scale_and_felt_emotions_to_expressions(fake, built):
    raw, _ = fake
    datamodule, reader, records = built
    assert datamodule.label_space.expressions == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
    datamodule.label_space.in_vocabulary()
    va = np.asarray(reader.array("va"))
    expr = np.asarray(reader.array("expr"))
    names = datamodule.label_space.expressions
    felt = {0: "neutral", 1: "anger", 2: "disgust", 3: "fear", 4: "happy", 5: "sad", 6: "surprise"}
    for session, (_, valence, arousal, control, emotion) in SESSIONS.items():
        for window in (0, 1):
            key = f"{session}/w{window:02d}"
            if key in ("4/w00", "134/w01", "264/w01"):
                continue
            i = records[key]
            assert np.allclose(va[i], (_unit(valence), _unit(arousal), _unit(control)), atol=1e-6), key
            if emotion in felt:
                assert names[expr[i]] == felt[emotion], key
            else:
                assert expr[i] == -1, key  # 11 amusement, 12 anxiety: no expression, affect kept
    assert np.allclose(va[records["132/w00"]], (-1.0, 1.0, -1.0))  # 1, 9, 1 on the 1-9 scales
    # joint training: the expressions land on the package's union space by name
    mapped, _, _ = datamodule.label_space.map_labels(
        UNION_LABEL_SPACE, np.arange(7), np.zeros((7, 0)), np.zeros((7, 3))
    )
    assert [UNION_LABEL_SPACE.expressions[k] for k in mapped] == list(names)
    # the paper's three classes of one rating (1-3 low, 4-5 medium, 6-9 high), outside the vocabulary
    arousal = _adapter(class_target="arousal")
    assert arousal.label_space.expressions == ("low_arousal", "medium_arousal", "high_arousal")
    classes = {s.sequence: s.labels.expr for s in arousal.list_samples(raw).samples}
    assert [classes[str(s)] for s in (2, 4, 6, 132, 136, 266)] == [0, 2, 1, 2, 1, 0]  # 3, 8, 5, 9, 4, 1
    with pytest.raises(ValueError, match="vocabulary"):
        arousal.label_space.in_vocabulary()
    # the code table is an option: code 9 named, amusement as happy, dominance dropped
    extended = _adapter(emotion_codes={0: "neutral", 4: "happy", 9: "other", 11: "happy"}, dominance=False)
    listing = extended.list_samples(raw)
    by_session = {s.sequence: s.labels for s in listing.samples}
    assert extended.label_space.expressions == ("neutral", "happy", "other")
    assert by_session["136"].expr == 1 and by_session["2"].expr == 1 and by_session["2"].va == (0.5, -0.5)
    rejected = {r.source: r.reason for r in listing.rejected}
    assert rejected["Sessions/140"] == "session without BDF"  # its code 9 is now known: the next check speaks
    assert rejected["Sessions/262/session.xml"] == "unknown feltEmo code"  # 6 (surprise) is not in this table


def test_mahnob_windows_tile_the_clip_between_the_status_triggers(fake, built):
    raw, expected = fake
    _, reader, records = built
    adapter = _adapter()
    starts = {s.key: s.locators["start_s"] for s in adapter.list_samples(raw).samples}
    assert set(starts.values()) == {BEFORE, BEFORE + STRIDE_SECONDS}  # every file, the bit-23 Status one included
    facts = read_bdf_facts(str(raw / "Sessions" / "262" / bdf_name(262, 3)), 0xFFFF)
    assert facts.onsets == (round(BEFORE * RATE), round((BEFORE + CLIP_SECONDS) * RATE))
    assert len(facts.labels) == 47 and facts.labels[-1] == "Status" and facts.rates["Resp"] == 256.0
    physio = reader.array("physio")
    assert physio.shape[1:] == (4, int(WINDOW_SECONDS * 128)) and physio.dtype == np.float32
    step = (PHYSICAL[1] - PHYSICAL[0]) / (2**24 - 1)  # one 24-bit step in physical units
    sample = next(s for s in adapter.list_samples(raw).samples if s.key == "262/w01")
    media = adapter.load(raw, sample)
    assert media.physio_rates == dict.fromkeys(DEFAULT_LABELS, 256.0)
    for row, (name, label) in enumerate(DEFAULT_LABELS.items()):
        written = expected["signals"][262][label][window_samples(1)]
        assert np.allclose(media.physio[name], written, atol=step)  # the window read back from the BDF
        cached = physio[records["262/w01"]][row]
        assert np.allclose(cached, resample_signal(media.physio[name], 256.0, 128.0).astype(np.float32), rtol=1e-6)
    assert reader.manifest["physio_channels"] == ["ecg", "gsr", "rsp", "temp"]
    assert reader.manifest["physio_source_channels"] == DEFAULT_LABELS


def test_mahnob_baseline_correction_uses_the_stretch_before_the_stimulus_onset(fake, built):
    import edfio

    raw, _ = fake
    datamodule, _, _ = built
    bdf = edfio.read_bdf(raw / "Sessions" / "262" / bdf_name(262, 3))
    read = {s.label: np.asarray(s.data, dtype=np.float64) for s in bdf.signals}  # the values the adapter reads
    onset = round(BEFORE * RATE)
    for correction, seconds in (("subtract", None), ("standardise", None), ("subtract", 2.0)):
        adapter = _adapter(baseline_correction=correction, baseline_seconds=seconds)
        sample = next(s for s in adapter.list_samples(raw).samples if s.key == "262/w01")
        assert sample.locators["stimulus_s"] == BEFORE
        media = adapter.load(raw, sample)
        begin = 0 if seconds is None else onset - round(seconds * RATE)
        for name, label in DEFAULT_LABELS.items():
            rest = read[label][begin:onset]  # all 3 s before the first trigger, or the last 2 s of them
            wanted = read[label][window_samples(1)] - rest.mean()
            if correction == "standardise":
                wanted = wanted / rest.std()
            np.testing.assert_allclose(media.physio[name], wanted, rtol=1e-12, atol=1e-9)
    short = _adapter(baseline_correction="subtract", baseline_seconds=30.0)  # the release's 30 s; the fake has 3
    sample = next(s for s in short.list_samples(raw).samples if s.key == "262/w01")
    with pytest.raises(SampleError) as raised:
        short.load(raw, sample)
    assert raised.value.reason == "baseline too short" and "3.000 s before the stimulus's onset" in raised.value.detail
    # the options enter the fingerprint only when the correction is on: caches built before stay valid
    off = _adapter().settings()
    assert "baseline_correction" not in off and "baseline_seconds" not in off
    assert "stimulus_s" not in next(iter(_adapter().list_samples(raw).samples)).locators
    variants = [off] + [
        _adapter(baseline_correction=c, baseline_seconds=b).settings()
        for c, b in (("subtract", None), ("standardise", None), ("subtract", 2.0))
    ]
    assert len({fingerprint(v) for v in variants}) == 4
    with pytest.raises(StaleCacheError, match="baseline_correction"):
        tiny_datamodule(
            _adapter(baseline_correction="standardise"), raw, datamodule.root, modalities=["physio"]
        ).setup()
    with pytest.raises(ValueError, match="at least 1 s"):
        MAHNOBHCI(baseline_correction="subtract", baseline_seconds=0.5)


def test_mahnob_header_rate_and_stimulus_checks(fake):
    raw, _ = fake
    lenient = _adapter(sampling_rate=None)  # any header rate: the 512-Hz file is read (and resampled later)
    listing = lenient.list_samples(raw)
    sample = next(s for s in listing.samples if s.key == "12/w00")
    assert lenient.load(raw, sample).physio_rates["ecg"] == 512.0
    rejected = {r.source: r.reason for r in listing.rejected}
    # still refused: 512-Hz samples under a 256-Hz header make the clip twice as long as cutLenSec
    assert rejected[f"Sessions/14/{bdf_name(14, 1)}"] == "sampling rate other than declared"
    assert f"Sessions/12/{bdf_name(12, 1)}" not in rejected
    tolerant = _adapter(stimulus_tolerance=0.24)  # 10 s of triggers against cutLenSec 13: off by 23 %
    assert any(s.sequence == "150" for s in tolerant.list_samples(raw).samples)
    unclipped = _adapter(clip_at_header_range=False)
    sample = next(s for s in unclipped.list_samples(raw).samples if s.key == "134/w01")
    assert unclipped.load(raw, sample).physio["gsr"].max() == pytest.approx(PHYSICAL[1], abs=0.05)


def test_mahnob_face_video_and_audio_where_the_session_has_them(fake, tmp_path):
    raw, expected = fake
    adapter = _adapter(media=["face", "audio"])
    listing = adapter.list_samples(raw)
    media_rejections = sorted((r.source, r.reason) for r in listing.rejected if r.source not in expected["rejections"])
    assert media_rejections == expected["media_rejections"]
    for sample in listing.samples:
        frame, audio = expected["media"][sample.key]
        assert sample.locators.get("video_frame") == frame, sample.key  # the frame at the window's centre
        assert ("audio" in sample.locators) == audio, sample.key
    assert next(s for s in listing.samples if s.key == "2/w01").locators["video_frame"] == round(10.5 * FPS)
    assert "C1 trigger" in next(s for s in listing.samples if s.key == "2/w00").locators["video"]
    datamodule = _datamodule(
        raw,
        tmp_path / "cache",
        modalities=["physio", "face", "audio"],
        preprocessing=MediaPreprocessing(image_size=32, audio_seconds=1.0),
        media=["face", "audio"],
    )
    reader = datamodule.prepare()
    keys = [r["key"] for r in datamodule.sample_records()]
    flags = np.asarray(reader.array("present"), dtype=bool)
    present = {keys[i]: tuple(bool(v) for v in flags[i]) for i in reader.usable}
    assert present["2/w00"] == present["2/w01"] == (True, True, True)  # physio, face, audio
    assert present["6/w00"] == (True, True, False)  # no audio file
    assert present["6/w01"] == (True, False, False)  # past the video's end
    assert present["132/w00"] == (True, False, False)
    index = {key: i for i, key in enumerate(keys)}
    audio = np.asarray(reader.array("audio")[index["2/w00"]], dtype=np.float32)
    assert abs(dominant_hz(audio, 16000) - AUDIO_HZ) < 5
    assert np.asarray(reader.array("face")[index["2/w00"]]).std() > 5  # a face crop, not an empty image
    # only participant 1's sessions have a camera and audio file: a split without them is refused at set-up
    with pytest.raises(DataError, match="face is in no sample of the train"):
        datamodule.setup()


def test_mahnob_subject_independent_and_subject_dependent_protocols(built):
    datamodule, reader, _ = built
    records = datamodule.sample_records()
    subjects = {name: {records[i]["subject"] for i in idx} for name, idx in datamodule.splits.items()}
    assert_subject_disjoint({"subjects": subjects})
    assert [len(subjects[name]) for name in ("train", "val", "test")] == [2, 1, 1]
    usable = reader.usable
    names = np.asarray([records[i]["subject"] for i in usable])
    sessions = np.asarray([records[i]["sequence"] for i in usable])
    official = np.full(usable.size, "")
    tested = [SubjectKFold(num_folds=4, fold=k).split(names, official)["test"] for k in range(4)]
    assert sorted(np.unique(names[t]).item() for t in tested) == ["P1", "P2", "P3", "P4"]  # leave one out
    assert np.array_equal(np.sort(np.concatenate(tested)), np.arange(usable.size))
    folds = [WithinSubjectKFold(num_folds=3, fold=k).split_recordings(names, official, sessions) for k in range(3)]
    for splits in folds:
        for name in ("train", "val", "test"):
            assert set(names[splits[name]]) == {"P1", "P2", "P3", "P4"}  # every participant in every split
        seen = [set(sessions[splits[name]]) for name in ("train", "val", "test")]
        assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])  # no session straddles two
    assert np.array_equal(np.sort(np.concatenate([f["test"] for f in folds])), np.arange(usable.size))


def test_mahnob_subject_dependent_protocol_through_the_datamodule(fake, built):
    raw, _ = fake
    datamodule, _, _ = built
    within = _datamodule(raw, datamodule.root, split=WithinSubjectKFold(num_folds=3, fold=2))
    within.setup()  # same settings: the prepared cache is reused
    records = within.sample_records()
    sessions = {name: {records[i]["sequence"] for i in idx} for name, idx in within.splits.items()}
    subjects = {name: {records[i]["subject"] for i in idx} for name, idx in within.splits.items()}
    assert subjects["train"] == subjects["val"] == subjects["test"] == {"P1", "P2", "P3", "P4"}
    assert not (sessions["train"] & sessions["test"] or sessions["val"] & sessions["test"])


def test_mahnob_options_are_checked(fake):
    raw, _ = fake
    eeg = _adapter(include_eeg=True)
    assert len(eeg.physio_layout().channels) == 36 and eeg.physio_layout().channels[4] == "Fp1"
    sample = next(s for s in eeg.list_samples(raw).samples if s.key == "2/w00")
    assert set(eeg.load(raw, sample).physio) == set(eeg.physio_layout().channels)
    with pytest.raises(ValueError, match="choose distinct names"):
        MAHNOBHCI(channels=["eda"])
    with pytest.raises(ValueError, match="Status"):
        MAHNOBHCI(channel_table={"ecg": "Status"}, channels=["ecg"])
    with pytest.raises(ValueError, match="vocabulary"):
        MAHNOBHCI(emotion_codes={1: "amusement"})
    with pytest.raises(ValueError, match="class_target"):
        MAHNOBHCI(class_target="liking")
    with pytest.raises(DataError, match="not a whole number"):
        MAHNOBHCI(window_seconds=1.001)
    with pytest.raises(ValueError, match="media"):
        MAHNOBHCI(media=["eeg"])


def test_mahnob_refuses_a_folder_without_sessions(tmp_path):
    (tmp_path / "raw" / "Metadata").mkdir(parents=True)
    with pytest.raises(DataError, match="Sessions/<number>/session.xml"):
        _datamodule(tmp_path / "raw", tmp_path / "cache").prepare()


def test_mahnob_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: _datamodule(raw, root), tmp_path, count=9)
    assert straight == resumed


def test_mahnob_fits_through_its_config(fake, tmp_path):
    raw, _ = fake
    fit_through_config(
        "mahnob_hci.yaml",
        raw,
        tmp_path / "cache",
        tmp_path,
        [
            f"--data.init_args.dataset.init_args.window_seconds={WINDOW_SECONDS}",
            f"--data.init_args.dataset.init_args.stride_seconds={STRIDE_SECONDS}",
            "--data.init_args.split.init_args.num_folds=4",
        ],
    )
