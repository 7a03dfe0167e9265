"""Draw samples of a prepared cache, one row each: every modality it holds, with the sample's labels.

``mfer show-batch`` answers "did preparation give me what I think?" for any data set: the face crop as the model
reads it (SynthAffect's also with its occlusion mask and clean face), the depth map (or the point cloud seen from
the front), the voice's log-mel spectrogram and the physiological channels under their names, a modality the
sample lacks marked absent, and the labels in the data set's own names (unlabelled tasks left out).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multimodal_fer.errors import DataError
from multimodal_fer.visualization.sample_media import cache_media_settings, depth_image, draw_physio

#: (column title, cache field, relative width) in drawing order; a column is drawn when its field is cached.
_COLUMNS = (
    ("face (input)", "face", 1.0),
    ("occlusion mask", "occlusion_mask", 1.0),
    ("clean face", "face_clean", 1.0),
    ("depth", "depth", 1.0),
    ("point cloud (front)", "points", 1.0),
    ("log-mel (audio)", "audio", 2.2),
    ("physiology", "physio", 2.6),
)
#: The modality each field belongs to (its presence flag decides whether a sample has it).
_MODALITY_OF = {
    "face": "face",
    "occlusion_mask": "face",
    "face_clean": "face",
    "depth": "depth",
    "points": "depth",
    "audio": "audio",
    "physio": "physio",
}


def figure_columns(fields: Collection[str], modalities: Collection[str]) -> list[tuple[str, str, float]]:
    """The figure's columns for a cache holding ``fields``, of the ``modalities`` its data module loads.

    Returns:
        ``(title, cache field, relative width)`` in drawing order; the point cloud only where no depth map is cached.
    """
    columns = [c for c in _COLUMNS if c[1] in fields and _MODALITY_OF[c[1]] in modalities]
    if "depth" in fields:
        columns = [c for c in columns if c[1] != "points"]
    return columns


def _log_mel(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(64, frames) log-mel spectrogram of an int16 waveform."""
    import torchaudio

    transform = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=512, hop_length=160, n_mels=64)
    mel = transform(torch.from_numpy(audio.astype(np.float32) / 32768.0))
    return torch.log(mel + 1e-6).numpy()


def _chosen(reader: Any, indices: np.ndarray, rows: int) -> np.ndarray:
    """Cache indices to draw: occluded faces first, then the others (where the cache has occlusions), in order."""
    if "occlusion_type" not in reader.specs:
        return indices[:rows]
    kinds = np.asarray(reader.array("occlusion_type")[indices])
    occluded, clean = indices[kinds >= 0], indices[kinds < 0]
    first = occluded[: max((rows + 1) // 2, rows - clean.size)]
    return np.sort(np.concatenate([first, clean[: rows - first.size]]))


def _labels(reader: Any, space: Any, index: int) -> tuple[str, str]:
    """The sample's expression and affect dimensions (row title) and its active AUs (caption)."""
    lines = []
    if space.num_expressions and "expr" in reader.specs:
        code = int(reader.array("expr")[index])
        lines.append(space.expressions[code] if 0 <= code < space.num_expressions else "no expression label")
    if space.num_dimensions and "va" in reader.specs:
        values = np.asarray(reader.array("va")[index], dtype=np.float32)
        shown = [
            f"{name[0]}={value:+.2f}" for name, value in zip(space.dimensions, values, strict=True) if value == value
        ]
        if shown:
            lines.append(" ".join(shown))
    active = ""
    if space.num_action_units and "au" in reader.specs:
        values = np.asarray(reader.array("au")[index], dtype=np.float32)
        if np.isnan(values).all():
            active = "AUs unlabelled"
        else:
            on = [str(au) for au, value in zip(space.action_units, values, strict=True) if value > 0.5]
            active = "AU " + "+".join(on) if on else "no AU"
    return "\n".join(lines), active


def draw_batch(datamodule: Any, output: str | Path, split: str = "train", rows: int = 6) -> Path:
    """Save a figure of ``rows`` samples of a prepared split, one row per sample, one column per cached modality.

    Args:
        datamodule: a :class:`~multimodal_fer.datamodules.FERDataModule` whose cache is prepared (any data set).
        output: PNG path.
        split: ``train``, ``val`` or ``test``.
        rows: samples to draw (SynthAffect: occluded ones first, then the rest; others: in cache order).

    Returns:
        The PNG path.

    Raises:
        DataError: the split has no samples, or the cache holds none of the modalities the figure draws.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES

    datamodule.setup()
    reader = datamodule.reader
    indices = datamodule.splits.get(split, np.zeros(0, dtype=np.int64))
    if indices.size == 0:
        raise DataError(f"The {split} split of {datamodule.root} has no samples; draw another with --split.")
    chosen = _chosen(reader, indices, rows)
    columns = figure_columns(reader.specs, datamodule.modalities)
    if not columns:
        raise DataError(f"The cache {datamodule.root} holds no face, depth, audio or physiological field to draw.")
    audio_rate, physio_rate, channels = cache_media_settings(reader)
    audio_rate = audio_rate or datamodule.audio_sample_rate
    cached_modalities = list(reader.manifest.get("modalities") or [])
    space = datamodule.label_space

    figure, axes = plt.subplots(
        len(chosen),
        len(columns),
        figsize=(max(4.0, 1.95 * sum(width for *_, width in columns)), 2.3 * len(chosen)),
        gridspec_kw={"width_ratios": [width for *_, width in columns]},
        squeeze=False,
    )
    for row, index in enumerate(chosen):
        index = int(index)
        present = np.asarray(reader.array("present")[index]) if "present" in reader.specs else None
        title, active = _labels(reader, space, index)
        for column, (_, field, _) in enumerate(columns):
            ax = axes[row, column]
            modality = _MODALITY_OF[field]
            if present is not None and modality in cached_modalities and not present[cached_modalities.index(modality)]:
                ax.text(0.5, 0.5, f"no {modality}", ha="center", va="center", fontsize=8, transform=ax.transAxes)
            else:
                value = np.asarray(reader.array(field)[index])
                if field in ("face", "face_clean"):
                    ax.imshow(value.transpose(1, 2, 0))
                elif field == "occlusion_mask":
                    ax.imshow(value[0], cmap="gray", vmin=0, vmax=1)
                    kind = int(reader.array("occlusion_type")[index]) if "occlusion_type" in reader.specs else -1
                    ax.set_xlabel(OCCLUSION_TYPES[kind] if kind >= 0 else "none", fontsize=7)
                elif field == "depth":
                    ax.imshow(depth_image(value), cmap="gray")
                elif field == "points":
                    points = value[:, :3].astype(np.float32)
                    points = points[np.abs(points).sum(axis=1) > 0]
                    ax.scatter(points[:, 0], points[:, 1], c=-points[:, 2], s=0.5, cmap="viridis")
                    ax.set_aspect("equal")
                elif field == "audio":
                    if "audio_lengths" in reader.specs:  # the recording's own length: the padding is not its sound
                        value = value[: max(int(reader.array("audio_lengths")[index]), 512)]
                    ax.imshow(_log_mel(value, audio_rate), origin="lower", aspect="auto", cmap="magma")
                else:
                    draw_physio(ax, value, physio_rate, channels)
            if field != "physio":
                ax.set_xticks([])
                ax.set_yticks([])
        axes[row, 0].set_ylabel(title, fontsize=8)
        if active:
            caption_column = next((k for k, c in enumerate(columns) if c[1] == "face_clean"), 0)
            axes[row, caption_column].set_xlabel(active, fontsize=7)
    for column, (title, _, _) in enumerate(columns):
        axes[0, column].set_title(title, fontsize=9)
    figure.suptitle(
        f"{datamodule.adapter.name}, {split} split (cache {datamodule.cache_fingerprint[:12]})", fontsize=10
    )
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    plt.close(figure)
    return output
