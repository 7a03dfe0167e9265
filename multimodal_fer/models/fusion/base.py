"""The contract every fusion module keeps, declared on :class:`Fusion`."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from multimodal_fer.types import validate_modalities


class Fusion(nn.Module):
    """Base class of fusion modules: per-modality features and presence masks to one vector per sample.

    **Inputs.** The model builds a fusion as ``fusion(in_dims)``: ``in_dims`` maps each fused modality (1 to 4 of
    :data:`~multimodal_fer.types.MODALITIES`) to its feature size, read from the encoders (``out_dim``, or
    ``token_dim`` when :attr:`consumes_tokens`), never typed by hand. Every other constructor argument has a default
    (a config's ``init_args`` override them). :meth:`forward` takes

    - ``features[m]``: float (B, in_dims[m]), or (B, T_m, in_dims[m]) with any T_m >= 1 per modality when
      :attr:`consumes_tokens`. A fused modality missing from ``features`` is absent for every sample; keys of
      modalities that are not fused are ignored.
    - ``present[m]``: bool (B,), True where sample b has modality m; required for every fused modality in ``features``.
      A missing modality is data, not an error: any pattern is allowed, including a sample with a single present
      modality or with none.
    - ``padding[m]`` (token fusions only, optional keyword): bool (B, T_m), True where a token is padding of a
      variable-length input. The model passes it only to fusions that consume tokens, and only for the
      modalities whose encoder returns one.

    **Output.** float (B, :attr:`out_dim`), finite for every sample, including a sample with no modality present
    (its row then depends on the parameters only).

    **Guarantees** (checked for every exported fusion by ``tests/test_fusion.py``):

    - *Absent values cannot change the output*: where ``present[m][b]`` is False, row b of the output is the same
      whatever ``features[m][b]`` holds (random values, NaN, inf), with the same dropout draws, and the gradient
      reaching ``features[m][b]`` is exactly zero. Likewise padded tokens cannot change the output.
    - *Samples are independent*: in eval mode, row b equals the output for sample b fused alone.
    - *Present modalities count*: changing a present modality's features changes the output, and gradients reach
      every present sample's features.
    - A modality missing from ``features`` gives the same output as one marked absent everywhere.

    **What a new fusion provides**: a module in this package with a subclass that calls
    ``super().__init__(in_dims)``, sets ``self.out_dim`` and implements :meth:`forward`, starting with
    :meth:`masked_features` (it checks shapes and masks, and zeroes absent rows with ``torch.where`` so NaN and inf
    cannot leak through ``0 * x``) and then keeping absent modalities out of the fusion itself (attention
    ``key_padding_mask``, zero mixing weights, presence flags, ...); optionally :attr:`consumes_tokens` or
    :attr:`late` with what they require; its export in ``fusion/__init__.py`` (``__all__``); and a config naming it
    (``configs/overlays/fusion_<name>.yaml``). The model, the task and the tests need no change.

    Args:
        in_dims: feature (or token) size of each fused modality, e.g. ``{"face": 128, "audio": 128}`` (1 to 4
            of :data:`~multimodal_fer.types.MODALITIES`; stored in canonical order).

    Attributes:
        modalities: fused modality names in canonical order.
        in_dims: feature size per modality, in canonical order.
        out_dim: size of the fused vector :meth:`forward` returns (set by subclasses).
        consumes_tokens: class attribute; whether :meth:`forward` reads token sequences rather than vectors.
        late: class attribute; whether the model gives every modality its own heads (see :meth:`per_modality`).
    """

    out_dim: int
    """Size of the fused vector, (B, out_dim). Every subclass sets it in ``__init__``; the heads are sized from it
    (per modality for a :attr:`late` fusion, where it is the size of each modality's representation)."""

    consumes_tokens: ClassVar[bool] = False
    """Class attribute. False: ``features[m]`` is one vector per sample, (B, in_dims[m]), and ``in_dims`` holds the
    encoders' ``out_dim``. True: ``features[m]`` is a token sequence (B, T_m, in_dims[m]) from each encoder's
    :meth:`~multimodal_fer.models.encoders.Encoder.forward_tokens`, ``in_dims`` holds the encoders' ``token_dim``,
    and :meth:`forward` must accept the keyword ``padding`` (see the class docstring). The model reads it from the
    class before building the fusion, so it is a class attribute, not set per instance."""

    late: ClassVar[bool] = False
    """Class attribute. False: the model puts one set of task heads on :meth:`forward`'s output. True
    (decision-level fusion): the model calls :meth:`per_modality` instead of :meth:`forward`, gives every modality
    its own heads on its representation and averages the heads' outputs over the modalities present in each
    sample. A late fusion implements :meth:`per_modality`, and its :meth:`forward` (used outside the model) keeps
    the plain contract. A late fusion cannot consume tokens: :meth:`per_modality` receives no ``padding``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse, at class definition, a subclass that declares a capability without what it requires.

        Raises:
            TypeError: if :attr:`late` is set without :meth:`per_modality`, together with :attr:`consumes_tokens`,
                or if :attr:`consumes_tokens` is set and :meth:`forward` takes no ``padding`` argument.
        """
        super().__init_subclass__(**kwargs)
        if cls.late and cls.per_modality is Fusion.per_modality:
            raise TypeError(f"{cls.__name__} sets late = True, so it must implement per_modality().")
        if cls.late and cls.consumes_tokens:
            raise TypeError(f"{cls.__name__}: a late fusion cannot consume tokens (per_modality gets no padding).")
        if cls.consumes_tokens and "padding" not in inspect.signature(cls.forward).parameters:
            raise TypeError(
                f"{cls.__name__} sets consumes_tokens = True, so its forward() must accept padding=None "
                "(bool (B, T_m) per modality, True = padding token)."
            )

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
            features: ``features[m]`` is (B, in_dims[m]) (or (B, T_m, in_dims[m]) for token fusions, which also
                take ``padding``); a fused modality missing here is absent for every sample.
            present: ``present[m]`` is bool (B,).

        Returns:
            Fused features, (B, out_dim); absent modalities' values cannot change any row.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forward().")

    def per_modality(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Each modality's representation, for the per-modality heads of a :attr:`late` fusion.

        Only late fusions implement it; the model calls it instead of :meth:`forward` when :attr:`late` is True.

        Args:
            features: ``features[m]`` is (B, in_dims[m]); a fused modality missing here is absent for every sample.
            present: ``present[m]`` is bool (B,).

        Returns:
            ``(representations (B, M, out_dim), presence float (B, M))`` over :attr:`modalities` in canonical order,
            presence 1.0 where the modality is present; an absent modality's row is exactly zero, whatever its
            features hold.
        """
        raise NotImplementedError(f"{type(self).__name__} is not a late fusion; it has no per_modality().")


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
