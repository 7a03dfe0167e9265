"""Modality encoders: each maps one modality's batch to (B, out_dim) features."""

from multimodal_fer.models.encoders.audio import AudioMelCNN
from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.models.encoders.depth import DepthCNN
from multimodal_fer.models.encoders.face import FaceCNN
from multimodal_fer.models.encoders.physio import PhysioCNN

__all__ = ["AudioMelCNN", "DepthCNN", "Encoder", "FaceCNN", "PhysioCNN"]
