"""Per-image face standardisation (bottom layer: imports nothing of the package).

Shared by the data modules' device transform and by the models that undo or redo it (restorers, critics).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Added to the per-image standard deviation of faces.
FACE_STD_EPS = 1e-3


def face_statistics(face: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image mean and standard deviation of faces in [0, 1].

    Args:
        face: uint8 (B, 3, H, W) or float in [0, 1]; clips (B, T, 3, H, W) get statistics per frame.

    Returns:
        ``(mean, std)``, each float32 (B, 1, 1, 1) (clips: (B, T, 1, 1, 1)); ``std`` includes
        :data:`FACE_STD_EPS`.
    """
    face = face.float() / 255.0 if face.dtype == torch.uint8 else face.float()
    return face.mean(dim=(-3, -2, -1), keepdim=True), face.std(dim=(-3, -2, -1), keepdim=True) + FACE_STD_EPS


def normalize_face(face: Tensor, statistics: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """uint8 (B, 3, H, W) → float32 (B, 3, H, W), standardised per image (clips (B, T, 3, H, W): per frame).

    Each image is shifted and scaled to zero mean and unit variance over all its pixels and channels, which
    removes global exposure and contrast (lighting, camera gain) while keeping colour ratios; it made
    subject-independent expression learning on SynthAffect markedly faster than fixed dataset statistics.

    A clip's frames are standardised one by one, exactly as still faces are, so a frame encoder sees the same
    input distribution in a clip as on still faces.

    Args:
        face: uint8 (B, 3, H, W), or clips (B, T, 3, H, W).
        statistics: ``(mean, std)`` from :func:`face_statistics` to use instead of the images' own (the
            restoration task standardises a clean face with its occluded version's statistics, so that the
            two agree outside the occluder).
    """
    mean, std = statistics if statistics is not None else face_statistics(face)
    return (face.float() / 255.0 - mean) / std


def unit_range_face(face: Tensor, statistics: tuple[Tensor, Tensor]) -> Tensor:
    """Standardised faces (B, 3, H, W) back to [0, 1]: the inverse of :func:`normalize_face`, clipped.

    Args:
        face: float (B, 3, H, W) standardised faces (restored ones may leave the original range: clipped).
        statistics: ``(mean, std)``, each (B, 1, 1, 1), that :func:`normalize_face` standardised them with.
    """
    mean, std = statistics
    return (face.float() * std + mean).clamp(0.0, 1.0)


def restandardize(face: Tensor) -> Tensor:
    """Standardise already-normalised float faces (B, 3, H, W) again, per image (after restoration)."""
    mean = face.mean(dim=(1, 2, 3), keepdim=True)
    std = face.std(dim=(1, 2, 3), keepdim=True)
    return (face - mean) / (std + FACE_STD_EPS)
