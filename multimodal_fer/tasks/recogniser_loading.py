"""Rebuild a trained FER model from a ``mfer fit`` run: its checkpoint plus the config the run saved."""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from multimodal_fer.errors import DataError

#: Keys of a saved ``fit`` config that belong to the subcommand, not to the model, data or trainer.
_SUBCOMMAND_KEYS = ("ckpt_path", "weights_only")


def find_run_config(checkpoint: Path, levels: int = 3) -> Path:
    """The ``config.yaml`` a run saved next to, or up to ``levels`` folders above, its checkpoint."""
    folder = checkpoint.resolve().parent
    for _ in range(levels + 1):
        candidate = folder / "config.yaml"
        if candidate.is_file():
            return candidate
        folder = folder.parent
    raise FileNotFoundError(
        f"No config.yaml found within {levels} folders above {checkpoint}; pass the run's config explicitly "
        "(mfer predict --config path/to/config.yaml; recogniser_critic_config: path/to/config.yaml for the critic)."
    )


def load_fer_run(
    checkpoint: str | Path, config: str | Path | None = None, overrides: Sequence[str] = ()
) -> tuple[Any, Any]:
    """Rebuild a finished ``mfer fit`` run: its task with the trained weights, and its data module.

    Args:
        checkpoint: a checkpoint written by ``mfer fit`` with a :class:`~multimodal_fer.tasks.MultitaskFERTask` (or a
            subclass, e.g. :class:`~multimodal_fer.tasks.JointRestorationFERTask`).
        config: the run's saved ``config.yaml``; None looks for it beside or above the checkpoint.
        overrides: command-line settings applied after the config (``--data.init_args.root=...``), e.g. to read
            the run's cache where it lies now.

    Returns:
        ``(task, datamodule)``: the task in eval mode, and the data module the run trained on (not set up: nothing
        is read from its cache).

    Raises:
        FileNotFoundError: the checkpoint or the config does not exist.
        DataError: the checkpoint is not a FER run's, or its weights do not fit the config's architecture.
    """
    from multimodal_fer.cli import build_cli  # the CLI imports the tasks; import it only when needed

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist; train one with `mfer fit` first.")
    config_path = Path(config) if config is not None else find_run_config(path)
    if not config_path.is_file():
        raise FileNotFoundError(f"Run config {config_path} does not exist.")
    settings = yaml.safe_load(config_path.read_text()) or {}
    model_class = str((settings.get("model") or {}).get("class_path", ""))
    if not _is_fer_task(model_class):
        raise DataError(
            f"{config_path} configures {model_class or 'no model'}, not a MultitaskFERTask; point to a FER run "
            "(mfer fit --config configs/quickstart.yaml ...)."
        )
    for key in _SUBCOMMAND_KEYS:
        settings.pop(key, None)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(settings, handle, sort_keys=False)  # the run's order (a combined fit's members)
        cleaned = handle.name
    try:
        cli = build_cli(
            ["--config", cleaned, "--trainer.logger=false", "--trainer.callbacks=null", *overrides], run=False
        )
    finally:
        Path(cleaned).unlink(missing_ok=True)
    # The user's own local file; Lightning checkpoints carry plain Python objects beside the tensors.
    content = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(content, dict) or "state_dict" not in content:
        raise DataError(f"{path} is not a Lightning checkpoint (no state_dict).")
    task = cli.model
    task.on_load_checkpoint(content)
    try:
        task.load_state_dict(content["state_dict"])
    except RuntimeError as error:
        raise DataError(
            f"The weights in {path} do not fit the model {config_path} configures; pass the config of the run "
            f"that wrote this checkpoint.\n{error}"
        ) from error
    return task.eval(), cli.datamodule


def _is_fer_task(class_path: str) -> bool:
    """Whether a config's ``model.class_path`` names MultitaskFERTask or a subclass (e.g. the joint fine-tuning)."""
    from multimodal_fer.tasks.multitask_fer import MultitaskFERTask

    module_name, _, name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name, None) if module_name else None
    except ImportError:
        return False
    return isinstance(found, type) and issubclass(found, MultitaskFERTask)


def load_fer_model(checkpoint: str | Path, config: str | Path | None = None) -> tuple[nn.Module, int]:
    """Rebuild the multimodal FER model of a finished run with its trained weights, in eval mode.

    Args:
        checkpoint: a checkpoint written by ``mfer fit`` with a :class:`~multimodal_fer.tasks.MultitaskFERTask`.
        config: the run's saved ``config.yaml``; None looks for it beside or above the checkpoint.

    Returns:
        ``(model, image_size)``: the :class:`~multimodal_fer.models.multimodal.MultimodalFERModel` and the face
        side its data used (0 when the data module does not say).

    Raises:
        FileNotFoundError: the checkpoint or the config does not exist.
        DataError: the checkpoint is not a FER run's, or its weights do not fit the config's architecture.
    """
    task, datamodule = load_fer_run(checkpoint, config)
    return task.model.eval(), int(getattr(datamodule, "image_size", 0) or 0)
