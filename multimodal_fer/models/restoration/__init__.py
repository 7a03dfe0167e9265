"""Occluded-face restoration: occlusion-mask network, gated-convolution generator, SN-PatchGAN, restorer."""

from multimodal_fer.models.restoration.critic import ExpressionCritic
from multimodal_fer.models.restoration.discriminator import PatchDiscriminator
from multimodal_fer.models.restoration.discriminator_loading import load_discriminator
from multimodal_fer.models.restoration.fills import FILLS, TRIVIAL_FILLS, trivial_fill
from multimodal_fer.models.restoration.gated_conv import GatedConv2d
from multimodal_fer.models.restoration.generator import GatedUNetGenerator
from multimodal_fer.models.restoration.mask_net import OcclusionMaskNet
from multimodal_fer.models.restoration.restorer import (
    RESTORER_CHECKPOINT_KEY,
    FaceRestorer,
    PretrainedRestorer,
    load_restorer,
    validate_mask,
)

__all__ = [
    "FILLS",
    "RESTORER_CHECKPOINT_KEY",
    "TRIVIAL_FILLS",
    "ExpressionCritic",
    "FaceRestorer",
    "GatedConv2d",
    "GatedUNetGenerator",
    "OcclusionMaskNet",
    "PatchDiscriminator",
    "PretrainedRestorer",
    "load_discriminator",
    "load_restorer",
    "trivial_fill",
    "validate_mask",
]
