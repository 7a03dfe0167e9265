"""Checkpoint files written whole or not at all, so a kill while saving never leaves a damaged ``last.ckpt``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but through a temporary file renamed into place.

    Lightning writes a checkpoint straight into its final path, so a process killed in the middle of saving leaves
    a truncated file, and the run could then resume only from an older checkpoint by hand. Here the bytes go to a
    hidden file beside the target first, which ``os.replace`` then renames atomically over the target: a kill at
    any moment leaves either the previous checkpoint or the new one. ``mfer`` adds this plugin to every trainer that
    has no checkpoint plug-in of its own.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` (local paths atomically; other file systems as Lightning does)."""
        target = Path(path)
        if "://" in str(path):  # remote file systems: no rename to rely on
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            super().save_checkpoint(checkpoint, temporary, storage_options)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
