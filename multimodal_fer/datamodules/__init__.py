"""Data modules: caches → subject-independent splits → batches with presence masks."""

from multimodal_fer.datamodules.base import FERData, FERDataModule
from multimodal_fer.datamodules.combined import CombinedDataModule
from multimodal_fer.datamodules.occlusion_split_datamodule import OcclusionSplitDataModule
from multimodal_fer.datamodules.synthaffect import SynthAffectDataModule

__all__ = ["CombinedDataModule", "FERData", "FERDataModule", "OcclusionSplitDataModule", "SynthAffectDataModule"]
