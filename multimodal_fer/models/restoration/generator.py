"""The inpainting generator: a U-Net of gated convolutions with a dilated bottleneck."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multimodal_fer.models.restoration.gated_conv import GatedConv2d


class GatedUNetGenerator(nn.Module):
    """Fills the masked pixels of a face from the visible ones.

    The input is the face with its masked pixels zeroed plus the mask as a fourth channel. An encoder of
    gated convolutions halves the resolution ``len(widths) - 1`` times, a bottleneck of dilated gated
    convolutions widens the receptive field to the whole face, and a decoder with skip connections returns
    to full resolution. The output is a full image; :class:`~multimodal_fer.models.restoration.FaceRestorer`
    keeps it only inside the mask.

    Args:
        widths: channels per resolution level, finest first; H and W must be divisible by
            ``2 ** (len(widths) - 1)``.
        dilations: dilation rates of the bottleneck's gated convolutions.
        image_channels: channels of the face (3 for RGB).
        stem_kernel: kernel size of the first gated convolution (odd).
        extra_convs: gated convolutions added after each level's resampling convolution, in the encoder and
            the decoder (0 gives the lightest network).
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128),
        dilations: Sequence[int] = (2, 4, 8),
        image_channels: int = 3,
        stem_kernel: int = 5,
        extra_convs: int = 1,
    ) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"widths needs at least two levels, got {list(widths)}.")
        self.config: dict[str, Any] = {
            "widths": [int(w) for w in widths],
            "dilations": [int(d) for d in dilations],
            "image_channels": int(image_channels),
            "stem_kernel": int(stem_kernel),
            "extra_convs": int(extra_convs),
        }
        self.stem = GatedConv2d(image_channels + 1, widths[0], kernel_size=stem_kernel)
        self.down = nn.ModuleList(
            nn.Sequential(
                GatedConv2d(widths[i - 1], widths[i], stride=2),
                *(GatedConv2d(widths[i], widths[i]) for _ in range(extra_convs)),
            )
            for i in range(1, len(widths))
        )
        self.bottleneck = nn.Sequential(*(GatedConv2d(widths[-1], widths[-1], dilation=d) for d in dilations))
        self.up = nn.ModuleList(
            nn.Sequential(
                GatedConv2d(widths[i] + widths[i - 1], widths[i - 1]),
                *(GatedConv2d(widths[i - 1], widths[i - 1]) for _ in range(extra_convs)),
            )
            for i in range(len(widths) - 1, 0, -1)
        )
        self.head = nn.Conv2d(widths[0], image_channels, 3, padding=1)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this."""
        return 2 ** (len(self.config["widths"]) - 1)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """Predict the whole image from its visible pixels.

        Args:
            image: float (B, C, H, W) faces (values under the mask are ignored).
            mask: float (B, 1, H, W), 1 = pixel to fill, 0 = visible.

        Returns:
            float (B, C, H, W) the generator's image (the caller composites it with the visible pixels).
        """
        height, width = image.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(
                f"GatedUNetGenerator with {len(self.config['widths'])} levels needs image sides divisible by "
                f"{self.size_multiple}; got {height}×{width}. Use another image_size or fewer widths."
            )
        x = self.stem(torch.cat([image * (1.0 - mask), mask], dim=1))
        skips = [x]
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.bottleneck(skips.pop())
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)
