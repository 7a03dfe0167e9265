import json

import numpy as np
import pytest

from multimodal_fer.datasets import WESAD, SubjectKFold
from multimodal_fer.datasets.wesad import WESAD_CHANNEL_TABLE, _signal
from multimodal_fer.errors import DataError
from multimodal_fer.media.signals import SignalQuality
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing
from multimodal_fer.types import UNION_LABEL_SPACE

from adapter_checks import assert_subject_disjoint, fit_through_config, kill_midway_then_resume, tiny_datamodule
from data.wesad.generate import (
    CHANNELS,
    ECG_LIMITS,
    LABEL_RATE,
    STRIDE_SECONDS,
    WINDOW_SECONDS,
    ecg,
    respiration,
    wrist_eda,
    write_fake_wesad,
)

TIMING = {"window_seconds": WINDOW_SECONDS, "stride_seconds": STRIDE_SECONDS}


def _adapter(**options):
    options.setdefault("channels", CHANNELS)
    options.setdefault("quality", SignalQuality(clip_limits={"ecg": ECG_LIMITS}))
    return WESAD(**TIMING, **options)


def _datamodule(raw, root, **options):
    return tiny_datamodule(_adapter(**options), raw, root, split=SubjectKFold(num_folds=4))


def _failures(root):
    return [json.loads(line) for line in (root / "failures.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("wesad_raw")
    return raw, write_fake_wesad(raw)


@pytest.fixture(scope="module")
def built(fake, tmp_path_factory):
    """The fake prepared once (six channels, ECG clip limits): (data module, reader, records by key)."""
    raw, _ = fake
    datamodule = _datamodule(raw, tmp_path_factory.mktemp("wesad_cache") / "cache")
    reader = datamodule.prepare()
    datamodule.setup()
    records = {r["key"]: i for i, r in enumerate(datamodule.sample_records())}
    return datamodule, reader, records


def test_wesad_prepares_expected_windows_labels_failures_and_rejections(fake, built):
    _, expected = fake
    datamodule, reader, records = built
    names = datamodule.label_space.expressions
    assert names == ("baseline", "stress", "amusement")
    expr = np.asarray(reader.array("expr"))
    usable = set(reader.usable.tolist())
    assert sorted(records) == sorted(expected["labels"])  # every labelled window is listed, nothing else
    assert {k: names[expr[i]] for k, i in records.items() if i in usable} == {
        k: name for k, name in expected["labels"].items() if k not in expected["failed"]
    }
    failures = _failures(reader.root)
    assert {f["key"]: f["reason"] for f in failures if f["index"] is not None} == expected["failed"]
    assert {f["source"]: f["reason"] for f in failures if f["index"] is None} == expected["rejections"]
    details = {f["key"]: f["detail"] for f in failures if f["index"] is not None}
    assert details["S6/w00003"] == "wrist_bvp: 14080 samples over 110 s imply 128 Hz, not the declared 64 Hz"
    assert details["S3/w00003"] == "eda: 1400 of 7000 samples are NaN or infinite"
    summary = datamodule.summary()
    assert summary["usable"] == 29 and summary["failed"] == 19 and summary["rejected_while_listing"] == 45
    assert summary["expression_counts"] == {"baseline": 14, "stress": 11, "amusement": 4}
    assert summary["modalities"] == {"physio": 29} and summary["va_labelled"] == 0
    assert summary["failures"]["transient (code 0)"] == 5 and summary["failures"]["unknown label code"] == 1
    assert summary["failures"]["code to ignore (5, 6 or 7)"] == 5
    assert summary["failures"]["condition not used: meditation"] == 5


def test_wesad_cache_holds_every_channel_resampled_to_128_hz(built):
    _, reader, records = built
    physio = reader.array("physio")
    assert physio.shape[1:] == (6, 1280) and physio.dtype == np.float32
    assert reader.manifest["physio_channels"] == CHANNELS and reader.manifest["physio_sample_rate"] == 128
    assert reader.manifest["physio_sources"]["wrist_bvp"] == ["wrist", "BVP", 0, 64.0]
    window = physio[records["S2/w00003"]]  # 15-25 s, baseline
    t = 15.0 + np.arange(1280) / 128
    assert np.allclose(window[2], respiration(t), atol=0.05)  # chest rsp 700 -> 128 Hz, edges included: no droop
    assert np.allclose(window[4], wrist_eda(t), atol=1e-3)  # wrist EDA: a ramp from 4 to 128 Hz, edges included
    assert np.allclose(window[1].mean(), 5.0 + 0.02 * 20.0, atol=0.01)  # chest EDA level kept (µS)
    spectrum = np.abs(np.fft.rfft(window[5] - window[5].mean()))
    assert abs(np.fft.rfftfreq(1280, 1 / 128)[int(np.argmax(spectrum))] - 1.2) < 0.15  # wrist BVP pulse
    peaks = np.flatnonzero(
        (window[0][1:-1] > 0.5) & (window[0][1:-1] >= window[0][:-2]) & (window[0][1:-1] > window[0][2:])
    )
    assert len(peaks) == 12  # 1.2 Hz over 10 s: every R-like peak survives 700 -> 128 Hz
    assert np.allclose(window[0].max(), ecg(np.arange(0, 10, 1 / LABEL_RATE)).max(), atol=0.3)


def test_wesad_batches_from_the_cache(built):
    datamodule, _, _ = built
    batch = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    assert batch["physio"].shape == (4, 6, 1280) and batch["physio"].dtype.is_floating_point
    assert batch["expr"].shape == (4,) and set(batch["expr"].tolist()) <= {0, 1, 2}
    assert batch["va"].shape == (4, 0) and batch["au"].shape == (4, 0)  # conditions only
    assert set(batch["present"]) == {"physio"} and bool(batch["present"]["physio"].all())
    counts = datamodule.expression_class_counts()
    assert counts.shape == (3,) and int(counts.sum()) == datamodule.splits["train"].size


def test_wesad_physiological_features_from_the_resampled_signals(built):
    pytest.importorskip("neurokit2")
    from multimodal_fer.preprocessing.physio_feature_cache import build_physio_feature_cache
    from multimodal_fer.preprocessing.physio_feature_extraction import PHYSIO_FEATURE_NAMES

    _, reader, records = built
    side = build_physio_feature_cache(reader, num_workers=0)
    features, valid = side.array("features"), side.array("valid")
    rate = PHYSIO_FEATURE_NAMES.index("heart_rate_mean")
    scl = PHYSIO_FEATURE_NAMES.index("eda_scl_mean")
    for key in ("S2/w00003", "S2/w00010", "S4/w00005"):
        i = records[key]
        assert valid[i, rate] and abs(features[i, rate] - 72.0) < 2.0  # the fake's 1.2-Hz heart
        assert valid[i, scl] and 5.0 < features[i, scl] < 8.0  # chest EDA in µS


def test_wesad_options_conditions_share_channels(fake):
    raw, _ = fake
    four = WESAD(**TIMING, conditions=["meditation", "baseline", "stress", "amusement"], min_label_share=0.8)
    assert four.label_space.expressions == ("baseline", "stress", "amusement", "meditation")  # code order
    labels = {s.key: four.label_space.expressions[s.labels.expr] for s in four.list_samples(raw).samples}
    assert labels["S2/w00002"] == "baseline"  # 8 of its 10 s are baseline
    assert labels["S2/w00020"] == "meditation"  # 9 of 10 s
    assert "S2/w00001" not in labels and "S2/w00008" not in labels  # 7 s transient; 6 s stress
    assert sum(key.startswith("S2/") for key in labels) == 12  # w02-w06, w09-w12, w17-w18, w20
    default = WESAD(**TIMING)
    assert default.physio_layout().channels == ("ecg", "eda", "rsp", "temp")
    assert default.default_protocol().describe() == "SubjectKFold(num_folds=15, fold=0, seed=0)"
    # keys differ in case between public loaders: both are found
    assert _signal({"chest": {"RESP": 1}}, "chest", "Resp") == 1 and _signal({"chest": {}}, "chest", "Resp") is None
    with pytest.raises(ValueError, match="at least two"):
        WESAD(conditions=["stress"])
    with pytest.raises(ValueError, match="choose distinct names"):
        WESAD(channels=["ppg"])
    with pytest.raises(DataError, match="not a whole number"):
        WESAD(channels=["wrist_eda"], window_seconds=10.1)
    assert set(WESAD_CHANNEL_TABLE) >= set(CHANNELS)


def test_wesad_label_space_is_not_an_expression_space():
    space = WESAD().label_space
    expr, _, _ = space.map_labels(UNION_LABEL_SPACE, np.arange(3), np.zeros((3, 0)), np.zeros((3, 0)))
    assert expr.tolist() == [-1, -1, -1]  # baseline is not "neutral", amusement not "happy"
    with pytest.raises(ValueError, match="vocabulary"):
        space.in_vocabulary()


def test_wesad_leave_one_subject_out(built):
    datamodule, _, _ = built
    records = datamodule.sample_records()
    subjects = {name: {records[i]["subject"] for i in idx} for name, idx in datamodule.splits.items()}
    assert_subject_disjoint({"subjects": subjects})
    assert [len(subjects[name]) for name in ("train", "val", "test")] == [2, 1, 1]
    reader = datamodule.reader
    names = np.asarray([records[i]["subject"] for i in reader.usable])
    tested = [set(names[SubjectKFold(4, fold).split(names, np.full(names.size, ""))["test"]]) for fold in range(4)]
    assert sorted(next(iter(t)) for t in tested) == ["S2", "S3", "S4", "S5"]  # each subject tested once


def test_wesad_processor_refuses_windows_it_cannot_stack(built):
    from multimodal_fer.datasets import RawMedia, RawSample, SampleError

    datamodule, _, _ = built
    processor = datamodule._processor(datamodule.adapter.list_samples(datamodule.raw_root))
    sample = RawSample(key="k", subject="S2", source="s")
    ok = {name: np.zeros(7000) + np.arange(7000) for name in CHANNELS}
    rates = dict.fromkeys(CHANNELS, 700.0)
    assert processor(sample, RawMedia(physio=ok, physio_rates=rates), 0)["physio"].shape == (6, 1280)
    cases = {
        "missing physiological channel": ({k: v for k, v in ok.items() if k != "rsp"}, rates),
        "physiological window of the wrong length": ({**ok, "eda": np.zeros(6999)}, rates),
        "physiological channel without its sampling rate": (ok, {k: v for k, v in rates.items() if k != "ecg"}),
        "non-finite signal": ({**ok, "temp": np.full(7000, np.nan)}, rates),
    }
    for reason, (signals, signal_rates) in cases.items():
        with pytest.raises(SampleError) as error:
            processor(sample, RawMedia(physio=signals, physio_rates=signal_rates), 0)
        assert error.value.reason == reason


def test_wesad_refuses_a_folder_without_subjects(tmp_path):
    (tmp_path / "raw" / "WESAD" / "S2").mkdir(parents=True)
    (tmp_path / "raw" / "WESAD" / "S2" / "S2_quest.csv").write_text("# Subj;S2\n")
    with pytest.raises(DataError, match="WESAD/S2/S2.pkl"):
        _datamodule(tmp_path / "raw", tmp_path / "cache").prepare()


def test_wesad_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: _datamodule(raw, root), tmp_path, count=11)
    assert straight == resumed


def test_wesad_fits_through_its_config(fake, tmp_path):
    raw, _ = fake
    fit_through_config(
        "wesad.yaml",
        raw,
        tmp_path / "cache",
        tmp_path,
        [
            "--data.init_args.modalities=[physio]",
            f"--data.init_args.dataset.init_args.window_seconds={WINDOW_SECONDS}",
            f"--data.init_args.dataset.init_args.stride_seconds={STRIDE_SECONDS}",
            "--data.init_args.split.init_args.num_folds=4",
        ],
    )


def test_wesad_model_rate_is_a_preprocessing_setting(fake, tmp_path):
    raw, _ = fake
    datamodule = tiny_datamodule(
        _adapter(channels=["ecg", "emg"]),
        raw,
        tmp_path / "cache",
        split=SubjectKFold(num_folds=4),
        preprocessing=MediaPreprocessing(physio_sample_rate=350),
    )
    reader = datamodule.prepare()
    assert reader.array("physio").shape[1:] == (2, 3500)  # EMG kept at 350 Hz when asked
    assert reader.manifest["physio_sample_rate"] == 350
