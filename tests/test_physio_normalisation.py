"""Pre-stimulus baseline correction and per-subject normalisation of physiology: hand-made signals, SynthAffect."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal_fer.datamodules import SynthAffectDataModule
from multimodal_fer.datamodules.device_transforms import standardize_signals
from multimodal_fer.datamodules.physio_feature_batches import PhysioFeatureStandardizer
from multimodal_fer.datamodules.subject_normalisation import (
    NO_WINDOWS,
    SINGLE_WINDOW,
    STATISTICS_NAME,
    ZERO_VARIANCE,
    SubjectSignalNormaliser,
    compute_subject_statistics,
    subject_statistics,
)
from multimodal_fer.datasets.base import SampleError
from multimodal_fer.datasets.physio_recordings import check_baseline_correction, correct_by_baseline
from multimodal_fer.fingerprints import fingerprint
from multimodal_fer.media.signals import SignalQuality
from multimodal_fer.preprocessing import physio_feature_cache as side_cache
from multimodal_fer.preprocessing.cache import ArraySpec, CacheReader, CacheWriter, open_for_writing
from multimodal_fer.preprocessing.physio_feature_extraction import NUM_PHYSIO_FEATURES, PHYSIO_FEATURES

QUALITY = SignalQuality()
RATE = 4.0  # a 1-s baseline is 4 samples


# --------------------------------------------------------------------------------------- baseline correction
def test_baseline_correction_subtracts_the_mean_or_standardises_by_the_baseline():
    window = {"gsr": np.array([2.0, 4.0, 6.0, 8.0]), "temp": np.array([30.0, 31.0, 32.0, 33.0])}
    baseline = {"gsr": np.array([0.0, 4.0, 0.0, 4.0]), "temp": np.array([31.0, 31.5, 30.5, 31.0, 31.5, 30.5])}
    rates = {"gsr": RATE, "temp": RATE}
    # gsr's baseline: mean 2, population std 2; temp's: mean 31, std sqrt(1/6)
    subtracted = correct_by_baseline(window, baseline, rates, "subtract", QUALITY)
    assert subtracted["gsr"].tolist() == [0.0, 2.0, 4.0, 6.0]
    assert subtracted["temp"].tolist() == [-1.0, 0.0, 1.0, 2.0]
    standardised = correct_by_baseline(window, baseline, rates, "standardise", QUALITY)
    assert standardised["gsr"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert np.allclose(standardised["temp"], np.array([-1.0, 0.0, 1.0, 2.0]) * math.sqrt(6.0), rtol=1e-12)
    assert correct_by_baseline(window, baseline, rates, "none", QUALITY)["gsr"] is window["gsr"]


@pytest.mark.parametrize(
    ("baseline", "reason", "detail"),
    [
        (np.full(8, 5.0), "flat baseline", "baseline of gsr: constant at 5"),
        (np.array([1.0, np.nan, 2.0, 3.0]), "non-finite baseline", "baseline of gsr: 1 of 4 samples are NaN"),
        (np.array([1.0, 2.0, 3.0]), "baseline too short", "gsr: 0.75 s of baseline, fewer than 1 s"),
    ],
)
def test_an_unusable_baseline_fails_the_window_with_its_reason(baseline, reason, detail):
    with pytest.raises(SampleError) as raised:
        correct_by_baseline({"gsr": np.arange(4.0)}, {"gsr": baseline}, {"gsr": RATE}, "subtract", QUALITY)
    assert raised.value.reason == reason and detail in raised.value.detail


def test_baseline_correction_options_are_checked():
    check_baseline_correction("standardise", 3.0)
    check_baseline_correction("subtract", None)  # set per recording, checked when loading
    check_baseline_correction("none", 0.0)
    with pytest.raises(ValueError, match="choose one of"):
        check_baseline_correction("divide", 3.0)
    with pytest.raises(ValueError, match="at least 1 s"):
        check_baseline_correction("subtract", 0.5)


# --------------------------------------------------------------------------------- per-subject statistics
#: Subject a (code 0): windows 0 and 1; b (code 1): window 2 only; c (code 2): only a failed window (3); window 4 (a)
#: failed too, with values that would spoil a's statistics if they were counted.
SUBJECTS = np.array([0, 0, 1, 2, 0], dtype=np.int32)
A0 = np.array([0.0, 2.0, 0.0, 2.0])
A1 = np.array([4.0, 6.0, 4.0, 6.0])  # with A0: mean 3, population variance 5
B = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 8.0], [5.0, 5.0, 5.0, 9.0]])


def _signals() -> np.ndarray:
    """float32 (5, 3, 4): channel 0 as above, channel 1 constant 7 for a, channel 2 = channel 0 + 1e6."""
    physio = np.zeros((5, 3, 4), dtype=np.float32)
    for index, row in ((0, A0), (1, A1)):
        physio[index] = [row, np.full(4, 7.0), row + 1e6]
    physio[2] = B
    physio[3] = 1.0
    physio[4] = 1e9
    return physio


def _cache(root: Path) -> CacheReader:
    specs = [ArraySpec("physio", (3, 4), "float32"), ArraySpec("subject", (), "int32")]
    settings = {"dataset": "hand-made"}
    metadata = {"subjects": ["a", "b", "c"], "physio_channels": ["gsr", "temp", "offset"]}
    writer = CacheWriter(root, specs, 5, fingerprint(settings), settings, metadata)
    arrays = open_for_writing(root, ["physio", "subject"])
    arrays["physio"][:] = _signals()
    arrays["subject"][:] = SUBJECTS
    for array in arrays.values():
        array.flush()
    del arrays
    writer.mark_done([0, 1, 2])
    writer.mark_failed([3, 4])
    writer.finalize()
    return CacheReader(root)


def test_subject_statistics_come_from_each_subjects_usable_windows_with_recorded_fallbacks(tmp_path):
    reader = _cache(tmp_path / "cache")
    statistics = compute_subject_statistics(reader, chunk=2)  # chunks do not change the sums
    assert statistics.windows.tolist() == [2, 1, 0]
    assert statistics.mean[0].tolist() == [3.0, 7.0, 1e6 + 3.0]
    assert statistics.std[0].tolist() == [math.sqrt(5.0), 1.0, math.sqrt(5.0)]  # no precision lost to 1e6
    assert statistics.per_window.tolist() == [False, True, False]
    assert statistics.fallbacks == [
        {"subject": "c", "channel": None, "fallback": NO_WINDOWS},
        {"subject": "b", "channel": None, "fallback": SINGLE_WINDOW},
        {"subject": "a", "channel": "temp", "fallback": ZERO_VARIANCE},
    ]

    normaliser = SubjectSignalNormaliser(statistics)
    signals = torch.from_numpy(_signals()[[0, 1, 2]])
    out = normaliser(signals, torch.tensor([0, 0, 1], dtype=torch.int32))
    assert out.dtype == torch.float32 and out.shape == (3, 3, 4)
    root5 = math.sqrt(5.0)
    assert torch.allclose(out[0, 0], torch.tensor([-3.0, -1.0, -3.0, -1.0]) / root5)
    assert torch.allclose(out[1, 0], torch.tensor([1.0, 3.0, 1.0, 3.0]) / root5)
    assert torch.allclose(out[:2, 2], out[:2, 0])  # the 1e6 offset is gone, nothing else changed
    assert torch.equal(out[:2, 1], torch.zeros(2, 4))  # zero variance: centred only
    assert torch.equal(out[2], standardize_signals(signals[2:3])[0])  # single window: per-window standardisation
    # the per-window standardisation the default applies would make a's two windows identical
    assert torch.allclose(standardize_signals(signals[:2])[0, 0], standardize_signals(signals[:2])[1, 0])
    assert not torch.allclose(out[0, 0], out[1, 0])


def test_subject_statistics_are_stored_beside_the_cache_once_and_recomputed_for_another(tmp_path):
    reader = _cache(tmp_path / "cache")
    first = subject_statistics(reader)
    path = reader.root / STATISTICS_NAME
    stored = json.loads(path.read_text())
    assert stored["cache_fingerprint"] == reader.fingerprint and stored["windows"] == [2, 1, 0]
    assert len(stored["fallbacks"]) == 3
    stored["mean"][0][0] = 100.0  # a stored file is read, not recomputed
    path.write_text(json.dumps(stored))
    assert subject_statistics(reader).mean[0, 0] == 100.0
    stored["cache_fingerprint"] = "another cache"  # ... unless it belongs to another cache
    path.write_text(json.dumps(stored))
    again = subject_statistics(reader)
    assert again.mean[0, 0] == first.mean[0, 0] == 3.0
    assert json.loads(path.read_text())["cache_fingerprint"] == reader.fingerprint
    with pytest.raises(ValueError, match="2 channels but the per-subject statistics have 3"):
        SubjectSignalNormaliser(again)(torch.zeros(1, 2, 4), torch.zeros(1, dtype=torch.long))


def test_features_are_standardised_per_subject_with_the_training_statistics_as_fallback():
    column = next(i for i, f in enumerate(PHYSIO_FEATURES) if not f.log_scale)
    features = np.zeros((5, NUM_PHYSIO_FEATURES), dtype=np.float32)
    valid = np.zeros_like(features, dtype=bool)
    features[:, column] = [1.0, 3.0, 10.0, 20.0, 30.0]
    valid[:, column] = True
    subjects = np.array([0, 0, 1, 2, 2])  # subject 1 has one value: the training statistics instead
    train = np.array([True, True, True, False, False])  # training values 1, 3, 10: mean 14/3
    standardizer = PhysioFeatureStandardizer.fit_per_subject(features, valid, subjects, train, 3)
    assert standardizer.per_subject and standardizer.usable[column]
    assert (1, PHYSIO_FEATURES[column].name) in standardizer.fallbacks
    assert (0, PHYSIO_FEATURES[column].name) not in standardizer.fallbacks
    out, out_valid = standardizer(torch.from_numpy(features), torch.from_numpy(valid), torch.from_numpy(subjects))
    half = 1 / math.sqrt(2)  # two values: (x - mean) / std (ddof 1) = ∓1/√2
    expected_own = [-half, half, None, -half, half]
    for row, value in enumerate(expected_own):
        if value is not None:
            assert out[row, column].item() == pytest.approx(value, rel=1e-6)
    pooled = np.array([1.0, 3.0, 10.0])
    assert out[2, column].item() == pytest.approx((10.0 - pooled.mean()) / pooled.std(ddof=1), rel=1e-6)
    assert bool(out_valid[:, column].all()) and not bool(out_valid[:, column - 1 if column else 1].any())
    with pytest.raises(ValueError, match="subject codes"):
        standardizer(torch.from_numpy(features), torch.from_numpy(valid))


# ------------------------------------------------------------------------------- through a data module (SynthAffect)
def test_synthaffect_batches_normalised_per_subject_signals_and_features(tmp_path):
    pytest.importorskip("neurokit2")
    options = dict(
        num_subjects=4,
        samples_per_subject=3,
        image_size=32,
        audio_seconds=0.5,
        physio_seconds=4.0,
        val_subjects=1,
        test_subjects=1,
        batch_size=4,
        num_workers=0,
        generation_workers=1,
        modalities=["physio"],
    )
    root = tmp_path / "synthaffect"
    SynthAffectDataModule(root=str(root), **options).prepare_data()
    reader = CacheReader(root)
    side_cache.build_physio_feature_cache(reader, num_workers=1)
    datamodule = SynthAffectDataModule(root=str(root), physio_normalisation="subject", physio_features=True, **options)
    datamodule.setup()
    loader = datamodule.ordered_dataloader("train")
    batches = [datamodule.on_after_batch_transfer(batch, 0) for batch in loader]
    physio = np.asarray(reader.array("physio"), dtype=np.float64)
    codes = np.asarray(reader.array("subject"))
    for batch in batches:
        for row, index in enumerate(batch["index"].tolist()):
            own = physio[codes == codes[index]]  # the subject's 3 windows
            mean, std = own.mean(axis=(0, 2))[:, None], own.std(axis=(0, 2))[:, None]
            np.testing.assert_allclose(batch["physio"][row].numpy(), (physio[index] - mean) / std, atol=1e-4)
    # the features too: a subject's valid heart rates have mean 0 after its own standardisation
    column = next(i for i, f in enumerate(PHYSIO_FEATURES) if f.name == "heart_rate_mean")
    features = torch.cat([b["physio_features"][:, column] for b in batches])
    valid = torch.cat([b["physio_features_valid"][:, column] for b in batches])
    subjects = torch.cat([b["subject"] for b in batches])
    assert bool(valid.all())
    for code in subjects.unique():
        assert features[subjects == code].mean().item() == pytest.approx(0.0, abs=1e-5)
    assert datamodule.physio_feature_standardizer.per_subject
    with pytest.raises(ValueError, match="physio modality is not loaded"):
        SynthAffectDataModule(root=str(root), physio_normalisation="subject", **{**options, "modalities": ["face"]})
