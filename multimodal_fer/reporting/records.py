"""Find the results files under run, experiment or suite folders and read each into a :class:`ResultRecord`.

A run folder (``<root>/<experiment>/<run name>/``) holds ``run.json`` and one results file per test condition,
``results-<condition>.json``; older runs hold a single ``results.json`` (often in ``checkpoints/``), whose
condition is ``test``. An ablation suite's run folders also hold ``cell.json``: the suite's name and the cell's
config values. Nothing but these JSON files (and the predictions files they name) is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multimodal_fer.reporting.errors import ReportError

#: Results file names: ``results.json`` (condition ``test``) and ``results-<condition>.json``.
RESULTS_NAME = re.compile(r"^results(?:-(?P<condition>[^/]+))?\.json$")
#: Conditions whose predictions are validation predictions (used to tune AU thresholds of the same run).
VALIDATION_CONDITIONS = ("val", "validation")
#: The seed's key in configs and cells.
SEED_KEY = "seed_everything"
#: Stage prefix of the metric names in results files.
_STAGE_PREFIX = "test/"
#: A cross-validation fold's protocol (``SubjectKFold(num_folds=5, fold=2, seed=0)``): the fold is the middle part.
FOLD_PROTOCOL = re.compile(r"^(?P<head>SubjectKFold\(.*?)(?:, )?\bfold=(?P<fold>\d+)(?P<tail>.*\))$")
#: How many folders above a results file are searched for the run's ``run.json``.
_RUN_JSON_DEPTH = 3


@dataclass(frozen=True)
class ResultRecord:
    """One results file: one run tested under one condition.

    Attributes:
        path: the results file.
        run_folder: the run's folder (holding ``run.json``; for older runs the folder above ``checkpoints/``).
        experiment: the run's experiment (``run.json``), else the name of the folder above the run folder.
        run_name: the run's name (``run.json``), else the run folder's name.
        condition: the test condition (``test``, ``test-withheld-audio``, ``val``, ...).
        seed: the run's seed; None where neither the results file nor its config records one.
        metrics: the stored metrics without the ``test/`` prefix (e.g. ``expr/f1_macro``); null values left out.
        cache_fingerprint: fingerprint of the cache tested on.
        data: ``{dataset, root, protocol, modalities, withheld_modalities}`` (None for other data modules).
        label_space: ``{expressions, action_units, dimensions}`` or None.
        config: the resolved run configuration or None.
        suite: the ablation suite's name (``cell.json``) or None.
        cell: the cell's config values (``cell.json``), dotted keys, or None.
        predictions_path: the per-sample predictions file it names, where that file exists.
        notes: what was odd about the file (e.g. a predictions file it names but that is missing).
    """

    path: Path
    run_folder: Path
    experiment: str
    run_name: str
    condition: str
    seed: int | None
    metrics: dict[str, float]
    cache_fingerprint: str | None
    data: dict[str, Any] | None
    label_space: dict[str, list] | None
    config: dict[str, Any] | None
    suite: str | None = None
    cell: dict[str, Any] | None = None
    predictions_path: Path | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def dataset(self) -> str:
        """The data set's name, ``unknown`` where the results file does not say."""
        return str((self.data or {}).get("dataset") or "unknown")

    @property
    def protocol(self) -> str:
        """The split protocol's description, ``unknown`` where the results file does not say."""
        return str((self.data or {}).get("protocol") or "unknown")

    @property
    def fold(self) -> int | None:
        """The cross-validation fold this run tested (``mfer crossval``), None for any other protocol."""
        match = FOLD_PROTOCOL.match(self.protocol)
        return int(match["fold"]) if match else None

    @property
    def protocol_family(self) -> str:
        """The protocol without the fold: every fold of one cross-validation shares it (else the protocol)."""
        match = FOLD_PROTOCOL.match(self.protocol)
        if not match:
            return self.protocol
        tail = match["tail"].removeprefix(", ") if match["head"].endswith("(") else match["tail"]
        return match["head"] + tail

    @property
    def pair_key(self) -> int | None:
        """What pairs this run with another setting's: its fold in a cross-validation, else its seed."""
        fold = self.fold
        return fold if fold is not None else self.seed

    @property
    def withheld(self) -> tuple[str, ...]:
        """Modalities withheld at test time."""
        return tuple(sorted((self.data or {}).get("withheld_modalities") or ()))

    @property
    def member(self) -> str | None:
        """Its data set's name in a combined fit (``results-test-<member>.json``), None for a single data set."""
        member = (self.data or {}).get("member")
        return str(member) if member else None

    @property
    def protocol_condition(self) -> str:
        """The condition without a combined fit's member name (``test-rafdb`` → ``test``).

        ``test-rafdb-withheld-audio`` becomes ``test-withheld-audio``, so a member's results sit with single-data-set
        runs on the same test set.
        """
        member = self.member
        split, _, rest = self.condition.partition("-")
        if member and (rest == member or rest.startswith(f"{member}-")):
            return f"{split}{rest[len(member) :]}"
        return self.condition

    @property
    def scored_labels(self) -> dict[str, list] | None:
        """The labels its scores are computed on: the data set's own (``data.labels``), else the label space."""
        labels = (self.data or {}).get("labels")
        return labels if isinstance(labels, dict) else self.label_space

    @property
    def is_validation(self) -> bool:
        """Whether this file scores the validation split (its predictions tune thresholds, never the reverse)."""
        return self.condition in VALIDATION_CONDITIONS


def find_results_files(folders: Sequence[str | Path]) -> list[Path]:
    """Every results file under the folders (searched recursively), each once, sorted.

    Raises:
        FileNotFoundError: a folder does not exist.
        ReportError: no results file under any of them.
    """
    found: set[Path] = set()
    for folder in map(Path, folders):
        if not folder.exists():
            raise FileNotFoundError(f"{folder} does not exist; give run, experiment or suite folders.")
        candidates: Iterable[Path] = [folder] if folder.is_file() else folder.rglob("results*.json")
        found.update(path.resolve() for path in candidates if RESULTS_NAME.match(path.name))
    if not found:
        raise ReportError(
            "No results files (results.json or results-<condition>.json) under "
            + ", ".join(str(folder) for folder in folders)
            + "; run `mfer test` (or fit with test_after_fit) first."
        )
    return sorted(found)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ReportError(f"{path} is not valid JSON ({error}); was its run interrupted while writing?") from error


def _run_folder(results: Path) -> Path:
    """The folder holding the run's ``run.json`` near the results file, else the old layout's run folder."""
    for folder in list(results.parents)[:_RUN_JSON_DEPTH]:
        if (folder / "run.json").is_file():
            return folder
    return results.parent.parent if results.parent.name == "checkpoints" else results.parent


def _seed(*candidates: Any) -> int | None:
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def load_record(path: Path) -> ResultRecord:
    """Read one results file and the run's ``run.json`` and ``cell.json``.

    Raises:
        ReportError: the file is not a results file (no ``schema_version`` or ``metrics``).
    """
    results = _read_json(path)
    if not isinstance(results, dict) or "schema_version" not in results or not isinstance(results.get("metrics"), dict):
        raise ReportError(f"{path} is not a results file written by `mfer test` (no schema_version or metrics).")
    folder = _run_folder(path)
    run_file = folder / "run.json"
    run = _read_json(run_file) if run_file.is_file() else {}
    run = {**run, **(results.get("run") or {})}
    cell_file = folder / "cell.json"
    cell_record = _read_json(cell_file) if cell_file.is_file() else None
    cell = cell_record.get("cell") if isinstance(cell_record, dict) else None
    config = results.get("config") if isinstance(results.get("config"), dict) else None
    named = RESULTS_NAME.match(path.name)
    condition = results.get("condition") or (named.group("condition") if named else None) or "test"
    notes: list[str] = []
    predictions_path = None
    if results.get("predictions"):
        candidate = path.with_name(str(results["predictions"]))
        if candidate.is_file():
            predictions_path = candidate
        else:
            notes.append(
                f"{path} names the predictions file {candidate.name}, which is missing; its stored metrics are used."
            )
    metrics = {
        name.removeprefix(_STAGE_PREFIX): float(value)
        for name, value in results["metrics"].items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return ResultRecord(
        path=path,
        run_folder=folder,
        experiment=str(run.get("experiment") or folder.parent.name),
        run_name=str(run.get("name") or folder.name),
        condition=str(condition),
        seed=_seed(results.get("seed"), (config or {}).get(SEED_KEY), (cell or {}).get(SEED_KEY)),
        metrics=metrics,
        cache_fingerprint=results.get("cache_fingerprint"),
        data=results.get("data") if isinstance(results.get("data"), dict) else None,
        label_space=results.get("label_space") if isinstance(results.get("label_space"), dict) else None,
        config=config,
        suite=str(cell_record["suite"]) if isinstance(cell_record, dict) and cell_record.get("suite") else None,
        cell=dict(cell) if isinstance(cell, dict) else None,
        predictions_path=predictions_path,
        notes=tuple(notes),
    )


def load_records(folders: Sequence[str | Path]) -> list[ResultRecord]:
    """Every results file under the folders, read (see :func:`find_results_files` and :func:`load_record`)."""
    return [load_record(path) for path in find_results_files(folders)]
