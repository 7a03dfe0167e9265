"""Face image encoder: a small residual CNN, optionally behind an occluded-face restorer."""

from __future__ import annotations

from torch import Tensor, nn

from multimodal_fer.models.blocks import residual_cnn2d
from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.models.restoration.restorer import PretrainedRestorer
from multimodal_fer.standardization import restandardize


class FaceCNN(Encoder):
    """Residual CNN for aligned face crops.

    Args:
        out_dim: size of the output feature vector.
        widths: channels of the residual stages; the crop is downsampled by ``2 ** len(widths)``.
        dropout: dropout before the final linear layer.
        restorer: an occluded-face restorer run before the CNN (finds occluders, fills them, keeps the visible
            pixels), e.g. ``PretrainedRestorer(checkpoint=..., finetune=False)``; None (default) switches
            restoration off. Its output is standardised per image again before the CNN.
        zero_init_residual: start every residual block's branch at zero (the scale of its last BatchNorm), so each
            block first computes ``ReLU(shortcut(x))`` (the identity where the shortcut is) and the CNN begins as its
            stem and shortcuts; see :meth:`~multimodal_fer.models.blocks.ResidualBlock2d.zero_init_residual`.
            Default False (PyTorch's initialisation, as trained before).

    Input: normalised float images (B, 3, H, W), any H = W >= 32 (e.g. 64 or 112).
    Output: (B, out_dim).

    """

    modality = "face"

    def __init__(
        self,
        out_dim: int = 128,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        dropout: float = 0.0,
        restorer: PretrainedRestorer | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(out_dim)
        self.restorer = restorer
        self.features = residual_cnn2d(3, widths, zero_init_residual=zero_init_residual)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1], out_dim)

    def feature_map(self, x: Tensor) -> Tensor:
        """The last residual stage's map (B, widths[-1], H / 2**len(widths), W / 2**len(widths))."""
        if self.restorer is not None:
            x = restandardize(self.restorer(x))
        return self.features(x)

    def forward_tokens(self, x: Tensor) -> Tensor:
        """Face crops (B, 3, H, W) → one token per position of the last feature map, (B, h·w, out_dim).

        Tokens are the final linear layer applied at every position, so their mean is :meth:`forward`'s vector.
        """
        return self.fc(self.dropout(self.feature_map(x).flatten(2).transpose(1, 2)))

    def forward(self, x: Tensor) -> Tensor:
        """Encode face crops.

        Args:
            x: normalised images, float (B, 3, H, W).

        Returns:
            Features, (B, out_dim).

        """
        h = self.pool(self.feature_map(x)).flatten(1)
        return self.fc(self.dropout(h))
