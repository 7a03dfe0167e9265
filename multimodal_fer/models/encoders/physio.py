"""Physiological signal encoder: a 1-D residual CNN over multichannel signals (ECG, EDA, RSP, ...)."""

from __future__ import annotations

from torch import Tensor, nn

from multimodal_fer.models.encoders.base import Encoder


class ResidualBlock1d(nn.Module):
    """Two conv1d-BN layers (kernel 5) with a (projected when needed) shortcut, then ReLU.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        stride: stride of the first conv (2 halves T).

    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, 5, stride=stride, padding=2, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm1d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: (B, C_in, T).

        Returns:
            (B, C_out, ceil(T / stride)).

        """
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class PhysioCNN(Encoder):
    """1-D residual CNN for windows of physiological signals.

    A stride-2 stem (kernel 7) and max-pool (stride 2) are followed by one residual block per width (the
    first keeps the length, later ones halve it), global average pooling over time and a linear layer.

    Args:
        in_channels: number of signal channels C (e.g. 3 for ECG, EDA, respiration).
        out_dim: size of the output feature vector.
        widths: channels of the residual stages.

    Input: per-channel standardised signals, float (B, C, T), T >= 8 (e.g. 1024).
    Output: (B, out_dim).

    """

    modality = "physio"

    def __init__(self, in_channels: int = 3, out_dim: int = 128, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__(out_dim)
        if not widths:
            raise ValueError("widths must name at least one stage.")
        self.in_channels = in_channels
        layers: list[nn.Module] = [
            nn.Conv1d(in_channels, widths[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm1d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(3, stride=2, padding=1),
        ]
        previous = widths[0]
        for i, width in enumerate(widths):
            layers.append(ResidualBlock1d(previous, width, stride=1 if i == 0 else 2))
            previous = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(widths[-1], out_dim)

    def forward_tokens(self, x: Tensor) -> Tensor:
        """Signals (B, C, T) → one token per time step of the last feature map, (B, T', out_dim).

        Tokens are the final linear layer applied at every step, so their mean is :meth:`forward`'s vector.
        """
        return self.fc(self.features(x).transpose(1, 2))

    def forward(self, x: Tensor) -> Tensor:
        """Encode signal windows.

        Args:
            x: standardised signals, float (B, C, T).

        Returns:
            Features, (B, out_dim).

        """
        return self.fc(self.pool(self.features(x)).flatten(1))
