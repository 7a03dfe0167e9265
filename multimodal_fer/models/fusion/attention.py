"""Transformer fusion: one token per modality plus a fusion ([CLS]) token, absent modalities masked."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from multimodal_fer.models.fusion.base import Fusion


class _PreNormBlock(nn.Module):
    """Pre-norm transformer encoder block: x + MHA(LN(x)), then x + MLP(LN(x)).

    Args:
        d_model: token size D.
        num_heads: attention heads (must divide D).
        dropout: dropout on attention weights and on both residual branches.

    """

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.drop1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(4 * d_model, d_model),
        )
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_padding_mask: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: tokens (B, N, D).
            key_padding_mask: bool (B, N), True where a token must not be attended to.

        Returns:
            Tokens (B, N, D).

        """
        h = self.norm1(x)
        h, _ = self.attn(h, h, h, key_padding_mask=key_padding_mask, need_weights=False)
        x = x + self.drop1(h)
        return x + self.drop2(self.mlp(self.norm2(x)))


class AttentionFusion(Fusion):
    """Fuse modalities with self-attention over modality tokens and a learned fusion token.

    Each modality's features are projected to ``d_model`` and get a learned modality embedding; a learned
    fusion ([CLS]) token, never masked, is prepended. Pre-norm transformer blocks attend with
    ``key_padding_mask = ~present`` so no token reads an absent modality, and the output is the final
    LayerNorm of the fusion token. Absent features are also zeroed before the projection, so NaN/inf in an
    absent modality cannot leak (0 * NaN). A sample with every modality absent gets an output that
    depends on the learned parameters only.

    Args:
        in_dims: feature size per modality (given by the model from its encoders' ``out_dim``).
        d_model: token size; also :attr:`out_dim`.
        num_heads: attention heads (must divide ``d_model``).
        num_layers: transformer blocks.
        dropout: dropout inside the blocks.

    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        d_model: int = 128,
        num_heads: int = 4,
        num_layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_dims)
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads}).")
        self.out_dim = d_model
        self.proj = nn.ModuleDict({m: nn.Linear(self.in_dims[m], d_model) for m in self.modalities})
        self.modality_embed = nn.ParameterDict({m: nn.Parameter(torch.randn(d_model) * 0.02) for m in self.modalities})
        self.fusion_token = nn.Parameter(torch.randn(d_model) * 0.02)
        self.blocks = nn.ModuleList(_PreNormBlock(d_model, num_heads, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        """Fuse modality features.

        Args:
            features: ``features[m]`` is (B, in_dims[m]); a missing key counts as absent everywhere.
            present: ``present[m]`` is bool (B,).

        Returns:
            Fused features, (B, d_model).

        """
        inputs = self.masked_features(features, present)
        first, _ = next(iter(inputs.values()))
        batch = first.shape[0]
        tokens = [self.fusion_token.expand(batch, -1)]
        masks = [torch.ones(batch, dtype=torch.bool, device=first.device)]
        for m, (feat, mask) in inputs.items():
            tokens.append(self.proj[m](feat) + self.modality_embed[m])
            masks.append(mask)
        x = torch.stack(tokens, dim=1)  # (B, 1 + M, D)
        key_padding_mask = ~torch.stack(masks, dim=1)  # (B, 1 + M), True = ignore
        for block in self.blocks:
            x = block(x, key_padding_mask)
        return self.norm(x[:, 0])
