"""The expression critic: a face recogniser whose features and predictions judge restored faces.

It is trained on clean faces only (expression and AU labels) beside the discriminator, and gives the
generator two losses: a perceptual (feature) loss — restored and clean faces should look alike to a face
encoder — and an expression-consistency loss — the restored face should keep the clean face's expression
and AUs.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from multimodal_fer.models.blocks import residual_cnn2d
from multimodal_fer.types import LabelSpace


class ExpressionCritic(nn.Module):
    """Residual face CNN (the face encoder's architecture) with expression and AU heads.

    Args:
        label_space: sizes the heads (expressions and AUs; a task the label space lacks gets no head).
        widths: channels of the residual stages.
    """

    def __init__(self, label_space: LabelSpace, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.features = residual_cnn2d(3, widths)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.expr_head = nn.Linear(widths[-1], label_space.num_expressions) if label_space.num_expressions else None
        self.au_head = nn.Linear(widths[-1], label_space.num_action_units) if label_space.num_action_units else None

    def forward(self, image: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Encode faces and predict their expression and AUs.

        Args:
            image: float (B, 3, H, W) standardised faces.

        Returns:
            ``(feature_maps, outputs)``: the output (B, C_i, H_i, W_i) of every residual stage, and
            ``outputs["expr"]`` logits (B, num_expressions) and ``outputs["au"]`` logits (B, num_aus) as the
            label space has them.
        """
        maps: list[Tensor] = []
        x = image
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index >= 3:  # after the stem's conv, BN and ReLU: one map per residual stage
                maps.append(x)
        pooled = self.pool(x).flatten(1)
        outputs: dict[str, Tensor] = {}
        if self.expr_head is not None:
            outputs["expr"] = self.expr_head(pooled)
        if self.au_head is not None:
            outputs["au"] = self.au_head(pooled)
        return maps, outputs
