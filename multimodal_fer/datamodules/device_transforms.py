"""Batch transforms that run on the device after transfer: dtype conversion, normalisation, augmentation.

Inputs arrive in storage dtypes to keep host→device traffic small: faces uint8 (B, 3, H, W), depth
float16 (B, 1, H, W) in metres (0 = no reading), audio int16 (B, S), physiology float16 (B, C, T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Added to the per-image standard deviation of faces.
FACE_STD_EPS = 1e-3


def face_statistics(face: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image mean and standard deviation of faces in [0, 1].

    Args:
        face: uint8 (B, 3, H, W) or float in [0, 1].

    Returns:
        ``(mean, std)``, each float32 (B, 1, 1, 1); ``std`` includes :data:`FACE_STD_EPS`.
    """
    face = face.float() / 255.0 if face.dtype == torch.uint8 else face.float()
    return face.mean(dim=(1, 2, 3), keepdim=True), face.std(dim=(1, 2, 3), keepdim=True) + FACE_STD_EPS


def normalize_face(face: Tensor, statistics: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """uint8 (B, 3, H, W) → float32 (B, 3, H, W), standardised per image.

    Each image is shifted and scaled to zero mean and unit variance over all its pixels and channels, which
    removes global exposure and contrast (lighting, camera gain) while keeping colour ratios; it made
    subject-independent expression learning on SynthAffect markedly faster than fixed dataset statistics.

    Args:
        face: uint8 (B, 3, H, W).
        statistics: ``(mean, std)`` from :func:`face_statistics` to use instead of the images' own (the
            restoration task standardises a clean face with its occluded version's statistics, so that the
            two agree outside the occluder).
    """
    mean, std = statistics if statistics is not None else face_statistics(face)
    return (face.float() / 255.0 - mean) / std


def restandardize(face: Tensor) -> Tensor:
    """Standardise already-normalised float faces (B, 3, H, W) again, per image (after restoration)."""
    mean = face.mean(dim=(1, 2, 3), keepdim=True)
    std = face.std(dim=(1, 2, 3), keepdim=True)
    return (face - mean) / (std + FACE_STD_EPS)


def normalize_depth(depth: Tensor, scale_m: float = 0.03) -> Tensor:
    """Depth in metres (B, 1, H, W), 0 = no reading → relief relative to each face's mean depth.

    Returns:
        float32 (B, 2, H, W): channel 0 is ``(mean − depth) / scale_m`` on valid pixels (larger = nearer the
        camera) and 0 elsewhere; channel 1 is the validity mask.
    """
    depth = depth.float()
    valid = depth > 0
    count = valid.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    mean = (depth * valid).sum(dim=(1, 2, 3), keepdim=True) / count
    relief = torch.where(valid, (mean - depth) / scale_m, torch.zeros_like(depth))
    return torch.cat([relief, valid.float()], dim=1)


def normalize_audio(audio: Tensor) -> Tensor:
    """int16 (B, S) → float32 in [-1, 1]."""
    return audio.float() / 32768.0


def standardize_signals(signals: Tensor, eps: float = 1e-4) -> Tensor:
    """(B, C, T) → float32 with zero mean and unit variance per sample and channel."""
    signals = signals.float()
    mean = signals.mean(dim=-1, keepdim=True)
    std = signals.std(dim=-1, keepdim=True)
    return (signals - mean) / (std + eps)


def augment_face_and_depth(
    face: Tensor,
    depth: Tensor | None,
    generator: torch.Generator | None = None,
    aligned: dict[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Training augmentation on the device: one random affine warp per sample, shared by face and depth.

    The warp combines a horizontal flip (p = 0.5), rotation (±8°), scale (0.92–1.08) and translation (±6% of
    the side); the face also gets brightness and contrast jitter. Pixels warped in from outside the image
    are 0 (the mean colour after standardisation; "no reading" for depth).

    Args:
        face: float (B, 3, H, W) standardised faces.
        depth: float (B, C, H, W) normalised depth of the same samples, or None.
        generator: random generator on the batch's device (None: the global one).
        aligned: other images of the same samples that must move with the face, changed in place:
            ``face_clean`` (B, 3, H, W) gets the face's warp and photometric jitter, ``occlusion_mask``
            (B, 1, H, W) the warp only (nearest neighbour).

    Returns:
        The augmented face (B, 3, H, W) and depth (B, C, H, W) or None.
    """
    size = face.shape[0]
    device = face.device

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(size, device=device, generator=generator)

    flip = torch.where(torch.rand(size, device=device, generator=generator) < 0.5, -1.0, 1.0)
    angle = uniform(-8.0, 8.0) * torch.pi / 180.0
    scale = uniform(0.92, 1.08)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-0.12, 0.12)], dim=1),
            torch.stack([sin * flip, cos, uniform(-0.12, 0.12)], dim=1),
        ],
        dim=1,
    )  # (B, 2, 3)
    grid = F.affine_grid(theta.to(face.dtype), list(face.shape), align_corners=False)
    face = F.grid_sample(face, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if depth is not None and depth.shape[0] == size:
        # Nearest neighbour keeps depth readings unmixed with "no reading" pixels.
        depth = F.grid_sample(depth, grid.to(depth.dtype), mode="nearest", padding_mode="zeros", align_corners=False)
    aligned = aligned if aligned is not None else {}
    for name, image in aligned.items():
        mode = "nearest" if name == "occlusion_mask" else "bilinear"
        aligned[name] = F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode="zeros", align_corners=False)
    brightness = (torch.rand(size, 1, 1, 1, device=device, generator=generator) - 0.5) * 0.6
    contrast = 1.0 + (torch.rand(size, 1, 1, 1, device=device, generator=generator) - 0.5) * 0.4
    mean = face.mean(dim=(1, 2, 3), keepdim=True)
    face = (face - mean) * contrast + mean + brightness
    if "face_clean" in aligned:  # the same intensity map, so clean and occluded still agree off the occluder
        aligned["face_clean"] = (aligned["face_clean"] - mean) * contrast + mean + brightness
    return face, depth
