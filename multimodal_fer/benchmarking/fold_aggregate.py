"""The aggregate of a cross-validation's folds: mean ± std over folds and the metrics of the pooled predictions.

Two ways of summarising k folds, both written to ``<out>/<name>/aggregate.json``:

* **over folds**: each test metric's mean, sample standard deviation (N - 1) and count over the folds' results
  files, with the per-fold values in fold order;
* **pooled**: the folds' per-sample test predictions concatenated (the folds test disjoint subjects, so every
  sample of the data once) and scored as one test set. Benchmarks evaluated leave-one-subject-out usually report
  this figure: one subject per fold makes per-fold F1 or CCC values noisy or undefined. Losses are not pooled.

The file::

    {"crossval": NAME, "protocol": "SubjectKFold(num_folds=5, seed=0)", "num_folds": 5, "pooled_samples": N,
     "folds": [{"fold": 0, "results": "000-fold=0/results-test.json", "test_samples": n0}, ...],
     "metrics": {"test/expr/f1_macro": {"mean": m, "std": s, "n": 5, "per_fold": [...], "pooled": p}, ...}}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from multimodal_fer.evaluation.subject_bootstrap import SamplePredictions
from multimodal_fer.reporting.pooled_folds import AGGREGATE_NAME
from multimodal_fer.reporting.prediction_scores import load_predictions, score_predictions
from multimodal_fer.reporting.statistics import summarise

__all__ = ["AGGREGATE_NAME", "FoldRun", "aggregate_folds", "missing_folds", "write_aggregate"]
#: Schema version of the aggregate file.
AGGREGATE_SCHEMA_VERSION = 1
#: The results file of a fold's plain test.
FOLD_RESULTS = "results-test.json"


@dataclass(frozen=True)
class FoldRun:
    """One fold's run folder.

    Attributes:
        fold: the fold's number.
        folder: its run folder (holding ``results`` once tested).
        results: the name of its results file: ``results-test.json``, or ``results-test-<member>.json`` for the
            folded member of a combined data module.
    """

    fold: int
    folder: Path
    results: str = FOLD_RESULTS


def missing_folds(runs: Sequence[FoldRun]) -> list[int]:
    """Folds whose run folder has no results file yet."""
    return [run.fold for run in runs if not (run.folder / run.results).is_file()]


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _pool(parts: Sequence[SamplePredictions]) -> SamplePredictions:
    """The folds' predictions as one test set, sorted by cache index.

    Raises:
        ValueError: two folds tested the same sample (the folds were not disjoint), or their label spaces differ.
    """
    space = parts[0].label_space
    if any(part.label_space != space for part in parts):
        raise ValueError("The folds' predictions have different label spaces; they are not folds of one data set.")
    index = np.concatenate([part.index for part in parts])
    unique, counts = np.unique(index, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"Samples {unique[counts > 1][:10].tolist()} are in the test split of more than one fold: the folds are "
            "not disjoint (results of another protocol in a fold's folder?); rerun the cross-validation in a new --out."
        )
    order = np.argsort(index, kind="stable")

    def joined(key: str, source: str) -> np.ndarray:
        return np.concatenate([getattr(part, source)[key] for part in parts])[order]

    tasks = set.intersection(*(set(part.targets) & set(part.outputs) for part in parts))
    return SamplePredictions(
        index[order],
        np.concatenate([part.subject for part in parts])[order],
        {task: joined(task, "targets") for task in tasks},
        {task: joined(task, "outputs") for task in tasks},
        space,
        "pooled folds",
    )


def aggregate_folds(runs: Sequence[FoldRun], name: str, protocol: str, base: Path | None = None) -> dict[str, Any]:
    """The aggregate of complete folds (see the module's description).

    Args:
        runs: every fold's run, in fold order.
        name: the cross-validation's name.
        protocol: the folds' protocol without the fold number, e.g. ``SubjectKFold(num_folds=5, seed=0)``.
        base: folder the results paths are written relative to (None: absolute paths).

    Returns:
        The aggregate as a JSON-ready mapping (NaN as None).

    Raises:
        FileNotFoundError: a fold has no results file (:func:`missing_folds` says which).
        ValueError: folds whose predictions overlap or differ in label space.
    """
    missing = missing_folds(runs)
    if missing:
        raise FileNotFoundError(f"Folds {missing} have no {runs[0].results} yet; run the cross-validation again.")
    results = [json.loads((run.folder / run.results).read_text()) for run in runs]
    names = sorted({metric for result in results for metric in result["metrics"]})
    per_fold = {metric: [_finite(result["metrics"].get(metric)) for result in results] for metric in names}
    predictions = [result.get("predictions") for result in results]
    pooled: dict[str, float] = {}
    pooled_samples = None
    folds = []
    if all(predictions):
        files = zip(runs, predictions, strict=True)
        parts = [load_predictions(run.folder / str(file)).predictions for run, file in files]
        joined = _pool(parts)
        pooled = {f"test/{metric}": value for metric, value in score_predictions(joined).metrics.items()}
        pooled_samples = int(joined.index.size)
        sizes: list[int | None] = [int(part.index.size) for part in parts]
    else:
        sizes = [None] * len(runs)
    for run, size in zip(runs, sizes, strict=True):
        path = run.folder / run.results
        shown = os.path.relpath(path, base) if base is not None else str(path)
        folds.append({"fold": run.fold, "results": shown, "test_samples": size})
    metrics: dict[str, dict[str, Any]] = {}
    for metric in sorted(set(names) | set(pooled)):
        values = [value for value in per_fold.get(metric, []) if value is not None]
        summary = summarise(values)
        entry: dict[str, Any] = {
            "mean": _finite(summary.mean),
            "std": _finite(summary.std),
            "n": summary.n,
            "per_fold": per_fold.get(metric, [None] * len(runs)),
        }
        if metric in pooled:
            entry["pooled"] = _finite(pooled[metric])
        metrics[metric] = entry
    return {
        "schema_version": AGGREGATE_SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "crossval": name,
        "protocol": protocol,
        "num_folds": len(runs),
        "pooled_samples": pooled_samples,
        "folds": folds,
        "metrics": metrics,
    }


def write_aggregate(aggregate: dict[str, Any], folder: Path) -> Path:
    """Write ``aggregate.json`` into the cross-validation's folder (atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / AGGREGATE_NAME
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(aggregate, indent=2, allow_nan=False))
    os.replace(temporary, path)
    return path
