"""Aff-Wild2 as distributed for the ABAW challenges 3-6: per-frame valence-arousal, 8 expressions and 12 AUs.

Layout read (``raw_root`` is the folder holding the frames and the annotations)::

    cropped_aligned/<video>/00001.jpg, 00002.jpg, ...   aligned face crops, 5-digit 1-based frame numbers
    cropped/<video>/00001.jpg, ...                       non-aligned crops (``images="cropped"``)
    <annotations>/                                       found by searching raw_root; the name differs per
        VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt           edition, e.g.
        EXPR_Classification_Challenge/{Train_Set,Validation_Set}/<video>.txt     "3rd ABAW Annotations/Third
          (ABAW3 name; ABAW5/6: EXPR_Recognition_Challenge)                       ABAW Annotations" (ABAW3) or
        AU_Detection_Challenge/{Train_Set,Validation_Set}/<video>.txt            "6th ABAW Annotations" (ABAW6)
    videos/<video>.mp4 | .avi | .wav                     only for ``audio=True``: the raw videos (or their
                                                         audio tracks), anywhere under raw_root or videos_dir

Each annotation file has one header line and then one line per video frame: line *k* after the header (the
file's line k + 1; rejections name file lines, the header being line 1) labels frame image ``{k:05d}.jpg``,
which is 0-based frame ``k - 1`` of the video (:attr:`RawSample.frame`). Headers must be exactly:

======  ==============================================================  =========================================
track   header                                                          values (invalid code)
======  ==============================================================  =========================================
VA      ``valence,arousal``                                             two floats in [-1, 1] (-5)
EXPR    ``Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other``  one code 0..7 (-1)
AU      ``AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26``        twelve 0/1 values (-1)
======  ==============================================================  =========================================

Expression codes 0-7 are neutral, anger, disgust, fear, happy, sad, surprise, other (ABAW's order, kept as the
label space's order). Invalid codes never become labels: a VA line with -5 in *either* value leaves *both*
dimensions NaN for that frame (ABAW's loaders drop such rows whole); EXPR -1 leaves ``expr`` -1; an AU line with
-1 in any column leaves the whole AU row NaN. The three tracks are merged per frame: one sample per frame image
with at least one valid label in the enabled ``tasks`` (frames labelled nowhere are simply not samples). A
labelled line whose frame image does not exist (no face was found in that frame) is a listing rejection
(``label line without a frame image``), as the challenge loaders drop it; so are malformed lines, out-of-range
values and files with another header (an ABAW1 file, say).

Splits: ``Train_Set`` → ``"train"``; ``Validation_Set`` → ``"test"`` (``validation_as="test"``, the default: ABAW
test labels are hidden and the literature reports on the official validation set), and the default protocol
:class:`OfficialSplits` (``val_fraction=0.1``) carves validation videos from the training videos. A video in
``Train_Set`` of one enabled track and ``Validation_Set`` of another would leak a person between training and
testing: all its files are rejected (``video in both Train_Set and Validation_Set``).

Subjects: Aff-Wild2 does not publish person identities; one video shows about one person, so the subject is the
video name (``<name>_left`` and ``<name>_right`` are the two people of a two-person video: two subjects). The
same person appearing in two videos cannot be detected.

Evaluation is per frame, as the challenges score it: every frame is a sample, so the test metrics pool all frames
of all test videos (CCC per dimension, macro-F1 over the 8 classes, mean per-AU F1 over the 12 AUs).

Audio (``audio=True``): a video's audio is the file ``<video without _left/_right>.(mp4|avi|wav)`` (the two
people of a two-person video share one track). Each frame's audio is an ``audio_window_seconds`` window centred
on the frame's time ``frame / fps`` (shifted to stay inside the recording at its ends; frames after the track's
end have no audio), cut here and handed to the preprocessing as a waveform: set ``audio_window_seconds`` to the
preprocessing's ``audio_seconds``. The frame rate is read from the video file's metadata (PyAV); for an audio-only
WAV with no video of the same name beside it, pass ``fps``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from multimodal_fer.datasets.base import (
    DatasetAdapter,
    Listing,
    RawMedia,
    RawSample,
    Rejection,
    SampleError,
    SampleLabels,
)
from multimodal_fer.datasets.image_io import read_image
from multimodal_fer.datasets.protocols import OfficialSplits, SplitProtocol
from multimodal_fer.errors import DataError
from multimodal_fer.types import LabelSpace

#: Expression codes 0..7 in the package's vocabulary (ABAW order: Neutral, Anger, Disgust, Fear, Happiness,
#: Sadness, Surprise, Other).
AFFWILD2_EXPRESSIONS: tuple[str, ...] = ("neutral", "anger", "disgust", "fear", "happy", "sad", "surprise", "other")
#: The 12 AUs of ABAW 2 and later, in column order.
AFFWILD2_ACTION_UNITS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26)
#: Affect dimensions of the VA track.
AFFWILD2_DIMENSIONS: tuple[str, ...] = ("valence", "arousal")

#: Tracks in canonical order.
TASKS: tuple[str, ...] = ("va", "expr", "au")
#: Challenge folder names per track (EXPR: ABAW5/6 name first, then the ABAW3 name).
CHALLENGE_FOLDERS: dict[str, tuple[str, ...]] = {
    "va": ("VA_Estimation_Challenge",),
    "expr": ("EXPR_Recognition_Challenge", "EXPR_Classification_Challenge"),
    "au": ("AU_Detection_Challenge",),
}
#: Exact header line of each track's files.
HEADERS: dict[str, str] = {
    "va": "valence,arousal",
    "expr": "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other",
    "au": "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26",
}
#: Official split folders and the split they become (Validation_Set: see ``validation_as``).
SPLIT_FOLDERS: tuple[str, ...] = ("Train_Set", "Validation_Set")
#: Invalid (unannotated) codes.
VA_INVALID = -5.0
EXPR_INVALID = -1
AU_INVALID = -1.0
#: Files a video's audio may come from; ``.wav`` carries no frame rate.
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi")
AUDIO_SUFFIXES: tuple[str, ...] = (".wav",)
#: How deep below raw_root the annotation and media searches look.
SEARCH_DEPTH = 4

_IMAGE_FOLDERS = ("cropped_aligned", "cropped")
_SIDE_SUFFIXES = ("_left", "_right")


class _BadLine(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Malformed:
    """A line that could not be parsed; a rejection if its frame is considered."""

    reason: str


@dataclass(frozen=True)
class _Track:
    """One annotation file: its track, split folder, path relative to raw_root and its per-frame values."""

    task: str
    split_folder: str
    source: str
    values: list[Any]  # per frame line: label value, None (invalid code) or _Malformed


class AffWild2(DatasetAdapter):
    """Aff-Wild2 of ABAW 3-6, per frame, with the VA, EXPR and AU tracks merged.

    Args:
        tasks: tracks to read, among ``va``, ``expr`` and ``au`` (default all three); the label space holds only
            these, and a frame is a sample when one of them labels it.
        images: ``"cropped_aligned"`` (the distributed aligned crops, resized only) or ``"cropped"`` (non-aligned
            crops, faces detected and aligned by the preprocessing).
        annotations_dir: the folder holding the challenge folders, relative to raw_root (e.g.
            ``"6th ABAW Annotations"``); None searches raw_root for it (refusing two candidates).
        validation_as: official split of ``Validation_Set``: ``"test"`` (default; validation is then carved from
            training videos) or ``"val"`` (then choose a protocol with a test split of its own, e.g.
            SubjectHoldout: the default OfficialSplits needs an official test split).
        frame_step: keep every ``frame_step``-th frame (0-based frames 0, step, 2·step, ...).
        audio: also provide the audio modality (see the module docstring).
        videos_dir: folder of the raw videos or audio tracks, relative to raw_root (searched recursively); None
            searches raw_root outside the frame and annotation folders, up to :data:`SEARCH_DEPTH` levels.
        fps: frame rate for audio tracks without a video of the same name (WAV files); a video's own frame rate
            is always read from its metadata.
        audio_window_seconds: length of each frame's audio window; keep it equal to
            ``preprocessing.audio_seconds``.
    """

    name = "affwild2"
    modalities = ("face",)
    face_media_allowed = False  # real people; the EULA allows academic research use only

    def __init__(
        self,
        tasks: list[Literal["va", "expr", "au"]] | None = None,
        images: Literal["cropped_aligned", "cropped"] = "cropped_aligned",
        annotations_dir: str | None = None,
        validation_as: Literal["test", "val"] = "test",
        frame_step: int = 1,
        audio: bool = False,
        videos_dir: str | None = None,
        fps: float | None = None,
        audio_window_seconds: float = 1.0,
    ) -> None:
        chosen = list(TASKS if tasks is None else tasks)
        unknown = [t for t in chosen if t not in TASKS]
        if unknown or not chosen or len(set(chosen)) != len(chosen):
            raise ValueError(f"tasks={chosen}: give each of {list(TASKS)} at most once, and at least one.")
        if images not in _IMAGE_FOLDERS:
            raise ValueError(f"images={images!r}: choose 'cropped_aligned' or 'cropped'.")
        if validation_as not in ("test", "val"):
            raise ValueError(f"validation_as={validation_as!r}: choose 'test' or 'val'.")
        if isinstance(frame_step, bool) or not isinstance(frame_step, int) or frame_step < 1:
            raise ValueError(f"frame_step={frame_step!r} must be a whole number of frames, at least 1.")
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps={fps} must be a positive number of frames per second.")
        if not (math.isfinite(audio_window_seconds) and audio_window_seconds > 0):
            raise ValueError(f"audio_window_seconds={audio_window_seconds} must be positive.")
        self.tasks = tuple(t for t in TASKS if t in chosen)
        self.images = images
        self.annotations_dir = annotations_dir
        self.validation_as = validation_as
        self.frame_step = frame_step
        self.audio = bool(audio)
        self.videos_dir = videos_dir
        self.fps = None if fps is None else float(fps)
        self.audio_window_seconds = float(audio_window_seconds)
        self.modalities = ("face", "audio") if self.audio else ("face",)  # type: ignore[misc]

    # ------------------------------------------------------------------------------------------ declarations
    @property
    def label_space(self) -> LabelSpace:
        """The enabled tracks' labels: 8 classes in ABAW order, 12 AUs, valence and arousal."""
        return LabelSpace(
            expressions=AFFWILD2_EXPRESSIONS if "expr" in self.tasks else (),
            action_units=AFFWILD2_ACTION_UNITS if "au" in self.tasks else (),
            dimensions=AFFWILD2_DIMENSIONS if "va" in self.tasks else (),
        )

    def enabling_hint(self, modality: str) -> str | None:
        """Turning ``audio`` on (each video's audio track), where it is off."""
        if modality != "audio" or self.audio:
            return None
        return (
            "turn on the adapter's audio (the raw videos' audio tracks, under raw_root or videos_dir): "
            "--data.init_args.dataset.init_args.audio=true"
        )

    def default_protocol(self) -> SplitProtocol:
        """Official train and (validation as) test videos; validation videos carved from training."""
        return OfficialSplits(val_fraction=0.1)

    def settings(self) -> dict[str, Any]:
        """Every option (all change the listing or the loading)."""
        return {
            "tasks": list(self.tasks),
            "images": self.images,
            "annotations_dir": self.annotations_dir,
            "validation_as": self.validation_as,
            "frame_step": self.frame_step,
            "audio": self.audio,
            "videos_dir": self.videos_dir,
            "fps": self.fps,
            "audio_window_seconds": self.audio_window_seconds,
        }

    def metadata(self) -> dict[str, Any]:
        """How the cache's frames are to be scored."""
        return {"tasks": list(self.tasks), "evaluation": "per frame, pooled over all frames of all videos"}

    # ----------------------------------------------------------------------------------------------- finding
    def find_annotations(self, raw_root: Path) -> Path:
        """The folder holding the challenge folders (``annotations_dir``, or the one found under raw_root).

        Raises:
            DataError: none found, two found, or ``annotations_dir`` without challenge folders.
        """
        names = {name for task in TASKS for name in CHALLENGE_FOLDERS[task]}
        if self.annotations_dir is not None:
            folder = _inside(raw_root, self.annotations_dir, "annotations_dir")
            if not folder.is_dir() or not any((folder / n).is_dir() for n in names):
                raise DataError(
                    f"annotations_dir {folder} holds none of the challenge folders {sorted(names)}; point it to the "
                    "folder that holds VA_Estimation_Challenge, EXPR_..._Challenge and AU_Detection_Challenge."
                )
            return folder
        found: list[Path] = []
        for folder, subfolders, _ in _walk(raw_root, SEARCH_DEPTH, skip=set(_IMAGE_FOLDERS)):
            if names & set(subfolders):
                found.append(folder)
                subfolders[:] = [s for s in subfolders if s not in names]
        if not found:
            raise DataError(
                f"No Aff-Wild2 annotations under {raw_root}: expected a folder (e.g. '6th ABAW Annotations' or "
                f"'3rd ABAW Annotations/Third ABAW Annotations') holding {sorted(names)}, each with Train_Set and "
                "Validation_Set. ABAW1's annotations/{AU_Set,EXPR_Set,VA_Set} layout is not supported. Point raw_root "
                "to the folder with cropped_aligned and the annotations, or set annotations_dir."
            )
        if len(found) > 1:
            listed = ", ".join(repr(str(f.relative_to(raw_root))) for f in sorted(found))
            raise DataError(
                f"Several Aff-Wild2 annotation folders under {raw_root} ({listed}); choose one with "
                "--data.init_args.dataset.init_args.annotations_dir."
            )
        return found[0]

    def _challenge_folder(self, annotations: Path, task: str) -> Path:
        present = [annotations / n for n in CHALLENGE_FOLDERS[task] if (annotations / n).is_dir()]
        if not present:
            raise DataError(
                f"No {' or '.join(CHALLENGE_FOLDERS[task])} folder in {annotations}; drop {task!r} from tasks "
                f"(--data.init_args.dataset.init_args.tasks) or add the {task.upper()} annotations."
            )
        if len(present) > 1:
            raise DataError(
                f"Both {present[0].name} and {present[1].name} are in {annotations} (two ABAW editions mixed); keep "
                "one edition's annotations in the folder, or point annotations_dir to one edition."
            )
        if not any((present[0] / s).is_dir() for s in SPLIT_FOLDERS):
            raise DataError(f"{present[0]} has neither {SPLIT_FOLDERS[0]} nor {SPLIT_FOLDERS[1]}; is it complete?")
        return present[0]

    # ------------------------------------------------------------------------------------------------ parsing
    def _read_track(
        self, raw_root: Path, task: str, path: Path, split_folder: str
    ) -> tuple[_Track | None, Rejection | None]:
        """One annotation file's per-frame values, or the rejection of the whole file."""
        source = str(path.relative_to(raw_root))
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError):
            return None, Rejection(source, "unreadable annotation file")
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines or "".join(lines[0].split()) != HEADERS[task]:
            return None, Rejection(f"{source}:1", "unexpected header line")
        parse = _PARSERS[task]
        values: list[Any] = []
        for line in lines[1:]:
            try:
                values.append(parse(line))
            except _BadLine as error:
                values.append(_Malformed(error.reason))
        return _Track(task, split_folder, source, values), None

    # ------------------------------------------------------------------------------------------------ listing
    def list_samples(self, raw_root: Path) -> Listing:
        """Every frame image with a valid label in an enabled track, in video and frame order.

        Raises:
            DataError: no frame folder, no (or ambiguous) annotations, a missing challenge folder, or (with
                audio) an audio track whose frame rate cannot be known.
        """
        images_root = raw_root / self.images
        if not images_root.is_dir():
            raise DataError(
                f"No {self.images} folder under {raw_root}; point raw_root to the Aff-Wild2 folder that holds it "
                "(or choose images='cropped' / 'cropped_aligned')."
            )
        annotations = self.find_annotations(raw_root)
        rejected: list[Rejection] = []
        videos: dict[str, list[_Track]] = {}
        for task in self.tasks:
            challenge = self._challenge_folder(annotations, task)
            for split_folder in SPLIT_FOLDERS:
                folder = challenge / split_folder
                if not folder.is_dir():
                    continue
                for path in sorted(folder.glob("*.txt")):
                    track, rejection = self._read_track(raw_root, task, path, split_folder)
                    if rejection is not None:
                        rejected.append(rejection)
                    if track is not None:
                        videos.setdefault(path.stem, []).append(track)
        media = self._media_index(raw_root, annotations, sorted(videos)) if self.audio else {}
        samples: list[RawSample] = []
        for video in sorted(videos):
            tracks = videos[video]
            split_folders = {t.split_folder for t in tracks}
            if len(split_folders) > 1:
                rejected += [Rejection(t.source, "video in both Train_Set and Validation_Set") for t in tracks]
                continue
            split = "train" if split_folders == {"Train_Set"} else self.validation_as
            frame_folder = images_root / video
            if not frame_folder.is_dir():
                rejected += [
                    Rejection(t.source, "no frame folder for the video")
                    for t in tracks
                    if any(_valid(v) for v in t.values[:: self.frame_step])
                ]
                continue
            frame_names = {entry.name for entry in os.scandir(frame_folder)}
            locators = media.get(video, {})
            count = max(len(t.values) for t in tracks)
            for k in range(1, count + 1, self.frame_step):
                labels: dict[str, Any] = {}
                labelled: list[_Track] = []
                for track in tracks:
                    value = track.values[k - 1] if k <= len(track.values) else None
                    if isinstance(value, _Malformed):
                        rejected.append(Rejection(f"{track.source}:{k + 1}", value.reason))
                    elif value is not None:
                        labels[track.task] = value
                        labelled.append(track)
                if not labels:
                    continue
                image = f"{k:05d}.jpg"
                if image not in frame_names:
                    rejected += [Rejection(f"{t.source}:{k + 1}", "label line without a frame image") for t in labelled]
                    continue
                samples.append(
                    RawSample(
                        key=f"{video}/{k:05d}",
                        subject=video,
                        source=f"{self.images}/{video}/{image}",
                        split=split,
                        labels=SampleLabels(expr=labels.get("expr", -1), au=labels.get("au"), va=labels.get("va")),
                        sequence=video,
                        frame=k - 1,
                        locators=locators,
                    )
                )
        return Listing(samples, rejected)

    def _media_index(self, raw_root: Path, annotations: Path, videos: Sequence[str]) -> dict[str, dict[str, str]]:
        """Per video: its audio file and the video file its frame rate comes from (relative to raw_root).

        Raises:
            DataError: ``videos_dir`` missing, two files of one kind for a track, or a WAV without a frame rate.
        """
        if self.videos_dir is not None:
            base = _inside(raw_root, self.videos_dir, "videos_dir")
            if not base.is_dir():
                raise DataError(f"videos_dir {base} is not a folder; give it relative to raw_root.")
            walk = _walk(base, None, skip=set())
        else:
            walk = _walk(raw_root, SEARCH_DEPTH, skip=set(_IMAGE_FOLDERS), skip_paths={annotations})
        files: dict[str, dict[str, list[str]]] = {}
        suffixes = VIDEO_SUFFIXES + AUDIO_SUFFIXES
        for folder, _, names in walk:
            for name in names:
                stem, suffix = os.path.splitext(name)
                if suffix.lower() in suffixes:
                    relative = str((folder / name).relative_to(raw_root))
                    files.setdefault(stem, {}).setdefault(suffix.lower(), []).append(relative)
        index: dict[str, dict[str, str]] = {}
        for video in videos:
            track = audio_track_name(video)
            kinds = files.get(track, {})
            for paths in kinds.values():
                if len(paths) > 1:
                    raise DataError(
                        f"Several files could be the audio of {video}: {sorted(paths)}; keep one or set videos_dir."
                    )
            video_file = next((kinds[s][0] for s in VIDEO_SUFFIXES if s in kinds), None)
            wav_file = next((kinds[s][0] for s in AUDIO_SUFFIXES if s in kinds), None)
            if video_file is None and wav_file is None:
                continue  # no audio for this video: the frames' audio is absent
            if video_file is None and self.fps is None:
                raise DataError(
                    f"The audio of {video} is the WAV file {wav_file} with no video of the same name to read the "
                    "frame rate from; pass --data.init_args.dataset.init_args.fps or add the video."
                )
            index[video] = {"audio": wav_file or video_file or "", "video": video_file or ""}
        return index

    # -------------------------------------------------------------------------------------------------- load
    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The frame image (aligned crop or crop to detect in) and, with audio, the frame's audio window."""
        image = read_image(raw_root / sample.source)
        media = RawMedia(image=image, face_aligned=self.images == "cropped_aligned")
        if self.audio and sample.locators.get("audio"):
            window = self._audio_window(raw_root, sample)
            if window is not None:
                media.audio, media.audio_rate = window
        return media

    def _audio_window(self, raw_root: Path, sample: RawSample) -> tuple[np.ndarray, int] | None:
        """float32 (S,) window centred on the frame's time and its rate; None after the track's end.

        The window is cut here (rather than given as ``audio_path`` + ``audio_centre``) so that a frame past the
        track's end has its audio marked absent instead of failing, and the window length follows
        ``audio_window_seconds``.
        """
        video = sample.locators.get("video")
        fps = _video_fps(str(raw_root / video)) if video else None
        fps = fps or self.fps
        if fps is None:
            raise SampleError("video without a frame rate")
        track = _mono_track(str(raw_root / sample.locators["audio"]))
        if isinstance(track, str):
            raise SampleError(track)
        if track is None:
            return None  # the video has no audio stream: the audio is absent
        mono, rate = track
        centre = round(sample.frame / fps * rate)
        if centre >= mono.shape[0]:
            return None
        length = max(1, round(self.audio_window_seconds * rate))
        start = min(max(centre - length // 2, 0), max(mono.shape[0] - length, 0))
        return np.array(mono[start : start + length], dtype=np.float32), rate


def audio_track_name(video: str) -> str:
    """The audio track's name of a video: the name without its ``_left``/``_right`` suffix."""
    for suffix in _SIDE_SUFFIXES:
        if video.endswith(suffix):
            return video[: -len(suffix)]
    return video


# ----------------------------------------------------------------------------------------------------- parsing
def _numbers(line: str, count: int) -> list[float]:
    parts = line.split(",")
    if len(parts) != count:
        raise _BadLine("malformed annotation line")
    try:
        values = [float(p) for p in parts]
    except ValueError as error:
        raise _BadLine("malformed annotation line") from error
    if not all(math.isfinite(v) for v in values):
        raise _BadLine("malformed annotation line")
    return values


def _parse_va(line: str) -> tuple[float, float] | None:
    valence, arousal = _numbers(line, 2)
    if VA_INVALID in (valence, arousal):
        return None
    if not (-1.0 <= valence <= 1.0 and -1.0 <= arousal <= 1.0):
        raise _BadLine("valence/arousal outside [-1, 1]")
    return valence, arousal


def _parse_expr(line: str) -> int | None:
    (value,) = _numbers(line, 1)
    if value != int(value):
        raise _BadLine("malformed annotation line")
    code = int(value)
    if code == EXPR_INVALID:
        return None
    if not 0 <= code < len(AFFWILD2_EXPRESSIONS):
        raise _BadLine(f"unknown expression code {code}")
    return code


def _parse_au(line: str) -> tuple[float, ...] | None:
    values = _numbers(line, len(AFFWILD2_ACTION_UNITS))
    if any(v not in (0.0, 1.0, AU_INVALID) for v in values):
        raise _BadLine("AU value other than 0, 1 or -1")
    if AU_INVALID in values:
        return None
    return tuple(values)


_PARSERS: dict[str, Callable[[str], Any]] = {"va": _parse_va, "expr": _parse_expr, "au": _parse_au}


def _inside(raw_root: Path, relative: str, option: str) -> Path:
    """``raw_root / relative``, refusing a folder outside raw_root (sources are named relative to it)."""
    path = raw_root / relative
    if not path.is_relative_to(raw_root) or ".." in Path(relative).parts:
        raise DataError(f"{option}={relative!r} must be a folder inside raw_root {raw_root}, given relative to it.")
    return path


def _valid(value: Any) -> bool:
    return value is not None and not isinstance(value, _Malformed)


# ------------------------------------------------------------------------------------------------- file search
def _walk(root: Path, depth: int | None, skip: set[str], skip_paths: set[Path] | None = None) -> Any:
    """``os.walk`` of ``root`` in sorted order, at most ``depth`` levels down.

    Never enters folders named in ``skip``, hidden folders or ``skip_paths``. Yields ``(folder, subfolders,
    files)``; a caller prunes the walk by editing ``subfolders``.
    """
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        level = len(here.relative_to(root).parts)
        subfolders[:] = sorted(
            s
            for s in subfolders
            if s not in skip
            and not s.startswith(".")
            and (depth is None or level < depth)
            and here / s not in (skip_paths or set())
        )
        yield here, subfolders, sorted(files)


# ----------------------------------------------------------------------------------------------- media readers
@lru_cache(maxsize=32)
def _video_fps(path: str) -> float | None:
    """A video file's frame rate from its metadata (None: no video stream).

    Raises:
        SampleError: ``"unreadable video"``.
    """
    from multimodal_fer._lazy import require

    av = require("av", "reading Aff-Wild2 videos' frame rates")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    except (av.FFmpegError, OSError, ValueError) as error:
        raise SampleError("unreadable video") from error
    return float(rate) if rate else None


@lru_cache(maxsize=2)
def _mono_track(path: str) -> tuple[np.ndarray, int] | str | None:
    """A whole audio track, mono float32 (S,) at its own rate, read once per process.

    The two people of a video and consecutive frames share it. Returns None for a file without an audio stream
    and a short reason (a string) for a file that cannot be read.
    """
    from multimodal_fer.media.audio import read_audio

    if not path.lower().endswith(AUDIO_SUFFIXES):
        from multimodal_fer._lazy import require

        av = require("av", "reading Aff-Wild2 audio tracks")
        try:
            with av.open(path) as container:
                if not container.streams.audio:
                    return None
        except (av.FFmpegError, OSError, ValueError):
            return "unreadable audio"
    try:
        waveform, rate = read_audio(path)
    except DataError:
        return "unreadable audio"
    mono = np.asarray(waveform, dtype=np.float32).mean(axis=0)
    if not np.isfinite(mono).all():
        return "non-finite audio samples"
    return mono, int(rate)
