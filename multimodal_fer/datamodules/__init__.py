"""Data modules: caches → subject-independent splits → batches with presence masks."""

from multimodal_fer.datamodules.occlusion_split import OcclusionSplitDataModule
from multimodal_fer.datamodules.synthaffect import SynthAffectDataModule

__all__ = ["OcclusionSplitDataModule", "SynthAffectDataModule"]
