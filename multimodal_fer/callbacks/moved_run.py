"""A resumed fit keeps its best checkpoint after its run folder has been moved or copied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

#: The path fields of a ``ModelCheckpoint`` state that name files in its folder.
PATH_FIELDS = ("dirpath", "best_model_path", "kth_best_model_path", "last_model_path")


class MovedRunCheckpoints(Callback):
    """Carry every ``ModelCheckpoint``'s record over when a run's own checkpoint is resumed from a new place.

    A checkpoint stores each ``ModelCheckpoint``'s folder with its best score and paths. Lightning restores those
    only when the folder is unchanged, so a run folder that was moved or copied (to another output folder, another
    machine) and then resumed forgets its best score: the next validation overwrites the best checkpoint whatever it
    scores, and ``run.json`` then names a worse one. When the resumed file lies in a checkpoint callback's folder
    and the stored folder differs, the stored paths under the old folder are rewritten to the new one before
    Lightning loads them. A checkpoint from elsewhere (fine-tuning from a loose file) is left as Lightning treats it.
    ``mfer fit`` adds this callback to every fit.
    """

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Rewrite the moved folder's paths in ``checkpoint["callbacks"]`` (in place) for the states that match."""
        resumed = trainer.ckpt_path
        states = checkpoint.get("callbacks") or {}
        if not resumed or not states:
            return
        resumed_folder = Path(resumed).resolve().parent
        for callback in trainer.checkpoint_callbacks:
            state = states.get(getattr(callback, "state_key", None))
            folder = getattr(callback, "dirpath", None)
            if not isinstance(state, dict) or folder is None or Path(folder).resolve() != resumed_folder:
                continue
            stored = state.get("dirpath")
            if stored and str(stored) != str(folder):
                states[callback.state_key] = relocated_state(state, str(stored), str(folder))


def relocated_state(state: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """A ``ModelCheckpoint`` state with its paths under the folder ``old`` moved under ``new``.

    Args:
        state: the state Lightning saved (``dirpath``, ``best_model_path``, ``best_k_models``: path → score, ...).
        old: the folder the state was saved with.
        new: the folder the checkpoints are in now.

    Returns:
        A copy with every path equal to ``old`` or under it rewritten; other paths and values unchanged.
    """

    def move(path: Any) -> Any:
        if not isinstance(path, str) or not path:
            return path
        if path == old:
            return new
        prefix = old.rstrip("/\\") + "/"
        return new.rstrip("/\\") + "/" + path[len(prefix) :] if path.startswith(prefix) else path

    moved = dict(state)
    for field in PATH_FIELDS:
        if field in moved:
            moved[field] = move(moved[field])
    if isinstance(moved.get("best_k_models"), dict):
        moved["best_k_models"] = {move(path): score for path, score in moved["best_k_models"].items()}
    return moved
