"""Names and label spaces shared by every layer: modalities, batch keys, expression classes and AUs.

This is the bottom layer of the package: it imports nothing from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

#: The modalities the package knows, keyed by name everywhere (never by position).
MODALITIES: tuple[str, ...] = ("face", "audio", "depth", "physio")

#: Batch keys of the labels. ``expr`` long (B,) with -1 unlabeled; ``au`` float (B, K) with NaN unlabeled;
#: ``va`` float (B, D) in [-1, 1] with NaN unlabeled.
LABEL_KEYS: tuple[str, ...] = ("expr", "au", "va")

#: Batch key of the per-modality presence masks: ``batch["present"][modality]`` is bool (B,).
PRESENT_KEY = "present"

#: Evaluation aggregation levels: each sample scored on its own, or each recording from its samples' mean prediction
#: (:mod:`multimodal_fer.metrics.aggregation`).
Aggregation = Literal["sample", "recording"]
AGGREGATION_LEVELS: tuple[str, ...] = ("sample", "recording")

#: Value of ``expr`` for a sample without an expression label.
EXPR_UNLABELED = -1

#: The package's expression vocabulary: every data set names its classes with these words, so label spaces of
#: different data sets map onto each other by name (RAF-DB's "Happiness" and AffectNet's "Happy" are both "happy").
#: "calm" is RAVDESS's, "other" Aff-Wild2's eighth class.
EXPRESSION_VOCABULARY: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
    "calm",
    "other",
)

#: FACS action unit numbers the package knows (main codes of the Facial Action Coding System, plus head/eye
#: codes 43-46 that AU benchmarks annotate).
FACS_ACTION_UNITS: tuple[int, ...] = (
    1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 22, 23, 24, 25, 26, 27, 28,
    38, 39, 41, 42, 43, 44, 45, 46,
)  # fmt: skip


@dataclass(frozen=True)
class ArraySpec:
    """One field of a cache.

    Attributes:
        name: field name, also the file stem.
        shape: shape of one sample (the file holds (N, *shape)).
        dtype: numpy dtype name, e.g. ``"uint8"``, ``"float16"``.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArraySpec:
        """Inverse of :meth:`to_json`."""
        return cls(name=str(data["name"]), shape=tuple(int(s) for s in data["shape"]), dtype=str(data["dtype"]))


def validate_modalities(modalities: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Check a list of modality names and return it as a tuple in canonical order.

    Args:
        modalities: names such as ``["face", "audio"]``.

    Returns:
        The same names ordered as in :data:`MODALITIES`.

    Raises:
        ValueError: an unknown or repeated name, or an empty list; the message lists the valid names.
    """
    names = list(modalities)
    unknown = [m for m in names if m not in MODALITIES]
    if unknown:
        raise ValueError(
            f"Unknown modality {unknown[0]!r} (given {names}). Valid modalities: {list(MODALITIES)}; "
            "e.g. --data.init_args.modalities='[face,audio]'."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"Modality list {names} repeats a name; give each modality once.")
    if not names:
        raise ValueError(f"The modality list is empty; give at least one of {list(MODALITIES)}.")
    return tuple(m for m in MODALITIES if m in names)


@dataclass(frozen=True)
class LabelSpace:
    """What a dataset labels: expression classes in a fixed order, AU numbers and affect dimensions.

    Heads are sized from this object (linked from the datamodule), never by hand.

    Attributes:
        expressions: expression class names; index i is label i. Empty if the dataset has none.
        action_units: FACS AU numbers; column j of ``au`` is AU ``action_units[j]``. Empty if none.
        dimensions: affect dimensions, a prefix of ``("valence", "arousal", "dominance")``. Empty if none.
    """

    expressions: tuple[str, ...] = field(default_factory=tuple)
    action_units: tuple[int, ...] = field(default_factory=tuple)
    dimensions: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        allowed = ("valence", "arousal", "dominance")
        if tuple(self.dimensions) != allowed[: len(self.dimensions)]:
            raise ValueError(f"dimensions must be a prefix of {allowed}, got {self.dimensions}")
        if len(set(self.expressions)) != len(self.expressions):
            raise ValueError(f"expression names repeat: {self.expressions}")
        if len(set(self.action_units)) != len(self.action_units):
            raise ValueError(f"AU numbers repeat: {self.action_units}")

    @property
    def num_expressions(self) -> int:
        """Number of expression classes."""
        return len(self.expressions)

    @property
    def num_action_units(self) -> int:
        """Number of action units."""
        return len(self.action_units)

    @property
    def num_dimensions(self) -> int:
        """Number of affect dimensions."""
        return len(self.dimensions)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this label space has, among ``("expr", "au", "va")``, in that order."""
        sizes = {"expr": self.num_expressions, "au": self.num_action_units, "va": self.num_dimensions}
        return tuple(task for task, size in sizes.items() if size > 0)

    @classmethod
    def from_dict(cls, recorded: dict[str, list]) -> LabelSpace:
        """The label space :meth:`to_dict` wrote (manifests, results and predictions files)."""
        return cls(
            expressions=tuple(recorded["expressions"]),
            action_units=tuple(recorded["action_units"]),
            dimensions=tuple(recorded["dimensions"]),
        )

    def to_dict(self) -> dict[str, list]:
        """Plain-JSON form, for manifests and results files."""
        return {
            "expressions": list(self.expressions),
            "action_units": list(self.action_units),
            "dimensions": list(self.dimensions),
        }

    def in_vocabulary(self) -> None:
        """Check that every name and number is one the package knows, so the space maps onto others.

        Raises:
            ValueError: an expression outside :data:`EXPRESSION_VOCABULARY` or an AU outside
                :data:`FACS_ACTION_UNITS`; the message lists the valid ones.
        """
        unknown = [name for name in self.expressions if name not in EXPRESSION_VOCABULARY]
        if unknown:
            raise ValueError(
                f"Expression names {unknown} are not in the package's vocabulary {list(EXPRESSION_VOCABULARY)}; "
                "name each class with one of these words so label spaces map onto each other."
            )
        unknown_aus = [au for au in self.action_units if au not in FACS_ACTION_UNITS]
        if unknown_aus:
            raise ValueError(f"AU numbers {unknown_aus} are not FACS codes this package knows: {FACS_ACTION_UNITS}.")

    def expression_index_map(self, target: LabelSpace) -> np.ndarray:
        """Where each of this space's expression classes lands in ``target``.

        Args:
            target: the label space to map into.

        Returns:
            int64 (C,): ``map[i]`` is the index of class ``expressions[i]`` in ``target``, or -1 where ``target``
            has no such class (those labels become unlabeled).
        """
        return np.array(
            [target.expressions.index(n) if n in target.expressions else -1 for n in self.expressions], np.int64
        )

    def map_labels(
        self, target: LabelSpace, expr: np.ndarray, au: np.ndarray, va: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Express labels of this space in ``target``'s classes, AU columns and dimensions.

        Classes, AUs and dimensions ``target`` has but this space lacks come out unlabeled (-1, NaN); those this
        space has but ``target`` lacks are dropped.

        Args:
            target: the label space to map into.
            expr: int (N,) indices into ``expressions``, -1 unlabeled.
            au: float (N, K) columns of ``action_units``, NaN unlabeled.
            va: float (N, D) columns of ``dimensions`` in [-1, 1], NaN unlabeled.

        Returns:
            ``(expr int64 (N,), au float32 (N, K'), va float32 (N, D'))`` in ``target``'s layout.
        """
        expr = np.asarray(expr, dtype=np.int64)
        index = self.expression_index_map(target)
        mapped_expr = np.where(expr >= 0, index[np.clip(expr, 0, None)] if index.size else -1, -1).astype(np.int64)
        au = np.asarray(au, dtype=np.float32).reshape(expr.shape[0], self.num_action_units)
        mapped_au = np.full((expr.shape[0], target.num_action_units), np.nan, dtype=np.float32)
        for column, number in enumerate(target.action_units):
            if number in self.action_units:
                mapped_au[:, column] = au[:, self.action_units.index(number)]
        va = np.asarray(va, dtype=np.float32).reshape(expr.shape[0], self.num_dimensions)
        mapped_va = np.full((expr.shape[0], target.num_dimensions), np.nan, dtype=np.float32)
        for column, name in enumerate(target.dimensions):
            if name in self.dimensions:
                mapped_va[:, column] = va[:, self.dimensions.index(name)]
        return mapped_expr, mapped_au, mapped_va


#: The package's union label space: every expression word, every FACS AU it knows, valence-arousal-dominance.
#: Any data set's labels map into it with :meth:`LabelSpace.map_labels` (unlabelled where one has no counterpart).
UNION_LABEL_SPACE = LabelSpace(
    expressions=EXPRESSION_VOCABULARY,
    action_units=FACS_ACTION_UNITS,
    dimensions=("valence", "arousal", "dominance"),
)
