"""Subject-independent splits: no subject appears in two of train, validation and test."""

from __future__ import annotations

import numpy as np

from multimodal_fer.datasets.protocols import SubjectHoldout


def subject_split(subjects: np.ndarray, val_subjects: int, test_subjects: int, seed: int) -> dict[str, np.ndarray]:
    """Split sample indices so that every subject lies in exactly one split (:class:`SubjectHoldout`).

    Args:
        subjects: int (N,) subject id of each sample.
        val_subjects: number of subjects held out for validation.
        test_subjects: number of subjects held out for testing.
        seed: seed of the subject permutation (fixed per data set, independent of the training seed).

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``, each a sorted int64 index array.

    Raises:
        ValueError: fewer subjects than the held-out counts plus one for training.
    """
    subjects = np.asarray(subjects)
    return SubjectHoldout(val_subjects, test_subjects, seed).split(subjects, np.full(subjects.shape, ""))
