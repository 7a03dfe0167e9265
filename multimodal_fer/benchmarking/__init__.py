"""Ablation suites as a verb: expand a suite file into cells and run each through ``mfer`` (``mfer ablate``)."""

from multimodal_fer.benchmarking.runner import CellOutcome, describe, run_suite, sweep_definition, write_sweep
from multimodal_fer.benchmarking.suite import Cell, Suite, SuiteError, load_suite, parse_shard

__all__ = [
    "Cell",
    "CellOutcome",
    "Suite",
    "SuiteError",
    "describe",
    "load_suite",
    "parse_shard",
    "run_suite",
    "sweep_definition",
    "write_sweep",
]
