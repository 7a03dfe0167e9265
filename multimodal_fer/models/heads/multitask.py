"""Task heads sized from a label space: expression logits, AU logits and valence/arousal(/dominance)."""

from __future__ import annotations

from torch import Tensor, nn

from multimodal_fer.types import LabelSpace


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim))


class MultitaskHeads(nn.Module):
    """One two-layer MLP head per task the label space has (a task of size 0 gets no head).

    Args:
        in_dim: size of the fused features (the fusion module's ``out_dim``).
        label_space: the dataset's label space; sizes every head.
        hidden_dim: hidden size of each head.
        dropout: dropout between the two layers of each head.

    Raises:
        ValueError: the label space has no task at all.

    """

    def __init__(self, in_dim: int, label_space: LabelSpace, hidden_dim: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.label_space = label_space
        sizes = {
            "expr": label_space.num_expressions,
            "au": label_space.num_action_units,
            "va": label_space.num_dimensions,
        }
        self.heads = nn.ModuleDict(
            {task: _mlp(in_dim, hidden_dim, size, dropout) for task, size in sizes.items() if size > 0}
        )
        if not self.heads:
            raise ValueError(f"The label space {label_space} has no expressions, AUs or dimensions to predict.")

    @property
    def tasks(self) -> tuple[str, ...]:
        """Names of the tasks with a head, among ``("expr", "au", "va")``."""
        return tuple(self.heads.keys())

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Predict every task.

        Args:
            x: fused features (B, in_dim).

        Returns:
            Only the tasks the label space has: ``"expr"`` logits (B, num_expressions), ``"au"`` logits
            (B, num_action_units), ``"va"`` values in [-1, 1] (B, num_dimensions) after tanh.

        """
        out = {task: head(x) for task, head in self.heads.items()}
        if "va" in out:
            out["va"] = out["va"].tanh()
        return out
