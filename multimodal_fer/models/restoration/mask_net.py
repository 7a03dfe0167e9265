"""The occlusion-mask network: finds occluded pixels from the occluded face alone (blind restoration)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class OcclusionMaskNet(nn.Module):
    """A small U-Net that predicts, per pixel, the logit that an occluder covers the face there.

    Args:
        widths: channels per resolution level, finest first; H and W must be divisible by
            ``2 ** (len(widths) - 1)``.
        image_channels: channels of the face (3 for RGB).
        downsample: the face is average-pooled by this factor before the U-Net and the logits are upsampled
            back (bilinear): a larger view of the face for a quarter of the cost at 2; 1 keeps full resolution.
        full_resolution: with ``downsample`` > 1, keep the pooled U-Net's wide view but predict at full
            resolution: its finest features are upsampled and joined with a full-resolution path of the face
            before the output layer, so occluders thinner than the pooling (hair strands, brush strokes) can be
            marked pixel by pixel. False (default) upsamples the pooled logits (blurred by the pooling).
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64),
        image_channels: int = 3,
        downsample: int = 1,
        full_resolution: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"widths needs at least two levels, got {list(widths)}.")
        if downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {downsample}.")
        if full_resolution and downsample == 1:
            raise ValueError(
                "full_resolution adds a full-resolution path to a mask net that pools the face (downsample > 1); "
                "with downsample=1 it already predicts at full resolution. Set downsample: 2, or drop full_resolution."
            )
        self.downsample = int(downsample)
        self.full_resolution = bool(full_resolution)
        self.config: dict[str, Any] = {
            "widths": [int(w) for w in widths],
            "image_channels": int(image_channels),
            "downsample": self.downsample,
            "full_resolution": self.full_resolution,
        }
        self.stem = nn.Sequential(_conv_bn_relu(image_channels, widths[0]), _conv_bn_relu(widths[0], widths[0]))
        self.down = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(widths[i - 1], widths[i], stride=2), _conv_bn_relu(widths[i], widths[i]))
            for i in range(1, len(widths))
        )
        self.up = nn.ModuleList(
            _conv_bn_relu(widths[i] + widths[i - 1], widths[i - 1]) for i in range(len(widths) - 1, 0, -1)
        )
        if self.full_resolution:
            self.detail = nn.Sequential(_conv_bn_relu(image_channels, widths[0]), _conv_bn_relu(widths[0], widths[0]))
            self.merge = _conv_bn_relu(2 * widths[0], widths[0])
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, image: Tensor) -> Tensor:
        """Predict occlusion logits.

        Args:
            image: float (B, C, H, W) faces.

        Returns:
            float (B, 1, H, W) logits; ``sigmoid(logit) > 0.5`` marks an occluded pixel.
        """
        size = image.shape[-2:]
        full = image
        if self.downsample > 1:
            image = F.avg_pool2d(image, self.downsample, ceil_mode=True)
        x = self.stem(image)
        skips = [x]
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        if self.full_resolution:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            return self.head(self.merge(torch.cat([x, self.detail(full)], dim=1)))
        logits = self.head(x)
        if self.downsample > 1:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits
