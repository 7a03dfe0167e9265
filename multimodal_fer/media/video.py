"""Video files → RGB frames with their times (PyAV), and deterministic frame sampling for clips.

Frames are decoded in presentation order and converted to RGB one at a time; only the frames that are
returned are kept in memory, so reading a few frames of a long video costs the decoding, not the memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multimodal_fer._lazy import require
from multimodal_fer.errors import DataError


@dataclass(frozen=True, eq=False)
class VideoFrames:
    """Decoded frames of one video.

    Attributes:
        frames: uint8 (T, H, W, 3) RGB.
        times: float64 (T,) presentation times in seconds (of the decoded frame each returned frame is).
        native_fps: the stream's average frame rate in frames per second.
        indices: int64 (T,) decode-order index of each returned frame in the video (0-based), for per-frame
            labels.
    """

    frames: np.ndarray
    times: np.ndarray
    native_fps: float
    indices: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def _open(path: Path) -> Any:
    av = require("av", "decoding video files")
    if not path.is_file():
        raise DataError(f"The video file {str(path)!r} does not exist (or is not a file).")
    if path.stat().st_size == 0:
        raise DataError(f"The video file {str(path)!r} is empty (0 bytes).")
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise DataError(f"Cannot open the video file {str(path)!r}: {error}. Is it damaged or not a video?") from error


def _check_indices(frame_indices: Sequence[int] | np.ndarray) -> np.ndarray:
    indices = np.asarray(frame_indices)
    if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise DataError(
            f"frame_indices must be a non-empty 1-D sequence of integers, got {indices.dtype} {indices.shape}."
        )
    if indices.min() < 0:
        raise DataError(f"frame_indices must be >= 0, got {int(indices.min())}.")
    return indices.astype(np.int64)


def read_video_frames(
    path: str | Path,
    fps: float | None = None,
    max_frames: int | None = None,
    frame_indices: Sequence[int] | np.ndarray | None = None,
) -> VideoFrames:
    """Decode the first video stream of a file into RGB frames.

    Args:
        path: any container FFmpeg reads (MP4, AVI, MKV, FLV, WebM, ...).
        fps: resample to this rate: target times start at the first frame's time and step by ``1 / fps``
            up to the end of the last frame (its time + one native frame period); each takes the decoded
            frame nearest in time (the earlier one on a tie), so frames repeat when ``fps`` exceeds the
            native rate. None keeps every frame.
        max_frames: return at most this many frames (decoding stops there).
        frame_indices: return exactly these decode-order frame indices, in the given order (repeats allowed);
            not combinable with ``fps``.

    Returns:
        The frames, their times, the native frame rate and their decode-order indices.

    Raises:
        DataError: the file is missing, empty or undecodable, has no video stream or no frames, an index is
            past the last frame, or the arguments are invalid; the message names the file.
        MissingDependencyError: PyAV is not installed.
    """
    path = Path(path)
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise DataError(f"fps must be a positive number of frames per second, got {fps}.")
    if max_frames is not None and max_frames < 1:
        raise DataError(f"max_frames must be >= 1, got {max_frames}.")
    if frame_indices is not None and fps is not None:
        raise DataError("Pass either fps (resampling) or frame_indices (a selection), not both.")
    wanted = _check_indices(frame_indices) if frame_indices is not None else None
    if wanted is not None and max_frames is not None:
        wanted = wanted[:max_frames]

    av = require("av", "decoding video files")
    container = _open(path)
    with container:
        if not container.streams.video:
            kinds = ", ".join(str(s.type) for s in container.streams) or "none"
            raise DataError(f"The media file {str(path)!r} has no video stream (its streams: {kinds}).")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        native_fps = float(rate) if rate else 0.0
        try:
            selected = _decode(container, stream, native_fps, fps, max_frames, wanted)
        except (av.FFmpegError, OSError) as error:
            raise DataError(f"Cannot decode the video of {str(path)!r}: {error}. Is the file damaged?") from error
        except _NoFrames as error:
            raise DataError(f"The video stream of {str(path)!r} holds no decodable frames.") from error
        except _IndexPastEnd as error:
            raise DataError(
                f"frame_indices asks for frame {error.args[0]} of {str(path)!r}, which has only {error.args[1]} frames."
            ) from error
    frames = np.stack([item[2] for item in selected])
    times = np.array([item[1] for item in selected], dtype=np.float64)
    indices = np.array([item[0] for item in selected], dtype=np.int64)
    if native_fps <= 0.0:
        native_fps = _estimate_fps(times)
    return VideoFrames(frames, times, native_fps, indices)


#: Time differences within this many seconds count as ties (broken towards the earlier frame), so that float
#: rounding of frame and target times cannot flip the choice.
_TIE_SECONDS = 1e-6


class _NoFrames(Exception):
    pass


class _IndexPastEnd(Exception):
    pass


def _estimate_fps(times: np.ndarray) -> float:
    steps = np.diff(np.unique(times))
    return float(1.0 / np.median(steps)) if steps.size else 0.0


class _Frame:
    """A decoded frame converted to RGB at most once."""

    def __init__(self, index: int, time: float, frame: Any) -> None:
        self.index, self.time, self._frame = index, time, frame
        self._rgb: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = self._frame.to_ndarray(format="rgb24")
            self._frame = None
        return self._rgb

    def item(self) -> tuple[int, float, np.ndarray]:
        return self.index, self.time, self.rgb()


def _frames(container: Any, stream: Any, native_fps: float) -> Any:
    """Yield decoded frames with their times (pts-based, or index / fps where the pts is missing)."""
    for index, frame in enumerate(container.decode(stream)):
        time = frame.time
        if time is None:
            time = index / native_fps if native_fps > 0 else float(index)
        yield _Frame(index, float(time), frame)


def _decode(
    container: Any,
    stream: Any,
    native_fps: float,
    fps: float | None,
    max_frames: int | None,
    wanted: np.ndarray | None,
) -> list[tuple[int, float, np.ndarray]]:
    limit = max_frames if max_frames is not None else np.inf
    selected: list[tuple[int, float, np.ndarray]] = []
    if wanted is not None:
        last = int(wanted.max())
        kept: dict[int, _Frame] = {}
        needed = set(wanted.tolist())
        count = 0
        for item in _frames(container, stream, native_fps):
            count += 1
            if item.index in needed:
                item.rgb()
                kept[item.index] = item
            if item.index >= last:
                break
        if count == 0:
            raise _NoFrames
        if last not in kept:
            raise _IndexPastEnd(last, count)
        return [kept[int(i)].item() for i in wanted]

    if fps is None:
        for item in _frames(container, stream, native_fps):
            selected.append(item.item())
            if len(selected) >= limit:
                break
        if not selected:
            raise _NoFrames
        return selected

    step = 1.0 / fps
    previous: _Frame | None = None
    start: float | None = None
    k = 0
    for item in _frames(container, stream, native_fps):
        if previous is None:
            previous, start = item, item.time
            continue
        assert start is not None
        target = start + k * step
        while target <= item.time and len(selected) < limit:
            nearer = previous if target - previous.time <= item.time - target + _TIE_SECONDS else item
            selected.append(nearer.item())
            k += 1
            target = start + k * step
        if len(selected) >= limit:
            return selected
        previous = item
    if previous is None:
        raise _NoFrames
    assert start is not None
    period = 1.0 / native_fps if native_fps > 0 else step
    end = previous.time + period
    while start + k * step < end - 1e-9 and len(selected) < limit:
        selected.append(previous.item())
        k += 1
    return selected


def _count(frames: VideoFrames | np.ndarray | int) -> int:
    if isinstance(frames, VideoFrames):
        count = len(frames)
    elif isinstance(frames, np.ndarray):
        count = int(frames.shape[0]) if frames.ndim else 0
    else:
        count = int(frames)
    if count < 1:
        raise DataError("The video has no frames to sample from.")
    return count


def sample_clip(frames: VideoFrames | np.ndarray | int, num_frames: int) -> np.ndarray:
    """Evenly spaced frame indices: the centre frame of each of ``num_frames`` equal segments.

    Args:
        frames: the video (or its frame array, or its frame count T).
        num_frames: clip length N (>= 1).

    Returns:
        int64 (N,) non-decreasing indices in [0, T); frames repeat when T < N.

    Raises:
        DataError: no frames, or N < 1.
    """
    count = _count(frames)
    if num_frames < 1:
        raise DataError(f"num_frames must be >= 1, got {num_frames}.")
    positions = (np.arange(num_frames, dtype=np.float64) + 0.5) * count / num_frames
    return np.minimum(np.floor(positions).astype(np.int64), count - 1)


def middle_frame(frames: VideoFrames | np.ndarray | int) -> int:
    """Index of the middle frame, ``T // 2`` (the same as ``sample_clip(frames, 1)[0]``).

    Args:
        frames: the video (or its frame array, or its frame count T).

    Returns:
        The index.

    Raises:
        DataError: no frames.
    """
    return _count(frames) // 2
