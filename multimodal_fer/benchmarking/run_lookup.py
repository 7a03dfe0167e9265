"""Find what a run left in its folder: its best checkpoint (through ``run.json``), its results files, its state.

Scripts that launch ``mfer fit`` and ``mfer test`` themselves (``benchmarks/``) name each run's folder
(:func:`run_folder_arguments`) and then read back what the package wrote there (:mod:`multimodal_fer.run_folder`):

```
<run folder>/run.json                          best_checkpoint (relative path), best_score, monitor, once the fit ends
<run folder>/checkpoints/best-*.ckpt, last.ckpt
<run folder>/results-<condition>.json          one per test condition (results-test.json: the test after fit)
<run folder>/results-<condition>.predictions.npz   with --results.predictions=true
```

The best checkpoint is the one ``run.json`` records, never a search for ``best-*.ckpt`` files. A results file is
``results-<condition>.json``; a later test of the same condition, written as ``results-<condition>.2.json``, is not
returned here: give each extra test its own condition (:func:`test_condition_name`) or ``--results.filename``.
Every failed look-up raises :class:`RunLookupError` with what is missing and what to do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from multimodal_fer.benchmarking.runner import withheld_condition
from multimodal_fer.corruption_conditions import Corruption, corrupted_condition
from multimodal_fer.run_folder import CHECKPOINTS, RUN_RECORD, RunFolder, RunFolderError, RunSettings

#: What :func:`run_state` answers: the fit ended (with its results), it can be resumed, or the folder is free.
RunState = Literal["finished", "resumable", "new"]
#: The condition of the test after fit (and of ``mfer test --ckpt_path best`` on the run's own data).
TEST_CONDITION = "test"
#: The metric ``val/score`` that the shipped configs' best checkpoints are chosen by.
VALIDATION_SCORE = "val/score"


class RunLookupError(RunFolderError):
    """A run folder that lacks what was looked up: ``run.json``, a best checkpoint, a results file."""


def run_folder(path: str | Path) -> RunFolder:
    """The :class:`~multimodal_fer.run_folder.RunFolder` at ``path`` (``<root>/<experiment>/<name>``)."""
    path = Path(path).absolute()
    return RunFolder(path.parent.parent, path.parent.name, path.name)


def run_folder_arguments(path: str | Path) -> list[str]:
    """``mfer fit`` arguments that put the run exactly at ``path``: ``--run.root``, ``.experiment``, ``.name``.

    ``runs/ablation/seed0/fusion`` gives ``--run.root=runs/ablation --run.experiment=seed0 --run.name=fusion``
    (paths made absolute, so the command may run in any folder).

    Raises:
        ValueError: the last two parts of ``path`` are not valid run names (letters, digits and ``_.=+-``).
    """
    folder = run_folder(path)
    RunSettings(root=str(folder.root), experiment=folder.experiment, name=folder.name)  # refuses bad names
    return [f"--run.root={folder.root}", f"--run.experiment={folder.experiment}", f"--run.name={folder.name}"]


def read_run_record(path: str | Path) -> dict[str, Any]:
    """The run's ``run.json``.

    Raises:
        RunLookupError: no such folder; a folder of the layout before run folders (``checkpoints/results.json``,
            no ``run.json``); a folder that is no run's; a ``run.json`` that is not valid JSON.
    """
    path = Path(path)
    record = path / RUN_RECORD
    if not record.is_file():
        if not path.is_dir():
            raise RunLookupError(f"{path} does not exist: no run was fitted there (or the path is wrong).")
        old = [p.name for p in (path / CHECKPOINTS).glob("*") if p.suffix in (".ckpt", ".json")]
        if old:
            raise RunLookupError(
                f"{path} holds {', '.join(sorted(old)[:4])} in {CHECKPOINTS}/ but no {RUN_RECORD}: it was written "
                "before runs had their own folders (docs/runs.md). Fit it again into a new folder (a new --out), or "
                "read its checkpoints/results.json by hand."
            )
        raise RunLookupError(f"{path} is not a run folder: it holds no {RUN_RECORD}.")
    try:
        return json.loads(record.read_text())
    except json.JSONDecodeError as error:
        raise RunLookupError(f"{record} is not valid JSON ({error}); repair or remove the run.") from None


def best_checkpoint(path: str | Path) -> Path:
    """The best checkpoint of a finished fit: the file ``run.json``'s ``best_checkpoint`` names.

    Raises:
        RunLookupError: no ``run.json`` (see :func:`read_run_record`); a fit that has not ended (no
            ``best_checkpoint`` recorded: resume it with ``--ckpt_path last`` where it has a last checkpoint); a
            recorded checkpoint that is not there.
    """
    path = Path(path)
    best = read_run_record(path).get("best_checkpoint")
    if not best:
        last = run_folder(path).last_checkpoint()
        advice = (
            f"resume it (its last checkpoint is {last.name}) with `mfer fit ... --ckpt_path last` and this run's "
            "--run.root, --run.experiment and --run.name"
            if last is not None
            else "it has no last checkpoint either; fit it again"
        )
        raise RunLookupError(
            f"{path / RUN_RECORD} records no best_checkpoint: the fit has not ended (or its monitored score was "
            f"never finite); {advice}."
        )
    checkpoint = path / best
    if not checkpoint.is_file():
        raise RunLookupError(f"{path / RUN_RECORD} names the best checkpoint {best}, but {checkpoint} does not exist.")
    return checkpoint


def best_score(path: str | Path, monitor: str | None = VALIDATION_SCORE) -> float:
    """The monitored score of the run's best checkpoint (``run.json``'s ``best_score``).

    Args:
        path: the run folder.
        monitor: the metric the score must be of (``run.json``'s ``monitor``); None accepts any.

    Raises:
        RunLookupError: the fit has not ended, its best checkpoint was chosen by another metric, or no finite score
            was recorded.
    """
    record = read_run_record(path)
    best_checkpoint(path)  # the fit ended and its checkpoint is there
    if monitor is not None and record.get("monitor") != monitor:
        raise RunLookupError(
            f"{Path(path) / RUN_RECORD}: the best checkpoint was chosen by {record.get('monitor')!r}, not {monitor!r}."
        )
    score = record.get("best_score")
    if not isinstance(score, int | float) or isinstance(score, bool):
        raise RunLookupError(f"{Path(path) / RUN_RECORD} records no finite best_score (it holds {score!r}).")
    return float(score)


def test_condition_name(
    withheld: Sequence[str] = (),
    *,
    clean_faces: bool = False,
    cache: str | Path | None = None,
    corruption: Corruption | None = None,
) -> str:
    """The condition ``mfer test`` names a test of a run's best checkpoint (docs/runs.md, "Test conditions").

    Args:
        withheld: modalities withheld (``--data.init_args.withheld_modalities``).
        clean_faces: the test reads unoccluded faces (``--data.init_args.clean_faces=true``).
        cache: the test's cache folder when it is not the one the run was fitted on (a second cohort).
        corruption: the test-time corruption (``--data.init_args.test_corruption``).

    Returns:
        e.g. ``test``, ``test-withheld-audio``, ``test-clean-faces``, ``test-on-synthaffect_cohort1``,
        ``test-withheld-audio-on-synthaffect_cohort1``, ``test-noise-audio-0.50``.
    """
    condition = withheld_condition(withheld) if withheld else TEST_CONDITION
    if clean_faces:
        condition += "-clean-faces"
    if corruption is not None:
        condition = corrupted_condition(condition, corruption)
    if cache is not None:
        condition += f"-on-{Path(cache).name}"
    return condition


def results_filename(condition: str) -> str:
    """``results-<condition>.json``.

    Raises:
        ValueError: an empty condition, or one holding a path separator.
    """
    if not condition or "/" in condition or "\\" in condition:
        raise ValueError(f"A test condition is a non-empty name without path separators, not {condition!r}.")
    return f"results-{condition}.json"


def results_conditions(path: str | Path) -> list[str]:
    """The conditions whose ``results-<condition>.json`` the run folder holds, sorted (later ``.2`` files left out)."""
    return sorted(
        p.name.removeprefix("results-").removesuffix(".json")
        for p in Path(path).glob("results-*.json")
        if not p.stem.rsplit(".", 1)[-1].isdigit()
    )


def has_results(path: str | Path, condition: str = TEST_CONDITION) -> bool:
    """Whether the run folder holds ``results-<condition>.json``."""
    return (Path(path) / results_filename(condition)).is_file()


def results_path(path: str | Path, condition: str = TEST_CONDITION) -> Path:
    """The run's ``results-<condition>.json``.

    Raises:
        RunLookupError: the file is not there (the message lists the conditions that are).
    """
    path = Path(path)
    target = path / results_filename(condition)
    if not target.is_file():
        present = results_conditions(path) if path.is_dir() else []
        raise RunLookupError(
            f"{path} holds no {target.name} (results of condition {condition!r}); "
            + (f"it has results of {', '.join(present)}." if present else "it has no results files at all.")
            + (
                " It was written before run folders (checkpoints/results.json); fit it again into a new folder."
                if (path / CHECKPOINTS / "results.json").is_file()
                else ""
            )
        )
    return target


def read_results(path: str | Path, condition: str = TEST_CONDITION) -> dict[str, Any]:
    """The contents of the run's ``results-<condition>.json``.

    Raises:
        RunLookupError: no such file, or one that is not valid JSON.
    """
    target = results_path(path, condition)
    try:
        return json.loads(target.read_text())
    except json.JSONDecodeError as error:
        raise RunLookupError(f"{target} is not valid JSON ({error}); was its test interrupted?") from None


def read_metrics(path: str | Path, condition: str = TEST_CONDITION) -> dict[str, float]:
    """The metrics (``test/expr/f1_macro``, ...) of the run's ``results-<condition>.json``.

    Raises:
        RunLookupError: no such file, or one without ``metrics``.
    """
    results = read_results(path, condition)
    metrics = results.get("metrics")
    if not isinstance(metrics, dict):
        raise RunLookupError(f"{results_path(path, condition)} holds no metrics.")
    return metrics


def predictions_file(path: str | Path, condition: str = TEST_CONDITION) -> Path | None:
    """The per-sample predictions file that ``results-<condition>.json`` names, or None when it names none.

    Raises:
        RunLookupError: no such results file, or one naming a predictions file that is not there.
    """
    name = read_results(path, condition).get("predictions")
    if not name:
        return None
    target = Path(path) / name
    if not target.is_file():
        raise RunLookupError(f"{results_path(path, condition)} names the predictions {name}, but it is not there.")
    return target


def is_finished(path: str | Path, condition: str | None = TEST_CONDITION) -> bool:
    """Whether the run's fit ended with a best checkpoint (and, unless ``condition`` is None, that results file)."""
    try:
        best_checkpoint(path)
    except RunLookupError:
        return False
    return condition is None or has_results(path, condition)


def run_state(path: str | Path, condition: str | None = TEST_CONDITION) -> RunState:
    """What a script that wants a finished run at ``path`` has to do.

    Args:
        path: the run folder.
        condition: the results file the fit's test writes (``test``; ``test-clean-faces`` for a fit on clean
            faces; None: the fit's end is enough).

    Returns:
        ``finished`` (:func:`is_finished`: nothing to do), ``resumable`` (a last checkpoint, not finished: fit
        with ``--ckpt_path last``), or ``new`` (no checkpoints nor results there: fit).

    Raises:
        RunLookupError: the folder holds checkpoints or results but neither a finished fit nor a last checkpoint,
            which ``mfer fit`` would refuse to start over.
    """
    path = Path(path)
    if is_finished(path, condition):
        return "finished"
    folder = run_folder(path)
    if folder.last_checkpoint() is not None:
        return "resumable"
    if not folder.holds_a_run():
        return "new"
    held = sorted(p.name for p in (*folder.checkpoints.glob("*"), *path.glob("results*.json")))
    raise RunLookupError(
        f"{path} holds {', '.join(held[:5])} but neither a finished fit"
        + (f" with {results_filename(condition)}" if condition else "")
        + " nor a last checkpoint to resume; move it away (or choose another output folder) to fit it again."
    )
