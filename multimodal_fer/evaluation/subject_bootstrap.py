"""Paired bootstrap over test subjects: would another draw of subjects reverse a comparison of two models?

A test split of a dozen subjects gives one number per model, and the difference between a fused and a
single-modality model of a few hundredths can change sign with the subjects drawn. This module measures how
much: it draws the test subjects again with replacement (the subject is the unit, since a subject's samples
are not independent), recomputes each model's metric on the same draw, and reports the difference's
distribution. Both models are scored on the same drawn subjects (a paired bootstrap), so what the subjects
share cancels.

The metrics are those of :class:`multimodal_fer.metrics.FERMetrics`, recomputed from per-sample predictions
(``mfer test --results.predictions=true`` writes them) with every sample weighted by how often its subject was
drawn: expression macro-F1 over the classes that occur, mean binary F1 over the AUs with labels, and Lin's CCC
with population moments per affect dimension (:func:`multimodal_fer.metrics.concordance_correlation`). Unlabeled
entries (expression -1, NaN AUs and dimensions) are skipped, as there.

Example::

    candidate = SamplePredictions.load("fusion/checkpoints/results-subjects.predictions.npz")
    singles = [SamplePredictions.load(p) for p in single_paths]
    result = paired_subject_bootstrap([(candidate, singles)], "va/ccc_arousal", resamples=2000)
    low, high = result.interval()[0]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multimodal_fer.metrics import concordance_correlation
from multimodal_fer.types import EXPR_UNLABELED, LabelSpace

#: Metric names understood here (``test/`` prefix dropped): expression macro-F1 and the mean AU F1; the CCC of
#: every affect dimension is ``va/ccc_<dimension>``.
FIXED_METRICS = ("expr/f1_macro", "au/f1_mean")


@dataclass(frozen=True)
class SamplePredictions:
    """One model's outputs and the labels for every sample of one test set.

    Attributes:
        index: (N,) cache indices, sorted.
        subject: (N,) subject of each sample.
        targets: labels by task: ``"expr"`` (N,) with -1 unlabeled, ``"au"`` (N, K) and ``"va"`` (N, D) with NaN
            unlabeled.
        outputs: head outputs by task: ``"expr"`` logits (N, C), ``"au"`` logits (N, K), ``"va"`` (N, D).
        label_space: what the labels mean.
        source: the file the predictions came from (for error messages).
    """

    index: np.ndarray
    subject: np.ndarray
    targets: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    label_space: LabelSpace
    source: str = "<memory>"

    @classmethod
    def load(cls, path: str | Path) -> SamplePredictions:
        """Read a predictions file written by ``ResultsWriter(predictions=True)``.

        Raises:
            ValueError: the file has no subject per sample (the batches of its data module carry none).
        """
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        if "subject" not in arrays:
            raise ValueError(
                f"{path} has no 'subject' array: its data module's batches carry no subject, so subjects cannot be "
                "resampled. Only data modules that put 'subject' in the batch support the subject bootstrap."
            )
        label_space = LabelSpace.from_dict(json.loads(str(arrays.pop("label_space"))))
        targets = {key.removeprefix("target_"): value for key, value in arrays.items() if key.startswith("target_")}
        outputs = {key.removeprefix("output_"): value for key, value in arrays.items() if key.startswith("output_")}
        return cls(arrays["index"], arrays["subject"], targets, outputs, label_space, str(path))


def subject_weights(subject: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Per-sample weights of ``resamples`` draws of the subjects with replacement.

    Drawing S subjects with replacement is a multinomial count per subject; a sample's weight is its
    subject's count, which scores the drawn data set exactly (a subject drawn twice counts twice).

    Args:
        subject: (N,) subject of each sample.
        resamples: number of draws R.
        seed: seed of the draws.

    Returns:
        (R, N) float64 weights.
    """
    _, position = np.unique(subject, return_inverse=True)
    count = int(position.max()) + 1
    draws = np.random.default_rng(seed).multinomial(count, np.full(count, 1.0 / count), size=resamples)
    return draws[:, position].astype(np.float64)


def metric_names(label_space: LabelSpace) -> tuple[str, ...]:
    """The metrics :func:`weighted_metric` computes for this label space."""
    names = []
    if label_space.num_expressions:
        names.append("expr/f1_macro")
    if label_space.num_action_units:
        names.append("au/f1_mean")
    names += [f"va/ccc_{dim}" for dim in label_space.dimensions]
    return tuple(names)


def _expression_macro_f1(target: np.ndarray, logits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    classes = logits.shape[1]
    labeled = target != EXPR_UNLABELED
    pair = target[labeled].astype(np.int64) * classes + logits[labeled].argmax(axis=1)
    confusion = np.stack([np.bincount(pair, w, minlength=classes * classes) for w in weights[:, labeled]])
    confusion = confusion.reshape(len(weights), classes, classes)  # (R, true, predicted)
    hits = np.diagonal(confusion, axis1=1, axis2=2)
    denominator = confusion.sum(axis=2) + confusion.sum(axis=1)  # 2 TP + FP + FN
    occurs = denominator > 0
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=occurs)
    return (f1 * occurs).sum(axis=1) / np.maximum(occurs.sum(axis=1), 1)


def _action_unit_mean_f1(target: np.ndarray, logits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    labeled = ~np.isnan(target)
    positive = np.where(labeled, target, 0.0) > 0.5
    predicted = logits > 0.0  # sigmoid(logit) > 0.5
    hit = (labeled & positive & predicted).astype(np.float64)
    false_alarm = (labeled & ~positive & predicted).astype(np.float64)
    miss = (labeled & positive & ~predicted).astype(np.float64)
    tp, fp, fn = weights @ hit, weights @ false_alarm, weights @ miss  # (R, K)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    seen = (weights @ labeled.astype(np.float64)) > 0
    return (f1 * seen).sum(axis=1) / np.maximum(seen.sum(axis=1), 1)


def _concordance(target: np.ndarray, prediction: np.ndarray, weights: np.ndarray) -> np.ndarray:
    labeled = ~np.isnan(target)
    x = prediction[labeled].astype(np.float64)
    y = target[labeled].astype(np.float64)
    return concordance_correlation(x, y, weights[:, labeled])


def weighted_metric(predictions: SamplePredictions, metric: str, weights: np.ndarray) -> np.ndarray:
    """A metric of one model on weighted samples, for every row of weights at once.

    Args:
        predictions: the model's per-sample predictions.
        metric: ``"expr/f1_macro"``, ``"au/f1_mean"`` or ``"va/ccc_<dimension>"``.
        weights: (R, N) sample weights (one row of ones scores the test set as it is).

    Returns:
        (R,) metric values.

    Raises:
        ValueError: an unknown metric, or one the predictions hold no outputs for.
    """
    known = metric_names(predictions.label_space)
    if metric not in known:
        raise ValueError(f"Unknown metric {metric!r} for {predictions.source}; choose one of {known}.")
    task = metric.split("/")[0]
    if task not in predictions.outputs or task not in predictions.targets:
        raise ValueError(f"{predictions.source} holds no {task!r} outputs or labels, so {metric} cannot be computed.")
    target, output = predictions.targets[task], predictions.outputs[task]
    if metric == "expr/f1_macro":
        return _expression_macro_f1(target, output, weights)
    if metric == "au/f1_mean":
        return _action_unit_mean_f1(target, output, weights)
    column = predictions.label_space.dimensions.index(metric.removeprefix("va/ccc_"))
    return _concordance(target[:, column], output[:, column], weights)


def metric_value(predictions: SamplePredictions, metric: str) -> float:
    """A metric of one model on its whole test set (what ``results.json`` reports as ``test/<metric>``)."""
    return float(weighted_metric(predictions, metric, np.ones((1, len(predictions.index))))[0])


@dataclass(frozen=True)
class PairedBootstrap:
    """Candidate minus best baseline, on the test set and on every draw of its subjects.

    Attributes:
        metric: the metric compared.
        observed: (P,) difference on the test set as it is, one per comparison (e.g. per seed).
        resampled: (R, P) the difference on each of R draws of the subjects (the same draw for every comparison).
        subjects: number of test subjects drawn from.
    """

    metric: str
    observed: np.ndarray
    resampled: np.ndarray
    subjects: int

    def interval(self, level: float = 0.95) -> np.ndarray:
        """(P, 2) percentile interval of each comparison's difference."""
        tail = 100 * (1 - level) / 2
        return np.percentile(self.resampled, [tail, 100 - tail], axis=0).T

    def mean_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Percentile interval of the difference averaged over the comparisons (e.g. the mean over seeds)."""
        tail = 100 * (1 - level) / 2
        low, high = np.percentile(self.resampled.mean(axis=1), [tail, 100 - tail])
        return float(low), float(high)

    def win_fraction(self) -> np.ndarray:
        """(P,) share of draws in which the candidate beats the best baseline."""
        return (self.resampled > 0).mean(axis=0)

    def mean_win_fraction(self) -> float:
        """Share of draws in which the candidate beats the best baseline on average over the comparisons."""
        return float((self.resampled.mean(axis=1) > 0).mean())


def _check_same_test_set(reference: SamplePredictions, other: SamplePredictions) -> None:
    if not (np.array_equal(reference.index, other.index) and np.array_equal(reference.subject, other.subject)):
        raise ValueError(
            f"{other.source} and {reference.source} hold predictions for different test samples "
            f"({len(other.index)} vs {len(reference.index)}); test every model on the same cache and split."
        )


def scores_on_draws(
    models: Sequence[SamplePredictions], metric: str, resamples: int = 2000, seed: int = 0
) -> np.ndarray:
    """Every model's metric on the test set as it is and on the same draws of its subjects.

    Args:
        models: K models' predictions, all on one test set.
        metric: see :func:`weighted_metric`.
        resamples: number of draws R of the subjects.
        seed: seed of the draws.

    Returns:
        (1 + R, K): row 0 is the test set as it is, rows 1.. the draws.

    Raises:
        ValueError: no model, or predictions of different test sets.
    """
    if not models:
        raise ValueError("Give at least one model's predictions.")
    for other in models[1:]:
        _check_same_test_set(models[0], other)
    weights = np.concatenate([np.ones((1, len(models[0].index))), subject_weights(models[0].subject, resamples, seed)])
    return np.stack([weighted_metric(model, metric, weights) for model in models], axis=1)


def paired_subject_bootstrap(
    comparisons: Sequence[tuple[SamplePredictions, Sequence[SamplePredictions]]],
    metric: str,
    resamples: int = 2000,
    seed: int = 0,
) -> PairedBootstrap:
    """Bootstrap the test subjects and compare a candidate with the best of its baselines on every draw.

    On each draw the baseline is the best of ``baselines`` on that draw (the strictest rule: chosen per
    draw by the figure it is compared on). Every comparison is scored on the same draws, so averaging
    ``resampled`` over comparisons (seeds) gives the distribution of the mean difference.

    Args:
        comparisons: (candidate, baselines) pairs, e.g. one per seed; all on one test set.
        metric: see :func:`weighted_metric`.
        resamples: number of draws of the subjects.
        seed: seed of the draws.

    Returns:
        The observed and resampled differences.

    Raises:
        ValueError: no comparison, a comparison without baselines, or predictions of different test sets.
    """
    if not comparisons or any(not baselines for _, baselines in comparisons):
        raise ValueError("Give at least one (candidate, baselines) comparison, each with at least one baseline.")
    models = [model for candidate, baselines in comparisons for model in (candidate, *baselines)]
    scores = scores_on_draws(models, metric, resamples, seed)
    differences, start = [], 0
    for _, baselines in comparisons:
        end = start + 1 + len(baselines)
        differences.append(scores[:, start] - scores[:, start + 1 : end].max(axis=1))
        start = end
    difference = np.stack(differences, axis=1)  # (1 + R, P)
    return PairedBootstrap(metric, difference[0], difference[1:], int(np.unique(models[0].subject).size))


def paired_loss_bootstrap(
    comparisons: Sequence[tuple[SamplePredictions, SamplePredictions, SamplePredictions, SamplePredictions]],
    metric: str,
    resamples: int = 2000,
    seed: int = 0,
) -> PairedBootstrap:
    """Does one model lose less than another when a modality is withheld? Bootstrapped over the test subjects.

    Each comparison is ``(plain, plain_without, robust, robust_without)``: two models tested with every modality
    and with one withheld. The difference is ``(plain - plain_without) - (robust - robust_without)``, how much
    more the plain model loses; positive means the robust model (e.g. trained with modality dropout) loses less.

    Args:
        comparisons: one 4-tuple per seed, all on one test set.
        metric: see :func:`weighted_metric`.
        resamples: number of draws of the subjects.
        seed: seed of the draws.

    Returns:
        The observed and resampled differences of the losses.
    """
    if not comparisons:
        raise ValueError("Give at least one (plain, plain_without, robust, robust_without) comparison.")
    models = [model for comparison in comparisons for model in comparison]
    scores = scores_on_draws(models, metric, resamples, seed).reshape(1 + resamples, len(comparisons), 4)
    difference = (scores[..., 0] - scores[..., 1]) - (scores[..., 2] - scores[..., 3])
    return PairedBootstrap(metric, difference[0], difference[1:], int(np.unique(models[0].subject).size))
