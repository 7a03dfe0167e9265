"""MulT-style fusion: cross-modal transformers between token sequences of every pair of modalities."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from multimodal_fer.models.fusion.base import Fusion


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Sinusoidal position codes (length, dim) (Vaswani et al. 2017), for sequences of any length."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=device, dtype=torch.float32)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return codes.to(dtype)


class _CrossModalBlock(nn.Module):
    """Pre-norm block: target tokens attend to source tokens, then a feed-forward layer.

    Args:
        d_model: token size D of both sequences.
        num_heads: attention heads (must divide D).
        dropout: dropout on attention weights and residual branches.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_target = nn.LayerNorm(d_model)
        self.norm_source = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * d_model, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, target: Tensor, source: Tensor, source_padding: Tensor, source_present: Tensor) -> Tensor:
        """Update target tokens from source tokens.

        Args:
            target: (B, T_t, D).
            source: (B, T_s, D).
            source_padding: bool (B, T_s), True = ignore (never all True in a row).
            source_present: float (B, 1, 1); 0 switches the cross-attention update off for that sample.

        Returns:
            Target tokens (B, T_t, D).
        """
        key = self.norm_source(source)
        update, _ = self.attn(self.norm_target(target), key, key, key_padding_mask=source_padding, need_weights=False)
        target = target + self.dropout(update) * source_present
        return target + self.dropout(self.ff(self.norm_ff(target)))


class _SelfBlock(nn.Module):
    """Pre-norm self-attention transformer block over one sequence (B, T, D) with a padding mask."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * d_model, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        """Tokens (B, T, D), padding bool (B, T) (True = ignore, never a whole row) → tokens (B, T, D)."""
        h = self.norm(x)
        h, _ = self.attn(h, h, h, key_padding_mask=padding, need_weights=False)
        x = x + self.dropout(h)
        return x + self.dropout(self.ff(self.norm_ff(x)))


class MulTFusion(Fusion):
    """Multimodal transformer fusion over token sequences (after Tsai et al., ACL 2019).

    Every modality's tokens (B, T_m, in_dims[m]) are projected to ``d_model`` and get sinusoidal positions.
    For each *target* modality α and each other *source* modality β, a cross-modal transformer
    (``num_layers`` blocks) lets α's tokens attend to β's; α's outputs over all sources are concatenated
    per token and pass a self-attention transformer; the mean over α's valid tokens summarises it. The
    summaries of all targets are concatenated (zeros for targets absent in a sample) and projected to
    ``out_dim``. With a single modality, its cross-modal transformer attends to itself.

    Missing data: an absent source contributes no cross-attention update to its targets (its tokens are
    zeroed and its update multiplied by 0), an absent target's summary is replaced by zeros, and padded
    tokens (variable-length inputs) are excluded from attention and from the mean. So absent modalities'
    values cannot change the output.

    Args:
        in_dims: token size per modality (from the encoders' ``token_dim``).
        d_model: token size inside the cross-modal transformers.
        num_heads: attention heads (must divide ``d_model``; also divides the self-attention width).
        num_layers: blocks per cross-modal transformer.
        self_layers: self-attention blocks per target after the concatenation.
        out_dim: size of the fused vector.
        dropout: dropout inside the blocks.
    """

    consumes_tokens = True

    def __init__(
        self,
        in_dims: Mapping[str, int],
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        self_layers: int = 1,
        out_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_dims)
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads}).")
        self.d_model = d_model
        self.out_dim = int(out_dim)
        self.proj = nn.ModuleDict({m: nn.Linear(self.in_dims[m], d_model) for m in self.modalities})
        self.pairs = [(t, s) for t in self.modalities for s in self.sources(t)]
        self.cross = nn.ModuleDict(
            {
                f"{source}_to_{target}": nn.ModuleList(
                    _CrossModalBlock(d_model, num_heads, dropout) for _ in range(num_layers)
                )
                for target, source in self.pairs
            }
        )
        per_target = d_model * len(self.sources(self.modalities[0]))
        self.self_attention = nn.ModuleDict(
            {
                m: nn.ModuleList(_SelfBlock(per_target, num_heads, dropout) for _ in range(self_layers))
                for m in self.modalities
            }
        )
        self.target_norm = nn.ModuleDict({m: nn.LayerNorm(per_target) for m in self.modalities})
        self.output = nn.Sequential(nn.Linear(per_target * len(self.modalities), self.out_dim), nn.LayerNorm(out_dim))

    def sources(self, target: str) -> tuple[str, ...]:
        """Modalities the target attends to: every other one, or itself when it is the only modality."""
        others = tuple(m for m in self.modalities if m != target)
        return others or (target,)

    def forward(
        self,
        features: Mapping[str, Tensor],
        present: Mapping[str, Tensor],
        padding: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """Fuse token sequences.

        Args:
            features: ``features[m]`` tokens (B, T_m, in_dims[m]); a missing key counts as absent everywhere.
            present: ``present[m]`` bool (B,).
            padding: optional ``padding[m]`` bool (B, T_m), True where a token is padding.

        Returns:
            Fused features, (B, out_dim).
        """
        inputs = self.masked_features(features, present)
        tokens: dict[str, Tensor] = {}
        pads: dict[str, Tensor] = {}
        presence: dict[str, Tensor] = {}
        for m, (feat, mask) in inputs.items():
            batch, length, _ = feat.shape
            x = self.proj[m](feat)
            tokens[m] = x + sinusoidal_positions(length, self.d_model, x.device, x.dtype)
            pad = torch.zeros(batch, length, dtype=torch.bool, device=x.device)
            if padding is not None and m in padding:
                pad = padding[m].to(device=x.device, dtype=torch.bool)
                if tuple(pad.shape) != (batch, length):
                    raise ValueError(f"padding[{m!r}] has shape {tuple(pad.shape)}, expected {(batch, length)}.")
            # A row with nothing to attend to (absent sample, or all padding) attends to its zeroed tokens:
            # the result depends on parameters only and is switched off or discarded below.
            unusable = ~mask | pad.all(dim=1)
            pads[m] = pad & ~unusable.unsqueeze(1)
            presence[m] = (mask & ~pad.all(dim=1)).to(x.dtype)
        summaries = []
        for target in self.modalities:
            outputs = []
            for source in self.sources(target):
                x = tokens[target]
                gate = presence[source].view(-1, 1, 1)
                for block in self.cross[f"{source}_to_{target}"]:
                    x = block(x, tokens[source], pads[source], gate)
                outputs.append(x)
            h = torch.cat(outputs, dim=-1)  # (B, T_target, D * sources)
            for block in self.self_attention[target]:
                h = block(h, pads[target])
            h = self.target_norm[target](h)
            valid = (~pads[target]).to(h.dtype).unsqueeze(-1)
            summary = (h * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1.0)
            summaries.append(summary * presence[target].unsqueeze(1))
        return self.output(torch.cat(summaries, dim=1))
