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


def check_epoch_count(epochs: int, setting: str) -> int:
    """``epochs`` as an int, refused unless it is a whole number of epochs, 0 or more.

    Args:
        epochs: the value given.
        setting: its name in the config, for the message (``lr_warmup_epochs``, ``lr_decay_epochs``).

    Raises:
        ValueError: negative or not a whole number.
    """
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 0:
        raise ValueError(f"{setting}={epochs!r} must be a whole number of epochs, 0 (off) or more.")
    return int(epochs)


def check_warmup_epochs(warmup_epochs: int) -> int:
    """``lr_warmup_epochs`` checked by :func:`check_epoch_count`."""
    return check_epoch_count(warmup_epochs, "lr_warmup_epochs")


def with_linear_warmup(
    optimizer: torch.optim.Optimizer,
    warmup_epochs: int,
    then: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A linear learning-rate warm-up of ``warmup_epochs`` epochs, followed by ``then`` (or the full rate).

    Stepped once per epoch: epoch ``e < N`` (0-based, N = ``warmup_epochs``) trains at ``(e + 1) / (N + 1)`` of each
    group's learning rate (N = 2: 1/3, 2/3), and epoch N at the full rate, where ``then`` starts as it would have at
    epoch 0 of a fit of its own (a cosine built for the remaining epochs then ends with the fit). PyTorch's
    :class:`~torch.optim.lr_scheduler.LinearLR` and :class:`~torch.optim.lr_scheduler.SequentialLR`, so the state
    dict holds both schedules' positions and a resumed fit continues exactly where it stopped.

    Args:
        optimizer: the optimiser ``then`` was built on (its groups' ``initial_lr`` are the full rates).
        warmup_epochs: N ≥ 1.
        then: the schedule after the warm-up, built on ``optimizer`` already; None keeps the full rate after it.

    Returns:
        The combined schedule.

    Raises:
        ValueError: ``warmup_epochs`` below 1, or ``then`` is a ReduceLROnPlateau (stepped with a metric, it cannot
            follow another schedule).
    """
    if check_warmup_epochs(warmup_epochs) < 1:
        raise ValueError(f"with_linear_warmup needs at least one warm-up epoch, got {warmup_epochs}.")
    if isinstance(then, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise ValueError(
            "lr_warmup_epochs cannot precede ReduceLROnPlateau (it steps on a metric, not once per epoch); use a "
            "per-epoch schedule such as multimodal_fer.tasks.schedules.CosineAnnealingLR, or set lr_warmup_epochs=0."
        )
    warmup = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0 / (warmup_epochs + 1), end_factor=1.0, total_iters=warmup_epochs
    )
    if then is None:
        return warmup
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, then], milestones=[warmup_epochs])


def linear_decay_factor(epoch: int, max_epochs: int, decay_epochs: int) -> float:
    """Share of the full learning rate at ``epoch`` when the fit's last ``decay_epochs`` epochs decay linearly.

    The schedule of pix2pix and CycleGAN (Isola et al., CVPR 2017): constant rates, then a straight line towards
    zero. With E = ``max_epochs`` and K = ``decay_epochs``, epochs ``e < E - K`` (0-based) train at the full rate and
    epoch ``E - K + i`` at ``(K - i) / (K + 1)`` of it (K = 2: 2/3, then 1/3). A function of the epoch alone, so a fit
    resumed from any checkpoint, or a finished fit of ``E - K`` or fewer constant-rate epochs continued up to E,
    follows exactly the schedule of one fit of E epochs.

    Args:
        epoch: the 0-based epoch about to train.
        max_epochs: E, the fit's length (``trainer.max_epochs``).
        decay_epochs: K, 0 (constant rates) to E.

    Returns:
        The factor in (0, 1] that multiplies each optimiser's configured learning rate.

    Raises:
        ValueError: K exceeds E, or E is not a positive number of epochs while K > 0.
    """
    decay_epochs = check_epoch_count(decay_epochs, "lr_decay_epochs")
    if not decay_epochs:
        return 1.0
    if max_epochs is None or max_epochs < 1 or decay_epochs > max_epochs:
        raise ValueError(
            f"lr_decay_epochs={decay_epochs} decays the last epochs of the fit, which needs trainer.max_epochs of at "
            f"least {decay_epochs}; got max_epochs={max_epochs}. Set trainer.max_epochs, or lower lr_decay_epochs."
        )
    decaying = epoch - (max_epochs - decay_epochs)
    if decaying < 0:
        return 1.0
    return max(decay_epochs - decaying, 1) / (decay_epochs + 1)
