"""Lightning data modules: cache → subject-independent splits → batches with presence masks."""

from multimodal_fer.datamodules.synthaffect import SynthAffectDataModule

__all__ = ["SynthAffectDataModule"]
