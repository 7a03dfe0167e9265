"""Per-sample outputs kept over a test epoch, gathered from every DDP process: one row per cache index."""

from __future__ import annotations

from typing import Any, TypeVar

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist

Item = TypeVar("Item")


def as_numpy(value: Any) -> np.ndarray:
    """A batch field or head output as a CPU array (floating tensors as float32, so bf16 outputs can be saved)."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        return (value.float() if value.is_floating_point() else value).cpu().numpy()
    return np.asarray(value)


def from_every_process(items: list[Item], trainer: pl.Trainer) -> list[Item]:
    """``items`` of every process, rank by rank (this process's own outside DDP)."""
    if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
        everyone: list[list[Item] | None] = [None] * trainer.world_size
        dist.all_gather_object(everyone, items)
        return [item for rank in everyone for item in (rank or [])]
    return list(items)


def gathered_by_index(parts: list[dict[str, np.ndarray]], trainer: pl.Trainer) -> dict[str, np.ndarray]:
    """Kept batches (``{field: (B, ...)}`` with an ``index`` field) of every process, concatenated.

    Returns:
        ``{field: (N, ...)}`` sorted by cache index, each index once (a distributed sampler's padding repeats
        dropped); empty when nothing was kept.
    """
    parts = from_every_process(parts, trainer)
    if not parts:
        return {}
    arrays = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    _, first = np.unique(arrays["index"], return_index=True)
    return {key: value[first] for key, value in arrays.items()}
