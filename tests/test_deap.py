import json

import numpy as np
import pytest

from multimodal_fer.datamodules.subject_normalisation import NO_WINDOWS, STATISTICS_NAME
from multimodal_fer.datasets import DEAP, SubjectKFold, WithinSubjectKFold
from multimodal_fer.datasets.deap import DEAP_EEG_CHANNELS
from multimodal_fer.errors import DataError, StaleCacheError
from multimodal_fer.fingerprints import fingerprint
from multimodal_fer.media.signals import SignalQuality
from multimodal_fer.preprocessing.physio_feature_cache import physio_signal_layout
from multimodal_fer.types import UNION_LABEL_SPACE

from adapter_checks import assert_subject_disjoint, fit_through_config, kill_midway_then_resume, tiny_datamodule
from data.deap.generate import (
    BASELINE_SECONDS,
    FOLDER,
    RSP_LIMITS,
    STRIDE_SECONDS,
    TEMP,
    TRIAL_SECONDS,
    WINDOW_SECONDS,
    deap_file,
    window_bounds,
    write_fake_deap,
)
from data.python2_pickle import write_python2_pickle

PERIPHERAL = [32, 33, 34, 35, 36, 37, 38, 39]
FAKE_TIMING = {"trial_seconds": TRIAL_SECONDS, "window_seconds": WINDOW_SECONDS, "stride_seconds": STRIDE_SECONDS}


def _adapter(**options):
    quality = options.pop("quality", SignalQuality(clip_limits={"rsp": RSP_LIMITS}))
    return DEAP(**FAKE_TIMING, quality=quality, **options)


def _datamodule(raw, root, split=None, **options):
    return tiny_datamodule(_adapter(**options), raw, root, split=split or SubjectKFold(num_folds=4))


def _failures(root):
    return [json.loads(line) for line in (root / "failures.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("deap_raw")
    return raw, write_fake_deap(raw)


@pytest.fixture(scope="module")
def built(fake, tmp_path_factory):
    """The fake prepared once (clip limits on the respiration): (data module, reader, records by key)."""
    raw, _ = fake
    datamodule = _datamodule(raw, tmp_path_factory.mktemp("deap_cache") / "cache")
    reader = datamodule.prepare()
    datamodule.setup()
    records = {r["key"]: i for i, r in enumerate(datamodule.sample_records())}
    return datamodule, reader, records


def test_deap_prepares_expected_windows_failures_and_rejections(fake, built):
    _, expected = fake
    datamodule, reader, records = built
    assert sorted(records) == sorted(expected["listed"])  # 2 windows per trial; the rejected trial has none
    failures = _failures(reader.root)
    by_key = {f["key"]: f["reason"] for f in failures if f["index"] is not None}
    assert by_key == expected["failed"]
    assert {f["source"]: f["reason"] for f in failures if f["index"] is None} == expected["rejections"]
    details = {f["key"]: f["detail"] for f in failures if f["index"] is not None}
    assert details["s02/t02/w01"] == "gsr: 640 of 640 samples are NaN or infinite"
    assert details["s05/t01/w00"] == "trial 1: 3328 samples over 13 s imply 256 Hz, not the declared 128 Hz"
    assert "ends after 1280" in details["s04/t01/w01"]
    usable = {key for key, i in records.items() if i in set(reader.usable.tolist())}
    assert usable == set(expected["listed"]) - set(expected["failed"])
    summary = datamodule.summary()
    assert summary["usable"] == 22 and summary["failed"] == 16 and summary["rejected_while_listing"] == 4
    assert summary["modalities"] == {"physio": 22} and summary["va_labelled"] == 22
    assert summary["expression_counts"] == {}  # no binary target: dimensions only
    assert summary["failures"]["sampling rate other than declared"] == 8
    assert summary["failures"]["truncated signal"] == 4 and summary["failures"]["flat signal"] == 2
    assert summary["failures"]["clipped signal"] == 1 and summary["failures"]["non-finite signal"] == 1


def test_deap_ratings_map_to_the_unit_scale_and_the_binary_protocol(fake, built):
    raw, _ = fake
    _, reader, records = built
    va = np.asarray(reader.array("va"))
    # s01's trials: (7, 2, 5), (1, 9, 3), (5, 5, 5), (8.5, 6.2, 1) on 1-9 -> 2 (r - 1) / 8 - 1
    expected = {1: (0.5, -0.75, 0.0), 2: (-1.0, 1.0, -0.5), 3: (0.0, 0.0, 0.0), 4: (0.875, 0.3, -1.0)}
    for trial, values in expected.items():
        for window in (0, 1):
            assert np.allclose(va[records[f"s01/t{trial:02d}/w{window:02d}"]], values, atol=1e-6)
    assert np.all(np.asarray(reader.array("expr"))[reader.usable] == -1)
    # binary high/low: a rating of at least 5 is high; liking only exists as a binary target
    arousal = _adapter(binary_target="arousal")
    assert arousal.label_space.expressions == ("low_arousal", "high_arousal")
    classes = {s.key: s.labels.expr for s in arousal.list_samples(raw).samples if s.key.startswith("s01/")}
    assert [classes[f"s01/t{t:02d}/w00"] for t in (1, 2, 3, 4)] == [0, 1, 1, 1]  # 2, 9, 5, 6.2
    liking = _adapter(binary_target="liking", binary_threshold=6.0, dominance=False)
    assert liking.label_space.dimensions == ("valence", "arousal")
    labels = {s.key: s.labels for s in liking.list_samples(raw).samples}
    assert [labels[f"s01/t{t:02d}/w01"].expr for t in (1, 2, 3, 4)] == [1, 0, 0, 0]  # 9, 1, 5, 4.9
    assert labels["s01/t01/w00"].va == pytest.approx((0.5, -0.75))
    # the classes are not expressions: mapped into the package's union space they are unlabelled
    expr, _, _ = arousal.label_space.map_labels(UNION_LABEL_SPACE, np.array([0, 1]), np.zeros((2, 0)), np.zeros((2, 3)))
    assert expr.tolist() == [-1, -1]
    with pytest.raises(ValueError, match="vocabulary"):
        arousal.label_space.in_vocabulary()


def test_deap_windows_hold_the_trial_after_its_baseline(fake, built):
    _, expected = fake
    _, reader, records = built
    physio = reader.array("physio")
    assert physio.shape[1:] == (8, int(WINDOW_SECONDS * 128)) and physio.dtype == np.float32
    data = expected["arrays"]["s01"]
    for trial in (1, 4):
        for window in (0, 1):
            cached = physio[records[f"s01/t{trial:02d}/w{window:02d}"]]
            raw = data[trial - 1][PERIPHERAL][:, window_bounds(window)]  # DEAP's 128 Hz: no resampling
            assert np.array_equal(cached, raw.astype(np.float32))
    assert window_bounds(0).start == int(BASELINE_SECONDS * 128)  # the 3-s baseline is never a window
    manifest = reader.manifest
    assert manifest["physio_channels"] == [
        "heog",
        "veog",
        "emg_zygomaticus",
        "emg_trapezius",
        "gsr",
        "rsp",
        "ppg",
        "temp",
    ]
    assert manifest["physio_sample_rate"] == 128
    assert manifest["physio_source_channels"]["gsr"] == 36
    assert physio_signal_layout(reader) == (128.0, tuple(manifest["physio_channels"]))


def test_deap_batches_from_the_cache(built):
    datamodule, _, _ = built
    batch = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    assert batch["physio"].shape == (4, 8, 640) and batch["physio"].dtype.is_floating_point
    assert batch["va"].shape == (4, 3) and batch["expr"].shape == (4,)
    assert set(batch["present"]) == {"physio"} and bool(batch["present"]["physio"].all())
    standardised = batch["physio"].double()  # per window and channel (float32 sums: 1e-3 for the 32-degree skin)
    assert np.allclose(standardised.mean(-1).numpy(), 0.0, atol=1e-3)
    assert np.allclose(standardised.std(-1).numpy(), 1.0, atol=1e-2)  # std + 1e-4: the 0.015-degree skin, 0.993


def test_deap_baseline_correction_uses_each_trials_pre_trial_baseline(fake):
    raw, expected = fake
    data = expected["arrays"]["s01"]
    baseline = slice(0, int(BASELINE_SECONDS * 128))
    for correction in ("subtract", "standardise"):
        adapter = _adapter(baseline_correction=correction)
        sample = next(s for s in adapter.list_samples(raw).samples if s.key == "s01/t02/w01")
        media = adapter.load(raw, sample)
        for name, index in zip(adapter.channels, PERIPHERAL, strict=True):
            rest = data[1, index, baseline]  # trial 2's first 3 s
            wanted = data[1, index, window_bounds(1)] - rest.mean()
            if correction == "standardise":
                wanted = wanted / rest.std()
            np.testing.assert_allclose(media.physio[name], wanted, rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError, match="baseline_correction"):
        DEAP(baseline_correction="zscore")
    with pytest.raises(ValueError, match="at least 1 s"):
        DEAP(baseline_seconds=0.0, baseline_correction="subtract")


def test_deap_flat_baseline_is_recorded_and_the_correction_changes_the_fingerprint(fake, built, tmp_path):
    raw, _ = fake
    datamodule, _, _ = built
    assert "baseline_correction" not in _adapter().settings()  # caches built before the option stay valid
    settings = [_adapter(baseline_correction=c).settings() for c in ("none", "subtract", "standardise")]
    assert len({fingerprint(s) for s in settings}) == 3
    with pytest.raises(StaleCacheError, match="baseline_correction"):
        tiny_datamodule(_adapter(baseline_correction="subtract"), raw, datamodule.root).setup()
    content = deap_file("s01")
    content["data"][0, TEMP, : int(BASELINE_SECONDS * 128)] = 31.0  # trial 1: the probe settles after the baseline
    write_python2_pickle(tmp_path / "raw" / FOLDER / "s01.dat", content)
    _datamodule(tmp_path / "raw", tmp_path / "cache", baseline_correction="standardise").prepare()
    failed = {f["key"]: (f["reason"], f["detail"]) for f in _failures(tmp_path / "cache") if f["index"] is not None}
    flat = ("flat baseline", "baseline of temp: constant at 31 over 384 samples")
    assert failed == {"s01/t01/w00": flat, "s01/t01/w01": flat}


def test_deap_batches_normalised_per_subject(fake, built):
    raw, _ = fake
    datamodule, reader, _ = built
    subject = tiny_datamodule(
        _adapter(), raw, datamodule.root, split=SubjectKFold(num_folds=4), physio_normalisation="subject"
    )
    batch = subject.on_after_batch_transfer(next(iter(subject.test_dataloader())), 0)
    codes = np.asarray(reader.array("subject"))
    physio, usable = np.asarray(reader.array("physio"), dtype=np.float64), reader.usable
    for row, index in enumerate(batch["index"].tolist()):
        own = physio[usable[codes[usable] == codes[index]]]  # every usable window of the subject, all splits
        mean, std = own.mean(axis=(0, 2))[:, None], own.std(axis=(0, 2))[:, None]
        np.testing.assert_allclose(batch["physio"][row].numpy(), (physio[index] - mean) / std, rtol=1e-4, atol=1e-4)
    assert (datamodule.root / STATISTICS_NAME).is_file()
    with pytest.raises(ValueError, match="physio_normalisation"):
        tiny_datamodule(_adapter(), raw, datamodule.root, physio_normalisation="trial")


def test_deap_subject_independent_and_subject_dependent_protocols(built):
    datamodule, _, _ = built
    records = datamodule.sample_records()
    subjects = {name: {records[i]["subject"] for i in idx} for name, idx in datamodule.splits.items()}
    assert_subject_disjoint({"subjects": subjects})
    assert [len(subjects[name]) for name in ("train", "val", "test")] == [2, 1, 1]
    assert set().union(*subjects.values()) == {"s01", "s02", "s03", "s04"}  # s05 has no usable window

    reader = datamodule.reader
    usable = reader.usable
    subjects_all = np.asarray([records[i]["subject"] for i in usable])
    trials = np.asarray([records[i]["sequence"] for i in usable])
    protocol = WithinSubjectKFold(num_folds=3, fold=0)
    splits = protocol.split_recordings(subjects_all, np.full(usable.size, ""), trials)
    for name in ("train", "val", "test"):
        assert set(subjects_all[splits[name]]) == {"s01", "s02", "s03", "s04"}  # every subject in every split
    seen = [set(trials[splits[name]]) for name in ("train", "val", "test")]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])  # no trial straddles two splits
    assert sum(len(s) for s in seen) == len(set(trials.tolist()))
    folds = [
        WithinSubjectKFold(num_folds=3, fold=k).split_recordings(subjects_all, np.full(usable.size, ""), trials)
        for k in range(3)
    ]
    tested = np.sort(np.concatenate([f["test"] for f in folds]))
    assert np.array_equal(tested, np.arange(usable.size))  # each window tested exactly once over the folds
    alone = WithinSubjectKFold(num_folds=3, subjects=["s01"]).split_recordings(
        subjects_all, np.full(usable.size, ""), trials
    )
    assert set(subjects_all[np.concatenate(list(alone.values()))]) == {"s01"}
    mine = splits["test"][subjects_all[splits["test"]] == "s01"]
    assert np.array_equal(alone["test"], mine)  # a participant's folds do not depend on the others
    with pytest.raises(ValueError, match="fewer than num_folds=4"):
        WithinSubjectKFold(num_folds=4).split_recordings(subjects_all, np.full(usable.size, ""), trials)
    with pytest.raises(ValueError, match="split_recordings"):
        WithinSubjectKFold().split(subjects_all, np.full(usable.size, ""))
    assert "subject-dependent" in protocol.describe()


def test_deap_subject_dependent_protocol_through_the_datamodule(fake, built, tmp_path):
    raw, _ = fake
    datamodule, _, _ = built
    within = _datamodule(raw, datamodule.root, split=WithinSubjectKFold(num_folds=3, fold=1))
    within.setup()  # same settings: the prepared cache is reused
    records = within.sample_records()
    trials = {name: {records[i]["sequence"] for i in idx} for name, idx in within.splits.items()}
    subjects = {name: {records[i]["subject"] for i in idx} for name, idx in within.splits.items()}
    assert subjects["train"] == subjects["val"] == subjects["test"] == {"s01", "s02", "s03", "s04"}
    assert not (trials["train"] & trials["test"] or trials["val"] & trials["test"] or trials["train"] & trials["val"])


def test_deap_channels_eeg_and_quality_options(fake):
    raw, _ = fake
    eeg = _adapter(include_eeg=True)
    assert eeg.physio_layout().channels[:8] == (
        "heog",
        "veog",
        "emg_zygomaticus",
        "emg_trapezius",
        "gsr",
        "rsp",
        "ppg",
        "temp",
    )
    assert eeg.physio_layout().channels[8:] == DEAP_EEG_CHANNELS and len(eeg.physio_layout().channels) == 40
    sample = next(s for s in eeg.list_samples(raw).samples if s.key == "s01/t02/w01")
    media = eeg.load(raw, sample)
    data = deap_file("s01")["data"]  # the same deterministic signals
    assert np.array_equal(media.physio["Oz"], data[1, 14, window_bounds(1)])
    assert media.physio_rates["Fp1"] == 128.0
    only = DEAP(**FAKE_TIMING, channels=["rsp", "gsr"])
    assert only.physio_layout().channels == ("rsp", "gsr")
    # without clip limits (the default) the clipped respiration is not judged
    clipped = next(s for s in only.list_samples(raw).samples if s.key == "s03/t01/w00")
    assert only.load(raw, clipped).physio["rsp"].max() == 1.0
    with pytest.raises(ValueError, match="choose among"):
        DEAP(channels=["ecg"])
    with pytest.raises(DataError, match="not a whole number"):
        DEAP(window_seconds=1.003)
    with pytest.raises(ValueError, match="binary_target"):
        DEAP(binary_target="happiness")
    with pytest.raises(ValueError, match="holds no"):
        DEAP(trial_seconds=5.0, window_seconds=4.0)


def test_deap_refuses_a_folder_without_its_files(tmp_path):
    (tmp_path / "raw" / "data_preprocessed_matlab").mkdir(parents=True)
    (tmp_path / "raw" / "data_preprocessed_matlab" / "s01.mat").write_bytes(b"MATLAB")
    with pytest.raises(DataError, match="data_preprocessed_python/s01.dat"):
        _datamodule(tmp_path / "raw", tmp_path / "cache").prepare()


def test_deap_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: _datamodule(raw, root), tmp_path, count=9)
    assert straight == resumed


#: The fake recordings' settings, for fits through configs/data/deap.yaml.
FAKE_FIT_ARGUMENTS = [
    "--data.init_args.modalities=[physio]",
    f"--data.init_args.dataset.init_args.trial_seconds={TRIAL_SECONDS}",
    f"--data.init_args.dataset.init_args.window_seconds={WINDOW_SECONDS}",
    f"--data.init_args.dataset.init_args.stride_seconds={STRIDE_SECONDS}",
    "--data.init_args.split.init_args.num_folds=4",
]


def test_deap_fits_through_its_config(fake, tmp_path):
    raw, _ = fake
    fit_through_config("deap.yaml", raw, tmp_path / "cache", tmp_path, FAKE_FIT_ARGUMENTS)


def test_deap_fits_with_baseline_correction_and_subject_normalisation_through_its_config(fake, tmp_path):
    raw, _ = fake
    options = ["--data.init_args.dataset.init_args.baseline_correction=subtract"]
    options.append("--data.init_args.physio_normalisation=subject")
    fit_through_config("deap.yaml", raw, tmp_path / "cache", tmp_path, [*FAKE_FIT_ARGUMENTS, *options])
    statistics = json.loads((tmp_path / "cache" / STATISTICS_NAME).read_text())
    # usable windows of s01-s04 (the config checks no clipping, so s03's clipped window counts); s05 has none
    assert statistics["windows"] == [8, 5, 6, 4, 0]
    assert statistics["fallbacks"] == [{"subject": "s05", "channel": None, "fallback": NO_WINDOWS}]
    assert (
        json.loads((tmp_path / "cache" / "manifest.json").read_text())["settings"]["adapter"]["baseline_correction"]
        == "subtract"
    )
