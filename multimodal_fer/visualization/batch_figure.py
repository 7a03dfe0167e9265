"""Draw one batch of every modality: occluded face, occlusion mask, clean face, depth, log-mel, physiology."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from multimodal_fer.datasets.synthaffect.labels import EXPRESSIONS_8, SYNTHAFFECT_AUS


def _log_mel(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    import torchaudio

    transform = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=512, hop_length=160, n_mels=64)
    mel = transform(torch.from_numpy(audio.astype(np.float32) / 32768.0))
    return torch.log(mel + 1e-6).numpy()


def draw_batch(datamodule: Any, output: str | Path, split: str = "train", rows: int = 6) -> Path:
    """Save a figure of ``rows`` samples of a cached SynthAffect split, one row per sample.

    Args:
        datamodule: a prepared :class:`~multimodal_fer.datamodules.SynthAffectDataModule`.
        output: PNG path.
        split: ``train``, ``val`` or ``test``.
        rows: samples to draw (occluded ones first, then the rest, in cache order).

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES

    datamodule.setup()
    reader = datamodule.reader
    indices = datamodule.splits[split]
    occluded = indices[np.asarray(reader.array("occlusion_type")[indices]) >= 0]
    clean = indices[np.asarray(reader.array("occlusion_type")[indices]) < 0]
    chosen = np.sort(np.concatenate([occluded[: (rows + 1) // 2], clean[: rows // 2]]))[:rows]
    settings = datamodule.settings

    columns = ["face (input)", "occlusion mask", "clean face", "depth", "log-mel (audio)", "ECG / EDA / RSP"]
    figure, axes = plt.subplots(
        len(chosen), len(columns), figsize=(17, 2.3 * len(chosen)), gridspec_kw={"width_ratios": [1, 1, 1, 1, 2.2, 2.6]}
    )
    axes = np.atleast_2d(axes)
    for row, index in enumerate(chosen):
        face = np.asarray(reader.array("face")[index]).transpose(1, 2, 0)
        clean_face = np.asarray(reader.array("face_clean")[index]).transpose(1, 2, 0)
        mask = np.asarray(reader.array("occlusion_mask")[index, 0])
        depth = np.asarray(reader.array("depth")[index, 0], dtype=np.float32)
        audio = np.asarray(reader.array("audio")[index])
        physio = np.asarray(reader.array("physio")[index], dtype=np.float32)
        expression = EXPRESSIONS_8[int(reader.array("expr")[index])]
        active = [f"{au}" for au, on in zip(SYNTHAFFECT_AUS, reader.array("au")[index], strict=True) if on > 0.5]
        valence, arousal = reader.array("va")[index]
        kind = int(reader.array("occlusion_type")[index])

        axes[row, 0].imshow(face)
        axes[row, 0].set_ylabel(f"{expression}\nv={valence:+.2f} a={arousal:+.2f}", fontsize=8)
        axes[row, 1].imshow(mask, cmap="gray", vmin=0, vmax=1)
        axes[row, 1].set_xlabel(OCCLUSION_TYPES[kind] if kind >= 0 else "none", fontsize=7)
        axes[row, 2].imshow(clean_face)
        axes[row, 2].set_xlabel("AU " + "+".join(active) if active else "no AU", fontsize=7)
        shown = np.where(depth > 0, depth, np.nan)
        axes[row, 3].imshow(shown, cmap="viridis_r")
        axes[row, 4].imshow(_log_mel(audio, settings.audio_sample_rate), origin="lower", aspect="auto", cmap="magma")
        time = np.arange(physio.shape[1]) / settings.physio_sample_rate
        for channel, offset in zip(physio, (2.0, 0.0, -2.0), strict=True):
            scaled = (channel - channel.mean()) / (channel.std() + 1e-6) * 0.35 + offset
            axes[row, 5].plot(time, scaled, linewidth=0.6)
        axes[row, 5].set_yticks([2.0, 0.0, -2.0], ["ECG", "EDA", "RSP"], fontsize=7)
        axes[row, 5].set_xlabel("s", fontsize=7)
        for column in range(5):
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
    for column, title in enumerate(columns):
        axes[0, column].set_title(title, fontsize=9)
    figure.suptitle(f"SynthAffect, {split} split (cache {datamodule.cache_fingerprint[:12]})", fontsize=10)
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    plt.close(figure)
    return output
