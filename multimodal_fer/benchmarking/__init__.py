"""Ablation suites and cross-validations as verbs: cells run through ``mfer`` (``mfer ablate``, ``mfer crossval``)."""

from multimodal_fer.benchmarking.crossval import fold_suite
from multimodal_fer.benchmarking.fold_aggregate import FoldRun, aggregate_folds, write_aggregate
from multimodal_fer.benchmarking.runner import CellOutcome, describe, run_suite, sweep_definition, write_sweep
from multimodal_fer.benchmarking.suite import Cell, Suite, SuiteError, load_suite, parse_shard

__all__ = [
    "Cell",
    "CellOutcome",
    "FoldRun",
    "Suite",
    "SuiteError",
    "aggregate_folds",
    "describe",
    "fold_suite",
    "load_suite",
    "parse_shard",
    "run_suite",
    "sweep_definition",
    "write_aggregate",
    "write_sweep",
]
