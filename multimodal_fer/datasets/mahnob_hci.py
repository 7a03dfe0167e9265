"""MAHNOB-HCI (HCI Tagging database), emotion experiment: BDF physiology, face video and audio, 1-9 self-reports.

Participants watched emotional film clips while a BioSemi system recorded EEG and peripheral physiology and
cameras filmed them; after each clip they rated it. Layout as distributed (after registration and the EULA);
``raw_root`` is the folder holding ``Sessions/`` or that folder itself::

    Sessions/<session>/session.xml
    Sessions/<session>/Part_<P>_<N|S>_Trial<T>_emotion.bdf
    Sessions/<session>/*.avi, *.wav      (cameras and audio, where the session has them)

**session.xml.** The root ``<session>`` carries the self-reports as attributes: ``feltArsl`` (arousal),
``feltVlnc`` (valence), ``feltCtrl`` (control, the package's dominance), ``feltPred`` (predictability, not used),
``feltEmo`` (keyword code), ``isStim``, ``mediaFile``, ``cutLenSec`` (the clip's length), and a child
``<subject id="...">``. Sessions without ``feltArsl`` (implicit-tagging sessions, ``isStim="0"``) carry no emotion
labels and are rejected while listing (``session without emotion self-reports``), as are ratings outside 1-9.

**BDF.** 47 channels (32 EEG, ``EXG1``-``EXG8``, ``GSR1``, ``GSR2``, ``Erg1``, ``Erg2``, ``Resp``, ``Temp``,
``Status``) at 256 Hz in the release (read from the header, never assumed; ``sampling_rate`` is the rate the
header must declare). The package names (``channel_table``: name → BDF label):

==================  ===========  ============================================================================
package name        BDF label    signal
==================  ===========  ============================================================================
``ecg``             ``EXG1``     ECG lead 1 (``EXG1``-``EXG3`` are the ECG leads; ``ecg2``, ``ecg3`` the others)
``gsr``             ``GSR1``     galvanic skin response (unit not confirmed: not named ``eda``)
``rsp``             ``Resp``     respiration belt
``temp``            ``Temp``     skin temperature
==================  ===========  ============================================================================

The 32 EEG channels keep their 10-20 names and are stored after the chosen channels with ``include_eeg``.

**Stimulus.** The clip lies between the first two trigger onsets of the ``Status`` channel (a sample where its
trigger bits, ``status_mask``, change to a non-zero value): from the first onset to the second. Windows of
``window_seconds`` every ``stride_seconds`` tile it; the 30 s before and after are not used. The stimulus's length
by the header's rate is compared with ``cutLenSec``: a ratio near 2, 3, ... or 1/2, 1/3, ... means the header
declares another rate than the samples were taken at (``sampling rate other than declared``); any other
disagreement beyond ``stimulus_tolerance`` is ``stimulus length disagrees with session.xml``.

**Baseline correction.** ``baseline_correction`` (off by default: ``none``) corrects each window by the session's
pre-stimulus baseline, the stretch before the first Status onset (the release has about 30 s of it): all of it, or
with ``baseline_seconds`` its last ``baseline_seconds``. Per channel, ``subtract`` removes the baseline's mean,
``standardise`` also divides by its standard deviation
(:func:`~multimodal_fer.datasets.physio_recordings.correct_by_baseline`). A baseline shorter than asked (or than
1 s), or holding a flat or clipped stretch, fails the window (``baseline too short``, ``flat baseline``, ``clipped
baseline``), never used. The options are part of the cache fingerprint when the correction is on.

**Labels.** ``va`` = (valence, arousal, dominance) = (``feltVlnc``, ``feltArsl``, ``feltCtrl``) mapped linearly
from 1-9 to [-1, 1] (1 → -1, 5 → 0, 9 → 1). ``feltEmo`` becomes an expression through ``emotion_codes``
(default: 0 neutral, 1 anger, 2 disgust, 3 fear, 4 happy (joy/happiness), 5 sad, 6 surprise; 11 amusement and 12
anxiety map to no expression, so those windows keep their affect labels with the expression unlabelled). A code
outside the table rejects the session while listing (add it to ``emotion_codes``, with null for unlabelled).
``class_target`` replaces the expression slot with the original paper's three classes of one rating
(``low_``/``medium_``/``high_<rating>``: at most ``class_bounds[0]``, at most ``class_bounds[1]``, above); those
names are outside the package's expression vocabulary on purpose.

**Face and audio.** With ``face`` the frame at each window's centre is the still (the video found by
``video_glob`` in the session folder; its time is the BDF's plus ``media_offset_seconds``); with ``audio`` the
window's audio is centred on the same time (``audio_glob``). A session without such a file, or with an unreadable
video or a window past the video's end, keeps its physiology: the modality is absent (masked) and the listing
records why. Only the ``media`` are read (:attr:`provided_modalities`): a data module asking for face or audio
outside them is refused when it is built, and one where a requested modality is in no sample of a split is refused
at set-up (:mod:`multimodal_fer.datamodules.modality_presence`).

**Checks.** A session folder without ``session.xml`` or without a BDF, an unreadable XML or BDF, a BDF without a
chosen channel or ``Status``, a header rate other than ``sampling_rate``, fewer than two Status onsets, or a
subject that disagrees with the BDF's name is rejected while listing. A BDF shorter than its header declares (a
cut-off file) keeps the windows inside the part that is there; the others fail as ``truncated signal``. A window
with a flat channel, or one clipped at the header's physical range (the ADC's limits, ``clip_at_header_range``) or
at configured ``quality.clip_limits``, fails with the reason (:mod:`multimodal_fer.media.signals`).

**Protocols.** Subject-independent: leave-one-subject-out (:class:`SubjectKFold` with as many folds as
participants, default 27) or k-fold over participants. Subject-dependent:
:class:`~multimodal_fer.datasets.protocols.WithinSubjectKFold` over each participant's sessions.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from multimodal_fer._lazy import require
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
    BASELINE_TOO_SHORT,
    BIOSEMI_32_EEG_CHANNELS,
    BaselineCorrection,
    Channel,
    check_baseline_correction,
    check_window,
    correct_by_baseline,
    cut_window,
    window_samples,
    window_starts,
)
from multimodal_fer.datasets.protocols import SplitProtocol, SubjectKFold
from multimodal_fer.errors import DataError
from multimodal_fer.media.signals import WRONG_RATE, SignalQuality, whole_samples
from multimodal_fer.types import EXPRESSION_VOCABULARY, LabelSpace

#: EEG channels, BioSemi order (the first 32 of a file).
MAHNOB_EEG_CHANNELS: tuple[str, ...] = BIOSEMI_32_EEG_CHANNELS
#: The other channels of a file, in order (``Status`` last).
MAHNOB_OTHER_CHANNELS: tuple[str, ...] = (
    "EXG1", "EXG2", "EXG3", "EXG4", "EXG5", "EXG6", "EXG7", "EXG8",
    "GSR1", "GSR2", "Erg1", "Erg2", "Resp", "Temp", "Status",
)  # fmt: skip
#: Package name → BDF label of the peripheral channels.
MAHNOB_PERIPHERAL_CHANNELS: dict[str, str] = {
    "ecg": "EXG1",
    "ecg2": "EXG2",
    "ecg3": "EXG3",
    "exg4": "EXG4",
    "exg5": "EXG5",
    "exg6": "EXG6",
    "exg7": "EXG7",
    "exg8": "EXG8",
    "gsr": "GSR1",
    "gsr2": "GSR2",
    "erg1": "Erg1",
    "erg2": "Erg2",
    "rsp": "Resp",
    "temp": "Temp",
}
#: Every storable channel: package name → BDF label.
MAHNOB_CHANNEL_TABLE: dict[str, str] = {**{name: name for name in MAHNOB_EEG_CHANNELS}, **MAHNOB_PERIPHERAL_CHANNELS}
DEFAULT_CHANNELS: tuple[str, ...] = ("ecg", "gsr", "rsp", "temp")
STATUS = "Status"
#: ``feltEmo`` keyword codes → package expression (None: no expression).
MAHNOB_EMOTION_CODES: dict[int, str | None] = {
    0: "neutral",
    1: "anger",
    2: "disgust",
    3: "fear",
    4: "happy",
    5: "sad",
    6: "surprise",
    11: None,
    12: None,
}
#: ``feltEmo`` keywords as the data set names them (for the data card and messages).
MAHNOB_EMOTION_WORDS: dict[int, str] = {
    0: "Neutral",
    1: "Anger",
    2: "Disgust",
    3: "Fear",
    4: "Joy, Happiness",
    5: "Sadness",
    6: "Surprise",
    11: "Amusement",
    12: "Anxiety",
}
#: session.xml attributes of the ratings used: dimension → attribute.
RATING_ATTRIBUTES: dict[str, str] = {"valence": "feltVlnc", "arousal": "feltArsl", "dominance": "feltCtrl"}
RATING_RANGE: tuple[float, float] = (1.0, 9.0)
SESSIONS_FOLDER = "Sessions"
#: Listing rejection reasons.
NO_XML = "session without session.xml"
BAD_XML = "unreadable session.xml"
NO_REPORTS = "session without emotion self-reports"
NO_BDF = "session without BDF"
SEVERAL_BDF = "session with several BDF files"
BAD_BDF = "unreadable BDF"
MISSING_CHANNEL = "BDF without a chosen channel"
NO_EVENTS = "missing Status events"
STIMULUS_MISMATCH = "stimulus length disagrees with session.xml"
SUBJECT_MISMATCH = "subject in session.xml disagrees with the BDF's name"
UNKNOWN_EMOTION = "unknown feltEmo code"
BAD_RATING = "rating outside 1-9"
NO_VIDEO = "face video missing or unreadable (physiology kept)"
NO_AUDIO = "audio file missing (physiology kept)"
VIDEO_TOO_SHORT = "windows past the face video's end (physiology kept)"
_BDF_NAME = re.compile(r"Part_(\d+)_.*\.bdf", re.IGNORECASE)


@dataclass(frozen=True)
class SessionInfo:
    """What one ``session.xml`` says.

    Attributes:
        subject: the participant's id (``<subject id>``).
        ratings: dimension → rating on 1-9 (NaN where the attribute is absent).
        emotion: the ``feltEmo`` code, or None.
        cut_seconds: ``cutLenSec``, or None.
        media_file: ``mediaFile``, or "".
    """

    subject: str
    ratings: dict[str, float]
    emotion: int | None
    cut_seconds: float | None
    media_file: str


@dataclass(frozen=True)
class BdfFacts:
    """The header and Status channel of one BDF, as listing needs them.

    Attributes:
        labels: channel labels in file order.
        rates: label → declared sampling rate in Hz.
        ranges: label → header physical range ``(min, max)``.
        declared_seconds: the header's data records × record duration (before any truncation).
        samples: Status samples in the file as read.
        onsets: Status trigger onsets (sample indices).
    """

    labels: tuple[str, ...]
    rates: dict[str, float]
    ranges: dict[str, tuple[float, float]]
    declared_seconds: float
    samples: int
    onsets: tuple[int, ...]


class MAHNOBHCI(DatasetAdapter):
    """MAHNOB-HCI's emotion sessions: windows of the clip's physiology (and face, audio) with the self-reports.

    Args:
        channels: package channel names to store, in order (None: ``ecg``, ``gsr``, ``rsp``, ``temp``).
        include_eeg: also store the 32 EEG channels, after ``channels``.
        channel_table: package name → BDF label (None: :data:`MAHNOB_CHANNEL_TABLE`).
        sampling_rate: the rate every chosen channel's header must declare (None: any; the cache resamples).
        window_seconds: window length (whole samples at ``sampling_rate``).
        stride_seconds: step between window starts.
        dominance: also label dominance (``feltCtrl``); False: valence and arousal only.
        emotion_codes: ``feltEmo`` code → expression name of the package's vocabulary or None (None: the
            default table :data:`MAHNOB_EMOTION_CODES`).
        class_target: replace the felt emotion by three classes of one rating (``valence``, ``arousal`` or
            ``dominance``); None: the felt emotion.
        class_bounds: ratings at most ``class_bounds[0]`` are low, at most ``class_bounds[1]`` medium, the rest
            high.
        status_mask: the Status channel's trigger bits.
        stimulus_tolerance: relative slack of the stimulus's length (Status onsets) against ``cutLenSec``.
        clip_at_header_range: count samples at the header's physical range (the ADC's limits) as clipped, for
            channels without ``quality.clip_limits``.
        video_glob: the face video's file pattern in a session folder.
        audio_glob: the audio file's pattern in a session folder.
        media_offset_seconds: the video's and audio's time at the BDF's start (their time = BDF time + this).
        media: which of ``face`` and ``audio`` to look for while listing (None: both; ``[]`` for physiology only,
            which skips opening the videos).
        quality: thresholds of the signal checks.
        baseline_correction: correct each window by the session's pre-stimulus baseline, per channel: ``none`` (as
            recorded), ``subtract`` (minus the baseline's mean) or ``standardise`` (also divided by its standard
            deviation).
        baseline_seconds: the baseline is the last this many seconds before the stimulus's onset (None: all of the
            recording before it).
    """

    name = "mahnob_hci"
    modalities = ("physio", "face", "audio")
    va_range = RATING_RANGE
    evaluation_aggregation = "recording"  # papers score trials; a trial's windows are averaged (data card)

    def __init__(
        self,
        channels: list[str] | None = None,
        include_eeg: bool = False,
        channel_table: dict[str, str] | None = None,
        sampling_rate: float | None = 256.0,
        window_seconds: float = 10.0,
        stride_seconds: float = 10.0,
        dominance: bool = True,
        emotion_codes: dict[int, str | None] | None = None,
        class_target: Literal["valence", "arousal", "dominance"] | None = None,
        class_bounds: tuple[float, float] = (3.0, 5.0),
        status_mask: int = 0xFFFF,
        stimulus_tolerance: float = 0.02,
        clip_at_header_range: bool = True,
        video_glob: str = "*C1 trigger*.avi",
        audio_glob: str = "*.wav",
        media_offset_seconds: float = 0.0,
        media: list[str] | None = None,
        quality: SignalQuality | None = None,
        baseline_correction: BaselineCorrection = "none",
        baseline_seconds: float | None = None,
    ) -> None:
        table = {
            str(k): str(v) for k, v in (channel_table if channel_table is not None else MAHNOB_CHANNEL_TABLE).items()
        }
        if STATUS in table.values():
            raise ValueError("channel_table maps a name to the Status channel; it holds triggers, not a signal.")
        chosen = list(channels) if channels is not None else list(DEFAULT_CHANNELS)
        if include_eeg:
            chosen += [name for name in MAHNOB_EEG_CHANNELS if name not in chosen]
        unknown = [name for name in chosen if name not in table]
        if unknown or not chosen or len(set(chosen)) != len(chosen):
            raise ValueError(f"channels {unknown or chosen}: choose distinct names among {list(table)}.")
        if not (window_seconds > 0 and stride_seconds > 0):
            raise ValueError(f"window_seconds={window_seconds} and stride_seconds={stride_seconds} must be positive.")
        if sampling_rate is not None:
            whole_samples(window_seconds, sampling_rate, "window_seconds")
            whole_samples(stride_seconds, sampling_rate, "stride_seconds")
        codes = {int(k): v for k, v in (emotion_codes if emotion_codes is not None else MAHNOB_EMOTION_CODES).items()}
        outside = sorted({v for v in codes.values() if v is not None and v not in EXPRESSION_VOCABULARY})
        if outside:
            raise ValueError(
                f"emotion_codes names {outside}, not in the package's vocabulary {list(EXPRESSION_VOCABULARY)}; use "
                "one of these words, or null for a code that maps to no expression."
            )
        if class_target is not None and class_target not in RATING_ATTRIBUTES:
            raise ValueError(f"class_target={class_target!r}: choose one of {list(RATING_ATTRIBUTES)} or None.")
        if class_target == "dominance" and not dominance:
            raise ValueError("class_target='dominance' needs dominance=True.")
        low, high = float(class_bounds[0]), float(class_bounds[1])
        if not RATING_RANGE[0] <= low < high < RATING_RANGE[1]:
            raise ValueError(f"class_bounds={list(class_bounds)}: give [low, high] with 1 <= low < high < 9.")
        if not 0.0 <= stimulus_tolerance < 0.25:
            raise ValueError(f"stimulus_tolerance={stimulus_tolerance} must lie in [0, 0.25).")
        sought = list(media) if media is not None else ["face", "audio"]
        if [m for m in sought if m not in ("face", "audio")]:
            raise ValueError(f"media={sought}: choose among face and audio ([] for physiology only).")
        check_baseline_correction(baseline_correction, baseline_seconds)
        if status_mask <= 0:
            raise ValueError(f"status_mask={status_mask} must select at least one trigger bit.")
        self.channel_table = table
        self.channels = tuple(chosen)
        self.include_eeg = include_eeg
        self.sampling_rate = None if sampling_rate is None else float(sampling_rate)
        self.window_seconds = float(window_seconds)
        self.stride_seconds = float(stride_seconds)
        self.dominance = dominance
        self.emotion_codes = codes
        self.class_target = class_target
        self.class_bounds = (low, high)
        self.status_mask = int(status_mask)
        self.stimulus_tolerance = float(stimulus_tolerance)
        self.clip_at_header_range = clip_at_header_range
        self.video_glob = video_glob
        self.audio_glob = audio_glob
        self.media_offset_seconds = float(media_offset_seconds)
        self.media = tuple(sought)
        self.quality = quality if quality is not None else SignalQuality()
        self.baseline_correction = baseline_correction
        self.baseline_seconds = None if baseline_seconds is None else float(baseline_seconds)

    # ------------------------------------------------------------------------------------------- description
    @property
    def expressions(self) -> tuple[str, ...]:
        """The expression classes: the mapped felt emotions in vocabulary order, or the three rating classes."""
        if self.class_target is not None:
            return tuple(f"{level}_{self.class_target}" for level in ("low", "medium", "high"))
        used = {name for name in self.emotion_codes.values() if name is not None}
        return tuple(name for name in EXPRESSION_VOCABULARY if name in used)

    @property
    def label_space(self) -> LabelSpace:
        """The expressions (see :attr:`expressions`) and valence, arousal (and dominance)."""
        dimensions = ("valence", "arousal", "dominance") if self.dominance else ("valence", "arousal")
        return LabelSpace(expressions=self.expressions, dimensions=dimensions)

    def settings(self) -> dict[str, Any]:
        """Every option (part of the cache fingerprint).

        The baseline options are included only when the correction is on, so caches built before they existed stay
        valid.
        """
        settings = {
            "channels": {name: self.channel_table[name] for name in self.channels},
            "sampling_rate": self.sampling_rate,
            "window_seconds": self.window_seconds,
            "stride_seconds": self.stride_seconds,
            "dominance": self.dominance,
            "emotion_codes": {str(k): v for k, v in sorted(self.emotion_codes.items())},
            "class_target": self.class_target,
            "class_bounds": list(self.class_bounds),
            "status_mask": self.status_mask,
            "stimulus_tolerance": self.stimulus_tolerance,
            "clip_at_header_range": self.clip_at_header_range,
            "video_glob": self.video_glob,
            "audio_glob": self.audio_glob,
            "media_offset_seconds": self.media_offset_seconds,
            "media": list(self.media),
            "quality": self.quality.to_json(),
        }
        if self.baseline_correction != "none":
            settings["baseline_correction"] = self.baseline_correction
            settings["baseline_seconds"] = self.baseline_seconds
        return settings

    @property
    def provided_modalities(self) -> tuple[str, ...]:
        """Physiology, and the face and audio of ``media`` (the cache keeps columns for all three: masked)."""
        return tuple(m for m in self.modalities if m == "physio" or m in self.media)

    def enabling_hint(self, modality: str) -> str | None:
        """Adding face or audio to ``media`` (the session folders' videos, audio files)."""
        if modality not in ("face", "audio") or modality in self.media:
            return None
        media = ",".join([*self.media, modality])
        pattern = self.video_glob if modality == "face" else self.audio_glob
        return (
            f"add {modality} to the adapter's media (now {list(self.media)}; it reads each session's "
            f"{pattern!r} file): --data.init_args.dataset.init_args.media='[{media}]'"
        )

    def default_protocol(self) -> SplitProtocol:
        """Leave-one-subject-out over the 27 participants of the paper (SubjectKFold with 27 folds), fold 0."""
        return SubjectKFold(num_folds=27, fold=0, seed=0)

    def physio_layout(self) -> PhysioLayout:
        """The chosen channels, in order, in windows of ``window_seconds``."""
        return PhysioLayout(channels=self.channels, seconds=self.window_seconds)

    def metadata(self) -> dict[str, Any]:
        """Each stored channel's BDF label and the rate the headers must declare."""
        return {
            "physio_source_channels": {name: self.channel_table[name] for name in self.channels},
            "physio_source_rate": self.sampling_rate,
        }

    # ----------------------------------------------------------------------------------------------- listing
    @staticmethod
    def session_folders(raw_root: Path) -> list[Path]:
        """The numeric session folders (under ``Sessions/`` if there is one), in numeric order."""
        base = raw_root / SESSIONS_FOLDER if (raw_root / SESSIONS_FOLDER).is_dir() else raw_root
        found = [p for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
        return sorted(found, key=lambda p: int(p.name))

    def list_samples(self, raw_root: Path) -> Listing:
        """Every window of every emotion session's stimulus; everything left out is a rejection.

        Raises:
            DataError: no numeric session folder under ``raw_root``.
        """
        folders = self.session_folders(raw_root)
        if not folders:
            raise DataError(
                f"No MAHNOB-HCI sessions under {raw_root}: expected Sessions/<number>/session.xml and "
                "Part_<P>_<N|S>_Trial<T>_emotion.bdf (the HCI Tagging database, from https://mahnob-db.eu/hci-tagging/ "
                "after registration). Pass the folder that holds Sessions/ (or Sessions/ itself) as raw_root."
            )
        samples: list[RawSample] = []
        rejected: list[Rejection] = []
        for folder in folders:
            made, left_out = self._session(raw_root, folder)
            samples += made
            rejected += left_out
        return Listing(samples, rejected)

    def _session(self, raw_root: Path, folder: Path) -> tuple[list[RawSample], list[Rejection]]:
        """The windows of one session folder and its rejections."""
        where = folder.relative_to(raw_root).as_posix()
        xml = folder / "session.xml"
        if not xml.is_file():
            return [], [Rejection(where, NO_XML)]
        info = read_session_xml(xml)
        if isinstance(info, str):
            return [], [Rejection(f"{where}/session.xml", info)]
        labels = self.session_labels(info)
        if isinstance(labels, str):
            return [], [Rejection(f"{where}/session.xml", labels)]
        bdfs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".bdf")
        if not bdfs:
            return [], [Rejection(where, NO_BDF)]
        if len(bdfs) > 1:
            return [], [Rejection(where, SEVERAL_BDF)]
        bdf = bdfs[0]
        source = bdf.relative_to(raw_root).as_posix()
        named = _BDF_NAME.fullmatch(bdf.name)
        if named is not None and info.subject and int(named.group(1)) != _as_int(info.subject, -1):
            return [], [Rejection(source, SUBJECT_MISMATCH)]
        try:
            facts = read_bdf_facts(str(bdf), self.status_mask)
        except DataError:
            return [], [Rejection(source, BAD_BDF)]
        problem = self._header_problem(facts)
        if problem is not None:
            return [], [Rejection(source, problem)]
        rate = facts.rates[STATUS]
        cut_off = facts.samples < facts.declared_seconds * rate - 1
        if len(facts.onsets) >= 2:
            start, stop = facts.onsets[0] / rate, facts.onsets[1] / rate
        elif len(facts.onsets) == 1 and cut_off and info.cut_seconds:
            # the file stops inside the clip: its windows past the end fail at loading as truncated
            start = facts.onsets[0] / rate
            stop = start + info.cut_seconds
        else:
            return [], [Rejection(source, NO_EVENTS)]
        problem = self._stimulus_problem(stop - start, info.cut_seconds)
        if problem is not None:
            return [], [Rejection(source, problem)]
        starts = window_starts(start, stop, self.window_seconds, self.stride_seconds)
        if not starts:
            return [], [Rejection(source, "stimulus shorter than one window")]
        subject = f"P{info.subject}" if info.subject else f"P{named.group(1) if named else folder.name}"
        extra, rejected = self._media(raw_root, folder, starts)
        samples = window_samples(
            sequence=folder.name,
            subject=subject,
            source=source,
            labels=labels,
            starts=starts,
            locators=[{"start_s": s, **self._baseline_locator(start), **extra[i]} for i, s in enumerate(starts)],
        )
        return samples, rejected

    def _baseline_locator(self, onset: float) -> dict[str, float]:
        """The stimulus's onset (s) where windows are corrected by the baseline before it (else nothing)."""
        return {"stimulus_s": round(onset, 6)} if self.baseline_correction != "none" else {}

    def _header_problem(self, facts: BdfFacts) -> str | None:
        """Why a BDF's header does not fit the chosen channels and the declared rate, or None."""
        labels = [STATUS, *(self.channel_table[name] for name in self.channels)]
        missing = [label for label in labels if label not in facts.rates]
        if missing:
            return MISSING_CHANNEL
        if self.sampling_rate is not None:
            other = {label: facts.rates[label] for label in labels if facts.rates[label] != self.sampling_rate}
            if other:
                return WRONG_RATE
        return None

    def _stimulus_problem(self, seconds: float, cut_seconds: float | None) -> str | None:
        """Why the stimulus's length by the Status onsets disagrees with ``cutLenSec``, or None."""
        if cut_seconds is None or not cut_seconds > 0:
            return None
        ratio = seconds / cut_seconds
        if abs(ratio - 1.0) <= self.stimulus_tolerance:
            return None
        for factor in (ratio, 1.0 / ratio):
            if factor >= 1.5 and abs(factor - round(factor)) <= max(self.stimulus_tolerance, 0.01) * factor:
                return WRONG_RATE
        return STIMULUS_MISMATCH

    def _media(self, raw_root: Path, folder: Path, starts: list[float]) -> tuple[list[dict[str, Any]], list[Rejection]]:
        """Per window, the face video's still frame and the audio file (where there are), and why not."""
        extra: list[dict[str, Any]] = [{} for _ in starts]
        rejected: list[Rejection] = []
        where = folder.relative_to(raw_root).as_posix()
        centres = [s + self.window_seconds / 2 + self.media_offset_seconds for s in starts]
        if "audio" in self.media:
            audio = sorted(folder.glob(self.audio_glob))
            if audio:
                for index, centre in enumerate(centres):
                    extra[index]["audio"] = audio[0].relative_to(raw_root).as_posix()
                    extra[index]["audio_centre_s"] = round(centre, 6)
            else:
                rejected.append(Rejection(where, NO_AUDIO))
        if "face" in self.media:
            videos = sorted(folder.glob(self.video_glob))
            facts = _video_facts(str(videos[0])) if videos else None
            if facts is None:
                rejected.append(Rejection(videos[0].relative_to(raw_root).as_posix() if videos else where, NO_VIDEO))
                return extra, rejected
            fps, count = facts
            path = videos[0].relative_to(raw_root).as_posix()
            past = 0
            for index, centre in enumerate(centres):
                frame = round(centre * fps)
                if 0 <= frame < count:
                    extra[index]["video"] = path
                    extra[index]["video_frame"] = frame
                else:
                    past += 1
            if past:
                rejected.append(Rejection(f"{path} ({past} window{'s' if past > 1 else ''})", VIDEO_TOO_SHORT))
        return extra, rejected

    def session_labels(self, info: SessionInfo) -> SampleLabels | str:
        """One session's labels from its self-reports, or why the session is rejected."""
        if all(math.isnan(info.ratings.get(d, math.nan)) for d in RATING_ATTRIBUTES) and info.emotion is None:
            return NO_REPORTS
        dimensions = ("valence", "arousal", "dominance") if self.dominance else ("valence", "arousal")
        low, high = RATING_RANGE
        for dimension in dimensions:
            value = info.ratings.get(dimension, math.nan)
            if math.isnan(value):
                return NO_REPORTS
            if not low <= value <= high:
                return BAD_RATING
        va = tuple(self.affect_to_unit(info.ratings[d]) for d in dimensions)
        if self.class_target is not None:
            value = info.ratings[self.class_target]
            expr = 0 if value <= self.class_bounds[0] else 1 if value <= self.class_bounds[1] else 2
            return SampleLabels(expr=expr, va=va)
        if info.emotion is None:
            return SampleLabels(expr=-1, va=va)
        if info.emotion not in self.emotion_codes:
            return UNKNOWN_EMOTION
        name = self.emotion_codes[info.emotion]
        return SampleLabels(expr=-1 if name is None else self.expressions.index(name), va=va)

    # ------------------------------------------------------------------------------------------------ loading
    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The window's channels at their declared rate, checked, and its face still and audio where there are.

        Raises:
            SampleError: an unreadable BDF, a window past the end of a cut-off file, a flat or clipped channel, or (with
                ``baseline_correction``) a baseline too short, flat or clipped.
        """
        labels = tuple(self.channel_table[name] for name in self.channels)
        try:
            channels, seconds, ranges = _recording(str(raw_root / sample.source), labels)
        except DataError as error:
            raise SampleError(BAD_BDF, str(error)) from error
        start = float(sample.locators["start_s"])
        signals = {}
        for name, label in zip(self.channels, labels, strict=True):
            channel = Channel(name, channels[label].values, channels[label].rate)
            signals[name] = cut_window(channel, start, self.window_seconds, seconds, self.quality)
        quality = self._quality(ranges)
        check_window(signals, quality)
        rates = {name: channels[label].rate for name, label in zip(self.channels, labels, strict=True)}
        if self.baseline_correction != "none":
            onset = float(sample.locators["stimulus_s"])
            baselines = self._baselines(channels, labels, onset)
            signals = correct_by_baseline(signals, baselines, rates, self.baseline_correction, quality)
        media = RawMedia(physio=signals, physio_rates=rates)
        if "video" in sample.locators:
            media.video = str(raw_root / sample.locators["video"])
            media.video_frame = int(sample.locators["video_frame"])
        if "audio" in sample.locators:
            media.audio_path = str(raw_root / sample.locators["audio"])
            media.audio_centre = float(sample.locators["audio_centre_s"])
        return media

    def _baselines(self, channels: dict[str, Channel], labels: tuple[str, ...], onset: float) -> dict[str, np.ndarray]:
        """Each chosen channel's pre-stimulus baseline: the ``baseline_seconds`` (None: all) before ``onset``.

        Raises:
            SampleError: ``baseline too short``: the recording holds less than ``baseline_seconds`` before the onset.
        """
        begin = 0.0 if self.baseline_seconds is None else onset - self.baseline_seconds
        if begin < -1e-9:
            raise SampleError(
                BASELINE_TOO_SHORT,
                f"{onset:.3f} s before the stimulus's onset, fewer than baseline_seconds={self.baseline_seconds:g}",
            )
        baselines = {}
        for name, label in zip(self.channels, labels, strict=True):
            rate = channels[label].rate
            baselines[name] = channels[label].values[max(0, round(begin * rate)) : round(onset * rate)]
        return baselines

    def _quality(self, ranges: dict[str, tuple[float, float]]) -> SignalQuality:
        """The quality thresholds with each channel's header range as its clip limits where none is configured."""
        if not self.clip_at_header_range:
            return self.quality
        limits = dict(self.quality.clip_limits)
        for name in self.channels:
            if name not in limits:
                limits[name] = ranges[self.channel_table[name]]
        return SignalQuality(
            flat_tolerance=self.quality.flat_tolerance,
            clip_limits=limits,
            max_clipped_share=self.quality.max_clipped_share,
            length_tolerance=self.quality.length_tolerance,
        )


def _as_int(text: str, default: int) -> int:
    try:
        return int(float(text))
    except ValueError:
        return default


def _float_attribute(root: ElementTree.Element, name: str) -> float:
    text = root.get(name)
    if text is None or not text.strip():
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.inf  # present but not a number: outside 1-9


def read_session_xml(path: Path) -> SessionInfo | str:
    """A ``session.xml``'s subject, self-reports, felt emotion and clip length, or why it cannot be read."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError):
        return BAD_XML
    if root.tag != "session":
        return BAD_XML
    subject_element = root.find("subject")
    subject = (subject_element.get("id") or "").strip() if subject_element is not None else ""
    ratings = {dimension: _float_attribute(root, attribute) for dimension, attribute in RATING_ATTRIBUTES.items()}
    emotion_text = (root.get("feltEmo") or "").strip()
    emotion = _as_int(emotion_text, -999) if emotion_text else None
    cut = _float_attribute(root, "cutLenSec")
    return SessionInfo(
        subject=str(_as_int(subject, 0)) if subject else "",
        ratings=ratings,
        emotion=emotion,
        cut_seconds=cut if math.isfinite(cut) else None,
        media_file=root.get("mediaFile") or "",
    )


def _declared_records(path: str) -> int:
    """The header's number of data records (bytes 236-243 of an EDF/BDF header), -1 if unknown."""
    with open(path, "rb") as handle:
        header = handle.read(256)
    try:
        return int(header[236:244].decode("ascii").strip())
    except (ValueError, UnicodeDecodeError):
        return -1


def _read_bdf(path: str) -> Any:
    """``edfio.read_bdf`` with a short error (its warnings about a cut-off file silenced: the caller checks)."""
    import warnings

    edfio = require("edfio", "reading BDF recordings (MAHNOB-HCI)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return edfio.read_bdf(path)
    except Exception as error:  # noqa: BLE001 - edfio raises many kinds; the reason is kept
        raise DataError(f"cannot read the BDF file {path}: {error}") from error


@lru_cache(maxsize=4)
def read_bdf_facts(path: str, status_mask: int) -> BdfFacts:
    """One BDF's header facts and its Status trigger onsets.

    Raises:
        DataError: the file cannot be read, or has no Status channel to find onsets in.
    """
    bdf = _read_bdf(path)
    signals = list(bdf.signals)
    labels = tuple(s.label for s in signals)
    rates = {s.label: float(s.sampling_frequency) for s in signals}
    ranges = {s.label: (float(s.physical_range.min), float(s.physical_range.max)) for s in signals}
    declared = _declared_records(path)
    records = declared if declared > 0 else int(bdf.num_data_records)
    onsets: tuple[int, ...] = ()
    samples = 0
    if STATUS in labels:
        status = signals[labels.index(STATUS)]
        codes = np.bitwise_and(np.round(status.data).astype(np.int64), status_mask)
        samples = int(codes.size)
        changed = np.flatnonzero((codes[1:] != codes[:-1]) & (codes[1:] != 0)) + 1
        first = [0] if codes.size and codes[0] != 0 else []
        onsets = tuple(int(i) for i in [*first, *changed.tolist()])
    return BdfFacts(
        labels=labels,
        rates=rates,
        ranges=ranges,
        declared_seconds=records * float(bdf.data_record_duration),
        samples=samples,
        onsets=onsets,
    )


@lru_cache(maxsize=1)
def _recording(path: str, labels: tuple[str, ...]) -> tuple[dict[str, Channel], float, dict[str, tuple[float, float]]]:
    """The chosen channels of one BDF (float64 physical values), its declared duration and the channels' clip limits.

    Clip limits are the header's physical range moved inward by half a digital step (a sample at the ADC's limit
    lies on the range's edge up to float rounding).

    Raises:
        DataError: the file cannot be read or lacks a channel.
    """
    bdf = _read_bdf(path)
    by_label = {s.label: s for s in bdf.signals}
    missing = [label for label in labels if label not in by_label]
    if missing:
        raise DataError(f"{path} has no channels {missing}.")
    declared = _declared_records(path)
    seconds = (declared if declared > 0 else int(bdf.num_data_records)) * float(bdf.data_record_duration)
    channels: dict[str, Channel] = {}
    limits: dict[str, tuple[float, float]] = {}
    for label in labels:
        signal = by_label[label]
        channels[label] = Channel(label, np.asarray(signal.data, dtype=np.float64), float(signal.sampling_frequency))
        low, high = float(signal.physical_range.min), float(signal.physical_range.max)
        half = 0.5 * (high - low) / max(1, signal.digital_range.max - signal.digital_range.min)
        limits[label] = (low + half, high - half)
    return channels, seconds, limits


def _video_facts(path: str) -> tuple[float, int] | None:
    """A video's frame rate and frame count (decoding its first frame), or None if it cannot be read."""
    from multimodal_fer.media.video import read_video_frames

    av = require("av", "reading the face videos (MAHNOB-HCI)")
    try:
        first = read_video_frames(path, max_frames=1)
        with av.open(path) as container:
            count = int(container.streams.video[0].frames or 0)
    except (DataError, av.FFmpegError, OSError, ValueError, IndexError):
        return None
    if count <= 0 or not first.native_fps > 0:
        return None
    return float(first.native_fps), count
