"""What reads the expression inside a generator that draws from it: a small CNN, or a recogniser's face CNN.

Both take the generator's input, the masked face beside its mask (B, C + 1, H, W), and return a feature vector; the
generator puts a linear expression head on it (:class:`~multimodal_fer.models.restoration.GatedUNetGenerator`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from multimodal_fer.models.blocks import residual_cnn2d
from multimodal_fer.models.state_fit import state_mismatch


class ExpressionEncoder(nn.Module):
    """A small CNN of its own on the masked face that keeps a coarse layout (``expression_reader: encoder``).

    One 3×3 convolution per level of ``widths`` (stride 1 at the first, 2 after), each followed by group norm over
    all channels and SiLU, then an average pool to a 2 × 2 grid, flattened: upper and lower, left and right face
    stay apart, so what the visible brows and eyes show is not averaged with the hidden mouth.

    Args:
        in_channels: channels of the input (the face's and the mask's).
        widths: channels per level, finest first.
    """

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for level, width in enumerate(widths):
            layers += [
                nn.Conv2d(previous, width, 3, stride=1 if level == 0 else 2, padding=1),
                nn.GroupNorm(1, width),
                nn.SiLU(),
            ]
            previous = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.out_features = 4 * previous

    def forward(self, x: Tensor) -> Tensor:
        """Encode (B, C, H, W) inputs into (B, 4 · widths[-1]) features."""
        return self.features(x)


class RecogniserReader(nn.Module):
    """The face recognisers' CNN as the generator's reader (``expression_reader: recogniser``).

    The architecture of :class:`~multimodal_fer.models.encoders.FaceCNN` (a residual CNN, global average pool and
    a linear layer, under the same attribute names ``features`` and ``fc``), with one more input channel for the
    mask. Built so that a trained recogniser's face encoder can start it (:meth:`load_face_encoder`): a CNN that
    already reads expressions from clean faces learns to read them from occluded ones within a few epochs, where a
    reader trained from scratch inside the generator stays near the chance plateau for many (``docs/occlusion.md``,
    section 6).

    Args:
        image_channels: channels of the face (3 for RGB); the input has one more, the mask.
        widths: channels of the residual stages (the recogniser's ``widths``).
        features: size of the output vector (the recogniser's ``out_dim``).
    """

    def __init__(self, image_channels: int, widths: Sequence[int], features: int) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"reader_features must be at least 1, got {features}.")
        self.image_channels = int(image_channels)
        self.features = residual_cnn2d(image_channels + 1, widths)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], features)
        self.out_features = int(features)

    def forward(self, x: Tensor) -> Tensor:
        """Encode masked faces beside their masks, (B, C + 1, H, W), into (B, features) vectors."""
        return self.fc(self.pool(self.features(x)).flatten(1))

    @torch.no_grad()
    def load_face_encoder(self, encoder: nn.Module) -> None:
        """Copy a face recogniser's CNN (its ``features`` and ``fc``) into this reader.

        The mask channel's weights in the first convolution start at zero when the recogniser read the face alone,
        so the reader computes exactly the recogniser's features on the masked face; a mask-aware recogniser (which
        has the channel already) is copied as it is. Anything else the encoder holds (a restorer in front of it) is
        not copied.

        Args:
            encoder: a :class:`~multimodal_fer.models.encoders.FaceCNN` of the same ``widths`` and ``out_dim``.

        Raises:
            ValueError: the encoder has no ``features``/``fc`` CNN, or one of another shape.
        """
        source = {key: value for key, value in encoder.state_dict().items() if key.startswith(("features.", "fc."))}
        if not source:
            raise ValueError(
                f"The recogniser's face encoder ({type(encoder).__name__}) has no residual CNN (features, fc) to start "
                "the reader from; give a run whose face encoder is FaceCNN."
            )
        first = source.get("features.0.weight")
        if first is not None and first.shape[1] == self.image_channels:
            source["features.0.weight"] = torch.cat([first, first.new_zeros(first.shape[0], 1, *first.shape[2:])], 1)
        problems = state_mismatch(self.state_dict(), source)
        if problems:
            raise ValueError(
                f"The recogniser's face CNN does not fit the reader ({problems}). Set the generator's reader_widths "
                "and reader_features to the recogniser's FaceCNN widths and out_dim (its run's config.yaml)."
            )
        self.load_state_dict(source, strict=True)
