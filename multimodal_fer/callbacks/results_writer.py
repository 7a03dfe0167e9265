"""Write ``results.json`` at the end of every test run: metrics, config, cache fingerprint, versions, seed."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

import multimodal_fer

#: Schema version of results.json; evaluation code checks it.
RESULTS_SCHEMA_VERSION = 1


def git_revision(path: Path | None = None) -> dict[str, Any]:
    """The git commit of the package source (or of ``path``), and whether the work tree has changes.

    Returns:
        ``{"sha": str | None, "dirty": bool | None}``; None where git or the repository is unavailable.
    """
    where = path or Path(multimodal_fer.__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return {"sha": sha, "dirty": bool(status)}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value


class ResultsWriter(Callback):
    """Writes ``results.json`` when a test run ends (global rank 0 only).

    The file goes beside the tested checkpoint, else into the checkpoint folder of the run, else into the
    trainer's log folder. The command-line interface fills :attr:`config` with the resolved configuration.

    Args:
        filename: name of the results file.
    """

    def __init__(self, filename: str = "results.json") -> None:
        self.filename = filename
        self.config: dict[str, Any] | None = None
        self.seed: int | None = None
        self.last_path: Path | None = None

    def _target_folder(self, trainer: pl.Trainer) -> Path:
        if trainer.ckpt_path:
            return Path(trainer.ckpt_path).resolve().parent
        checkpoint = trainer.checkpoint_callback
        dirpath = getattr(checkpoint, "dirpath", None)
        if dirpath:
            return Path(dirpath)
        return Path(trainer.log_dir or trainer.default_root_dir)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Collect the test metrics and write the file."""
        metrics = {k: _plain(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("test/")}
        datamodule = getattr(trainer, "datamodule", None)
        seed = self.seed if self.seed is not None else os.environ.get("PL_GLOBAL_SEED")
        results = {
            "schema_version": RESULTS_SCHEMA_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "metrics": metrics,
            "checkpoint": str(Path(trainer.ckpt_path).resolve()) if trainer.ckpt_path else None,
            "seed": int(seed) if seed is not None else None,
            "cache_fingerprint": getattr(datamodule, "cache_fingerprint", None),
            "modalities": list(getattr(pl_module, "modalities", []) or []),
            "label_space": pl_module.label_space.to_dict() if hasattr(pl_module, "label_space") else None,
            "num_parameters": sum(p.numel() for p in pl_module.parameters()),
            "package_version": multimodal_fer.__version__,
            "git": git_revision(),
            "environment": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "lightning": pl.__version__,
                "devices": trainer.num_devices,
                "world_size": trainer.world_size,
                "accelerator": type(trainer.accelerator).__name__,
                "precision": str(trainer.precision),
            },
            "config": self.config,
        }
        if not trainer.is_global_zero:
            return
        folder = self._target_folder(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.filename
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(results, indent=2, sort_keys=False, default=str))
        os.replace(tmp, path)
        self.last_path = path
