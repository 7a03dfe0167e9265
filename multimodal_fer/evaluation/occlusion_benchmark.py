"""``mfer occlusion-benchmark``: evaluate a spec's recognisers on an occlusion split, then tabulate with intervals.

Output folder::

    predictions-seed<s>.npz    every pipeline's per-sample outputs, the restoration quality, the checkpoints used
    summary.json               scores, recovery shares, paired differences (per metric and group), quality
    summary.md                 the same as tables
    spec.json                  the spec as run (absolute paths)

``report_only`` rebuilds ``summary.*`` from the npz files alone (no models, no split).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from multimodal_fer.errors import DataError
from multimodal_fer.evaluation.occlusion_evaluation import (
    SavedSeed,
    evaluate_seed,
    load_seed,
    load_seed_models,
    save_seed,
)
from multimodal_fer.evaluation.occlusion_inputs import open_occlusion_split
from multimodal_fer.evaluation.occlusion_spec import BenchmarkSpec
from multimodal_fer.evaluation.occlusion_statistics import draw_weights, group_tables, metrics_of, quality_entry
from multimodal_fer.evaluation.occlusion_tables import markdown
from multimodal_fer.evaluation.selective_restoration import scannable, selective_scan
from multimodal_fer.evaluation.subject_bootstrap import metric_names
from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES

#: File names in the output folder.
SUMMARY_JSON, SUMMARY_MD, SPEC_JSON = "summary.json", "summary.md", "spec.json"


def predictions_path(out: str | Path, seed: int) -> Path:
    """``<out>/predictions-seed<seed>.npz``."""
    return Path(out) / f"predictions-seed{seed}.npz"


def provenance(command: str) -> dict[str, Any]:
    """How and where figures are made: the command, the package's commit, the machine and the time (UTC)."""
    import torch

    from multimodal_fer.callbacks.results_writer import cpu_model, git_revision

    return {
        "command": command,
        "git": git_revision(),
        "machine": {
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def with_write_time(started: dict[str, Any]) -> dict[str, Any]:
    """``started`` (:func:`provenance` when the evaluation began) with the time of writing.

    The commit checked out at writing is added under ``git_at_write`` where it is no longer the one the evaluating
    code was loaded from.
    """
    from multimodal_fer.callbacks.results_writer import git_revision

    now = git_revision()
    moved = {"git_at_write": now} if now != started.get("git") else {}
    return {**started, **moved, "written": datetime.now(UTC).isoformat(timespec="seconds")}


def _groups(saved: SavedSeed) -> dict[str, Any]:
    import numpy as np

    found: dict[str, Any] = {"all": None}
    for index, kind in enumerate(OCCLUSION_TYPES):
        rows = np.flatnonzero(saved.kinds == index)
        if rows.size:
            found[kind] = rows
    return found


def summarise(spec: BenchmarkSpec, saved: Sequence[SavedSeed]) -> dict[str, Any]:
    """Scores, recoveries and comparisons with intervals, per metric and group, and the restoration quality.

    Raises:
        DataError: a seed's file lacks a pipeline of the spec, or the seeds were evaluated on different splits.
    """
    import numpy as np

    pipelines = spec.pipelines()
    first = saved[0]
    for seed in saved:
        missing = [p for p in pipelines if p not in seed.evaluation.predictions]
        if missing:
            raise DataError(
                f"The predictions of seed {seed.evaluation.seed} lack {missing}: the spec changed since they were "
                "written; evaluate again (mfer occlusion-benchmark SPEC without --report-only)."
            )
        reference, other = first.evaluation.predictions[pipelines[0]], seed.evaluation.predictions[pipelines[0]]
        if not (np.array_equal(reference.subject, other.subject) and np.array_equal(first.kinds, seed.kinds)):
            raise DataError(
                f"Seeds {first.evaluation.seed} and {seed.evaluation.seed} were evaluated on different occlusion "
                "splits; evaluate every seed on the same split."
            )
    sample = first.evaluation.predictions[pipelines[0]]
    metrics = metrics_of(sample, metric_names(sample.label_space))
    weights = draw_weights(sample.subject, spec.resamples, spec.bootstrap_seed)
    groups = _groups(first)
    per_seed = [seed.evaluation.predictions for seed in saved]
    recoveries = [(r.pipeline, r.reference) for r in spec.recoveries]
    comparisons = [(c.candidate, c.baseline) for c in spec.comparisons]
    results = {
        metric: {
            group: group_tables(per_seed, pipelines, recoveries, comparisons, metric, weights, rows, spec.level)
            for group, rows in groups.items()
        }
        for metric in metrics
    }
    restoration: dict[str, dict[str, Any]] = {}
    if all(seed.evaluation.restoration for seed in saved):
        for group in first.evaluation.restoration:
            keys = [k for k in first.evaluation.restoration[group] if k != "faces"]
            shared = [k for k in keys if all(k in s.evaluation.restoration.get(group, {}) for s in saved)]
            restoration[group] = {k: quality_entry([s.evaluation.restoration[group][k] for s in saved]) for k in shared}
    spec_data = spec.to_dict()
    return {
        "title": spec.title,
        "split": spec_data["split"],
        "seeds": [seed.evaluation.seed for seed in saved],
        "resamples": spec.resamples,
        "bootstrap_seed": spec.bootstrap_seed,
        "level": spec.level,
        "units": int(np.unique(sample.subject).size),
        "unit_note": first.unit_note,
        "faces": {group: int(sample.index.size if rows is None else rows.size) for group, rows in groups.items()},
        "metrics": metrics,
        "recognisers": spec_data["recognisers"],
        "fills": list(spec.fills),
        "results": results,
        "restoration": restoration,
        "selective": selective_scan(saved, scannable(spec_data["recognisers"])),
        "checkpoints": {str(seed.evaluation.seed): seed.evaluation.checkpoints for seed in saved},
        "evaluated": {str(seed.evaluation.seed): seed.provenance for seed in saved},
    }


def run_benchmark(
    spec: BenchmarkSpec,
    out: str | Path,
    report_only: bool = False,
    report: Callable[[str], None] = lambda line: None,
    command: str | None = None,
    decisions_only: bool = False,
) -> dict[str, Any]:
    """Evaluate every seed of the spec (unless ``report_only``), then write ``summary.json`` and ``summary.md``.

    Args:
        spec: the benchmark.
        out: the output folder.
        report_only: rebuild the summary from the saved predictions only.
        report: called with progress lines.
        command: the command line recorded with the figures (default: this process's own).
        decisions_only: save the expression classes and AU decisions instead of the logits (:func:`save_seed`):
            the same tables from a file a tenth of the size.

    Returns:
        The summary.

    Raises:
        RunLookupError: a run folder without a finished best checkpoint.
        DataError: a split without occlusion fields, a model that does not fit it, or saved predictions that do not
            match the spec.
        FileNotFoundError: with ``report_only``, a seed never evaluated.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = command or shlex.join(sys.argv)
    if not report_only:
        # The code that evaluates is the code imported now: its commit is read before the (long) evaluation, and a
        # checkout that moves meanwhile is named beside it when the predictions are written (git_at_write).
        started = provenance(command)
        split = open_occlusion_split(spec.split)
        report(f"[occlusion-benchmark] {split.root}: {split.num_faces} faces. {split.unit_note}")
        for seed in spec.seeds:
            recognisers, restorer, checkpoints = load_seed_models(spec, seed, split)
            report(f"[occlusion-benchmark] seed {seed.seed}: evaluating {len(spec.pipelines())} pipelines")
            evaluation = evaluate_seed(spec, seed.seed, split, recognisers, restorer, checkpoints)
            path = predictions_path(out, seed.seed)
            written = save_seed(
                evaluation, path, split.unit_note, split.kinds, with_write_time(started), decisions_only=decisions_only
            )
            report(f"[occlusion-benchmark] seed {seed.seed}: predictions written to {written}")
    saved = [load_seed(predictions_path(out, seed.seed)) for seed in spec.seeds]
    summary = {**summarise(spec, saved), "summarised": provenance(command)}
    (out / SPEC_JSON).write_text(json.dumps(spec.to_dict(), indent=2))
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))
    (out / SUMMARY_MD).write_text(markdown(summary))
    return summary
