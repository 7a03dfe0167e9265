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

**Per subject** (the data module's ``physio_normalisation: subject``,
:meth:`PhysioFeatureStandardizer.fit_per_subject`): each subject's features are standardised with the mean and
standard deviation of that subject's own valid values (all of its usable samples, every split, labels never used).
Where a subject has fewer than two valid values of a feature, or they do not vary, that feature falls back to the
training split's statistics; the fallbacks are kept (``fallbacks``, as ``(subject code, feature name)``) and logged.
Which features are usable is still decided by the training split alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from multimodal_fer.preprocessing.cache import CacheReader
from multimodal_fer.preprocessing.physio_feature_cache import FEATURES_FIELD, VALID_FIELD
from multimodal_fer.preprocessing.physio_feature_extraction import PHYSIO_FEATURES

log = logging.getLogger(__name__)

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
        mean: float (F,) mean of each feature's valid training values (after ``log1p`` where log-scaled); per
            subject: (S, F), row = the cache's subject code.
        std: float (F,) or (S, F) their standard deviation (1 where undefined or zero).
        usable: bool (F,) features with at least one valid training value.
        log_scale: bool (F,) features mapped with ``log1p`` first.
        fallbacks: per subject, the ``(subject code, feature name)`` pairs standardised with the training split's
            statistics instead of the subject's.
    """

    def __init__(
        self,
        mean: np.ndarray,
        std: np.ndarray,
        usable: np.ndarray,
        log_scale: np.ndarray,
        fallbacks: Sequence[tuple[int, str]] = (),
    ) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.usable = np.asarray(usable, dtype=bool)
        self.log_scale = np.asarray(log_scale, dtype=bool)
        self.fallbacks = list(fallbacks)

    @property
    def per_subject(self) -> bool:
        """Whether the statistics are per subject (then :meth:`__call__` needs the samples' subject codes)."""
        return self.mean.ndim == 2

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

    @classmethod
    def fit_per_subject(
        cls, features: np.ndarray, valid: np.ndarray, subjects: np.ndarray, train: np.ndarray, num_subjects: int
    ) -> PhysioFeatureStandardizer:
        """Each subject's statistics of its own valid values, the training split's where a subject's are undefined.

        Args:
            features: float (M, F) raw values of every usable sample (all splits).
            valid: bool (M, F).
            subjects: int (M,) the samples' subject codes (0 ≤ code < ``num_subjects``).
            train: bool (M,) samples of the training split (they decide ``usable`` and the fallback statistics).
            num_subjects: S, rows of the statistics.
        """
        train = np.asarray(train, dtype=bool)
        pooled = cls.fit(np.asarray(features)[train], np.asarray(valid)[train])
        values = _log_where(np.asarray(features, dtype=np.float64), pooled.log_scale)
        valid = np.asarray(valid, dtype=bool)
        subjects = np.asarray(subjects, dtype=np.int64)
        counts = np.zeros((num_subjects, values.shape[1]))
        np.add.at(counts, subjects, valid.astype(np.float64))
        sums = np.zeros_like(counts)
        np.add.at(sums, subjects, np.where(valid, values, 0.0))
        mean = sums / np.maximum(counts, 1)
        squares = np.zeros_like(counts)
        np.add.at(squares, subjects, np.where(valid, (values - mean[subjects]) ** 2, 0.0))
        std = np.sqrt(squares / np.maximum(counts - 1, 1))
        own = (counts > 1) & (std > 1e-8)
        mean = np.where(own, mean, pooled.mean[None, :])
        std = np.where(own, std, pooled.std[None, :])
        seen = np.bincount(subjects, minlength=num_subjects) > 0
        fallbacks = [(int(s), PHYSIO_FEATURES[f].name) for s, f in zip(*np.nonzero(~own & seen[:, None]), strict=True)]
        if fallbacks:
            log.warning(
                "Per-subject feature standardisation: %d (subject, feature) pairs have fewer than two valid values or "
                "none that vary and use the training split's statistics.",
                len(fallbacks),
            )
        return cls(mean, std, pooled.usable, pooled.log_scale, fallbacks)

    def __call__(self, features: Tensor, valid: Tensor, subjects: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Standardise a batch on its device.

        Args:
            features: float (B, F) raw values.
            valid: bool (B, F).
            subjects: long (B,) the samples' subject codes (needed, and only used, per subject).

        Returns:
            ``(standardised float32 (B, F) with 0 where invalid, validity bool (B, F))``.
        """
        device = features.device
        valid = valid.to(torch.bool) & torch.as_tensor(self.usable, device=device)
        x = features.float()
        log_scale = torch.as_tensor(self.log_scale, device=device)
        x = torch.where(log_scale, torch.log1p(x.clamp_min(0.0)), x)
        mean = torch.as_tensor(self.mean, device=device)
        std = torch.as_tensor(self.std, device=device)
        if self.per_subject:
            if subjects is None:
                raise ValueError("Per-subject feature statistics need the samples' subject codes ('subject').")
            codes = subjects.to(device=device, dtype=torch.long)
            mean, std = mean[codes], std[codes]
        x = (x - mean) / std
        x = x.clamp(-STANDARDIZED_CLIP, STANDARDIZED_CLIP)
        return torch.where(valid, x, torch.zeros_like(x)), valid

    def to_dict(self) -> dict[str, Any]:
        """The statistics by feature name (for logs and reports; per subject: lists indexed by subject code)."""
        if self.per_subject:
            return {
                f.name: {"mean": self.mean[:, i].tolist(), "std": self.std[:, i].tolist(), "usable": bool(u)}
                for i, (f, u) in enumerate(zip(PHYSIO_FEATURES, self.usable, strict=True))
            }
        return {
            f.name: {"mean": float(m), "std": float(s), "usable": bool(u), "log1p": bool(g)}
            for f, m, s, u, g in zip(PHYSIO_FEATURES, self.mean, self.std, self.usable, self.log_scale, strict=True)
        }


def _log_where(values: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(log_scale, np.log1p(np.clip(values, 0.0, None)), values)
