"""Gated convolution: a convolution whose output is multiplied by a learned soft gate per pixel and channel.

The gate lets an inpainting network learn, layer by layer, which pixels carry valid information (the idea of
DeepFill v2, Yu et al., ICCV 2019); plain convolutions treat hole pixels like valid ones.
"""

from __future__ import annotations

from torch import Tensor, nn


class GatedConv2d(nn.Module):
    """``activation(features) * sigmoid(gate)``, both from one convolution with twice the channels.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: odd kernel size.
        stride: convolution stride (2 halves H and W).
        dilation: dilation rate (the padding keeps the size for stride 1).
        activation: apply ELU to the features (False for an output layer).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        activation: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}.")
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(in_channels, 2 * out_channels, kernel_size, stride, padding, dilation)
        self.activation: nn.Module = nn.ELU() if activation else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the gated convolution.

        Args:
            x: (B, C_in, H, W).

        Returns:
            (B, C_out, ceil(H / stride), ceil(W / stride)).
        """
        features, gate = self.conv(x).chunk(2, dim=1)
        return self.activation(features) * gate.sigmoid()
