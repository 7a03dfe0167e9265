"""Building blocks shared by encoders and restoration networks: 2-D residual CNNs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class ResidualBlock2d(nn.Module):
    """Two 3x3 conv-BN layers with a (projected when needed) identity shortcut, then ReLU.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        stride: stride of the first conv (2 halves H and W).

    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: (B, C_in, H, W).

        Returns:
            (B, C_out, ceil(H / stride), ceil(W / stride)).

        """
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))

    def zero_init_residual(self) -> None:
        """Zero the scale of the residual branch's last norm (``bn2``), so the branch outputs 0 at first.

        The block then computes ``ReLU(shortcut(x))``: the identity on non-negative inputs (every block's input
        after the stem's ReLU) when the shortcut is the identity, the projection otherwise. Training starts as a
        shallower network and each branch grows from zero (Goyal et al., "Accurate, Large Minibatch SGD", 2017).
        """
        nn.init.zeros_(self.bn2.weight)


def residual_cnn2d(in_channels: int, widths: Sequence[int], zero_init_residual: bool = False) -> nn.Sequential:
    """Build a stride-2 conv-BN-ReLU stem followed by one residual block per width.

    The first block keeps the resolution, every later block halves it, so the output is downsampled by
    ``2 ** len(widths)``.

    Args:
        in_channels: input channels.
        widths: channels of the stem/first block and of each later block.
        zero_init_residual: start every block's residual branch at zero
            (:meth:`ResidualBlock2d.zero_init_residual`); False keeps PyTorch's default initialisation.

    Returns:
        A module mapping (B, in_channels, H, W) to (B, widths[-1], H', W').

    """
    if not widths:
        raise ValueError("widths must name at least one stage.")
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(inplace=True),
    ]
    previous = widths[0]
    for i, width in enumerate(widths):
        block = ResidualBlock2d(previous, width, stride=1 if i == 0 else 2)
        if zero_init_residual:
            block.zero_init_residual()
        layers.append(block)
        previous = width
    return nn.Sequential(*layers)
