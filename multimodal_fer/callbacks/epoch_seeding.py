"""Reseed every random generator at the start of each training epoch from the run's seed and the epoch number."""

from __future__ import annotations

import os
import random

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from multimodal_fer.datamodules.epoch_sampler import (
    GLOBAL_SEED_ENVIRONMENT,
    EpochSeededSampler,
    epoch_seed,
    run_seed,
)


class EpochSeeding(Callback):
    """Make each epoch's random draws (dropout, modality dropout, augmentation on the device) depend on the epoch.

    Without it the random state at epoch ``k`` is whatever the earlier epochs left, which a fit resumed from a
    checkpoint cannot restore, so a resumed run would end with other weights than an uninterrupted one. With it,
    epoch ``k`` starts from ``epoch_seed(seed, k)`` on every rank (plus the rank, so ranks draw differently),
    whether the fit ran through or was resumed. Training batches come from
    :class:`~multimodal_fer.datamodules.epoch_sampler.EpochShuffleSampler` and online occlusion from the batch's
    own samples, so neither depends on this state.

    Args:
        enabled: reseed at each epoch start (off: the random state runs on from epoch to epoch, as in plain
            Lightning).
        seed: the run's seed (None: ``seed_everything``'s, from the ``PL_GLOBAL_SEED`` environment variable; no
            reseeding when neither is set).
    """

    def __init__(self, enabled: bool = True, seed: int | None = None) -> None:
        self.enabled = enabled
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Seed torch (CPU and every CUDA device), NumPy and ``random`` for this epoch."""
        if not self.enabled:
            return
        if self.seed is None and GLOBAL_SEED_ENVIRONMENT not in os.environ:
            return
        seed = self.seed if self.seed is not None else run_seed()
        value = epoch_seed(seed, trainer.current_epoch) + trainer.global_rank
        torch.manual_seed(value)  # also seeds every CUDA device
        np.random.seed(value % 2**32)
        random.seed(value)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object, batch_idx: int
    ) -> None:
        """At an epoch's first batch, warn if the batch order was drawn for another epoch."""
        if batch_idx == 0:
            self._check_training_order(trainer)

    @staticmethod
    def _check_training_order(trainer: pl.Trainer) -> None:
        """Warn when this epoch's batches were drawn for another epoch (a fit resumed from mid-epoch)."""
        loader = getattr(trainer, "train_dataloader", None)
        sampler = getattr(loader, "sampler", None)
        drawn = getattr(sampler, "drawn_epoch", None)
        if isinstance(sampler, EpochSeededSampler) and drawn is not None and drawn != trainer.current_epoch:
            rank_zero_warn(
                f"Epoch {trainer.current_epoch} trains on the batch order drawn for epoch {drawn}: the fit was resumed "
                "from a checkpoint saved in the middle of an epoch, so it will not repeat an uninterrupted run "
                "exactly. Checkpoints saved at the end of each training epoch (ModelCheckpoint's default with "
                "validation every epoch) resume exactly."
            )
