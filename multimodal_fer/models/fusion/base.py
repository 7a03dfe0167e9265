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

    Args:
        in_dims: feature size of each fused modality, e.g. ``{"face": 128, "audio": 128}`` (1 to 4 of
            :data:`~multimodal_fer.types.MODALITIES`; stored in canonical order).

    Attributes:
        modalities: fused modality names in canonical order.
        in_dims: feature size per modality, in canonical order.
        out_dim: size of the fused vector :meth:`forward` returns (set by subclasses).

    """

    out_dim: int

    def __init__(self, in_dims: Mapping[str, int]) -> None:
        super().__init__()
        self.modalities: tuple[str, ...] = validate_modalities(list(in_dims))
        self.in_dims: dict[str, int] = {m: int(in_dims[m]) for m in self.modalities}

    def masked_features(
        self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """Check inputs and zero the features of absent samples.

        A modality missing from ``features`` counts as absent for every sample.

        Args:
            features: ``features[m]`` is (B, in_dims[m]).
            present: ``present[m]`` is bool (B,).

        Returns:
            For each fused modality in canonical order, ``(features (B, in_dims[m]), present bool (B,))``
            where absent rows are exactly zero.

        """
        reference = next((features[m] for m in self.modalities if m in features), None)
        if reference is None:
            raise ValueError(f"No features for any fused modality {list(self.modalities)}.")
        batch = reference.shape[0]
        out: dict[str, tuple[Tensor, Tensor]] = {}
        for m in self.modalities:
            if m not in features:
                feat = reference.new_zeros(batch, self.in_dims[m])
                mask = torch.zeros(batch, dtype=torch.bool, device=reference.device)
            else:
                feat = features[m]
                expected = (batch, self.in_dims[m])
                if tuple(feat.shape) != expected:
                    raise ValueError(f"features[{m!r}] has shape {tuple(feat.shape)}, expected {expected}.")
                if m not in present:
                    raise KeyError(f"present[{m!r}] is missing; every batch needs a mask per modality.")
                mask = present[m].to(device=feat.device, dtype=torch.bool)
                if tuple(mask.shape) != (batch,):
                    raise ValueError(f"present[{m!r}] has shape {tuple(mask.shape)}, expected ({batch},).")
                zero = torch.zeros((), dtype=feat.dtype, device=feat.device)
                feat = torch.where(mask.unsqueeze(1), feat, zero)
            out[m] = (feat, mask)
        return out

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        """Fuse modality features.

        Args:
            features: ``features[m]`` is (B, in_dims[m]).
            present: ``present[m]`` is bool (B,).

        Returns:
            Fused features, (B, out_dim).

        """
        raise NotImplementedError
