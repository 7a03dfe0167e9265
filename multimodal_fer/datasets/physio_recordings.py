"""What physiological adapters (DEAP, WESAD, ...) share: reading their pickles, windowing, checking a window.

The checks themselves live in :mod:`multimodal_fer.media.signals`; here their faults become
:class:`~multimodal_fer.datasets.base.SampleError` (the cache builder writes the sample to ``failures.jsonl`` with
the fault's reason and detail) and a recording becomes windows. Every reason is one of the short categories of
:mod:`~multimodal_fer.media.signals` (``"non-finite signal"``, ``"flat signal"``, ``"clipped signal"``,
``"sampling rate other than declared"``, ``"truncated signal"``), so ``summary.json`` counts them.

**Pre-stimulus baseline correction** (:func:`correct_by_baseline`, for adapters whose recordings carry a rest
period before the stimulus: DEAP, MAHNOB-HCI): per channel, ``subtract`` removes the baseline's mean from the window
(the window's level relative to the person's rest level in that recording); ``standardise`` also divides by the
baseline's standard deviation (population, ``ddof=0``). Both use the baseline at the channel's native rate, before
resampling (which is linear, so the order does not matter). A baseline shorter than :data:`MIN_BASELINE_SECONDS`,
holding a NaN, flat or clipped is never used: the window fails with ``"baseline too short"``, ``"non-finite
baseline"``, ``"flat baseline"`` or ``"clipped baseline"`` (detail: the channel and the numbers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from multimodal_fer.datasets.base import RawSample, Rejection, SampleError, SampleLabels
from multimodal_fer.errors import DataError
from multimodal_fer.media.pickles import load_legacy_pickle
from multimodal_fer.media.signals import (
    CLIPPED,
    FLAT,
    NON_FINITE,
    TRUNCATED,
    SignalFault,
    SignalQuality,
    length_fault,
    window_fault,
    window_slice,
)

#: Listing rejection of a file that cannot be unpickled (cut off, damaged, or naming code other than numpy's).
UNREADABLE_PICKLE = "unreadable pickle"

#: Pre-stimulus baseline corrections (``none``: the window as recorded).
BaselineCorrection = Literal["none", "subtract", "standardise"]
BASELINE_CORRECTIONS: tuple[str, ...] = ("none", "subtract", "standardise")
#: The shortest baseline a correction may use.
MIN_BASELINE_SECONDS = 1.0
#: Failure reasons of an unusable baseline (a window fault's reason → the baseline's).
BASELINE_TOO_SHORT = "baseline too short"
BASELINE_FAULTS: dict[str, str] = {
    NON_FINITE: "non-finite baseline",
    FLAT: "flat baseline",
    CLIPPED: "clipped baseline",
    TRUNCATED: BASELINE_TOO_SHORT,
}

#: The 32 EEG channels of BioSemi's 10-20 montage in Geneva order (DEAP's files, MAHNOB-HCI's BDF files).
BIOSEMI_32_EEG_CHANNELS: tuple[str, ...] = (
    "Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1", "Oz", "Pz",
    "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2", "P4", "P8", "PO4", "O2",
)  # fmt: skip


def read_pickle(path: Path) -> tuple[Any, str | None]:
    """A data set's Python-2 pickle, or why it cannot be read.

    Returns:
        ``(content, None)``, or ``(None, detail)`` for a missing, empty, cut-off or refused file.
    """
    try:
        return load_legacy_pickle(path), None
    except DataError as error:
        return None, str(error)


def fail(fault: SignalFault) -> SampleError:
    """The sample error of a signal fault (its reason and detail)."""
    return SampleError(fault.reason, fault.detail)


@dataclass(frozen=True)
class Channel:
    """One channel of a recording, as read.

    Attributes:
        name: the package's name for it (a row of the cached ``physio``).
        values: float64 (S,) samples.
        rate: declared sampling rate in Hz.
    """

    name: str
    values: np.ndarray
    rate: float


def cut_window(
    channel: Channel, start_seconds: float, seconds: float, duration: float, quality: SignalQuality
) -> np.ndarray:
    """One window of a channel at its native rate, after the channel's length checks.

    Args:
        channel: the channel.
        start_seconds: the window's start from the recording's start.
        seconds: the window's length.
        duration: the recording's duration by its time reference (trial length, label track).
        quality: the length tolerance.

    Returns:
        float64 (round(seconds × rate),).

    Raises:
        SampleError: ``"sampling rate other than declared"`` (the channel's length does not fit its declared
            rate) or ``"truncated signal"`` (the channel ends before the window does).
    """
    fault = length_fault(channel.name, channel.values.size, channel.rate, duration, quality)
    if fault is not None:
        raise fail(fault)
    where, fault = window_slice(channel.name, channel.values.size, channel.rate, start_seconds, seconds)
    if fault is not None:
        raise fail(fault)
    return channel.values[where]


def check_window(signals: Mapping[str, np.ndarray], quality: SignalQuality) -> None:
    """Refuse a window with a non-finite, flat or clipped channel.

    Args:
        signals: channel name → float (S_c,) window at the channel's native rate.
        quality: thresholds.

    Raises:
        SampleError: the reason of the first faulty channel (in ``signals``' order); the detail names every faulty
            channel.
    """
    faults = [fault for name, x in signals.items() if (fault := window_fault(name, x, quality)) is not None]
    if faults:
        raise SampleError(faults[0].reason, "; ".join(f.detail for f in faults))


def window_starts(start: float, stop: float, seconds: float, stride: float) -> list[float]:
    """Starts (s) of the windows of ``seconds`` every ``stride`` that fit in ``[start, stop]``.

    Starts are ``start + k × stride`` rounded to microseconds, so keys and locators do not carry float noise.
    """
    if stop - start < seconds - 1e-9:
        return []
    count = math.floor((stop - start - seconds) / stride + 1e-9) + 1
    return [round(start + k * stride, 6) for k in range(count)]


def window_samples(
    sequence: str,
    subject: str,
    source: str,
    labels: SampleLabels,
    starts: Sequence[float],
    locators: Sequence[Mapping[str, Any]],
) -> list[RawSample]:
    """The windows of one labelled recording (a trial, a session) as samples sharing its labels.

    Args:
        sequence: the recording's name; keys are ``<sequence>/w<index>`` (two digits at least).
        subject: the person.
        source: the recording's file, relative to the raw root.
        labels: the recording's labels, given to every window.
        starts: the windows' starts in seconds (from :func:`window_starts`).
        locators: per window, the adapter's pointers for ``load`` (the start among them).

    Returns:
        One sample per window, frame = window index.
    """
    return [
        RawSample(
            key=f"{sequence}/w{index:02d}",
            subject=subject,
            source=source,
            labels=labels,
            sequence=sequence,
            frame=index,
            locators=dict(locators[index]),
        )
        for index in range(len(starts))
    ]


def merged_rejections(source: str, windows: list[tuple[float, float, str | None]]) -> list[Rejection]:
    """One rejection per run of consecutive windows left out for the same reason.

    Args:
        source: the file, relative to the raw root.
        windows: ``(start_s, end_s, reason or None)`` of every window in time order; None: the window is a sample.

    Returns:
        Rejections whose source is ``<file>:<first start>-<last end>s (<n> windows)``.
    """
    rejected: list[Rejection] = []
    run: list[tuple[float, float, str | None]] = []

    def close() -> None:
        if run:
            first, last = run[0], run[-1]
            where = f"{source}:{first[0]:.2f}-{last[1]:.2f}s ({len(run)} window{'s' if len(run) > 1 else ''})"
            rejected.append(Rejection(where, str(first[2])))
            run.clear()

    for window in windows:
        if window[2] is None or (run and run[-1][2] != window[2]):
            close()
        if window[2] is not None:
            run.append(window)
    close()
    return rejected


def check_baseline_correction(correction: str, baseline_seconds: float | None) -> None:
    """Refuse an unknown correction, or a correction asked of a baseline shorter than :data:`MIN_BASELINE_SECONDS`.

    Args:
        correction: ``none``, ``subtract`` or ``standardise``.
        baseline_seconds: the baseline's configured length (None: set per recording, checked when loading).

    Raises:
        ValueError: naming the setting to change.
    """
    if correction not in BASELINE_CORRECTIONS:
        raise ValueError(f"baseline_correction={correction!r}: choose one of {list(BASELINE_CORRECTIONS)}.")
    if correction != "none" and baseline_seconds is not None and baseline_seconds < MIN_BASELINE_SECONDS:
        raise ValueError(
            f"baseline_correction={correction!r} needs a baseline of at least {MIN_BASELINE_SECONDS:g} s, but "
            f"baseline_seconds={baseline_seconds:g}; lengthen the baseline or set baseline_correction: none."
        )


def correct_by_baseline(
    signals: Mapping[str, np.ndarray],
    baselines: Mapping[str, np.ndarray],
    rates: Mapping[str, float],
    correction: str,
    quality: SignalQuality,
) -> dict[str, np.ndarray]:
    """A window's channels corrected by their pre-stimulus baseline (see the module docstring).

    Args:
        signals: channel name → float (S_c,) window at the channel's native rate.
        baselines: channel name → float (B_c,) the same channel's baseline, at the same rate.
        rates: channel name → sampling rate in Hz (to judge the baseline's length).
        correction: ``none`` (the windows are returned unchanged), ``subtract`` or ``standardise``.
        quality: thresholds of the baseline's checks (those of the windows).

    Returns:
        Channel name → float64 (S_c,): ``x - mean(baseline)``, or ``(x - mean(baseline)) / std(baseline)``.

    Raises:
        SampleError: the baseline of a channel is too short, non-finite, flat or clipped (reason: the first faulty
            channel's; detail: every faulty channel).
    """
    if correction == "none":
        return dict(signals)
    faults: list[SignalFault] = []
    for name in signals:
        baseline = np.asarray(baselines[name], dtype=np.float64).reshape(-1)
        needed = math.ceil(MIN_BASELINE_SECONDS * float(rates[name]))
        if baseline.size < needed:
            seconds = baseline.size / float(rates[name])
            detail = f"{name}: {seconds:.3g} s of baseline, fewer than {MIN_BASELINE_SECONDS:g} s"
            faults.append(SignalFault(BASELINE_TOO_SHORT, detail))
            continue
        fault = window_fault(name, baseline, quality)
        if fault is not None:
            faults.append(SignalFault(BASELINE_FAULTS[fault.reason], f"baseline of {fault.detail}"))
    if faults:
        raise SampleError(faults[0].reason, "; ".join(f.detail for f in faults))
    corrected: dict[str, np.ndarray] = {}
    for name, window in signals.items():
        baseline = np.asarray(baselines[name], dtype=np.float64).reshape(-1)
        centred = np.asarray(window, dtype=np.float64) - baseline.mean()
        corrected[name] = centred / baseline.std() if correction == "standardise" else centred
    return corrected
