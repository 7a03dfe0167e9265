"""A trained face recogniser, frozen, as the restoration GAN's judge of expression and face features.

The jointly trained :class:`~multimodal_fer.models.restoration.critic.ExpressionCritic` learns expressions
from the same few clean faces the GAN sees, and is a weak judge early in training. A recogniser trained
beforehand on clean faces (a face-only ``mfer fit`` run) knows which pixels carry the expression; the
restorer is then asked to produce faces on which that recogniser sees the same expression, AUs and
features as on the clean face (recogniser-guided restoration). The recogniser never changes: its weights
are frozen and it stays in eval mode, so batch statistics of restored faces cannot leak into it.

Several recognisers (an ensemble of independently trained ones) can judge together: a fill tuned to one
recogniser can carry its expression in features only that recogniser reads, and asking several to agree favours
fills that any clean-face reader sees. :meth:`RecogniserCritic.forward_each` judges with each of them.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        others: further recognisers of the same label space that judge beside ``model`` (an ensemble; see
            :meth:`forward_each`); ``model`` stays the one :meth:`forward` answers with.

    Raises:
        ValueError: a model has no face encoder, or no expression or AU head to judge with, or the others predict
            another label space than ``model``.
    """

    def __init__(self, model: nn.Module, image_size: int = 0, others: Sequence[nn.Module] = ()) -> None:
        super().__init__()
        for member in (model, *others):
            _check_judge(member)
            if member.label_space != model.label_space:
                raise ValueError(
                    "Recogniser critics that judge together must predict the same labels; "
                    f"{list(member.label_space.expressions)} differs from {list(model.label_space.expressions)}."
                )
            member.requires_grad_(False)
            member.eval()
        self.model = model
        #: The other members of an ensemble (empty for one recogniser: the state dict is then as it always was).
        self.others = nn.ModuleList(others)
        self.image_size = int(image_size)
        # Per member, the modules whose outputs are the perceptual features. Tuples, so these modules are not
        # registered a second time under this one.
        self._hooked: tuple[tuple[nn.Module, ...], ...] = tuple(_perceptual_modules(m) for m in (model, *others))

    @property
    def num_members(self) -> int:
        """How many recognisers judge (1 without ``others``)."""
        return 1 + len(self.others)

    def train(self, mode: bool = True) -> RecogniserCritic:
        """Stay in eval mode whatever the task does (frozen batch-norm statistics, no dropout)."""
        super().train(mode)
        self.model.eval()
        self.others.eval()
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
        return self._judge(0, restandardize(image.float()))

    def forward_each(self, image: Tensor) -> list[tuple[list[Tensor], dict[str, Tensor]]]:
        """Judge faces with every member: what :meth:`forward` returns, once per recogniser, ``model`` first.

        Args:
            image: float (B, 3, H, W) standardised faces.

        Returns:
            One ``(features, outputs)`` per member, as :meth:`forward` describes them.
        """
        face = restandardize(image.float())
        return [self._judge(index, face) for index in range(self.num_members)]

    def _judge(self, index: int, face: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
        member = self.model if index == 0 else self.others[index - 1]
        captured: list[Tensor] = []
        handles = [m.register_forward_hook(lambda _m, _i, out: captured.append(out)) for m in self._hooked[index]]
        try:
            present = {"face": torch.ones(face.shape[0], dtype=torch.bool, device=face.device)}
            outputs = member({"face": face}, present).heads
        finally:
            for handle in handles:
                handle.remove()
        judged = {task: outputs[task] for task in ("expr", "au") if task in outputs}
        return captured, judged


def _check_judge(model: nn.Module) -> None:
    encoders = getattr(model, "encoders", {})
    if "face" not in encoders:
        raise ValueError(
            f"The recogniser critic needs a model with a face encoder; this one has {list(encoders)}. Point "
            "recogniser_critic at a checkpoint of a run whose data loads the face modality."
        )
    label_space = model.label_space
    if not (label_space.num_expressions or label_space.num_action_units):
        raise ValueError("The recogniser critic needs an expression or AU head to keep expressions consistent.")


def _perceptual_modules(model: nn.Module) -> tuple[nn.Module, ...]:
    """Every residual stage of the face encoder (when it has them), then the module giving its feature vector."""
    face = model.encoders["face"]
    stages = [module for module in face.modules() if isinstance(module, ResidualBlock2d)]
    vector = model.feature_norms["face"] if hasattr(model, "feature_norms") else face
    return (*stages, vector)
