"""Fusion modules: per-modality features and presence masks to one fused vector.

Every module subclasses :class:`Fusion`, whose docstring declares the contract: it is built from ``in_dims``
(feature size per modality, derived from the encoders), exposes ``out_dim`` and honours ``present`` masks (an
absent modality's values cannot change the output); ``consumes_tokens`` and ``late`` say how the model feeds it.
``tests/test_fusion.py`` checks the contract for every class exported here, so a new fusion needs only its module,
its entry in ``__all__`` and a config.

- :class:`AttentionFusion` (default): self-attention over one token per modality plus a fusion token.
- :class:`MulTFusion`: cross-modal transformers between the modalities' token *sequences* (MulT).
- :class:`ConcatFusion`: early fusion, concatenation with presence flags and an MLP.
- :class:`GatedFusion`: gated multimodal units, gates softmaxed over the present modalities.
- :class:`LateFusion`: per-modality heads whose predictions the model averages.
- :class:`LowRankFusion`: low-rank tensor fusion (LMF).
"""

from multimodal_fer.models.fusion.attention import AttentionFusion
from multimodal_fer.models.fusion.base import Fusion
from multimodal_fer.models.fusion.concat import ConcatFusion
from multimodal_fer.models.fusion.gated import GatedFusion
from multimodal_fer.models.fusion.late import LateFusion
from multimodal_fer.models.fusion.low_rank import LowRankFusion
from multimodal_fer.models.fusion.mult import MulTFusion

__all__ = [
    "AttentionFusion",
    "ConcatFusion",
    "Fusion",
    "GatedFusion",
    "LateFusion",
    "LowRankFusion",
    "MulTFusion",
]
