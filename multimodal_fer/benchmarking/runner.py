"""Run an ablation suite's cells through ``mfer``'s own entry point: fit, test, extra tests; skip what is done.

Every cell is a run folder ``<out>/<suite>/<cell name>/`` (:mod:`multimodal_fer.run_folder`) holding the fit's
config, checkpoints, ``results-test.json``, one ``results-test-withheld-<...>.json`` or
``results-test-<kind>-<modality>-<strength>.json`` or ``results-test-on-<cache folder>.json`` per extra test
condition, and
``cell.json`` (the suite, the cell's values, its status and, for a failed cell, the error). A re-run skips cells
whose results are all there, resumes a cell that has a last checkpoint but no results (``--ckpt_path last``), runs
only the missing extra tests, and records a failing cell without stopping the suite. The suites a suite needs run
first, with the same shard; a cell whose needed cells have no results yet waits (it is left for the next run).
"""

from __future__ import annotations

import json
import shlex
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from multimodal_fer.benchmarking.suite import (
    CONFIG_AXIS,
    OVERRIDES_AXIS,
    Cell,
    OtherCache,
    Suite,
    SuiteError,
    command_line_override,
)
from multimodal_fer.corruption_conditions import Corruption, corrupted_condition
from multimodal_fer.run_folder import RunFolder

#: Each cell's record beside its results.
CELL_RECORD = "cell.json"


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one cell: ``done``, ``skipped`` (done before), ``failed`` or ``waiting`` (for needed cells)."""

    cell: Cell
    status: str
    folder: Path
    error: str | None = None


#: The condition of a cell's validation-split results (``results-val.json``).
VALIDATION_CONDITION = "val"


def cell_folder(suite: Suite, cell: Cell, out: Path) -> RunFolder:
    """The run folder of a cell."""
    return RunFolder(Path(out), suite.name, cell.name)


def withheld_condition(modalities: Sequence[str]) -> str:
    """The results file condition of a test with ``modalities`` withheld (as the data module names it)."""
    return "test-withheld-" + "-".join(sorted(modalities))


def withheld_sets(suite: Suite, cell: Cell) -> list[tuple[str, ...]]:
    """The suite's withheld-modality tests that apply to a cell: those whose modalities the cell's model has.

    A cell's modalities are known when the grid or the overrides set ``data.init_args.modalities``; then a test
    withholding a modality the cell lacks (or all of its modalities) is left out. Otherwise every test is run.
    """
    key = "data.init_args.modalities"
    modalities = cell.values.get(key, suite.overrides.get(key))
    if not isinstance(modalities, list | tuple):
        return list(suite.withheld)
    return [entry for entry in suite.withheld if set(entry) < set(modalities)]


def corruption_sets(suite: Suite, cell: Cell) -> list[Corruption]:
    """The suite's test-time corruptions that apply to a cell: those of a modality the cell's model has.

    As for :func:`withheld_sets`, a cell's modalities are known when the grid or the overrides set
    ``data.init_args.modalities``; otherwise every corruption is tested.
    """
    key = "data.init_args.modalities"
    modalities = cell.values.get(key, suite.overrides.get(key))
    if not isinstance(modalities, list | tuple):
        return list(suite.corruptions)
    return [corruption for corruption in suite.corruptions if corruption.modality in modalities]


def combined_members(folder: RunFolder) -> list[str]:
    """The members of the combined data module a cell's run was fitted on (``run.json``'s ``members``), else none."""
    return list(folder.read_record().get("members") or {})


def member_condition(condition: str, member: str) -> str:
    """The condition ``condition`` of one member of a combined run: the member's name follows the split.

    ``test`` → ``test-<member>``, ``test-withheld-audio`` → ``test-<member>-withheld-audio``, ``val`` →
    ``val-<member>``: the names its results files get (the data module's ``test_condition``).
    """
    split, _, rest = condition.partition("-")
    return "-".join([split, member, *([rest] if rest else [])])


def has_results(folder: RunFolder, condition: str, members: Sequence[str] | None = None) -> bool:
    """Whether the run has the results of ``condition``: its own file, or every member's for a combined run.

    Args:
        folder: the run folder.
        condition: the test condition.
        members: the run's :func:`combined_members` when the caller has read them (None: read here).
    """
    members = combined_members(folder) if members is None else members
    names = [member_condition(condition, member) for member in members] if members else [condition]
    return all((folder.path / f"results-{name}.json").is_file() for name in names)


def missing_results(suite: Suite, cell: Cell, folder: RunFolder) -> list[str]:
    """Conditions of the cell whose results its folder lacks (``test`` first).

    A cell fitted on a combined data module has a condition's results once every member has its file
    (``results-test-<member>.json``, ...; :func:`has_results`).
    """
    wanted = ["test", *(withheld_condition(entry) for entry in withheld_sets(suite, cell))]
    wanted += [corrupted_condition("test", corruption) for corruption in corruption_sets(suite, cell)]
    wanted += [cache.condition for cache in suite.caches]
    if suite.validation:
        wanted.append(VALIDATION_CONDITION)
    members = combined_members(folder)  # run.json read once for every condition
    return [condition for condition in wanted if not has_results(folder, condition, members)]


def refuse_extra_tests_of_a_combined_run(suite: Suite, cell: Cell, folder: RunFolder) -> None:
    """Refuse the suite's extra tests (withheld, corruptions, other caches, validation) on a combined run.

    Raises:
        SuiteError: the cell's run was fitted on a combined data module and the suite asks for extra tests, which
            set options of one data set's module (``withheld_modalities``, ``test_corruption``, ``root``,
            ``evaluate_split``) that a combined module does not have.
    """
    members = combined_members(folder)
    extra = [condition for condition in missing_results(suite, cell, folder) if condition != "test"]
    if members and extra:
        raise SuiteError(
            f"{folder.path} was fitted on a combined data module (members {', '.join(members)}), which is tested "
            f"member by member on each member's test split only; the suite's extra tests ({', '.join(extra)}) set "
            "options of one data set's data module. Leave the suite's test: section out for a combined config, or "
            "test a member alone with its own config and --data.init_args.label_space=<the run folder>."
        )


def unfinished_needs(cell: Cell, out: Path) -> list[str]:
    """The needed cells (``<suite>/<cell>``) of a cell whose run folders have no test results yet."""
    return [needed for needed in cell.needs if not has_results(RunFolder(Path(out), *needed.split("/", 1)), "test")]


def fit_arguments(suite: Suite, cell: Cell, out: Path, resume: bool) -> list[str]:
    """``mfer fit`` arguments of a cell (resuming its last checkpoint when ``resume``)."""
    arguments = ["fit", *suite.base_arguments(), *cell.arguments(out), *_run_arguments(suite, cell, out)]
    arguments.append("--test_after_fit=true")
    if resume:
        arguments.append("--ckpt_path=last")
    return arguments


def test_arguments(suite: Suite, cell: Cell, out: Path, withheld: Sequence[str]) -> list[str]:
    """``mfer test`` arguments of the cell's best checkpoint with ``withheld`` modalities withheld."""
    return [
        "test",
        *suite.base_arguments(),
        *cell.arguments(out),
        *_run_arguments(suite, cell, out),
        "--ckpt_path=best",
        command_line_override("data.init_args.withheld_modalities", list(withheld)),
    ]


def validation_arguments(suite: Suite, cell: Cell, out: Path) -> list[str]:
    """``mfer test`` arguments scoring the cell's best checkpoint on its validation split, with predictions."""
    return [
        "test",
        *suite.base_arguments(),
        *cell.arguments(out),
        *_run_arguments(suite, cell, out),
        "--ckpt_path=best",
        command_line_override("data.init_args.withheld_modalities", []),
        "--data.init_args.evaluate_split=val",
        "--results.predictions=true",
    ]


def corruption_test_arguments(suite: Suite, cell: Cell, out: Path, corruption: Corruption) -> list[str]:
    """``mfer test`` arguments of the cell's best checkpoint under a test-time corruption (nothing withheld)."""
    return [
        "test",
        *suite.base_arguments(),
        *cell.arguments(out),
        *_run_arguments(suite, cell, out),
        "--ckpt_path=best",
        command_line_override("data.init_args.withheld_modalities", []),
        command_line_override("data.init_args.test_corruption", corruption.to_dict()),
    ]


def cache_test_arguments(suite: Suite, cell: Cell, out: Path, cache: OtherCache) -> list[str]:
    """``mfer test`` arguments of the cell's best checkpoint on another prepared cache (nothing withheld)."""
    return [
        "test",
        *suite.base_arguments(),
        *cell.arguments(out),
        *_run_arguments(suite, cell, out),
        "--ckpt_path=best",
        command_line_override("data.init_args.withheld_modalities", []),
        *cache.arguments(),
    ]


def check_other_cache(folder: RunFolder, cache: OtherCache) -> None:
    """Refuse a ``test.caches`` entry that is the cache the cell was fitted on (its test would be the plain one).

    Raises:
        SuiteError: ``run.json`` records ``cache.root`` as the fit's data root.
    """
    record = folder.path / "run.json"
    fitted_on = json.loads(record.read_text()).get("data_root") if record.is_file() else None
    if fitted_on and Path(fitted_on).resolve() == Path(cache.root).resolve():
        raise SuiteError(
            f"test.caches names {cache.root}, the cache this cell was fitted on; list only other caches there (the "
            "plain test already scores this one)."
        )


def run_suite(
    suite: Suite,
    out: Path,
    shard: tuple[int, int] = (0, 1),
    entry_point: Callable[[list[str]], Any] | None = None,
    report: Callable[[str], None] = print,
    verb: str = "ablate",
) -> list[CellOutcome]:
    """Run the shard's cells of the needed suites, then of the suite, one after another; return what happened to each.

    Args:
        suite: the expanded suite.
        out: folder of the suite's experiment folder (``<out>/<suite name>/``).
        shard: ``(i, n)``: run the cells whose index is ``i`` modulo ``n``.
        entry_point: ``mfer``'s ``main`` (replaceable in tests).
        report: where progress lines go.
        verb: the command named in progress lines (``ablate``, ``crossval``).
    """
    if entry_point is None:
        from multimodal_fer.cli import main as entry_point
    outcomes = []
    for needed in suite.needs:
        outcomes += run_suite(needed, out, shard, entry_point, report, verb)
    index, count = shard
    chosen = [cell for cell in suite.cells if cell.index % count == index]
    _write_suite_record(suite, Path(out))
    for position, cell in enumerate(chosen, start=1):
        folder = cell_folder(suite, cell, Path(out))
        missing = missing_results(suite, cell, folder)
        prefix = f"[{verb} {suite.name} {position}/{len(chosen)}] {cell.name}"
        if not missing:
            if _recorded_status(folder) != "done":  # killed between its last results file and its record
                _write_cell_record(suite, cell, folder, "done")
            report(f"{prefix}: done before, skipped")
            outcomes.append(CellOutcome(cell, "skipped", folder.path))
            continue
        waiting_for = unfinished_needs(cell, Path(out))
        if waiting_for:
            message = f"waits for {', '.join(waiting_for)} (no results-test.json yet)"
            report(f"{prefix}: {message}; run the suite again once they have finished")
            outcomes.append(CellOutcome(cell, "waiting", folder.path, message))
            continue
        try:
            if "test" in missing:
                resume = folder.last_checkpoint() is not None
                report(f"{prefix}: {'resuming' if resume else 'fitting'}")
                entry_point(fit_arguments(suite, cell, Path(out), resume))
            refuse_extra_tests_of_a_combined_run(suite, cell, folder)
            for withheld in withheld_sets(suite, cell):
                if withheld_condition(withheld) in missing_results(suite, cell, folder):
                    report(f"{prefix}: testing with {', '.join(withheld)} withheld")
                    entry_point(test_arguments(suite, cell, Path(out), withheld))
            for corruption in corruption_sets(suite, cell):
                if corrupted_condition("test", corruption) in missing_results(suite, cell, folder):
                    report(f"{prefix}: testing under {corruption.suffix}")
                    entry_point(corruption_test_arguments(suite, cell, Path(out), corruption))
            for cache in suite.caches:
                if cache.condition in missing_results(suite, cell, folder):
                    check_other_cache(folder, cache)
                    report(f"{prefix}: testing on {cache.root}")
                    entry_point(cache_test_arguments(suite, cell, Path(out), cache))
            if suite.validation and VALIDATION_CONDITION in missing_results(suite, cell, folder):
                report(f"{prefix}: scoring the validation split")
                entry_point(validation_arguments(suite, cell, Path(out)))
        except KeyboardInterrupt:
            raise
        except (Exception, SystemExit) as error:  # a failed cell is recorded; the suite goes on
            message = f"{type(error).__name__}: {error}"
            _write_cell_record(suite, cell, folder, "failed", message, traceback.format_exc(limit=8))
            report(f"{prefix}: FAILED ({message}); recorded in {folder.path / CELL_RECORD}")
            outcomes.append(CellOutcome(cell, "failed", folder.path, message))
            continue
        _write_cell_record(suite, cell, folder, "done")
        outcomes.append(CellOutcome(cell, "done", folder.path))
    return outcomes


def describe(suite: Suite, out: Path, shard: tuple[int, int] = (0, 1)) -> str:
    """What ``--dry-run`` prints: each cell of the shard, its state and its ``mfer fit`` command."""
    index, count = shard
    lines = [describe(needed, out, shard) for needed in suite.needs]
    lines.append(f"suite {suite.name}: {len(suite.cells)} cells, shard {index}/{count}")
    if suite.needs:
        lines.append("needs (run first): " + ", ".join(needed.name for needed in suite.needs))
    if suite.description:
        lines.append(suite.description.strip())
    if suite.caches:
        lines.append("also tested on: " + ", ".join(cache.root for cache in suite.caches))
    for cell in suite.cells:
        if cell.index % count != index:
            continue
        folder = cell_folder(suite, cell, Path(out))
        missing = missing_results(suite, cell, folder)
        state = "done" if not missing else ("resume" if folder.last_checkpoint() else "to run")
        if missing and unfinished_needs(cell, Path(out)):
            state += " after " + ", ".join(unfinished_needs(cell, Path(out)))
        lines.append(f"  {cell.name}  [{state}]")
        lines.append("    mfer " + shlex.join(fit_arguments(suite, cell, Path(out), state.startswith("resume"))))
    return "\n".join(lines)


def sweep_definition(suite: Suite, out: Path) -> dict[str, Any]:
    """The suite as a W&B sweep (grid method): agents on many machines run ``mfer fit`` with the grid's values.

    Each agent's run lands in ``<out>/<suite>/`` under a dated name, in the suite's W&B group; the extra tests of
    ``test`` are not part of a sweep (run them with ``mfer ablate`` afterwards, which skips the fitted cells only
    when their folders carry the cell names, so a sweep is for W&B's own tables).

    Raises:
        SuiteError: the suite needs other suites, resolves ``${...}`` per cell, or has a ``config`` or ``overrides``
            axis (one value there becomes several options, while a W&B agent passes each parameter as one
            ``--key=value``), none of which a W&B grid can express.
    """
    if suite.needs or suite.interpolates():
        raise SuiteError(
            f"Suite {suite.name} needs other suites' cells or fills '${{...}}' per cell, which a W&B sweep cannot "
            "express; run it with mfer ablate (--shard i/n shares it out)."
        )
    expanding = [axis for axis in (CONFIG_AXIS, OVERRIDES_AXIS) if axis in suite.grid]
    if expanding:
        raise SuiteError(
            f"Suite {suite.name}'s grid axis {' and '.join(repr(a) for a in expanding)} sets several options per "
            "cell, but a W&B agent passes each sweep parameter as one --key=value (it would run 'mfer fit "
            "--config=None'); run the suite with mfer ablate (--shard i/n shares it out), or make the axis plain "
            "config keys for a sweep."
        )
    command = ["${env}", "mfer", "fit", *suite.base_arguments()]
    command += [f"--run.root={out}", f"--run.experiment={suite.name}", f"--run.group={suite.name}"]
    command += ["--test_after_fit=true", "${args}"]
    return {
        "name": suite.name,
        "method": "grid",
        "metric": {"name": "val/score", "goal": "maximize"},
        "command": command,
        "parameters": {key: {"values": values} for key, values in suite.grid.items()},
    }


def write_sweep(suite: Suite, out: Path, path: Path) -> Path:
    """Write :func:`sweep_definition` as YAML (``wandb sweep <path>`` creates the sweep)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(sweep_definition(suite, out), sort_keys=False))
    return path


def _run_arguments(suite: Suite, cell: Cell, out: Path) -> list[str]:
    return [
        f"--run.root={out}",
        f"--run.experiment={suite.name}",
        f"--run.name={cell.name}",
        f"--run.group={suite.name}",
    ]


def _write_suite_record(suite: Suite, out: Path) -> None:
    folder = out / suite.name
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "suite": suite.name,
        "base": [str(path) for path in suite.base],
        "overrides": suite.overrides,
        "grid": suite.grid,
        "withheld": [list(entry) for entry in suite.withheld],
        "corruptions": [corruption.to_dict() for corruption in suite.corruptions],
        "caches": [cache.to_dict() for cache in suite.caches],
        "needs": [needed.name for needed in suite.needs],
        "cells": [{"index": cell.index, "name": cell.name, "values": cell.values} for cell in suite.cells],
    }
    temporary = folder / "suite.json.tmp"
    temporary.write_text(json.dumps(record, indent=2))
    temporary.replace(folder / "suite.json")


def _recorded_status(folder: RunFolder) -> str | None:
    """The status in a cell's ``cell.json``; None when there is none or it cannot be read."""
    try:
        record = json.loads((folder.path / CELL_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record.get("status") if isinstance(record, dict) else None


def _write_cell_record(
    suite: Suite, cell: Cell, folder: RunFolder, status: str, error: str | None = None, details: str | None = None
) -> None:
    folder.path.mkdir(parents=True, exist_ok=True)
    record = {
        "suite": suite.name,
        "cell": cell.values,
        "index": cell.index,
        "status": status,
        "updated": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if error is not None:
        record["error"] = error
        record["traceback"] = details
    temporary = folder.path / (CELL_RECORD + ".tmp")
    temporary.write_text(json.dumps(record, indent=2, default=str))
    temporary.replace(folder.path / CELL_RECORD)
