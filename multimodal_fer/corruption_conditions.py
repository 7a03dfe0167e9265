"""Test-time corruptions: the setting, its validation, and the test condition it names.

A :class:`Corruption` says which modality is degraded, how (``noise``, ``drop``, ``occlusion``) and how strongly
(``strength`` in [0, 1], 0 = no change). The data module applies it to its test (and predict) batches only
(:mod:`multimodal_fer.datamodules.corruption`); results files are named after it
(``results-test-noise-audio-0.50.json``) and reports read the name back (:func:`parse_condition`). This module
is the bottom layer: it imports nothing of the package, so data modules, suites and reports share one spelling of
the names.

What ``strength`` means for each kind (see docs/runs.md, "Test-time corruptions"):

* ``noise``: Gaussian noise with standard deviation ``strength`` × the sample's own per-channel standard
  deviation of the model input (after the device normalisation), so strengths are comparable across modalities.
* ``drop``: sequences (audio, physiology, face clips) lose that share of their time frames (zeroed: silence, the
  standardised mean, the mean colour); a single image or depth map is marked absent (``present`` False) for
  that share of the samples.
* ``occlusion``: faces get the package's synthetic occluders until they cover at least that share of the crop;
  depth maps lose a rectangular patch of that share of the pixels ("no reading"); audio and physiology lose one
  contiguous span of that share of their length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from jsonargparse.typing import ClosedUnitInterval

#: The corruption kinds, in report order.
CORRUPTION_KINDS: tuple[str, ...] = ("noise", "drop", "occlusion")
#: The modalities a corruption may degrade (the package's modalities).
CORRUPTIBLE_MODALITIES: tuple[str, ...] = ("face", "audio", "depth", "physio")

_CONDITION = re.compile(
    r"^(?P<before>test.*?)-(?P<kind>noise|drop|occlusion)-(?P<modality>face|audio|depth|physio)-"
    r"(?P<strength>[01]\.\d\d)(?:-seed(?P<seed>\d+))?(?P<after>(?:-on-.+?)?(?:-last)?)$"
)


@dataclass(frozen=True)
class Corruption:
    """A test-time corruption of one modality, e.g. ``{modality: audio, kind: noise, strength: 0.5}``.

    Attributes:
        modality: the modality degraded (``face``, ``audio``, ``depth``, ``physio``).
        kind: ``noise``, ``drop`` or ``occlusion`` (see the module docstring for what each does).
        strength: in [0, 1]; 0 leaves the data unchanged; given to two decimals (the condition name's precision).
        seed: seed of the draws. The default 0 gives every model the same corrupted test set; the draws of a
            sample depend on this seed and the sample's cache index only, never on the run's seed or the batch.

    Raises:
        ValueError: an unknown modality or kind, a strength outside [0, 1] or with more than two decimals, a
            negative seed.
    """

    modality: Literal["face", "audio", "depth", "physio"]
    kind: Literal["noise", "drop", "occlusion"]
    strength: ClosedUnitInterval  # a float in [0, 1]: the command line refuses others while parsing
    seed: int = 0

    def __post_init__(self) -> None:
        if self.modality not in CORRUPTIBLE_MODALITIES:
            raise ValueError(
                f"test_corruption.modality {self.modality!r} is not a modality; choose one of "
                f"{list(CORRUPTIBLE_MODALITIES)}."
            )
        if self.kind not in CORRUPTION_KINDS:
            raise ValueError(f"test_corruption.kind {self.kind!r} is unknown; choose one of {list(CORRUPTION_KINDS)}.")
        if isinstance(self.strength, bool) or not isinstance(self.strength, int | float):  # also when built in code
            raise ValueError(f"test_corruption.strength must be a number in [0, 1], got {self.strength!r}.")
        if not 0.0 <= float(self.strength) <= 1.0:
            raise ValueError(
                f"test_corruption.strength={self.strength} lies outside [0, 1] (0 = no change, 1 = the strongest)."
            )
        if abs(round(float(self.strength), 2) - float(self.strength)) > 1e-9:
            raise ValueError(
                f"test_corruption.strength={self.strength} has more than two decimals; results files name it to two "
                f"(e.g. {round(float(self.strength), 2):.2f}), so two strengths would share one name."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"test_corruption.seed must be a non-negative integer, got {self.seed!r}.")
        object.__setattr__(self, "strength", round(float(self.strength), 2))

    @property
    def suffix(self) -> str:
        """The part of the test condition it adds: ``noise-audio-0.50`` (``-seed<k>`` for another seed than 0)."""
        return condition_suffix(self.modality, self.kind, self.strength, self.seed)

    def to_dict(self) -> dict[str, object]:
        """``{modality, kind, strength, seed}``, as results files record it."""
        return {"modality": self.modality, "kind": self.kind, "strength": self.strength, "seed": self.seed}


def condition_suffix(modality: str, kind: str, strength: float, seed: int = 0) -> str:
    """``<kind>-<modality>-<strength to two decimals>``, plus ``-seed<k>`` for another seed than 0."""
    return f"{kind}-{modality}-{float(strength):.2f}" + (f"-seed{seed}" if seed else "")


def corrupted_condition(condition: str, corruption: Corruption) -> str:
    """A test condition with the corruption added: ``test`` → ``test-noise-audio-0.50``."""
    return f"{condition}-{corruption.suffix}"


@dataclass(frozen=True)
class CorruptedCondition:
    """A test condition name read back: the corruption and the clean condition it is compared with.

    Attributes:
        modality: the degraded modality.
        kind: the corruption kind.
        strength: its strength.
        seed: its seed.
        clean: the same test without the corruption (``test``, ``test-withheld-face``, ``test-last``, ...).
    """

    modality: str
    kind: str
    strength: float
    seed: int
    clean: str


def parse_condition(condition: str) -> CorruptedCondition | None:
    """Read a corrupted test condition (``test-noise-audio-0.50``, ``test-withheld-face-drop-audio-1.00-last``).

    Returns:
        The corruption and the clean condition, or None for a condition without a corruption.
    """
    match = _CONDITION.match(condition)
    if match is None:
        return None
    return CorruptedCondition(
        modality=match["modality"],
        kind=match["kind"],
        strength=float(match["strength"]),
        seed=int(match["seed"] or 0),
        clean=match["before"] + match["after"],
    )
