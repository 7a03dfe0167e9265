"""Precomputed physiological features in batches: read from the side cache, standardised on the device.

Batches gain ``physio_features`` float32 (B, F) and ``physio_features_valid`` bool (B, F) (F =
:data:`~multimodal_fer.preprocessing.physio_feature_extraction.NUM_PHYSIO_FEATURES`), read by cache index from the side
cache that ``mfer physio-features`` writes (see :mod:`multimodal_fer.preprocessing.physio_feature_cache`).

**Standardisation** is the data module's: :class:`PhysioFeatureStandardizer` takes each feature's mean and
standard deviation over the *valid* values of the *training split* only (invalid entries never enter them;
log-scaled features — powers, ratios, SDs, amplitudes — are first mapped with ``log1p``). On the device it
maps valid values to ``clip((x - mean) / std, ±10)`` and sets invalid ones to 0. A feature with no valid
training value is marked invalid in every split, since the model never learned it. The statistics are
recomputed from the cache and the split each run, so they are not stored in checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from multimodal_fer.preprocessing.cache import CacheReader
from multimodal_fer.preprocessing.physio_feature_cache import FEATURES_FIELD, VALID_FIELD
from multimodal_fer.preprocessing.physio_feature_extraction import PHYSIO_FEATURES

#: Batch keys added by :class:`PhysioFeatureDataset`.
FEATURES_KEY, VALID_KEY = "physio_features", "physio_features_valid"
#: Standardised values are clipped to ±this many standard deviations.
STANDARDIZED_CLIP = 10.0


class PhysioFeatureDataset(Dataset):
    """Wraps a cached dataset and adds each sample's precomputed features and validity flags.

    Args:
        dataset: a dataset whose batches carry ``"index"``, long (B,) data-cache indices.
        side: the side cache (fields ``features`` (N, F) and ``valid`` (N, F)) of the same data cache.
    """

    def __init__(self, dataset: Dataset, side: CacheReader) -> None:
        self.dataset = dataset
        self.side = side

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, position: int) -> dict[str, Any]:
        return self.__getitems__([position])

    def __getitems__(self, positions: Sequence[int]) -> dict[str, Any]:
        """The wrapped batch plus ``physio_features`` float32 (B, F) and ``physio_features_valid`` bool (B, F)."""
        batch = self.dataset.__getitems__(positions)  # type: ignore[attr-defined]
        index = batch["index"].numpy()
        batch[FEATURES_KEY] = torch.from_numpy(np.ascontiguousarray(self.side.array(FEATURES_FIELD)[index]))
        batch[VALID_KEY] = torch.from_numpy(np.ascontiguousarray(self.side.array(VALID_FIELD)[index]))
        return batch


class PhysioFeatureStandardizer:
    """Per-feature standardisation with statistics of valid training values (see the module docstring).

    Args:
        mean: float (F,) mean of each feature's valid training values (after ``log1p`` where log-scaled).
        std: float (F,) their standard deviation (1 where undefined or zero).
        usable: bool (F,) features with at least one valid training value.
        log_scale: bool (F,) features mapped with ``log1p`` first.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, usable: np.ndarray, log_scale: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.usable = np.asarray(usable, dtype=bool)
        self.log_scale = np.asarray(log_scale, dtype=bool)

    @classmethod
    def fit(cls, features: np.ndarray, valid: np.ndarray) -> PhysioFeatureStandardizer:
        """Statistics of the valid entries of training samples.

        Args:
            features: float (M, F) raw values of the training split.
            valid: bool (M, F).
        """
        log_scale = np.array([f.log_scale for f in PHYSIO_FEATURES], dtype=bool)
        values = _log_where(np.asarray(features, dtype=np.float64), log_scale)
        valid = np.asarray(valid, dtype=bool)
        counts = valid.sum(axis=0)
        masked = np.where(valid, values, 0.0)
        mean = masked.sum(axis=0) / np.maximum(counts, 1)
        variance = np.where(valid, (values - mean) ** 2, 0.0).sum(axis=0) / np.maximum(counts - 1, 1)
        std = np.sqrt(variance)
        std = np.where((counts > 1) & (std > 1e-8), std, 1.0)
        return cls(mean, std, counts > 0, log_scale)

    def __call__(self, features: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """Standardise a batch on its device.

        Args:
            features: float (B, F) raw values.
            valid: bool (B, F).

        Returns:
            ``(standardised float32 (B, F) with 0 where invalid, validity bool (B, F))``.
        """
        device = features.device
        valid = valid.to(torch.bool) & torch.as_tensor(self.usable, device=device)
        x = features.float()
        log_scale = torch.as_tensor(self.log_scale, device=device)
        x = torch.where(log_scale, torch.log1p(x.clamp_min(0.0)), x)
        x = (x - torch.as_tensor(self.mean, device=device)) / torch.as_tensor(self.std, device=device)
        x = x.clamp(-STANDARDIZED_CLIP, STANDARDIZED_CLIP)
        return torch.where(valid, x, torch.zeros_like(x)), valid

    def to_dict(self) -> dict[str, Any]:
        """The statistics by feature name (for logs and reports)."""
        return {
            f.name: {"mean": float(m), "std": float(s), "usable": bool(u), "log1p": bool(g)}
            for f, m, s, u, g in zip(PHYSIO_FEATURES, self.mean, self.std, self.usable, self.log_scale, strict=True)
        }


def _log_where(values: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(log_scale, np.log1p(np.clip(values, 0.0, None)), values)
