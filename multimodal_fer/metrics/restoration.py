"""Epoch metrics of occluded-face restoration (torchmetrics, exact under DDP).

Images are compared in [0, 1]. Whole-face PSNR and SSIM are taken over occluded faces only (an unoccluded face
passes through unchanged, so its PSNR is infinite); the occluded-region PSNR is the PSNR of the pixels under
the true occluder. Each is reported for the restored face and for the occluded input, so the gain is visible.
Names: ``{stage}/restoration/{psnr_face, psnr_face_input, psnr_occluded, psnr_occluded_input,
psnr_occluded_gain, ssim_face, ssim_face_input}`` and ``{stage}/mask/iou``.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import BinaryJaccardIndex
from torchmetrics.image import StructuralSimilarityIndexMeasure


class MaskedPSNR(Metric):
    """Mean over images of the PSNR computed on each image's masked pixels only.

    Images whose mask is empty are skipped.
    """

    full_state_update = False

    def __init__(self, data_range: float = 1.0) -> None:
        super().__init__()
        self.data_range = float(data_range)
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, prediction: Tensor, target: Tensor, mask: Tensor) -> None:
        """Add images.

        Args:
            prediction: (B, C, H, W) in [0, data_range].
            target: (B, C, H, W).
            mask: (B, 1, H, W), 1 where the PSNR is taken.
        """
        mask = mask.to(prediction.dtype)
        pixels = mask.sum(dim=(1, 2, 3))
        squared = ((prediction - target) ** 2).mean(dim=1, keepdim=True)
        mse = (squared * mask).sum(dim=(1, 2, 3)) / pixels.clamp_min(1.0)
        psnr = 10.0 * torch.log10(self.data_range**2 / mse.clamp_min(1e-10))
        has_pixels = pixels > 0
        self.total += torch.where(has_pixels, psnr, torch.zeros_like(psnr)).sum().double()
        self.count += has_pixels.sum().double()

    def compute(self) -> Tensor:
        """Mean PSNR in dB (NaN if no image had masked pixels)."""
        return (self.total / self.count).float()


class WholeFacePSNR(MaskedPSNR):
    """Mean per-image PSNR over all pixels."""

    def update(self, prediction: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add images (B, C, H, W) in [0, data_range]."""
        super().update(prediction, target, torch.ones_like(prediction[:, :1]))


class RestorationMetrics(nn.Module):
    """Restoration quality and mask accuracy of one stage.

    Args:
        stage: ``train``, ``val`` or ``test`` (metric name prefix).
    """

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage
        self.psnr_face = WholeFacePSNR()
        self.psnr_face_input = WholeFacePSNR()
        self.psnr_occluded = MaskedPSNR()
        self.psnr_occluded_input = MaskedPSNR()
        self.ssim_face = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.ssim_face_input = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.mask_iou = BinaryJaccardIndex()

    def update(self, restored: Tensor, occluded: Tensor, clean: Tensor, true_mask: Tensor, used_mask: Tensor) -> None:
        """Add a batch.

        Args:
            restored: (B, 3, H, W) restored faces in [0, 1].
            occluded: (B, 3, H, W) occluded input faces in [0, 1].
            clean: (B, 3, H, W) clean faces in [0, 1].
            true_mask: (B, 1, H, W) true occluder mask (1 = occluded).
            used_mask: (B, 1, H, W) the binary mask the restorer used (predicted or given).
        """
        restored, occluded, clean = restored.float(), occluded.float(), clean.float()
        self.mask_iou.update(used_mask.flatten() > 0.5, true_mask.flatten() > 0.5)
        self.psnr_occluded.update(restored, clean, true_mask)
        self.psnr_occluded_input.update(occluded, clean, true_mask)
        occluded_faces = true_mask.flatten(1).amax(dim=1) > 0
        if bool(occluded_faces.any()):
            self.psnr_face.update(restored[occluded_faces], clean[occluded_faces])
            self.psnr_face_input.update(occluded[occluded_faces], clean[occluded_faces])
            self.ssim_face.update(restored[occluded_faces], clean[occluded_faces])
            self.ssim_face_input.update(occluded[occluded_faces], clean[occluded_faces])

    def compute(self) -> dict[str, Tensor]:
        """The stage's values; entries that need occluded faces are left out when there were none.

        Every metric is computed (and synchronised) on every process before anything is left out, so DDP ranks
        with different batches cannot diverge.
        """
        prefix = f"{self.stage}/restoration"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
            values = {
                f"{self.stage}/mask/iou": self.mask_iou.compute(),
                f"{prefix}/psnr_occluded": self.psnr_occluded.compute(),
                f"{prefix}/psnr_occluded_input": self.psnr_occluded_input.compute(),
                f"{prefix}/psnr_face": self.psnr_face.compute(),
                f"{prefix}/psnr_face_input": self.psnr_face_input.compute(),
                f"{prefix}/ssim_face": self.ssim_face.compute(),
                f"{prefix}/ssim_face_input": self.ssim_face_input.compute(),
            }
        gain = values[f"{prefix}/psnr_occluded"] - values[f"{prefix}/psnr_occluded_input"]
        values[f"{prefix}/psnr_occluded_gain"] = gain
        if bool(torch.isnan(gain)):  # computed from synchronised states: the same on every process
            values = {k: v for k, v in values.items() if not k.startswith(prefix)}
        return values

    def reset(self) -> None:
        """Clear all states."""
        for module in self.children():
            if isinstance(module, Metric):
                module.reset()
