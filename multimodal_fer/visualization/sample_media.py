"""W&B media of one cached sample: face image, voice, depth map or point cloud, physiological signals.

The media are read from the cache in their storage form (uint8 faces, int16 waveforms, float16 depth and signals),
not from the standardised batch, so that they look and sound as the data set's files do. Faces and depth (a depth
map or point cloud of a face is a likeness too) are shown only where the data set's card allows it
(``face_media_allowed``); :attr:`CachedSampleMedia.left_out` says why a modality has no column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from multimodal_fer.preprocessing.cache import CacheReader

#: Column title of each modality's media in a predictions table.
MEDIA_COLUMNS = {"face": "face", "audio": "voice", "depth": "depth", "physio": "physio"}
#: Modalities that show a person's face and follow the data card's ``face_media_allowed``.
FACE_MODALITIES = ("face", "depth")


def _cache_setting(reader: CacheReader, name: str) -> Any:
    """A media setting of a cache, None where it has none.

    Looked up in the manifest itself, then a generated cache's settings, then a prepared cache's processor settings
    (``settings.processor``).
    """
    settings = dict(reader.manifest.get("settings") or {})
    for source in (reader.manifest, settings, settings.get("processor") or {}):
        if source.get(name):
            return source[name]
    return None


def cache_media_settings(reader: CacheReader) -> tuple[int | None, int | None, tuple[str, ...]]:
    """How to play and draw a cache's waveforms: audio rate (Hz), physiological rate (Hz) and channel names.

    Args:
        reader: the open cache (generated or prepared).

    Returns:
        ``(audio_rate, physio_rate, physio_channels)``; a rate is None and the names empty where the cache has none.
    """
    audio, physio = _cache_setting(reader, "audio_sample_rate"), _cache_setting(reader, "physio_sample_rate")
    channels = tuple(_cache_setting(reader, "physio_channels") or ())
    return (int(audio) if audio else None), (int(physio) if physio else None), channels


def draw_physio(axes: Any, signals: np.ndarray, rate: float | None, channels: Sequence[str]) -> None:
    """Draw physiological channels one above the other on ``axes``, each standardised, named on the y axis.

    Args:
        axes: a matplotlib axes.
        signals: (C, T) samples of each channel.
        rate: samples per second (None: the x axis counts samples).
        channels: C channel names (``ecg``, ``eda``, ...), fewer or none allowed (then ``ch<k>``).
    """
    signals = np.asarray(signals, dtype=np.float32)
    count, length = signals.shape
    time = np.arange(length) / rate if rate else np.arange(length)
    offsets = -1.2 * np.arange(count)
    for channel, offset in zip(signals, offsets, strict=True):
        axes.plot(time, (channel - channel.mean()) / (channel.std() + 1e-6) * 0.3 + offset, linewidth=0.7)
    names = [channels[k].upper() if k < len(channels) else f"ch{k}" for k in range(count)]
    axes.set_yticks(offsets, names, fontsize=7)
    axes.set_xlabel("s" if rate else "samples", fontsize=7)
    axes.tick_params(axis="x", labelsize=6)


def physio_plot(signals: np.ndarray, rate: float | None, channels: Sequence[str]) -> np.ndarray:
    """:func:`draw_physio` as an image.

    Returns:
        uint8 (H, W, 3) RGB image of the plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.0, 0.7 + 0.6 * np.asarray(signals).shape[0]), dpi=80)
    canvas = FigureCanvasAgg(figure)  # drawn off screen, whatever matplotlib backend the process uses
    draw_physio(figure.subplots(), signals, rate, channels)
    figure.tight_layout(pad=0.3)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def depth_image(depth: np.ndarray) -> np.ndarray:
    """A depth map's first channel as a grey image, near = bright, empty pixels (0) black.

    Args:
        depth: (C, H, W) or (H, W) depth values, 0 where nothing was measured.

    Returns:
        uint8 (H, W) image.
    """
    values = np.asarray(depth, dtype=np.float32)
    values = values[0] if values.ndim == 3 else values
    valid = values > 0
    if not valid.any():
        return np.zeros(values.shape, dtype=np.uint8)
    near, far = float(values[valid].min()), float(values[valid].max())
    scaled = np.where(valid, (far - values) / max(far - near, 1e-6) * 0.8 + 0.2, 0.0)
    return (scaled * 255).round().astype(np.uint8)


class CachedSampleMedia:
    """W&B media objects (one column per modality) for samples of a cache, by cache index.

    Args:
        reader: the open cache.
        fields: modality → the cache field it is read from (``face`` or ``face_clip``, ``depth`` or ``points``,
            ``audio``, ``physio``); modalities the model does not see (withheld ones) should be left out.
        face_media_allowed: whether the data set's card allows showing its faces (and face depth).
        wandb: the imported ``wandb`` module.
    """

    def __init__(self, reader: CacheReader, fields: Mapping[str, str], face_media_allowed: bool, wandb: Any) -> None:
        self.reader = reader
        self.wandb = wandb
        self.audio_rate, self.physio_rate, self.physio_channels = cache_media_settings(reader)
        self.fields: dict[str, str] = {}
        #: modality → why it has no media column.
        self.left_out: dict[str, str] = {}
        for modality, name in fields.items():
            if modality in FACE_MODALITIES and not face_media_allowed:
                self.left_out[modality] = "the data set's card does not allow logging faces (face_media_allowed)"
            elif name not in reader.specs:
                self.left_out[modality] = f"the cache has no field {name!r}"
            elif modality == "audio" and len(reader.specs[name].shape) == 1 and not self.audio_rate:
                self.left_out[modality] = "the cache's manifest gives no audio_sample_rate"
            elif modality in MEDIA_COLUMNS:
                self.fields[modality] = name

    @property
    def columns(self) -> list[str]:
        """Titles of the media columns, in the order of :meth:`row`."""
        return [MEDIA_COLUMNS[modality] for modality in self.fields]

    def row(self, index: int) -> list[Any]:
        """The media of the sample at cache index ``index``, one per column."""
        return [self._media(modality, name, int(index)) for modality, name in self.fields.items()]

    def _media(self, modality: str, name: str, index: int) -> Any:
        value = np.asarray(self.reader.array(name)[index])
        wandb = self.wandb
        if modality == "face":
            frame = value[value.shape[0] // 2] if value.ndim == 4 else value  # a clip (T, 3, H, W): its middle frame
            return wandb.Image(np.ascontiguousarray(frame.transpose(1, 2, 0)))
        if modality == "audio":
            if value.ndim == 1:  # a waveform
                samples = value.astype(np.float32) / 32768.0 if value.dtype == np.int16 else value.astype(np.float32)
                return wandb.Audio(samples, sample_rate=int(self.audio_rate))
            return wandb.Image(_spectrogram_image(value), caption="log-mel")
        if modality == "depth":
            if name == "points":  # (N, 6): x, y, z and normals; padding rows are all zero
                points = value[:, :3].astype(np.float32)
                return wandb.Object3D(points[np.abs(points).sum(axis=1) > 0])
            return wandb.Image(depth_image(value))
        return wandb.Image(physio_plot(value, self.physio_rate, self.physio_channels))


def _spectrogram_image(values: np.ndarray) -> np.ndarray:
    """A stored (F, T) spectrogram as a uint8 image, low frequencies at the bottom."""
    spectrum = np.asarray(values, dtype=np.float32).reshape(-1, values.shape[-1])
    low, high = float(spectrum.min()), float(spectrum.max())
    return ((spectrum[::-1] - low) / max(high - low, 1e-6) * 255).round().astype(np.uint8)
