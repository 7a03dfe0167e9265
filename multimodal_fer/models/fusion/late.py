"""Late fusion: every modality is predicted on its own and the predictions are averaged."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from multimodal_fer.models.fusion.base import Fusion, masked_mean, presence_matrix


class LateFusion(Fusion):
    """Decision-level fusion: per-modality representations, per-modality heads, averaged predictions.

    Each modality's features pass through their own small MLP to ``out_dim``. Inside
    :class:`~multimodal_fer.models.multimodal.MultimodalFERModel` (which checks :attr:`late`), every
    modality then gets its *own* task heads and the model averages the heads' outputs (logits; valence/arousal
    values) over the modalities present in each sample. Used on its own through :meth:`forward`, the module
    returns the mean of the present modalities' representations, so it also fits the plain fusion interface.

    Args:
        in_dims: feature size per modality (from the encoders' ``out_dim``).
        out_dim: size of each modality's representation.
        dropout: dropout inside each modality's MLP.

    Attributes:
        late: True; tells the model to build per-modality heads and average their outputs.
    """

    late = True

    def __init__(self, in_dims: Mapping[str, int], out_dim: int = 128, dropout: float = 0.1) -> None:
        super().__init__(in_dims)
        self.out_dim = int(out_dim)
        self.branches = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(self.in_dims[m], self.out_dim), nn.GELU(), nn.Dropout(dropout))
                for m in self.modalities
            }
        )

    def per_modality(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Each modality's representation and the presence matrix.

        Args:
            features: ``features[m]`` is (B, in_dims[m]); a missing key counts as absent everywhere.
            present: ``present[m]`` is bool (B,).

        Returns:
            ``(representations (B, M, out_dim), presence float (B, M))`` over :attr:`modalities` in canonical
            order; absent modalities' rows are zeros.
        """
        inputs = self.masked_features(features, present)
        flags = presence_matrix(inputs)
        stacked = torch.stack([self.branches[m](feat) for m, (feat, _) in inputs.items()], dim=1)
        return stacked * flags.unsqueeze(-1), flags

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        """Mean of the present modalities' representations, (B, out_dim) (zeros where none is present)."""
        stacked, flags = self.per_modality(features, present)
        return masked_mean(stacked, flags)
