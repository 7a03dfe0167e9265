"""The multimodal FER model: modality encoders -> fusion -> multitask heads (plain ``nn.Module``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.models.feature_norm import FeatureNorm
from multimodal_fer.models.fusion.base import Fusion
from multimodal_fer.models.heads.multitask import MultitaskHeads
from multimodal_fer.types import LabelSpace, validate_modalities


class MultimodalFERModel(nn.Module):
    """Encoders keyed by modality name, a fusion module and one head per labelled task.

    Every size is derived: the fusion is built with ``{m: encoder.out_dim}``, the heads from
    ``fusion.out_dim`` and the label space.

    Each encoder's features pass through a :class:`FeatureNorm` (batch normalisation over the present
    samples) before the fusion. Encoders run only on the samples where their modality is present (absent
    samples never reach them, so they cannot disturb batch-norm statistics); absent samples give the fusion zeros with
    ``present=False``. If a modality is absent from a whole batch its encoder is not run at all, so under
    DDP with missing modalities use ``find_unused_parameters=True`` (the Lightning strategy
    ``ddp_find_unused_parameters_true``).

    Args:
        encoders: the encoders, either keyed by modality name (each key must equal the encoder's
            ``modality``) or as a list (keyed by their ``modality``). One per modality at most.
        fusion: builds the fusion module from ``{modality: out_dim}``, e.g. the class ``AttentionFusion``
            or ``functools.partial(AttentionFusion, d_model=256)``.
        label_space: the dataset's label space; sizes the heads.
        head_hidden_dim: hidden size of each head.
        head_dropout: dropout inside each head.

    """

    def __init__(
        self,
        encoders: Mapping[str, Encoder] | Sequence[Encoder],
        fusion: Callable[[Mapping[str, int]], Fusion],
        label_space: LabelSpace,
        head_hidden_dim: int = 128,
        head_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if isinstance(encoders, Mapping):
            for name, encoder in encoders.items():
                if name != encoder.modality:
                    raise ValueError(
                        f"encoders[{name!r}] is a {type(encoder).__name__}, which reads {encoder.modality!r}."
                    )
            named = dict(encoders)
        else:
            named = {}
            for encoder in encoders:
                if encoder.modality in named:
                    raise ValueError(f"Two encoders read the modality {encoder.modality!r}; give one each.")
                named[encoder.modality] = encoder
        order = validate_modalities(list(named))
        self.encoders = nn.ModuleDict({m: named[m] for m in order})
        self.feature_norms = nn.ModuleDict({m: FeatureNorm(named[m].out_dim) for m in order})
        self.fusion = fusion({m: named[m].out_dim for m in order})
        self.heads = MultitaskHeads(self.fusion.out_dim, label_space, head_hidden_dim, head_dropout)
        self.label_space = label_space

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities with an encoder, in canonical order."""
        return tuple(self.encoders.keys())

    def encode(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Run each encoder on the samples where its modality is present.

        Args:
            inputs: ``inputs[m]`` is the modality's batch (B, ...); modalities without an encoder are ignored.
            present: ``present[m]`` bool (B,); if missing for a modality in ``inputs``, all its samples
                count as present.

        Returns:
            ``features[m]`` (B, out_dim_m), zeros where absent, for each modality with an encoder, data in
            ``inputs`` and at least one present sample.

        """
        features: dict[str, Tensor] = {}
        for m, encoder in self.encoders.items():
            if m not in inputs:
                continue
            x = inputs[m]
            norm = self.feature_norms[m]
            if m not in present:
                features[m] = norm(encoder(x))
                continue
            mask = present[m].to(device=x.device, dtype=torch.bool)
            num_present = int(mask.sum())
            if num_present == x.shape[0]:
                features[m] = norm(encoder(x))
            elif num_present > 0:
                encoded = norm(encoder(x[mask]))
                index = mask.nonzero(as_tuple=True)[0]
                features[m] = encoded.new_zeros(x.shape[0], encoded.shape[1]).index_put((index,), encoded)
        return features

    def forward(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Predict every task from whichever modalities are present.

        Args:
            inputs: ``inputs[m]`` is the modality's batch, e.g. face (B, 3, H, W), audio (B, S), depth
                (B, 1, H, W), physio (B, C, T). A modality missing here counts as absent for all samples.
            present: ``present[m]`` bool (B,).

        Returns:
            The heads' outputs: ``"expr"`` (B, num_expressions), ``"au"`` (B, num_action_units),
            ``"va"`` (B, num_dimensions), only for tasks in the label space.

        """
        batch = self._batch_size(inputs, present)
        encoded = self.encode(inputs, present)
        ref = next(self.parameters())
        features: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        for m, encoder in self.encoders.items():
            if m in encoded:
                features[m] = encoded[m]
                masks[m] = (
                    present[m].to(device=encoded[m].device, dtype=torch.bool)
                    if m in present
                    else torch.ones(batch, dtype=torch.bool, device=encoded[m].device)
                )
            else:
                features[m] = ref.new_zeros(batch, encoder.out_dim)
                masks[m] = torch.zeros(batch, dtype=torch.bool, device=ref.device)
        return self.heads(self.fusion(features, masks))

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Count parameters.

        Args:
            trainable_only: count only parameters with ``requires_grad``.

        Returns:
            The number of scalar parameters.

        """
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _batch_size(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> int:
        for m in self.encoders:
            if m in present:
                return int(present[m].shape[0])
        for m in self.encoders:
            if m in inputs:
                return int(inputs[m].shape[0])
        raise ValueError(f"Cannot tell the batch size: neither inputs nor present has any of {list(self.encoders)}.")
