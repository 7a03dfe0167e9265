"""Epoch metrics built from torchmetrics, exact under DDP.

- :mod:`~multimodal_fer.metrics.recognition`: expression, AU and valence/arousal(/dominance) metrics of
  multitask FER (:class:`FERMetrics`), named ``{stage}/{task}/{metric}``.
- :mod:`~multimodal_fer.metrics.restoration`: PSNR, SSIM and mask IoU of occluded-face restoration
  (:class:`RestorationMetrics`).
"""

from multimodal_fer.metrics.recognition import (
    FERMetrics,
    LabeledCount,
    PopulationConcordanceCorrCoef,
    concordance_correlation,
    concordance_from_moments,
    sign_agreement,
)
from multimodal_fer.metrics.restoration import MaskedPSNR, RestorationMetrics, WholeFacePSNR

__all__ = [
    "FERMetrics",
    "LabeledCount",
    "MaskedPSNR",
    "PopulationConcordanceCorrCoef",
    "RestorationMetrics",
    "WholeFacePSNR",
    "concordance_correlation",
    "concordance_from_moments",
    "sign_agreement",
]
