"""The inpainting generator: a U-Net of gated convolutions with a dilated bottleneck."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multimodal_fer.models.restoration.expression_readers import ExpressionEncoder, RecogniserReader
from multimodal_fer.models.restoration.gated_conv import GatedConv2d

#: What reads the expression in a generator with ``expression_classes`` (see :class:`GatedUNetGenerator`).
EXPRESSION_READERS: tuple[str, ...] = ("encoder", "bottleneck", "recogniser")


class GatedUNetGenerator(nn.Module):
    """Fills the masked pixels of a face from the visible ones.

    The input is the face with its masked pixels zeroed plus the mask as a fourth channel. An encoder of
    gated convolutions halves the resolution ``len(widths) - 1`` times, a bottleneck of dilated gated
    convolutions widens the receptive field to the whole face, and a decoder with skip connections returns
    to full resolution. The output is a full image; :class:`~multimodal_fer.models.restoration.FaceRestorer`
    keeps it only inside the mask.

    With ``expression_classes`` the generator also *reads* the expression from the visible pixels before it
    draws: a reader predicts the expression, and its probabilities modulate the bottleneck's channels (a scale and
    a shift per channel, FiLM) before the decoder. A mouth hidden by a mask or a scarf must be inferred from the
    upper face; the reader makes that inference explicit (the restoration task trains it against the expression
    labels, ``generator_expression_weight``) and hands the decoder an expression code to draw from. The modulation
    starts at zero (identity), so the reader changes nothing until it learns.

    ``expression_reader`` says what reads. ``"encoder"`` (default): a small CNN of its own on the generator's input
    (the masked face and the mask; a 3×3 convolution, group norm and SiLU per step, halving the resolution once per
    level), average-pooled to a 2 × 2 grid so that upper and lower face stay apart, then a linear layer.
    ``"recogniser"``: the face recognisers' residual CNN (:class:`RecogniserReader`; ``reader_widths`` and
    ``reader_features`` are the recogniser's ``widths`` and ``out_dim``) on the masked face and the mask, then a
    linear layer; the restoration task's ``expression_reader_init`` starts it from a trained recogniser, so it reads
    expressions from the first epoch instead of learning to from scratch.
    ``"bottleneck"``: a linear layer on the bottleneck's channel means, the first design, kept so that restorers
    trained with it still load. It learns next to nothing: the inpainting features hold little of the expression
    (a logistic regression on them reads 0.15 expression macro-F1 on validation faces, against 0.125 for chance;
    ``docs/occlusion.md``, section 6), and the trained head's cross-entropy stayed at ln 8.

    Args:
        widths: channels per resolution level, finest first; H and W must be divisible by
            ``2 ** (len(widths) - 1)``.
        dilations: dilation rates of the bottleneck's gated convolutions.
        image_channels: channels of the face (3 for RGB).
        stem_kernel: kernel size of the first gated convolution (odd).
        extra_convs: gated convolutions added after each level's resampling convolution, in the encoder and
            the decoder (0 gives the lightest network).
        expression_classes: expressions the reader predicts and conditions the decoder on; 0 (default) adds no
            reader.
        expression_reader: ``"encoder"`` (a CNN of its own), ``"recogniser"`` (the recognisers' CNN) or
            ``"bottleneck"`` (a linear head on the pooled bottleneck); used only with ``expression_classes``.
        reader_widths: residual stage widths of the ``"recogniser"`` reader (default: the quickstart recogniser's).
        reader_features: output size of the ``"recogniser"`` reader (the recogniser's ``out_dim``).
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128),
        dilations: Sequence[int] = (2, 4, 8),
        image_channels: int = 3,
        stem_kernel: int = 5,
        extra_convs: int = 1,
        expression_classes: int = 0,
        expression_reader: Literal["encoder", "bottleneck", "recogniser"] = "encoder",
        reader_widths: Sequence[int] = (16, 32, 64, 128),
        reader_features: int = 128,
    ) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"widths needs at least two levels, got {list(widths)}.")
        if expression_classes < 0 or expression_classes == 1:
            raise ValueError(f"expression_classes must be 0 (no head) or at least 2, got {expression_classes}.")
        if expression_reader not in EXPRESSION_READERS:
            raise ValueError(f"expression_reader must be one of {EXPRESSION_READERS}, got {expression_reader!r}.")
        self.config: dict[str, Any] = {
            "widths": [int(w) for w in widths],
            "dilations": [int(d) for d in dilations],
            "image_channels": int(image_channels),
            "stem_kernel": int(stem_kernel),
            "extra_convs": int(extra_convs),
        }
        if expression_classes:  # only then in the config, so exports of head-less generators read as before
            self.config["expression_classes"] = int(expression_classes)
            self.config["expression_reader"] = expression_reader
            if expression_reader == "recogniser":  # only then, so exports of the other readers read as before
                self.config["reader_widths"] = [int(w) for w in reader_widths]
                self.config["reader_features"] = int(reader_features)
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
        self.expression_encoder: ExpressionEncoder | None = None
        self.expression_recogniser: RecogniserReader | None = None
        self.expression_head: nn.Linear | None = None
        self.expression_modulation: nn.Linear | None = None
        if expression_classes:
            reader_size = widths[-1]
            if expression_reader == "encoder":
                self.expression_encoder = ExpressionEncoder(image_channels + 1, widths)
                reader_size = self.expression_encoder.out_features
            elif expression_reader == "recogniser":
                self.expression_recogniser = RecogniserReader(image_channels, reader_widths, reader_features)
                reader_size = self.expression_recogniser.out_features
            self.expression_head = nn.Linear(reader_size, expression_classes)
            self.expression_modulation = nn.Linear(expression_classes, 2 * widths[-1])
            nn.init.zeros_(self.expression_modulation.weight)  # identity at the start: scale 1, shift 0
            nn.init.zeros_(self.expression_modulation.bias)

    @property
    def reads_expression(self) -> bool:
        """Whether the generator predicts the expression and draws from it (``expression_classes`` > 0)."""
        return self.expression_head is not None

    @staticmethod
    def config_of_export(config: dict[str, Any]) -> dict[str, Any]:
        """An exported generator's config as this version builds it.

        Restorers exported before ``expression_reader`` existed read the expression from the bottleneck.
        """
        if config.get("expression_classes") and "expression_reader" not in config:
            return {**config, "expression_reader": "bottleneck"}
        return dict(config)

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
        return self.forward_with_expression(image, mask)[0]

    def forward_with_expression(
        self, image: Tensor, mask: Tensor, forced_expression: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Predict the whole image, and the expression read from the visible pixels.

        Args:
            image: float (B, C, H, W) faces (values under the mask are ignored).
            mask: float (B, 1, H, W), 1 = pixel to fill, 0 = visible.
            forced_expression: optional long (B,): a face's expression class to condition the decoder on (its
                one-hot vector in place of the reader's probabilities: teacher forcing in training), or -1 to use
                what the reader read. The reader's logits are returned either way.

        Returns:
            float (B, C, H, W) the generator's image, and float (B, expression_classes) the expression logits
            the reader produced (None without ``expression_classes``).

        Raises:
            ValueError: image sides not divisible by :attr:`size_multiple`, or ``forced_expression`` given to a
                generator that does not read the expression.
        """
        height, width = image.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(
                f"GatedUNetGenerator with {len(self.config['widths'])} levels needs image sides divisible by "
                f"{self.size_multiple}; got {height}×{width}. Use another image_size or fewer widths."
            )
        if forced_expression is not None and not self.reads_expression:
            raise ValueError(
                "forced_expression conditions the decoder on an expression, but this generator reads none: set "
                "expression_classes."
            )
        x = self.stem(torch.cat([image * (1.0 - mask), mask], dim=1))
        skips = [x]
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.bottleneck(skips.pop())
        logits = None
        if self.expression_head is not None and self.expression_modulation is not None:
            reader = self.expression_encoder if self.expression_encoder is not None else self.expression_recogniser
            if reader is not None:
                logits = self.expression_head(reader(torch.cat([image * (1.0 - mask), mask], dim=1)))
            else:
                logits = self.expression_head(x.mean(dim=(2, 3)))
            condition = logits.softmax(dim=-1)
            if forced_expression is not None:
                forced = F.one_hot(forced_expression.clamp(min=0), condition.shape[-1]).to(condition.dtype)
                condition = torch.where((forced_expression >= 0)[:, None], forced, condition)
            scale, shift = self.expression_modulation(condition).chunk(2, dim=-1)
            x = x * (1.0 + scale[..., None, None]) + shift[..., None, None]
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x), logits
