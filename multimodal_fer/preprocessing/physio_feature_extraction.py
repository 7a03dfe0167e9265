"""Physiological features of one signal window, computed with neurokit2, with a validity flag per feature.

The feature list is fixed (:data:`PHYSIO_FEATURES`, in this order):

===========================  ===========  =======  ===========  ================================================
feature                      unit         channel  min. window  why that minimum
===========================  ===========  =======  ===========  ================================================
``heart_rate_mean``          beats/min    ecg      3 R peaks    the mean of the window's RR intervals; two
                                                                intervals at least, no minimum duration beyond
``hrv_rmssd``                ms           ecg      10 s         Munoz et al. 2015 (PLoS ONE 10:e0138921): one
                                                                10 s ECG gives a valid RMSSD
``hrv_sdnn``                 ms           ecg      30 s         Munoz et al. 2015: SDNN needs 30 s
``hrv_pnn50``                %            ecg      60 s         a share of successive differences: with fewer
                                                                than ~60 of them each beat moves it by several
                                                                points; no study validates it shorter
``hrv_lf``                   ms²          ecg      120 s        Task Force 1996 (Circulation 93:1043): ~2 min
                                                                for the LF band (0.04-0.15 Hz); neurokit2 docs
``hrv_hf``                   ms²          ecg      60 s         Task Force 1996: ~1 min for HF (0.15-0.4 Hz)
``hrv_lf_hf``                ratio        ecg      300 s        neurokit2's ``hrv_frequency`` docs: 5 min for
                                                                LF/HF (the Task Force's short-term recording)
``eda_scl_mean``             µS           eda      4 s          the tonic level is a 4 s running median
                                                                (neurokit2 ``eda_phasic(method="smoothmedian")``)
``eda_scr_count``            count        eda      4 s          SCRs of at least 0.05 µS with onset and peak in
                                                                the window; an SCR rises over 1-3 s
``eda_scr_amplitude_mean`  ` µS           eda      4 s, 1 SCR   their mean onset-to-peak amplitude; undefined
                                                                without an SCR
``rsp_rate``                 breaths/min  rsp      1 breath     60 / mean breath-to-breath interval (peak to
                                                                peak and trough to trough): one full cycle
``rsp_rate_variability``     ms           rsp      60 s,        SDBB, the standard deviation of breath-to-breath
                                                   3 breaths    intervals (neurokit2 ``rsp_rrv``); breaths come
                                                                every 3-5 s, so a minute holds ~15 intervals
===========================  ===========  =======  ===========  ================================================

HRV indices also need an ECG sampled at 100 Hz or more: the Task Force 1996 recommends 250-500 Hz, accepting
lower rates (never below 100 Hz) only with interpolation refining the R-peak fiducial point; R peaks are
refined here by fitting a parabola through the three samples around each peak.

A feature is **invalid** (stored as 0 with flag False, never estimated) when its channel is missing, holds a
NaN or infinity, or is flat; when the window or sampling rate is below its minimum; when too few R peaks,
SCRs or breaths are found, or their intervals are not physiological (RR outside 0.27-2 s, i.e. 30-220
beats/min; breaths outside 1.5-20 s); when neurokit2 fails; or when the result is not finite. The reason is
kept as an :class:`InvalidReason` code.

A sampling rate below a channel's floor (:data:`CHANNEL_MIN_SAMPLING_RATE`) is refused when the extractor is
built, since no feature of that channel could be trusted. Channels are matched by name (``ecg``, ``eda``,
``rsp``, case-insensitive); others are ignored. The EDA channel must be in microsiemens (the SCR amplitude
threshold is absolute). neurokit2 is imported lazily, on first extraction, and its warnings are silenced.

This module computes the features; :mod:`multimodal_fer.preprocessing.physio_feature_cache` stores them beside a data
cache, and :mod:`multimodal_fer.datamodules.physio_feature_batches` reads and standardises them for training.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import IntEnum
from types import ModuleType
from typing import Any

import numpy as np

from multimodal_fer._lazy import require
from multimodal_fer.errors import DataError
from multimodal_fer.physio_catalogue import (  # noqa: F401 - re-exported for callers of this module
    NUM_PHYSIO_FEATURES,
    PHYSIO_FEATURE_NAMES,
    PHYSIO_FEATURES,
    PhysioFeature,
)

#: Bump when the values computed for the same signals and settings change; older side caches become stale.
EXTRACTOR_VERSION = 1

#: Lowest sampling rate (Hz) accepted per channel: below it the extractor refuses the signals. ECG: a QRS
#: complex (~0.1 s) must span several samples for R-peak detection; EDA: 4 Hz wrist devices are common and an
#: SCR rises over more than a second; respiration: neurokit2 cleans it with a 0.05-3 Hz band-pass.
CHANNEL_MIN_SAMPLING_RATE: dict[str, float] = {"ecg": 50.0, "eda": 4.0, "rsp": 10.0}

_NK_PURPOSE = "computing physiological features (mfer physio-features)"


class InvalidReason(IntEnum):
    """Why a feature is invalid (0: it is valid); stored per sample and feature in the side cache."""

    VALID = 0
    CHANNEL_MISSING = 1
    CHANNEL_NOT_FINITE = 2
    CHANNEL_FLAT = 3
    SAMPLING_RATE_TOO_LOW = 4
    WINDOW_TOO_SHORT = 5
    TOO_FEW_EVENTS = 6
    IMPLAUSIBLE_INTERVALS = 7
    NEUROKIT_FAILED = 8
    NOT_FINITE_RESULT = 9


@dataclass(frozen=True)
class PhysioFeatureSettings:
    """Settings of the extraction (recorded in, and fingerprinting, the side cache).

    Attributes:
        scr_min_amplitude_us: smallest SCR counted, in µS (neurokit2's own threshold is relative to the
            window's largest peak, so a window without a response would count noise); published minimum
            amplitude criteria lie between 0.01 and 0.05 µS.
        eda_tonic_seconds: length of the running median that gives the tonic level.
        rr_interval_range_s: plausible RR intervals (30-220 beats/min); others mean missed or extra R peaks.
        breath_interval_range_s: plausible breath-to-breath intervals (3-40 breaths/min).
        flat_tolerance: a channel whose peak-to-peak range is at most this times max(1, max |x|) is flat.
    """

    scr_min_amplitude_us: float = 0.05
    eda_tonic_seconds: float = 4.0
    rr_interval_range_s: tuple[float, float] = (60.0 / 220.0, 2.0)
    breath_interval_range_s: tuple[float, float] = (1.5, 20.0)
    flat_tolerance: float = 1e-6

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (tuples become lists)."""
        data = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}


@dataclass(frozen=True)
class PhysioFeatureResult:
    """Features of one window.

    Attributes:
        values: float32 (F,), 0 where invalid.
        reasons: int8 (F,), :class:`InvalidReason` codes (0 = valid).
    """

    values: np.ndarray
    reasons: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """Validity flags, bool (F,): True where the feature is valid."""
        return self.reasons == InvalidReason.VALID

    def as_dict(self) -> dict[str, float | None]:
        """``{name: value}``, None where invalid (for reading and logging)."""
        return {
            name: (float(v) if ok else None)
            for name, v, ok in zip(PHYSIO_FEATURE_NAMES, self.values, self.valid, strict=True)
        }


class PhysioFeatureExtractor:
    """Computes :data:`PHYSIO_FEATURES` for windows of multichannel signals.

    Args:
        sampling_rate: samples per second of every channel.
        channels: channel names, one per row of the signals (e.g. ``("ecg", "eda", "rsp")``).
        settings: extraction settings.

    Raises:
        DataError: a non-positive sampling rate, repeated channel names, or a sampling rate below
            :data:`CHANNEL_MIN_SAMPLING_RATE` for a channel that is present.
    """

    def __init__(
        self,
        sampling_rate: float,
        channels: Sequence[str],
        settings: PhysioFeatureSettings | None = None,
    ) -> None:
        if not (math.isfinite(sampling_rate) and sampling_rate > 0):
            raise DataError(f"sampling_rate must be a positive number of Hz, got {sampling_rate!r}.")
        names = [str(c).lower() for c in channels]
        if len(set(names)) != len(names):
            raise DataError(f"Channel names {list(channels)} repeat a name; give each row its own.")
        for channel, floor in CHANNEL_MIN_SAMPLING_RATE.items():
            if channel in names and sampling_rate < floor:
                raise DataError(
                    f"The {channel.upper()} channel is sampled at {sampling_rate:g} Hz, below the {floor:g} Hz "
                    f"needed for its features; resample the recording to at least {floor:g} Hz, or leave the "
                    f"{channel!r} channel out of the channel names (its features are then flagged invalid)."
                )
        self.sampling_rate = float(sampling_rate)
        self.channels = tuple(names)
        self.settings = settings or PhysioFeatureSettings()
        self._nk: ModuleType | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_nk"] = None  # re-imported in each worker process
        return state

    @property
    def nk(self) -> ModuleType:
        """neurokit2, imported on first use."""
        if self._nk is None:
            self._nk = require("neurokit2", _NK_PURPOSE)
        return self._nk

    # ------------------------------------------------------------------------------------------------ public
    def __call__(self, signals: np.ndarray) -> PhysioFeatureResult:
        """Features of one window.

        Args:
            signals: (C, T) array, rows in the order of ``channels``.

        Returns:
            The features and their validity reasons.

        Raises:
            DataError: the array is not (len(channels), T).
            MissingDependencyError: neurokit2 is not installed.
        """
        signals = np.asarray(signals)
        if signals.ndim != 2 or signals.shape[0] != len(self.channels):
            raise DataError(
                f"Expected signals of shape ({len(self.channels)}, T) for channels {list(self.channels)}, "
                f"got {signals.shape}."
            )
        self.nk  # noqa: B018 - import here, so a missing neurokit2 is an error, not every feature "failed"
        values: dict[str, float] = {}
        reasons = {f.name: InvalidReason.VALID for f in PHYSIO_FEATURES}
        seconds = signals.shape[1] / self.sampling_rate
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # neurokit2, scipy and numpy warn on short or odd windows
            for channel, compute in (("ecg", self._ecg), ("eda", self._eda), ("rsp", self._rsp)):
                wanted = [f for f in PHYSIO_FEATURES if f.channel == channel]
                todo = self._precheck(signals, channel, wanted, seconds, reasons)
                if todo:
                    row = signals[self.channels.index(channel)].astype(np.float64)
                    compute(row, todo, values, reasons)
        out = np.zeros(NUM_PHYSIO_FEATURES, dtype=np.float32)
        codes = np.zeros(NUM_PHYSIO_FEATURES, dtype=np.int8)
        for i, feature in enumerate(PHYSIO_FEATURES):
            reason = reasons[feature.name]
            if reason == InvalidReason.VALID:
                value = values.get(feature.name, math.nan)
                if not math.isfinite(value) or not math.isfinite(np.float32(value)):
                    reason = InvalidReason.NOT_FINITE_RESULT
                else:
                    out[i] = value
            codes[i] = reason
        return PhysioFeatureResult(values=out, reasons=codes)

    def extract_many(self, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features of a stack of windows.

        Args:
            signals: (N, C, T).

        Returns:
            ``(values, reasons)``: float32 (N, F) and int8 (N, F).
        """
        results = [self(window) for window in np.asarray(signals)]
        if not results:
            return np.zeros((0, NUM_PHYSIO_FEATURES), np.float32), np.zeros((0, NUM_PHYSIO_FEATURES), np.int8)
        return np.stack([r.values for r in results]), np.stack([r.reasons for r in results])

    # --------------------------------------------------------------------------------------------- checks
    def _precheck(
        self,
        signals: np.ndarray,
        channel: str,
        wanted: list[PhysioFeature],
        seconds: float,
        reasons: dict[str, InvalidReason],
    ) -> list[PhysioFeature]:
        """Flag features that cannot be computed from the channel as it is; return the others."""
        if channel not in self.channels:
            reason: InvalidReason | None = InvalidReason.CHANNEL_MISSING
        else:
            row = signals[self.channels.index(channel)].astype(np.float64)
            if not np.all(np.isfinite(row)):
                reason = InvalidReason.CHANNEL_NOT_FINITE
            elif np.ptp(row) <= self.settings.flat_tolerance * max(1.0, float(np.max(np.abs(row)))):
                reason = InvalidReason.CHANNEL_FLAT
            else:
                reason = None
        todo = []
        for feature in wanted:
            if reason is not None:
                reasons[feature.name] = reason
            elif self.sampling_rate < feature.min_sampling_rate:
                reasons[feature.name] = InvalidReason.SAMPLING_RATE_TOO_LOW
            elif seconds < feature.min_seconds:
                reasons[feature.name] = InvalidReason.WINDOW_TOO_SHORT
            else:
                todo.append(feature)
        return todo

    @staticmethod
    def _flag(reasons: dict[str, InvalidReason], features: list[PhysioFeature], reason: InvalidReason) -> None:
        for feature in features:
            reasons[feature.name] = reason

    # -------------------------------------------------------------------------------------------------- ECG
    def _r_peaks_ms(self, ecg: np.ndarray) -> np.ndarray:
        """R peaks in milliseconds from the window start, refined to sub-sample precision.

        A parabola through the cleaned ECG's three samples around each detected peak places its apex between
        samples (the Task Force's interpolation of the fiducial point for ECGs sampled below 250 Hz).
        """
        cleaned = np.asarray(self.nk.ecg_clean(ecg, sampling_rate=self.sampling_rate), dtype=np.float64)
        _, info = self.nk.ecg_peaks(cleaned, sampling_rate=self.sampling_rate, correct_artifacts=False)
        peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
        peaks = peaks[(peaks >= 0) & (peaks < cleaned.size)]
        refined = peaks.astype(np.float64)
        inner = (peaks > 0) & (peaks < cleaned.size - 1)
        left, mid, right = cleaned[peaks[inner] - 1], cleaned[peaks[inner]], cleaned[peaks[inner] + 1]
        curvature = left - 2.0 * mid + right
        is_apex = (curvature < 0) & (mid >= left) & (mid >= right)
        offset = np.where(is_apex, 0.5 * (left - right) / np.where(is_apex, curvature, -1.0), 0.0)
        refined[inner] += np.clip(offset, -0.5, 0.5)
        return np.sort(refined) * 1000.0 / self.sampling_rate

    def _ecg(
        self, ecg: np.ndarray, todo: list[PhysioFeature], values: dict[str, float], reasons: dict[str, InvalidReason]
    ) -> None:
        try:
            peaks_ms = self._r_peaks_ms(ecg)
        except Exception:  # noqa: BLE001 - any failure of neurokit2 on this window invalidates its features
            self._flag(reasons, todo, InvalidReason.NEUROKIT_FAILED)
            return
        rr_ms = np.diff(peaks_ms)
        low, high = self.settings.rr_interval_range_s
        if rr_ms.size and (rr_ms.min() < low * 1000.0 or rr_ms.max() > high * 1000.0):
            self._flag(reasons, todo, InvalidReason.IMPLAUSIBLE_INTERVALS)
            return
        todo = self._enough_events(todo, peaks_ms.size, reasons)
        names = {f.name for f in todo}
        if "heart_rate_mean" in names:
            values["heart_rate_mean"] = 60000.0 / float(np.mean(rr_ms))
        # neurokit2's HRV functions take peak sample indices; at a nominal 1000 Hz these are the refined
        # peaks in whole milliseconds, so intervals keep their sub-sample precision.
        peaks = np.round(peaks_ms).astype(np.int64)
        self._call_into(
            todo,
            {"hrv_rmssd": "HRV_RMSSD", "hrv_sdnn": "HRV_SDNN", "hrv_pnn50": "HRV_pNN50"},
            lambda: self.nk.hrv_time(peaks, sampling_rate=1000),
            values,
            reasons,
        )
        self._call_into(
            todo,
            {"hrv_lf": "HRV_LF", "hrv_hf": "HRV_HF", "hrv_lf_hf": "HRV_LFHF"},
            lambda: self.nk.hrv_frequency(peaks, sampling_rate=1000, normalize=False, silent=True),
            values,
            reasons,
        )

    # -------------------------------------------------------------------------------------------------- EDA
    def _eda(
        self, eda: np.ndarray, todo: list[PhysioFeature], values: dict[str, float], reasons: dict[str, InvalidReason]
    ) -> None:
        try:
            cleaned = np.asarray(self.nk.eda_clean(eda, sampling_rate=self.sampling_rate), dtype=np.float64)
            # smoothing_factor is the running median's length in seconds (neurokit2 multiplies it by the rate).
            decomposed = self.nk.eda_phasic(
                cleaned,
                sampling_rate=self.sampling_rate,
                method="smoothmedian",
                smoothing_factor=self.settings.eda_tonic_seconds,
            )
            tonic = np.asarray(decomposed["EDA_Tonic"], dtype=np.float64)
        except Exception:  # noqa: BLE001
            self._flag(reasons, todo, InvalidReason.NEUROKIT_FAILED)
            return
        names = {f.name for f in todo}
        if "eda_scl_mean" in names:
            values["eda_scl_mean"] = float(np.mean(tonic))
        scr_features = [f for f in todo if f.name != "eda_scl_mean"]
        if not scr_features:
            return
        try:
            # SCRs are scored onset (trough) to peak on the cleaned conductance, the classic amplitude: the
            # running median would absorb part of a response broader than its 4 s and shrink its amplitude.
            _, info = self.nk.eda_peaks(cleaned, sampling_rate=self.sampling_rate, method="neurokit")
            amplitudes = np.asarray(info["SCR_Amplitude"], dtype=np.float64)
        except Exception:  # noqa: BLE001
            self._flag(reasons, scr_features, InvalidReason.NEUROKIT_FAILED)
            return
        # SCRs whose onset precedes the window have no measurable amplitude (NaN) and are not counted.
        amplitudes = amplitudes[np.isfinite(amplitudes) & (amplitudes >= self.settings.scr_min_amplitude_us)]
        scr_features = self._enough_events(scr_features, amplitudes.size, reasons)
        names = {f.name for f in scr_features}
        if "eda_scr_count" in names:
            values["eda_scr_count"] = float(amplitudes.size)
        if "eda_scr_amplitude_mean" in names:
            values["eda_scr_amplitude_mean"] = float(np.mean(amplitudes))

    # ------------------------------------------------------------------------------------------ respiration
    def _rsp(
        self, rsp: np.ndarray, todo: list[PhysioFeature], values: dict[str, float], reasons: dict[str, InvalidReason]
    ) -> None:
        try:
            cleaned = np.asarray(self.nk.rsp_clean(rsp, sampling_rate=self.sampling_rate), dtype=np.float64)
            _, info = self.nk.rsp_peaks(cleaned, sampling_rate=self.sampling_rate)
        except IndexError:
            # neurokit2 0.3.0's khodadad2018 peak finder indexes a second extremum that a window with fewer
            # than two breath extrema lacks: too few breaths, not a failure of the signal.
            self._flag(reasons, todo, InvalidReason.TOO_FEW_EVENTS)
            return
        except Exception:  # noqa: BLE001
            self._flag(reasons, todo, InvalidReason.NEUROKIT_FAILED)
            return
        peaks = np.asarray(info["RSP_Peaks"], dtype=np.int64)
        troughs = np.asarray(info["RSP_Troughs"], dtype=np.int64)
        cycles_s = np.concatenate([np.diff(np.sort(peaks)), np.diff(np.sort(troughs))]) / self.sampling_rate
        low, high = self.settings.breath_interval_range_s
        if cycles_s.size and (cycles_s.min() < low or cycles_s.max() > high):
            self._flag(reasons, todo, InvalidReason.IMPLAUSIBLE_INTERVALS)
            return
        if self._enough_events([f for f in todo if f.name == "rsp_rate"], cycles_s.size, reasons):
            values["rsp_rate"] = 60.0 / float(np.mean(cycles_s))
        variability = [f for f in todo if f.name == "rsp_rate_variability"]
        if variability and self._enough_events(variability, max(troughs.size - 1, 0), reasons):
            self._call_into(
                variability,
                {"rsp_rate_variability": "RRV_SDBB"},
                lambda: self.nk.rsp_rrv(
                    self.nk.rsp_rate(cleaned, troughs=troughs, sampling_rate=self.sampling_rate),
                    troughs=troughs,
                    sampling_rate=self.sampling_rate,
                    silent=True,
                ),
                values,
                reasons,
            )

    # ------------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _enough_events(
        features: list[PhysioFeature], count: int, reasons: dict[str, InvalidReason]
    ) -> list[PhysioFeature]:
        """Flag features needing more events than ``count``; return the rest."""
        kept = []
        for feature in features:
            if count < feature.min_events:
                reasons[feature.name] = InvalidReason.TOO_FEW_EVENTS
            else:
                kept.append(feature)
        return kept

    @staticmethod
    def _call_into(
        todo: list[PhysioFeature],
        columns: dict[str, str],
        compute: Any,
        values: dict[str, float],
        reasons: dict[str, InvalidReason],
    ) -> None:
        """Run one neurokit2 call if any of ``columns``' features is wanted, copying its columns out."""
        wanted = [f for f in todo if f.name in columns]
        if not wanted:
            return
        try:
            table = compute()
            for feature in wanted:
                values[feature.name] = float(np.asarray(table[columns[feature.name]], dtype=np.float64).ravel()[0])
        except Exception:  # noqa: BLE001
            for feature in wanted:
                reasons[feature.name] = InvalidReason.NEUROKIT_FAILED
