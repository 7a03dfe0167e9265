"""Callbacks that fault a fit from the inside, for the resume tests (loaded by ``class_path`` in a subprocess)."""

from __future__ import annotations

import os
import signal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback


class SigkillAtEpochEnd(Callback):
    """Kill the process with SIGKILL (no clean-up, as ``kill -9`` would) when a training epoch ends.

    Non-monitoring callbacks run before ``ModelCheckpoint`` at a training epoch's end, so the checkpoint of the
    epoch named here is never written: the resumed fit has to redo that epoch.

    Args:
        epoch: the epoch (0-based) at whose end the process dies.
    """

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Die at the end of :attr:`epoch`."""
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
