"""Fusion modules: per-modality features and presence masks to one fused vector."""

from multimodal_fer.models.fusion.attention import AttentionFusion
from multimodal_fer.models.fusion.base import Fusion

__all__ = ["AttentionFusion", "Fusion"]
