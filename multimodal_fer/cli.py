"""The ``mfer`` command: LightningCLI's ``fit``/``validate``/``test``/``predict`` plus the package's own verbs.

Own verbs:
  ``mfer prepare --config C [--overwrite] [--verify]``  build (or resume) the data cache of a config; --verify
  recomputes every array's checksum.
  ``mfer predict --ckpt_path K --inputs P [P ...] --output F.csv [--per-frame] [--fps R] [--aligned] [--config C]``
  predict raw images, videos, wav files or folders of them (without ``--inputs``, ``predict`` is LightningCLI's, on the
  config's prepared cache, and writes ``predictions.csv`` in the run folder).
  ``mfer show-batch --config C [--output P] [--split S] [--rows N]``  draw samples of a prepared cache.
  ``mfer occlusion-split --config C [--split S] [--output P] [--types a,b] [--seed N]``  occlude every face of
  a split once per occlusion kind (deterministic) and write it as a cache for ``OcclusionSplitDataModule``.
  ``mfer physio-features --config C [--overwrite] [--workers N]``  compute the neurokit2 features of every
  physiological window into a side cache beside the data cache (read with ``physio_features: true``).
  ``mfer ablate SUITE.yaml [--out DIR] [--shard i/n] [--dry-run] [--sweep FILE]``  run an ablation suite: a fit,
  its test and extra tests per grid cell, each in its own run folder; done cells are skipped.
  ``mfer crossval --config C [--folds N|loso] [--fold-seed S] [--out DIR] [--name NAME] [--shard i/n] [--dry-run]
  [--key=value ...]``  subject-exclusive k-fold or leave-one-subject-out: one fit and test per fold (run like an
  ablation suite's cells) and ``aggregate.json`` (mean ± std over folds, pooled metrics).
  ``mfer report DIR ... [--output report.html] [--reference K=V]``  tables and figures from results files only.
  ``mfer probe SUITE_DIR [--out DIR] [--subsets face audio+physio ...] [--cells PATTERN] [--key=value ...]``  linear
  probes on the fixed features of a suite's single-modality runs, per modality subset: ``probes.md`` and
  ``probes.json`` (mean ± std over seeds; the all-modality probe against the best single one).
  ``mfer occlusion-benchmark SPEC [--out DIR] [--report-only] [--compact]``  evaluate trained face recognisers (and a
  restorer, its trivial fills) on an occlusion split: clean, occluded, restored (blind and with the true masks);
  per-sample predictions per seed (``--compact``: the decisions only), and ``summary.json`` / ``summary.md`` with
  subject-bootstrap intervals, recovery shares and paired differences, overall and per occlusion kind (the spec:
  docs/occlusion.md, section 5).
  ``mfer calibrate-restorer --restorer R --recogniser K --split S [--output DIR] [--thresholds ...] [--dilations ...]
  [--overwrite]``  choose a finished restorer's mask threshold and dilation by a recogniser's expression macro-F1
  on blindly restored faces of a validation occlusion split, and write the calibrated copy as a run folder.
  ``mfer restore --restorer R --inputs P [P ...] --output DIR [--aligned] [--masks M] [--face-detector D] [...]``
  restore the occluded faces of one's own images and videos with a trained restorer (blindly, or behind known
  masks): the aligned crop, the filled pixels and the restored crop as PNGs, and ``restorations.csv`` with one row
  per input (errors included).
  ``mfer abaw-files PREDICTIONS.csv --output DIR [--tracks va expr au] [--videos V] [--au-threshold T]``  write
  Aff-Wild2 predictions as ABAW track files: one per video and track, a header and one line per video frame.

Every ``fit`` gets its own run folder ``<run.root>/<run.experiment>/<run.name>/`` (:mod:`multimodal_fer.run_folder`);
``--ckpt_path last`` resumes a run in place, and tests add ``results-<condition>.json`` files to the checkpoint's run.

Several ``--config`` files compose in order; later ones and ``--a.b=c`` flags override earlier values.
"""

from __future__ import annotations

import os
import shlex
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import Namespace
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from rich.console import Console
from rich.markup import escape

from multimodal_fer.callbacks.atomic_checkpoints import AtomicCheckpointIO
from multimodal_fer.callbacks.epoch_seeding import EpochSeeding
from multimodal_fer.callbacks.moved_run import MovedRunCheckpoints
from multimodal_fer.callbacks.prediction_writer import PredictionCSVWriter
from multimodal_fer.callbacks.results_writer import ResultsWriter, git_revision, test_condition
from multimodal_fer.callbacks.wandb_test_logger import WandbTestLogger
from multimodal_fer.cli_errors import MferArgumentParser
from multimodal_fer.datamodules.base import FERDataModule
from multimodal_fer.datamodules.combined import CombinedDataModule, member_context, test_members
from multimodal_fer.errors import MferError, NoBestCheckpointError
from multimodal_fer.loggers import active_wandb_run, finish_wandb_run
from multimodal_fer.run_folder import (
    RUN_FOLDER_ENVIRONMENT,
    RunFolder,
    RunFolderError,
    RunSettings,
    create_run_folder,
    experiment_name,
    find_resumable_run,
    free_path,
    job_run_name,
    run_folder_from_environment,
    run_folder_of_checkpoint,
)

console = Console(stderr=True)


class LoggedSaveConfigCallback(SaveConfigCallback):
    """Save the resolved config in the run folder, never over another file, and log it to every logger.

    A fit writes ``config.yaml`` (a resumed session ``config-resumed.yaml``); ``test`` writes
    ``config-<condition>.yaml`` beside its ``results-<condition>.json``; ``validate`` and ``predict`` write
    ``config-<stage>.yaml``. A name already taken gets ``.2``, ``.3`` ... before ``.yaml``, so testing a checkpoint
    in its run folder keeps the configuration it was trained with.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Save the config (rank 0) under a free name in the run folder, then log it."""
        if self.already_saved:
            return
        if trainer.is_global_zero:
            folder = Path(trainer.default_root_dir)
            checkpoint = self.config.get("ckpt_path")  # the trainer learns it only after set-up
            path = free_path(folder, self._stem(trainer, getattr(stage, "value", stage), checkpoint) + ".yaml")
            folder.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(path), skip_none=False, overwrite=False, multifile=self.multifile)
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    @staticmethod
    def _stem(trainer: Trainer, stage: str, checkpoint: str | None) -> str:
        if stage == "fit":
            return "config-resumed" if checkpoint else "config"
        if stage == "test":
            return "config-" + test_condition(trainer.datamodule, checkpoint, Path(trainer.default_root_dir))
        return f"config-{stage}"

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Log the resolved configuration as hyperparameters under ``config``."""
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})


class MferCLI(LightningCLI):
    """LightningCLI with the package's links, the results writer and an optional test after fit."""

    run_folder: RunFolder | None = None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """The run folder, links from the data module to the model, the results writer and ``--test_after_fit``."""
        parser.add_class_arguments(RunSettings, "run", help="Where the run's folder goes: <root>/<experiment>/<name>.")
        parser.add_lightning_class_args(EpochSeeding, "epoch_seeding")
        parser.add_lightning_class_args(ResultsWriter, "results")
        parser.add_lightning_class_args(PredictionCSVWriter, "prediction_writer")
        parser.add_lightning_class_args(WandbTestLogger, "wandb_test")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After fit, test the best checkpoint (the last weights if none) and write results-test.json.",
        )
        parser.link_arguments(
            "data",
            "model.init_args.label_space",
            compute_fn=lambda data: data.label_space.to_dict(),
            apply_on="instantiate",
        )
        parser.link_arguments(
            "data",
            "model.init_args.modalities",
            compute_fn=lambda data: list(data.modalities),
            apply_on="instantiate",
        )

    def _parse_ckpt_path(self) -> None:
        """Lightning's: a checkpoint file's saved model arguments replace the config's; ``fit`` says which differed.

        When ``--ckpt_path`` names a checkpoint file, LightningCLI rebuilds the model with the hyperparameters saved
        in it, whatever the config files and the command line ask. Resuming a fit with changed model settings would
        then train on with the old ones without a word; this lists every setting that was overridden (``--ckpt_path
        last`` or ``best`` resolve to a file only later, so they keep the config's settings).
        """
        subcommand = self.config.get("subcommand")
        asked = _model_arguments(self.config[subcommand]) if subcommand == "fit" else {}
        super()._parse_ckpt_path()
        if subcommand != "fit":
            return
        lines = _overridden_settings(asked, _model_arguments(self.config[subcommand]), "asked", "used")
        if lines:
            console.print(
                f"[bold yellow]Resuming from {escape(str(self.config[subcommand].get('ckpt_path')))}:[/] the model is "
                "built with the settings saved in the checkpoint, so these settings of the config and command line "
                f"are not used: {escape(lines)}. A resumed fit continues the run as it was trained; to train with "
                "other model settings, start a new run (a restoration fit can start from these weights: "
                "--model.init_args.initial_checkpoint=<this file>).",
                soft_wrap=True,
            )

    def _results_writer(self) -> ResultsWriter | None:
        for callback in self.trainer.callbacks:
            if isinstance(callback, ResultsWriter):
                return callback
        return None

    def _fill_results_writer(self) -> None:
        writer = self._results_writer()
        if writer is None:
            return
        subcommand = self.subcommand
        config = self.config[subcommand] if subcommand else self.config
        dumped = self._parser(subcommand).dump(config, skip_none=False, skip_link_targets=False)
        writer.config = yaml.safe_load(dumped)
        seed = config.get("seed_everything")
        writer.seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
        writer.run_folder = self.run_folder

    def _announce_results(self) -> None:
        writer = self._results_writer()
        if writer is not None and writer.last_path is not None and self.trainer.is_global_zero:
            console.print(f"[bold green]Results written to[/] {writer.last_path}", soft_wrap=True)

    def before_instantiate_classes(self) -> None:
        """Choose the run folder and point the trainer, its checkpoints and its loggers into it."""
        subcommand = self.subcommand
        if subcommand is None:
            return
        config = self.config[subcommand]
        _drop_progress_bars_when_disabled(config)
        named = config.get("ckpt_path") in ("best", "last")
        self.run_folder = resolve_run_folder(subcommand, config)
        group = (config.get("run") or {}).get("group") or self.run_folder.experiment
        _point_into_run_folder(config, self.run_folder, subcommand, group)
        if named and subcommand != "fit":
            self._model_from_named_checkpoint(subcommand)

    def _model_from_named_checkpoint(self, subcommand: str) -> None:
        """Build the model of ``test``/``validate``/``predict --ckpt_path best|last`` with the checkpoint's settings.

        A checkpoint file named on the command line gets its saved model arguments from LightningCLI; ``best`` and
        ``last`` become files only in :meth:`before_instantiate_classes`, so the same is done here, for the settings
        the model's class still has (a checkpoint of an older version may hold others: they are named and left
        out). The config the results file records is then the model that was trained, whatever configs the test was
        given (a setting left out of the test no longer moves the run to another setting in ``mfer report``); the
        settings that differed are printed. Saved settings that do not parse leave the configs' model as it was.
        """
        config = self.config[subcommand]
        checkpoint = str(config.get("ckpt_path"))
        asked = _model_arguments(config)
        try:
            # memory-mapped: only the settings are read here, the weights when the model is loaded for the test
            loaded = torch.load(checkpoint, weights_only=True, map_location="cpu", mmap=True)
            saved = dict(loaded.get("hyper_parameters") or {})
        except Exception:  # noqa: BLE001 - unreadable settings: the configs decide, as before
            return
        saved.pop("_instantiator", None)
        class_path = saved.pop("_class_path", None)
        same_class = str(class_path).rsplit(".", 1)[-1] == str(asked.get("class_path")).rsplit(".", 1)[-1]
        if class_path is None or not same_class:
            return
        known = {key.removeprefix("init_args.") for key in asked if key.startswith("init_args.")}
        kept = {name: value for name, value in saved.items() if name in known}
        unknown = sorted(set(saved) - known - set(_LINKED_MODEL_ARGUMENTS))
        where = f"[bold yellow]{subcommand.capitalize()} of {escape(checkpoint)}:[/]"
        try:
            self.config = self.parser.parse_object(
                {subcommand: {"model": {"class_path": asked["class_path"], "init_args": kept}}}, self.config
            )
        except SystemExit:
            console.print(
                f"{where} the settings saved in the checkpoint do not parse with this version of the package, so the "
                "model is built from the configs given.",
                soft_wrap=True,
            )
            return
        lines = _overridden_settings(asked, _model_arguments(self.config[subcommand]), "given", "trained")
        if lines:
            console.print(f"{where} the model is built with the settings saved in the checkpoint: {escape(lines)}.")
        if unknown:
            console.print(f"{where} saved settings this version's model does not have, left out: {unknown}.")

    def before_fit(self) -> None:
        """Give the results writer the resolved config; ``run.json`` records the data the run is fitted on.

        Every fit also gets :class:`MovedRunCheckpoints`, so a run folder moved or copied since its checkpoint was
        written resumes with its best checkpoint still tracked.
        """
        self._fill_results_writer()
        if not any(isinstance(callback, MovedRunCheckpoints) for callback in self.trainer.callbacks):
            self.trainer.callbacks.append(MovedRunCheckpoints())
        datamodule = self.datamodule
        if self.run_folder is not None and self.trainer.is_global_zero and isinstance(datamodule, FERDataModule):
            self.run_folder.update_record(data_root=str(datamodule.root), dataset=datamodule.adapter.name)
        if self.run_folder is not None and self.trainer.is_global_zero and isinstance(datamodule, CombinedDataModule):
            self.run_folder.update_record(dataset="combined", members=datamodule.describe())

    def test(self, **arguments: Any) -> Any:
        """``trainer.test``, then say where the results file is; a combined data module is tested member by member.

        ``mfer test`` and ``--test_after_fit`` both come here; each member of a combined data module writes its own
        results file, ``results-test-<member>.json``.
        """

        def test_one(datamodule: Any) -> Any:
            outputs = self.trainer.test(**{**arguments, "datamodule": datamodule})
            self._announce_results()
            return outputs

        datamodule = arguments.get("datamodule")
        if isinstance(datamodule, CombinedDataModule):
            return test_members(datamodule, test_one)
        return test_one(datamodule)

    def before_test(self) -> None:
        """Give the results writer the resolved config."""
        self._fill_results_writer()

    def after_fit(self) -> None:
        """Record the run's best checkpoint; test it when ``--test_after_fit`` is set."""
        self._record_fit_end()
        if not self.config["fit"].get("test_after_fit"):
            return
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
        score = getattr(checkpoint, "best_model_score", None) if checkpoint is not None else None
        monitored = getattr(checkpoint, "monitor", None) if checkpoint is not None else None
        if best and monitored and (score is None or not torch.isfinite(score)):
            raise NoBestCheckpointError(
                f"{monitored} was never finite during this fit (best {score}), so there is no best checkpoint to "
                f"test; {best} holds weights chosen on a non-finite score. Check the training log for NaN losses."
            )
        self.test(model=self.model, datamodule=self.datamodule, ckpt_path=best or None)

    def _record_fit_end(self) -> None:
        """``run.json`` gets the best and last checkpoints and the epochs done; ``latest`` points at the run."""
        folder = self.run_folder
        if folder is None or not self.trainer.is_global_zero:
            return
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
        score = getattr(checkpoint, "best_model_score", None) if checkpoint is not None else None
        last = folder.last_checkpoint()
        folder.update_record(
            finished=datetime.now().astimezone().isoformat(timespec="seconds"),
            epochs=self.trainer.current_epoch,
            interrupted=bool(self.trainer.interrupted),
            best_checkpoint=_relative_to(best, folder.path),
            best_score=float(score) if score is not None and torch.isfinite(score) else None,
            monitor=getattr(checkpoint, "monitor", None) if checkpoint is not None else None,
            last_checkpoint=_relative_to(str(last) if last else "", folder.path),
        )
        if not self.trainer.interrupted:
            folder.mark_latest()

    def after_predict(self) -> None:
        """Say where the predictions are."""
        for callback in self.trainer.callbacks:
            if isinstance(callback, PredictionCSVWriter) and callback.last_path is not None:
                console.print(f"[bold green]Predictions written to[/] {callback.last_path}", soft_wrap=True)


#: Model arguments filled from the data module (links), never the user's to set.
_LINKED_MODEL_ARGUMENTS = ("label_space", "modalities")


def _overridden_settings(asked: dict[str, Any], used: dict[str, Any], asked_word: str, used_word: str) -> str:
    """Model settings whose used value differs from the asked one: ``key: a <asked_word>, u <used_word>; ...``."""
    changed = sorted((key, asked.get(key), value) for key, value in used.items() if asked.get(key) != value)
    return "; ".join(f"{key}: {a!r} {asked_word}, {u!r} {used_word}" for key, a, u in changed)


def _model_arguments(config: Namespace) -> dict[str, Any]:
    """The model's class and init arguments in a config, flattened to ``init_args.<name>`` keys (links left out)."""
    model = config.get("model")
    if model is None:
        return {}
    flat = model.as_dict() if isinstance(model, Namespace) else dict(model)
    arguments = {"class_path": flat.get("class_path")}
    for name, value in (flat.get("init_args") or {}).items():
        if name not in _LINKED_MODEL_ARGUMENTS:
            arguments[f"init_args.{name}"] = value
    return arguments


def resolve_run_folder(subcommand: str, config: Any) -> RunFolder:
    """The folder of this run (see :mod:`multimodal_fer.run_folder`), created or found, and ``ckpt_path`` resolved.

    ``fit`` starts a new run folder, or continues one: ``--ckpt_path last`` resumes the named run
    (``--run.name``) or the experiment's newest one with a last checkpoint; a checkpoint path inside a run folder
    resumes that run. ``test``, ``validate`` and ``predict`` add their files to the checkpoint's run folder
    (``--ckpt_path last`` or ``best`` name that run's checkpoints), or start a run folder of their own for a
    checkpoint from elsewhere. A process started by the launching process of a distributed run takes the
    launching process's folder.
    """
    settings = RunSettings(**dict(config.get("run") or {}))
    root = Path(settings.root)
    files = [str(getattr(path, "relative", path)) for path in (config.get("config") or [])]
    experiment = experiment_name(settings, files)
    seed = config.get("seed_everything")
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    ckpt_path = config.get("ckpt_path")
    inherited = run_folder_from_environment()
    if inherited is not None:
        if ckpt_path in ("last", "best"):
            config.ckpt_path = _named_checkpoint(inherited, ckpt_path)
        return inherited
    rank = _process_rank()
    created = False
    if ckpt_path in ("last", "best"):
        folder = find_resumable_run(root, experiment, settings.name)
        config.ckpt_path = _named_checkpoint(folder, ckpt_path)
    elif ckpt_path and (found := run_folder_of_checkpoint(Path(ckpt_path))) is not None:
        folder = found
    else:
        folder, created = _new_folder(root, experiment, settings.name, seed, rank), True
    if subcommand == "fit" and rank == 0:
        # The commit each session of the fit starts from: results files name the one checked out when they are
        # written, which a long fit may outlive.
        if created:
            folder.update_record(git=git_revision())
        else:
            record = folder.read_record()
            folder.update_record(
                sessions=int(record.get("sessions", 1)) + 1,
                resumed=[*record.get("resumed", []), datetime.now().astimezone().isoformat(timespec="seconds")],
                resumed_git=[*record.get("resumed_git", []), git_revision()],
            )
    os.environ[RUN_FOLDER_ENVIRONMENT] = str(folder.path)
    return folder


def _new_folder(root: Path, experiment: str, name: str | None, seed: int | None, rank: int) -> RunFolder:
    """Rank 0 makes a new run folder; other ranks started on their own must agree on its name without one."""
    if rank == 0:
        return create_run_folder(root, experiment, name, seed)
    agreed = name or job_run_name()
    if agreed is None:
        raise RunFolderError(
            f"This process (rank {rank}) was started on its own and cannot know the run folder that rank 0 chose; "
            "give every process the same --run.name (SLURM and torchrun job ids serve when present)."
        )
    return RunFolder(root, experiment, agreed)


def _named_checkpoint(folder: RunFolder, which: str) -> str:
    """``last``: the run's newest last checkpoint; ``best``: the best checkpoint ``run.json`` records."""
    if which == "last":
        last = folder.last_checkpoint()
        if last is None:
            raise RunFolderError(f"{folder.path} has no last checkpoint.")
        return str(last)
    best = folder.read_record().get("best_checkpoint")
    if not best or not (folder.path / best).is_file():
        raise RunFolderError(
            f"{folder.path} records no best checkpoint (run.json: best_checkpoint); the fit may not have finished. "
            f"Name a checkpoint of {folder.checkpoints} with --ckpt_path."
        )
    return str(folder.path / best)


def _process_rank() -> int:
    """This process's global rank as the launcher's environment tells it (0 without a launcher)."""
    for variable in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(variable)
        if value is not None and value.isdigit():
            return int(value)
    return 0


def _relative_to(path: str, folder: Path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path)


#: Logger classes whose files go into the run folder, and the sub-folder name they get there.
_FILE_LOGGERS = {"CSVLogger": "csv", "TensorBoardLogger": "tensorboard"}


def _point_into_run_folder(config: Any, folder: RunFolder, subcommand: str, group: str) -> None:
    """Set ``default_root_dir``, every ``ModelCheckpoint``'s ``dirpath`` and the loggers' folders to the run's.

    A W&B run also gets the run's id (a resumed fit continues it), a readable name, the group and the job type.
    """
    trainer = config.trainer
    trainer.default_root_dir = str(folder.path)
    if not trainer.get("plugins"):  # checkpoints written whole or not at all (a kill while saving loses nothing)
        trainer.plugins = Namespace(class_path=f"{AtomicCheckpointIO.__module__}.AtomicCheckpointIO")
    for callback in trainer.get("callbacks") or []:
        if isinstance(callback, Namespace) and str(callback.get("class_path", "")).endswith("ModelCheckpoint"):
            callback.init_args.dirpath = str(folder.checkpoints)
    loggers = trainer.get("logger")
    record = folder.read_record()
    session = int(record.get("sessions", 1)) - 1
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        if not isinstance(logger, Namespace) or "class_path" not in logger:
            continue
        kind = str(logger.class_path).rsplit(".", 1)[-1]
        init_args = logger.get("init_args")
        if init_args is None:
            logger.init_args = init_args = Namespace()
        init_args.save_dir = str(folder.path)
        if kind == "WandbLogger":
            if subcommand == "fit":
                init_args.id = record.get("wandb_id")
            if not init_args.get("name"):
                suffix = "" if subcommand == "fit" else f"/{subcommand}"
                init_args.name = f"{folder.experiment}/{folder.name}{suffix}"
            if kind == "WandbLogger" and str(logger.class_path).startswith("multimodal_fer."):
                init_args.group = init_args.get("group") or group
                init_args.job_type = init_args.get("job_type") or subcommand
        elif kind in _FILE_LOGGERS:
            init_args.name = _FILE_LOGGERS[kind]
            init_args.version = f"session-{session}" if subcommand == "fit" else subcommand


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> MferCLI:
    """Create the CLI (and run its subcommand when ``run``).

    Args:
        args: command-line arguments (None: ``sys.argv[1:]``).
        run: run a subcommand (``fit``, ``test``, ...); False parses a plain config and instantiates.
    """
    return MferCLI(
        model_class=None,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=list(args) if args is not None else None,
        run=run,
        auto_configure_optimizers=False,
        save_config_callback=LoggedSaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        parser_class=MferArgumentParser,
    )


def _pop_flag(args: list[str], flag: str) -> bool:
    if flag in args:
        args.remove(flag)
        return True
    return False


def _pop_option(args: list[str], option: str, default: str) -> str:
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            value = args[i + 1]
            del args[i : i + 2]
            return value
        if arg.startswith(option + "="):
            del args[i]
            return arg.split("=", 1)[1]
    return default


def _datamodule_from_config(args: list[str], verb: str = "", own_options: str = "") -> LightningDataModule:
    """Parse configs (several compose in order, ``--data.*`` flags override) and build only the data module.

    A data set's own config (``configs/data/<name>.yaml``) is enough; the model, trainer and other sections of
    a full config are accepted and left alone.
    """
    from jsonargparse import ActionConfigFile, ArgumentParser

    description = f"{VERB_SUMMARIES.get(verb, '')}\n\n{own_options}".strip()
    parser = ArgumentParser(prog=f"mfer {verb}".strip(), description=description, exit_on_error=True)
    parser.add_argument("--config", action=ActionConfigFile, help="config files, composed in order")
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    for section in (
        "model",
        "trainer",
        "optimizer",
        "lr_scheduler",
        "results",
        "prediction_writer",
        "wandb_test",
        "run",
        "epoch_seeding",
    ):
        parser.add_argument(f"--{section}", type=Any, default=None, help="(not used by this verb)")
    for name in ("seed_everything", "test_after_fit", "ckpt_path"):
        parser.add_argument(f"--{name}", type=Any, default=None, help="(not used by this verb)")
    config = parser.parse_args(args)
    return parser.instantiate_classes(config).data


def prepare_command(args: list[str]) -> None:
    """``mfer prepare --config C [--overwrite] [--verify]``: build or resume a config's cache; check its checksums."""
    overwrite = _pop_flag(args, "--overwrite")
    verify = _pop_flag(args, "--verify")
    datamodule = _datamodule_from_config(
        args,
        "prepare",
        "own options: --overwrite (rebuild even a complete cache), --verify (recompute every array's checksum)",
    )
    if isinstance(datamodule, CombinedDataModule):  # every member's cache, one after the other
        for name, member in datamodule.members.items():
            console.print(f"[bold]Member {name}[/] ({member.adapter.name})")
            with member_context(name):
                _prepare_one(member, overwrite, verify)
        return
    if not isinstance(datamodule, FERDataModule):
        raise SystemExit(f"{type(datamodule).__name__} has no cache to prepare.")
    _prepare_one(datamodule, overwrite, verify)


def _prepare_one(datamodule: FERDataModule, overwrite: bool, verify: bool) -> None:
    """Build or resume one data module's cache, check its checksums if asked, and print its summary."""
    reader = datamodule.prepare(overwrite=overwrite)
    if verify:
        reader.verify_checksums()
        console.print(
            f"[bold green]Checksums verified:[/] {len(reader.specs)} arrays of {reader.root} match the manifest."
        )
    console.print(f"[bold green]Cache ready:[/] {reader.root} (fingerprint {reader.fingerprint[:12]})")
    summary = datamodule.summary()
    if summary:
        failures = ", ".join(f"{reason}: {count}" for reason, count in summary.get("failures", {}).items()) or "none"
        held = ", ".join(f"{m} {n}" for m, n in summary.get("modalities", {}).items())
        console.print(
            f"  {summary['usable']} usable samples, splits {summary['splits']}; samples holding each modality: {held}; "
            f"failures ({failures}) in {reader.root / 'failures.jsonl'}; counts in {reader.root / 'summary.json'}"
        )


def show_batch_command(args: list[str]) -> None:
    """``mfer show-batch --config C [--output P] [--split S] [--rows N]``: draw samples of a prepared cache."""
    given = _pop_option(args, "--output", "")
    split = _pop_option(args, "--split", "train")
    rows = int(_pop_option(args, "--rows", "6"))
    datamodule = _datamodule_from_config(
        args,
        "show-batch",
        "own options: --output P (default docs/batch.png for SynthAffect, <cache>/batch-<split>.png for a real data "
        "set), --split S (default train), --rows N (default 6)",
    )
    if isinstance(datamodule, CombinedDataModule):  # one figure per member, beside its cache (or --output's name)
        for name, member in datamodule.members.items():
            output = Path(given).with_stem(f"{Path(given).stem}-{name}") if given else None
            _draw_batch_of(member, output, split, rows)
        return
    _draw_batch_of(datamodule, Path(given) if given else None, split, rows)


def _draw_batch_of(datamodule: FERDataModule, output: Path | None, split: str, rows: int) -> None:
    """Draw one data module's samples to ``output`` (None: docs/batch.png for SynthAffect, else beside the cache)."""
    from multimodal_fer.visualization.batch_figure import draw_batch

    datamodule.prepare(overwrite=False)
    generated = datamodule.adapter.generated
    # A real data set's faces stay with its data (its licence), not in the package's docs.
    output = output or Path("docs/batch.png" if generated else f"{datamodule.root}/batch-{split}.png")
    draw_batch(datamodule, output, split=split, rows=rows)
    console.print(f"[bold green]Batch figure written to[/] {output}")
    if not generated:
        console.print(
            f"Note: it shows samples of {datamodule.adapter.name} (real people's faces and signals where cached): "
            "keep it where the data set's licence allows the data itself."
        )


def occlusion_split_command(args: list[str]) -> None:
    """``mfer occlusion-split --config C [--split S] [--output P] [--types a,b] [--seed N]``."""
    from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES
    from multimodal_fer.preprocessing.occlusion_split_cache import build_occlusion_split
    from multimodal_fer.progress import generation_progress

    split = _pop_option(args, "--split", "test")
    output = _pop_option(args, "--output", "")
    kinds = [k for k in _pop_option(args, "--types", ",".join(OCCLUSION_TYPES)).split(",") if k]
    seed = int(_pop_option(args, "--seed", "0"))
    datamodule = _datamodule_from_config(
        args,
        "occlusion-split",
        "own options: --split S (default test), --output P, --types a,b (default all seven), --seed N",
    )
    if not isinstance(datamodule, FERDataModule) or "face" not in datamodule.modalities:
        raise SystemExit(f"{type(datamodule).__name__} has no face cache with splits to occlude.")
    reader = datamodule.prepare(overwrite=False)
    datamodule.setup()
    if split not in datamodule.splits:
        raise SystemExit(f"Unknown split {split!r}; the data module has {sorted(datamodule.splits)}.")
    target = Path(output) if output else Path(f"{reader.root}_occluded_{split}")
    indices = datamodule.splits[split]
    with generation_progress(f"Occluding the {split} split ({len(indices)} faces × {len(kinds)} kinds)") as update:
        built = build_occlusion_split(reader, indices, target, kinds, seed, progress=update)
    console.print(f"[bold green]Occlusion split ready:[/] {built.root} ({built.num_samples} faces)")


def physio_features_command(args: list[str]) -> None:
    """``mfer physio-features --config C [--overwrite] [--workers N]``: the physiological feature side cache."""
    from multimodal_fer.preprocessing.physio_feature_cache import build_physio_feature_cache, describe_summary
    from multimodal_fer.progress import generation_progress

    overwrite = _pop_flag(args, "--overwrite")
    workers = _pop_option(args, "--workers", "")
    datamodule = _datamodule_from_config(args, "physio-features", "own options: --overwrite, --workers N")
    if not isinstance(datamodule, FERDataModule):
        raise SystemExit(f"{type(datamodule).__name__} has no cache to compute physiological features for.")
    reader = datamodule.prepare(overwrite=False)
    with generation_progress(f"Physiological features of {reader.num_samples} windows") as update:
        side = build_physio_feature_cache(
            reader,
            overwrite=overwrite,
            num_workers=int(workers) if workers else None,
            rebuild_hint="mfer physio-features --config <your config> --overwrite",
            progress=update,
        )

    valid = describe_summary(side.manifest["summary"])  # each feature's valid windows, and why the others are not
    console.print(f"[bold green]Physiological features ready:[/] {side.root} (valid of {side.num_samples}: {valid})")


def predict_raw_command(args: list[str]) -> None:
    """``mfer predict --ckpt_path K --inputs P [P ...] --output F.csv``: predictions on raw recordings."""
    import argparse

    from multimodal_fer.inference.raw_predictor import SYNTHETIC_WARNING, load_run, predict_raw

    parser = argparse.ArgumentParser(prog="mfer predict", description="Predict raw images, videos and audio files.")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by mfer fit")
    parser.add_argument(
        "--inputs", nargs="+", required=True, help="files or folders (files sharing a stem are one sample)"
    )
    parser.add_argument("--output", default="predictions.csv", help="CSV file to write")
    parser.add_argument(
        "--config", default=None, help="the run's config.yaml (default: found beside or above the checkpoint)"
    )
    parser.add_argument("--per-frame", action="store_true", help="one row per sampled frame of each video")
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second sampled with --per-frame")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--aligned",
        action="store_true",
        help="the images (and video frames) are aligned face crops, e.g. RAF-DB's aligned faces or FER2013's: "
        "resize only, find no face",
    )
    options = parser.parse_args(args)
    if options.batch_size < 1 or options.fps <= 0:
        raise SystemExit("--batch-size must be at least 1 and --fps positive.")
    run = load_run(Path(options.ckpt_path), Path(options.config) if options.config else None, options.device)
    if run.generated:
        console.print(f"[bold yellow]Note:[/] {SYNTHETIC_WARNING}.")
    counts = predict_raw(
        run,
        options.inputs,
        Path(options.output),
        per_frame=options.per_frame,
        frames_per_second=options.fps,
        batch_size=options.batch_size,
        device=options.device,
        aligned=options.aligned,
    )
    console.print(
        f"[bold green]Predictions written to[/] {options.output}: {counts['predicted']} rows predicted, "
        f"{counts['errors']} with errors (their reasons are in the reason column)."
    )


def ablate_command(args: list[str]) -> None:
    """``mfer ablate SUITE.yaml [--out DIR] [--shard i/n] [--dry-run] [--sweep FILE]``: run an ablation suite."""
    import argparse

    from multimodal_fer.benchmarking import describe, load_suite, parse_shard, run_suite, write_sweep

    parser = argparse.ArgumentParser(prog="mfer ablate", description=VERB_SUMMARIES["ablate"])
    parser.add_argument("suite", help="suite file: base configs, overrides, grid, optional extra tests")
    parser.add_argument("--out", default="runs", help="root of the suite's folder <out>/<suite>/ (default runs)")
    parser.add_argument("--shard", default=None, help="i/n: run every n-th cell starting at i (n processes share)")
    parser.add_argument("--dry-run", action="store_true", help="list the cells, their state and their commands")
    parser.add_argument("--sweep", default=None, help="write the suite as a W&B sweep file instead of running it")
    options = parser.parse_args(args)
    suite = load_suite(Path(options.suite))
    out = Path(options.out)
    if options.sweep:
        path = write_sweep(suite, out, Path(options.sweep))
        console.print(f"[bold green]W&B sweep written to[/] {path}; create it with: wandb sweep {path}", soft_wrap=True)
        return
    shard = parse_shard(options.shard)
    if options.dry_run:
        print(describe(suite, out, shard))
        return
    outcomes = run_suite(suite, out, shard, report=lambda line: console.print(line, soft_wrap=True, markup=False))
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed", "waiting")}
    needed = f" (and the suites it needs: {', '.join(n.name for n in suite.needs)})" if suite.needs else ""
    console.print(
        f"[bold green]Suite {suite.name}{needed}:[/] {counts['done']} cells run, {counts['skipped']} done before, "
        f"{counts['failed']} failed, {counts['waiting']} waiting for needed cells, in {out / suite.name}",
        soft_wrap=True,
    )
    for outcome in outcomes:
        if outcome.status in ("failed", "waiting"):
            console.print(
                f"  [red]{outcome.folder.parent.name}/{outcome.folder.name}[/]: {outcome.error}", soft_wrap=True
            )
    if counts["waiting"]:
        console.print("Run the same command again once the needed cells have finished (other shards).", soft_wrap=True)
    if counts["failed"] or counts["waiting"]:
        raise SystemExit(1)


def crossval_command(args: list[str]) -> None:
    """``mfer crossval --config C [--folds N|loso] [--out DIR] ... [--key=value ...]``: folds and their aggregate."""
    import argparse

    from multimodal_fer.benchmarking import describe, run_suite
    from multimodal_fer.benchmarking.crossval import (
        default_name,
        fold_of,
        fold_suite,
        member_split_key,
        parse_folds,
        parse_overrides,
    )
    from multimodal_fer.benchmarking.fold_aggregate import (
        FOLD_RESULTS,
        FoldRun,
        aggregate_folds,
        missing_folds,
        write_aggregate,
    )
    from multimodal_fer.benchmarking.run_lookup import results_filename
    from multimodal_fer.benchmarking.runner import cell_folder, member_condition
    from multimodal_fer.benchmarking.suite import parse_shard

    parser = argparse.ArgumentParser(
        prog="mfer crossval",
        description=f"{VERB_SUMMARIES['crossval']}. Other --key=value options override the configs in every fold "
        "(e.g. --trainer.max_epochs=5); each fold's split is SubjectKFold, set by the folds (docs/runs.md).",
    )
    parser.add_argument("--config", action="append", required=True, help="config files, composed in order")
    parser.add_argument("--folds", default="5", help="number of folds (>= 3), or loso: one fold per subject")
    parser.add_argument("--fold-seed", type=int, default=0, help="seed of the subjects' assignment to folds")
    parser.add_argument(
        "--member",
        default=None,
        help="with a combined data module: the member whose subjects are folded (the others train in every fold)",
    )
    parser.add_argument("--out", default="runs", help="root of the folder <out>/<name>/ (default runs)")
    parser.add_argument("--name", default=None, help="folder name (default <config>-<k>fold or <config>-loso)")
    parser.add_argument("--shard", default=None, help="i/n: run every n-th fold starting at i (n processes share)")
    parser.add_argument("--dry-run", action="store_true", help="list the folds, their state and their commands")
    options, rest = parser.parse_known_args(args)
    overrides = parse_overrides(rest)
    split_key = member_split_key(options.member)
    if split_key in overrides:
        raise SystemExit(f"--{split_key} is what the folds set; leave it out of a cross-validation.")
    configs = [Path(path) for path in options.config]
    asked = parse_folds(options.folds)  # None: leave-one-subject-out
    # The subjects come from the cache, prepared here if need be (the first fold would prepare it anyway); a dry
    # run of k folds prepares nothing (with --member it checks the name against the data module's members).
    dry = options.dry_run and asked is not None
    subjects = () if dry and not options.member else _subjects_of(configs, overrides, options.member, not dry)
    if asked is None and not subjects:
        raise SystemExit("--folds loso needs a data module that knows its subjects (FERDataModule); give --folds N.")
    num_folds = len(subjects) if asked is None else asked
    if subjects and num_folds > len(subjects):
        raise SystemExit(f"{num_folds} folds need at least {num_folds} subjects; the data have {len(subjects)}.")
    name = options.name or default_name(configs, asked, options.fold_seed)
    protocol = f"SubjectKFold(num_folds={num_folds}, seed={options.fold_seed})"
    if asked is None:
        protocol = f"leave-one-subject-out ({num_folds} subjects), {protocol}"
    if options.member:  # ends with the folds' protocol, as mfer report matches the aggregate to them
        protocol = f"member {options.member}: {protocol}"
    suite = fold_suite(name, configs, overrides, num_folds, options.fold_seed, protocol, split_key)
    console.print(f"Cross-validation {name}: {protocol}", soft_wrap=True, markup=False)
    out = Path(options.out)
    shard = parse_shard(options.shard)
    if options.dry_run:
        print(describe(suite, out, shard))
        return

    def report(line: str) -> None:
        console.print(line, soft_wrap=True, markup=False)

    outcomes = run_suite(suite, out, shard, report=report, verb="crossval")
    results = results_filename(member_condition("test", options.member)) if options.member else FOLD_RESULTS
    folders = [(fold_of(cell.values, split_key), cell_folder(suite, cell, out).path) for cell in suite.cells]
    runs = [FoldRun(fold, folder, results) for fold, folder in folders]
    failed = [o for o in outcomes if o.status == "failed"]
    for outcome in failed:
        console.print(f"  [red]{outcome.cell.name}[/]: {outcome.error}", soft_wrap=True)
    missing = missing_folds(runs)
    if missing:
        console.print(
            f"[bold yellow]{len(runs) - len(missing)} of {len(runs)} folds done[/] (missing: {missing}); run the same "
            "command again to finish them and write the aggregate.",
            soft_wrap=True,
        )
        if failed:
            raise SystemExit(1)
        return
    aggregate = aggregate_folds(runs, name, protocol, base=out / name)
    path = write_aggregate(aggregate, out / name)
    console.print(f"[bold green]Cross-validation {name}:[/] {len(runs)} folds, aggregate in {path}", soft_wrap=True)
    metrics = aggregate["metrics"]
    for metric in ("test/expr/f1_macro", "test/au/f1_mean", "test/va/ccc_valence", "test/va/ccc_arousal"):
        if metric in metrics:
            entry = metrics[metric]
            console.print(f"  {metric}: {_mean_std(entry)} over folds, pooled {_number(entry.get('pooled'))}")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _mean_std(entry: dict[str, Any]) -> str:
    std = entry.get("std")
    return _number(entry.get("mean")) + ("" if std is None else f" ± {std:.3f}")


def _subjects_of(
    configs: list[Path], overrides: dict[str, str], member: str | None = None, prepare: bool = True
) -> tuple[str, ...]:
    """The subjects the folds divide: the configs' data's, or a combined data module's ``member``'s.

    Args:
        configs: the config files.
        overrides: ``--key=value`` overrides (those of ``data.`` apply).
        member: with a combined data module, the member whose subjects are folded.
        prepare: prepare the cache if needed and return its subjects; False only checks ``member`` (empty result).

    Returns:
        The subjects, or none for data modules that do not know theirs.

    Raises:
        SystemExit: a combined data module without ``member`` or with a name that is not one of its members, or
            ``member`` given for a data module that is not combined.
    """
    arguments = [item for path in configs for item in ("--config", str(path))]
    arguments += [f"--{key}={value}" for key, value in overrides.items() if key.startswith("data.")]
    datamodule = _datamodule_from_config(arguments, "crossval")
    if isinstance(datamodule, CombinedDataModule):
        names = ", ".join(datamodule.members)
        if member is None:
            raise SystemExit(
                f"The config's data is a combined data module (members {names}); name the member whose subjects "
                "the folds divide with --member NAME (the others train in every fold)."
            )
        if member not in datamodule.members:
            raise SystemExit(f"--member {member}: the combined data module's members are {names}.")
        datamodule = datamodule.members[member]
    elif member is not None:
        raise SystemExit(
            f"--member {member} folds a member of a combined data module; this config's data is "
            f"{type(datamodule).__name__}: leave --member out."
        )
    if not isinstance(datamodule, FERDataModule) or not prepare:
        return ()
    with member_context(member) if member else nullcontext():
        datamodule.prepare(overwrite=False)
    return datamodule.subjects()


def report_command(args: list[str]) -> None:
    """``mfer report DIR ... [--output F.html] [--reference K=V|NAME ...] [--best-of K=V|NAME ...]``: result tables."""
    import argparse

    from multimodal_fer.reporting import DEFAULT_RESAMPLES, build_report, write_report

    parser = argparse.ArgumentParser(
        prog="mfer report",
        description="Compare the results files under run, experiment or suite folders (never retrains): one "
        "self-contained HTML page plus Markdown, LaTeX and one CSV per table beside it (docs/report.md).",
    )
    parser.add_argument("folders", nargs="+", metavar="DIR", help="run, experiment or suite folders (recursive)")
    parser.add_argument("--output", default="report.html", help="the HTML page; other files go beside it")
    parser.add_argument(
        "--reference",
        nargs="+",
        action="extend",
        default=[],
        metavar="K=V|NAME",
        help="the setting compared against: key=value pairs (data.init_args.modalities=[face]) or a setting/run name",
    )
    parser.add_argument(
        "--best-of",
        nargs="+",
        action="extend",
        default=[],
        metavar="K=V|NAME",
        help="baseline settings (a suite name selects all its settings): every other setting against the best of "
        "them, chosen per seed, metric and bootstrap draw",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        action="extend",
        default=[],
        help="metrics of the tables (default: every task's headline)",
    )
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="draws of the subject bootstrap")
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also log the figures and tables to a W&B run (job type report) in the runs' project and group; "
        "offline under the output's folder without credentials",
    )
    options = parser.parse_args(args)
    destination = None
    if options.wandb:  # refused before the report is built when the runs were not logged to W&B
        from multimodal_fer.reporting.records import load_records
        from multimodal_fer.reporting.wandb_upload import wandb_destination

        configs = [record.config for record in load_records(options.folders)]
        destination = wandb_destination(configs, Path(options.folders[0]).resolve().name)
    report = build_report(
        options.folders, options.reference, options.metrics, options.resamples, best_of=options.best_of
    )
    written = write_report(report, options.output)
    console.print(
        f"[bold green]Report written to[/] {written.html} (+ {written.markdown.name}, {written.latex.name} and "
        f"{len(written.csv)} CSV tables; {len(report.sections)} protocol group(s))"
    )
    if destination is not None:
        from multimodal_fer.reporting.wandb_upload import upload_report

        local = upload_report(report, destination, Path(written.html).parent)
        console.print(
            f"W&B: report logged to project {destination.project}, group {destination.group} (job type report; "
            f"local files {local})"
        )


def probe_command(args: list[str]) -> None:
    """``mfer probe SUITE_DIR [--out DIR] [--subsets S ...] [--cells PATTERN] [--key=value ...]``: linear probes."""
    import argparse

    from multimodal_fer.evaluation.probe_report import markdown, parse_subset, probe_suite, write_tables

    parser = argparse.ArgumentParser(
        prog="mfer probe",
        description=f"{VERB_SUMMARIES['probe']}. Each single-modality run of the suite folder is rebuilt from its "
        "config.yaml and best checkpoint; its encoder's features of the train, validation and test splits are fixed, "
        "and ridge (affect, CCC) and logistic (expressions, macro-F1) probes are fitted on train, tuned on validation "
        "and scored on test. Other --key=value options override every run's config (e.g. "
        "--data.init_args.root=data/synthaffect where the cache has moved). docs/runs.md, 'Linear probes'.",
    )
    parser.add_argument("suite", metavar="SUITE_DIR", help="suite folder of single-modality runs (runs/suites/...)")
    parser.add_argument("--out", default=None, help="folder of probes.md and probes.json (default: SUITE_DIR)")
    parser.add_argument(
        "--subsets",
        nargs="+",
        default=None,
        metavar="M[+M...]",
        help="modality subsets to probe (default: each alone, audio+physio, face+audio+depth, all)",
    )
    parser.add_argument("--cells", default=None, help="shell pattern of the run folders to read ('*-seed=[01]')")
    options, rest = parser.parse_known_args(args)
    unknown = [arg for arg in rest if not (arg.startswith("--") and "=" in arg)]
    if unknown:
        parser.error(f"unrecognised arguments {unknown}: config overrides are written --key=value")
    subsets = [parse_subset(text) for text in options.subsets] if options.subsets else None

    def report(line: str) -> None:
        console.print(line, soft_wrap=True, markup=False)

    summary = probe_suite(options.suite, subsets, overrides=rest, cells=options.cells, report=report)
    text, data = write_tables(summary, options.out or options.suite)
    print(markdown(summary))
    console.print(f"[bold green]Probe tables written to[/] {text} and {data}", soft_wrap=True)


def occlusion_benchmark_command(args: list[str]) -> None:
    """``mfer occlusion-benchmark SPEC [--out DIR] [--report-only] [--compact]``: recognisers on an occlusion split."""
    import argparse

    from multimodal_fer.evaluation.occlusion_benchmark import SUMMARY_JSON, SUMMARY_MD, run_benchmark
    from multimodal_fer.evaluation.occlusion_spec import load_spec
    from multimodal_fer.evaluation.occlusion_tables import markdown

    parser = argparse.ArgumentParser(
        prog="mfer occlusion-benchmark",
        description=f"{VERB_SUMMARIES['occlusion-benchmark']}. SPEC (YAML or JSON) names the occlusion split (mfer "
        "occlusion-split), per seed the run folders of the face recognisers and of the restorer, the trivial fills, "
        "the recovery references and the paired comparisons; docs/occlusion.md, section 5.",
    )
    parser.add_argument("spec", metavar="SPEC", help="the benchmark's spec file (YAML or JSON)")
    parser.add_argument("--out", default=None, help="output folder (default: the spec file's folder)")
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild summary.json and summary.md from the saved predictions"
    )
    parser.add_argument(
        "--compact",
        action="store_true",
        help="save each face's expression class and AU decisions instead of the logits: the same tables from "
        "predictions files a tenth of the size (no scores for other metrics)",
    )
    options = parser.parse_args(args)
    spec = load_spec(options.spec)
    out = Path(options.out) if options.out else Path(options.spec).resolve().parent

    def report(line: str) -> None:
        console.print(line, soft_wrap=True, markup=False)

    command = shlex.join(["mfer", "occlusion-benchmark", *args])
    summary = run_benchmark(
        spec, out, report_only=options.report_only, report=report, command=command, decisions_only=options.compact
    )
    print(markdown(summary))
    console.print(f"[bold green]Occlusion benchmark written to[/] {out / SUMMARY_JSON} and {out / SUMMARY_MD}")


def calibrate_restorer_command(args: list[str]) -> None:
    """``mfer calibrate-restorer --restorer R --recogniser K --split S [--output DIR] [...]``."""
    import argparse

    from multimodal_fer.evaluation.restorer_calibration import (
        CALIBRATION_JSON,
        DEFAULT_DILATIONS,
        DEFAULT_THRESHOLDS,
        calibrate_restorer,
    )
    from multimodal_fer.progress import generation_progress

    parser = argparse.ArgumentParser(
        prog="mfer calibrate-restorer",
        description=f"{VERB_SUMMARIES['calibrate-restorer']}. Every (threshold, dilation) of the grid is scored by the "
        "recogniser's expression macro-F1 on the split's faces restored blindly with it; the best is written with the "
        "same weights as a run folder that loads wherever a restoration run does (docs/occlusion.md, section 6).",
    )
    parser.add_argument(
        "--restorer",
        required=True,
        action="extend",
        nargs="+",
        help="a restoration run folder or checkpoint; several (e.g. a run's best and last checkpoints): every "
        "setting of each is scored and the checkpoint is chosen too (repeatable)",
    )
    parser.add_argument(
        "--recogniser",
        required=True,
        help="the judge: a face recogniser's run folder or checkpoint, best the restorer's own recogniser_critic",
    )
    parser.add_argument(
        "--split",
        required=True,
        help="an occlusion split of validation subjects (mfer occlusion-split --config C --split val), never the test",
    )
    parser.add_argument(
        "--output", default=None, help="the calibrated restorer's run folder (default: <restorer run>_calibrated)"
    )
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS))
    parser.add_argument("--dilations", type=int, nargs="+", default=list(DEFAULT_DILATIONS))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing calibration in --output")
    options = parser.parse_args(args)
    restorer = Path(options.restorer[0])
    if options.output:
        output = Path(options.output)
    else:
        run = restorer.resolve() if restorer.is_dir() else restorer.resolve().parent.parent  # latest → its run
        output = run.with_name(f"{run.name}_calibrated")
    with generation_progress("Scoring mask settings on the split") as update:
        calibration = calibrate_restorer(
            options.restorer,
            options.recogniser,
            options.split,
            output,
            thresholds=options.thresholds,
            dilations=options.dilations,
            overwrite=options.overwrite,
            progress=update,
        )
    console.print(
        f"Expression macro-F1 of the judge on {calibration.faces} faces (occluded: {calibration.occluded_f1:.3f})"
    )
    if len(calibration.candidates) > 1:
        for candidate in calibration.candidates:
            mark = "chosen" if candidate["restorer"] == calibration.restorer else ""
            console.print(f"  {candidate['restorer']}: best {candidate['chosen']['f1_macro']:.3f} {mark}")
        console.print(f"Every setting of the chosen checkpoint, {calibration.restorer}:")
    for point in calibration.grid:
        marks = [m for m, p in (("trained", calibration.trained), ("chosen", calibration.chosen)) if p == point]
        console.print(
            f"  threshold {point.threshold:.2f}, dilation {point.dilation}: {point.f1_macro:.3f} {' '.join(marks)}"
        )
    console.print(f"[bold green]Calibrated restorer written to[/] {output} ({CALIBRATION_JSON} lists every setting)")


def restore_command(args: list[str]) -> None:
    """``mfer restore --restorer R --inputs P [P ...] --output DIR [...]``."""
    import argparse

    from multimodal_fer.benchmarking.run_lookup import best_checkpoint
    from multimodal_fer.inference.face_restoration import RESTORATIONS_CSV, restore_faces
    from multimodal_fer.models.restoration import load_restorer
    from multimodal_fer.preprocessing.media_processor import MediaPreprocessing

    defaults = MediaPreprocessing()
    parser = argparse.ArgumentParser(
        prog="mfer restore",
        description=f"{VERB_SUMMARIES['restore']}. Each face is found and aligned at the restorer's crop size (or "
        "resized with --aligned), restored blindly and written as <name>.face.png, <name>.mask.png and "
        f"<name>.restored.png, with one row per input in {RESTORATIONS_CSV} (docs/occlusion.md, section 3). A "
        "restorer trained on SynthAffect is a model of generated faces: on photographs of people it shows what the "
        "tool does, not a restoration to trust.",
    )
    parser.add_argument(
        "--restorer", required=True, help="a restoration run folder (its best checkpoint) or a restorer checkpoint"
    )
    parser.add_argument(
        "--inputs", required=True, nargs="+", help="image or video files, or folders of them (searched recursively)"
    )
    parser.add_argument("--output", required=True, help="the folder to write the images and the table into")
    parser.add_argument("--aligned", action="store_true", help="the images are aligned face crops: resize only")
    parser.add_argument(
        "--face-detector",
        default=defaults.face_detector,
        choices=("auto", "mtcnn", "haar", "yunet"),
        help="how faces are found (auto: MTCNN when facenet-pytorch is installed, else OpenCV's Haar cascade)",
    )
    parser.add_argument("--yunet-model", default=None, help="a YuNet ONNX file, for --face-detector yunet")
    parser.add_argument(
        "--face-margin",
        type=float,
        default=defaults.face_margin,
        help="context around a found face box, as a share of its side (use the restorer's training data's)",
    )
    parser.add_argument(
        "--min-face-score", type=float, default=defaults.min_face_score, help="detections below this are ignored"
    )
    parser.add_argument(
        "--masks",
        default=None,
        help="known occlusion masks (with --aligned): a folder with one image per input under the same relative "
        "name, white = occluded; the generator fills them instead of the mask network's",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's results in --output")
    options = parser.parse_args(args)
    source = Path(options.restorer)
    checkpoint = source if source.is_file() else best_checkpoint(source)
    restorer = load_restorer(checkpoint)
    try:
        settings = MediaPreprocessing(
            image_size=int(restorer.image_size),
            face_detector=options.face_detector,
            yunet_model=options.yunet_model,
            face_margin=options.face_margin,
            min_face_score=options.min_face_score,
        )
    except ValueError as error:
        raise SystemExit(f"mfer restore: {error}") from None
    counts = restore_faces(
        restorer,
        options.inputs,
        Path(options.output),
        settings,
        aligned=options.aligned,
        batch_size=options.batch_size,
        device=options.device,
        overwrite=options.overwrite,
        masks=Path(options.masks) if options.masks else None,
    )
    console.print(
        f"[bold green]Restored faces written to[/] {options.output}: {counts.written} of {counts.inputs} inputs, "
        f"{counts.errors} with errors (their reasons are in {RESTORATIONS_CSV})."
    )


def abaw_files_command(args: list[str]) -> None:
    """``mfer abaw-files PREDICTIONS.csv --output DIR [--tracks va expr au] [--videos V] [--au-threshold T]``."""
    import argparse

    from multimodal_fer.evaluation.abaw_submission import TRACKS, write_submission

    parser = argparse.ArgumentParser(prog="mfer abaw-files", description=VERB_SUMMARIES["abaw-files"])
    parser.add_argument("predictions", help="mfer predict's CSV over Aff-Wild2 frames (cache or cropped_aligned)")
    parser.add_argument("--output", required=True, help="the submission folder (VA/, EXPR/, AU/ inside)")
    parser.add_argument("--tracks", nargs="+", default=list(TRACKS), choices=list(TRACKS), help="tracks to write")
    parser.add_argument(
        "--videos",
        default=None,
        help="folder of the raw videos: each file gets one line per frame of its video (default: up to its last "
        "predicted frame)",
    )
    parser.add_argument("--au-threshold", type=float, default=0.5, help="AU probability written as 1 (default 0.5)")
    options = parser.parse_args(args)
    summary = write_submission(
        Path(options.predictions),
        Path(options.output),
        options.tracks,
        Path(options.videos) if options.videos else None,
        options.au_threshold,
    )
    filled = sum(summary.filled.values())
    guessed = [video for video, source in summary.counted_from.items() if source != "video file"]
    console.print(
        f"[bold green]ABAW files written to[/] {summary.out}: {len(summary.lines)} videos × {len(options.tracks)} "
        f"track(s), {sum(summary.lines.values())} lines each track; {filled} frames without a prediction took their "
        "nearest predicted frame's."
    )
    if guessed:
        console.print(
            f"[bold yellow]Note:[/] {len(guessed)} video(s) end at their last predicted frame (no --videos, or no "
            f"video file found: {', '.join(guessed[:5])}{' ...' if len(guessed) > 5 else ''}); ABAW expects one line "
            "per frame of the video."
        )


OWN_VERBS: dict[str, Callable[[list[str]], None]] = {
    "abaw-files": abaw_files_command,
    "ablate": ablate_command,
    "crossval": crossval_command,
    "probe": probe_command,
    "prepare": prepare_command,
    "show-batch": show_batch_command,
    "occlusion-split": occlusion_split_command,
    "occlusion-benchmark": occlusion_benchmark_command,
    "calibrate-restorer": calibrate_restorer_command,
    "restore": restore_command,
    "physio-features": physio_features_command,
    "report": report_command,
}


#: Progress-bar callbacks that ``--trainer.enable_progress_bar=false`` removes from a config's callbacks.
PROGRESS_BARS = ("RichProgressBar", "TQDMProgressBar")


def _drop_progress_bars_when_disabled(config: Any) -> None:
    """``--trainer.enable_progress_bar=false`` removes the configs' progress-bar callbacks (Lightning refuses both)."""
    trainer = config.get("trainer")
    if trainer is None or trainer.get("enable_progress_bar") is not False:
        return
    callbacks = trainer.get("callbacks") or []
    kept = [c for c in callbacks if str(getattr(c, "class_path", "")).rsplit(".", 1)[-1] not in PROGRESS_BARS]
    if len(kept) != len(callbacks):
        trainer.callbacks = kept


def main(argv: Sequence[str] | None = None) -> Any:
    """Entry point of ``mfer`` and ``python -m multimodal_fer``.

    A mistake in the input (a bad value, a missing or damaged file, a stale cache) ends with one message and exit
    status 2, without a traceback; ``--debug`` anywhere on the command line shows the traceback instead.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _pop_flag(args, "--debug")
    # Lightning 2.6 on torch 2.11 warns about its own pytree use on every batch; it is not actionable here.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # The command line reaches LightningCLI as ``args`` (after the package's own flags are taken out).
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")
    # Under DDP Lightning suggests sync_dist=True for every tensor logged per epoch. The tasks' epoch metrics and
    # losses are torchmetrics states already reduced across processes by compute(), which Lightning cannot see.
    warnings.filterwarnings(
        "ignore", message=r"It is recommended to use `self.log\('(train|val|test)/", category=PossibleUserWarning
    )
    try:
        return _run(args)
    except (MferError, ValueError, FileNotFoundError) as error:
        if debug or argv is not None:  # called from Python (tests, notebooks): the caller handles the exception
            raise
        # escape: messages hold install commands such as pip install 'multimodal-fer[3d]', not markup
        console.print(f"[bold red]Error:[/] {escape(_user_message(error))}")
        console.print("[dim](run again with --debug for the full traceback)[/]")
        raise SystemExit(2) from None


#: One line per verb for ``mfer --help``: LightningCLI's four and the package's own.
VERB_SUMMARIES: dict[str, str] = {
    "fit": "train (and test the best checkpoint with test_after_fit): mfer fit --config C [--config overlay ...]",
    "validate": "validate a checkpoint: mfer validate --config C --ckpt_path K",
    "test": "test a checkpoint, add results-<condition>.json to its run: mfer test --config C --ckpt_path K|best|last",
    "predict": "predict a prepared cache's test split (--config C --ckpt_path K) or raw files (--inputs P ...)",
    "prepare": "build, resume or check (--verify) a data set's cache: mfer prepare --config C",
    "show-batch": "draw samples of a prepared cache, every modality and the labels: mfer show-batch --config C",
    "occlusion-split": "occlude every face of a split once per kind: mfer occlusion-split --config C --split test",
    "occlusion-benchmark": "recognisers on an occlusion split with bootstrap intervals: mfer occlusion-benchmark SPEC",
    "calibrate-restorer": "choose a restorer's mask threshold and dilation on validation faces: mfer calibrate-restorer"
    " --restorer R --recogniser K --split S",
    "restore": "restore occluded faces in one's own images: mfer restore --restorer R --inputs P ... --output DIR",
    "physio-features": "neurokit2 features of every physiological window: mfer physio-features --config C",
    "ablate": "run an ablation suite, a fit and tests per grid cell: mfer ablate SUITE.yaml [--out D] [--shard i/n]",
    "crossval": "subject-exclusive folds or leave-one-subject-out + aggregate.json: mfer crossval --config C --folds N",
    "report": "tables from results files (HTML, Markdown, CSV, LaTeX): mfer report DIR ... --output report.html",
    "probe": "linear probes on a suite's single-modality features, per modality subset: mfer probe SUITE_DIR",
    "abaw-files": "Aff-Wild2 predictions as ABAW track files, one per video: mfer abaw-files PRED.csv --output DIR",
}


def _print_overview() -> None:
    """``mfer --help``: every verb with its one-line summary."""
    lines = [
        "usage: mfer VERB [options]   (mfer VERB --help shows a verb's own options)",
        "",
        "Multimodal facial expression recognition on PyTorch Lightning.",
        "",
        "verbs:",
        *(f"  {verb:<16} {summary}" for verb, summary in VERB_SUMMARIES.items()),
        "",
        "anywhere: --debug shows the full traceback of an error",
    ]
    print("\n".join(lines))


def _run(args: list[str]) -> Any:
    if not args or args[0] in ("-h", "--help"):
        _print_overview()
        return None
    if args and args[0] in OWN_VERBS:
        return OWN_VERBS[args[0]](args[1:])
    if args and args[0] == "predict" and any(a == "--inputs" or a.startswith("--inputs=") for a in args[1:]):
        return predict_raw_command(args[1:])
    inherited = os.environ.get(RUN_FOLDER_ENVIRONMENT)
    wandb_before = active_wandb_run()
    failed = True
    try:
        build_cli(args)
        failed = False
    finally:  # the variable is for the processes this command starts, not for later commands in this process
        if inherited is None:
            os.environ.pop(RUN_FOLDER_ENVIRONMENT, None)
        finish_wandb_run(wandb_before, failed)
    close_process_group()
    return None


def close_process_group() -> None:
    """Destroy the DDP process group a finished command leaves behind (a no-op without one).

    Left to the interpreter's shutdown, Gloo's worker threads can still hold tensors when Python is torn down, and
    the process then aborts ("terminate called without an active exception", exit -6) after its work is done.
    Called only after a command succeeded: destroying the group while another rank is inside a collective could
    hang.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _user_message(error: BaseException) -> str:
    """The package's own message where the exception's chain holds one, else the innermost error's text.

    jsonargparse wraps the errors raised while it builds classes; the user needs the innermost one.
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, MferError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    innermost = error
    while innermost.__cause__ is not None or innermost.__context__ is not None:
        innermost = innermost.__cause__ or innermost.__context__  # type: ignore[assignment]
    return str(innermost) if isinstance(innermost, ValueError | FileNotFoundError) else str(error)
