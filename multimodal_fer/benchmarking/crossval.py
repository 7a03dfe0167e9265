"""Subject-exclusive cross-validation as a suite of one cell per fold, run by the runner of ``mfer ablate``.

The runner skips done folds, resumes a killed one and records a failed one, as for any suite's cells.

``mfer crossval --config C --folds 5`` expands into the cells ``000-fold=0`` ... ``004-fold=4`` of the suite
``<out>/<name>/``; cell ``k`` is the config with ``data.init_args.split`` set to ``SubjectKFold(num_folds=5,
fold=k, seed=...)``: fold ``k``'s subjects test, fold ``k + 1``'s validate, the others train, no subject in two
splits. ``--folds loso`` is leave-one-subject-out: as many folds as the data have subjects, so each fold tests one
subject. Every test keeps its per-sample predictions (``results.predictions``), from which
:mod:`multimodal_fer.benchmarking.fold_aggregate` pools the folds.

With a combined data module, ``--member NAME`` folds that member's subjects
(``data.init_args.members.<NAME>.init_args.split``); the other members keep their own splits and train in every
fold, and the folds are pooled from the member's results, ``results-test-<NAME>.json``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multimodal_fer.benchmarking.suite import OVERRIDES_AXIS, Suite, SuiteError, expand

#: The config key every fold sets.
SPLIT_KEY = "data.init_args.split"
#: The protocol of the folds.
FOLD_PROTOCOL = "multimodal_fer.datasets.protocols.SubjectKFold"
#: What ``--folds`` takes for leave-one-subject-out.
LOSO = "loso"


def parse_folds(text: str) -> int | None:
    """``--folds``: a number of folds (≥ 3), or ``loso`` (None: one fold per subject, counted from the data).

    Raises:
        SuiteError: neither a number ≥ 3 nor ``loso``.
    """
    if text.strip().lower() == LOSO:
        return None
    if not re.fullmatch(r"\d+", text.strip()) or int(text) < 3:
        raise SuiteError(
            f"--folds must be a number of folds of at least 3 (test, validation and training folds) or 'loso', got "
            f"{text!r}."
        )
    return int(text)


def parse_overrides(arguments: Sequence[str]) -> dict[str, str]:
    """Command-line overrides (``--key=value`` or ``--key value``) as a mapping, values kept as text.

    Raises:
        SuiteError: an argument that is not an option, or an option without a value.
    """
    overrides: dict[str, str] = {}
    remaining = list(arguments)
    while remaining:
        argument = remaining.pop(0)
        if not argument.startswith("--") or argument == "--":
            raise SuiteError(
                f"Unexpected argument {argument!r}: overrides are --key=value (e.g. --trainer.max_epochs=5)."
            )
        key, separator, value = argument[2:].partition("=")
        if not separator:
            if not remaining or remaining[0].startswith("--"):
                raise SuiteError(f"Option --{key} has no value; write --{key}=VALUE.")
            value = remaining.pop(0)
        overrides[key] = value
    if SPLIT_KEY in overrides:
        raise SuiteError(f"--{SPLIT_KEY} is what the folds set; leave it out of a cross-validation.")
    return overrides


def member_split_key(member: str | None) -> str:
    """The config key the folds set: the data module's split, or a combined data module's member's."""
    return SPLIT_KEY if member is None else f"data.init_args.members.{member}.init_args.split"


def fold_split(num_folds: int, fold: int, seed: int) -> dict[str, Any]:
    """The ``data.init_args.split`` value of one fold."""
    return {"class_path": FOLD_PROTOCOL, "init_args": {"num_folds": num_folds, "fold": fold, "seed": seed}}


def fold_suite(
    name: str,
    configs: Sequence[Path],
    overrides: dict[str, Any],
    num_folds: int,
    seed: int = 0,
    description: str = "",
    split_key: str = SPLIT_KEY,
) -> Suite:
    """The suite of a subject-exclusive k-fold cross-validation: one cell per fold, named ``NNN-fold=k``.

    Args:
        name: the suite's name (its folder under ``--out``).
        configs: config files composed in order.
        overrides: config key (dotted) → value, for every fold; the folds add ``results.predictions=true``.
        num_folds: number of folds (≥ 3; the number of subjects for leave-one-subject-out).
        seed: seed of the subjects' assignment to folds (not the training seed).
        description: shown by ``--dry-run``.
        split_key: the config key the folds set (:func:`member_split_key`).

    Raises:
        SuiteError: fewer than 3 folds, no config, a missing config file or a name unusable as a folder.
    """
    if num_folds < 3:
        raise SuiteError(f"{num_folds} folds: at least 3 are needed (one tests, the next validates, the rest train).")
    if not configs:
        raise SuiteError("Give at least one --config.")
    missing = [str(path) for path in configs if not Path(path).is_file()]
    if missing:
        raise SuiteError(f"Config files {missing} do not exist.")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$", name):
        raise SuiteError(f"Cross-validation name {name!r} must be usable as a folder name (letters, digits, _.=+-).")
    grid = {
        OVERRIDES_AXIS: [{"name": f"fold={k}", split_key: fold_split(num_folds, k, seed)} for k in range(num_folds)]
    }
    settings = {**overrides, "results.predictions": True}
    suite = Suite(name, tuple(Path(path) for path in configs), settings, grid, (), description)
    return Suite(**{**suite.__dict__, "cells": tuple(expand(grid))})


def fold_of(cell_values: dict[str, Any], split_key: str = SPLIT_KEY) -> int:
    """The fold number of a cross-validation cell, from its values (``split_key``: what the folds set)."""
    return int(cell_values[OVERRIDES_AXIS][split_key]["init_args"]["fold"])


def default_name(configs: Sequence[Path], num_folds: int | None, seed: int) -> str:
    """``<last config's stem>-<k>fold`` (``-loso`` for leave-one-subject-out), ``-seed<S>`` for a fold seed not 0."""
    stem = Path(configs[-1]).stem if configs else "crossval"
    name = f"{stem}-{'loso' if num_folds is None else f'{num_folds}fold'}"
    return name + (f"-seed{seed}" if seed else "")
