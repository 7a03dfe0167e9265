"""Evaluation under DDP with every sample scored once: uneven shards instead of a padded distributed sampler.

Lightning gives a distributed evaluation loader a :class:`~torch.utils.data.DistributedSampler`, which repeats
samples until the split divides by the number of processes; the repeats then count twice in validation and test
metrics. :class:`UnpaddedShardSampler` hands process ``r`` of ``n`` the positions ``r, r + n, r + 2n, ...`` of the
split instead, so the shards differ in length by at most one and together hold every sample exactly once. The
metrics' states are summed over processes (torchmetrics), which needs no equal counts. Being a
``DistributedSampler``, Lightning leaves it in place rather than wrapping it in its own.

Uneven shards are safe for evaluation only: DDP synchronises its buffers before the first forward pass of an
evaluation epoch and not after, so processes may run different numbers of batches as long as each runs one.
Training keeps Lightning's sampler around :class:`~multimodal_fer.datamodules.epoch_sampler.EpochShuffleSampler`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

from torch.utils.data import DistributedSampler

from multimodal_fer.errors import DataError


class UnpaddedShardSampler(DistributedSampler):
    """Process ``rank``'s share of an evaluation split, in split order, with no sample repeated or dropped.

    Args:
        dataset: the split (only its length is used).
        num_replicas: number of processes.
        rank: this process's global rank, in [0, num_replicas).
        split: the split's name, for the error message.

    Raises:
        DataError: the split has fewer samples than there are processes (a process without a batch would stall
            the others at DDP's first synchronisation).
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int, split: str = "evaluation") -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank} must lie in [0, num_replicas={num_replicas}).")
        total = len(dataset)
        if total < num_replicas:
            raise DataError(
                f"The {split} split has {total} samples, fewer than the {num_replicas} processes evaluating it; a "
                "process without a sample would stall the others. Evaluate it on fewer devices "
                "(--trainer.devices=1) or choose a protocol with a larger split."
            )
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)  # type: ignore[arg-type]
        self.total_size = total
        self.num_samples = len(range(rank, total, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def evaluation_shards(trainer: Any) -> tuple[int, int] | None:
    """``(num_replicas, rank)`` when ``trainer`` evaluates in several processes with distributed samplers, else None.

    Args:
        trainer: the data module's trainer (None outside a fit, validation, test or prediction).
    """
    if trainer is None:
        return None
    settings = getattr(trainer, "distributed_sampler_kwargs", None)
    if not settings or int(settings.get("num_replicas", 1)) <= 1:
        return None
    # Trainer(use_distributed_sampler=False) leaves the sampling to the user's loaders: every process sees all.
    connector = getattr(trainer, "_accelerator_connector", None)
    if not getattr(connector, "use_distributed_sampler", True):
        return None
    return int(settings["num_replicas"]), int(settings["rank"])


def evaluation_sampler(dataset: Sized, trainer: Any, split: str) -> UnpaddedShardSampler | None:
    """The sampler of an evaluation loader: this process's uneven shard under DDP, None (in order) otherwise.

    Args:
        dataset: the split.
        trainer: the data module's trainer, or None.
        split: the split's name, for errors.
    """
    shards = evaluation_shards(trainer)
    if shards is None:
        return None
    num_replicas, rank = shards
    return UnpaddedShardSampler(dataset, num_replicas, rank, split)
