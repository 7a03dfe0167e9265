"""Metrics of one run recomputed from its per-sample predictions file.

Headline figures come from the package's own :class:`~multimodal_fer.metrics.FERMetrics` (so they equal what the
results file stores), the rest from torchmetrics and :mod:`multimodal_fer.metrics`:

* expression: accuracy, macro-F1, F1 of every class (``expr/f1_<class>``) and the confusion matrix (rows: labels,
  columns: predictions), unlabeled samples (-1) skipped;
* AUs: binary F1 per AU (``au/f1_au<N>``) and their mean at the threshold 0.5; with predictions of the same
  run on its validation split, also with one threshold per AU chosen on validation only
  (``au/f1_au<N>_tuned``, ``au/f1_mean_tuned``; see :func:`tune_au_thresholds`);
* affect dimensions: CCC, Pearson's r (``va/pcc_<dim>``), RMSE and SAGR, the share of predictions with the
  label's sign (``va/sagr_<dim>``), each over the dimension's labeled samples;
* the ABAW challenges' per-track scores and their multi-task sum (``abaw/*``, ``abaw1/*``;
  :mod:`multimodal_fer.metrics.abaw`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_f1_score,
    multiclass_confusion_matrix,
    multiclass_f1_score,
)
from torchmetrics.functional.regression import pearson_corrcoef

from multimodal_fer.evaluation.subject_bootstrap import SamplePredictions
from multimodal_fer.metrics import FERMetrics, sign_agreement
from multimodal_fer.metrics.abaw import abaw_scores, au_decision_accuracy
from multimodal_fer.types import EXPR_UNLABELED, LabelSpace

#: Thresholds tried for each AU on the validation predictions.
THRESHOLD_GRID = tuple(round(0.05 * step, 2) for step in range(1, 20))
#: The default AU threshold (on the sigmoid of the logit), as in training.
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class LoadedPredictions:
    """A predictions file and whether its samples carry their subject (the subject bootstrap needs it).

    Attributes:
        predictions: the per-sample outputs and labels (a single placeholder subject where the file has none).
        has_subjects: whether the file has a ``subject`` array.
    """

    predictions: SamplePredictions
    has_subjects: bool


def load_predictions(path: Path) -> LoadedPredictions:
    """Read a predictions file written by ``ResultsWriter(predictions=True)``, with or without subjects."""
    with np.load(path, allow_pickle=False) as data:
        has_subjects = "subject" in data.files
        if not has_subjects:
            arrays = {key: data[key] for key in data.files}
    if has_subjects:
        return LoadedPredictions(SamplePredictions.load(path), True)
    label_space = LabelSpace.from_dict(json.loads(str(arrays.pop("label_space"))))
    index = arrays["index"]
    targets = {key.removeprefix("target_"): value for key, value in arrays.items() if key.startswith("target_")}
    outputs = {key.removeprefix("output_"): value for key, value in arrays.items() if key.startswith("output_")}
    placeholder = np.zeros(len(index), dtype=np.int64)
    return LoadedPredictions(SamplePredictions(index, placeholder, targets, outputs, label_space, str(path)), False)


@dataclass(frozen=True)
class PredictionScores:
    """What one run's predictions give.

    Attributes:
        metrics: metric name (no stage prefix) → value.
        confusion: (C, C) expression counts, rows the labels and columns the predictions; None without expressions.
        thresholds: AU number → threshold tuned on validation; None without validation predictions.
    """

    metrics: dict[str, float]
    confusion: np.ndarray | None
    thresholds: dict[int, float] | None


def _has(predictions: SamplePredictions, task: str) -> bool:
    return task in predictions.outputs and task in predictions.targets


def _au_f1(probabilities: torch.Tensor, target: torch.Tensor, threshold: float) -> float:
    return float(binary_f1_score(probabilities, target.long(), threshold=threshold))


def tune_au_thresholds(validation: SamplePredictions) -> dict[int, float]:
    """One threshold per AU: the one of :data:`THRESHOLD_GRID` with the highest F1 on the validation predictions.

    Ties go to the threshold nearest 0.5. AUs without validation labels are left out (they keep 0.5).

    Args:
        validation: the run's predictions on its validation split.

    Returns:
        AU number → threshold.
    """
    if not _has(validation, "au"):
        return {}
    probabilities = torch.from_numpy(validation.outputs["au"]).float().sigmoid()
    target = torch.from_numpy(validation.targets["au"]).float()
    candidates = sorted(THRESHOLD_GRID, key=lambda t: abs(t - DEFAULT_THRESHOLD))  # max() keeps the first best
    thresholds = {}
    for column, action_unit in enumerate(validation.label_space.action_units):
        labeled = ~torch.isnan(target[:, column])
        if bool(labeled.any()):
            rows, truth = probabilities[labeled, column], target[labeled, column]
            thresholds[action_unit] = max(candidates, key=lambda t: _au_f1(rows, truth, t))
    return thresholds


def _au_scores(predictions: SamplePredictions, thresholds: dict[int, float]) -> dict[str, float]:
    """Per-AU F1 with the given thresholds (``_tuned`` names) and their mean over the AUs with labels."""
    probabilities = torch.from_numpy(predictions.outputs["au"]).float().sigmoid()
    target = torch.from_numpy(predictions.targets["au"]).float()
    scores: dict[str, float] = {}
    for column, action_unit in enumerate(predictions.label_space.action_units):
        labeled = ~torch.isnan(target[:, column])
        if bool(labeled.any()):
            threshold = thresholds.get(action_unit, DEFAULT_THRESHOLD)
            rows, truth = probabilities[labeled, column], target[labeled, column]
            scores[f"au/f1_au{action_unit}_tuned"] = _au_f1(rows, truth, threshold)
    if scores:
        scores["au/f1_mean_tuned"] = float(np.mean(list(scores.values())))
    return scores


def _expression_scores(predictions: SamplePredictions) -> tuple[dict[str, float], np.ndarray | None]:
    names = predictions.label_space.expressions
    target = torch.from_numpy(predictions.targets["expr"]).long()
    if not bool((target != EXPR_UNLABELED).any()):
        return {}, None
    predicted = torch.from_numpy(predictions.outputs["expr"]).float().argmax(dim=1)
    per_class = multiclass_f1_score(predicted, target, len(names), average="none", ignore_index=EXPR_UNLABELED)
    confusion = multiclass_confusion_matrix(predicted, target, len(names), ignore_index=EXPR_UNLABELED)
    return {f"expr/f1_{name}": float(value) for name, value in zip(names, per_class, strict=True)}, confusion.numpy()


def _affect_scores(predictions: SamplePredictions) -> dict[str, float]:
    scores = {}
    for column, dimension in enumerate(predictions.label_space.dimensions):
        target = predictions.targets["va"][:, column].astype(np.float64)
        labeled = ~np.isnan(target)
        prediction, target = predictions.outputs["va"][labeled, column].astype(np.float64), target[labeled]
        if labeled.sum() >= 1:
            scores[f"va/sagr_{dimension}"] = sign_agreement(prediction, target)
        if labeled.sum() >= 2:
            r = pearson_corrcoef(torch.from_numpy(prediction), torch.from_numpy(target))
            scores[f"va/pcc_{dimension}"] = float(r)
    return scores


def score_predictions(predictions: SamplePredictions, validation: SamplePredictions | None = None) -> PredictionScores:
    """Every metric the predictions allow (see the module's description).

    Args:
        predictions: a run's predictions on one test condition.
        validation: the same run's predictions on its validation split (for the tuned AU thresholds), or None.

    Returns:
        The metrics, the confusion matrix and the tuned thresholds.
    """
    space = predictions.label_space
    fer = FERMetrics(space, "test")
    fer.update(
        {task: torch.from_numpy(value) for task, value in predictions.outputs.items()},
        {task: torch.from_numpy(value) for task, value in predictions.targets.items()},
    )
    metrics = {name.removeprefix("test/"): float(value) for name, value in fer.compute().items()}
    confusion = None
    if space.num_expressions and _has(predictions, "expr"):
        per_class, confusion = _expression_scores(predictions)
        metrics.update(per_class)
    thresholds = None
    if space.num_action_units and _has(predictions, "au") and validation is not None:
        thresholds = tune_au_thresholds(validation)
        metrics.update(_au_scores(predictions, thresholds))
    if space.num_dimensions and _has(predictions, "va"):
        metrics.update(_affect_scores(predictions))
    au_accuracy = None
    if space.num_action_units and _has(predictions, "au"):
        probabilities = 1.0 / (1.0 + np.exp(-predictions.outputs["au"].astype(np.float64)))
        au_accuracy = au_decision_accuracy(probabilities, predictions.targets["au"].astype(np.float64))
    metrics.update(abaw_scores(metrics, au_accuracy))
    return PredictionScores(metrics, confusion, thresholds)
