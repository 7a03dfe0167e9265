"""Audio files → fixed-length mono int16 clips at one sampling rate.

:func:`read_audio` decodes WAV, FLAC and OGG with soundfile (libsndfile) and every other container (MP4,
M4A, MP3, FLV, WebM, MKV, AVI, ...) with PyAV (FFmpeg), from its first audio stream. :func:`to_mono_clip`
mixes to mono, resamples with torchaudio's band-limited sinc resampler (deterministic), cuts a clip from
the start or the centre and stores it as int16. :class:`AudioClipSettings` bundles the clip settings and
gives the JSON-ready record cache fingerprints are built from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from multimodal_fer.errors import DataError
from multimodal_fer.media.audio import read_audio  # noqa: F401 - re-exported for callers of this module

#: Bump when the clips change for the same settings (part of cache fingerprints).
AUDIO_VERSION = 1

#: Clip positions :func:`to_mono_clip` accepts.
CLIP_POSITIONS: tuple[str, ...] = ("start", "centre")

#: int16 full scale: samples in [-1, 1] map to [-32767, 32767] (symmetric; -32768 is never written).
INT16_SCALE = 32767.0

#: torchaudio.functional.resample settings (its defaults, written out so that fingerprints record them).
RESAMPLING: dict[str, Any] = {"method": "sinc_interp_hann", "lowpass_filter_width": 6, "rolloff": 0.99}


# --------------------------------------------------------------------------------------------------------
# Reading


def _resampled_length(length: int, rate: int, target_rate: int) -> int:
    """Samples torchaudio's resampler returns for ``length`` input samples (``ceil(length × target / rate)``)."""
    gcd = math.gcd(rate, target_rate)
    return -(-length * (target_rate // gcd) // (rate // gcd))


def _resample(mono: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    if rate == target_rate:
        return mono
    import torch
    import torchaudio.functional as audio_functional

    with torch.inference_mode():
        out = audio_functional.resample(
            torch.from_numpy(np.ascontiguousarray(mono)),
            orig_freq=rate,
            new_freq=target_rate,
            lowpass_filter_width=RESAMPLING["lowpass_filter_width"],
            rolloff=RESAMPLING["rolloff"],
            resampling_method=RESAMPLING["method"],
        )
    return out.numpy()


def to_mono_clip(
    waveform: np.ndarray, rate: int, target_rate: int, seconds: float, position: str = "start"
) -> tuple[np.ndarray, int]:
    """Mix to mono, resample, cut a fixed-length clip and store it as int16.

    Only the part of the signal the clip needs (plus the resampling filter's reach) is resampled, so long
    recordings cost little; the result equals resampling the whole signal first.

    Args:
        waveform: float (C, S) samples in [-1, 1] (a (S,) array is one channel).
        rate: its sampling rate in Hz.
        target_rate: the clip's sampling rate in Hz.
        seconds: clip length; the clip has ``L = round(seconds × target_rate)`` samples.
        position: "start" keeps the first L samples, "centre" the middle L (after resampling).

    Returns:
        ``(clip, valid_length)``: int16 (L,) samples (clipped at ±1, scaled by :data:`INT16_SCALE`), zero-padded
        at the end when the signal is shorter than L, and the number of real samples (1 ≤ valid_length ≤ L).

    Raises:
        DataError: wrong shape, no samples, non-finite samples, or invalid rates, length or position.
    """
    array = np.asarray(waveform)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"The waveform must be a float array of shape (C, S) or (S,), got {array.dtype} {array.shape}.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"The waveform has no samples: shape {array.shape}.")
    for label, value in (("rate", rate), ("target_rate", target_rate)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
            raise DataError(f"{label} must be a positive integer number of Hz, got {value!r}.")
    rate, target_rate = int(rate), int(target_rate)
    if not math.isfinite(seconds) or seconds <= 0:
        raise DataError(f"The clip length must be a positive number of seconds, got {seconds}.")
    length = round(seconds * target_rate)
    if length < 1:
        raise DataError(f"A {seconds} s clip at {target_rate} Hz has no samples; make seconds longer.")
    if position not in CLIP_POSITIONS:
        raise DataError(f"Unknown clip position {position!r}; choose one of {list(CLIP_POSITIONS)}.")
    bad = np.count_nonzero(~np.isfinite(array))
    if bad:
        raise DataError(f"The waveform holds {bad} non-finite samples (NaN or inf); the recording is damaged.")

    mono = array.astype(np.float64).mean(axis=0).astype(np.float32)
    total = _resampled_length(mono.shape[0], rate, target_rate)
    start = 0 if position == "start" else max((total - length) // 2, 0)
    valid = min(length, total - start)

    # Cut the source window on a resampling-period boundary (so output phases line up) with a margin wider
    # than the filter, resample it, and keep the wanted samples.
    gcd = math.gcd(rate, target_rate)
    period_in, period_out = rate // gcd, target_rate // gcd
    reach = math.ceil(RESAMPLING["lowpass_filter_width"] * rate / min(rate, target_rate)) + 2  # input samples
    margin_periods = -(-reach // period_in)
    first_period = max(start // period_out - margin_periods, 0)
    last_period = -(-(start + valid) // period_out) + margin_periods
    source = mono[first_period * period_in : last_period * period_in]
    resampled = _resample(source, rate, target_rate)
    offset = start - first_period * period_out
    samples = resampled[offset : offset + valid]

    clip = np.zeros(length, dtype=np.int16)
    clip[:valid] = np.round(np.clip(samples, -1.0, 1.0) * INT16_SCALE).astype(np.int16)
    return clip, int(valid)


@dataclass(frozen=True)
class AudioClipSettings:
    """How audio clips are made; :meth:`as_dict` is what cache fingerprints record.

    Attributes:
        target_rate: clip sampling rate in Hz.
        seconds: clip length in seconds.
        position: "start" or "centre".
    """

    target_rate: int = 16000
    seconds: float = 3.0
    position: str = "start"

    def __post_init__(self) -> None:
        if self.target_rate <= 0:
            raise DataError(f"target_rate must be a positive number of Hz, got {self.target_rate}.")
        if not math.isfinite(self.seconds) or self.seconds <= 0:
            raise DataError(f"seconds must be positive, got {self.seconds}.")
        if self.position not in CLIP_POSITIONS:
            raise DataError(f"Unknown clip position {self.position!r}; choose one of {list(CLIP_POSITIONS)}.")

    @property
    def length(self) -> int:
        """Samples per clip, ``round(seconds × target_rate)``."""
        return round(self.seconds * self.target_rate)

    def clip(self, waveform: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        """:func:`to_mono_clip` with these settings: int16 (L,) clip and its valid length."""
        return to_mono_clip(waveform, rate, self.target_rate, self.seconds, self.position)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record of everything that changes the clips."""
        return {
            "audio_version": AUDIO_VERSION,
            "target_rate": self.target_rate,
            "seconds": self.seconds,
            "length": self.length,
            "position": self.position,
            "mono": "mean of channels",
            "resampling": dict(RESAMPLING),
            "int16_scale": INT16_SCALE,
        }
