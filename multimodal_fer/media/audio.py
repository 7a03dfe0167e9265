"""Reading audio files: WAV/FLAC/OGG with soundfile, every other container's first audio track with PyAV.

Reading only; resampling and cutting to the model's window is :mod:`multimodal_fer.preprocessing.audio`'s.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from multimodal_fer._lazy import require
from multimodal_fer.errors import DataError

#: File suffixes read with soundfile; everything else goes through PyAV.
SOUNDFILE_SUFFIXES: frozenset[str] = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga"})


# --------------------------------------------------------------------------------------------------------
# Reading


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"The audio file {str(path)!r} does not exist (or is not a file).")
    if path.stat().st_size == 0:
        raise DataError(f"The audio file {str(path)!r} is empty (0 bytes).")


def _check_wav_length(path: Path) -> None:
    """Refuse a RIFF/WAVE file whose data chunk is shorter than its header declares (a cut-off copy).

    Streaming writers that leave the size unknown (0 or 0xFFFFFFFF) are accepted.
    """
    with path.open("rb") as stream:
        header = stream.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return  # RF64, W64 or not WAV at all: soundfile decides
        size = path.stat().st_size
        while True:
            chunk = stream.read(8)
            if len(chunk) < 8:
                return
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                available = size - stream.tell()
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                    raise DataError(
                        f"The WAV file {str(path)!r} is truncated: its header declares {chunk_size} bytes of "
                        f"samples but only {available} follow. Copy or download it again."
                    )
                return
            stream.seek(chunk_size + (chunk_size & 1), 1)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    soundfile = require("soundfile", "reading WAV/FLAC/OGG audio")
    if path.suffix.lower() in (".wav", ".wave"):
        _check_wav_length(path)
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, TypeError, ValueError, OSError) as error:  # soundfile.LibsndfileError is a RuntimeError
        raise DataError(
            f"Cannot decode the audio file {str(path)!r}: {error}. Is it damaged or mislabelled?"
        ) from error
    return np.ascontiguousarray(data.T), int(rate)


def _read_pyav(path: Path) -> tuple[np.ndarray, int]:
    av = require("av", "decoding audio from video and compressed audio files")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise DataError(
            f"Cannot open the media file {str(path)!r}: {error}. Is it damaged or not a media file?"
        ) from error
    with container:
        if not container.streams.audio:
            kinds = (
                ", ".join(f"{s.type} ({getattr(s.codec_context, 'name', '?')})" for s in container.streams) or "none"
            )
            raise DataError(f"The media file {str(path)!r} has no audio stream (its streams: {kinds}).")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")  # planar float32, the stream's own layout and rate
        blocks: list[np.ndarray] = []
        rate = stream.rate or stream.codec_context.sample_rate
        try:
            for frame in container.decode(stream):
                rate = frame.sample_rate
                blocks.extend(out.to_ndarray() for out in resampler.resample(frame))
            blocks.extend(out.to_ndarray() for out in resampler.resample(None))
        except (av.FFmpegError, OSError, ValueError) as error:
            raise DataError(f"Cannot decode the audio of {str(path)!r}: {error}. Is the file damaged?") from error
    if not blocks:
        raise DataError(f"The audio stream of {str(path)!r} holds no decodable samples.")
    channels = {block.shape[0] for block in blocks}
    if len(channels) != 1:
        raise DataError(f"The channel count of the audio in {str(path)!r} changes mid-stream ({sorted(channels)}).")
    return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32), int(rate)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode an audio file, or the first audio stream of a video file.

    Args:
        path: WAV, FLAC or OGG (soundfile), or any container FFmpeg reads (PyAV): MP4, M4A, MP3, FLV, WebM, ...

    Returns:
        ``(waveform, rate)``: float32 (C, S) samples, nominally in [-1, 1], and the sampling rate in Hz.

    Raises:
        DataError: the file is missing, empty, truncated or undecodable, has no audio stream or no samples;
            the message names the file.
        MissingDependencyError: soundfile or PyAV is not installed.
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        waveform, rate = _read_soundfile(path)
    else:
        waveform, rate = _read_pyav(path)
    if waveform.shape[1] == 0:
        raise DataError(f"The audio file {str(path)!r} holds no samples.")
    if rate <= 0:
        raise DataError(f"The audio file {str(path)!r} declares an invalid sampling rate {rate}.")
    return waveform, rate


def audio_rate(path: str | Path) -> int:
    """The sampling rate a WAV/FLAC/OGG file's header declares, without decoding its samples.

    Raises:
        DataError: a missing, empty or unreadable file, or one soundfile does not read (other containers: decode
            them with :func:`read_audio`).
        MissingDependencyError: soundfile is not installed.
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() not in SOUNDFILE_SUFFIXES:
        raise DataError(f"{str(path)!r}: only WAV, FLAC and OGG headers are read without decoding.")
    soundfile = require("soundfile", "reading WAV/FLAC/OGG audio")
    try:
        return int(soundfile.info(str(path)).samplerate)
    except (RuntimeError, TypeError, ValueError, OSError) as error:
        raise DataError(f"Cannot read the header of the audio file {str(path)!r}: {error}.") from error


# --------------------------------------------------------------------------------------------------------
# Clips
