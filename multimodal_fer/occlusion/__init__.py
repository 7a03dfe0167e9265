"""Synthetic occlusions of face crops (sunglasses, masks, hands, scarves, hair, blocks, strokes)."""

from multimodal_fer.occlusion.synthesis import (
    LANDMARK_NAMES,
    OCCLUSION_TYPES,
    FaceLandmarks,
    canonical_landmarks,
    occlude,
)

__all__ = ["LANDMARK_NAMES", "OCCLUSION_TYPES", "FaceLandmarks", "canonical_landmarks", "occlude"]
