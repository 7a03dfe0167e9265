"""Physiological signals: quality checks of a window, length checks of a recording, resampling to the model's rate.

One module for every physiological data set (DEAP, WESAD, ...), so a signal is judged the same way wherever it
comes from. Checks return a :class:`SignalFault` (a short ``reason`` that ``summary.json`` counts, and a ``detail``
naming the channel and the numbers) instead of raising: the data set adapters turn faults into
:class:`~multimodal_fer.datasets.base.SampleError` and the sample lands in ``failures.jsonl``. Nothing is ever
repaired or filled in here.

**A window** (one channel, at its native rate, before resampling) is refused when it holds a NaN or infinity
(:data:`NON_FINITE`), is flat (:data:`FLAT`: its peak-to-peak range is at most ``flat_tolerance`` times
``max(1, max |x|)``, a disconnected or saturated sensor) or is clipped (:data:`CLIPPED`: more than
``max_clipped_share`` of its samples lie at or beyond the limits declared for the channel, the range of the
recording device; channels without declared limits are not checked for clipping).

**A recording's channel** holds ``samples`` values where its declared rate and the recording's duration expect
``rate × seconds``. Within a slack of ``max(2, length_tolerance × expected)`` samples it is as declared. Longer:
the channel was sampled faster than declared (:data:`WRONG_RATE`). Shorter by an integer factor of 2 or more (within
1 %): sampled slower than declared, also :data:`WRONG_RATE` (a file cut to exactly a half or a third is reported
so too; the detail says both). Otherwise shorter: the channel stops early, and every window reaching past its end
is :data:`TRUNCATED`; windows inside the part that is there are kept.

**Resampling** (:func:`resample_signal`) is scipy's polyphase filter with the exact rational ratio of the two rates,
its anti-aliasing low-pass included. The window's least-squares line is removed before filtering and added back at
the output's sample times, and the rest is extended beyond the window's edges along its end slopes
(``padtype="smooth"``): the level and drift of a slow signal (skin conductance, temperature) pass exactly, with
neither a droop at the edges nor the filter's small gain ripple on a large level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from multimodal_fer.errors import DataError

#: Failure reasons (short categories; numbers and channel names go in the detail).
NON_FINITE = "non-finite signal"
FLAT = "flat signal"
CLIPPED = "clipped signal"
WRONG_RATE = "sampling rate other than declared"
TRUNCATED = "truncated signal"


@dataclass(frozen=True)
class SignalFault:
    """Why a signal cannot be used.

    Attributes:
        reason: one of :data:`NON_FINITE`, :data:`FLAT`, :data:`CLIPPED`, :data:`WRONG_RATE`, :data:`TRUNCATED`.
        detail: the channel and the numbers behind the verdict.
    """

    reason: str
    detail: str


@dataclass(frozen=True)
class SignalQuality:
    """Thresholds of the window and length checks (part of a data set's cache fingerprint).

    Attributes:
        flat_tolerance: a window whose peak-to-peak range is at most this times ``max(1, max |x|)`` is flat.
        clip_limits: per channel name, the ``[low, high]`` range of the recording device in the stored unit; a
            sample at or beyond a limit counts as clipped. Channels not named are not checked for clipping.
        max_clipped_share: a window with more than this share of clipped samples is refused (0 refuses a single
            sample at a limit).
        length_tolerance: relative slack of a channel's length against its declared rate and the recording's
            duration (at least 2 samples either way).
    """

    flat_tolerance: float = 1e-6
    clip_limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_clipped_share: float = 0.005
    length_tolerance: float = 0.001

    def __post_init__(self) -> None:
        if not self.flat_tolerance >= 0:
            raise ValueError(f"flat_tolerance={self.flat_tolerance} must be 0 or more.")
        if not 0.0 <= self.max_clipped_share < 1.0:
            raise ValueError(f"max_clipped_share={self.max_clipped_share} must lie in [0, 1).")
        if not 0.0 <= self.length_tolerance < 0.5:
            raise ValueError(f"length_tolerance={self.length_tolerance} must lie in [0, 0.5).")
        for name, limits in self.clip_limits.items():
            if len(limits) != 2 or not float(limits[0]) < float(limits[1]):
                raise ValueError(f"clip_limits[{name!r}]={limits!r}: give [low, high] with low < high.")

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form, channels sorted (for fingerprints)."""
        return {
            "flat_tolerance": self.flat_tolerance,
            "clip_limits": {name: [float(v) for v in self.clip_limits[name]] for name in sorted(self.clip_limits)},
            "max_clipped_share": self.max_clipped_share,
            "length_tolerance": self.length_tolerance,
        }


def window_fault(channel: str, window: np.ndarray, quality: SignalQuality) -> SignalFault | None:
    """Check one channel's window at its native rate.

    Args:
        channel: the channel's name (looked up in ``quality.clip_limits``, quoted in the detail).
        window: float (S,) samples.
        quality: thresholds.

    Returns:
        The first fault found (non-finite, then flat, then clipped), or None for a usable window.
    """
    x = np.asarray(window, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return SignalFault(TRUNCATED, f"{channel}: the window holds no sample")
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:
        return SignalFault(NON_FINITE, f"{channel}: {bad} of {x.size} samples are NaN or infinite")
    spread = float(np.ptp(x))
    if spread <= quality.flat_tolerance * max(1.0, float(np.max(np.abs(x)))):
        return SignalFault(FLAT, f"{channel}: constant at {float(x[0]):.6g} over {x.size} samples")
    limits = quality.clip_limits.get(channel)
    if limits is not None:
        low, high = float(limits[0]), float(limits[1])
        clipped = int(np.count_nonzero((x <= low) | (x >= high)))
        if clipped > quality.max_clipped_share * x.size:
            return SignalFault(
                CLIPPED,
                f"{channel}: {clipped} of {x.size} samples at or beyond the limits [{low:g}, {high:g}] "
                f"(more than {quality.max_clipped_share:.2%})",
            )
    return None


def length_fault(channel: str, samples: int, rate: float, seconds: float, quality: SignalQuality) -> SignalFault | None:
    """Whether a recording's channel has the length its declared rate implies (see the module docstring).

    Args:
        channel: the channel's name (quoted in the detail).
        samples: values the channel holds.
        rate: its declared sampling rate in Hz.
        seconds: the recording's duration (from its time reference: the label track, the trial's length).
        quality: the length tolerance.

    Returns:
        A :data:`WRONG_RATE` fault, or None (as declared, or truncated: see :func:`window_slice`).
    """
    expected = rate * seconds
    slack = max(2.0, quality.length_tolerance * expected)
    implied = samples / seconds if seconds > 0 else math.inf
    if samples > expected + slack:
        return SignalFault(
            WRONG_RATE,
            f"{channel}: {samples} samples over {seconds:g} s imply {implied:.6g} Hz, not the declared {rate:g} Hz",
        )
    if 0 < samples < expected - slack:
        ratio = expected / samples
        if ratio >= 1.5 and abs(ratio - round(ratio)) <= 0.01 * ratio:
            return SignalFault(
                WRONG_RATE,
                f"{channel}: {samples} samples over {seconds:g} s imply {implied:.6g} Hz, not the declared {rate:g} Hz "
                f"(or the recording was cut to exactly 1/{round(ratio)} of its length)",
            )
    return None


def whole_samples(seconds: float, rate: float, what: str) -> int:
    """A duration as a whole number of samples at a rate.

    Raises:
        DataError: ``seconds × rate`` is not a whole number (the message says which multiple to choose).
    """
    exact = seconds * rate
    count = round(exact)
    if abs(exact - count) > 1e-6 * max(1.0, abs(exact)):
        step = Fraction(1, 1) / Fraction(rate).limit_denominator(1_000_000)
        raise DataError(
            f"{what} of {seconds:g} s is {exact:g} samples at {rate:g} Hz, not a whole number; choose a multiple of "
            f"{float(step):g} s."
        )
    return int(count)


def window_slice(
    channel: str, samples: int, rate: float, start_seconds: float, seconds: float
) -> tuple[slice, SignalFault | None]:
    """The samples of a window in a channel, and a :data:`TRUNCATED` fault if the channel ends before it does.

    Args:
        channel: the channel's name (quoted in the detail).
        samples: values the channel holds.
        rate: its sampling rate in Hz.
        start_seconds: the window's start from the recording's start.
        seconds: the window's length.

    Returns:
        ``(slice, fault or None)``; the slice spans ``round(seconds × rate)`` samples from ``round(start × rate)``.
    """
    start = round(start_seconds * rate)
    stop = start + round(seconds * rate)
    if stop > samples:
        return slice(start, stop), SignalFault(
            TRUNCATED,
            f"{channel}: the window needs samples {start}-{stop} but the recording ends after {samples} "
            f"({samples / rate:g} s at {rate:g} Hz)",
        )
    return slice(start, stop), None


def rate_ratio(rate: float, target_rate: float) -> tuple[int, int]:
    """``(up, down)``: the smallest integers with ``target_rate / rate = up / down``.

    Raises:
        DataError: a non-positive rate, or rates whose ratio is no fraction with a denominator below 10⁶.
    """
    if not (rate > 0 and target_rate > 0 and math.isfinite(rate) and math.isfinite(target_rate)):
        raise DataError(f"Sampling rates must be positive numbers of Hz, got {rate!r} and {target_rate!r}.")
    ratio = Fraction(target_rate / rate).limit_denominator(1_000_000)
    if abs(float(ratio) - target_rate / rate) > 1e-9 * (target_rate / rate):
        raise DataError(f"The ratio of {target_rate:g} Hz to {rate:g} Hz is not a simple fraction; resampling refused.")
    return ratio.numerator, ratio.denominator


def resample_signal(window: np.ndarray, rate: float, target_rate: float) -> np.ndarray:
    """One channel's window at another sampling rate (polyphase filter, trend-preserving edges).

    Args:
        window: float (S,) samples at ``rate``.
        rate: its sampling rate in Hz.
        target_rate: the rate wanted in Hz.

    Returns:
        float64 (ceil(S × target_rate / rate),); a copy of the input when the rates are equal.

    Raises:
        DataError: rates that :func:`rate_ratio` refuses.
    """
    x = np.asarray(window, dtype=np.float64).reshape(-1)
    up, down = rate_ratio(rate, target_rate)
    if up == down:
        return x.copy()
    from scipy.signal import resample_poly

    times = np.arange(x.size) / rate
    slope, level = np.polyfit(times, x, 1) if x.size > 1 else (0.0, float(x[0]) if x.size else 0.0)
    rest = np.asarray(resample_poly(x - (slope * times + level), up, down, padtype="smooth"), dtype=np.float64)
    return rest + slope * (np.arange(rest.size) / target_rate) + level
