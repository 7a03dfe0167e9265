"""The interface every modality encoder implements."""

from __future__ import annotations

from torch import Tensor, nn

from multimodal_fer.types import MODALITIES


class Encoder(nn.Module):
    """Base class of modality encoders: one modality's input to a feature vector.

    Subclasses set the class attribute :attr:`modality` and pass ``out_dim`` to this constructor; fusion
    modules and heads read :attr:`out_dim` instead of having sizes typed by hand.

    Token-sequence fusions (e.g. MulT) read :meth:`forward_tokens` instead of :meth:`forward`: the encoder's
    last feature map as a sequence (spatial positions of an image, time steps of a signal), of size
    :attr:`token_dim` each. The base class gives a one-token sequence (the feature vector), so any encoder
    works with them; the built-in encoders return their real sequences (the final linear layer applied at
    every position, so every parameter is used in both modes and the tokens' mean is the feature vector).

    Side inputs: an encoder that needs more than the modality's tensor (e.g. valid lengths of variable-length
    audio, precomputed physiological features) lists the batch keys in the class attribute
    :attr:`side_inputs`; the model slices them to the present samples and passes them to :meth:`forward` and
    :meth:`forward_tokens` as keyword arguments of the same names (absent from the batch: not passed).

    Auxiliary losses: an encoder with a regulariser of its own (e.g. PointNet's T-Net orthogonality term)
    returns it from :meth:`auxiliary_loss` after each forward; the model collects it from every encoder it ran
    and the training task adds it to the loss with a configured weight.

    Attributes:
        modality: name of the modality this encoder reads, one of :data:`~multimodal_fer.types.MODALITIES`.
        out_dim: size of the feature vector :meth:`forward` returns.

    """

    modality: str = ""
    side_inputs: tuple[str, ...] = ()

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        if self.modality not in MODALITIES:
            raise ValueError(
                f"{type(self).__name__}.modality is {self.modality!r}; it must be one of {list(MODALITIES)}."
            )
        if out_dim < 1:
            raise ValueError(f"out_dim must be positive, got {out_dim}.")
        self.out_dim: int = int(out_dim)
        self.token_dim: int = int(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Encode a batch of one modality.

        Args:
            x: the modality's input, batch first (shape documented by each subclass).

        Returns:
            Features, shape (B, out_dim).

        """
        raise NotImplementedError

    def forward_tokens(self, x: Tensor, **side: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Encode a batch as a token sequence (for token fusions such as MulT).

        Args:
            x: the modality's input, as for :meth:`forward`.
            **side: the encoder's :attr:`side_inputs`, as for :meth:`forward`.

        Returns:
            Tokens, (B, T, token_dim); here the feature vector as a single token (T = 1). An encoder of
            variable-length input may return ``(tokens, padding)`` with ``padding`` bool (B, T), True where a
            token is padding.
        """
        return self(x, **side).unsqueeze(1)

    def auxiliary_loss(self) -> Tensor | None:
        """The encoder's own regulariser of its latest forward, or None if it has none (the default).

        Read it right after :meth:`forward` or :meth:`forward_tokens`: it belongs to that call's samples only.

        Returns:
            A scalar with gradient, unweighted (the task applies the weight), or None.
        """
        return None

    def adapt_pretrained(self, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        """Another encoder's weights, as ``pretrained_encoders`` read them, made to fit this one's state dict.

        The default returns them unchanged: only weights of the same configuration fit (the loader refuses any
        missing, unexpected or mis-shaped entry). An encoder that extends a plain one in a way that starts exactly
        as the plain one (an input channel whose weights start at zero, a frozen module loaded from elsewhere)
        overrides this to accept the plain encoder's weights.

        Args:
            weights: the pretrained encoder's state dict (names relative to the encoder).

        Returns:
            The state dict to load.
        """
        return weights
