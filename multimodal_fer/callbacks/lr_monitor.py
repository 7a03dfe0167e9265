"""Learning rates of every optimiser parameter group, logged with the run's loggers."""

from __future__ import annotations

from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import LearningRateMonitor as LightningLearningRateMonitor
from lightning.pytorch.utilities import rank_zero_info


class LearningRateMonitor(LightningLearningRateMonitor):
    """Lightning's learning-rate monitor, which does nothing (instead of failing) when the run has no logger.

    Every parameter group of every optimiser is logged, under ``lr-<Optimizer>`` for a single group and
    ``lr-<Optimizer>/<group name>`` for named groups: the FER task names its groups ``model``, ``pretrained_encoders``
    and ``task_balancing`` when it has more than one, the restoration task ``restorer`` and ``critic``. Lightning's own
    monitor raises when ``trainer.logger`` is false; a quick ``--trainer.logger=false`` run of a config that lists
    this monitor should still run, so this one says once that nothing is recorded and stays silent.

    Args:
        logging_interval: ``"epoch"`` (at the start of every training epoch), ``"step"`` (every logged step) or
            None (each scheduler's own interval).
        log_momentum: also log momentum (or Adam's beta1).
        log_weight_decay: also log weight decay.
    """

    def __init__(
        self,
        logging_interval: Literal["step", "epoch"] | None = "epoch",
        log_momentum: bool = False,
        log_weight_decay: bool = False,
    ) -> None:
        super().__init__(
            logging_interval=logging_interval, log_momentum=log_momentum, log_weight_decay=log_weight_decay
        )
        self.active = True

    def on_train_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        """Find the groups' names, or switch off when the run has no logger."""
        self.active = bool(trainer.loggers)
        if not self.active:
            rank_zero_info("LearningRateMonitor: this run has no logger, so learning rates are not recorded.")
            return
        super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        """Log the learning rates of this step (``logging_interval`` step or None)."""
        if self.active:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        """Log the learning rates of this epoch (``logging_interval`` epoch or None)."""
        if self.active:
            super().on_train_epoch_start(trainer, *args, **kwargs)
