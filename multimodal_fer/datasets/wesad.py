"""WESAD (Wearable Stress and Affect Detection): chest and wrist physiology of 15 subjects under lab conditions.

Layout as distributed (a zip from the authors at the University of Siegen); ``raw_root`` is the folder holding
``WESAD/`` or that folder itself::

    WESAD/S2/S2.pkl ... WESAD/S17/S17.pkl     (no S1 and S12; each folder also holds a readme, the raw device
                                               exports and questionnaires, which are not read)

Each ``SX.pkl`` is a Python-2 pickle (latin-1, see :mod:`multimodal_fer.media.pickles`) of a dict: ``subject``
(``"S2"``), ``label`` (N,) condition codes at 700 Hz, and ``signal`` with ``chest`` (RespiBAN at 700 Hz: ``ACC``
(N, 3), ``ECG``, ``EDA``, ``EMG``, ``Resp``, ``Temp`` (N, 1)) and ``wrist`` (Empatica E4: ``ACC`` (·, 3) at 32 Hz,
``BVP`` at 64 Hz, ``EDA`` and ``TEMP`` at 4 Hz). Keys are matched case-insensitively (public loaders disagree on
``Resp``/``RESP``). The channels the package can store (``channel_table``; device, key, column, declared rate):

==================================  ==================================================================
package names                       source
==================================  ==================================================================
``ecg``, ``eda``, ``emg``,          chest ``ECG``, ``EDA``, ``EMG``, ``Resp``, ``Temp`` at 700 Hz
``rsp``, ``temp``
``acc_x``, ``acc_y``, ``acc_z``     chest ``ACC`` columns 0-2 at 700 Hz
``wrist_bvp``                       wrist ``BVP`` at 64 Hz
``wrist_eda``, ``wrist_temp``       wrist ``EDA``, ``TEMP`` at 4 Hz
``wrist_acc_x`` ... ``_z``          wrist ``ACC`` columns 0-2 at 32 Hz
==================================  ==================================================================

Default: ``ecg``, ``eda``, ``rsp``, ``temp``, the chest's physiological signals that survive the model's 128 Hz
(EMG's content lies mostly above 64 Hz, so add ``emg`` with a higher ``physio_sample_rate``). Every channel is
resampled to the model's rate by the cache; wrist channels are cut on the same time axis (the label track's).

**Labels.** Codes: 0 transient, 1 baseline, 2 stress, 3 amusement, 4 meditation, 5/6/7 to be ignored. The
label space has the chosen ``conditions`` in code order (default baseline, stress, amusement; ``meditation`` may
be added). They are affective states induced by the protocol, not facial expressions, so they keep their own names,
outside the package's expression vocabulary: another data set's "neutral" or "happy" never receives them (they
map to unlabelled), and the expression head trained here classifies conditions (``expr`` metrics are condition
metrics). No affect dimensions, no AUs.

**Windows.** Windows of ``window_seconds`` every ``stride_seconds`` over the whole recording (from the start of the
label track). A window's label is the chosen condition that covers at least ``min_label_share`` of its label
samples (default 1.0: the whole window). Other windows are rejected while listing, runs of consecutive windows
with the same reason merged into one line of ``failures.jsonl`` (``S2/S2.pkl:120.00-210.00s (4 windows)``):
``transient (code 0)``, ``code to ignore (5, 6 or 7)``, ``condition not used: meditation``, ``unknown label
code`` (any code outside 0-7 in the window), ``no condition covers the required share``. Key ``S2/w00012``
(subject, window index from the recording's start); subject ``S2``; sequence = the subject's recording; frame =
window index.

**Checks.** A file that cannot be unpickled, misses a signal, has an array of the wrong shape, non-integer label
codes or a ``subject`` other than its folder is rejected while listing. A window with a NaN, flat or clipped
channel, a channel whose length does not fit its declared rate over the label track's duration (``sampling
rate other than declared``), or one ending before the window does (``truncated signal``) fails with the reason.

**Protocol.** Leave-one-subject-out (the usual WESAD protocol): :class:`SubjectKFold` with 15 folds, one subject
tests, the next validates, 13 train; run folds 0-14.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from multimodal_fer.datasets.base import (
    DatasetAdapter,
    Listing,
    PhysioLayout,
    RawMedia,
    RawSample,
    Rejection,
    SampleError,
    SampleLabels,
)
from multimodal_fer.datasets.physio_recordings import (
    UNREADABLE_PICKLE,
    Channel,
    check_window,
    cut_window,
    merged_rejections,
    read_pickle,
    window_starts,
)
from multimodal_fer.datasets.protocols import SplitProtocol, SubjectKFold
from multimodal_fer.errors import DataError
from multimodal_fer.media.pickles import load_legacy_pickle
from multimodal_fer.media.signals import SignalQuality, whole_samples
from multimodal_fer.types import LabelSpace

#: Condition codes of the label track and their names.
WESAD_CONDITIONS: dict[int, str] = {1: "baseline", 2: "stress", 3: "amusement", 4: "meditation"}
TRANSIENT_CODE = 0
IGNORED_CODES: tuple[int, ...] = (5, 6, 7)
#: Codes the readme defines (anything else is unknown).
KNOWN_CODES: tuple[int, ...] = (TRANSIENT_CODE, *WESAD_CONDITIONS, *IGNORED_CODES)
#: The label track's rate (the RespiBAN's).
LABEL_RATE = 700.0
#: Package channel name → (device, key, column, declared rate in Hz).
WESAD_CHANNEL_TABLE: dict[str, tuple[str, str, int, float]] = {
    "ecg": ("chest", "ECG", 0, 700.0),
    "eda": ("chest", "EDA", 0, 700.0),
    "emg": ("chest", "EMG", 0, 700.0),
    "rsp": ("chest", "Resp", 0, 700.0),
    "temp": ("chest", "Temp", 0, 700.0),
    "acc_x": ("chest", "ACC", 0, 700.0),
    "acc_y": ("chest", "ACC", 1, 700.0),
    "acc_z": ("chest", "ACC", 2, 700.0),
    "wrist_bvp": ("wrist", "BVP", 0, 64.0),
    "wrist_eda": ("wrist", "EDA", 0, 4.0),
    "wrist_temp": ("wrist", "TEMP", 0, 4.0),
    "wrist_acc_x": ("wrist", "ACC", 0, 32.0),
    "wrist_acc_y": ("wrist", "ACC", 1, 32.0),
    "wrist_acc_z": ("wrist", "ACC", 2, 32.0),
}
#: Columns of each signal in the files (3-axis accelerometers); every other signal has one (N, 1).
SIGNAL_COLUMNS: dict[str, int] = {"ACC": 3}
DEFAULT_CHANNELS: tuple[str, ...] = ("ecg", "eda", "rsp", "temp")
DEFAULT_CONDITIONS: tuple[str, ...] = ("baseline", "stress", "amusement")
#: Listing rejection reasons of windows.
TRANSIENT = "transient (code 0)"
IGNORED = "code to ignore (5, 6 or 7)"
UNKNOWN_CODE = "unknown label code"
MIXED = "no condition covers the required share"
_FOLDER = re.compile(r"S(\d+)")


class WESAD(DatasetAdapter):
    """WESAD's per-subject pickles: windows of chest (and wrist) physiology labelled with the study condition.

    Args:
        channels: package channel names to store, in this order (None: ``ecg``, ``eda``, ``rsp``, ``temp``).
        channel_table: name → ``[device, key, column, rate]`` (None: :data:`WESAD_CHANNEL_TABLE`).
        conditions: classes, among baseline, stress, amusement, meditation (None: the first three); windows of
            other conditions are rejected.
        window_seconds: window length (whole samples at 700 Hz and at every chosen channel's rate).
        stride_seconds: step between window starts (likewise whole samples).
        min_label_share: a window is labelled with a condition covering at least this share of its label samples.
        quality: thresholds of the signal checks (clip limits per channel name; none by default).
    """

    name = "wesad"
    modalities = ("physio",)

    def __init__(
        self,
        channels: list[str] | None = None,
        channel_table: dict[str, tuple[str, str, int, float]] | None = None,
        conditions: list[str] | None = None,
        window_seconds: float = 60.0,
        stride_seconds: float = 15.0,
        min_label_share: float = 1.0,
        quality: SignalQuality | None = None,
    ) -> None:
        table = {
            name: (str(spec[0]), str(spec[1]), int(spec[2]), float(spec[3]))
            for name, spec in (channel_table if channel_table is not None else WESAD_CHANNEL_TABLE).items()
        }
        for name, (device, _, column, rate) in table.items():
            if device not in ("chest", "wrist") or column < 0 or not rate > 0:
                raise ValueError(
                    f"channel_table[{name!r}] = {table[name]}: give [chest|wrist, key, column ≥ 0, rate > 0]."
                )
        chosen = list(channels) if channels is not None else list(DEFAULT_CHANNELS)
        unknown = [name for name in chosen if name not in table]
        if unknown or not chosen or len(set(chosen)) != len(chosen):
            raise ValueError(f"channels {chosen}: choose distinct names among {list(table)}.")
        wanted = list(conditions) if conditions is not None else list(DEFAULT_CONDITIONS)
        names = list(WESAD_CONDITIONS.values())
        if [c for c in wanted if c not in names] or len(set(wanted)) < 2 or len(set(wanted)) != len(wanted):
            raise ValueError(f"conditions {wanted}: choose at least two distinct of {names}.")
        if not (window_seconds > 0 and stride_seconds > 0):
            raise ValueError(f"window_seconds={window_seconds} and stride_seconds={stride_seconds} must be positive.")
        for rate in {LABEL_RATE, *(table[name][3] for name in chosen)}:
            whole_samples(window_seconds, rate, "window_seconds")
            whole_samples(stride_seconds, rate, "stride_seconds")
        if not 0.5 < min_label_share <= 1.0:
            raise ValueError(f"min_label_share={min_label_share} must lie in (0.5, 1] (one condition per window).")
        self.channel_table = table
        self.channels = tuple(chosen)
        self.conditions = tuple(c for c in names if c in wanted)
        self.window_seconds = float(window_seconds)
        self.stride_seconds = float(stride_seconds)
        self.min_label_share = float(min_label_share)
        self.quality = quality if quality is not None else SignalQuality()

    # ------------------------------------------------------------------------------------------- description
    @property
    def label_space(self) -> LabelSpace:
        """The chosen conditions, in code order (not expression words: see the module docstring)."""
        return LabelSpace(expressions=self.conditions)

    def settings(self) -> dict[str, Any]:
        """Every option (part of the cache fingerprint)."""
        return {
            "channels": {name: list(self.channel_table[name]) for name in self.channels},
            "conditions": list(self.conditions),
            "window_seconds": self.window_seconds,
            "stride_seconds": self.stride_seconds,
            "min_label_share": self.min_label_share,
            "quality": self.quality.to_json(),
        }

    def default_protocol(self) -> SplitProtocol:
        """Leave-one-subject-out over the 15 subjects (SubjectKFold with 15 folds), fold 0."""
        return SubjectKFold(num_folds=15, fold=0, seed=0)

    def physio_layout(self) -> PhysioLayout:
        """The chosen channels, in order, in windows of ``window_seconds``."""
        return PhysioLayout(channels=self.channels, seconds=self.window_seconds)

    def metadata(self) -> dict[str, Any]:
        """Each stored channel's source (device, key, column) and declared rate."""
        return {"physio_sources": {name: list(self.channel_table[name]) for name in self.channels}}

    # ----------------------------------------------------------------------------------------------- listing
    @staticmethod
    def subject_folders(raw_root: Path) -> list[Path]:
        """The ``SX`` folders (under ``WESAD/`` if there is one), in subject-number order."""
        base = raw_root / "WESAD" if (raw_root / "WESAD").is_dir() else raw_root
        found = [p for p in base.iterdir() if p.is_dir() and _FOLDER.fullmatch(p.name)]
        return sorted(found, key=lambda p: int(p.name[1:]))

    def list_samples(self, raw_root: Path) -> Listing:
        """Every window of every subject with a condition label; everything left out is a rejection.

        Raises:
            DataError: no ``SX/SX.pkl`` under ``raw_root``.
        """
        folders = self.subject_folders(raw_root)
        if not any((folder / f"{folder.name}.pkl").is_file() for folder in folders):
            raise DataError(
                f"No WESAD files under {raw_root}: expected WESAD/S2/S2.pkl ... WESAD/S17/S17.pkl (the dataset zip "
                "from the University of Siegen, unpacked). Pass the folder that holds WESAD/ (or WESAD/ itself) as "
                "raw_root."
            )
        samples: list[RawSample] = []
        rejected: list[Rejection] = []
        for folder in folders:
            path = folder / f"{folder.name}.pkl"
            source = path.relative_to(raw_root).as_posix()
            if not path.is_file():
                rejected.append(Rejection(folder.relative_to(raw_root).as_posix(), "subject folder without its pickle"))
                continue
            content, problem = read_pickle(path)
            if problem is not None:
                rejected.append(Rejection(source, UNREADABLE_PICKLE))
                continue
            codes = self._checked_codes(content, folder.name)
            if isinstance(codes, str):
                rejected.append(Rejection(source, codes))
                continue
            del content
            made, left_out = self._windows(codes, folder.name, source)
            samples += made
            rejected += left_out
        return Listing(samples, rejected)

    def _checked_codes(self, content: Any, subject: str) -> np.ndarray | str:
        """The label track as int64 (N,) after the file's structure checks, or why the file is rejected."""
        if not isinstance(content, dict) or not {"signal", "label", "subject"} <= set(content):
            return "not a dict with 'signal', 'label' and 'subject'"
        if str(content["subject"]) != subject:
            return "subject in the file disagrees with its folder"
        label = content["label"]
        if not isinstance(label, np.ndarray) or label.ndim not in (1, 2) or (label.ndim == 2 and label.shape[1] != 1):
            return f"label array of shape {np.shape(label)}, not (samples,)"
        if label.dtype.kind not in "fiu":
            return f"label array of dtype {label.dtype}, not numbers"
        codes = np.asarray(label).reshape(-1)
        if codes.dtype.kind == "f" and not (np.all(np.isfinite(codes)) and np.all(codes == np.round(codes))):
            return "label codes that are not whole numbers"
        for name in self.channels:
            device, key, column, _ = self.channel_table[name]
            array = _signal(content["signal"], device, key)
            if array is None:
                return f"no signal {device}/{key}"
            if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
                return f"signal {device}/{key} is not an array of numbers"
            columns = SIGNAL_COLUMNS.get(key.upper(), 1)
            if (
                array.ndim not in (1, 2)
                or (array.ndim == 1 and columns > 1)
                or (array.ndim == 2 and array.shape[1] != columns)
            ):
                return f"{device}/{key} array of shape {array.shape}, not (samples, {columns})"
        return codes.astype(np.int64)

    def _windows(self, codes: np.ndarray, subject: str, source: str) -> tuple[list[RawSample], list[Rejection]]:
        """The labelled windows of one recording and the rejections of the others."""
        duration = codes.size / LABEL_RATE
        starts = window_starts(0.0, duration, self.window_seconds, self.stride_seconds)
        if not starts:
            return [], [Rejection(source, "recording shorter than one window")]
        length = round(self.window_seconds * LABEL_RATE)
        first = np.round(np.asarray(starts) * LABEL_RATE).astype(np.int64)
        last = first + length

        def counts(mask: np.ndarray) -> np.ndarray:
            running = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
            return running[last] - running[first]

        unknown = counts(~np.isin(codes, KNOWN_CODES))
        per_code = np.stack([counts(codes == code) for code in range(max(KNOWN_CODES) + 1)], axis=1)  # (W, 8)
        code_of = {name: code for code, name in WESAD_CONDITIONS.items()}
        used = [code_of[name] for name in self.conditions]
        samples: list[RawSample] = []
        outcomes: list[tuple[float, float, str | None]] = []
        for index, start in enumerate(starts):
            reason: str | None = None
            label = -1
            if unknown[index]:
                reason = UNKNOWN_CODE
            else:
                shares = per_code[index] / length
                qualifying = [code for code in used if shares[code] >= self.min_label_share]
                if qualifying:
                    label = used.index(qualifying[0])
                else:
                    dominant = int(np.argmax(per_code[index]))
                    if dominant == TRANSIENT_CODE:
                        reason = TRANSIENT
                    elif dominant in IGNORED_CODES:
                        reason = IGNORED
                    elif dominant in used:
                        reason = MIXED
                    else:
                        reason = f"condition not used: {WESAD_CONDITIONS[dominant]}"
            outcomes.append((start, start + self.window_seconds, reason))
            if reason is None:
                samples.append(
                    RawSample(
                        key=f"{subject}/w{index:05d}",
                        subject=subject,
                        source=source,
                        labels=SampleLabels(expr=label),
                        sequence=subject,
                        frame=index,
                        locators={"start_s": start},
                    )
                )
        return samples, merged_rejections(source, outcomes)

    # ------------------------------------------------------------------------------------------------ loading
    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The window's channels at their declared rates, checked.

        Raises:
            SampleError: an unreadable file, a channel whose length does not fit its declared rate or that ends
                before the window, or a NaN, flat or clipped channel.
        """
        specs = tuple((name, *self.channel_table[name]) for name in self.channels)
        try:
            channels, label_samples = _recording(str(raw_root / sample.source), specs)
        except DataError as error:
            raise SampleError(UNREADABLE_PICKLE, str(error)) from error
        duration = label_samples / LABEL_RATE
        start = float(sample.locators["start_s"])
        signals = {
            name: cut_window(channels[name], start, self.window_seconds, duration, self.quality)
            for name in self.channels
        }
        check_window(signals, self.quality)
        return RawMedia(physio=signals, physio_rates={name: channels[name].rate for name in self.channels})


def _signal(signals: Any, device: str, key: str) -> Any:
    """``signals[device][key]``, the key matched case-insensitively; None where either is missing."""
    if not isinstance(signals, Mapping) or not isinstance(signals.get(device), Mapping):
        return None
    group = signals[device]
    if key in group:
        return group[key]
    matches = [k for k in group if isinstance(k, str) and k.lower() == key.lower()]
    return group[matches[0]] if len(matches) == 1 else None


@lru_cache(maxsize=1)
def _recording(path: str, specs: tuple[tuple[str, str, str, int, float], ...]) -> tuple[dict[str, Channel], int]:
    """The chosen channels of one subject's pickle and the label track's length, read once per process.

    Only the chosen columns are kept (float64), not the whole file.

    Raises:
        DataError: the file cannot be read or lacks a chosen signal (it changed since listing).
    """
    content = load_legacy_pickle(path)
    if not isinstance(content, dict) or "label" not in content:
        raise DataError(f"{path} holds no 'label' track.")
    channels: dict[str, Channel] = {}
    for name, device, key, column, rate in specs:
        array = _signal(content.get("signal"), device, key)
        if not isinstance(array, np.ndarray):
            raise DataError(f"{path} has no signal {device}/{key}.")
        values = array.reshape(array.shape[0], -1)[:, column] if array.ndim == 2 else array.reshape(-1)
        channels[name] = Channel(name, np.ascontiguousarray(values, dtype=np.float64), rate)
    return channels, int(np.asarray(content["label"]).size)
