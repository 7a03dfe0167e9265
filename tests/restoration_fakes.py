"""Tiny restoration tasks, in-memory restoration batches and restoration run folders for fast tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_LABEL_SPACE
from multimodal_fer.models.restoration import (
    RESTORER_CHECKPOINT_KEY,
    FaceRestorer,
    GatedUNetGenerator,
    OcclusionMaskNet,
    PatchDiscriminator,
)
from multimodal_fer.tasks import OcclusionRestorationTask


def restoration_samples(count: int, size: int = 16, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Samples with the fields the restoration task reads: standardised occluded and clean faces, a block mask."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for index in range(count):
        clean = torch.randn(3, size, size, generator=generator)
        mask = torch.zeros(1, size, size)
        top, left = index % (size // 2), (2 * index) % (size // 2)
        mask[:, top : top + size // 3, left : left + size // 3] = 1.0
        samples.append(
            {
                "face": torch.where(mask > 0, torch.full_like(clean, 2.0), clean),
                "face_clean": clean,
                "occlusion_mask": mask,
                "face_mean": torch.full((1, 1, 1), 0.5),
                "face_std": torch.full((1, 1, 1), 0.2),
                "expr": torch.tensor(index % SYNTHAFFECT_LABEL_SPACE.num_expressions),
                "au": (torch.rand(SYNTHAFFECT_LABEL_SPACE.num_action_units, generator=generator) > 0.5).float(),
            }
        )
    return samples


def restoration_loader(count: int = 8, size: int = 16, seed: int = 0, batch_size: int = 4) -> DataLoader:
    """A fixed-order loader over :func:`restoration_samples`."""
    return DataLoader(restoration_samples(count, size, seed), batch_size=batch_size, shuffle=False)


def tiny_task(seed: int = 0, **options: Any) -> OcclusionRestorationTask:
    """A restoration task with tiny networks (16-pixel faces), its weights drawn from ``seed``; ``options`` may
    replace a network too."""
    torch.manual_seed(seed)
    parts: dict[str, Any] = {
        "mask_net": OcclusionMaskNet(widths=(4, 8)),
        "generator": GatedUNetGenerator(widths=(4, 8, 8), dilations=(2,), extra_convs=0, stem_kernel=3),
        "discriminator": PatchDiscriminator(widths=(8, 16)),
        "critic_widths": (4, 8),
    }
    return OcclusionRestorationTask(SYNTHAFFECT_LABEL_SPACE, **{**parts, **options})


def tiny_trainer(root: Path, max_epochs: int, **options: Any) -> pl.Trainer:
    """A quiet CPU trainer: two training batches an epoch, no logger, no checkpoints unless asked."""
    settings: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": max_epochs,
        "limit_train_batches": 2,
        "limit_val_batches": 2,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": str(root),
    }
    settings.update(options)
    return pl.Trainer(**settings)


def restorer_run(folder: Path, image_size: int = 32, discriminator: torch.nn.Module | None = None) -> Path:
    """A restoration run folder with a tiny untrained restorer (threshold 0.45, dilation 1) as its best checkpoint.

    With ``discriminator`` the checkpoint also holds its weights under ``state_dict`` as a restoration fit's does.
    """
    torch.manual_seed(0)
    restorer = FaceRestorer(
        OcclusionMaskNet(widths=(4, 8)),
        GatedUNetGenerator(widths=(4, 8, 8), dilations=(2,), extra_convs=0, stem_kernel=3),
        mask_threshold=0.45,
    )
    restorer.image_size.fill_(image_size)
    (folder / "checkpoints").mkdir(parents=True)
    content: dict[str, Any] = {RESTORER_CHECKPOINT_KEY: restorer.export()}
    if discriminator is not None:
        content["state_dict"] = {f"discriminator.{k}": v for k, v in discriminator.state_dict().items()}
    torch.save(content, folder / "checkpoints/restorer.ckpt")
    (folder / "run.json").write_text(json.dumps({"best_checkpoint": "checkpoints/restorer.ckpt"}))
    return folder
