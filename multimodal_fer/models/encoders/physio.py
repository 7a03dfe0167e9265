"""Physiological signal encoder: a 1-D residual CNN over multichannel signals (ECG, EDA, RSP, ...)."""

from __future__ import annotations

import torch
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
    """1-D residual CNN for windows of physiological signals, optionally fused with precomputed features.

    A stride-2 stem (kernel 7) and max-pool (stride 2) are followed by one residual block per width (the
    first keeps the length, later ones halve it), global average pooling over time and a linear layer.

    **Feature branch** (``feature_mlp=True``): the window's precomputed physiological features (heart rate,
    HRV, EDA, breathing; see :mod:`multimodal_fer.preprocessing.physio_feature_extraction`) enter as the side inputs
    ``physio_features`` (standardised, float (B, F)) and ``physio_features_valid`` (bool (B, F)). Invalid values
    are replaced by 0 (``torch.where``, so not even a NaN there can reach the output), and an MLP (two
    linear-ReLU layers of ``feature_hidden_dim``) reads ``[values, flags]`` (B, 2F). Its output is concatenated
    with the CNN's pooled vector before the final linear layer: ``fc([pooled, mlp([values, flags])])``. The data
    module must load the features: ``data.init_args.physio_features: true``.

    Args:
        in_channels: number of signal channels C (e.g. 3 for ECG, EDA, respiration).
        out_dim: size of the output feature vector.
        widths: channels of the residual stages.
        feature_mlp: fuse the precomputed features through the MLP branch.
        num_features: number of features F (None: the extractor's list,
            :data:`~multimodal_fer.preprocessing.physio_feature_extraction.NUM_PHYSIO_FEATURES`).
        feature_hidden_dim: width of the feature MLP.

    Input: per-channel standardised signals, float (B, C, T), T >= 8 (e.g. 1024); with the branch also the two
    side inputs above.
    Output: (B, out_dim).

    """

    modality = "physio"

    def __init__(
        self,
        in_channels: int = 3,
        out_dim: int = 128,
        widths: tuple[int, ...] = (32, 64, 128),
        feature_mlp: bool = False,
        num_features: int | None = None,
        feature_hidden_dim: int = 64,
    ) -> None:
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
        self.feature_branch: nn.Sequential | None = None
        self.num_features = 0
        if feature_mlp:
            if num_features is None:
                from multimodal_fer.physio_catalogue import NUM_PHYSIO_FEATURES

                num_features = NUM_PHYSIO_FEATURES
            if num_features < 1 or feature_hidden_dim < 1:
                raise ValueError(
                    f"num_features ({num_features}) and feature_hidden_dim ({feature_hidden_dim}) must be positive."
                )
            self.num_features = int(num_features)
            self.feature_branch = nn.Sequential(
                nn.Linear(2 * self.num_features, feature_hidden_dim),
                nn.ReLU(inplace=True),
                nn.Linear(feature_hidden_dim, feature_hidden_dim),
                nn.ReLU(inplace=True),
            )
            self.side_inputs = ("physio_features", "physio_features_valid")
        self.fc = nn.Linear(widths[-1] + (feature_hidden_dim if feature_mlp else 0), out_dim)

    def encode_features(self, features: Tensor | None, valid: Tensor | None, batch_size: int) -> Tensor:
        """The feature branch's vector.

        Args:
            features: standardised features, float (B, F); values where ``valid`` is False are ignored.
            valid: validity flags, bool (B, F).
            batch_size: B of the signals, to check against.

        Returns:
            (B, feature_hidden_dim).

        Raises:
            ValueError: the branch is off, the features are missing, or their shapes do not match.
        """
        if self.feature_branch is None:
            raise ValueError("This PhysioCNN has no feature branch (feature_mlp=False).")
        if features is None or valid is None:
            raise ValueError(
                "PhysioCNN(feature_mlp=True) needs the batch keys 'physio_features' and 'physio_features_valid', "
                "but the batch lacks them: set data.init_args.physio_features=true (and compute the features "
                "once with: mfer physio-features --config <your config>)."
            )
        expected = (batch_size, self.num_features)
        if tuple(features.shape) != expected or tuple(valid.shape) != expected:
            raise ValueError(
                f"physio_features {tuple(features.shape)} and physio_features_valid {tuple(valid.shape)} must both "
                f"be {expected}: set num_features to the side cache's number of features."
            )
        flags = valid.to(torch.bool)
        values = torch.where(flags, features, torch.zeros((), dtype=features.dtype, device=features.device))
        dtype = self.fc.weight.dtype
        return self.feature_branch(torch.cat([values.to(dtype), flags.to(dtype)], dim=1))

    def forward_tokens(
        self, x: Tensor, physio_features: Tensor | None = None, physio_features_valid: Tensor | None = None
    ) -> Tensor:
        """Signals (B, C, T) → one token per time step of the last feature map, (B, T', out_dim).

        Tokens are the final linear layer applied at every step, so their mean is :meth:`forward`'s vector. With
        the feature branch, its vector joins every step's features before that layer (the same for all steps),
        so the mean still equals :meth:`forward`'s vector.
        """
        steps = self.features(x).transpose(1, 2)  # (B, T', W)
        if self.feature_branch is not None:
            extra = self.encode_features(physio_features, physio_features_valid, x.shape[0])  # (B, H)
            steps = torch.cat([steps, extra.unsqueeze(1).expand(-1, steps.shape[1], -1)], dim=2)
        return self.fc(steps)

    def forward(
        self, x: Tensor, physio_features: Tensor | None = None, physio_features_valid: Tensor | None = None
    ) -> Tensor:
        """Encode signal windows.

        Args:
            x: standardised signals, float (B, C, T).
            physio_features: standardised features, float (B, F) (feature branch only).
            physio_features_valid: their validity flags, bool (B, F) (feature branch only).

        Returns:
            Features, (B, out_dim).

        """
        pooled = self.pool(self.features(x)).flatten(1)  # (B, W)
        if self.feature_branch is not None:
            extra = self.encode_features(physio_features, physio_features_valid, x.shape[0])
            pooled = torch.cat([pooled, extra], dim=1)
        return self.fc(pooled)
