"""Image grids of restoration (occluded | mask | restored | clean) at every validation epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from multimodal_fer.datamodules.base import FERData
from multimodal_fer.standardization import unit_range_face


def restoration_grid(occluded: Tensor, mask: Tensor, restored: Tensor, clean: Tensor) -> Tensor:
    """Lay out one row per face: occluded input, mask used, restored face, clean face.

    Args:
        occluded: (N, 3, H, W) in [0, 1].
        mask: (N, 1, H, W) in [0, 1].
        restored: (N, 3, H, W) in [0, 1].
        clean: (N, 3, H, W) in [0, 1].

    Returns:
        float (3, N * (H + 2) + 2, 4 * (W + 2) + 2) image in [0, 1].
    """
    from torchvision.utils import make_grid

    columns = torch.stack([occluded, mask.expand_as(occluded), restored, clean], dim=1)  # (N, 4, 3, H, W)
    return make_grid(columns.flatten(0, 1).float().cpu(), nrow=4, padding=2, pad_value=1.0)


class RestorationGridLogger(pl.Callback):
    """Save (and send to W&B) a grid of the first validation batch's faces after every validation epoch.

    Grids go to ``<default_root_dir>/restoration_grids[/<logger version>]/epoch_XXX.png`` and, with a W&B
    logger, to the key ``val/restoration_grid``. Nothing is logged when the data module says its faces may not be shown
    (``face_media_allowed`` False: real people without a licence that allows it).

    Args:
        num_faces: rows of the grid (faces from the start of the first validation batch).
    """

    def __init__(self, num_faces: int = 8) -> None:
        super().__init__()
        self.num_faces = num_faces
        self._pending: dict[str, Tensor] | None = None
        self.last_path: Path | None = None

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the first batch's faces, mapped back to [0, 1]."""
        if batch_idx != 0 or not isinstance(outputs, dict) or "restored" not in outputs:
            return
        n = self.num_faces
        mean, std = batch["face_mean"][:n], batch["face_std"][:n]
        self._pending = {
            "occluded": unit_range_face(batch["face"][:n], (mean, std)),
            "mask": outputs["mask"][:n].float(),
            "restored": unit_range_face(outputs["restored"][:n], (mean, std)),
            "clean": unit_range_face(batch["face_clean"][:n], (mean, std)),
        }

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the grid (global rank 0 only) if the data allow showing faces."""
        pending, self._pending = self._pending, None
        datamodule = getattr(trainer, "datamodule", None)
        if pending is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if not (isinstance(datamodule, FERData) and datamodule.face_media_allowed):
            return
        from torchvision.utils import save_image

        grid = restoration_grid(pending["occluded"], pending["mask"], pending["restored"], pending["clean"])
        version = getattr(trainer.logger, "version", None) if trainer.logger is not None else None
        folder = Path(trainer.default_root_dir) / "restoration_grids"
        if version is not None:
            folder = folder / (version if isinstance(version, str) else f"version_{version}")
        folder.mkdir(parents=True, exist_ok=True)
        self.last_path = folder / f"epoch_{trainer.current_epoch:03d}.png"
        save_image(grid, self.last_path)
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    key="val/restoration_grid",
                    images=[grid],
                    step=trainer.global_step,
                    caption=["occluded | mask | restored | clean"],
                )
