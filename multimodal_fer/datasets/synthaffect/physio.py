"""SynthAffect physiology: ECG, EDA and respiration driven mostly by arousal, simulated with neurokit2.

Each subject has a stable :class:`PhysioBaseline` (resting heart rate, heart-rate variability, skin
conductance level, spontaneous SCR rate, breathing rate, ECG gain). :func:`simulate_physio` turns one
sample's latent affect into a ``(3, T)`` window on top of that baseline:

* **arousal** drives heart rate (about -3 to +22 bpm around rest), lowers heart-rate variability, raises
  the tonic skin conductance level and the count and amplitude of skin conductance responses (SCRs),
  speeds up and flattens breathing and adds a little muscle noise to the ECG;
* **valence** acts only weakly: slightly higher heart-rate variability and a slightly lower heart rate
  when positive.

Every effect carries per-sample randomness, so arousal is readable from physiology but noisy and valence
barely. neurokit2 is imported lazily (training from a prepared cache must not need it); its random
states are seeded from the caller's generator, so a fixed generator gives identical arrays.

Channel units (chosen to store well as float16):

* ``ecg``: millivolts, R peaks about 0.7-1.6 mV, baseline near 0;
* ``eda``: skin conductance in microsiemens, about 0.5-30 µS;
* ``rsp``: chest expansion in normalised units (about unit standard deviation, zero mean).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from multimodal_fer._lazy import require
from multimodal_fer.errors import DataError

#: Channel order of :func:`simulate_physio`'s output (row i is channel ``PHYSIO_CHANNELS[i]``).
PHYSIO_CHANNELS: tuple[str, ...] = ("ecg", "eda", "rsp")

#: Lowest sampling rate (Hz) at which the simulated ECG keeps a usable QRS complex.
MIN_SAMPLING_RATE = 64

#: Shortest window (s) that holds a breath and a few heart beats.
MIN_SECONDS = 4.0

_NK_PURPOSE = "simulating SynthAffect physiology"
_SEED_HIGH = 2**31 - 1
#: Peak of neurokit2's 'simple' (Daubechies) beat before scaling, used to express the ECG in mV.
_NK_SIMPLE_R_PEAK = 6.96


@dataclass(frozen=True)
class PhysioBaseline:
    """Stable physiological traits of one subject (at rest, neutral affect).

    Attributes:
        heart_rate_bpm: resting heart rate in beats per minute (about 55-85).
        hrv: heart-rate variability as the relative amplitude of heart-rate fluctuation (respiratory
            sinus arrhythmia plus slow waves), as a fraction of the heart rate (about 0.02-0.08).
        scl_us: tonic skin conductance level in microsiemens (about 1-15).
        scr_rate_per_min: spontaneous (non-specific) skin conductance responses per minute (about 1-4).
        breathing_rate_bpm: breaths per minute (about 12-18).
        ecg_amplitude_mv: R-peak amplitude of the recorded lead in millivolts (electrode placement, body
            build; about 0.7-1.5).

    """

    heart_rate_bpm: float
    hrv: float
    scl_us: float
    scr_rate_per_min: float
    breathing_rate_bpm: float
    ecg_amplitude_mv: float


def sample_physio_baseline(rng: np.random.Generator) -> PhysioBaseline:
    """Draw the resting physiology of a new subject.

    Args:
        rng: random generator; the draw is deterministic given its state.

    Returns:
        A baseline within the ranges documented on :class:`PhysioBaseline`.

    """
    return PhysioBaseline(
        heart_rate_bpm=float(np.clip(rng.normal(70.0, 7.0), 55.0, 85.0)),
        hrv=float(np.clip(rng.lognormal(math.log(0.045), 0.3), 0.02, 0.08)),
        scl_us=float(np.clip(rng.lognormal(math.log(4.0), 0.5), 1.0, 15.0)),
        scr_rate_per_min=float(rng.uniform(1.0, 4.0)),
        breathing_rate_bpm=float(rng.uniform(12.0, 18.0)),
        ecg_amplitude_mv=float(np.clip(rng.normal(1.1, 0.2), 0.7, 1.5)),
    )


def _validate(arousal: float, valence: float, seconds: float, sampling_rate: int) -> int:
    """Check the arguments of :func:`simulate_physio` and return the number of samples."""
    for name, value in (("arousal", arousal), ("valence", valence)):
        if not (math.isfinite(value) and -1.0 <= value <= 1.0):
            raise DataError(f"{name} must lie in [-1, 1], got {value}.")
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)):
        raise DataError(f"sampling_rate must be an integer number of Hz, got {sampling_rate!r}.")
    if sampling_rate < MIN_SAMPLING_RATE:
        raise DataError(
            f"sampling_rate {sampling_rate} Hz is too low to simulate an ECG; the minimum is "
            f"{MIN_SAMPLING_RATE} Hz (128 Hz or more recommended)."
        )
    if not (math.isfinite(seconds) and seconds >= MIN_SECONDS):
        raise DataError(
            f"A physiology window of {seconds} s is too short; the minimum is {MIN_SECONDS:g} s "
            "(a breath and a few heart beats)."
        )
    return int(round(seconds * sampling_rate))


def _simulate_ecg(
    nk: object,
    heart_rate: float,
    hrv: float,
    breath_hz: float,
    emg_noise_mv: float,
    amplitude_mv: float,
    n: int,
    sampling_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """ECG in mV with respiratory sinus arrhythmia, slow heart-rate waves, wander and noise.

    neurokit2's fast 'simple' ECG has a constant rate; the beat-to-beat variability comes from reading it
    through a time warp whose local speed is the instantaneous heart rate over the mean rate.

    Returns:
        float64 array (n,).

    """
    t = np.arange(n) / sampling_rate
    lf_hz = rng.uniform(0.04, 0.15, size=2)
    lf_phase = rng.uniform(0.0, 2.0 * np.pi, size=2)
    rsa = np.sin(2.0 * np.pi * breath_hz * t + rng.uniform(0.0, 2.0 * np.pi))
    slow = np.sin(2.0 * np.pi * lf_hz[:, None] * t + lf_phase[:, None]).sum(axis=0) / math.sqrt(2.0)
    speed = 1.0 + hrv * (0.8 * rsa + 0.8 * slow)
    # Warped time in "constant-rate" seconds; a random start phase puts the first beat anywhere.
    beat_period = 60.0 / heart_rate
    warped = rng.uniform(0.0, beat_period) + np.concatenate(([0.0], np.cumsum(speed[:-1]))) / sampling_rate
    n_beats = int(math.ceil(warped[-1] / beat_period)) + 2
    sim_rate = 2 * sampling_rate
    duration = n_beats * beat_period
    sim = nk.ecg_simulate(
        duration=duration,
        length=int(round(duration * sim_rate)),
        sampling_rate=sim_rate,
        heart_rate=heart_rate * (1.0 + 1e-9),  # exactly n_beats beats despite float rounding
        method="simple",
        noise=0.0,
    )
    sim_t = np.arange(len(sim)) / sim_rate
    ecg = np.interp(warped, sim_t, sim) * (amplitude_mv / _NK_SIMPLE_R_PEAK)
    ecg *= 1.0 + 0.05 * rsa  # respiratory amplitude modulation
    wander = rng.uniform(0.03, 0.1) * np.sin(2.0 * np.pi * breath_hz * t + rng.uniform(0, 2 * np.pi))
    wander += rng.normal(0.0, 0.04) * t / max(t[-1], 1e-9)
    return ecg + wander + rng.normal(0.0, 0.01 + emg_noise_mv, size=n)


def _simulate_eda(
    nk: object,
    scl_us: float,
    scr_rate_per_min: float,
    scr_amplitude_us: float,
    n: int,
    sampling_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Skin conductance in µS: tonic level, drift and SCRs (including tails of earlier ones).

    Returns:
        float64 array (n,).

    """
    lead = rng.uniform(4.0, 10.0)  # SCRs that started before the window still decay inside it
    n_sim = n + int(round(lead * sampling_rate))
    duration = n_sim / sampling_rate
    scr_number = int(rng.poisson(scr_rate_per_min * duration / 60.0))
    drift_us_per_s = rng.normal(0.0, 0.01)
    sim = nk.eda_simulate(
        duration=duration,
        length=n_sim,
        sampling_rate=sampling_rate,
        noise=0.0,
        scr_number=scr_number,
        drift=drift_us_per_s / scr_amplitude_us,
        random_state=int(rng.integers(_SEED_HIGH)),
    )
    eda = scl_us + scr_amplitude_us * (np.asarray(sim[-n:]) - 1.0)
    eda += rng.normal(0.0, 0.004 + 0.002 * scl_us, size=n)
    return np.maximum(eda, 0.05)


def _simulate_rsp(
    nk: object, breathing_rate: float, depth: float, n: int, sampling_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Normalised respiration (chest expansion) at the given rate.

    neurokit2's 'breathmetrics' model fails on very short signals, so a window of at least four breaths
    (and one breath longer than needed) is simulated and a random stretch of it kept.

    Returns:
        float64 array (n,).

    """
    seconds = n / sampling_rate
    breath_s = 60.0 / breathing_rate
    duration = max(seconds + breath_s, 4.0 * breath_s)
    sim: np.ndarray | None = None
    for _attempt in range(3):
        n_sim = int(round(duration * sampling_rate))
        try:
            sim = np.asarray(
                nk.rsp_simulate(
                    duration=duration,
                    length=n_sim,
                    sampling_rate=sampling_rate,
                    noise=0.0,
                    respiratory_rate=breathing_rate,
                    method="breathmetrics",
                    random_state=int(rng.integers(_SEED_HIGH)),
                ),
                dtype=np.float64,
            )
        except (ValueError, TypeError, IndexError):
            sim = None
        if sim is not None and len(sim) >= n and np.all(np.isfinite(sim)):
            break
        sim = None
        duration *= 2.0
    if sim is None:  # pragma: no cover - breathmetrics never failed three times in testing
        sim = np.asarray(
            nk.rsp_simulate(
                duration=seconds,
                length=n,
                sampling_rate=sampling_rate,
                noise=0.0,
                respiratory_rate=breathing_rate,
                method="sinusoidal",
            ),
            dtype=np.float64,
        )
    start = int(rng.integers(0, len(sim) - n + 1))
    rsp = sim[start : start + n]
    rsp = (rsp - rsp.mean()) / max(float(rsp.std()), 1e-6)
    return depth * rsp + rng.normal(0.0, 0.03, size=n)


def simulate_physio(
    baseline: PhysioBaseline,
    arousal: float,
    valence: float,
    seconds: float,
    sampling_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Simulate one window of ECG, EDA and respiration for a subject in a given affective state.

    Args:
        baseline: the subject's resting physiology.
        arousal: latent arousal in [-1, 1]; drives heart rate, skin conductance and breathing.
        valence: latent valence in [-1, 1]; only weakly visible (heart-rate variability, heart rate).
        seconds: window length in seconds, at least :data:`MIN_SECONDS`.
        sampling_rate: samples per second, an integer of at least :data:`MIN_SAMPLING_RATE`.
        rng: random generator; all randomness (including neurokit2's) derives from it.

    Returns:
        float32 array (3, round(seconds * sampling_rate)), rows in :data:`PHYSIO_CHANNELS` order:
        ECG in mV, EDA in µS, respiration in normalised units.

    Raises:
        DataError: affect outside [-1, 1], a window shorter than :data:`MIN_SECONDS` or a sampling rate
            below :data:`MIN_SAMPLING_RATE` (or not an integer).
        MissingDependencyError: neurokit2 is not installed.

    """
    n = _validate(arousal, valence, seconds, sampling_rate)
    nk = require("neurokit2", _NK_PURPOSE)

    heart_rate = baseline.heart_rate_bpm - 3.0 + 12.5 * (arousal + 1.0) - 1.0 * valence + rng.normal(0.0, 3.0)
    heart_rate = float(np.clip(heart_rate, 40.0, 150.0))
    hrv = baseline.hrv * math.exp(-0.35 * arousal + 0.2 * valence + rng.normal(0.0, 0.15))
    breathing_rate = baseline.breathing_rate_bpm + 4.0 * arousal + rng.normal(0.0, 1.2)
    breathing_rate = float(np.clip(breathing_rate, 6.0, 35.0))
    breath_depth = math.exp(-0.15 * arousal + rng.normal(0.0, 0.1))
    scl = baseline.scl_us * math.exp(0.25 * arousal + rng.normal(0.0, 0.1))
    scr_rate = baseline.scr_rate_per_min * math.exp(0.9 * arousal + rng.normal(0.0, 0.2))
    scr_amplitude = float(np.clip(0.15 * math.sqrt(scl) * math.exp(0.4 * arousal + rng.normal(0.0, 0.25)), 0.01, 3.0))
    emg_noise = 0.012 * max(arousal, 0.0) * rng.uniform(0.5, 1.5)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neurokit2 warns on harmless edge cases (empty slices)
        ecg = _simulate_ecg(
            nk,
            heart_rate,
            hrv,
            breathing_rate / 60.0,
            emg_noise,
            baseline.ecg_amplitude_mv,
            n,
            sampling_rate,
            rng,
        )
        eda = _simulate_eda(nk, scl, scr_rate, scr_amplitude, n, sampling_rate, rng)
        rsp = _simulate_rsp(nk, breathing_rate, breath_depth, n, sampling_rate, rng)
    return np.stack([ecg, eda, rsp]).astype(np.float32)
