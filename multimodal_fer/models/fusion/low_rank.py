"""Low-rank multimodal fusion: the outer-product tensor fusion computed through rank-R modality factors."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from multimodal_fer.models.fusion.base import Fusion


class LowRankFusion(Fusion):
    """Low-rank tensor fusion (after Liu et al., ACL 2018).

    Tensor fusion takes the outer product of every modality's vector with a constant 1 appended,
    ``Z = ⊗_m [x_m; 1]``, and maps it linearly to the output, keeping unimodal, bimodal, ... interactions.
    With the weight tensor factorised into rank-R modality factors ``W_m^(r)`` the result is computed
    without forming Z: ``h = Σ_r λ_r ∏_m (W_m^(r) [x_m; 1]) + b`` (products elementwise over the output).

    An absent modality enters as ``[0; 1]`` (its features are zeroed first), so its factor reduces to the
    learned constant row of ``W_m`` and the product keeps the present modalities' interactions. A LayerNorm
    follows, since products of several factors vary widely in scale.

    Args:
        in_dims: feature size per modality (from the encoders' ``out_dim``).
        out_dim: size of the fused vector.
        rank: number of rank-one terms R.
        dropout: dropout on each modality's features before its factor.
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int = 128, rank: int = 4, dropout: float = 0.1) -> None:
        super().__init__(in_dims)
        if rank < 1:
            raise ValueError(f"rank must be positive, got {rank}.")
        self.out_dim = int(out_dim)
        self.rank = int(rank)
        self.factors = nn.ParameterDict()
        for m in self.modalities:
            factor = torch.empty(self.rank, self.in_dims[m] + 1, self.out_dim)
            nn.init.xavier_normal_(factor)
            with torch.no_grad():
                factor[:, -1, :] = 1.0  # start near the identity: the constant path carries the other modalities
            self.factors[m] = nn.Parameter(factor)
        self.rank_weights = nn.Parameter(torch.full((self.rank,), 1.0 / self.rank))
        self.bias = nn.Parameter(torch.zeros(self.out_dim))
        self.dropout = nn.Dropout(dropout)
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
        product: Tensor | None = None
        for m, (feat, mask) in inputs.items():
            feat = self.dropout(feat) * mask.unsqueeze(1).to(feat.dtype)  # dropout cannot revive absent rows
            ones = feat.new_ones(feat.shape[0], 1)
            augmented = torch.cat([feat, ones], dim=1)  # (B, d_m + 1)
            factor = torch.einsum("bd,rdo->bro", augmented, self.factors[m].to(feat.dtype))  # (B, R, out)
            product = factor if product is None else product * factor
        assert product is not None
        fused = torch.einsum("bro,r->bo", product, self.rank_weights.to(product.dtype)) + self.bias
        return self.norm(fused)
