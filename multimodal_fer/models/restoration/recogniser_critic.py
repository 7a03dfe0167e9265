"""A trained face recogniser, frozen, as the restoration GAN's judge of expression and face features.

The jointly trained :class:`~multimodal_fer.models.restoration.critic.ExpressionCritic` learns expressions
from the same few clean faces the GAN sees, and is a weak judge early in training. A recogniser trained
beforehand on clean faces (a face-only ``mfer fit`` run) knows which pixels carry the expression; the
restorer is then asked to produce faces on which that recogniser sees the same expression, AUs and
features as on the clean face (recogniser-guided restoration). The recogniser never changes: its weights
are frozen and it stays in eval mode, so batch statistics of restored faces cannot leak into it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multimodal_fer.models.blocks import ResidualBlock2d
from multimodal_fer.standardization import restandardize


class RecogniserCritic(nn.Module):
    """Wrap a trained multimodal FER model and judge faces with its face path alone.

    Args:
        model: a :class:`~multimodal_fer.models.multimodal.MultimodalFERModel` with a ``face`` encoder (other
            modalities are simply absent: the fusion handles any subset).
        image_size: face side the recogniser was trained on (0 = unknown); the task checks it against its data.

    Raises:
        ValueError: the model has no face encoder, or no expression or AU head to judge with.
    """

    def __init__(self, model: nn.Module, image_size: int = 0) -> None:
        super().__init__()
        encoders = getattr(model, "encoders", {})
        if "face" not in encoders:
            raise ValueError(
                f"The recogniser critic needs a model with a face encoder; this one has {list(encoders)}. Point "
                "recogniser_critic at a checkpoint of a run whose data loads the face modality."
            )
        label_space = model.label_space
        if not (label_space.num_expressions or label_space.num_action_units):
            raise ValueError("The recogniser critic needs an expression or AU head to keep expressions consistent.")
        self.model = model
        self.image_size = int(image_size)
        self.model.requires_grad_(False)
        self.model.eval()
        face = encoders["face"]
        # Perceptual features: every residual stage of the face encoder (when it has them), then its vector.
        # A tuple, so these modules are not registered a second time under this one.
        stages = [module for module in face.modules() if isinstance(module, ResidualBlock2d)]
        vector = model.feature_norms["face"] if hasattr(model, "feature_norms") else face
        self._hooked: tuple[nn.Module, ...] = (*stages, vector)

    def train(self, mode: bool = True) -> RecogniserCritic:
        """Stay in eval mode whatever the task does (frozen batch-norm statistics, no dropout)."""
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, image: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Judge faces as the recogniser sees them.

        Args:
            image: float (B, 3, H, W) standardised faces (restored faces are standardised again first, as the
                face encoder does behind a restorer).

        Returns:
            ``(features, outputs)``: the output (B, C_i, H_i, W_i) of every residual stage of the face encoder
            followed by its feature vector (B, D), and the recogniser's ``outputs["expr"]`` logits
            (B, num_expressions) and ``outputs["au"]`` logits (B, num_aus) as its label space has them.
        """
        captured: list[Tensor] = []
        handles = [m.register_forward_hook(lambda _m, _i, out: captured.append(out)) for m in self._hooked]
        try:
            face = restandardize(image.float())
            present = {"face": torch.ones(face.shape[0], dtype=torch.bool, device=face.device)}
            outputs = self.model({"face": face}, present).heads
        finally:
            for handle in handles:
                handle.remove()
        judged = {task: outputs[task] for task in ("expr", "au") if task in outputs}
        return captured, judged
