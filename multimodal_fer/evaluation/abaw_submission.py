"""Aff-Wild2 predictions as ABAW track files: one text file per video, a header, one line per video frame.

The ABAW challenges score one file per video and track, in the layout of Aff-Wild2's own annotation files
(``../shared/reference/datasets.md``, "Per-video annotation txt files"): the track's header line, then one line
per frame of the video, frame 1 first. ``mfer predict`` on an Aff-Wild2 cache (or on a folder of its
``cropped_aligned`` frames) writes one CSV row per frame it has a face for; the cropped frames skip frames without
a detected face, so a video's file needs lines the predictions do not have. Each such frame takes the prediction
of the nearest predicted frame of its video (the earlier one on a tie), and the summary counts them per video.

- ``VA/<video>.txt``: ``valence,arousal``, two floats clipped to [-1, 1];
- ``EXPR/<video>.txt``: ``Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other``, the index 0-7 of the most
  probable of those eight classes;
- ``AU/<video>.txt``: ``AU1,...,AU26``, twelve 0/1 decisions at a probability threshold (0.5 by default).

A video's frame count comes from its video file (``videos``: a folder searched for ``<video>.mp4|.avi``, the
``_left``/``_right`` suffix of a two-person video dropped) where given, else from its last predicted frame, which
the summary says.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from multimodal_fer.errors import DataError

#: Track → (folder, header line) of the ABAW 3+ editions.
TRACKS: dict[str, tuple[str, str]] = {
    "va": ("VA", "valence,arousal"),
    "expr": ("EXPR", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"),
    "au": ("AU", "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"),
}
#: The predictions' probability columns of the eight classes, in the ABAW index order 0-7.
EXPRESSION_COLUMNS = tuple(
    f"p_{name}" for name in ("neutral", "anger", "disgust", "fear", "happy", "sad", "surprise", "other")
)
#: The predictions' columns of the twelve AUs, in the ABAW order.
AU_COLUMNS = tuple(f"au{number}" for number in (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26))
VA_COLUMNS = ("valence", "arousal")
_COLUMNS = {"va": VA_COLUMNS, "expr": EXPRESSION_COLUMNS, "au": AU_COLUMNS}
_VIDEO_SUFFIXES = (".mp4", ".avi", ".MP4", ".AVI")
_SIDE_SUFFIXES = ("_left", "_right")


@dataclass
class VideoFrames:
    """One video's predicted frames (1-based frame numbers, sorted) and their values per track."""

    frames: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class SubmissionSummary:
    """What was written: files per track, and per video its line count, filled frames and where the count came from."""

    out: Path
    files: dict[str, int]
    lines: dict[str, int]
    filled: dict[str, int]
    counted_from: dict[str, str]


def _frame_of(row: dict[str, str]) -> tuple[str, int] | None:
    """(video, 1-based frame number) of a predictions row: its ``key`` (``<video>/<00001>``) or ``source`` path."""
    name = (row.get("key") or row.get("source") or "").replace("\\", "/")
    parts = [part for part in name.split("/") if part]
    if len(parts) < 2:
        return None
    stem = parts[-1].rsplit(".", 1)[0]
    return (parts[-2], int(stem)) if stem.isdigit() else None


def read_predictions(path: Path, tracks: Sequence[str]) -> dict[str, VideoFrames]:
    """The rows of ``mfer predict``'s CSV grouped by video, with the columns the ``tracks`` need.

    Raises:
        DataError: a track's columns are missing (the model has no such head, or not Aff-Wild2's classes), a row
            names no ``<video>/<frame>`` image, or one frame is predicted twice.
    """
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        for track in tracks:
            missing = [c for c in _COLUMNS[track] if c not in columns]
            if missing:
                raise DataError(
                    f"{path} has no {', '.join(missing)} for the {track.upper()} track: predict with a model trained "
                    "on Aff-Wild2 with that task, or leave the track out (--tracks)."
                )
        rows: dict[str, dict[int, dict[str, str]]] = {}
        for number, row in enumerate(reader, start=2):
            if row.get("status", "ok") != "ok":
                continue
            located = _frame_of(row)
            if located is None:
                raise DataError(
                    f"{path} line {number}: {row.get('key') or row.get('source')!r} is not a <video>/<frame>.jpg "
                    "image of Aff-Wild2's cropped frames."
                )
            video, frame = located
            if frame in rows.setdefault(video, {}):
                raise DataError(f"{path} line {number}: frame {frame} of {video} is predicted twice.")
            rows[video][frame] = row
    videos = {}
    for video, by_frame in sorted(rows.items()):
        frames = np.array(sorted(by_frame), dtype=np.int64)
        values = {
            track: np.array([[float(by_frame[f][c]) for c in _COLUMNS[track]] for f in frames], dtype=np.float64)
            for track in tracks
        }
        videos[video] = VideoFrames(frames, values)
    return videos


def nearest_predicted(frames: np.ndarray, count: int) -> np.ndarray:
    """For frames 1..count, the position in ``frames`` (sorted, 1-based) of the nearest one; earlier on a tie.

    Returns:
        int (count,) positions into ``frames``.
    """
    wanted = np.arange(1, count + 1)
    after = np.clip(np.searchsorted(frames, wanted), 0, frames.size - 1)
    before = np.clip(after - 1, 0, frames.size - 1)
    take_before = np.abs(wanted - frames[before]) <= np.abs(frames[after] - wanted)
    return np.where(take_before, before, after)


def video_files(videos: Path) -> dict[str, Path]:
    """The video files under ``videos`` (searched once, recursively) by name without suffix; the first of a name."""
    found: dict[str, Path] = {}
    for path in sorted(videos.rglob("*")):
        if path.suffix in _VIDEO_SUFFIXES and path.is_file():
            found.setdefault(path.stem, path)
    return found


def video_frame_count(files: dict[str, Path], video: str) -> int | None:
    """Frames of ``<video>``'s file (of the name without a ``_left``/``_right`` suffix if need be); None if none.

    Args:
        files: :func:`video_files` of the videos folder.
        video: the video's name in the predictions.
    """
    import av

    names = [video] + [video[: -len(s)] for s in _SIDE_SUFFIXES if video.endswith(s)]
    path = next((files[name] for name in names if name in files), None)
    if path is None:
        return None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return int(stream.frames) if stream.frames else sum(1 for _ in container.decode(stream))


def _line(track: str, values: np.ndarray, au_threshold: float) -> str:
    if track == "va":
        return ",".join(f"{v:.6f}" for v in np.clip(values, -1.0, 1.0))
    if track == "expr":
        return str(int(np.argmax(values)))
    return ",".join("1" if v >= au_threshold else "0" for v in values)


def write_submission(
    predictions: Path,
    out: Path,
    tracks: Sequence[str] = ("va", "expr", "au"),
    videos: Path | None = None,
    au_threshold: float = 0.5,
) -> SubmissionSummary:
    """Write ``out/<VA|EXPR|AU>/<video>.txt`` for every video of ``predictions`` (see the module docstring).

    Args:
        predictions: ``mfer predict``'s CSV over Aff-Wild2 frames (on the cache, or raw ``cropped_aligned`` images).
        out: the submission folder.
        tracks: any of ``va``, ``expr``, ``au``.
        videos: a folder of the raw videos, for each video's frame count (None: its last predicted frame).
        au_threshold: AU probability at and above which an AU is written as 1.

    Raises:
        DataError: an unknown track, a threshold outside (0, 1), a video with a predicted frame beyond its video
            file's length, or a problem of :func:`read_predictions`.
    """
    unknown = [t for t in tracks if t not in TRACKS]
    if unknown or not tracks:
        raise DataError(f"Unknown track(s) {unknown or tracks}: choose from {', '.join(TRACKS)}.")
    if not 0.0 < au_threshold < 1.0:
        raise DataError(f"au_threshold={au_threshold} must lie strictly between 0 and 1.")
    by_video = read_predictions(predictions, tracks)
    if not by_video:
        raise DataError(f"{predictions} holds no predicted frame.")
    lines, filled, counted_from = {}, {}, {}
    for track in tracks:
        (out / TRACKS[track][0]).mkdir(parents=True, exist_ok=True)
    files = video_files(videos) if videos is not None else {}
    for video, predicted in by_video.items():
        count = video_frame_count(files, video)
        counted_from[video] = "video file" if count is not None else "last predicted frame"
        if count is None:
            count = int(predicted.frames[-1])
        elif predicted.frames[-1] > count:
            raise DataError(
                f"{video}: frame {int(predicted.frames[-1])} is predicted but its video has {count} frames; the "
                "predictions and the videos do not belong together."
            )
        nearest = nearest_predicted(predicted.frames, count)
        lines[video] = count
        filled[video] = count - predicted.frames.size
        for track in tracks:
            folder, header = TRACKS[track]
            body = [_line(track, predicted.values[track][k], au_threshold) for k in nearest]
            (out / folder / f"{video}.txt").write_text("\n".join([header, *body]) + "\n")
    return SubmissionSummary(out, {t: len(by_video) for t in tracks}, lines, filled, counted_from)
