"""One folder per run: ``<root>/<experiment>/<run name>/`` with its config, checkpoints, logs and results files.

A run folder holds everything one ``mfer fit`` writes, and the test results added to it later:

```
runs/quickstart/2026-12-03_17-40-12_seed0/
    run.json                      what the run is: experiment, name, seed, W&B id, sessions, best checkpoint
    config.yaml                   the resolved fit config (a resumed session writes config-resumed-<k>.yaml)
    checkpoints/                  best-*.ckpt and last.ckpt
    wandb/ or csv/session-<k>/    logger files (a resumed session continues the same W&B run)
    results-test.json             one results file per test condition (results-test-withheld-audio.json, ...)
```

Names are readable and unique: the start time (and the seed), ``-2``, ``-3`` ... where two runs start in the same
second. A fit never writes into another run's folder: ``--run.name`` naming an existing run is refused unless the
fit resumes it (``--ckpt_path last``). Every process of a distributed run must agree on the folder: the launching
process passes it to the processes Lightning starts through :data:`RUN_FOLDER_ENVIRONMENT`; processes started
independently (torchrun, SLURM) take the job id as the name, or ``--run.name``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from multimodal_fer.errors import MferError

#: Environment variable through which the launching process tells the processes it starts which run folder to use.
RUN_FOLDER_ENVIRONMENT = "MFER_RUN_FOLDER"
#: The file that marks a folder as a run folder.
RUN_RECORD = "run.json"
#: Checkpoint sub-folder of a run.
CHECKPOINTS = "checkpoints"
#: The link beside an experiment's runs that points at its latest completed fit.
LATEST_LINK = "latest"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


class RunFolderError(MferError):
    """A run folder that cannot be used: taken by another run, missing, or without a checkpoint to resume."""


@dataclass(frozen=True)
class RunSettings:
    """Where a run's folder goes: ``<root>/<experiment>/<name>/`` (the ``run`` section of a config).

    Args:
        root: folder of all experiments.
        experiment: a group of comparable runs (None: the first config file's name, else ``default``).
        name: the run's name (None: its start time and seed, e.g. ``2026-12-03_17-40-12_seed0``; the job id under
            SLURM or torchrun). Naming an existing run resumes it when ``--ckpt_path last`` is given and is
            refused otherwise.
        group: the W&B group of the run (None: the experiment; ``mfer ablate`` uses the suite's name).
    """

    root: str = "runs"
    experiment: str | None = None
    name: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        for label, value in (("experiment", self.experiment), ("name", self.name)):
            if value is not None and not _NAME_PATTERN.match(value):
                raise ValueError(
                    f"run.{label} {value!r} must start with a letter or digit and hold only letters, digits and "
                    "_.=+- (it becomes a folder name)."
                )


@dataclass(frozen=True)
class RunFolder:
    """A run's folder and the files in it.

    Attributes:
        root: folder of all experiments.
        experiment: the experiment's folder name.
        name: the run's folder name.
    """

    root: Path
    experiment: str
    name: str

    @property
    def path(self) -> Path:
        """``<root>/<experiment>/<name>``."""
        return self.root / self.experiment / self.name

    @property
    def checkpoints(self) -> Path:
        """The checkpoint folder."""
        return self.path / CHECKPOINTS

    @property
    def record_path(self) -> Path:
        """``run.json``."""
        return self.path / RUN_RECORD

    def read_record(self) -> dict[str, Any]:
        """The contents of ``run.json`` (empty when there is none)."""
        try:
            return json.loads(self.record_path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as error:
            raise RunFolderError(f"{self.record_path} is not valid JSON ({error}); repair or remove it.") from None

    def write_record(self, record: dict[str, Any]) -> None:
        """Replace ``run.json`` atomically."""
        self.path.mkdir(parents=True, exist_ok=True)
        temporary = self.record_path.with_name(RUN_RECORD + ".tmp")
        temporary.write_text(json.dumps(record, indent=2, default=str))
        os.replace(temporary, self.record_path)

    def update_record(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into ``run.json`` and return the new contents."""
        record = {**self.read_record(), **fields}
        self.write_record(record)
        return record

    def last_checkpoint(self) -> Path | None:
        """The newest ``last*.ckpt`` of the run (None: none saved yet)."""
        candidates = sorted(self.checkpoints.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        return candidates[-1] if candidates else None

    def holds_a_run(self) -> bool:
        """Whether a run has left checkpoints or results here (a fit that failed while starting leaves neither)."""
        if not self.path.is_dir():
            return False
        checkpoints = self.checkpoints.is_dir() and any(self.checkpoints.iterdir())
        return checkpoints or any(self.path.glob("results*.json"))

    def mark_latest(self) -> None:
        """Point ``<root>/<experiment>/latest`` at this run (a relative symbolic link, replaced atomically)."""
        link = self.root / self.experiment / LATEST_LINK
        temporary = link.with_name(f".{LATEST_LINK}.{os.getpid()}")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(self.name, target_is_directory=True)
        os.replace(temporary, link)


def free_path(folder: Path, filename: str) -> Path:
    """``folder/filename``, or ``<stem>.2<suffix>``, ``.3`` ... where that name is taken: nothing is overwritten."""
    stem, suffix = Path(filename).stem, Path(filename).suffix
    candidate, count = folder / filename, 2
    while candidate.exists():
        candidate = folder / f"{stem}.{count}{suffix}"
        count += 1
    return candidate


def experiment_name(settings: RunSettings, config_files: list[str]) -> str:
    """The experiment of a run: ``run.experiment``, else the first config file's name, else ``default``."""
    if settings.experiment:
        return settings.experiment
    if config_files:
        stem = Path(config_files[0]).stem
        cleaned = re.sub(r"[^A-Za-z0-9_.=+-]", "-", stem).strip("-_.")
        if cleaned:
            return cleaned
    return "default"


def job_run_name() -> str | None:
    """The job's name under SLURM (``slurm-<job>[-<array task>]``) or torchrun (``torchrun-<run id>``), else None.

    Every process of the job sees the same value, so processes started on their own agree on the run folder.
    """
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        array_task = os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"slurm-{job}" + (f"-{array_task}" if array_task else "")
    elastic = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if elastic and elastic.lower() != "none":
        return "torchrun-" + re.sub(r"[^A-Za-z0-9_.=+-]", "-", elastic)
    return None


def default_run_name(seed: int | None, now: datetime | None = None) -> str:
    """A readable name: the start time and the seed, e.g. ``2026-12-03_17-40-12_seed0``."""
    stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    return stamp + (f"_seed{seed}" if seed is not None else "")


def new_wandb_id() -> str:
    """An 8-character run id in W&B's alphabet (lowercase letters and digits)."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def create_run_folder(root: Path, experiment: str, name: str | None, seed: int | None) -> RunFolder:
    """Make a new run's folder (and ``run.json``); refuse a name that an existing run holds.

    Args:
        root: folder of all experiments.
        experiment: the experiment's folder name.
        name: the run's name (None: the job's name under SLURM or torchrun, else :func:`default_run_name` made
            unique with ``-2``, ``-3`` ...).
        seed: the run's seed, for the default name and ``run.json``.

    Raises:
        RunFolderError: ``name`` (or the SLURM/torchrun job's name) is an existing run's folder.
    """
    name = name or job_run_name()
    if name is not None:
        folder = RunFolder(root, experiment, name)
        if folder.holds_a_run():
            raise RunFolderError(
                f"{folder.path} already holds a run. Resume it with --ckpt_path last (and --run.name {name}), or "
                "give this run another --run.name (or none, for a new dated name)."
            )
    else:
        base = default_run_name(seed)
        folder = RunFolder(root, experiment, base)
        count = 2
        while folder.path.exists():
            folder = RunFolder(root, experiment, f"{base}-{count}")
            count += 1
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.write_record(
        {
            "experiment": experiment,
            "name": folder.name,
            "created": datetime.now().astimezone().isoformat(timespec="seconds"),
            "seed": seed,
            "wandb_id": new_wandb_id(),
            "sessions": 1,
        }
    )
    return folder


def find_resumable_run(root: Path, experiment: str, name: str | None) -> RunFolder:
    """The run that ``--ckpt_path last`` continues: the named one, else the experiment's newest with a checkpoint.

    Raises:
        RunFolderError: the named run has no last checkpoint, or no run of the experiment has one.
    """
    if name is not None:
        folder = RunFolder(root, experiment, name)
        if folder.last_checkpoint() is None:
            raise RunFolderError(
                f"--ckpt_path last: {folder.path} has no last checkpoint ({CHECKPOINTS}/last.ckpt) to resume. "
                f"Runs of {experiment!r} with one: {_resumable_names(root, experiment) or 'none'}."
            )
        return folder
    candidates = [
        (checkpoint.stat().st_mtime, folder)
        for folder in _runs_of(root, experiment)
        if (checkpoint := folder.last_checkpoint()) is not None
    ]
    if not candidates:
        raise RunFolderError(
            f"--ckpt_path last: no run of experiment {experiment!r} under {root} has a last checkpoint to resume. "
            "Check --run.root and --run.experiment (or start the run without --ckpt_path)."
        )
    return max(candidates, key=lambda item: item[0])[1]


def run_folder_of_checkpoint(checkpoint: Path) -> RunFolder | None:
    """The run folder a checkpoint lies in (``<run>/checkpoints/*.ckpt`` beside ``<run>/run.json``), else None."""
    checkpoint = Path(checkpoint).resolve()
    run_path = checkpoint.parent.parent
    if checkpoint.parent.name != CHECKPOINTS or not (run_path / RUN_RECORD).is_file():
        return None
    return RunFolder(run_path.parent.parent, run_path.parent.name, run_path.name)


def run_folder_from_environment() -> RunFolder | None:
    """The run folder the launching process chose (see :data:`RUN_FOLDER_ENVIRONMENT`), else None."""
    value = os.environ.get(RUN_FOLDER_ENVIRONMENT)
    if not value:
        return None
    path = Path(value)
    return RunFolder(path.parent.parent, path.parent.name, path.name)


def _runs_of(root: Path, experiment: str) -> list[RunFolder]:
    folder = root / experiment
    if not folder.is_dir():
        return []
    return [
        RunFolder(root, experiment, child.name)
        for child in sorted(folder.iterdir())
        if child.is_dir() and not child.is_symlink() and (child / RUN_RECORD).is_file()
    ]


def _resumable_names(root: Path, experiment: str) -> str:
    return ", ".join(folder.name for folder in _runs_of(root, experiment) if folder.last_checkpoint() is not None)
