"""Depth map encoder: a small residual CNN over one-channel depth images."""

from __future__ import annotations

from torch import Tensor, nn

from multimodal_fer.models.blocks import residual_cnn2d
from multimodal_fer.models.encoders.base import Encoder


class DepthCNN(Encoder):
    """Residual CNN for normalised face depth maps.

    Args:
        out_dim: size of the output feature vector.
        in_channels: depth channels C (1 for depth alone; 2 for depth plus a validity mask).
        widths: channels of the residual stages; the map is downsampled by ``2 ** len(widths)``.

    Input: normalised float depth (B, C, H, W), H = W >= 16 (e.g. 64 or 112).
    Output: (B, out_dim).

    """

    modality = "depth"

    def __init__(self, out_dim: int = 128, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__(out_dim)
        self.in_channels = in_channels
        self.features = residual_cnn2d(in_channels, widths)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], out_dim)

    def forward_tokens(self, x: Tensor) -> Tensor:
        """Depth maps (B, C, H, W) → one token per position of the last feature map, (B, h·w, out_dim).

        Tokens are the final linear layer applied at every position, so their mean is :meth:`forward`'s vector.
        """
        return self.fc(self.features(x).flatten(2).transpose(1, 2))

    def forward(self, x: Tensor) -> Tensor:
        """Encode depth maps.

        Args:
            x: normalised depth, float (B, C, H, W).

        Returns:
            Features, (B, out_dim).

        """
        return self.fc(self.pool(self.features(x)).flatten(1))
