"""Losses that skip unlabeled entries, so a sample without one task's label still trains the others.

All functions are free of host-device synchronisation: unlabeled entries are removed with
``torch.where`` (never multiplied by zero, so NaN labels cannot leak) and an all-unlabeled batch gives
an exact 0 that stays in the autograd graph with zero gradients.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multimodal_fer.metrics import concordance_correlation
from multimodal_fer.models.task_balancing import TASKS, FixedWeighting, TaskBalancing
from multimodal_fer.types import EXPR_UNLABELED

#: Added to the CCC denominator so constant predictions and targets stay finite.
_CCC_EPS = 1e-8


def _zero(x: Tensor) -> Tensor:
    return torch.zeros((), dtype=x.dtype, device=x.device)


def check_label_smoothing(label_smoothing: float) -> float:
    """``label_smoothing`` as a float, refused unless it lies in [0, 1).

    Raises:
        ValueError: outside [0, 1) or not finite.
    """
    value = float(label_smoothing)
    if not 0.0 <= value < 1.0:  # NaN fails both comparisons
        raise ValueError(
            f"expr_label_smoothing={label_smoothing} must lie in [0, 1): the share of each target moved from the "
            "true class to a uniform distribution (0 = plain cross-entropy, 0.1 is usual)."
        )
    return value


def masked_cross_entropy(
    logits: Tensor, target: Tensor, class_weight: Tensor | None = None, label_smoothing: float = 0.0
) -> Tensor:
    """Cross-entropy averaged over labeled samples, optionally against smoothed targets.

    With ``label_smoothing`` ε each labeled sample's loss is the cross-entropy against the target
    ``(1 - ε) · onehot(y) + ε / C`` (Szegedy et al., CVPR 2016):
    ``l_i = (1 - ε) · (-log p_i[y_i]) + ε / C · Σ_c (-log p_i[c])``. At uniform predictions it is still ``ln C``.

    With ``class_weight`` the average is weighted as in :func:`torch.nn.functional.cross_entropy`:
    ``sum_i w[y_i] * l_i / sum_i w[y_i]`` over labeled samples i (with smoothing, each sample's whole smoothed loss
    carries its true class's weight).

    Args:
        logits: (B, C).
        target: long (B,), class index or -1 (unlabeled).
        class_weight: optional (C,) weight per class.
        label_smoothing: ε in [0, 1); 0 is the plain cross-entropy.

    Returns:
        Scalar loss; 0 (with zero gradients) when no sample is labeled.

    Raises:
        ValueError: ``label_smoothing`` outside [0, 1).

    """
    smoothing = check_label_smoothing(label_smoothing)
    labeled = target != EXPR_UNLABELED
    safe_target = torch.where(labeled, target, torch.zeros_like(target))
    per_sample = F.cross_entropy(logits, safe_target, reduction="none", label_smoothing=smoothing)
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

    Unlabeled entries are set to 0 with ``torch.where`` and weighted 0 in
    :func:`multimodal_fer.metrics.concordance_correlation`, the package's one CCC.

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
    x = torch.where(labeled, pred, _zero(pred))
    y = torch.where(labeled, target, _zero(target))
    ccc = concordance_correlation(x.T, y.T, weight.T, epsilon=_CCC_EPS)
    return ccc, weight.sum(0)


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


def class_balance_weights(
    counts: Tensor, scheme: Literal["none", "inverse_frequency", "effective_number"], beta: float = 0.999
) -> Tensor:
    """Per-class loss weights from training-label counts, normalised to mean 1 over the classes seen.

    * ``"none"``: 1 for every class.
    * ``"inverse_frequency"``: proportional to ``1 / n_c``.
    * ``"effective_number"``: proportional to ``(1 - beta) / (1 - beta^n_c)``, the inverse of the effective
      number of samples (Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019);
      ``beta = 0`` gives equal weights, ``beta -> 1`` inverse frequency.

    Classes with no training sample get weight 0 (nothing was learned about them; a sample of such a class in
    validation or test then does not count in the loss) and a warning names them; the others are scaled to
    mean 1 (so with every class present the weights have mean 1 over all classes). As
    :func:`masked_cross_entropy` is a weighted mean, only the ratios between weights change the loss.

    Args:
        counts: (C,) number of training samples per class.
        scheme: one of the schemes above.
        beta: the effective-number hyperparameter, in [0, 1).

    Returns:
        float32 (C,) weights.

    Raises:
        ValueError: unknown scheme, ``beta`` outside [0, 1), negative counts or no class with a sample.

    """
    if scheme not in ("none", "inverse_frequency", "effective_number"):
        raise ValueError(f"Unknown class balance {scheme!r}; use none, inverse_frequency or effective_number.")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta={beta} must lie in [0, 1).")
    n = counts.detach().to(device="cpu", dtype=torch.float64)
    if (n < 0).any():
        raise ValueError(f"Class counts must be non-negative, got {n.tolist()}.")
    if scheme == "none":
        return torch.ones(n.shape, dtype=torch.float32)
    seen = n > 0
    if not seen.any():
        raise ValueError("No class has a training sample: cannot compute class-balanced weights.")
    if not seen.all():
        absent = torch.nonzero(~seen).flatten().tolist()
        warnings.warn(f"Classes {absent} have no training sample; their loss weight is 0.", stacklevel=2)
    safe = n.clamp_min(1.0)
    raw = 1.0 / safe if scheme == "inverse_frequency" else (1.0 - beta) / (1.0 - beta**safe)
    raw = torch.where(seen, raw, torch.zeros_like(raw))
    return (raw * (seen.sum() / raw.sum())).to(torch.float32)


def task_labeled(task: str, target: Tensor) -> Tensor:
    """Whether a batch has any usable label for a task (a device bool scalar, no host synchronisation).

    Args:
        task: ``"expr"``, ``"au"`` or ``"va"``.
        target: the task's labels: ``expr`` long (B,) with -1 unlabeled, ``au`` (B, K) or ``va`` (B, D) with
            NaN unlabeled.

    Returns:
        bool scalar: for ``expr`` and ``au`` any labeled entry; for ``va`` any dimension with the two labeled
        rows :func:`masked_ccc_loss` needs.

    """
    if task == "expr":
        return (target != EXPR_UNLABELED).any()
    if task == "au":
        return (~torch.isnan(target)).any()
    if task == "va":
        return ((~torch.isnan(target)).sum(0) >= 2).any()
    raise ValueError(f"Unknown task {task!r}; known: {list(TASKS)}.")


class MultitaskLoss(nn.Module):
    """The expression, AU and valence/arousal losses over the tasks a model predicts, combined by a balancer.

    A task with an output but no label key in the batch counts as unlabeled (term 0, kept in the graph).

    Args:
        expr_weight: weight of the expression cross-entropy (default fixed weighting only).
        au_weight: weight of the AU binary cross-entropy (default fixed weighting only).
        va_weight: weight of the ``1 - CCC`` valence/arousal loss (default fixed weighting only).
        balancing: how the task losses combine (None: :class:`FixedWeighting` with the three weights above);
            bound here to ``tasks``.
        tasks: the tasks the model predicts (``label_space.tasks``).
        expr_label_smoothing: label smoothing ε of the expression cross-entropy, in [0, 1) (see
            :func:`masked_cross_entropy`); 0 (default) is the plain cross-entropy.

    Raises:
        ValueError: a balancing method is given together with non-default weights, or
            ``expr_label_smoothing`` lies outside [0, 1).

    """

    def __init__(
        self,
        expr_weight: float = 1.0,
        au_weight: float = 1.0,
        va_weight: float = 1.0,
        balancing: TaskBalancing | None = None,
        tasks: Sequence[str] = TASKS,
        expr_label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.expr_label_smoothing = check_label_smoothing(expr_label_smoothing)
        weights = {"expr": expr_weight, "au": au_weight, "va": va_weight}
        if balancing is None:
            balancing = FixedWeighting(weights)
        elif any(value != 1.0 for value in weights.values()):
            changed = {f"{task}_weight": value for task, value in weights.items() if value != 1.0}
            raise ValueError(
                f"{changed} set the default fixed weighting, but the task balancing {type(balancing).__name__} is "
                "configured too; leave expr_weight/au_weight/va_weight at 1.0 (for fixed weights use "
                "multimodal_fer.models.task_balancing.FixedWeighting with init_args.weights)."
            )
        balancing.set_tasks(tasks)
        self.balancing = balancing

    def forward(
        self,
        outputs: Mapping[str, Tensor],
        batch: Mapping,
        au_pos_weight: Tensor | None = None,
        expr_class_weight: Tensor | None = None,
        shared: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Compute the loss of every predicted task and combine them.

        Args:
            outputs: model outputs, any of ``"expr"`` (B, C), ``"au"`` (B, K) logits, ``"va"`` (B, D).
            batch: labels ``"expr"`` long (B,) with -1 unlabeled, ``"au"`` float (B, K) and ``"va"`` float
                (B, D) with NaN unlabeled.
            au_pos_weight: optional (K,) positive weight per AU.
            expr_class_weight: optional (C,) weight per expression class.
            shared: the shared features z (B, D) that fed the heads, for balancers that need them (GradNorm).

        Returns:
            ``"loss"``: the combined loss (scalar), one unweighted scalar term per task in ``outputs`` and, for
            balancers with learned weights trained by their own objective (GradNorm, in training),
            ``"balancing_loss"``: add it to ``"loss"`` before ``backward``; it reaches only those weights.

        Raises:
            ValueError: ``outputs`` has none of the tasks.

        """
        terms: dict[str, Tensor] = {}
        if "expr" in outputs:
            logits = outputs["expr"]
            terms["expr"] = (
                masked_cross_entropy(logits, batch["expr"], expr_class_weight, self.expr_label_smoothing)
                if "expr" in batch
                else logits.sum() * 0.0
            )
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
        labeled = {
            task: task_labeled(task, batch[task]) if task in batch else torch.zeros((), dtype=torch.bool)
            for task in terms
        }
        loss, auxiliary = self.balancing(terms, labeled, shared)
        result = {"loss": loss, **terms}
        if auxiliary is not None:
            result["balancing_loss"] = auxiliary
        return result


def labels_of_present(batch: Mapping[str, Any], present: Tensor) -> dict[str, Tensor]:
    """The batch's task labels with the rows of absent samples marked unlabeled.

    A modality's own heads see zeros for samples where it is absent; their labels must not count, so they become
    unlabeled (``expr`` -1, ``au`` and ``va`` NaN) and every loss of this module skips them.

    Args:
        batch: labels ``"expr"`` long (B,), ``"au"`` float (B, K), ``"va"`` float (B, D), any of them.
        present: bool (B,), the samples that count.

    Returns:
        The labels found in ``batch``, same shapes and dtypes, unlabeled where ``present`` is False.
    """
    labels: dict[str, Tensor] = {}
    if "expr" in batch:
        labels["expr"] = torch.where(present, batch["expr"], torch.full_like(batch["expr"], EXPR_UNLABELED))
    for key in ("au", "va"):
        if key in batch:
            shape = (-1,) + (1,) * (batch[key].ndim - 1)
            labels[key] = torch.where(present.view(shape), batch[key], torch.full_like(batch[key], math.nan))
    return labels


class UnimodalLoss(nn.Module):
    """Deep supervision per modality: each modality's own heads trained on the samples where it is present.

    The loss is the mean, over the modalities with at least one present sample, of their unweighted fixed-weight
    multitask losses (:class:`MultitaskLoss` with weight 1 per task), each computed on that modality's present
    samples only (:func:`labels_of_present`).

    Args:
        tasks: the tasks the heads predict (``label_space.tasks``).
        expr_label_smoothing: label smoothing of the expression cross-entropy, as for :class:`MultitaskLoss`.
    """

    def __init__(self, tasks: Sequence[str] = TASKS, expr_label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.loss = MultitaskLoss(tasks=tasks, expr_label_smoothing=expr_label_smoothing)

    def forward(
        self,
        outputs: Mapping[str, Mapping[str, Tensor]],
        present: Mapping[str, Tensor],
        batch: Mapping[str, Any],
        au_pos_weight: Tensor | None = None,
        expr_class_weight: Tensor | None = None,
    ) -> Tensor | None:
        """Mean over modalities of their heads' losses on present samples.

        Args:
            outputs: per modality, its heads' outputs: ``"expr"`` (B, C), ``"au"`` (B, K) logits, ``"va"`` (B, D).
            present: per modality in ``outputs``, bool (B,) presence (before any modality dropout).
            batch: the labels, as for :class:`MultitaskLoss`.
            au_pos_weight: optional (K,) positive weight per AU.
            expr_class_weight: optional (C,) weight per expression class.

        Returns:
            The scalar loss, or None when no modality in ``outputs`` has a present sample.
        """
        terms = []
        for modality, heads in outputs.items():
            mask = present[modality]
            if not bool(mask.any()):
                continue
            labels = labels_of_present(batch, mask)
            terms.append(self.loss(heads, labels, au_pos_weight, expr_class_weight)["loss"])
        return torch.stack(terms).mean() if terms else None
