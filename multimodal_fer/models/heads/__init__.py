"""Prediction heads on top of the fused features."""

from multimodal_fer.models.heads.multitask import MultitaskHeads

__all__ = ["MultitaskHeads"]
