"""The interface every modality encoder implements."""

from __future__ import annotations

from torch import Tensor, nn

from multimodal_fer.types import MODALITIES


class Encoder(nn.Module):
    """Base class of modality encoders: one modality's input to a feature vector.

    Subclasses set the class attribute :attr:`modality` and pass ``out_dim`` to this constructor; fusion
    modules and heads read :attr:`out_dim` instead of having sizes typed by hand.

    Attributes:
        modality: name of the modality this encoder reads, one of :data:`~multimodal_fer.types.MODALITIES`.
        out_dim: size of the feature vector :meth:`forward` returns.

    """

    modality: str = ""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        if self.modality not in MODALITIES:
            raise ValueError(
                f"{type(self).__name__}.modality is {self.modality!r}; it must be one of {list(MODALITIES)}."
            )
        if out_dim < 1:
            raise ValueError(f"out_dim must be positive, got {out_dim}.")
        self.out_dim: int = int(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Encode a batch of one modality.

        Args:
            x: the modality's input, batch first (shape documented by each subclass).

        Returns:
            Features, shape (B, out_dim).

        """
        raise NotImplementedError
