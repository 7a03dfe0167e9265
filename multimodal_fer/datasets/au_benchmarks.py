"""What the AU benchmark adapters (BP4D, DISFA) share: AU selections, fold numbering, folders inside raw_root."""

from __future__ import annotations

from pathlib import Path

from multimodal_fer.errors import DataError
from multimodal_fer.types import LabelSpace

#: Published fold number → the part it tests (fold 1 trains on parts 1 and 2 and tests part 3).
FOLD_TEST_PART: dict[int, int] = {1: 3, 2: 2, 3: 1}


def check_action_units(action_units: list[int] | tuple[int, ...], allowed: tuple[int, ...] | None = None) -> None:
    """Refuse an AU selection that is empty, repeats a number or names AUs the data set does not code.

    Raises:
        ValueError: the message names the offending numbers and what is allowed.
    """
    chosen = list(action_units)
    if not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"action_units={chosen}: give each AU number once, and at least one.")
    if any(isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in chosen):
        raise ValueError(f"action_units={chosen}: AU numbers are positive whole numbers.")
    if allowed is not None:
        unknown = [a for a in chosen if a not in allowed]
        if unknown:
            raise ValueError(f"AUs {unknown} are not coded by this data set; choose among {list(allowed)}.")
    LabelSpace(action_units=tuple(chosen)).in_vocabulary()


def inside_raw_root(raw_root: Path, relative: str, option: str) -> Path:
    """``raw_root / relative``, refusing a folder outside raw_root (sources are named relative to it).

    Raises:
        DataError: an absolute path or one that climbs out with ``..``; the message names the option.
    """
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise DataError(f"{option}={relative!r} must be a folder inside raw_root {raw_root}, given relative to it.")
    return raw_root / relative
