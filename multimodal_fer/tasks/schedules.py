"""Learning-rate schedules whose length follows the fit: ``trainer.max_epochs`` unless the config sets it.

With PyTorch's own :class:`torch.optim.lr_scheduler.CosineAnnealingLR` the length ``T_max`` is required, so a config
states it next to ``trainer.max_epochs`` and ``--trainer.max_epochs 40`` silently keeps a 20-epoch cosine (the
learning rate climbs back up after epoch 20). :class:`CosineAnnealingLR` here leaves ``T_max`` unset by default; the
task builds it inside :func:`fit_length` with the trainer's ``max_epochs``, so the cosine always ends with the fit::

    lr_scheduler:
      class_path: multimodal_fer.tasks.schedules.CosineAnnealingLR   # T_max: trainer.max_epochs
      init_args: {eta_min: 0.0}

An explicit ``T_max`` still wins. Why a context and not an argument: jsonargparse refuses a schedule config that
leaves a required argument unset, and a scheduler built from a config is a callable of the optimiser alone
(:data:`lightning.pytorch.cli.LRSchedulerCallable`), so the fit length cannot be passed in the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

_FIT_EPOCHS: ContextVar[int | None] = ContextVar("multimodal_fer_fit_epochs", default=None)


@contextmanager
def fit_length(epochs: int | None) -> Iterator[None]:
    """Within this context, schedules built without a length span ``epochs`` epochs.

    Args:
        epochs: the fit's number of epochs (``trainer.max_epochs``); None or a negative number (no epoch limit)
            leaves the length unknown, and a schedule that needs it refuses to be built.
    """
    token = _FIT_EPOCHS.set(epochs if epochs is not None and epochs > 0 else None)
    try:
        yield
    finally:
        _FIT_EPOCHS.reset(token)


def current_fit_length() -> int | None:
    """The number of epochs set by the enclosing :func:`fit_length`, or None outside one."""
    return _FIT_EPOCHS.get()


class CosineAnnealingLR(torch.optim.lr_scheduler.CosineAnnealingLR):
    """Cosine annealing (Loshchilov & Hutter, ICLR 2017) from each group's learning rate to ``eta_min``.

    Stepped once per epoch by the task; after ``T_max`` steps the learning rate is ``eta_min``.

    Args:
        optimizer: the optimiser whose groups it anneals.
        T_max: length of the schedule in epochs; None (the default): the fit's ``trainer.max_epochs``, read
            from the enclosing :func:`fit_length` (the task's ``configure_optimizers`` provides it).
        eta_min: the final learning rate.
        last_epoch: index of the last epoch when resuming (-1: start).

    Raises:
        ValueError: ``T_max`` is None outside a :func:`fit_length` context (or the fit has no epoch limit), or it
            is not positive.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        T_max: int | None = None,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        #: Whether the length came from the fit rather than from the config.
        self.follows_fit = T_max is None
        length = current_fit_length() if T_max is None else int(T_max)
        if length is None:
            raise ValueError(
                "CosineAnnealingLR has no T_max and the fit's length is unknown (no trainer.max_epochs: the trainer "
                "has no epoch limit, or the scheduler is built outside a task's configure_optimizers). Set "
                "lr_scheduler.init_args.T_max, or trainer.max_epochs."
            )
        if length < 1:
            raise ValueError(f"CosineAnnealingLR T_max must be a positive number of epochs, got {length}.")
        super().__init__(optimizer, T_max=length, eta_min=eta_min, last_epoch=last_epoch)
