"""Randomly shifted and mirrored views of restored and clean faces, for the critics to judge in training.

A generator guided by a few frozen recognisers can learn to carry the expression in details only those recognisers
read, which recognisers it never saw do not (``docs/occlusion.md``, section 6: the critic reads the fills far better
than an independent recogniser). Judging each restored face, and its clean version, under a random small shift and
mirroring asks the fill to show the expression in a way that survives such changes, as input diversity makes
adversarial perturbations transfer between networks. The restored face and its clean face get the same view, so the
perceptual and consistency losses still compare aligned images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def jittered_views(
    restored: Tensor, clean: Tensor, max_shift: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Shift each face by a random whole number of pixels and mirror it with probability 1/2, the same for both.

    Pixels shifted in from outside are the face's own, reflected at its border. Whole-pixel shifts and mirroring
    move pixels without interpolating them.

    Args:
        restored: float (B, C, H, W) restored faces (gradients flow through the views).
        clean: float (B, C, H, W) the same faces without occluders.
        max_shift: largest shift in pixels along each axis (0 returns the faces as they are).
        generator: random numbers to draw from (None: torch's global generator).

    Returns:
        ``(restored_view, clean_view)``, each float (B, C, H, W).

    Raises:
        ValueError: a negative ``max_shift``, or one as large as the faces, or faces of different shapes.
    """
    if restored.shape != clean.shape:
        raise ValueError(f"Restored faces {tuple(restored.shape)} and clean faces {tuple(clean.shape)} must match.")
    height, width = restored.shape[-2:]
    if not 0 <= max_shift < min(height, width) // 2:
        raise ValueError(f"max_shift must lie in [0, {min(height, width) // 2 - 1}] for {height}×{width} faces.")
    if max_shift == 0:
        return restored, clean
    batch = restored.shape[0]
    device = restored.device
    shifts = torch.randint(-max_shift, max_shift + 1, (batch, 2), generator=generator).to(device, restored.dtype)
    mirror = torch.rand(batch, generator=generator).lt(0.5).to(device)
    theta = torch.zeros(batch, 2, 3, device=device, dtype=restored.dtype)
    theta[:, 0, 0] = torch.where(mirror, -1.0, 1.0).to(restored.dtype)
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 2.0 * shifts[:, 0] / width  # align_corners=False: 2 / W per pixel, exactly
    theta[:, 1, 2] = 2.0 * shifts[:, 1] / height
    grid = F.affine_grid(theta, list(restored.shape), align_corners=False)
    views = F.grid_sample(
        torch.cat([restored, clean]), grid.repeat(2, 1, 1, 1), padding_mode="reflection", align_corners=False
    )
    return views[:batch], views[batch:]
