"""Subject-independent splits: no subject appears in two of train, validation and test."""

from __future__ import annotations

import numpy as np


def subject_split(subjects: np.ndarray, val_subjects: int, test_subjects: int, seed: int) -> dict[str, np.ndarray]:
    """Split sample indices so that every subject lies in exactly one split.

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
    unique = np.unique(subjects)
    if val_subjects < 1 or test_subjects < 1:
        raise ValueError(f"val_subjects={val_subjects} and test_subjects={test_subjects} must both be at least 1.")
    if val_subjects + test_subjects >= unique.size:
        raise ValueError(
            f"{unique.size} subjects cannot give {val_subjects} validation and {test_subjects} test subjects "
            "and still leave one for training; lower the held-out counts or generate more subjects."
        )
    order = np.random.default_rng([seed, 7]).permutation(unique)
    held = {"test": order[:test_subjects], "val": order[test_subjects : test_subjects + val_subjects]}
    held["train"] = order[test_subjects + val_subjects :]
    return {name: np.flatnonzero(np.isin(subjects, ids)).astype(np.int64) for name, ids in held.items()}
