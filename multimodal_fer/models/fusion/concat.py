"""Early fusion: concatenate the modality vectors (absent ones as zeros) with presence flags, then an MLP."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from multimodal_fer.models.fusion.base import Fusion, presence_matrix


class ConcatFusion(Fusion):
    """Concatenate every modality's features and their presence flags, then a two-layer MLP.

    Absent features are zeros and the flags tell the MLP which zeros mean "absent", so one model serves any
    subset of modalities (train it with modality dropout to make that subset robust).

    Args:
        in_dims: feature size per modality (from the encoders' ``out_dim``).
        hidden_dim: width of the MLP's hidden layer.
        out_dim: size of the fused vector.
        dropout: dropout on the concatenated input and on the hidden layer.
    """

    def __init__(
        self, in_dims: Mapping[str, int], hidden_dim: int = 256, out_dim: int = 128, dropout: float = 0.1
    ) -> None:
        super().__init__(in_dims)
        self.out_dim = int(out_dim)
        total = sum(self.in_dims.values()) + len(self.modalities)
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(total, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, self.out_dim),
        )
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        """Fuse modality features.

        Args:
            features: ``features[m]`` is (B, in_dims[m]); a missing key counts as absent everywhere.
            present: ``present[m]`` is bool (B,).

        Returns:
            Fused features, (B, out_dim).
        """
        inputs = self.masked_features(features, present)
        flat = torch.cat([feat for feat, _ in inputs.values()] + [presence_matrix(inputs)], dim=1)
        return self.norm(self.mlp(flat))
