"""DEAP (Database for Emotion Analysis using Physiological signals), preprocessed Python release: peripheral physiology.

32 participants each watched 40 one-minute music-video excerpts while EEG and peripheral signals were recorded,
and rated each on 1-9 self-assessment scales. Layout as distributed (after the EULA, from QMUL); ``raw_root`` is the
folder holding ``data_preprocessed_python/`` or that folder itself::

    data_preprocessed_python/s01.dat ... s32.dat

Each ``sXX.dat`` is a Python-2 pickle (read with latin-1 decoding, see :mod:`multimodal_fer.media.pickles`) of a
dict with ``data`` float (trials, 40, samples) and ``labels`` float (trials, 4). The release has 40 trials of
8,064 samples at 128 Hz: 63 s, of which the first 3 s are the pre-trial baseline. Channels 1-32 are EEG
(Geneva/BioSemi order), 33-40 the peripheral signals; the package names them (0-based index in the file):

=====================  =====  ===========================================================================
package name           index  DEAP channel
=====================  =====  ===========================================================================
``heog``               32     hEOG, horizontal electro-oculogram
``veog``               33     vEOG, vertical electro-oculogram
``emg_zygomaticus``    34     zEMG, zygomaticus major EMG
``emg_trapezius``      35     tEMG, trapezius EMG
``gsr``                36     GSR, galvanic skin response (unit not confirmed here, so not named ``eda``:
                              the feature extractor assumes ``eda`` in µS)
``rsp``                37     respiration belt
``ppg``                38     plethysmograph (blood volume pulse)
``temp``               39     skin temperature
=====================  =====  ===========================================================================

The peripheral order is corroborated by public loader code, not read from the official readme
(``channel_table`` replaces the table). The 32 EEG channels keep their 10-20 names (``Fp1`` ... ``O2``) and are
left out unless ``include_eeg`` (they then follow the peripheral rows of the same ``physio`` array, at the same
128 Hz: EEG fits the physiological modality's (C, T) contract without a modality of its own).

**Labels.** ``labels[trial]`` = (valence, arousal, dominance, liking), each 1-9. Valence, arousal and (with
``dominance``) dominance map linearly to the package's [-1, 1] (1 → -1, 5 → 0, 9 → 1). Liking has no affect
dimension in the package; it is only available as a binary target. ``binary_target`` adds the usual high/low
protocol as a two-class label (``low_<rating>``, ``high_<rating>``; high when the rating is at least
``binary_threshold``, 5 by default) in the expression slot. These class names are not facial expressions and are
outside the package's expression vocabulary on purpose: mapped into another data set's label space they become
unlabelled, never "happy" or "sad". With the default threshold 5 the sign of the mapped rating carries the same
split, so the sign agreement (SAGR) of valence/arousal predictions is the binary accuracy except for ratings of
exactly 5. A trial with a rating outside 1-9 or not finite is rejected while listing, with its trial number.

**Windows.** Each trial minus its baseline is cut into windows of ``window_seconds`` every ``stride_seconds``
(defaults: 10 s every 10 s, six per trial); each window is a sample with its trial's labels. Key
``s01/t07/w02`` (participant, 1-based trial, window), subject ``s01``, sequence ``s01/t07`` (the trial), frame =
window index. Windows that would reach past ``trial_seconds`` are not made.

**Baseline correction.** ``baseline_correction`` (off by default: ``none``) corrects each window by its trial's
pre-trial baseline (the first ``baseline_seconds``), per channel: ``subtract`` removes the baseline's mean,
``standardise`` also divides by its standard deviation
(:func:`~multimodal_fer.datasets.physio_recordings.correct_by_baseline`). A NaN, flat or clipped baseline fails
the window (``non-finite baseline``, ``flat baseline``, ``clipped baseline``), never used. The option is part of the
cache fingerprint when it is on.

**Checks.** A file that cannot be unpickled or has arrays of the wrong shape is rejected while listing. A window
with a NaN, flat or clipped channel, a trial longer than 63 s at 128 Hz (``sampling rate other than declared``)
or shorter than its window needs (``truncated signal``) fails with the reason (:mod:`multimodal_fer.media.signals`).

**Protocols.** DEAP has no official split. Default: subject-independent leave-one-subject-out
(:class:`SubjectKFold` with 32 folds: one participant tests, the next validates, 30 train). Subject-dependent:
:class:`~multimodal_fer.datasets.protocols.WithinSubjectKFold` over each participant's trials (e.g. 10 folds of
4 trials; 40 folds is leave-one-trial-out), never splitting a trial's windows.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

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
    BIOSEMI_32_EEG_CHANNELS,
    UNREADABLE_PICKLE,
    BaselineCorrection,
    check_baseline_correction,
    check_window,
    correct_by_baseline,
    fail,
    read_pickle,
    window_samples,
    window_starts,
)
from multimodal_fer.datasets.protocols import SplitProtocol, SubjectKFold
from multimodal_fer.errors import DataError
from multimodal_fer.media.pickles import load_legacy_pickle
from multimodal_fer.media.signals import SignalQuality, length_fault, whole_samples, window_slice
from multimodal_fer.types import LabelSpace

#: EEG channels 1-32 (file indices 0-31), Geneva/BioSemi order.
DEAP_EEG_CHANNELS: tuple[str, ...] = BIOSEMI_32_EEG_CHANNELS
#: Peripheral channels 33-40: package name → 0-based index in the file's channel axis.
DEAP_PERIPHERAL_CHANNELS: dict[str, int] = {
    "heog": 32,
    "veog": 33,
    "emg_zygomaticus": 34,
    "emg_trapezius": 35,
    "gsr": 36,
    "rsp": 37,
    "ppg": 38,
    "temp": 39,
}
#: Every channel: name → 0-based index.
DEAP_CHANNEL_TABLE: dict[str, int] = {
    **{name: index for index, name in enumerate(DEAP_EEG_CHANNELS)},
    **DEAP_PERIPHERAL_CHANNELS,
}
#: Columns of ``labels``.
DEAP_RATINGS: tuple[str, ...] = ("valence", "arousal", "dominance", "liking")
#: Channels in a file and their sampling rate.
NUM_CHANNELS = 40
SAMPLING_RATE = 128.0
#: The self-assessment scale.
RATING_RANGE: tuple[float, float] = (1.0, 9.0)
#: Folder of the Python release.
PYTHON_FOLDER = "data_preprocessed_python"
_FILE_NAME = re.compile(r"s(\d+)\.dat")


class DEAP(DatasetAdapter):
    """DEAP's preprocessed Python release: peripheral physiology (and optionally EEG) in windows, 1-9 ratings.

    Args:
        channels: package channel names to store, in this order (None: the eight peripheral channels).
        include_eeg: also store the 32 EEG channels, after ``channels``.
        channel_table: package name → 0-based channel index in the file (None: :data:`DEAP_CHANNEL_TABLE`).
        window_seconds: window length (a whole number of samples at 128 Hz).
        stride_seconds: step between window starts.
        dominance: also label dominance (the third affect dimension); False: valence and arousal only.
        binary_target: add the high/low protocol of one rating as a two-class label (``valence``, ``arousal``,
            ``dominance`` or ``liking``); None: affect dimensions only.
        binary_threshold: a rating at least this is "high".
        trial_seconds: length of a trial in the files (63 s: the 3-s baseline and the 60-s excerpt).
        baseline_seconds: the pre-trial baseline at each trial's start, left out of the windows.
        baseline_correction: correct each window by its trial's baseline, per channel: ``none`` (as recorded),
            ``subtract`` (minus the baseline's mean) or ``standardise`` (also divided by the baseline's standard
            deviation).
        quality: thresholds of the signal checks (clip limits per channel name; none by default, as DEAP's
            device ranges in these files are not documented here).
    """

    name = "deap"
    modalities = ("physio",)
    va_range = RATING_RANGE
    evaluation_aggregation = "recording"  # papers score trials; a trial's windows are averaged (data card)

    def __init__(
        self,
        channels: list[str] | None = None,
        include_eeg: bool = False,
        channel_table: dict[str, int] | None = None,
        window_seconds: float = 10.0,
        stride_seconds: float = 10.0,
        dominance: bool = True,
        binary_target: Literal["valence", "arousal", "dominance", "liking"] | None = None,
        binary_threshold: float = 5.0,
        trial_seconds: float = 63.0,
        baseline_seconds: float = 3.0,
        baseline_correction: BaselineCorrection = "none",
        quality: SignalQuality | None = None,
    ) -> None:
        table = dict(channel_table) if channel_table is not None else dict(DEAP_CHANNEL_TABLE)
        bad = {name: index for name, index in table.items() if not 0 <= int(index) < NUM_CHANNELS}
        if bad:
            raise ValueError(f"channel_table indices {bad} are outside a DEAP file's 0-{NUM_CHANNELS - 1}.")
        if len(set(table.values())) != len(table):
            raise ValueError("channel_table gives two names the same channel index; give each channel one name.")
        chosen = list(channels) if channels is not None else list(DEAP_PERIPHERAL_CHANNELS)
        if include_eeg:
            chosen += [name for name in DEAP_EEG_CHANNELS if name not in chosen]
        unknown = [name for name in chosen if name not in table]
        if unknown or not chosen:
            raise ValueError(f"channels {unknown or chosen}: choose among {list(table)}.")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"channels {chosen} repeat a name.")
        if not (window_seconds > 0 and stride_seconds > 0):
            raise ValueError(f"window_seconds={window_seconds} and stride_seconds={stride_seconds} must be positive.")
        whole_samples(window_seconds, SAMPLING_RATE, "window_seconds")
        whole_samples(stride_seconds, SAMPLING_RATE, "stride_seconds")
        whole_samples(baseline_seconds, SAMPLING_RATE, "baseline_seconds")
        if baseline_seconds < 0 or baseline_seconds + window_seconds > trial_seconds:
            raise ValueError(
                f"A trial of {trial_seconds} s with a {baseline_seconds}-s baseline holds no {window_seconds}-s window."
            )
        check_baseline_correction(baseline_correction, baseline_seconds)
        if binary_target is not None and binary_target not in DEAP_RATINGS:
            raise ValueError(f"binary_target={binary_target!r}: choose one of {list(DEAP_RATINGS)} or None.")
        if not RATING_RANGE[0] < binary_threshold <= RATING_RANGE[1]:
            raise ValueError(f"binary_threshold={binary_threshold} must lie in (1, 9].")
        self.channel_table = table
        self.channels = tuple(chosen)
        self.include_eeg = include_eeg
        self.window_seconds = float(window_seconds)
        self.stride_seconds = float(stride_seconds)
        self.dominance = dominance
        self.binary_target = binary_target
        self.binary_threshold = float(binary_threshold)
        self.trial_seconds = float(trial_seconds)
        self.baseline_seconds = float(baseline_seconds)
        self.baseline_correction = baseline_correction
        self.quality = quality if quality is not None else SignalQuality()

    # ------------------------------------------------------------------------------------------- description
    @property
    def label_space(self) -> LabelSpace:
        """Valence, arousal (and dominance); with ``binary_target`` also ``low_<rating>``, ``high_<rating>``."""
        dimensions = ("valence", "arousal", "dominance") if self.dominance else ("valence", "arousal")
        expressions = (f"low_{self.binary_target}", f"high_{self.binary_target}") if self.binary_target else ()
        return LabelSpace(expressions=expressions, dimensions=dimensions)

    def settings(self) -> dict[str, Any]:
        """Every option (part of the cache fingerprint).

        ``baseline_correction`` is included only when on, so caches built before the option existed stay valid.
        """
        settings = {
            "channels": list(self.channels),
            "channel_indices": [self.channel_table[name] for name in self.channels],
            "window_seconds": self.window_seconds,
            "stride_seconds": self.stride_seconds,
            "dominance": self.dominance,
            "binary_target": self.binary_target,
            "binary_threshold": self.binary_threshold,
            "trial_seconds": self.trial_seconds,
            "baseline_seconds": self.baseline_seconds,
            "quality": self.quality.to_json(),
        }
        if self.baseline_correction != "none":
            settings["baseline_correction"] = self.baseline_correction
        return settings

    def default_protocol(self) -> SplitProtocol:
        """Leave-one-subject-out over the 32 participants (SubjectKFold with 32 folds), fold 0."""
        return SubjectKFold(num_folds=32, fold=0, seed=0)

    def physio_layout(self) -> PhysioLayout:
        """The chosen channels, in order, in windows of ``window_seconds``."""
        return PhysioLayout(channels=self.channels, seconds=self.window_seconds)

    def metadata(self) -> dict[str, Any]:
        """Each stored channel's index in DEAP's files and its rate there."""
        return {
            "physio_source_channels": {name: self.channel_table[name] for name in self.channels},
            "physio_source_rate": SAMPLING_RATE,
        }

    # ----------------------------------------------------------------------------------------------- listing
    @staticmethod
    def files(raw_root: Path) -> list[Path]:
        """The ``sNN.dat`` files of the Python release, in participant order."""
        folder = raw_root / PYTHON_FOLDER if (raw_root / PYTHON_FOLDER).is_dir() else raw_root
        found = [p for p in folder.iterdir() if p.is_file() and _FILE_NAME.fullmatch(p.name)]
        return sorted(found, key=lambda p: int(_FILE_NAME.fullmatch(p.name).group(1)))  # type: ignore[union-attr]

    def list_samples(self, raw_root: Path) -> Listing:
        """Every window of every trial; unreadable files, wrong shapes and bad ratings are rejections.

        Raises:
            DataError: no ``sNN.dat`` file under ``raw_root``.
        """
        files = self.files(raw_root)
        if not files:
            raise DataError(
                f"No DEAP files under {raw_root}: expected {PYTHON_FOLDER}/s01.dat ... s32.dat (the preprocessed "
                "Python release, obtained from QMUL after signing the EULA). Pass the folder that holds "
                f"{PYTHON_FOLDER}/ (or that folder itself) as raw_root."
            )
        starts = window_starts(self.baseline_seconds, self.trial_seconds, self.window_seconds, self.stride_seconds)
        samples: list[RawSample] = []
        rejected: list[Rejection] = []
        for path in files:
            source = path.relative_to(raw_root).as_posix()
            content, problem = read_pickle(path)
            if problem is not None:
                rejected.append(Rejection(source, UNREADABLE_PICKLE))
                continue
            shape_problem = _shape_problem(content)
            if shape_problem is not None:
                rejected.append(Rejection(source, shape_problem))
                continue
            ratings = np.asarray(content["labels"], dtype=np.float64)
            subject = path.stem
            for trial in range(ratings.shape[0]):
                labels = self.trial_labels(ratings[trial])
                if isinstance(labels, str):
                    rejected.append(Rejection(f"{source}:{trial + 1}", labels))
                    continue
                samples += window_samples(
                    sequence=f"{subject}/t{trial + 1:02d}",
                    subject=subject,
                    source=source,
                    labels=labels,
                    starts=starts,
                    locators=[{"trial": trial, "start_s": start} for start in starts],
                )
        return Listing(samples, rejected)

    def trial_labels(self, ratings: np.ndarray) -> SampleLabels | str:
        """One trial's labels from its four ratings, or why the trial is rejected.

        Args:
            ratings: float (4,) valence, arousal, dominance, liking on 1-9.

        Returns:
            The labels (affect on [-1, 1]; with ``binary_target`` the class 0 low / 1 high), or the reason.
        """
        low, high = RATING_RANGE
        for name, value in zip(DEAP_RATINGS, ratings.tolist(), strict=True):
            if not math.isfinite(value):
                return f"{name} rating is not a number"
            if not low <= value <= high:
                return f"{name} rating outside {low:g}-{high:g}"
        count = 3 if self.dominance else 2
        va = tuple(self.affect_to_unit(float(v)) for v in ratings[:count])
        expr = -1
        if self.binary_target is not None:
            expr = int(float(ratings[DEAP_RATINGS.index(self.binary_target)]) >= self.binary_threshold)
        return SampleLabels(expr=expr, va=va)

    # ------------------------------------------------------------------------------------------------ loading
    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The window's channels at 128 Hz, checked (and corrected by the trial's baseline if set).

        Raises:
            SampleError: an unreadable file, a trial missing from it, a channel at another rate than 128 Hz or
                too short for the window, a NaN, flat or clipped channel, or (with ``baseline_correction``) a NaN,
                flat or clipped baseline.
        """
        try:
            data = _trial_array(str(raw_root / sample.source))
        except DataError as error:
            raise SampleError(UNREADABLE_PICKLE, str(error)) from error
        trial = int(sample.locators["trial"])
        if data.ndim != 3 or trial >= data.shape[0] or data.shape[1] != NUM_CHANNELS:
            raise SampleError("file changed since listing", f"data array of shape {data.shape}, trial {trial + 1}")
        start = float(sample.locators["start_s"])
        # Every channel of a trial has the same length: the length checks speak of the trial.
        where = f"trial {trial + 1}"
        fault = length_fault(where, data.shape[2], SAMPLING_RATE, self.trial_seconds, self.quality)
        if fault is not None:
            raise fail(fault)
        window, fault = window_slice(where, data.shape[2], SAMPLING_RATE, start, self.window_seconds)
        if fault is not None:
            raise fail(fault)
        signals = {name: data[trial, self.channel_table[name], window] for name in self.channels}
        check_window(signals, self.quality)
        rates = dict.fromkeys(self.channels, SAMPLING_RATE)
        if self.baseline_correction != "none":
            baseline = slice(0, round(self.baseline_seconds * SAMPLING_RATE))
            baselines = {name: data[trial, self.channel_table[name], baseline] for name in self.channels}
            signals = correct_by_baseline(signals, baselines, rates, self.baseline_correction, self.quality)
        return RawMedia(physio=signals, physio_rates=rates)


def _shape_problem(content: Any) -> str | None:
    """Why a file's content is not DEAP's ``{'data': (trials, 40, samples), 'labels': (trials, 4)}``, or None."""
    if not isinstance(content, dict) or "data" not in content or "labels" not in content:
        return "not a dict with 'data' and 'labels'"
    data, labels = content["data"], content["labels"]
    if not isinstance(data, np.ndarray) or data.ndim != 3 or data.shape[1] != NUM_CHANNELS or data.shape[0] < 1:
        return f"data array of shape {np.shape(data)}, not (trials, {NUM_CHANNELS}, samples)"
    if data.dtype.kind not in "fiu":
        return f"data array of dtype {data.dtype}, not numbers"
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or labels.shape[1] != len(DEAP_RATINGS):
        return f"labels array of shape {np.shape(labels)}, not (trials, {len(DEAP_RATINGS)})"
    if labels.shape[0] != data.shape[0]:
        return f"{data.shape[0]} trials of data but {labels.shape[0]} of labels"
    return None


@lru_cache(maxsize=2)
def _trial_array(path: str) -> np.ndarray:
    """A file's ``data`` (trials, 40, samples), read once per process (its windows are loaded one after another)."""
    content = load_legacy_pickle(path)
    if not isinstance(content, dict) or not isinstance(content.get("data"), np.ndarray):
        raise DataError(f"{path} holds no 'data' array.")
    return np.asarray(content["data"])
