"""The interface every fusion module implements."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from multimodal_fer.types import validate_modalities


class Fusion(nn.Module):
    """Base class of fusion modules: per-modality features and presence masks to one vector.

    Contract: a modality whose ``present`` entry is False for a sample cannot change that sample's
    output, whatever its features hold (even NaN or inf). :meth:`masked_features` implements the first
    half of this (absent features are replaced by zeros with ``torch.where``); subclasses must also mask
    them inside the fusion (e.g. attention ``key_padding_mask``).

    Most fusions read one vector per modality, (B, in_dims[m]). A fusion that sets the class attribute
    :attr:`consumes_tokens` reads token sequences instead, (B, T_m, in_dims[m]) with any length T_m per
    modality, and the model feeds it each encoder's :meth:`~multimodal_fer.models.encoders.Encoder.forward_tokens`
    with ``in_dims`` taken from the encoders' ``token_dim``.

    Args:
        in_dims: feature (or token) size of each fused modality, e.g. ``{"face": 128, "audio": 128}`` (1 to 4
            of :data:`~multimodal_fer.types.MODALITIES`; stored in canonical order).

    Attributes:
        modalities: fused modality names in canonical order.
        in_dims: feature size per modality, in canonical order.
        out_dim: size of the fused vector :meth:`forward` returns (set by subclasses).
        consumes_tokens: whether :meth:`forward` reads token sequences (B, T, D) rather than vectors (B, D).
    """

    out_dim: int
    consumes_tokens: bool = False

    def __init__(self, in_dims: Mapping[str, int]) -> None:
        super().__init__()
        self.modalities: tuple[str, ...] = validate_modalities(list(in_dims))
        self.in_dims: dict[str, int] = {m: int(in_dims[m]) for m in self.modalities}
        for m, dim in self.in_dims.items():
            if dim < 1:
                raise ValueError(f"in_dims[{m!r}] must be positive, got {dim}.")

    def masked_features(
        self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """Check inputs and zero the features of absent samples.

        A modality missing from ``features`` counts as absent for every sample (its features become zeros:
        (B, in_dims[m]), or (B, 1, in_dims[m]) for token fusions).

        Args:
            features: ``features[m]`` is (B, in_dims[m]), or (B, T_m, in_dims[m]) if :attr:`consumes_tokens`.
            present: ``present[m]`` is bool (B,).

        Returns:
            For each fused modality in canonical order, ``(features, present bool (B,))`` where absent rows
            are exactly zero.
        """
        reference = next((features[m] for m in self.modalities if m in features), None)
        if reference is None:
            raise ValueError(f"No features for any fused modality {list(self.modalities)}.")
        batch = reference.shape[0]
        out: dict[str, tuple[Tensor, Tensor]] = {}
        for m in self.modalities:
            if m not in features:
                shape = (batch, 1, self.in_dims[m]) if self.consumes_tokens else (batch, self.in_dims[m])
                feat = reference.new_zeros(shape)
                mask = torch.zeros(batch, dtype=torch.bool, device=reference.device)
            else:
                feat = features[m]
                self._check_shape(m, feat, batch)
                if m not in present:
                    raise KeyError(f"present[{m!r}] is missing; every batch needs a mask per modality.")
                mask = present[m].to(device=feat.device, dtype=torch.bool)
                if tuple(mask.shape) != (batch,):
                    raise ValueError(f"present[{m!r}] has shape {tuple(mask.shape)}, expected ({batch},).")
                zero = torch.zeros((), dtype=feat.dtype, device=feat.device)
                feat = torch.where(mask.view(batch, *([1] * (feat.ndim - 1))), feat, zero)
            out[m] = (feat, mask)
        return out

    def _check_shape(self, modality: str, feat: Tensor, batch: int) -> None:
        dim = self.in_dims[modality]
        if self.consumes_tokens:
            if feat.ndim != 3 or feat.shape[0] != batch or feat.shape[2] != dim or feat.shape[1] < 1:
                raise ValueError(
                    f"features[{modality!r}] has shape {tuple(feat.shape)}, expected tokens ({batch}, T, {dim})."
                )
        elif tuple(feat.shape) != (batch, dim):
            raise ValueError(f"features[{modality!r}] has shape {tuple(feat.shape)}, expected {(batch, dim)}.")

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        """Fuse modality features.

        Args:
            features: ``features[m]`` is (B, in_dims[m]) (or (B, T_m, in_dims[m]) for token fusions).
            present: ``present[m]`` is bool (B,).

        Returns:
            Fused features, (B, out_dim).
        """
        raise NotImplementedError


def presence_matrix(inputs: Mapping[str, tuple[Tensor, Tensor]]) -> Tensor:
    """Stack the presence masks of :meth:`Fusion.masked_features` output into float (B, M), canonical order."""
    return torch.stack([mask for _, mask in inputs.values()], dim=1).float()


def masked_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Mean over present modalities.

    Args:
        values: (B, M, D) per-modality vectors.
        weights: (B, M) presence as 0/1 floats.

    Returns:
        (B, D) mean of the present modalities' vectors; exactly zero for a sample with none present.
    """
    total = (values * weights.unsqueeze(-1)).sum(dim=1)
    return total / weights.sum(dim=1, keepdim=True).clamp_min(1.0)
