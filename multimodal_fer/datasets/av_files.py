"""Checking and reading the recordings of audio-visual data sets, with short failure categories.

Audio-visual adapters (RAVDESS, CREMA-D, ...) call these from ``load``: a damaged or missing file becomes a
:class:`~multimodal_fer.datasets.base.SampleError` whose reason is a short category (``"missing video file"``,
``"unreadable audio file"``, ``"no audio track"``, ...), so ``summary.json`` counts failures by kind. The file
itself is the sample's ``source`` or, for a sample made of two files, named by the category (audio or video).

Decoding is done by :mod:`multimodal_fer.media.audio` (soundfile for WAV/FLAC/OGG, PyAV for the rest)
and :mod:`multimodal_fer.media.video` (PyAV), imported where they are used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multimodal_fer._lazy import require
from multimodal_fer.datasets.base import RawMedia, RawSample, SampleError
from multimodal_fer.errors import DataError

#: Suffixes decoded by soundfile; every other audio source is a container read through PyAV.
_SOUNDFILE_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga"})


def _check_present(path: Path, kind: str) -> None:
    if not path.is_file():
        raise SampleError(f"missing {kind} file")
    if path.stat().st_size == 0:
        raise SampleError(f"empty {kind} file")


def stream_kinds(path: Path, kind: str = "video") -> tuple[bool, bool]:
    """Whether a container file has a video stream and an audio stream (headers only, nothing decoded).

    Args:
        path: the file.
        kind: ``"video"`` or ``"audio"``: the category named in failure reasons.

    Returns:
        ``(has_video, has_audio)``.

    Raises:
        SampleError: ``"missing <kind> file"``, ``"empty <kind> file"`` or ``"unreadable <kind> file"``.
    """
    _check_present(path, kind)
    av = require("av", "reading video files and their audio tracks")
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video), bool(container.streams.audio)
    except (av.FFmpegError, OSError, ValueError) as error:
        raise SampleError(f"unreadable {kind} file") from error


def check_video_file(path: Path) -> None:
    """Make sure a video file is there, has a video stream and its first frame decodes.

    The face preprocessing decodes the frames later; this catches the common damage (a cut-off or overwritten
    file, a container without a picture) with a short reason.

    Args:
        path: the video (MP4, FLV, AVI, ...).

    Raises:
        SampleError: ``"missing video file"``, ``"empty video file"``, ``"unreadable video file"`` or
            ``"no video track"``.
    """
    from multimodal_fer.media.video import read_video_frames

    has_video, _ = stream_kinds(path, "video")
    if not has_video:
        raise SampleError("no video track")
    try:
        read_video_frames(path, max_frames=1)
    except DataError as error:
        raise SampleError("unreadable video file") from error


def read_audio_file(path: Path) -> tuple[np.ndarray, int]:
    """Decode an audio file, or the audio track of a video file.

    Args:
        path: WAV/FLAC/OGG (soundfile) or any container FFmpeg reads (MP4, FLV, MP3, ...).

    Returns:
        ``(waveform, rate)``: float32 (C, S) samples in [-1, 1] and the sampling rate in Hz.

    Raises:
        SampleError: ``"missing audio file"``, ``"empty audio file"``, ``"unreadable audio file"`` (truncated,
            damaged or undecodable) or ``"no audio track"`` (a container without sound).
    """
    from multimodal_fer.media.audio import read_audio

    if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
        _check_present(path, "audio")
    else:
        _, has_audio = stream_kinds(path, "audio")
        if not has_audio:
            raise SampleError("no audio track")
    try:
        waveform, rate = read_audio(path)
    except DataError as error:
        raise SampleError("unreadable audio file") from error
    return waveform, rate


def load_audio_visual(raw_root: Path, sample: RawSample) -> RawMedia:
    """An audio-visual sample's media: its video (the face comes from its frames) and its decoded audio.

    The sample's locators name them, relative to ``raw_root``: ``video`` and ``audio`` (either may be absent).

    Raises:
        SampleError: a missing, empty, damaged or undecodable file, a video without pictures, or audio asked from
            a video without sound.
    """
    media = RawMedia()
    video = sample.locators.get("video")
    if video is not None:
        check_video_file(raw_root / video)
        media.video = str((raw_root / video).resolve())
    audio = sample.locators.get("audio")
    if audio is not None:
        media.audio, media.audio_rate = read_audio_file(raw_root / audio)
    return media
