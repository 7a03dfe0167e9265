"""The ``mfer`` command: LightningCLI's ``fit``/``validate``/``test``/``predict`` plus the package's own verbs.

Own verbs:
  ``mfer prepare --config C [--overwrite] [--verify]``  build (or resume) the data cache of a config; --verify
  recomputes every array's checksum.
  ``mfer predict --ckpt_path K --inputs P [P ...] --output F.csv [--per-frame] [--fps R] [--config C]``  predict
  raw images, videos, wav files or folders of them (without ``--inputs``, ``predict`` is LightningCLI's, on the
  config's prepared cache, and writes ``predictions.csv`` in the run folder).
  ``mfer show-batch --config C [--output P] [--split S] [--rows N]``  draw one batch of every modality.
  ``mfer occlusion-split --config C [--split S] [--output P] [--types a,b] [--seed N]``  occlude every face of
  a split once per occlusion kind (deterministic) and write it as a cache for ``OcclusionSplitDataModule``.
  ``mfer physio-features --config C [--overwrite] [--workers N]``  compute the neurokit2 features of every
  physiological window into a side cache beside the data cache (read with ``physio_features: true``).

Several ``--config`` files compose in order; later ones and ``--a.b=c`` flags override earlier values.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from rich.console import Console
from rich.markup import escape

from multimodal_fer.callbacks.prediction_writer import PredictionCSVWriter
from multimodal_fer.callbacks.results_writer import ResultsWriter
from multimodal_fer.datamodules.base import FERDataModule
from multimodal_fer.errors import MferError, NoBestCheckpointError

console = Console(stderr=True)


class LoggedSaveConfigCallback(SaveConfigCallback):
    """Save ``config.yaml`` in the log folder and also log the resolved config to every logger (W&B, CSV).

    ``fit`` writes ``config.yaml``; ``validate``, ``test`` and ``predict`` write ``config-<stage>.yaml``, so
    testing a checkpoint in its run folder (on another split, say) keeps the configuration it was trained with.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Choose the file by stage, then save as LightningCLI does."""
        name = getattr(stage, "value", stage)  # Lightning passes a TrainerFn
        if name != "fit":
            self.config_filename = f"config-{name}.yaml"
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Log the resolved configuration as hyperparameters under ``config``."""
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})


class MferCLI(LightningCLI):
    """LightningCLI with the package's links, the results writer and an optional test after fit."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Links from the data module to the model, the results writer and ``--test_after_fit``."""
        parser.add_lightning_class_args(ResultsWriter, "results")
        parser.add_lightning_class_args(PredictionCSVWriter, "prediction_writer")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After fit, test the best checkpoint (the last weights if none) and write results.json.",
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

    def _announce_results(self) -> None:
        writer = self._results_writer()
        if writer is not None and writer.last_path is not None and self.trainer.is_global_zero:
            console.print(f"[bold green]Results written to[/] {writer.last_path}")

    def before_fit(self) -> None:
        """Give the results writer the resolved config."""
        self._fill_results_writer()

    def before_test(self) -> None:
        """Give the results writer the resolved config."""
        self._fill_results_writer()

    def after_fit(self) -> None:
        """Test the best checkpoint when ``--test_after_fit`` is set."""
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
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
        self._announce_results()

    def after_test(self) -> None:
        """Say where results.json is."""
        self._announce_results()

    def after_predict(self) -> None:
        """Say where the predictions are."""
        for callback in self.trainer.callbacks:
            if isinstance(callback, PredictionCSVWriter) and callback.last_path is not None:
                console.print(f"[bold green]Predictions written to[/] {callback.last_path}")


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
    for section in ("model", "trainer", "optimizer", "lr_scheduler", "results", "prediction_writer"):
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
    if not isinstance(datamodule, FERDataModule):
        raise SystemExit(f"{type(datamodule).__name__} has no cache to prepare.")
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
        console.print(
            f"  {summary['usable']} usable samples, splits {summary['splits']}; failures ({failures}) in "
            f"{reader.root / 'failures.jsonl'}; counts in {reader.root / 'summary.json'}"
        )


def show_batch_command(args: list[str]) -> None:
    """``mfer show-batch --config C [--output P] [--split S] [--rows N]``: draw one batch of every modality."""
    from multimodal_fer.visualization.batch_figure import draw_batch

    output = Path(_pop_option(args, "--output", "docs/batch.png"))
    split = _pop_option(args, "--split", "train")
    rows = int(_pop_option(args, "--rows", "6"))
    datamodule = _datamodule_from_config(
        args,
        "show-batch",
        "own options: --output P (default docs/batch.png), --split S (default train), --rows N (default 6)",
    )
    datamodule.prepare(overwrite=False)
    draw_batch(datamodule, output, split=split, rows=rows)
    console.print(f"[bold green]Batch figure written to[/] {output}")


def occlusion_split_command(args: list[str]) -> None:
    """``mfer occlusion-split --config C [--split S] [--output P] [--types a,b] [--seed N]``."""
    from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES
    from multimodal_fer.preprocessing.occlusion_split import build_occlusion_split
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
    from multimodal_fer.preprocessing.physio_feature_cache import build_physio_feature_cache
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
    valid = ", ".join(f"{name} {entry['valid']}" for name, entry in side.manifest["summary"].items())
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
    )
    console.print(
        f"[bold green]Predictions written to[/] {options.output}: {counts['predicted']} rows predicted, "
        f"{counts['errors']} with errors (their reasons are in the reason column)."
    )


OWN_VERBS: dict[str, Callable[[list[str]], None]] = {
    "prepare": prepare_command,
    "show-batch": show_batch_command,
    "occlusion-split": occlusion_split_command,
    "physio-features": physio_features_command,
}


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
    "test": "test a checkpoint and write results.json: mfer test --config C --ckpt_path K",
    "predict": "predict a prepared cache's test split (--config C --ckpt_path K) or raw files (--inputs P ...)",
    "prepare": "build, resume or check (--verify) a data set's cache: mfer prepare --config C",
    "show-batch": "draw one batch of every modality: mfer show-batch --config C --output batch.png",
    "occlusion-split": "occlude every face of a split once per kind: mfer occlusion-split --config C --split test",
    "physio-features": "neurokit2 features of every physiological window: mfer physio-features --config C",
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
    build_cli(args)
    return None


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
