"""Split protocols: which samples train, validate and test, with no subject in two splits unless asked for.

A protocol sees, for every usable sample of a cache, its subject, its official split and its recording (the
sequence: a video, a trial), and returns index arrays. Data sets declare their usual protocol
(:meth:`DatasetAdapter.default_protocol`); a config can choose another
(``--data.init_args.split.class_path SubjectKFold --data.init_args.split.init_args.fold 3``).

Every protocol here is subject-independent except :class:`WithinSubjectKFold`, the subject-dependent protocol of
physiological benchmarks (DEAP): each subject's recordings are split, so every subject is in every split, but the
windows of one recording never straddle two splits. Its results are not comparable with subject-independent ones;
its ``describe()`` line keeps them apart in reports.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


class SplitProtocol(ABC):
    """Turns subjects and official splits into ``{"train", "val", "test"}`` index arrays."""

    @abstractmethod
    def split(self, subjects: np.ndarray, official: np.ndarray) -> dict[str, np.ndarray]:
        """Split samples.

        Args:
            subjects: (N,) subject identifiers (any comparable dtype) of the usable samples.
            official: (N,) official split name of each sample (``"train"``, ``"val"``, ``"test"`` or ``""``).

        Returns:
            ``{"train": idx, "val": idx, "test": idx}``: sorted int64 positions into the N samples, pairwise
            subject-disjoint.

        Raises:
            ValueError: the protocol cannot be met (too few subjects, no official test split, ...), saying which
                protocol would fit.
        """

    def split_recordings(
        self, subjects: np.ndarray, official: np.ndarray, recordings: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        """Split samples whose recordings are known (what the data module calls); most protocols ignore them.

        Args:
            subjects: (N,) subject identifiers.
            official: (N,) official split names.
            recordings: (N,) recording (sequence) name of each sample, "" where it has none; None when the cache
                records no recordings.

        Returns:
            As :meth:`split`.
        """
        return self.split(subjects, official)

    def describe(self) -> str:
        """One line for logs and results files."""
        return type(self).__name__


def _positions(subjects: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isin(subjects, chosen)).astype(np.int64)


def _permuted_subjects(subjects: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 7]).permutation(np.unique(subjects))


class SubjectHoldout(SplitProtocol):
    """Hold out whole subjects: ``test_subjects`` for testing, ``val_subjects`` for validation, the rest train.

    Ignores official splits. This is SynthAffect's protocol (and the same permutation as before this class
    existed, so SynthAffect's splits are unchanged).

    Args:
        val_subjects: subjects held out for validation (≥ 1).
        test_subjects: subjects held out for testing (≥ 1).
        seed: seed of the subject permutation (fixed per data set, independent of the training seed).
    """

    def __init__(self, val_subjects: int = 8, test_subjects: int = 12, seed: int = 0) -> None:
        if val_subjects < 1 or test_subjects < 1:
            raise ValueError(f"val_subjects={val_subjects} and test_subjects={test_subjects} must both be at least 1.")
        self.val_subjects = val_subjects
        self.test_subjects = test_subjects
        self.seed = seed

    def split(self, subjects: np.ndarray, official: np.ndarray) -> dict[str, np.ndarray]:
        """See :meth:`SplitProtocol.split`."""
        order = _permuted_subjects(subjects, self.seed)
        if self.val_subjects + self.test_subjects >= order.size:
            raise ValueError(
                f"{order.size} subjects cannot give {self.val_subjects} validation and {self.test_subjects} test "
                "subjects and still leave one for training; lower the held-out counts or use more subjects."
            )
        held = {
            "test": order[: self.test_subjects],
            "val": order[self.test_subjects : self.test_subjects + self.val_subjects],
            "train": order[self.test_subjects + self.val_subjects :],
        }
        return {name: _positions(subjects, ids) for name, ids in held.items()}

    def describe(self) -> str:
        """See :meth:`SplitProtocol.describe`."""
        return f"SubjectHoldout(val_subjects={self.val_subjects}, test_subjects={self.test_subjects}, seed={self.seed})"


class OfficialSplits(SplitProtocol):
    """The data set's official splits; a validation split is carved from training subjects where there is none.

    Args:
        val_fraction: share of the official training subjects held out for validation when the data set has
            no official validation split (or ``carve_val`` is set). 0 is refused in that case.
        carve_val: carve validation from training even where the data set has an official validation split
            (then the official validation samples are not used).
        seed: seed of the carved subjects' permutation.
    """

    def __init__(self, val_fraction: float = 0.1, carve_val: bool = False, seed: int = 0) -> None:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction={val_fraction} must lie in [0, 1).")
        self.val_fraction = val_fraction
        self.carve_val = carve_val
        self.seed = seed

    def split(self, subjects: np.ndarray, official: np.ndarray) -> dict[str, np.ndarray]:
        """See :meth:`SplitProtocol.split`."""
        official = np.asarray(official).astype(str)
        train = np.flatnonzero(official == "train")
        test = np.flatnonzero(official == "test")
        if train.size == 0 or test.size == 0:
            raise ValueError(
                f"OfficialSplits needs official train and test samples; this data has {int(train.size)} train and "
                f"{int(test.size)} test. Use SubjectHoldout or SubjectKFold instead (--data.init_args.split ...)."
            )
        val = np.flatnonzero(official == "val")
        if val.size == 0 or self.carve_val:
            if self.val_fraction <= 0:
                raise ValueError("There is no official validation split to use; set val_fraction > 0 to carve one.")
            order = _permuted_subjects(subjects[train], self.seed)
            count = max(1, round(self.val_fraction * order.size))
            if count >= order.size:
                raise ValueError(f"{order.size} training subjects are too few to carve {count} for validation.")
            carved = np.isin(subjects[train], order[:count])
            val, train = train[carved], train[~carved]
        result = {"train": train, "val": val, "test": test}
        _check_disjoint(subjects, result, "official splits")
        return {name: np.sort(idx).astype(np.int64) for name, idx in result.items()}

    def describe(self) -> str:
        """See :meth:`SplitProtocol.describe`."""
        return f"OfficialSplits(val_fraction={self.val_fraction}, carve_val={self.carve_val}, seed={self.seed})"


class SubjectKFold(SplitProtocol):
    """Subject-independent k-fold cross-validation: fold ``fold`` tests, the next fold validates, the rest train.

    Args:
        num_folds: number of folds (≥ 3).
        fold: the test fold, in [0, num_folds).
        seed: seed of the subjects' assignment to folds.
    """

    def __init__(self, num_folds: int = 10, fold: int = 0, seed: int = 0) -> None:
        if num_folds < 3:
            raise ValueError(f"num_folds={num_folds}: at least 3 folds are needed (test, validation, training).")
        if not 0 <= fold < num_folds:
            raise ValueError(f"fold={fold} must lie in [0, {num_folds}).")
        self.num_folds = num_folds
        self.fold = fold
        self.seed = seed

    def folds(self, subjects: np.ndarray) -> list[np.ndarray]:
        """The subjects of each fold (sizes differ by at most one)."""
        order = _permuted_subjects(subjects, self.seed)
        if order.size < self.num_folds:
            raise ValueError(f"{order.size} subjects cannot fill {self.num_folds} folds; use fewer folds.")
        return [order[k :: self.num_folds] for k in range(self.num_folds)]

    def split(self, subjects: np.ndarray, official: np.ndarray) -> dict[str, np.ndarray]:
        """See :meth:`SplitProtocol.split`."""
        folds = self.folds(subjects)
        test = folds[self.fold]
        val = folds[(self.fold + 1) % self.num_folds]
        train = np.concatenate(
            [f for k, f in enumerate(folds) if k not in (self.fold, (self.fold + 1) % self.num_folds)]
        )
        return {
            "train": _positions(subjects, train),
            "val": _positions(subjects, val),
            "test": _positions(subjects, test),
        }

    def describe(self) -> str:
        """See :meth:`SplitProtocol.describe`."""
        return f"SubjectKFold(num_folds={self.num_folds}, fold={self.fold}, seed={self.seed})"


class ExplicitSubjects(SplitProtocol):
    """Named subjects test and validate; every other subject trains (published subject lists, LOSO).

    Args:
        test_subjects: subject identifiers of the test split.
        val_subjects: subject identifiers of the validation split.
    """

    def __init__(self, test_subjects: Sequence[str], val_subjects: Sequence[str]) -> None:
        overlap = sorted(set(map(str, test_subjects)) & set(map(str, val_subjects)))
        if overlap:
            raise ValueError(f"Subjects {overlap} are in both the test and the validation list.")
        if not test_subjects or not val_subjects:
            raise ValueError("Give at least one test subject and one validation subject.")
        self.test_subjects = [str(s) for s in test_subjects]
        self.val_subjects = [str(s) for s in val_subjects]

    def split(self, subjects: np.ndarray, official: np.ndarray) -> dict[str, np.ndarray]:
        """See :meth:`SplitProtocol.split`."""
        names = np.asarray(subjects).astype(str)
        known = set(names.tolist())
        unknown = [s for s in self.test_subjects + self.val_subjects if s not in known]
        if unknown:
            raise ValueError(f"Subjects {unknown} are not in the data; it has {sorted(known)[:20]}...")
        test = _positions(names, np.asarray(self.test_subjects))
        val = _positions(names, np.asarray(self.val_subjects))
        train = np.setdiff1d(np.arange(names.size), np.concatenate([test, val])).astype(np.int64)
        return {"train": train, "val": val, "test": test}

    def describe(self) -> str:
        """See :meth:`SplitProtocol.describe`."""
        return f"ExplicitSubjects(test={self.test_subjects}, val={self.val_subjects})"


class WithinSubjectKFold(SplitProtocol):
    """Subject-dependent k-fold over each subject's recordings (DEAP's trials): fold k tests, fold k+1 validates.

    Each subject's recordings are shuffled (seeded by the seed and the subject's name, so a subject's folds do not
    depend on which other subjects are there) and dealt into ``num_folds`` folds; fold ``fold`` of every subject
    tests, the next fold validates, the others train. All windows of one recording stay in one split, so
    overlapping windows never leak between training and testing. With as many folds as recordings per subject it is
    leave-one-trial-out. ``subjects`` restricts the split to some subjects, e.g. one model per participant.

    Args:
        num_folds: folds per subject (≥ 3; every subject needs at least that many recordings).
        fold: the test fold, in [0, num_folds).
        seed: seed of the recordings' assignment to folds.
        subjects: use only these subjects (None: all); the others' samples are in no split.
    """

    def __init__(
        self, num_folds: int = 10, fold: int = 0, seed: int = 0, subjects: Sequence[str] | None = None
    ) -> None:
        if num_folds < 3:
            raise ValueError(f"num_folds={num_folds}: at least 3 folds are needed (test, validation, training).")
        if not 0 <= fold < num_folds:
            raise ValueError(f"fold={fold} must lie in [0, {num_folds}).")
        if subjects is not None and not list(subjects):
            raise ValueError("subjects=[] leaves nothing to split; give subject names or None for all.")
        self.num_folds = num_folds
        self.fold = fold
        self.seed = seed
        self.subjects = None if subjects is None else [str(s) for s in subjects]

    def split(self, subjects: np.ndarray, official: np.ndarray) -> dict[str, np.ndarray]:
        """Refused: this protocol splits recordings, which :meth:`split_recordings` gets.

        Raises:
            ValueError: always.
        """
        raise ValueError("WithinSubjectKFold splits each subject's recordings; call split_recordings with them.")

    def split_recordings(
        self, subjects: np.ndarray, official: np.ndarray, recordings: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        """See :meth:`SplitProtocol.split_recordings`.

        Raises:
            ValueError: the cache records no recordings, a chosen sample has none, a named subject is not in the
                data, or a subject has fewer recordings than folds.
        """
        names = np.asarray(subjects).astype(str)
        if recordings is None:
            raise ValueError(
                "WithinSubjectKFold needs each sample's recording (trial), which this cache does not record; use a "
                "subject-independent protocol (SubjectKFold) for this data set."
            )
        recordings = np.asarray(recordings).astype(str)
        chosen = np.ones(names.size, dtype=bool)
        if self.subjects is not None:
            unknown = sorted(set(self.subjects) - set(names.tolist()))
            if unknown:
                raise ValueError(f"Subjects {unknown} are not in the data; it has {sorted(set(names.tolist()))[:20]}.")
            chosen = np.isin(names, self.subjects)
        if np.any(chosen & (recordings == "")):
            raise ValueError("WithinSubjectKFold needs every sample's recording; some samples of this cache have none.")
        fold_of = np.full(names.size, -1, dtype=np.int64)
        for subject in np.unique(names[chosen]):
            mine = chosen & (names == subject)
            own = np.unique(recordings[mine])
            if own.size < self.num_folds:
                raise ValueError(
                    f"Subject {subject} has {own.size} recordings, fewer than num_folds={self.num_folds}; lower it."
                )
            order = np.random.default_rng([self.seed, 11, zlib.crc32(str(subject).encode())]).permutation(own)
            folds = dict(zip(order.tolist(), (np.arange(own.size) % self.num_folds).tolist(), strict=True))
            fold_of[mine] = [folds[r] for r in recordings[mine].tolist()]
        val_fold = (self.fold + 1) % self.num_folds
        test = np.flatnonzero(fold_of == self.fold)
        val = np.flatnonzero(fold_of == val_fold)
        train = np.flatnonzero((fold_of >= 0) & (fold_of != self.fold) & (fold_of != val_fold))
        return {name: idx.astype(np.int64) for name, idx in (("train", train), ("val", val), ("test", test))}

    def describe(self) -> str:
        """See :meth:`SplitProtocol.describe` (says subject-dependent)."""
        chosen = "" if self.subjects is None else f", subjects={self.subjects}"
        return (
            f"WithinSubjectKFold(num_folds={self.num_folds}, fold={self.fold}, seed={self.seed}{chosen}; "
            "subject-dependent)"
        )


class SubjectPartitions(SplitProtocol):
    """Published subject partitions (BP4D's and DISFA's three parts): one part tests, the others train.

    The published AU protocols name the subjects of each part and train on all but one part, testing on it; they
    have no validation split, so ``val_fraction`` of the training subjects (at least one) is carved out for it,
    seeded like :class:`OfficialSplits`. Subjects in the data but in no part are refused (a typo in a list, or
    another data set's subjects), so a partition is never silently incomplete; listed subjects absent from the
    data are ignored (a partial copy of the data set).

    Args:
        parts: the subjects of each part, in the published order.
        test_part: which part tests, 1-based (part 1 is ``parts[0]``).
        val_fraction: share of the training subjects held out for validation (> 0).
        seed: seed of the carved subjects' permutation.
    """

    def __init__(
        self, parts: Sequence[Sequence[str]], test_part: int, val_fraction: float = 0.1, seed: int = 0
    ) -> None:
        groups = [[str(s) for s in part] for part in parts]
        if len(groups) < 2 or any(not g for g in groups):
            raise ValueError(f"parts: give at least two non-empty subject lists, got {len(groups)}.")
        seen: dict[str, int] = {}
        for number, group in enumerate(groups, start=1):
            for subject in group:
                if subject in seen:
                    raise ValueError(f"Subject {subject} is in part {seen[subject]} and part {number}.")
                seen[subject] = number
        if not 1 <= test_part <= len(groups):
            raise ValueError(f"test_part={test_part} must lie in [1, {len(groups)}] (parts are numbered from 1).")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction={val_fraction} must lie in (0, 1): the published folds have no validation.")
        self.parts = groups
        self.test_part = test_part
        self.val_fraction = val_fraction
        self.seed = seed

    def split(self, subjects: np.ndarray, official: np.ndarray) -> dict[str, np.ndarray]:
        """See :meth:`SplitProtocol.split`.

        Raises:
            ValueError: a subject of the data in no part, no test or too few training subjects in the data.
        """
        names = np.asarray(subjects).astype(str)
        present = set(names.tolist())
        listed = {s for part in self.parts for s in part}
        unlisted = sorted(present - listed)
        if unlisted:
            raise ValueError(
                f"Subjects {unlisted[:10]} are in the data but in no part of the partition; add them to "
                "--data.init_args.split.init_args.parts or choose SubjectKFold."
            )
        test = np.asarray(sorted(present & set(self.parts[self.test_part - 1])))
        train = np.asarray(
            sorted(present & {s for k, part in enumerate(self.parts, 1) if k != self.test_part for s in part})
        )
        if test.size == 0:
            raise ValueError(f"No subject of test part {self.test_part} is in the data ({sorted(present)[:10]}...).")
        count = max(1, round(self.val_fraction * train.size))
        if count >= train.size:
            raise ValueError(f"{train.size} training subjects are too few to carve {count} for validation.")
        order = _permuted_subjects(train, self.seed)
        val, train = order[:count], order[count:]
        return {
            "train": _positions(names, train),
            "val": _positions(names, val),
            "test": _positions(names, test),
        }

    def describe(self) -> str:
        """See :meth:`SplitProtocol.describe` (part sizes and the test part; the lists are in the config)."""
        sizes = [len(p) for p in self.parts]
        return (
            f"SubjectPartitions(part sizes={sizes}, test_part={self.test_part}, val_fraction={self.val_fraction}, "
            f"seed={self.seed})"
        )


def _check_disjoint(subjects: np.ndarray, splits: dict[str, np.ndarray], what: str) -> None:
    """Refuse splits that share a subject (an official split that is not subject-independent, say)."""
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = np.intersect1d(subjects[splits[a]], subjects[splits[b]])
            if shared.size:
                raise ValueError(
                    f"The {what} put subjects {shared[:5].tolist()} in both {a} and {b}; use a subject-based protocol "
                    "(SubjectHoldout or SubjectKFold) for subject-independent results."
                )
