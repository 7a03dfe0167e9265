"""Losses that skip unlabeled entries, so data sets with different label sets train together.

All functions are free of host-device synchronisation: unlabeled entries are removed with
``torch.where`` (never multiplied by zero, so NaN labels cannot leak) and an all-unlabeled batch gives
an exact 0 that stays in the autograd graph with zero gradients.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multimodal_fer.types import EXPR_UNLABELED

#: Added to the CCC denominator so constant predictions and targets stay finite.
_CCC_EPS = 1e-8


def _zero(x: Tensor) -> Tensor:
    return torch.zeros((), dtype=x.dtype, device=x.device)


def masked_cross_entropy(logits: Tensor, target: Tensor, class_weight: Tensor | None = None) -> Tensor:
    """Cross-entropy averaged over labeled samples.

    With ``class_weight`` the average is weighted as in :func:`torch.nn.functional.cross_entropy`:
    ``sum_i w[y_i] * l_i / sum_i w[y_i]`` over labeled samples i.

    Args:
        logits: (B, C).
        target: long (B,), class index or -1 (unlabeled).
        class_weight: optional (C,) weight per class.

    Returns:
        Scalar loss; 0 (with zero gradients) when no sample is labeled.

    """
    labeled = target != EXPR_UNLABELED
    safe_target = torch.where(labeled, target, torch.zeros_like(target))
    per_sample = F.cross_entropy(logits, safe_target, reduction="none")
    if class_weight is None:
        weight = labeled.to(per_sample.dtype)
    else:
        weight = torch.where(labeled, class_weight.to(per_sample.dtype)[safe_target], _zero(per_sample))
    total = torch.where(labeled, per_sample * weight, _zero(per_sample)).sum()
    return total / weight.sum().clamp_min(torch.finfo(weight.dtype).tiny)


def masked_bce_with_logits(logits: Tensor, target: Tensor, pos_weight: Tensor | None = None) -> Tensor:
    """Binary cross-entropy with logits averaged over labeled entries.

    Args:
        logits: (B, K).
        target: float (B, K) in {0, 1}, NaN = unlabeled.
        pos_weight: optional (K,) weight of positive examples per column.

    Returns:
        Scalar loss; 0 (with zero gradients) when no entry is labeled.

    """
    labeled = ~torch.isnan(target)
    safe_target = torch.where(labeled, target, torch.zeros_like(target)).to(logits.dtype)
    if pos_weight is not None:
        pos_weight = pos_weight.to(device=logits.device, dtype=logits.dtype)
    per_entry = F.binary_cross_entropy_with_logits(logits, safe_target, pos_weight=pos_weight, reduction="none")
    total = torch.where(labeled, per_entry, _zero(per_entry)).sum()
    return total / labeled.sum().clamp_min(1).to(per_entry.dtype)


def _masked_ccc(pred: Tensor, target: Tensor, labeled: Tensor) -> tuple[Tensor, Tensor]:
    """Per-column concordance correlation over the labeled rows (population moments, Lin 1989).

    Args:
        pred: (N, D).
        target: (N, D).
        labeled: bool (N, D).

    Returns:
        ``ccc`` (D,) and the number of labeled rows per column ``count`` (D,).

    """
    pred = pred.float()
    target = target.float()
    weight = labeled.to(pred.dtype)
    count = weight.sum(0)
    n = count.clamp_min(1.0)
    x = torch.where(labeled, pred, _zero(pred))
    y = torch.where(labeled, target, _zero(target))
    mean_x = x.sum(0) / n
    mean_y = y.sum(0) / n
    dx = (x - mean_x) * weight
    dy = (y - mean_y) * weight
    var_x = (dx * dx).sum(0) / n
    var_y = (dy * dy).sum(0) / n
    cov = (dx * dy).sum(0) / n
    ccc = 2.0 * cov / (var_x + var_y + (mean_x - mean_y) ** 2 + _CCC_EPS)
    return ccc, count


def concordance_correlation(pred: Tensor, target: Tensor) -> Tensor:
    """Lin's concordance correlation coefficient with population (1/N) moments.

    ``2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)``, with a tiny epsilon in the denominator.

    Args:
        pred: (N,).
        target: (N,).

    Returns:
        Scalar CCC in [-1, 1].

    """
    labeled = torch.ones(pred.shape[0], 1, dtype=torch.bool, device=pred.device)
    ccc, _ = _masked_ccc(pred.reshape(-1, 1), target.reshape(-1, 1), labeled)
    return ccc[0]


def masked_ccc_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over dimensions of ``1 - CCC`` computed on each dimension's labeled rows.

    Dimensions with fewer than 2 labeled rows are left out of the mean.

    Args:
        pred: (B, D), e.g. valence and arousal.
        target: float (B, D), NaN = unlabeled.

    Returns:
        float32 scalar loss in [0, 2]; 0 (with zero gradients) when no dimension has 2 labeled rows.

    """
    labeled = ~torch.isnan(target)
    ccc, count = _masked_ccc(pred, target, labeled)
    usable = count >= 2
    per_dim = torch.where(usable, 1.0 - ccc, _zero(ccc))
    return per_dim.sum() / usable.sum().clamp_min(1).to(per_dim.dtype)


class MultitaskLoss(nn.Module):
    """Weighted sum of the expression, AU and valence/arousal losses over the tasks a model predicts.

    A task with an output but no label key in the batch counts as unlabeled (term 0, kept in the graph).

    Args:
        expr_weight: weight of the expression cross-entropy.
        au_weight: weight of the AU binary cross-entropy.
        va_weight: weight of the ``1 - CCC`` valence/arousal loss.

    """

    def __init__(self, expr_weight: float = 1.0, au_weight: float = 1.0, va_weight: float = 1.0) -> None:
        super().__init__()
        self.weights = {"expr": expr_weight, "au": au_weight, "va": va_weight}

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping, au_pos_weight: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Compute the loss of every predicted task.

        Args:
            outputs: model outputs, any of ``"expr"`` (B, C), ``"au"`` (B, K) logits, ``"va"`` (B, D).
            batch: labels ``"expr"`` long (B,) with -1 unlabeled, ``"au"`` float (B, K) and ``"va"`` float
                (B, D) with NaN unlabeled.
            au_pos_weight: optional (K,) positive weight per AU.

        Returns:
            ``"loss"``: the weighted sum (scalar), plus one unweighted scalar term per task in ``outputs``.

        Raises:
            ValueError: ``outputs`` has none of the tasks.

        """
        terms: dict[str, Tensor] = {}
        if "expr" in outputs:
            logits = outputs["expr"]
            terms["expr"] = masked_cross_entropy(logits, batch["expr"]) if "expr" in batch else logits.sum() * 0.0
        if "au" in outputs:
            logits = outputs["au"]
            terms["au"] = (
                masked_bce_with_logits(logits, batch["au"], au_pos_weight) if "au" in batch else logits.sum() * 0.0
            )
        if "va" in outputs:
            pred = outputs["va"]
            terms["va"] = masked_ccc_loss(pred, batch["va"]) if "va" in batch else pred.sum() * 0.0
        if not terms:
            raise ValueError(f"outputs has none of the tasks expr, au, va (keys: {sorted(outputs)}).")
        weighted = [self.weights[task] * term.float() for task, term in terms.items()]
        loss = torch.stack(weighted).sum()
        return {"loss": loss, **terms}
