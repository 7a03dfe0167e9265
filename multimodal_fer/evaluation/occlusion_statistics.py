"""Scores, recovery shares and paired differences of an occlusion benchmark, with subject-bootstrap intervals.

One draw of the test units (:func:`~multimodal_fer.evaluation.subject_bootstrap.subject_weights`; subjects where the
split records them) is shared by every seed, recogniser, condition and occlusion kind: the test subjects are the same
across seeds, so each draw scores every seed's models on the same drawn test set. Every figure ``x`` is computed per
seed on the test set as it is (row 0) and on each draw (rows 1..R), a (S, 1 + R) array; then

- a **score** is the mean over seeds of row 0, with the std over seeds and the percentile interval of the seed mean
  over the draws;
- a **recovery share** is ``(restored − occluded) / (clean − occluded)``, the restored pipeline against the
  reference recogniser's clean and occluded scores, each averaged over seeds first, on row 0 and on every draw
  (interval over the draws; draws where clean and occluded tie leave the share undefined and are counted);
- a **paired difference** is candidate minus baseline per seed, averaged over seeds, on row 0 and on every draw, with
  its interval and the share of draws in which the candidate wins (difference > 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from multimodal_fer.evaluation.subject_bootstrap import SamplePredictions, subject_weights, weighted_metric

#: Below this |clean − occluded| the recovery share is undefined.
COST_EPSILON = 1e-9


def draw_weights(units: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(1 + R, N) sample weights: row 0 all ones (the test set as it is), rows 1.. the draws of the units."""
    return np.concatenate([np.ones((1, units.size)), subject_weights(units, resamples, seed)])


def restrict(predictions: SamplePredictions, rows: np.ndarray) -> SamplePredictions:
    """The predictions of some samples only (e.g. one occlusion kind)."""
    return SamplePredictions(
        predictions.index[rows],
        predictions.subject[rows],
        {task: value[rows] for task, value in predictions.targets.items()},
        {task: value[rows] for task, value in predictions.outputs.items()},
        predictions.label_space,
        predictions.source,
    )


def seed_values(
    per_seed: Sequence[SamplePredictions], metric: str, weights: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """(S, 1 + R) a metric of one pipeline per seed, on the test set (row 0) and on every draw.

    Args:
        per_seed: the pipeline's predictions, one per seed, all on the same split.
        metric: see :func:`~multimodal_fer.evaluation.subject_bootstrap.weighted_metric`.
        weights: (1 + R, N) from :func:`draw_weights`, over the whole split.
        rows: the samples of the group scored (None: all).
    """
    if rows is None:
        return np.stack([weighted_metric(p, metric, weights) for p in per_seed])
    group_weights = np.ascontiguousarray(weights[:, rows])
    return np.stack([weighted_metric(restrict(p, rows), metric, group_weights) for p in per_seed])


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def _std(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.std(finite, ddof=1)) if finite.size > 1 else 0.0


def score_entry(values: np.ndarray, level: float) -> dict[str, Any]:
    """Mean over seeds, std over seeds and interval of the seed mean, from (S, 1 + R) values."""
    mean = values.mean(axis=0)
    low, high = _interval(mean[1:], level)
    return {
        "mean": float(mean[0]),
        "std": _std(values[:, 0]),
        "low": low,
        "high": high,
        "per_seed": [float(v) for v in values[:, 0]],
    }


def recovery_share(restored: np.ndarray, occluded: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """``(restored − occluded) / (clean − occluded)`` of the seed means, on every row.

    Args:
        restored: (S, 1 + R) the restored pipeline's values.
        occluded: (S, 1 + R) the reference recogniser's values on occluded faces.
        clean: (S, 1 + R) the reference recogniser's values on clean faces.

    Returns:
        (1 + R,) shares; NaN where clean and occluded tie.
    """
    cost = clean.mean(axis=0) - occluded.mean(axis=0)
    gain = restored.mean(axis=0) - occluded.mean(axis=0)
    defined = np.abs(cost) > COST_EPSILON
    return np.divide(gain, cost, out=np.full_like(gain, np.nan), where=defined)


def recovery_entry(restored: np.ndarray, occluded: np.ndarray, clean: np.ndarray, level: float) -> dict[str, Any]:
    """The recovery share with its interval over draws, the per-seed shares and their std."""
    share = recovery_share(restored, occluded, clean)
    per_seed = np.array(
        [recovery_share(r[None], o[None], c[None])[0] for r, o, c in zip(restored, occluded, clean, strict=True)]
    )
    low, high = _interval(share[1:], level)
    return {
        "share": float(share[0]),
        "std": _std(per_seed),
        "low": low,
        "high": high,
        "undefined_draws": int(np.isnan(share[1:]).sum()),
        "per_seed": [float(v) for v in per_seed],
    }


def difference_entry(candidate: np.ndarray, baseline: np.ndarray, level: float) -> dict[str, Any]:
    """Candidate minus baseline: mean over seeds, std over seeds, interval over draws and the share of wins.

    Args:
        candidate: (S, 1 + R) values of the candidate pipeline.
        baseline: (S, 1 + R) values of the baseline pipeline.
        level: interval level.
    """
    difference = candidate - baseline
    mean = difference.mean(axis=0)
    low, high = _interval(mean[1:], level)
    return {
        "difference": float(mean[0]),
        "std": _std(difference[:, 0]),
        "low": low,
        "high": high,
        "wins": float((mean[1:] > 0).mean()),
        "per_seed": [float(v) for v in difference[:, 0]],
    }


def quality_entry(values: Sequence[float]) -> dict[str, Any]:
    """Mean and std over seeds of a restoration-quality number (no interval: measured over all faces at once)."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": _std(array), "n": int(array.size), "values": [float(v) for v in array]}


def metrics_of(predictions: SamplePredictions, names: Sequence[str]) -> list[str]:
    """The metrics of ``names`` that the predictions hold both outputs and labels for."""
    return [m for m in names if m.split("/")[0] in predictions.outputs and m.split("/")[0] in predictions.targets]


def group_tables(
    seeds: Sequence[Mapping[str, SamplePredictions]],
    pipelines: Sequence[str],
    recoveries: Sequence[tuple[str, str]],
    comparisons: Sequence[tuple[str, str]],
    metric: str,
    weights: np.ndarray,
    rows: np.ndarray | None,
    level: float,
) -> dict[str, dict[str, Any]]:
    """Scores, recoveries and comparisons of one metric on one group of faces.

    Args:
        seeds: per seed, pipeline → predictions.
        pipelines: the pipelines scored.
        recoveries: (restored pipeline, reference recogniser label) pairs.
        comparisons: (candidate, baseline) pipeline pairs.
        metric: the metric.
        weights: (1 + R, N) from :func:`draw_weights`.
        rows: the group's samples (None: all).
        level: interval level.

    Returns:
        ``{"scores": {pipeline: entry}, "recoveries": {pipeline: entry}, "comparisons": {"A vs B": entry}}``.
    """
    values = {p: seed_values([seed[p] for seed in seeds], metric, weights, rows) for p in pipelines}
    return {
        "scores": {p: score_entry(v, level) for p, v in values.items()},
        "recoveries": {
            pipeline: {
                "reference": reference,
                **recovery_entry(
                    values[pipeline], values[f"{reference} occluded"], values[f"{reference} clean"], level
                ),
            }
            for pipeline, reference in recoveries
        },
        "comparisons": {
            f"{candidate} vs {baseline}": {
                "candidate": candidate,
                "baseline": baseline,
                **difference_entry(values[candidate], values[baseline], level),
            }
            for candidate, baseline in comparisons
        },
    }
