"""SynthAffect physiology: determinism, format, validation and measurable arousal effects."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from multimodal_fer.datasets.synthaffect.physio import (
    PHYSIO_CHANNELS,
    PhysioBaseline,
    sample_physio_baseline,
    simulate_physio,
)
from multimodal_fer.errors import DataError

nk = pytest.importorskip("neurokit2")

SR = 128


def _baseline(seed: int) -> PhysioBaseline:
    return sample_physio_baseline(np.random.default_rng(seed))


def _simulate(arousal: float, seed: int, seconds: float = 40.0, valence: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(500 + seed)
    return simulate_physio(_baseline(seed % 3), arousal, valence, seconds, SR, rng)


def heart_rate(ecg: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = nk.ecg_peaks(ecg.astype(np.float64), sampling_rate=SR)
        return float(np.mean(nk.ecg_rate(info["ECG_R_Peaks"], sampling_rate=SR)))


def breathing_rate(rsp: np.ndarray) -> float:
    """Breaths per minute from the mean interval between neurokit2's inhalation peaks.

    (``nk.rsp_rate`` needs more than three breaths; this also works for slow breathing in short windows.)
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nk.rsp_clean(rsp.astype(np.float64), sampling_rate=SR)
        _, info = nk.rsp_peaks(cleaned, sampling_rate=SR)
    peaks = np.asarray(info["RSP_Peaks"])
    return float(60.0 * SR / np.mean(np.diff(peaks)))


def scr_count(eda: np.ndarray) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = nk.eda_process(eda.astype(np.float64), sampling_rate=SR)
    return int(np.sum(np.asarray(info["SCR_Amplitude"]) > 0.05))


def test_channels() -> None:
    assert PHYSIO_CHANNELS == ("ecg", "eda", "rsp")


def test_determinism_and_seed_dependence() -> None:
    b = _baseline(0)
    x = simulate_physio(b, 0.3, -0.2, 8.0, SR, np.random.default_rng(11))
    y = simulate_physio(b, 0.3, -0.2, 8.0, SR, np.random.default_rng(11))
    z = simulate_physio(b, 0.3, -0.2, 8.0, SR, np.random.default_rng(12))
    np.testing.assert_array_equal(x, y)
    assert not np.array_equal(x, z)
    assert _baseline(4) == _baseline(4)


@pytest.mark.parametrize(("seconds", "rate"), [(8.0, 128), (4.0, 64), (10.5, 250), (5.0, 100)])
def test_shape_dtype_and_scales(seconds: float, rate: int) -> None:
    for arousal in (-1.0, 0.0, 1.0):
        x = simulate_physio(_baseline(1), arousal, -arousal, seconds, rate, np.random.default_rng(3))
        assert x.shape == (3, round(seconds * rate))
        assert x.dtype == np.float32
        assert np.all(np.isfinite(x))
        # Survives float16 storage with little loss.
        assert np.abs(x).max() < 1000
        np.testing.assert_allclose(x.astype(np.float16).astype(np.float32), x, rtol=2e-3, atol=2e-3)
        ecg, eda, rsp = x
        assert 0.5 < ecg.max() - ecg.min() < 4.0  # mV
        assert eda.min() > 0 and eda.max() < 60  # µS
        assert 0.5 < rsp.std() < 2.0  # normalised


def test_baselines_in_range_and_varied() -> None:
    bs = [_baseline(s) for s in range(50)]
    hr = np.array([b.heart_rate_bpm for b in bs])
    br = np.array([b.breathing_rate_bpm for b in bs])
    assert np.all((hr >= 55) & (hr <= 85)) and hr.std() > 3
    assert np.all((br >= 12) & (br <= 18))
    assert all(b.scl_us > 0 and b.scr_rate_per_min > 0 and b.hrv > 0 for b in bs)


def test_measured_heart_rate_matches_baseline() -> None:
    b = _baseline(2)
    windows = [simulate_physio(b, -0.76, 0.0, 30.0, SR, np.random.default_rng(s)) for s in range(4)]
    rates = [heart_rate(x[0]) for x in windows]
    # arousal -0.76 cancels the -3 bpm offset: expected baseline + 0 +- noise (sd 3 bpm)
    assert abs(np.mean(rates) - b.heart_rate_bpm) < 6


def test_arousal_raises_heart_rate_eda_and_breathing() -> None:
    seeds = range(6)
    low = [_simulate(-1.0, s) for s in seeds]
    high = [_simulate(1.0, s) for s in seeds]
    hr_low = np.mean([heart_rate(x[0]) for x in low])
    hr_high = np.mean([heart_rate(x[0]) for x in high])
    assert hr_high > hr_low + 15  # about +25 bpm
    br_low = np.mean([breathing_rate(x[2]) for x in low])
    br_high = np.mean([breathing_rate(x[2]) for x in high])
    assert br_high > br_low + 4  # about +8 breaths/min
    assert np.mean([x[1].mean() for x in high]) > 1.3 * np.mean([x[1].mean() for x in low])
    assert sum(scr_count(x[1]) for x in high) > sum(scr_count(x[1]) for x in low)


def test_arousal_is_noisy_not_trivial() -> None:
    # Same baseline and arousal, different seeds: heart rate varies from sample to sample.
    b = _baseline(0)
    windows = [simulate_physio(b, 0.0, 0.0, 20.0, SR, np.random.default_rng(s)) for s in range(8)]
    rates = [heart_rate(x[0]) for x in windows]
    assert np.std(rates) > 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampling_rate": 32}, "minimum is 64 Hz"),
        ({"sampling_rate": 0}, "minimum is 64 Hz"),
        ({"seconds": 3.0}, "minimum is 4 s"),
        ({"seconds": -8.0}, "minimum is 4 s"),
        ({"arousal": 1.1}, "arousal"),
        ({"valence": float("nan")}, "valence"),
        ({"sampling_rate": 128.5}, "integer"),
    ],
)
def test_validation(kwargs: dict, match: str) -> None:
    args = {"arousal": 0.0, "valence": 0.0, "seconds": 8.0, "sampling_rate": SR}
    args.update(kwargs)
    with pytest.raises(DataError, match=match):
        simulate_physio(_baseline(0), rng=np.random.default_rng(0), **args)
