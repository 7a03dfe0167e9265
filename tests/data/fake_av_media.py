"""Tiny real media for the fake audio-visual data sets: videos of a real face (PyAV) and WAV files (soundfile).

The frames show ``skimage.data.astronaut()`` (a real photograph that ships with scikit-image) so the face
detector of the preprocessing finds a face, shifted by a pixel per frame; the audio is a pure tone, so a test can
tell which file a cached clip came from by its frequency.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def face_frames(count: int, width: int, height: int, face: int | None = None) -> list[np.ndarray]:
    """``count`` RGB frames (H, W, 3) uint8: the astronaut's face (``face`` pixels square) on a grey background."""
    from PIL import Image
    from skimage import data

    side = face or min(width, height)
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((side, side), Image.BILINEAR))
    frames = []
    for index in range(count):
        frame = np.full((height, width, 3), 60, dtype=np.uint8)
        x = (width - side) // 2 + (index % 3) - 1
        y = (height - side) // 2
        x0, y0 = max(x, 0), max(y, 0)
        crop = photo[y0 - y : y0 - y + height - y0, x0 - x : x0 - x + width - x0]
        frame[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        frames.append(frame)
    return frames


def tone(frequency: float, seconds: float, rate: int, amplitude: float = 0.3) -> np.ndarray:
    """float32 (S,) sine wave."""
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def write_wav(path: Path, waveform: np.ndarray, rate: int) -> None:
    """16-bit PCM WAV (mono for a (S,) waveform)."""
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), waveform, rate, subtype="PCM_16", format="WAV")


def audio_frame(av, samples: np.ndarray, sample_format: str, rate: int, pts: int):  # noqa: ANN001, ANN201
    """One PyAV mono audio frame of ``samples`` in the encoder's sample format."""
    converted = {
        "flt": samples,
        "fltp": samples,
        "s16": np.round(samples * 32767).astype(np.int16),
        "s16p": np.round(samples * 32767).astype(np.int16),
        "s32": np.round(samples * 2147483000.0).astype(np.int32),
        "s32p": np.round(samples * 2147483000.0).astype(np.int32),
    }[sample_format]
    frame = av.AudioFrame.from_ndarray(converted[None, :], format=sample_format, layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    return frame


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: int,
    container_format: str,
    video_codec: str,
    audio: np.ndarray | None = None,
    audio_rate: int = 48000,
    audio_codec: str = "aac",
) -> None:
    """A video file with one video stream and, if ``audio`` is given, one mono audio stream.

    Args:
        path: where to write.
        frames: RGB uint8 frames of one size (even width and height).
        fps: frame rate.
        container_format: ``"mp4"``, ``"flv"``, ...
        video_codec: ``"h264"``, ``"mpeg4"``, ``"flv"`` (Sorenson H.263, the FLV codec), ...
        audio: float32 (S,) mono samples in [-1, 1], or None for a silent (video-only) file.
        audio_rate: its sampling rate.
        audio_codec: ``"aac"``, ``"mp3"``, ...
    """
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format=container_format) as container:
        video = container.add_stream(video_codec, rate=Fraction(fps))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = None
        if audio is not None:
            sound = container.add_stream(audio_codec, rate=audio_rate)
            sound.layout = "mono"
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode())
        if sound is not None and audio is not None:
            size = sound.codec_context.frame_size or 1024
            sample_format = sound.codec_context.format.name
            for start in range(0, audio.shape[0], size):
                block = audio[start : start + size]
                if block.shape[0] < size:
                    block = np.pad(block, (0, size - block.shape[0]))
                container.mux(sound.encode(audio_frame(av, block, sample_format, audio_rate, start)))
            container.mux(sound.encode())


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to ``keep`` of its bytes (a transfer that stopped half-way)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
