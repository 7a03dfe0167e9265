"""Synthetic occlusions of face crops (sunglasses, masks, hands, scarves, hair, blocks, strokes)."""

from multimodal_fer.occlusion.synthesis import (
    OCCLUSION_TYPES,
    FaceLandmarks,
    canonical_landmarks,
    occlude,
)

__all__ = ["OCCLUSION_TYPES", "FaceLandmarks", "canonical_landmarks", "occlude"]
