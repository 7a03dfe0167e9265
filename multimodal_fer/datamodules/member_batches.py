"""Batches drawn from several data sets, each batch from one of them, in an order fixed by the seed and the epoch.

A combined data module (:class:`~multimodal_fer.datamodules.CombinedDataModule`) never mixes data sets inside a
batch: each member's cache has its own fields, clip lengths and device transform. A batch is described by
``(member, positions)``; :class:`MemberBatchSampler` draws an epoch's descriptors (every member's training split
shuffled and cut into batches, the batches of all members shuffled together) from ``(seed, epoch)`` alone, as
:class:`~multimodal_fer.datamodules.epoch_sampler.EpochShuffleSampler` does for one data set, so a resumed fit
sees the batches it would have seen. :class:`MemberBatches` reads a descriptor's batch from its member's dataset
and marks the modalities that member lacks as absent.

Sampling: ``proportional`` takes every member's training samples once per epoch (a member weighs as much as it
has samples); ``equal`` gives every member as many batches as the largest has, drawing the smaller members'
samples again (each pass a fresh permutation), so each data set contributes the same number of batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from multimodal_fer.datamodules.epoch_sampler import EpochSeededSampler
from multimodal_fer.errors import DataError
from multimodal_fer.types import PRESENT_KEY

#: Batch key holding each sample's member index, int64 (B,); the combined data module removes it on the device.
MEMBER_KEY = "member"
#: How members share an epoch's training batches.
Sampling = Literal["proportional", "equal"]
SAMPLINGS: tuple[str, ...] = ("proportional", "equal")
#: A batch: (member index, positions in that member's split).
BatchDescriptor = tuple[int, tuple[int, ...]]


def training_batch_counts(sizes: Sequence[int], batch_size: int, sampling: Sampling) -> list[int]:
    """Full batches each member gives per training epoch (an incomplete last batch is dropped).

    Raises:
        DataError: a member's training split is smaller than one batch, or an unknown sampling.
    """
    if sampling not in SAMPLINGS:
        raise DataError(f"sampling={sampling!r}: choose one of {list(SAMPLINGS)}.")
    counts = [int(size) // batch_size for size in sizes]
    if min(counts, default=0) == 0:
        small = [int(size) for size in sizes if int(size) < batch_size]
        raise DataError(
            f"A member's training split ({small} samples) is smaller than one batch of {batch_size}; lower "
            "--data.init_args.batch_size or leave that data set out."
        )
    return [max(counts)] * len(counts) if sampling == "equal" else counts


class MemberBatchSampler(EpochSeededSampler):
    """An epoch's training batches of every member, shuffled together, drawn from ``(seed, epoch)`` alone.

    Args:
        sizes: training samples of each member.
        batch_size: samples per batch.
        seed: the run's seed.
        sampling: ``proportional`` or ``equal`` (module docstring).
        epoch_source: returns the epoch of the next draw (None: the last ``set_epoch``, initially 0).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        seed: int,
        sampling: Sampling = "proportional",
        epoch_source: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(seed, epoch_source)
        self.sizes = [int(size) for size in sizes]
        self.batch_size = int(batch_size)
        self.counts = training_batch_counts(self.sizes, self.batch_size, sampling)
        self.sampling = sampling

    def __len__(self) -> int:
        return sum(self.counts)

    def __iter__(self) -> Iterator[BatchDescriptor]:
        generator = self.epoch_generator()
        batches: list[BatchDescriptor] = []
        for member, (size, count) in enumerate(zip(self.sizes, self.counts, strict=True)):
            needed = count * self.batch_size
            passes = -(-needed // size)  # the smaller members' samples drawn again, a fresh permutation each pass
            order = torch.cat([torch.randperm(size, generator=generator) for _ in range(passes)])[:needed]
            for start in range(0, needed, self.batch_size):
                batches.append((member, tuple(order[start : start + self.batch_size].tolist())))
        for position in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[position]


def evaluation_plan(sizes: Sequence[int], batch_size: int) -> list[BatchDescriptor]:
    """Every sample of every member once, member after member, in split order (the last batch may be smaller)."""
    return [
        (member, tuple(range(start, min(start + batch_size, int(size)))))
        for member, size in enumerate(sizes)
        for start in range(0, int(size), batch_size)
    ]


class PlanSampler(DistributedSampler):
    """A fixed list of batch descriptors; under DDP process ``rank`` takes descriptors ``rank, rank + n, ...``.

    Being a ``DistributedSampler``, Lightning leaves it in place (no padding: every sample is scored once).

    Args:
        plan: the descriptors.
        num_replicas: number of processes (1: all of them, in order).
        rank: this process's rank.

    Raises:
        DataError: fewer batches than processes (a process without one would stall the others).
    """

    def __init__(self, plan: Sequence[BatchDescriptor], num_replicas: int = 1, rank: int = 0) -> None:
        if len(plan) < num_replicas:
            raise DataError(
                f"The combined evaluation split has {len(plan)} batches, fewer than the {num_replicas} processes; "
                "evaluate on fewer devices (--trainer.devices=1) or with a smaller batch_size."
            )
        super().__init__(list(plan), num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)  # type: ignore[arg-type]
        self.plan = list(plan)

    def __iter__(self) -> Iterator[BatchDescriptor]:  # type: ignore[override]
        return iter(self.plan[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return len(range(self.rank, len(self.plan), self.num_replicas))


class MemberBatches(Dataset):
    """Reads a batch descriptor's batch from its member's dataset.

    Args:
        datasets: each member's dataset of the split (batch-reading, ``__getitems__``).
        modalities: the combined module's modalities; those a member lacks are marked absent in its batches.
    """

    def __init__(self, datasets: Sequence[Dataset], modalities: Sequence[str]) -> None:
        self.datasets = list(datasets)
        self.modalities = tuple(modalities)

    def __len__(self) -> int:
        return sum(len(dataset) for dataset in self.datasets)  # type: ignore[arg-type]

    def __getitem__(self, descriptor: BatchDescriptor) -> dict[str, Any]:
        """The batch: the member's fields, ``present`` for every combined modality, ``member`` int64 (B,)."""
        member, positions = descriptor
        batch = self.datasets[member].__getitems__(list(positions))  # type: ignore[attr-defined]
        size = int(batch["index"].shape[0])
        for modality in self.modalities:
            batch[PRESENT_KEY].setdefault(modality, torch.zeros(size, dtype=torch.bool))
        batch[MEMBER_KEY] = torch.from_numpy(np.full(size, member, dtype=np.int64))
        return batch
