"""RECOLA and its AVEC 2016 release: audio, video, ECG and EDA with continuous arousal and valence every 40 ms.

The recordings are of French-speaking participants in dyadic remote collaboration (5 minutes each).

Two layouts are read (``layout``); ``raw_root`` is the folder holding them (or ``AVEC2016/`` inside it)::

    AVEC 2016 ("avec2016")                                  original RECOLA release ("recola")
    ratings_gold_standard/arousal/train_1.arff ...          RECOLA-Annotation/emotional_behaviour/arousal/P16.csv ...
    ratings_gold_standard/valence/dev_9.arff                RECOLA-Annotation/emotional_behaviour/valence/P16.csv
    recordings_audio/train_1.wav ...                        RECOLA-Audio-recordings/P16.wav
    recordings_video/train_1.mp4 ...                        RECOLA-Video-recordings/P16.mp4
    recordings_physio/train_1.csv (or .arff; UNCONFIRMED)   RECOLA-Biosignals-recordings/P16.csv

``folders`` renames any of these (keys ``arousal``, ``valence``, ``audio``, ``video``, ``physio``).

**Gold standard.** AVEC: one ARFF per recording and dimension, ``@relation GOLDSTANDARD`` with the attributes
``Instance_name`` (string: the recording), ``frameTime`` (s) and ``GoldStandard``, one row per 40-ms frame from 0 s
(read by :mod:`multimodal_fer.datasets.arff_tables`). RECOLA: ``;``-separated CSV with the header ``time;FM1 ;FM2
;FM3 ;FF1 ;FF2 ;FF3`` (names stripped of their trailing spaces), one row per frame; the gold standard is the mean
of ``raters`` (default all six). A frame's number is ``round(time / 0.04)``; a recording lasts up to its last
labelled frame. Missing frames (rows absent, ``?`` values, empty cells) leave those frames unlabelled; a time off the
40-ms grid, times out of order or repeated, a negative time, a malformed row, an ARFF with other attributes or
another recording's ``Instance_name`` reject the file (``failures.jsonl``, with the line). A recording with media
but no gold standard in either dimension is rejected (``recording with no gold standard``): the AVEC 2016 test
recordings (``test_1`` ...), whose labels were never made public, always are. A recording with only one
dimension's file keeps the other dimension unlabelled (NaN) and the missing file is recorded.

**Windows and per-frame targets.** Every ``hop_frames`` frames a sample is made: a window of ``window_frames``
frames (``window_frames × 40 ms`` of audio and physiology, and the video frame) labelled with the gold standard of
the frame it is aligned to, its last frame (``label_position="end"``, causal) or its centre frame
(``"centre"``, frame ``start + window_frames // 2``). With ``hop_frames=1`` every frame of a recording gets a
prediction (frame-level evaluation); larger hops thin the frames. Windows reaching outside the recording are not
made; a window whose frame has no gold standard, or one outside [-1, 1], is rejected while listing (runs of
windows merged into one line). Key ``<recording>/f00123`` (the labelled frame), sequence = the recording, frame =
the labelled frame: the results writer's frame-level scores (pooled or per-recording CCC, smoothing) read them.

**Media.** Audio: the recording's file, read by the preprocessing through :mod:`multimodal_fer.media.audio`
from ``audio_offset`` = the window's start; set the preprocessing's ``audio_seconds`` to ``window_frames × 0.04``.
Its header's sampling rate must be ``audio_rate`` (44.1 kHz, UNCONFIRMED; None accepts any): a file at another rate
is recorded (``audio sampling rate other than declared``) and its recording's samples carry no audio (masked), the
other modalities kept. Video: frame ``round(frame × 0.04 × video_fps)`` of the recording's video (the face modality,
decoded by :mod:`multimodal_fer.media.video`). Physiology: ``physio_channels`` (``ecg``, ``eda``) from the columns
``physio_columns`` of a ``;``/``,``-separated text file with a header (or an ARFF), at ``physio_rate`` (1 kHz,
UNCONFIRMED). Where the file has a time column (``physio_time_column``), the rate it implies must agree with the
declared one (else ``sampling rate other than declared``) and windows are cut on its time axis; windows with a NaN
or flat channel, or reaching past the recording, fail with the reason (:mod:`multimodal_fer.media.signals`), like
DEAP's and WESAD's (the shared window code is :mod:`multimodal_fer.datasets.physio_recordings`). A missing media
file (of a modality in ``media``) means that modality is absent for the recording's samples, and is recorded while
listing (``no video file (face absent, other modalities kept)``). A data module refuses a requested modality outside
``media``, and one absent from every sample of a split (:mod:`multimodal_fer.datamodules.modality_presence`).

**Splits.** AVEC 2016 (default protocol :class:`OfficialSplits`): ``train_*`` trains, ``dev_*`` is the test split
(the test partition has no public labels, so results are reported on dev, as in the literature) and validation
subjects are carved from training (``val_fraction``). Each AVEC recording is one participant, so the subject is
the recording's name. RECOLA: the subject is the participant (``P16``); no official split, default
:class:`SubjectKFold` (5 folds). Every protocol is subject-exclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from multimodal_fer.datasets.arff_tables import read_arff
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
from multimodal_fer.datasets.physio_recordings import Channel, check_window, cut_window, merged_rejections
from multimodal_fer.datasets.protocols import OfficialSplits, SplitProtocol, SubjectKFold
from multimodal_fer.errors import DataError
from multimodal_fer.media.signals import TRUNCATED, WRONG_RATE, SignalQuality, whole_samples
from multimodal_fer.types import LabelSpace

#: The annotation step: 40 ms (25 frames per second).
FRAME_SECONDS = 0.04
#: Affect dimensions in the package's order (valence, arousal); both files are read per recording.
RECOLA_DIMENSIONS: tuple[str, ...] = ("valence", "arousal")
#: The six RECOLA raters (3 male, 3 female), as the CSV header names them (trailing spaces stripped).
RECOLA_RATERS: tuple[str, ...] = ("FM1", "FM2", "FM3", "FF1", "FF2", "FF3")
#: The exact attributes of an AVEC gold-standard ARFF.
ARFF_ATTRIBUTES: tuple[str, ...] = ("Instance_name", "frameTime", "GoldStandard")
#: Folders of each layout (relative to raw_root).
LAYOUT_FOLDERS: dict[str, dict[str, str]] = {
    "avec2016": {
        "arousal": "ratings_gold_standard/arousal",
        "valence": "ratings_gold_standard/valence",
        "audio": "recordings_audio",
        "video": "recordings_video",
        "physio": "recordings_physio",
    },
    "recola": {
        "arousal": "RECOLA-Annotation/emotional_behaviour/arousal",
        "valence": "RECOLA-Annotation/emotional_behaviour/valence",
        "audio": "RECOLA-Audio-recordings",
        "video": "RECOLA-Video-recordings",
        "physio": "RECOLA-Biosignals-recordings",
    },
}
#: Suffixes searched for each medium, in order.
MEDIA_SUFFIXES: dict[str, tuple[str, ...]] = {
    "audio": (".wav", ".flac"),
    "video": (".mp4", ".avi"),
    "physio": (".csv", ".arff"),
}
#: The modalities the adapter can give and the files each comes from.
MEDIA_KINDS: dict[str, str] = {"face": "video", "audio": "audio", "physio": "physio"}
_MODALITY_OF = {kind: modality for modality, kind in MEDIA_KINDS.items()}
#: AVEC partition prefixes (train: official train; dev: official test; test: no public labels).
AVEC_PARTITIONS: tuple[str, ...] = ("train", "dev", "test")
#: Listing rejection reasons.
NO_GOLD_STANDARD = "recording with no gold standard"
NO_LABEL_AT_FRAME = "no gold standard at the window's frame"
LABEL_OUT_OF_RANGE = "gold standard outside [-1, 1]"
WRONG_AUDIO_RATE = "audio sampling rate other than declared"
#: A recording without the file of a medium in ``media``: its samples lack that modality (masked), the rest kept.
MISSING_MEDIA_FILE = "no {kind} file ({modality} absent, other modalities kept)"
_GRID_TOLERANCE = 0.1  # of a frame


@dataclass(frozen=True)
class GoldTrack:
    """One dimension's gold standard of one recording, on the 40-ms frame grid.

    Attributes:
        values: float64 (F,) value of frames 0 … F-1; NaN for frames without a value.
        source: the file, relative to raw_root.
    """

    values: np.ndarray
    source: str


class RECOLA(DatasetAdapter):
    """RECOLA / AVEC 2016: windows of audio, video and physiology labelled with the frame's arousal and valence.

    Args:
        layout: ``"avec2016"`` (gold-standard ARFFs) or ``"recola"`` (the original release's CSVs).
        folders: replaces folders of the layout (keys ``arousal``, ``valence``, ``audio``, ``video``, ``physio``).
        window_frames: frames of 40 ms in a sample's window (its audio and physiology span).
        hop_frames: frames between consecutive samples' labelled frames (1: every frame).
        label_position: the window's labelled frame: its last (``"end"``) or centre (``"centre"``) frame.
        raters: RECOLA layout: the rater columns averaged into the gold standard (None: all six).
        audio_rate: the sampling rate audio headers must declare (None: any).
        video_fps: the videos' frame rate (a labelled frame's video frame is ``round(frame × 0.04 × video_fps)``).
        physio_channels: package names of the physiological channels, in this order.
        physio_columns: package name → the column holding it in the physiology files.
        physio_time_column: the time column (seconds) of the physiology files, or None if they have none.
        physio_rate: the physiology files' sampling rate in Hz.
        quality: thresholds of the signal checks.
        media: the modalities to read, among ``face`` (video frames), ``audio`` and ``physio`` (None: audio and
            physio). Only these files are looked for; the cache stores these modalities.
    """

    name = "recola"
    modalities = ("face", "audio", "physio")

    def __init__(
        self,
        layout: Literal["avec2016", "recola"] = "avec2016",
        folders: dict[str, str] | None = None,
        window_frames: int = 100,
        hop_frames: int = 5,
        label_position: Literal["end", "centre"] = "centre",
        raters: list[str] | None = None,
        audio_rate: int | None = 44100,
        video_fps: float = 25.0,
        physio_channels: list[str] | None = None,
        physio_columns: dict[str, str] | None = None,
        physio_time_column: str | None = "time",
        physio_rate: float = 1000.0,
        quality: SignalQuality | None = None,
        media: list[str] | None = None,
    ) -> None:
        chosen_media = list(media) if media is not None else ["audio", "physio"]
        if (
            not chosen_media
            or [m for m in chosen_media if m not in MEDIA_KINDS]
            or len(set(chosen_media)) != len(chosen_media)
        ):
            raise ValueError(f"media {chosen_media}: choose distinct modalities among {list(MEDIA_KINDS)}.")
        if layout not in LAYOUT_FOLDERS:
            raise ValueError(f"layout={layout!r}: choose one of {list(LAYOUT_FOLDERS)}.")
        chosen_folders = dict(LAYOUT_FOLDERS[layout])
        unknown = sorted(set(folders or {}) - set(chosen_folders))
        if unknown:
            raise ValueError(f"folders keys {unknown}: choose among {list(chosen_folders)}.")
        chosen_folders.update({key: str(value) for key, value in (folders or {}).items()})
        if int(window_frames) != window_frames or window_frames < 1:
            raise ValueError(f"window_frames={window_frames} must be a whole number of frames ≥ 1.")
        if int(hop_frames) != hop_frames or hop_frames < 1:
            raise ValueError(f"hop_frames={hop_frames} must be a whole number of frames ≥ 1.")
        if label_position not in ("end", "centre"):
            raise ValueError(f"label_position={label_position!r}: choose end or centre.")
        chosen_raters = list(raters) if raters is not None else list(RECOLA_RATERS)
        if not chosen_raters or len(set(chosen_raters)) != len(chosen_raters):
            raise ValueError(f"raters {chosen_raters}: give distinct rater columns, e.g. {list(RECOLA_RATERS)}.")
        if audio_rate is not None and audio_rate <= 0:
            raise ValueError(f"audio_rate={audio_rate} must be positive (or None to accept any).")
        if not video_fps > 0:
            raise ValueError(f"video_fps={video_fps} must be positive.")
        channels = list(physio_channels) if physio_channels is not None else ["ecg", "eda"]
        columns = dict(physio_columns) if physio_columns is not None else {"ecg": "ECG", "eda": "EDA"}
        missing = [name for name in channels if name not in columns]
        if not channels or missing or len(set(channels)) != len(channels):
            raise ValueError(f"physio_channels {channels}: give distinct names, each in physio_columns {columns}.")
        if not physio_rate > 0:
            raise ValueError(f"physio_rate={physio_rate} must be positive.")
        whole_samples(window_frames * FRAME_SECONDS, physio_rate, "window_frames × 0.04")
        self.layout = layout
        self.folders = chosen_folders
        self.window_frames = int(window_frames)
        self.hop_frames = int(hop_frames)
        self.label_position = label_position
        self.raters = tuple(chosen_raters)
        self.audio_rate = None if audio_rate is None else int(audio_rate)
        self.video_fps = float(video_fps)
        self.physio_channels = tuple(channels)
        self.physio_columns = {name: columns[name] for name in channels}
        self.physio_time_column = physio_time_column
        self.physio_rate = float(physio_rate)
        self.quality = quality if quality is not None else SignalQuality()
        self.modalities = tuple(m for m in MEDIA_KINDS if m in chosen_media)  # type: ignore[misc]

    # ------------------------------------------------------------------------------------------- description
    @property
    def label_space(self) -> LabelSpace:
        """Valence and arousal, no expressions, no AUs."""
        return LabelSpace(dimensions=RECOLA_DIMENSIONS)

    @property
    def window_seconds(self) -> float:
        """A window's length in seconds."""
        return round(self.window_frames * FRAME_SECONDS, 9)

    @property
    def provided_modalities(self) -> tuple[str, ...]:
        """The modalities of ``media`` (only their files are looked for)."""
        return tuple(self.modalities)

    def enabling_hint(self, modality: str) -> str | None:
        """Adding the modality to ``media`` (face: the recordings' videos), where RECOLA has it."""
        if modality not in MEDIA_KINDS or modality in self.modalities:
            return None
        media = ",".join([*self.modalities, modality])
        return (
            f"add {modality} to the adapter's media (now {list(self.modalities)}; it reads the "
            f"{self.folders[MEDIA_KINDS[modality]]}/ files): --data.init_args.dataset.init_args.media='[{media}]'"
        )

    def settings(self) -> dict[str, Any]:
        """Every option (part of the cache fingerprint)."""
        return {
            "layout": self.layout,
            "folders": dict(sorted(self.folders.items())),
            "window_frames": self.window_frames,
            "hop_frames": self.hop_frames,
            "label_position": self.label_position,
            "raters": list(self.raters),
            "audio_rate": self.audio_rate,
            "video_fps": self.video_fps,
            "physio_columns": self.physio_columns,
            "physio_time_column": self.physio_time_column,
            "physio_rate": self.physio_rate,
            "quality": self.quality.to_json(),
            "media": list(self.modalities),
        }

    def default_protocol(self) -> SplitProtocol:
        """AVEC 2016: the official partitions (validation carved from train); RECOLA: 5 subject-exclusive folds."""
        if self.layout == "avec2016":
            return OfficialSplits(val_fraction=0.2, seed=0)
        return SubjectKFold(num_folds=5, fold=0, seed=0)

    def physio_layout(self) -> PhysioLayout:
        """The physiological channels, in windows of ``window_frames × 0.04`` s."""
        return PhysioLayout(channels=self.physio_channels, seconds=self.window_seconds)

    def metadata(self) -> dict[str, Any]:
        """The layout, the frame step and the declared media rates."""
        return {
            "layout": self.layout,
            "frame_seconds": FRAME_SECONDS,
            "audio_rate": self.audio_rate,
            "physio_sources": self.physio_columns,
            "physio_source_rate": self.physio_rate,
        }

    # ----------------------------------------------------------------------------------------------- listing
    def base(self, raw_root: Path) -> Path:
        """The folder holding the layout's folders (``raw_root/AVEC2016`` where that is it)."""
        nested = raw_root / "AVEC2016"
        if self.layout == "avec2016" and not (raw_root / self.folders["arousal"]).is_dir() and nested.is_dir():
            return nested
        return raw_root

    def list_samples(self, raw_root: Path) -> Listing:
        """Every window of every recording with a gold standard; everything left out is a rejection.

        Raises:
            DataError: neither dimension's gold-standard folder exists under ``raw_root``.
        """
        base = self.base(raw_root)
        gold_folders = {dim: base / self.folders[dim] for dim in RECOLA_DIMENSIONS}
        if not any(folder.is_dir() for folder in gold_folders.values()):
            raise DataError(
                f"No {self.layout} gold standard under {raw_root}: expected {self.folders['arousal']}/ and "
                f"{self.folders['valence']}/ (set layout to avec2016 or recola to match the release, or folders to "
                "rename them). Pass the folder that holds them as raw_root."
            )
        suffix = ".arff" if self.layout == "avec2016" else ".csv"
        gold_files = {
            dim: {p.stem: p for p in sorted(folder.glob(f"*{suffix}")) if p.is_file()} if folder.is_dir() else {}
            for dim, folder in gold_folders.items()
        }
        media = {
            kind: self._media_files(base / self.folders[kind], kind) if _MODALITY_OF[kind] in self.modalities else {}
            for kind in MEDIA_SUFFIXES
        }
        names = sorted(set().union(*gold_files.values(), *media.values()), key=_natural)
        samples: list[RawSample] = []
        rejected: list[Rejection] = []
        for name in names:
            if not any(name in files for files in gold_files.values()):
                source = next(media[kind][name] for kind in MEDIA_SUFFIXES if name in media[kind])
                rejected.append(Rejection(source.relative_to(raw_root).as_posix(), NO_GOLD_STANDARD))
                continue
            tracks: dict[str, GoldTrack] = {}
            for dim in RECOLA_DIMENSIONS:
                path = gold_files[dim].get(name)
                if path is None:
                    expected = (gold_folders[dim] / f"{name}{suffix}").relative_to(raw_root).as_posix()
                    rejected.append(Rejection(expected, f"no {dim} gold standard ({dim} left unlabelled)"))
                    continue
                track = self.read_gold(path, raw_root, name)
                if isinstance(track, Rejection):
                    rejected.append(track)
                else:
                    tracks[dim] = track
            if not tracks:
                continue
            locators: dict[str, str | None] = {
                kind: (media[kind][name].relative_to(raw_root).as_posix() if name in media[kind] else None)
                for kind in MEDIA_SUFFIXES
            }
            for kind, folder in ((k, self.folders[k]) for k in MEDIA_SUFFIXES if _MODALITY_OF[k] in self.modalities):
                if locators[kind] is None:
                    expected = (base / folder / f"{name}{MEDIA_SUFFIXES[kind][0]}").relative_to(raw_root).as_posix()
                    reason = MISSING_MEDIA_FILE.format(kind=kind, modality=_MODALITY_OF[kind])
                    rejected.append(Rejection(expected, reason))
            if locators["audio"] is not None and self.audio_rate is not None:
                problem = self._audio_problem(raw_root / locators["audio"])
                if problem is not None:
                    rejected.append(Rejection(locators["audio"], problem))
                    locators["audio"] = None
            made, left_out = self._windows(name, tracks, locators)
            samples += made
            rejected += left_out
        return Listing(samples, rejected)

    @staticmethod
    def _media_files(folder: Path, kind: str) -> dict[str, Path]:
        """Recording name → its file of one medium (the first suffix of :data:`MEDIA_SUFFIXES` found)."""
        if not folder.is_dir():
            return {}
        found: dict[str, Path] = {}
        for suffix in reversed(MEDIA_SUFFIXES[kind]):
            found.update({p.stem: p for p in sorted(folder.glob(f"*{suffix}")) if p.is_file()})
        return found

    def _audio_problem(self, path: Path) -> str | None:
        """Why a recording's audio cannot be used (its header's rate is not the declared one), or None."""
        from multimodal_fer.media.audio import audio_rate

        try:
            rate = audio_rate(path)
        except DataError:
            return "unreadable audio"
        return None if rate == self.audio_rate else WRONG_AUDIO_RATE

    def read_gold(self, path: Path, raw_root: Path, name: str) -> GoldTrack | Rejection:
        """One dimension's gold standard of one recording on the frame grid, or why the file is rejected."""
        source = path.relative_to(raw_root).as_posix()
        try:
            if self.layout == "avec2016":
                times, values, lines = _arff_gold(path, name)
            else:
                times, values, lines = _csv_gold(path, self.raters)
        except _GoldProblem as problem:
            return Rejection(f"{source}:{problem.line}" if problem.line else source, problem.reason)
        except DataError:
            return Rejection(source, "unreadable gold standard")
        if times.size == 0:
            return Rejection(source, "gold standard without frames")
        frames = np.round(times / FRAME_SECONDS).astype(np.int64)
        off_grid = np.flatnonzero(np.abs(times - frames * FRAME_SECONDS) > _GRID_TOLERANCE * FRAME_SECONDS)
        if off_grid.size:
            return Rejection(f"{source}:{lines[off_grid[0]]}", "frame time off the 40-ms grid")
        if frames[0] < 0:
            return Rejection(f"{source}:{lines[0]}", "negative frame time")
        backwards = np.flatnonzero(np.diff(frames) <= 0)
        if backwards.size:
            return Rejection(f"{source}:{lines[backwards[0] + 1]}", "frame times out of order or repeated")
        track = np.full(int(frames[-1]) + 1, np.nan)
        track[frames] = values
        return GoldTrack(track, source)

    def _windows(
        self, name: str, tracks: dict[str, GoldTrack], locators: dict[str, str | None]
    ) -> tuple[list[RawSample], list[Rejection]]:
        """The labelled windows of one recording and the rejections of the others."""
        count = max(track.values.size for track in tracks.values())
        labels = np.full((count, len(RECOLA_DIMENSIONS)), np.nan)
        for column, dim in enumerate(RECOLA_DIMENSIONS):
            if dim in tracks:
                labels[: tracks[dim].values.size, column] = tracks[dim].values
        offset = self.window_frames - 1 if self.label_position == "end" else self.window_frames // 2
        source = tracks.get("arousal", tracks.get("valence")).source  # type: ignore[union-attr]
        subject, split = self.subject_and_split(name)
        samples: list[RawSample] = []
        outcomes: list[tuple[float, float, str | None]] = []
        for frame in range(offset, count - self.window_frames + offset + 1, self.hop_frames):
            start = frame - offset
            value = labels[frame]
            reason: str | None = None
            if np.all(np.isnan(value)):
                reason = NO_LABEL_AT_FRAME
            elif np.any(np.abs(value[~np.isnan(value)]) > 1.0):
                reason = LABEL_OUT_OF_RANGE
            outcomes.append((start * FRAME_SECONDS, (start + self.window_frames) * FRAME_SECONDS, reason))
            if reason is None:
                samples.append(
                    RawSample(
                        key=f"{name}/f{frame:05d}",
                        subject=subject,
                        source=source,
                        split=split,
                        labels=SampleLabels(va=tuple(float(v) for v in value)),
                        sequence=name,
                        frame=frame,
                        locators={"start_frame": start, **locators},
                    )
                )
        if not outcomes:
            return [], [Rejection(source, "recording shorter than one window")]
        return samples, merged_rejections(source, outcomes)

    def subject_and_split(self, name: str) -> tuple[str, str | None]:
        """A recording's subject and official split (AVEC: ``train_*`` train, ``dev_*`` test; else None)."""
        if self.layout != "avec2016":
            return name, None
        partition = name.split("_", 1)[0].lower()
        if partition == "train":
            return name, "train"
        if partition == "dev":
            return name, "test"
        return name, None

    # ------------------------------------------------------------------------------------------------ loading
    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The window's audio (file and offset), video frame and physiological channels.

        Raises:
            SampleError: an unreadable physiology file or one lacking a column, a rate other than declared, a window
                past the recording's end, or a NaN or flat channel.
        """
        start_frame = int(sample.locators["start_frame"])
        start = start_frame * FRAME_SECONDS
        media = RawMedia()
        base = raw_root
        if sample.locators.get("audio"):
            media.audio_path = str(base / sample.locators["audio"])
            media.audio_offset = start
        if sample.locators.get("video"):
            media.video = str(base / sample.locators["video"])
            media.video_frame = round(sample.frame * FRAME_SECONDS * self.video_fps)
        if sample.locators.get("physio"):
            signals = self._physio_window(str(base / sample.locators["physio"]), start)
            media.physio = signals
            media.physio_rates = dict.fromkeys(self.physio_channels, self.physio_rate)
        return media

    def _physio_window(self, path: str, start: float) -> dict[str, np.ndarray]:
        """The window of every physiological channel at its declared rate, checked."""
        columns = tuple(self.physio_columns[name] for name in self.physio_channels)
        try:
            table, times = _physio_table(path, columns, self.physio_time_column)
        except DataError as error:
            raise SampleError("unreadable physiology file", str(error)) from error
        samples = table.shape[0]
        first = float(times[0]) if times is not None else 0.0
        if times is not None and samples > 1:
            span = float(times[-1] - times[0])
            implied = (samples - 1) / span if span > 0 else math.inf
            if abs(implied - self.physio_rate) > max(self.quality.length_tolerance, 1e-6) * self.physio_rate:
                raise SampleError(
                    WRONG_RATE,
                    f"{Path(path).name}: {samples} samples over {span:g} s of its time column imply {implied:.6g} "
                    f"Hz, not the declared {self.physio_rate:g} Hz",
                )
        if start < first - 0.5 / self.physio_rate:
            raise SampleError(TRUNCATED, f"{Path(path).name}: the recording starts at {first:g} s, after the window")
        duration = samples / self.physio_rate
        signals = {
            name: cut_window(
                Channel(name, table[:, k], self.physio_rate), start - first, self.window_seconds, duration, self.quality
            )
            for k, name in enumerate(self.physio_channels)
        }
        check_window(signals, self.quality)
        return signals


class _GoldProblem(Exception):
    """A gold-standard file that cannot be used: the reason and the 1-based line it was found at (0: the file)."""

    def __init__(self, reason: str, line: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def _number(text: str) -> float:
    """A value of a gold-standard row (NaN for ARFF's missing ``?`` or an empty cell); ValueError if not a number."""
    text = text.strip()
    return math.nan if text in ("?", "") else float(text)


def _arff_gold(path: Path, name: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(times, values, lines)`` of an AVEC gold-standard ARFF, rows in file order."""
    table = read_arff(path)
    if table.names != ARFF_ATTRIBUTES:
        raise _GoldProblem(f"ARFF attributes other than {', '.join(ARFF_ATTRIBUTES)}")
    times, values = [], []
    for row, line in zip(table.rows, table.row_lines, strict=True):
        if row[0] != name:
            raise _GoldProblem("Instance_name other than the file's recording", line)
        try:
            time, value = float(row[1]), _number(row[2])
        except ValueError:
            raise _GoldProblem("malformed gold-standard row", line) from None
        times.append(time)
        values.append(value)
    return np.asarray(times, dtype=np.float64), np.asarray(values, dtype=np.float64), list(table.row_lines)


def _csv_gold(path: Path, raters: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(times, values, lines)`` of a RECOLA annotation CSV: the mean of the chosen raters per row."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(str(error)) from error
    if not lines:
        raise _GoldProblem("empty annotation file")
    header = [field.strip() for field in lines[0].split(";")]
    missing = [rater for rater in raters if rater not in header]
    if not header or header[0].lower() != "time" or missing:
        raise _GoldProblem(f"annotation header without time;{';'.join(raters)}", 1)
    columns = [header.index(rater) for rater in raters]
    times, values, numbers = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(";")
        if len(fields) != len(header):
            raise _GoldProblem("malformed gold-standard row", number)
        try:
            time = float(fields[0])
            ratings = [_number(fields[k]) for k in columns]
        except ValueError:
            raise _GoldProblem("malformed gold-standard row", number) from None
        times.append(time)
        values.append(math.nan if any(math.isnan(r) for r in ratings) else sum(ratings) / len(ratings))
        numbers.append(number)
    return np.asarray(times, dtype=np.float64), np.asarray(values, dtype=np.float64), numbers


@lru_cache(maxsize=2)
def _physio_table(path: str, columns: tuple[str, ...], time_column: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The chosen columns of a physiology file as float64 (S, C), and its time column (or None), read once.

    Raises:
        DataError: the file cannot be read, lacks a column, or holds a value that is not a number.
    """
    if path.lower().endswith(".arff"):
        table = read_arff(path)
        header, rows = [name.strip() for name in table.names], [list(row) for row in table.rows]
    else:
        try:
            lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"Cannot read {path}: {error}.") from error
        if not lines:
            raise DataError(f"{path} is empty.")
        separator = ";" if ";" in lines[0] else ","
        header = [name.strip() for name in lines[0].split(separator)]
        rows = [line.split(separator) for line in lines[1:] if line.strip()]
    lowered = [name.lower() for name in header]
    wanted = [*columns, *([time_column] if time_column else [])]
    missing = [name for name in wanted if name.lower() not in lowered]
    if missing:
        raise DataError(f"{path} has no column {missing} (its header: {header}).")
    indices = [lowered.index(name.lower()) for name in wanted]
    try:
        data = np.array([[float(row[k]) for k in indices] for row in rows], dtype=np.float64).reshape(-1, len(indices))
    except (ValueError, IndexError) as error:
        raise DataError(f"{path} holds a row that is not numbers in every column: {error}.") from error
    if data.shape[0] == 0:
        raise DataError(f"{path} holds no samples.")
    return data[:, : len(columns)], (data[:, len(columns)] if time_column else None)


def _natural(name: str) -> tuple[Any, ...]:
    """Sort key: AVEC partitions in train, dev, test order, then by number; other names by letters, then number.

    ``train_2`` comes before ``train_10``, ``P9`` before ``P16``.
    """
    head, _, tail = name.partition("_")
    if head in AVEC_PARTITIONS and tail.isdigit():
        return (AVEC_PARTITIONS.index(head), "", int(tail), name)
    letters = name.rstrip("0123456789")
    digits = name[len(letters) :]
    return (len(AVEC_PARTITIONS), letters, int(digits) if digits else -1, name)
