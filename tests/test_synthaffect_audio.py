"""SynthAffect voice synthesis: determinism, format, validation and measurable affect effects."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks

from multimodal_fer.datasets.synthaffect.audio import (
    VoiceIdentity,
    sample_voice_identity,
    synthesize_voice,
)
from multimodal_fer.datasets.synthaffect.labels import EXPRESSIONS_8
from multimodal_fer.errors import DataError

SR = 16000


def _voice(seed: int) -> VoiceIdentity:
    return sample_voice_identity(np.random.default_rng(seed))


def estimate_f0(x: np.ndarray, sr: int = SR) -> float:
    """Median F0 (Hz) by autocorrelation over loud, clearly periodic 40 ms frames."""
    frame, hop = int(0.04 * sr), int(0.01 * sr)
    level = np.sqrt(np.mean(x.astype(np.float64) ** 2))
    lo, hi = int(sr / 500), int(sr / 60)
    f0s = []
    for start in range(0, len(x) - frame, hop):
        fr = x[start : start + frame].astype(np.float64)
        if np.sqrt(np.mean(fr**2)) < 0.5 * level:
            continue
        fr = fr - fr.mean()
        ac = np.correlate(fr, fr, "full")[frame - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            f0s.append(sr / lag)
    return float(np.median(f0s)) if f0s else float("nan")


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2))))


def syllable_rate(x: np.ndarray, sr: int = SR) -> float:
    """Syllables per second counted as peaks of a 30 ms RMS envelope."""
    win = int(0.03 * sr)
    env = np.sqrt(np.convolve(x.astype(np.float64) ** 2, np.ones(win) / win, "same"))[::80]
    top = env.max()
    peaks, _ = find_peaks(env, height=0.25 * top, distance=int(0.1 * sr / 80), prominence=0.15 * top)
    return len(peaks) / (len(x) / sr)


def _measure(arousal: float, n: int = 12, expression: int = 0) -> tuple[float, float, float]:
    """Mean F0 relative to the voice's habitual F0, loudness and syllable rate over voices and seeds."""
    f0, loud, rate = [], [], []
    for k in range(n):
        voice = _voice(k % 4)
        x = synthesize_voice(voice, expression, 0.5, 0.0, arousal, 3.0, SR, np.random.default_rng(1000 + k))
        f0.append(estimate_f0(x) / voice.f0_hz)
        loud.append(rms_db(x))
        rate.append(syllable_rate(x))
    return float(np.nanmean(f0)), float(np.mean(loud)), float(np.mean(rate))


def test_determinism_and_seed_dependence() -> None:
    voice = _voice(0)
    a = synthesize_voice(voice, 3, 0.8, 0.2, 0.4, 2.0, SR, np.random.default_rng(7))
    b = synthesize_voice(voice, 3, 0.8, 0.2, 0.4, 2.0, SR, np.random.default_rng(7))
    c = synthesize_voice(voice, 3, 0.8, 0.2, 0.4, 2.0, SR, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert _voice(5) == _voice(5)


@pytest.mark.parametrize("expression", range(len(EXPRESSIONS_8)))
def test_shape_dtype_range_all_expressions(expression: int) -> None:
    for arousal in (-1.0, 1.0):
        rng = np.random.default_rng(0)
        x = synthesize_voice(_voice(expression), expression, 1.0, -arousal, arousal, 1.3, SR, rng)
        assert x.shape == (round(1.3 * SR),)
        assert x.dtype == np.float32
        assert np.all(np.isfinite(x))
        assert np.abs(x).max() <= 1.0
        assert np.abs(x).max() > 0.01  # not silent
        assert np.abs(x).max() < 0.999  # the limiter saturates softly: no hard clipping
        assert np.mean(np.abs(x) > 0.7) < 0.01  # and rarely has to act


def test_random_latents_never_fail() -> None:
    rng = np.random.default_rng(123)
    for i in range(60):
        voice = sample_voice_identity(rng)
        expression = int(rng.integers(len(EXPRESSIONS_8)))
        intensity, valence = float(rng.uniform(0, 1)), float(rng.uniform(-1, 1))
        arousal = float(rng.choice([-1, 1]))
        x = synthesize_voice(voice, expression, intensity, valence, arousal, 2.0, SR, rng)
        assert x.shape == (2 * SR,) and np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0, i


def test_other_sample_rates_and_short_windows() -> None:
    voice = _voice(1)
    for sr, seconds in ((8000, 0.5), (22050, 0.05), (16000, 0.001)):
        x = synthesize_voice(voice, 1, 0.5, 0.0, 0.0, seconds, sr, np.random.default_rng(0))
        assert x.shape == (round(seconds * sr),)
        assert np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0


def test_identities_differ_in_f0() -> None:
    voices = [_voice(s) for s in range(40)]
    f0 = np.array([v.f0_hz for v in voices])
    assert f0.min() < 120 and f0.max() > 180  # low (male-like) and high (female-like) voices
    assert np.all((f0 >= 85) & (f0 <= 260))
    low = min(voices, key=lambda v: v.f0_hz)
    high = max(voices, key=lambda v: v.f0_hz)
    measured = []
    for voice in (low, high):
        x = synthesize_voice(voice, 0, 0.0, 0.0, 0.0, 2.0, SR, np.random.default_rng(3))
        measured.append(estimate_f0(x))
    assert measured[1] > 1.4 * measured[0]
    # The measured pitch is near the voice's habitual pitch (prosody varies it by a few semitones).
    assert 0.6 < measured[0] / low.f0_hz < 1.5


def test_arousal_raises_pitch_loudness_and_rate() -> None:
    f0_low, loud_low, rate_low = _measure(-1.0)
    f0_high, loud_high, rate_high = _measure(1.0)
    assert f0_high > 1.2 * f0_low  # about +5 semitones measured
    assert loud_high > loud_low + 5.0  # about +8 dB measured
    assert rate_high > 1.15 * rate_low


def test_sad_is_lower_and_slower_than_happy() -> None:
    f0_sad, loud_sad, _ = _measure(0.0, expression=EXPRESSIONS_8.index("sad"))
    f0_happy, loud_happy, _ = _measure(0.0, expression=EXPRESSIONS_8.index("happy"))
    assert f0_happy > f0_sad
    assert loud_happy > loud_sad


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seconds": 0.0}, "seconds"),
        ({"seconds": -1.0}, "seconds"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": -16000}, "sample_rate"),
        ({"sample_rate": 1000}, "minimum"),
        ({"arousal": 1.5}, "arousal"),
        ({"valence": -1.01}, "valence"),
        ({"valence": float("nan")}, "valence"),
        ({"intensity": 1.2}, "intensity"),
        ({"expression": 8}, "expression"),
        ({"expression": -1}, "expression"),
    ],
)
def test_validation(kwargs: dict, match: str) -> None:
    args = {
        "expression": 0,
        "intensity": 0.5,
        "valence": 0.0,
        "arousal": 0.0,
        "seconds": 1.0,
        "sample_rate": SR,
    }
    args.update(kwargs)
    with pytest.raises(DataError, match=match):
        synthesize_voice(_voice(0), rng=np.random.default_rng(0), **args)
