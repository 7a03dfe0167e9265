"""Epoch metrics of multitask FER, built from torchmetrics so values are exact under DDP.

Names follow ``{stage}/{task}/{metric}`` (see the design page): ``val/expr/f1_macro``, ``val/au/f1_mean``,
``val/va/ccc_arousal``, plus ``val/score`` to monitor.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MultilabelF1Score
from torchmetrics.regression import ConcordanceCorrCoef, MeanSquaredError
from torchmetrics.regression.pearson import _final_aggregation

from multimodal_fer.types import EXPR_UNLABELED, LabelSpace

#: Value that marks an ignored AU entry for the multilabel F1 (NaN labels are mapped to it).
_AU_IGNORE = -1

#: NumPy arrays or torch tensors: the CCC functions below compute the same on both.
ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def concordance_from_moments(
    mean_x: ArrayT, mean_y: ArrayT, var_x: ArrayT, var_y: ArrayT, covariance: ArrayT, epsilon: float = 0.0
) -> ArrayT:
    """Lin's (1989) concordance correlation coefficient from population (1/N) moments: the package's one CCC.

    ``2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2 + epsilon)``. Every CCC of the package ends here:
    the DDP-exact epoch metric (:class:`PopulationConcordanceCorrCoef`), the sample-level
    :func:`concordance_correlation` (training loss, subject bootstrap, reports, benchmarks).

    Args:
        mean_x: means of the predictions, any shape (arrays or tensors, all of one kind).
        mean_y: means of the labels.
        var_x: population variances of the predictions.
        var_y: population variances of the labels.
        covariance: population covariances.
        epsilon: added to the denominator (the training loss keeps constant inputs finite with a tiny one).

    Returns:
        The CCC, shaped as the inputs.

    """
    return 2.0 * covariance / (var_x + var_y + (mean_x - mean_y) ** 2 + epsilon)


def concordance_correlation(
    prediction: ArrayT, target: ArrayT, weights: ArrayT | None = None, epsilon: float = 0.0
) -> ArrayT:
    """Lin's concordance correlation coefficient of samples, with population moments and optional sample weights.

    Computes the same on NumPy arrays and on torch tensors (differentiable there). Entries of the last axis are
    the samples; leading axes of ``prediction``, ``target`` and ``weights`` broadcast, so a (D, N) input scores D
    columns and (R, N) weights score R weighted versions of one (N,) data set (e.g. draws of a bootstrap) at once.

    Args:
        prediction: (..., N) predictions; finite (drop unlabeled entries, or set them to 0 with weight 0).
        target: (..., N) labels, finite likewise.
        weights: optional (..., N) non-negative sample weights (an integer weight counts a sample that many
            times); None weighs every sample 1. A row of zero weights gives moments 0 (CCC NaN unless
            ``epsilon`` > 0).
        epsilon: see :func:`concordance_from_moments`.

    Returns:
        (...) CCC: a scalar for (N,) inputs without weights, (R,) for (R, N) weights.

    """
    if weights is None or weights.ndim <= prediction.ndim:  # one weighting per row: exact two-pass moments
        total = None if weights is None else weights.sum(-1) + (weights.sum(-1) == 0)  # empty row: moments 0

        def average(values: ArrayT) -> ArrayT:
            return values.mean(-1) if weights is None else (weights * values).sum(-1) / total

        mean_x, mean_y = average(prediction), average(target)
        dx, dy = prediction - mean_x[..., None], target - mean_y[..., None]
        return concordance_from_moments(mean_x, mean_y, average(dx * dx), average(dy * dy), average(dx * dy), epsilon)
    # Many weightings of one set of samples (e.g. bootstrap draws, (R, N) weights for (N,) samples): weighted
    # sums by einsum, without (R, N) temporaries besides the weights. Moments are taken about the plain mean
    # (variances and covariance do not depend on the point they are taken about) so that the raw second moments
    # stay well conditioned.
    weighted_sum = np.einsum if isinstance(weights, np.ndarray) else torch.einsum
    shift_x, shift_y = prediction.mean(-1)[..., None], target.mean(-1)[..., None]
    x, y = prediction - shift_x, target - shift_y
    total = weights.sum(-1)
    total = total + (total == 0)  # an empty row: moments 0 instead of a division by zero
    mean_x = weighted_sum("...n,...n->...", weights, x) / total
    mean_y = weighted_sum("...n,...n->...", weights, y) / total
    var_x = weighted_sum("...n,...n->...", weights, x * x) / total - mean_x**2
    var_y = weighted_sum("...n,...n->...", weights, y * y) / total - mean_y**2
    covariance = weighted_sum("...n,...n->...", weights, x * y) / total - mean_x * mean_y
    return concordance_from_moments(
        mean_x + shift_x[..., 0], mean_y + shift_y[..., 0], var_x, var_y, covariance, epsilon
    )


def sign_agreement(prediction: np.ndarray, target: np.ndarray) -> float:
    """SAGR: the share of samples whose prediction has the sign of the label (valence/arousal; 0 is its own sign).

    Args:
        prediction: (N,) predictions.
        target: (N,) labels.

    Returns:
        The share in [0, 1]; NaN for no samples.

    """
    if prediction.size == 0:
        return float("nan")
    return float(np.mean(np.sign(prediction) == np.sign(target)))


class PopulationConcordanceCorrCoef(ConcordanceCorrCoef):
    """Lin's concordance correlation coefficient with population (1/N) moments, DDP-exact.

    torchmetrics' :class:`~torchmetrics.regression.ConcordanceCorrCoef` divides the variances by N - 1
    but the squared mean difference by nothing, which differs from Lin (1989) and from the AVEC/ABAW
    evaluation code (and from :func:`concordance_correlation`) by O(1/N). This subclass keeps its numerically
    stable, mergeable states and computes the CCC from them with :func:`concordance_from_moments` (the states
    hold sums of squares, so they are divided by N first).

    Args:
        num_outputs: number of columns scored independently (inputs (N,) for 1, else (N, num_outputs)).

    """

    def __init__(self, num_outputs: int = 1) -> None:
        super().__init__(num_outputs=num_outputs)

    def compute(self) -> Tensor:
        """Compute the CCC over all updates (and all processes).

        Returns:
            Scalar (or (num_outputs,)) CCC; NaN when fewer than 2 values were seen.

        """
        if (self.num_outputs == 1 and self.mean_x.numel() > 1) or (self.num_outputs > 1 and self.mean_x.ndim > 1):
            mean_x, mean_y, _, _, var_x, var_y, corr_xy, n_total = _final_aggregation(
                means_x=self.mean_x,
                means_y=self.mean_y,
                maxs_abs_x=self.max_abs_dev_x,
                maxs_abs_y=self.max_abs_dev_y,
                vars_x=self.var_x,
                vars_y=self.var_y,
                corrs_xy=self.corr_xy,
                nbs=self.n_total,
            )
        else:
            mean_x, mean_y = self.mean_x, self.mean_y
            var_x, var_y, corr_xy, n_total = self.var_x, self.var_y, self.corr_xy, self.n_total
        ccc = concordance_from_moments(mean_x, mean_y, var_x / n_total, var_y / n_total, corr_xy / n_total)
        ccc = torch.where(n_total >= 2, ccc, torch.full_like(ccc, float("nan")))
        return ccc.squeeze(0) if self.num_outputs == 1 else ccc


class LabeledCount(Metric):
    """Number of labeled entries per column, summed over updates and processes.

    Args:
        num_columns: number of counted columns.

    """

    full_state_update = False

    def __init__(self, num_columns: int = 1) -> None:
        super().__init__()
        self.add_state("count", default=torch.zeros(num_columns, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, labeled: Tensor) -> None:
        """Add labeled entries.

        Args:
            labeled: bool (B, num_columns) or (B,) for one column.

        """
        self.count += labeled.reshape(labeled.shape[0], -1).sum(0).to(self.count.dtype)

    def compute(self) -> Tensor:
        """Return the counts.

        Returns:
            long (num_columns,).

        """
        return self.count


def _counts(metric: LabeledCount) -> Tensor:
    """Return synced counts, without the compute-before-update warning (no update means count 0)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
        return metric.compute().reshape(-1)


class FERMetrics(nn.Module):
    """Expression, AU and valence/arousal(/dominance) metrics of one stage, skipping unlabeled entries.

    * expression (``expr`` -1 skipped): ``{stage}/expr/accuracy`` (micro) and ``{stage}/expr/f1_macro``
      (macro over the classes that occur in the labels or predictions, as scikit-learn does);
    * AUs (NaN skipped; an AU is predicted active where ``sigmoid(logit) > 0.5``): binary F1
      ``{stage}/au/f1_au{N}`` per AU number N and their mean over the AUs with labels,
      ``{stage}/au/f1_mean``;
    * dimensions (NaN rows skipped per dimension): ``{stage}/va/ccc_{dim}`` (Lin's CCC, population
      moments) and ``{stage}/va/rmse_{dim}``;
    * ``{stage}/score``: mean of the available task summaries (expr f1_macro, au f1_mean, mean CCC).

    A metric that saw no labeled entry (counted over all processes) is left out of :meth:`compute`'s
    result instead of being reported as 0 or NaN: an AU with no label, a dimension with no label, or a
    whole task; a dimension's CCC also needs two labeled values (its RMSE one). ``{stage}/score`` is
    left out when no task has a summary. All processes take the same decisions (the counts are synced
    first), so the same collective calls run everywhere under DDP.

    Args:
        label_space: the dataset's label space (which tasks, AU numbers, dimension names).
        stage: name prefix, e.g. ``"val"``.

    """

    def __init__(self, label_space: LabelSpace, stage: str) -> None:
        super().__init__()
        self.label_space = label_space
        self.stage = stage
        self.expr: MetricCollection | None = None
        self.au: MultilabelF1Score | None = None
        self.ccc = nn.ModuleList()
        self.rmse = nn.ModuleList()
        self.expr_count = LabeledCount(1)
        self.au_count = LabeledCount(max(label_space.num_action_units, 1))
        self.va_count = LabeledCount(max(label_space.num_dimensions, 1))
        if label_space.num_expressions:
            num_classes = label_space.num_expressions
            self.expr = MetricCollection(
                {
                    "accuracy": MulticlassAccuracy(num_classes, average="micro", ignore_index=EXPR_UNLABELED),
                    "f1_macro": MulticlassF1Score(num_classes, average="macro", ignore_index=EXPR_UNLABELED),
                },
                compute_groups=False,
            )
        if label_space.num_action_units:
            self.au = MultilabelF1Score(
                label_space.num_action_units, threshold=0.5, average="none", ignore_index=_AU_IGNORE
            )
        for _ in label_space.dimensions:
            self.ccc.append(PopulationConcordanceCorrCoef())
            self.rmse.append(MeanSquaredError(squared=False))

    @torch.no_grad()
    def update(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> None:
        """Accumulate one batch; tasks missing from ``outputs`` or ``batch`` are skipped.

        Args:
            outputs: ``"expr"`` logits (B, C), ``"au"`` logits (B, K), ``"va"`` values (B, D).
            batch: ``"expr"`` long (B,) with -1 unlabeled, ``"au"`` float (B, K) and ``"va"`` float (B, D)
                with NaN unlabeled.

        """
        if self.expr is not None and "expr" in outputs and "expr" in batch:
            target = batch["expr"].long()
            self.expr.update(outputs["expr"].detach().float(), target)
            self.expr_count.update(target != EXPR_UNLABELED)
        if self.au is not None and "au" in outputs and "au" in batch:
            target = batch["au"]
            labeled = ~torch.isnan(target)
            int_target = torch.where(labeled, target, torch.full_like(target, _AU_IGNORE)).long()
            self.au.update(outputs["au"].detach().float().sigmoid(), int_target)
            self.au_count.update(labeled)
        if len(self.ccc) and "va" in outputs and "va" in batch:
            pred = outputs["va"].detach().float()
            target = batch["va"].float()
            labeled = ~torch.isnan(target)
            self.va_count.update(labeled)
            for d in range(len(self.ccc)):
                rows = labeled[:, d]
                if bool(rows.any()):
                    self.ccc[d].update(pred[rows, d], target[rows, d])
                    self.rmse[d].update(pred[rows, d], target[rows, d])

    def compute(self) -> dict[str, Tensor]:
        """Compute the stage's metrics over everything accumulated (on every process).

        Returns:
            Scalar tensors keyed ``{stage}/{task}/{metric}`` and ``{stage}/score``; metrics without any
            labeled entry are omitted.

        """
        s = self.stage
        values: dict[str, Tensor] = {}
        summaries: list[Tensor] = []
        if self.expr is not None and int(_counts(self.expr_count)[0]) > 0:
            expr = self.expr.compute()
            values[f"{s}/expr/accuracy"] = expr["accuracy"]
            values[f"{s}/expr/f1_macro"] = expr["f1_macro"]
            summaries.append(expr["f1_macro"])
        if self.au is not None:
            counts = _counts(self.au_count)
            if int(counts.sum()) > 0:
                f1 = self.au.compute()
                seen = counts > 0
                for j, au in enumerate(self.label_space.action_units):
                    if bool(seen[j]):
                        values[f"{s}/au/f1_au{au}"] = f1[j]
                values[f"{s}/au/f1_mean"] = f1[seen].mean()
                summaries.append(values[f"{s}/au/f1_mean"])
        if len(self.ccc):
            counts = _counts(self.va_count)
            cccs: list[Tensor] = []
            for d, dim in enumerate(self.label_space.dimensions):
                if int(counts[d]) > 0:
                    values[f"{s}/va/rmse_{dim}"] = self.rmse[d].compute()
                if int(counts[d]) > 1:
                    ccc = self.ccc[d].compute()
                    values[f"{s}/va/ccc_{dim}"] = ccc
                    cccs.append(ccc)
            if cccs:
                summaries.append(torch.stack(cccs).mean())
        if summaries:
            values[f"{s}/score"] = torch.stack([v.float() for v in summaries]).mean()
        return values

    def reset(self) -> None:
        """Clear every accumulated state."""
        for module in self.modules():
            if isinstance(module, Metric):
                module.reset()
