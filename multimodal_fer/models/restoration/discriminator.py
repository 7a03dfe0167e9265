"""The spectral-normalised PatchGAN discriminator (SN-PatchGAN)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    """Scores every receptive-field patch of a (face, mask) pair as real or restored.

    Spectral normalisation of every convolution keeps the discriminator 1-Lipschitz, which makes hinge-loss
    GAN training stable without gradient penalties (Miyato et al., ICLR 2018); scoring patches instead of
    whole images targets local texture, where inpainting artefacts live.

    Args:
        widths: channels of the stride-2 convolutions; the score map is ``2 ** len(widths)`` times smaller
            than the image.
        image_channels: channels of the face (3 for RGB); the mask adds one.
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 128), image_channels: int = 3) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"widths": [int(w) for w in widths], "image_channels": int(image_channels)}
        layers: list[nn.Module] = []
        previous = image_channels + 1
        for width in widths:
            layers += [spectral_norm(nn.Conv2d(previous, width, 5, stride=2, padding=2)), nn.LeakyReLU(0.2)]
            previous = width
        layers.append(spectral_norm(nn.Conv2d(previous, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """Score patches.

        Args:
            image: float (B, C, H, W) real or restored faces.
            mask: float (B, 1, H, W) the hole the generator filled (1 = filled).

        Returns:
            float (B, 1, H / 2**L, W / 2**L) realness scores (hinge loss: real > 1, fake < -1).
        """
        return self.net(torch.cat([image, mask], dim=1))

    def forward_with_features(self, image: Tensor, mask: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Score patches and return the intermediate activations (for a feature-matching loss).

        Args:
            image: float (B, C, H, W) real or restored faces.
            mask: float (B, 1, H, W) the hole the generator filled (1 = filled).

        Returns:
            ``(scores, features)``: the scores of :meth:`forward` (the same computation), and the activation
            (B, C_i, H / 2**i, W / 2**i) after each stride-2 convolution's LeakyReLU, finest first.
        """
        features: list[Tensor] = []
        x = torch.cat([image, mask], dim=1)
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                features.append(x)
        return x, features
