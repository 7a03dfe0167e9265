"""Face image encoder: a small residual CNN, optionally behind an occluded-face restorer."""

from __future__ import annotations

from typing import Literal

import torch
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
        mask_input: ``"none"`` (default) or ``"channel"``: a mask-aware recogniser, which gets the restorer's
            predicted occlusion mask (0/1, 1 = occluded; empty for faces below its ``min_occluded_fraction``) as a
            4th input channel beside the face. Needs ``restorer``; with its ``fill: none`` the CNN sees the occluded
            face itself plus the mask, otherwise the filled face plus the mask. The extra channel's weights in the
            first convolution start at zero, so at initialisation the encoder is exactly the plain CNN (the same
            weights as ``mask_input="none"`` under the same seed) and learns how far to use the mask.
            A channel rather than a multiplicative attention on the last feature map: the mask is sharp at the
            input's resolution but blurred to a few cells on a map downsampled ``2 ** len(widths)`` times, an
            attention map can only scale features down where an occluder is, while early convolutions given the
            mask can learn to read occluder edges and visible pixels differently, and a zero-initialised channel
            starts exactly as the plain CNN, which a multiplicative gate does not.
        zero_init_residual: start every residual block's branch at zero (the scale of its last BatchNorm), so each
            block first computes ``ReLU(shortcut(x))`` (the identity where the shortcut is) and the CNN begins as its
            stem and shortcuts; see :meth:`~multimodal_fer.models.blocks.ResidualBlock2d.zero_init_residual`.
            Default False (PyTorch's initialisation, as trained before).

    Input: normalised float images (B, 3, H, W), any H = W >= 32 (e.g. 64 or 112).
    Output: (B, out_dim).

    Raises:
        ValueError: an unknown ``mask_input``, or ``"channel"`` without a restorer.
    """

    modality = "face"

    def __init__(
        self,
        out_dim: int = 128,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        dropout: float = 0.0,
        restorer: PretrainedRestorer | None = None,
        mask_input: Literal["none", "channel"] = "none",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(out_dim)
        if mask_input not in ("none", "channel"):
            raise ValueError(f"mask_input must be 'none' or 'channel', got {mask_input!r}.")
        if mask_input == "channel" and restorer is None:
            raise ValueError(
                "mask_input='channel' feeds the restorer's predicted occlusion mask to the CNN, but no restorer is "
                "given. Set restorer (configs/overlays/face_mask_aware.yaml does), or mask_input: none."
            )
        self.restorer = restorer
        self.mask_input = mask_input
        self.features = residual_cnn2d(3, widths, zero_init_residual=zero_init_residual)
        if mask_input == "channel":
            self.features[0] = _with_zero_channel(self.features[0])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1], out_dim)

    def feature_map(self, x: Tensor) -> Tensor:
        """The last residual stage's map (B, widths[-1], H / 2**len(widths), W / 2**len(widths))."""
        if self.restorer is not None and self.mask_input == "channel":
            restored = self.restorer.restore(x)
            x = torch.cat([restandardize(restored["restored"]), restored["mask"].to(x.dtype)], dim=1)
        elif self.restorer is not None:
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

    def adapt_pretrained(self, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        """A plain FaceCNN's weights for this one: a mask-aware encoder starts from a clean-face recogniser.

        With ``mask_input="channel"`` a 3-channel first convolution gets the mask channel at zero (the encoder then
        computes exactly what the plain one did), and the restorer keeps the weights it was loaded with when the
        pretrained encoder had none. Anything else is returned unchanged, for the loader to check.

        Args:
            weights: the pretrained encoder's state dict, e.g. the first convolution ``features.0.weight``
                (C, 3, k, k).

        Returns:
            The state dict to load: ``features.0.weight`` (C, 4, k, k), plus this encoder's ``restorer.*`` entries.
        """
        if self.mask_input != "channel":
            return weights
        adapted = dict(weights)
        stem = self.features[0]
        old = adapted.get("features.0.weight")
        if isinstance(stem, nn.Conv2d) and old is not None and old.shape[1] == stem.in_channels - 1:
            adapted["features.0.weight"] = torch.cat([old, old.new_zeros(old.shape[0], 1, *old.shape[2:])], dim=1)
        if self.restorer is not None and not any(key.startswith("restorer.") for key in weights):
            adapted.update({f"restorer.{key}": value for key, value in self.restorer.state_dict().items()})
        return adapted


def _with_zero_channel(conv: nn.Module) -> nn.Conv2d:
    """The CNN's first convolution given one more input channel, whose weights are zero (no random numbers drawn)."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"The CNN's first layer is a {type(conv).__name__}, not the Conv2d the mask channel widens.")
    weight = conv.weight.detach()
    conv.weight = nn.Parameter(torch.cat([weight, weight.new_zeros(weight.shape[0], 1, *weight.shape[2:])], dim=1))
    conv.in_channels += 1
    return conv
