"""Names and label spaces shared by every layer: modalities, batch keys, expression classes and AUs.

This is the bottom layer of the package: it imports nothing from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The modalities the package knows, keyed by name everywhere (never by position).
MODALITIES: tuple[str, ...] = ("face", "audio", "depth", "physio")

#: Batch keys of the labels. ``expr`` long (B,) with -1 unlabeled; ``au`` float (B, K) with NaN unlabeled;
#: ``va`` float (B, D) in [-1, 1] with NaN unlabeled.
LABEL_KEYS: tuple[str, ...] = ("expr", "au", "va")

#: Batch key of the per-modality presence masks: ``batch["present"][modality]`` is bool (B,).
PRESENT_KEY = "present"

#: Value of ``expr`` for a sample without an expression label.
EXPR_UNLABELED = -1

#: The eight expression classes of SynthAffect and AffectNet-8, in their fixed order.
EXPRESSIONS_8: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
)

#: FACS action units that SynthAffect's face model animates (numbers as in FACS).
SYNTHAFFECT_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26)


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


SYNTHAFFECT_LABEL_SPACE = LabelSpace(
    expressions=EXPRESSIONS_8, action_units=SYNTHAFFECT_AUS, dimensions=("valence", "arousal")
)
