"""Trivial fills of occluded pixels: baselines for the restorer's generator behind the same occlusion masks.

Each fill maps standardised faces and a 0/1 occlusion mask to a whole image whose masked pixels replace the face's
(the restorer composites it exactly as it composites the generator's output, so visible pixels pass unchanged).
A pixel counts as occluded where the mask exceeds 0.5.

- ``mean_colour``: every pixel is the per-channel mean of the face's visible pixels.
- ``mirror``: faces are roughly left–right symmetric, so an occluded pixel takes the value of its horizontal mirror
  pixel where that one is visible; where both are occluded, the mean colour.
- ``telea`` / ``navier_stokes``: OpenCV's inpainting (``cv2.inpaint``, Telea's fast marching method or the
  Navier–Stokes based one) of the face as 8-bit colour, each pixel filled from the visible pixels within
  ``radius``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from multimodal_fer._lazy import require

#: What fills the occluded pixels: the restorer's generator, a trivial fill, or nothing (the occluded face as it is).
Fill = Literal["generator", "mean_colour", "telea", "navier_stokes", "mirror", "none"]
FILLS: tuple[str, ...] = ("generator", "mean_colour", "telea", "navier_stokes", "mirror", "none")
#: The fills that need no generator.
TRIVIAL_FILLS: tuple[str, ...] = ("mean_colour", "telea", "navier_stokes", "mirror")


def check_fill(value: str) -> str:
    """Validate a fill name (one of :data:`FILLS`)."""
    if value not in FILLS:
        raise ValueError(f"fill must be one of {list(FILLS)}, got {value!r}.")
    return value


def check_inpaint_radius(value: int) -> int:
    """Validate the OpenCV inpainting radius (pixels, >= 1)."""
    if int(value) != value or value < 1:
        raise ValueError(f"inpaint_radius is a neighbourhood radius in pixels (an integer >= 1), got {value}.")
    return int(value)


def _occluded(mask: Tensor) -> Tensor:
    """Pixels the fills treat as occluded, bool (B, 1, H, W)."""
    return mask > 0.5


def mean_colour_fill(image: Tensor, mask: Tensor) -> Tensor:
    """Every pixel set to the per-channel mean of the face's visible pixels.

    Args:
        image: float (B, C, H, W) faces.
        mask: (B, 1, H, W) occlusion mask, 1 = occluded.

    Returns:
        float (B, C, H, W), constant per face and channel. A face occluded everywhere gets its own mean.
    """
    visible = (~_occluded(mask)).to(image.dtype)
    count = visible.sum(dim=(2, 3), keepdim=True)
    visible_mean = (image * visible).sum(dim=(2, 3), keepdim=True) / count.clamp_min(1.0)
    mean = torch.where(count > 0, visible_mean, image.mean(dim=(2, 3), keepdim=True))
    return mean.expand_as(image)


def mirror_fill(image: Tensor, mask: Tensor) -> Tensor:
    """The horizontally flipped face where its mirror pixel is visible, the mean colour elsewhere.

    Args:
        image: float (B, C, H, W) faces (aligned: the face's symmetry axis is the image's vertical centre line).
        mask: (B, 1, H, W) occlusion mask, 1 = occluded.

    Returns:
        float (B, C, H, W).
    """
    mirror_visible = ~_occluded(mask).flip(-1)
    return torch.where(mirror_visible, image.flip(-1), mean_colour_fill(image, mask))


def opencv_inpaint_fill(
    image: Tensor, mask: Tensor, method: Literal["telea", "navier_stokes"] = "telea", radius: int = 3
) -> Tensor:
    """OpenCV's inpainting of the occluded pixels of 8-bit faces.

    Standardised faces are mapped to 8 bits per face through their own range (the face's minimum to 0, its maximum
    to 255; for a face standardised from a uint8 image spanning 0–255 this recovers its bytes), inpainted, and mapped
    back. Only the inpainted pixels carry that 8-bit rounding; the restorer takes the visible pixels from its input.

    Args:
        image: float (B, 3, H, W) standardised faces (any device; OpenCV runs on the CPU).
        mask: (B, 1, H, W) occlusion mask, 1 = occluded.
        method: ``"telea"`` (``cv2.INPAINT_TELEA``) or ``"navier_stokes"`` (``cv2.INPAINT_NS``).
        radius: neighbourhood radius in pixels of each inpainted point.

    Returns:
        float (B, 3, H, W) in the input's dtype and device: the inpainted faces.

    Raises:
        ValueError: not three channels, or an unknown method.
        MissingDependencyError: OpenCV is not installed.
    """
    if image.shape[1] != 3:
        raise ValueError(f"OpenCV inpainting needs colour faces (B, 3, H, W); got {tuple(image.shape)}.")
    if method not in ("telea", "navier_stokes"):
        raise ValueError(f"method must be 'telea' or 'navier_stokes', got {method!r}.")
    cv2 = require("cv2", f"the {method} fill of occluded faces (cv2.inpaint)")
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    radius = check_inpaint_radius(radius)
    faces = image.detach().float().cpu()
    low = faces.amin(dim=(1, 2, 3), keepdim=True)
    scale = 255.0 / (faces.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-6)
    as_bytes = ((faces - low) * scale).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    holes = (_occluded(mask).detach().cpu()[:, 0].numpy().astype(np.uint8)) * 255
    pairs = zip(as_bytes, holes, strict=True)
    filled = np.stack([cv2.inpaint(np.ascontiguousarray(face), hole, radius, flag) for face, hole in pairs])
    restored = torch.from_numpy(filled).permute(0, 3, 1, 2).float() / scale + low
    return restored.to(device=image.device, dtype=image.dtype)


def trivial_fill(image: Tensor, mask: Tensor, fill: str, radius: int = 3) -> Tensor:
    """The whole image of one of :data:`TRIVIAL_FILLS` for faces ``image`` (B, 3, H, W) and mask (B, 1, H, W).

    Raises:
        ValueError: ``fill`` is not a trivial fill.
    """
    if fill == "mean_colour":
        return mean_colour_fill(image, mask)
    if fill == "mirror":
        return mirror_fill(image, mask)
    if fill in ("telea", "navier_stokes"):
        return opencv_inpaint_fill(image, mask, fill, radius)  # type: ignore[arg-type]
    raise ValueError(f"{fill!r} is not a trivial fill; choose one of {list(TRIVIAL_FILLS)}.")
