"""Training order that depends only on the seed and the epoch, so a resumed fit sees the batches it would have seen."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler

#: Where :func:`lightning.pytorch.seed_everything` leaves the run's seed (inherited by worker processes).
GLOBAL_SEED_ENVIRONMENT = "PL_GLOBAL_SEED"


def run_seed(default: int = 0) -> int:
    """The run's seed as ``seed_everything`` set it, else ``default``."""
    value = os.environ.get(GLOBAL_SEED_ENVIRONMENT)
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def epoch_seed(seed: int, epoch: int) -> int:
    """One 63-bit seed per (run seed, epoch) pair, far apart for neighbouring epochs."""
    mixed = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919) % (2**63))
    return int(torch.randint(0, 2**62, (), generator=mixed).item())


def next_training_epoch(trainer: object | None) -> int:
    """The epoch the next training batches belong to, also while Lightning restores a fit from a checkpoint.

    Lightning creates the training iterator of a resumed fit before it counts the checkpoint's epoch as completed,
    so ``current_epoch`` still names the epoch that ended; the count of processed epochs names the one about to
    start in both cases. 0 without a trainer.
    """
    if trainer is None:
        return 0
    return int(trainer.fit_loop.epoch_progress.current.processed)  # type: ignore[attr-defined]


class EpochSeededSampler(Sampler):
    """What every training order of the package shares: each epoch's draw comes from ``(seed, epoch)`` alone.

    Lightning creates the training iterator of a resumed fit before ``set_epoch`` and the epoch-start hooks run,
    so the epoch is read from ``epoch_source`` (the trainer's count of processed epochs) when a draw starts;
    ``set_epoch`` sets it where there is no trainer. :attr:`drawn_epoch` is the epoch of the last draw, which
    :class:`~multimodal_fer.callbacks.EpochSeeding` compares with the trainer's epoch.

    Args:
        seed: the run's seed.
        epoch_source: returns the epoch of the next draw (None: the value of the last ``set_epoch``, initially 0).
    """

    def __init__(self, seed: int, epoch_source: Callable[[], int] | None = None) -> None:
        self.seed = int(seed)
        self.epoch_source = epoch_source
        self.epoch = 0
        self.drawn_epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch used where there is no ``epoch_source``."""
        self.epoch = int(epoch)

    def current_epoch(self) -> int:
        """The epoch the next draw belongs to."""
        return int(self.epoch_source()) if self.epoch_source is not None else self.epoch

    def epoch_generator(self) -> torch.Generator:
        """A generator seeded for the epoch about to be drawn (recorded in :attr:`drawn_epoch`)."""
        self.drawn_epoch = self.current_epoch()
        return torch.Generator().manual_seed(epoch_seed(self.seed, self.drawn_epoch))


class EpochShuffleSampler(EpochSeededSampler):
    """A random permutation per epoch drawn from ``(seed, epoch)`` alone, not from the global random state.

    Args:
        num_samples: length of the dataset.
        seed: the run's seed.
        epoch_source: returns the epoch of the next permutation (None: the value of the last ``set_epoch``,
            initially 0).
    """

    def __init__(self, num_samples: int, seed: int, epoch_source: Callable[[], int] | None = None) -> None:
        super().__init__(seed, epoch_source)
        self.num_samples = int(num_samples)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        yield from torch.randperm(self.num_samples, generator=self.epoch_generator()).tolist()
