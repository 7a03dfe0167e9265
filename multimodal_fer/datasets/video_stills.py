"""Single frames of long videos read in order: one decoder per process, moved forward from sample to sample.

A data set labelled per video frame (DISFA: ~4,845 labelled frames per video) lists one sample per frame. Decoding
each sample's frame from the video's start would cost O(frames²) per video; the cache builder hands a worker
consecutive samples, so keeping the last video open and decoding onwards costs about one pass per video and
worker. A request for an earlier frame (or another video) reopens the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multimodal_fer._lazy import require
from multimodal_fer.datasets.base import SampleError


@dataclass
class _OpenVideo:
    """The decoder a process keeps: its file, container, frame generator and the next frame's index."""

    path: str
    container: Any
    frames: Any
    next_index: int = 0

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - closing a broken container must not hide the original failure
            pass


_OPEN: dict[str, _OpenVideo] = {}


def _reopen(path: str) -> _OpenVideo:
    av = require("av", "reading video frames")
    close_video()
    try:
        container = av.open(path)
        if not container.streams.video:
            container.close()
            raise SampleError("video without a video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        state = _OpenVideo(path, container, container.decode(stream))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise SampleError("unreadable video", str(error)) from error
    _OPEN["video"] = state
    return state


def close_video() -> None:
    """Close the decoder this process keeps (if any)."""
    state = _OPEN.pop("video", None)
    if state is not None:
        state.close()


def video_still(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` of a video, counted from 0 in decode order (as :func:`video_frame_count` counts them).

    Args:
        path: the video file.
        index: the frame, 0-based.

    Returns:
        uint8 (H, W, 3) RGB.

    Raises:
        SampleError: ``"missing video file"``, ``"unreadable video"`` (cannot be opened or decoding fails before
            the frame) or ``"frame past the video's end"``.
    """
    av = require("av", "reading video frames")
    if index < 0:
        raise ValueError(f"frame index {index} must be 0 or more.")
    if not path.is_file():
        raise SampleError("missing video file")
    key = str(path)
    state = _OPEN.get("video")
    if state is None or state.path != key or index < state.next_index:
        state = _reopen(key)
    try:
        for frame in state.frames:
            current = state.next_index
            state.next_index += 1
            if current == index:
                return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
    except (av.FFmpegError, OSError, ValueError) as error:
        close_video()
        raise SampleError("unreadable video", f"decoding stopped before frame {index}: {error}") from error
    count = state.next_index
    close_video()
    raise SampleError("frame past the video's end", f"frame {index} of a video of {count} frames")


def video_frame_count(path: Path) -> int:
    """Frames of a video's first video stream: its container's count, else counted by decoding.

    Raises:
        SampleError: ``"unreadable video"`` (cannot be opened, no video stream, or decoding fails while counting).
    """
    av = require("av", "reading video files")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SampleError("unreadable video", "no video stream")
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for _ in container.decode(stream))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise SampleError("unreadable video", str(error)) from error
