"""A map-style dataset over a memory-mapped cache that reads whole batches at once.

The DataLoader calls ``__getitems__`` with the batch's indices; reading them as one sorted fancy index of
each memory map is far faster than collating sample by sample. Values stay in their storage dtypes
(uint8 faces, int16 audio, float16 signals) until the device transform converts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from multimodal_fer.preprocessing.cache import CacheReader
from multimodal_fer.types import PRESENT_KEY


class CachedMultimodalDataset(Dataset):
    """Samples of a cache restricted to a split, with presence masks for the chosen modalities.

    A modality is present in a sample when the cache recorded it (real data sets' ``present`` field: a video
    without an audio track, a window whose face was not found) and it is not withheld.

    Args:
        reader: an open cache.
        indices: int (M,) cache indices of this split.
        modality_fields: modality name → cache field holding its input (e.g. ``{"face": "face"}``).
        extra_fields: other cache fields to load (labels, masks, ...).
        withheld_modalities: modalities the model knows but this dataset withholds: not read, and marked
            absent (``present[m]`` all False) in every batch, e.g. to test a model with one modality removed.
    """

    def __init__(
        self,
        reader: CacheReader,
        indices: np.ndarray,
        modality_fields: dict[str, str],
        extra_fields: Sequence[str],
        withheld_modalities: Sequence[str] = (),
    ) -> None:
        self.reader = reader
        self.indices = np.asarray(indices, dtype=np.int64)
        self.modality_fields = dict(modality_fields)
        self.extra_fields = tuple(extra_fields)
        overlap = sorted(set(withheld_modalities) & set(self.modality_fields))
        if overlap:
            raise ValueError(f"Modalities {overlap} are both read and withheld; withhold a modality or read it.")
        self.withheld_modalities = tuple(withheld_modalities)
        # Caches of real data sets record which modalities each sample has (``present``, one column per modality of
        # the manifest); a sample without one is fed as absent, never as a zero-filled input marked present.
        recorded = list(reader.manifest.get("modalities", [])) if "present" in reader.specs else []
        self.present_columns = {m: recorded.index(m) for m in self.modality_fields if m in recorded}

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, position: int) -> dict[str, Any]:
        return self.__getitems__([position])

    def __getitems__(self, positions: Sequence[int]) -> dict[str, Any]:
        """Read a batch.

        Args:
            positions: positions in this split (not cache indices).

        Returns:
            ``{field: Tensor (B, ...)}`` for every modality and extra field, ``"index"`` long (B,) cache
            indices, and ``"present": {modality: bool (B,)}`` (all False for withheld modalities). Samples come
            sorted by cache index.
        """
        cache_indices = np.sort(self.indices[np.asarray(positions, dtype=np.int64)])
        batch: dict[str, Any] = {}
        for modality, name in self.modality_fields.items():
            batch[modality] = torch.from_numpy(np.ascontiguousarray(self.reader.array(name)[cache_indices]))
        for name in self.extra_fields:
            batch[name] = torch.from_numpy(np.ascontiguousarray(self.reader.array(name)[cache_indices]))
        batch["index"] = torch.from_numpy(cache_indices)
        size = cache_indices.size
        batch[PRESENT_KEY] = {modality: torch.ones(size, dtype=torch.bool) for modality in self.modality_fields}
        if self.present_columns:
            recorded = np.asarray(self.reader.array("present")[cache_indices], dtype=bool)
            for modality, column in self.present_columns.items():
                batch[PRESENT_KEY][modality] = torch.from_numpy(np.ascontiguousarray(recorded[:, column]))
        batch[PRESENT_KEY].update({m: torch.zeros(size, dtype=torch.bool) for m in self.withheld_modalities})
        return batch


def passthrough_collate(batch: dict[str, Any]) -> dict[str, Any]:
    """Collate function for :class:`CachedMultimodalDataset`, whose batches come already collated."""
    return batch
