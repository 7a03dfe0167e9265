"""Gated multimodal units: per-modality tanh projections mixed by gates computed from all modalities."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from multimodal_fer.models.fusion.base import Fusion, presence_matrix


class GatedFusion(Fusion):
    """Gated multimodal unit (after Arevalo et al., ICLR workshop 2017), extended to any number of modalities.

    Each modality m gives a candidate ``h_m = tanh(W_m x_m)``; a gate network reads every modality's features
    and presence flags and scores each modality per output unit; a softmax over the *present* modalities
    turns the scores into mixing weights, so ``out = Σ_m g_m ⊙ h_m`` (per unit, weights summing to 1).
    Absent modalities get no weight; a sample with no modality present gets zeros.

    Args:
        in_dims: feature size per modality (from the encoders' ``out_dim``).
        out_dim: size of the fused vector (and of every candidate ``h_m``).
        dropout: dropout on the candidates.
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int = 128, dropout: float = 0.1) -> None:
        super().__init__(in_dims)
        self.out_dim = int(out_dim)
        self.candidates = nn.ModuleDict({m: nn.Linear(self.in_dims[m], self.out_dim) for m in self.modalities})
        total = sum(self.in_dims.values()) + len(self.modalities)
        self.gate = nn.Linear(total, len(self.modalities) * self.out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        """Fuse modality features.

        Args:
            features: ``features[m]`` is (B, in_dims[m]); a missing key counts as absent everywhere.
            present: ``present[m]`` is bool (B,).

        Returns:
            Fused features, (B, out_dim).
        """
        inputs = self.masked_features(features, present)
        flags = presence_matrix(inputs)  # (B, M)
        batch, count = flags.shape
        candidates = torch.stack([self.candidates[m](feat).tanh() for m, (feat, _) in inputs.items()], dim=1)
        gate_input = torch.cat([feat for feat, _ in inputs.values()] + [flags], dim=1)
        scores = self.gate(gate_input).view(batch, count, self.out_dim)
        # Absent modalities: a large negative score (not -inf, so a sample with none present stays finite).
        scores = scores.masked_fill(flags.unsqueeze(-1) == 0, -1e4)
        weights = scores.softmax(dim=1) * flags.unsqueeze(-1)  # exactly 0 for absent modalities
        return (weights * self.dropout(candidates)).sum(dim=1)
