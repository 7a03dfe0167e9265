"""Modality encoders: each maps one modality's batch to (B, out_dim) features."""

from multimodal_fer.models.encoders.audio import AudioMelCNN
from multimodal_fer.models.encoders.audio_frontend import AudioFrontEnd
from multimodal_fer.models.encoders.audio_ssl import AudioSSLEncoder
from multimodal_fer.models.encoders.audio_transformer import AudioSpectrogramTransformer
from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.models.encoders.by_modality import ModalityEncoders
from multimodal_fer.models.encoders.depth import DepthCNN
from multimodal_fer.models.encoders.face import FaceCNN
from multimodal_fer.models.encoders.face_backbone import FaceBackbone
from multimodal_fer.models.encoders.face_clip import FaceClipEncoder
from multimodal_fer.models.encoders.physio import PhysioCNN
from multimodal_fer.models.encoders.pointcloud import DGCNNEncoder, PointNetEncoder

__all__ = [
    "AudioFrontEnd",
    "AudioMelCNN",
    "AudioSSLEncoder",
    "AudioSpectrogramTransformer",
    "DGCNNEncoder",
    "DepthCNN",
    "Encoder",
    "FaceBackbone",
    "FaceCNN",
    "FaceClipEncoder",
    "ModalityEncoders",
    "PhysioCNN",
    "PointNetEncoder",
]
