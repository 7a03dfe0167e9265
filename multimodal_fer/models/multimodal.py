"""The multimodal FER model: modality encoders -> fusion -> multitask heads (plain ``nn.Module``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.models.encoders.by_modality import ModalityEncoders
from multimodal_fer.models.feature_norm import FeatureNorm
from multimodal_fer.models.fusion.base import Fusion
from multimodal_fer.models.heads.multitask import MultitaskHeads
from multimodal_fer.types import LabelSpace, validate_modalities


class MultimodalOutput(NamedTuple):
    """Everything one forward of :class:`MultimodalFERModel` computes, beside the predictions.

    A named tuple, so that DDP, ``torch.compile`` and pytree utilities see its tensors. B is the batch size.

    Attributes:
        heads: the predictions, only for tasks in the label space: ``"expr"`` logits (B, num_expressions),
            ``"au"`` logits (B, num_action_units), ``"va"`` values (B, num_dimensions) in [-1, 1].
        fused: the fused representation z (B, D) every head reads (what GradNorm balances gradients on); None for
            a late fusion, whose heads read each modality's own representation.
        features: per modality with at least one present sample, its encoder's normalised features (B, D_m), or
            tokens (B, T_m, D_m) for a token fusion; rows of absent samples are zeros.
        present: bool (B,) presence of every modality with an encoder, before modality dropout (only these rows
            of ``features`` are real).
        auxiliary_losses: per modality whose encoder ran and has a regulariser of its own
            (:meth:`~multimodal_fer.models.encoders.Encoder.auxiliary_loss`, e.g. PointNet's T-Net term), that
            unweighted scalar over the samples the encoder ran on.
        unimodal: per encoded modality, its own heads' predictions (same keys and shapes as ``heads``) when the
            model has unimodal heads; empty otherwise.
    """

    heads: dict[str, Tensor]
    fused: Tensor | None
    features: dict[str, Tensor]
    present: dict[str, Tensor]
    auxiliary_losses: dict[str, Tensor]
    unimodal: dict[str, dict[str, Tensor]]


class MultimodalFERModel(nn.Module):
    """Encoders keyed by modality name, a fusion module and one head per labelled task.

    Every size is derived: the fusion is built with ``{m: encoder.out_dim}`` (or ``{m: encoder.token_dim}``
    for a fusion that reads token sequences, e.g. :class:`~multimodal_fer.models.fusion.MulTFusion`), the
    heads from ``fusion.out_dim`` and the label space. A late fusion
    (:class:`~multimodal_fer.models.fusion.LateFusion`) gets one set of heads per modality, and the model
    averages their outputs over the modalities present in each sample.

    Each encoder's features pass through a :class:`FeatureNorm` (batch normalisation over the present
    samples) before the fusion. Encoders run only on the samples where their modality is present (absent
    samples never reach them, so they cannot disturb batch-norm statistics); absent samples give the fusion
    zeros with ``present=False``, or, with ``missing_tokens``, a learned per-modality "missing" vector with
    ``present=True``.

    **Modality dropout** (training mode only) hides each present modality of each sample with probability
    ``modality_dropout[m]`` after encoding, never every modality of a sample (one of its present modalities,
    drawn at random, is kept). The encoders still run on the dropped samples, so every encoder takes part in
    every step where its modality exists: dropout alone never leaves DDP with unused parameters. If a modality is
    absent from a whole batch its encoder is not run at all; data with such batches need the Lightning strategy
    ``ddp_find_unused_parameters_true``.

    **The output** of a forward is a :class:`MultimodalOutput`: the heads' predictions, the fused representation,
    each modality's features and presence, the encoders' auxiliary losses and the unimodal heads' predictions.
    Nothing is kept on the module between calls.

    **Auxiliary losses.** ``MultimodalOutput.auxiliary_losses`` maps each modality whose encoder ran and returned
    an :meth:`~multimodal_fer.models.encoders.Encoder.auxiliary_loss` (e.g. PointNet's T-Net regulariser) to that
    scalar; it is computed over the samples the encoder ran on, the present ones (including those modality dropout
    hides afterwards, since dropout acts after encoding). It adds no parameter and no new path to one: the
    regularised modules already take part in the forward. Empty when no encoder has one; the training task weights
    and adds them.

    **Unimodal heads.** With ``unimodal_heads``, every modality also gets its own task heads on its encoder's
    (normalised) features — the mean of the valid tokens for a token fusion — and ``MultimodalOutput.unimodal``
    maps each encoded modality to those heads' outputs (B, ...); ``MultimodalOutput.present`` says which rows
    carry real features. The training task adds their losses (deep supervision per modality), so every encoder must
    learn from its own signal even where another modality would let the fused heads ignore it. Late fusion has such
    heads already and refuses them.

    Args:
        encoders: the encoders keyed by modality name (a :class:`~multimodal_fer.models.encoders.ModalityEncoders`
            or a mapping; each key must equal the modality its encoder reads), or a sequence (each placed by the
            modality it reads). One per modality at most.
        fusion: builds the fusion module from ``{modality: size}``, e.g. the class ``AttentionFusion``
            or ``functools.partial(AttentionFusion, d_model=256)``.
        label_space: the dataset's label space; sizes the heads.
        head_hidden_dim: hidden size of each head.
        head_dropout: dropout inside each head.
        modality_dropout: probability of hiding a present modality during training, one number for every
            modality or a mapping per modality (unlisted modalities: 0).
        missing_tokens: replace absent modalities by learned "missing" vectors (tokens) instead of masking them.
        unimodal_heads: give every modality its own task heads (see above).
    """

    def __init__(
        self,
        encoders: ModalityEncoders | Mapping[str, Encoder] | Sequence[Encoder],
        fusion: Callable[[Mapping[str, int]], Fusion],
        label_space: LabelSpace,
        head_hidden_dim: int = 128,
        head_dropout: float = 0.1,
        modality_dropout: float | Mapping[str, float] = 0.0,
        missing_tokens: bool = False,
        unimodal_heads: bool = False,
    ) -> None:
        super().__init__()
        named = ModalityEncoders.of(encoders).as_dict()
        order = validate_modalities(list(named))
        self.encoders = nn.ModuleDict({m: named[m] for m in order})
        self.uses_tokens = bool(getattr(fusion, "consumes_tokens", False))
        sizes = {m: (named[m].token_dim if self.uses_tokens else named[m].out_dim) for m in order}
        self.fusion = fusion(sizes)
        if self.fusion.consumes_tokens != self.uses_tokens:
            self.uses_tokens = self.fusion.consumes_tokens
            self.fusion = fusion({m: (named[m].token_dim if self.uses_tokens else named[m].out_dim) for m in order})
        self.feature_norms = nn.ModuleDict({m: FeatureNorm(self.fusion.in_dims[m]) for m in order})
        self.late = bool(getattr(self.fusion, "late", False))
        if self.late:
            self.modality_heads = nn.ModuleDict(
                {m: MultitaskHeads(self.fusion.out_dim, label_space, head_hidden_dim, head_dropout) for m in order}
            )
        else:
            self.heads = MultitaskHeads(self.fusion.out_dim, label_space, head_hidden_dim, head_dropout)
        self.label_space = label_space
        self.modality_dropout = self._dropout_rates(modality_dropout, order)
        self.missing_tokens = (
            nn.ParameterDict({m: nn.Parameter(torch.randn(self.fusion.in_dims[m]) * 0.02) for m in order})
            if missing_tokens
            else None
        )
        if unimodal_heads and self.late:
            raise ValueError(
                "Late fusion already trains one set of heads per modality; unimodal_heads would add a second. "
                "Switch unimodal heads off (unimodal_loss_weight: 0) or use another fusion."
            )
        self.unimodal_heads = (
            nn.ModuleDict(
                {m: MultitaskHeads(self.fusion.in_dims[m], label_space, head_hidden_dim, head_dropout) for m in order}
            )
            if unimodal_heads
            else None
        )

    @staticmethod
    def _dropout_rates(rates: float | Mapping[str, float], order: tuple[str, ...]) -> dict[str, float]:
        if isinstance(rates, Mapping):
            unknown = sorted(set(rates) - set(order))
            if unknown:
                raise ValueError(
                    f"modality_dropout names modalities {unknown} that have no encoder (encoders: {list(order)})."
                )
            chosen = {m: float(rates.get(m, 0.0)) for m in order}
        else:
            chosen = {m: float(rates) for m in order}
        for m, rate in chosen.items():
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"modality_dropout for {m!r} must lie in [0, 1), got {rate}.")
        return chosen

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities with an encoder, in canonical order."""
        return tuple(self.encoders.keys())

    def side_inputs(self) -> tuple[str, ...]:
        """Batch keys the encoders read besides their modalities' tensors (their ``side_inputs``)."""
        return tuple(key for encoder in self.encoders.values() for key in encoder.side_inputs)

    def _encode_one(self, modality: str, x: Tensor, side: Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """Features (N, D) — or tokens (N, T, D) and their padding (N, T) or None — of present samples."""
        encoder, norm = self.encoders[modality], self.feature_norms[modality]
        if not self.uses_tokens:
            return norm(encoder(x, **side)), None
        out = encoder.forward_tokens(x, **side)
        tokens, padding = out if isinstance(out, tuple) else (out, None)  # (N, T, D), (N, T)
        flat = tokens.reshape(-1, tokens.shape[-1])
        if padding is None:
            return norm(flat).view_as(tokens), None
        # Normalise with the statistics of real tokens only; padded tokens become zeros.
        valid = ~padding.reshape(-1)
        normed = flat.new_zeros(flat.shape).index_put((valid.nonzero(as_tuple=True)[0],), norm(flat[valid]))
        return normed.view_as(tokens), padding

    def encode(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Run each encoder on the samples where its modality is present.

        Args:
            inputs: ``inputs[m]`` is the modality's batch (B, ...), plus any encoder's side inputs (B, ...)
                under their own keys; modalities without an encoder are ignored.
            present: ``present[m]`` bool (B,); if missing for a modality in ``inputs``, all its samples
                count as present.

        Returns:
            ``features[m]`` (B, out_dim_m) — or tokens (B, T_m, token_dim_m) for a token fusion — zeros where
            absent, for each modality with an encoder, data in ``inputs`` and at least one present sample.
        """
        return self._encode(inputs, present)[0]

    def _encode(
        self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """Features (as :meth:`encode`), token paddings bool (B, T_m) and the encoders' auxiliary losses."""
        features: dict[str, Tensor] = {}
        paddings: dict[str, Tensor] = {}
        auxiliary_losses: dict[str, Tensor] = {}
        for m, encoder in self.encoders.items():
            if m not in inputs:
                continue
            x = inputs[m]
            side = {key: inputs[key] for key in encoder.side_inputs if key in inputs}
            mask = (
                present[m].to(device=x.device, dtype=torch.bool)
                if m in present
                else torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            )
            num_present = int(mask.sum())
            if num_present == x.shape[0]:
                features[m], padding = self._encode_one(m, x, side)
                if padding is not None:
                    paddings[m] = padding
            elif num_present > 0:
                encoded, padding = self._encode_one(m, x[mask], {k: v[mask] for k, v in side.items()})
                index = (mask.nonzero(as_tuple=True)[0],)
                features[m] = encoded.new_zeros(x.shape[0], *encoded.shape[1:]).index_put(index, encoded)
                if padding is not None:
                    # Absent rows: nothing padded (their tokens are zeroed and masked by presence anyway).
                    paddings[m] = padding.new_zeros(x.shape[0], padding.shape[1]).index_put(index, padding)
            if num_present > 0:
                auxiliary = encoder.auxiliary_loss()
                if auxiliary is not None:
                    auxiliary_losses[m] = auxiliary
        return features, paddings, auxiliary_losses

    def drop_modalities(self, masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Modality dropout: hide present modalities at random, keeping at least one per sample that had one.

        Args:
            masks: ``masks[m]`` bool (B,) presence of every modality with an encoder.

        Returns:
            New presence masks, bool (B,) each; unchanged when no rate is positive.
        """
        if not any(rate > 0 for rate in self.modality_dropout.values()):
            return dict(masks)
        order = list(masks)
        before = torch.stack([masks[m] for m in order], dim=1)  # (B, M)
        rates = torch.tensor([self.modality_dropout[m] for m in order], device=before.device)
        keep = torch.rand(before.shape, device=before.device) >= rates
        after = before & keep
        emptied = before.any(dim=1) & ~after.any(dim=1)
        if emptied.any():
            # Restore one originally present modality, uniformly at random, where dropout hid them all.
            scores = torch.rand(before.shape, device=before.device).masked_fill(~before, -1.0)
            rescue = torch.zeros_like(before).scatter_(1, scores.argmax(dim=1, keepdim=True), True)
            after = torch.where(emptied.unsqueeze(1), rescue, after)
        return {m: after[:, i] for i, m in enumerate(order)}

    def _fill_missing(self, features: dict[str, Tensor], masks: dict[str, Tensor]) -> None:
        """Replace absent samples' features by the learned missing token and mark them present (in place)."""
        assert self.missing_tokens is not None
        for m in self.encoders:
            token = self.missing_tokens[m].to(features[m].dtype)
            shape = (-1,) + (1,) * (features[m].ndim - 1)
            features[m] = torch.where(masks[m].view(shape), features[m], token)
            masks[m] = torch.ones_like(masks[m])

    def forward(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> MultimodalOutput:
        """Predict every task from whichever modalities are present.

        Args:
            inputs: ``inputs[m]`` is the modality's batch, e.g. face (B, 3, H, W), audio (B, S), depth
                (B, 1, H, W), physio (B, C, T). A modality missing here counts as absent for all samples.
            present: ``present[m]`` bool (B,).

        Returns:
            A :class:`MultimodalOutput`; its ``heads`` are the predictions: ``"expr"`` (B, num_expressions),
            ``"au"`` (B, num_action_units), ``"va"`` (B, num_dimensions), only for tasks in the label space.
        """
        batch = self._batch_size(inputs, present)
        encoded, paddings, auxiliary_losses = self._encode(inputs, present)
        ref = next(self.parameters())
        features: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        for m in self.encoders:
            if m in encoded:
                features[m] = encoded[m]
                masks[m] = (
                    present[m].to(device=encoded[m].device, dtype=torch.bool)
                    if m in present
                    else torch.ones(batch, dtype=torch.bool, device=encoded[m].device)
                )
            else:
                size = self.fusion.in_dims[m]
                features[m] = ref.new_zeros((batch, 1, size) if self.uses_tokens else (batch, size))
                masks[m] = torch.zeros(batch, dtype=torch.bool, device=ref.device)
        unimodal = self._predict_unimodal(encoded, paddings)
        presence = dict(masks)
        if self.training:
            masks = self.drop_modalities(masks)
        if self.missing_tokens is not None:
            self._fill_missing(features, masks)
        fused: Tensor | None = None
        if self.late:
            heads = self._late_outputs(features, masks)
        else:
            fused = self.fusion(features, masks, padding=paddings) if paddings else self.fusion(features, masks)
            heads = self.heads(fused)
        return MultimodalOutput(heads, fused, encoded, presence, auxiliary_losses, unimodal)

    def _predict_unimodal(
        self, encoded: Mapping[str, Tensor], paddings: Mapping[str, Tensor]
    ) -> dict[str, dict[str, Tensor]]:
        """The unimodal heads' outputs from each encoded modality's features (B, D) or tokens (B, T, D)."""
        outputs: dict[str, dict[str, Tensor]] = {}
        if self.unimodal_heads is None:
            return outputs
        for m, feature in encoded.items():
            if feature.ndim == 3:  # tokens: mean over the valid ones
                valid = (
                    (~paddings[m]).unsqueeze(-1).to(feature.dtype)
                    if m in paddings
                    else torch.ones_like(feature[..., :1])
                )
                feature = (feature * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1.0)
            outputs[m] = self.unimodal_heads[m](feature)
        return outputs

    def _late_outputs(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-modality heads on a late fusion's representations, averaged over the present modalities."""
        stacked, flags = self.fusion.per_modality(features, masks)  # (B, M, D), (B, M)
        per_modality = [self.modality_heads[m](stacked[:, i]) for i, m in enumerate(self.fusion.modalities)]
        weights = flags / flags.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, M); rows of zeros if none present
        return {
            task: torch.einsum(
                "bm,bmk->bk",
                weights.to(per_modality[0][task].dtype),
                torch.stack([out[task] for out in per_modality], dim=1),
            )
            for task in per_modality[0]
        }

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
