"""``${...}`` in a suite's override strings: a cell's own grid values, and the run folders of cells it needs.

Two forms, resolved per cell when a suite is loaded:

- ``${<grid key>}``, e.g. ``${seed_everything}``: the cell's own value of that grid axis. A string that is only the
  reference becomes the value itself (a number stays a number, a list a list); inside a longer string the value is
  written as in cell names (``0``, ``face+audio``).
- ``${<suite>/<cell>}``, e.g. ``${fusion-singles/face-seed=${seed_everything}}``: the run folder of a cell of a suite
  listed under ``needs``, the cell named with or without its ``NNN-`` number. Inner references resolve first, so a
  stage-2 cell can name the stage-1 cell of its own seed. The reference is kept as ``${<suite>/<NNN-cell>}`` until
  the output folder is known (:func:`fill_folders`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: A reference with no reference inside it.
REFERENCE = re.compile(r"\$\{([^${}]+)\}")
#: A resolved reference to a needed suite's cell: ``${<suite>/<NNN-cell name>}``.
FOLDER_REFERENCE = re.compile(r"\$\{([^${}/]+)/(\d{3}(?:-[^${}]*)?)\}")


class InterpolationError(ValueError):
    """A reference that names no grid key, no needed suite or no cell of it."""


def has_references(value: Any) -> bool:
    """Whether a value (a string, or a list or mapping holding strings) contains ``${...}``."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, Mapping):
        return any(has_references(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(has_references(item) for item in value)
    return False


def interpolate(
    value: Any,
    own: Mapping[str, Any],
    cells: Mapping[str, list[str]],
    short: Callable[[Any], str],
) -> tuple[Any, set[str]]:
    """Resolve every reference in a value for one cell.

    Args:
        value: a string, or a list or mapping of them (other values are returned unchanged).
        own: the cell's grid values, by dotted key.
        cells: needed suite name → the names of its cells (``NNN-label``).
        short: how a non-string value is written inside a longer string (as in cell names).

    Returns:
        The resolved value and the needed cells it refers to (``<suite>/<NNN-cell>``).

    Raises:
        InterpolationError: a reference to an unknown grid key, suite or cell.
    """
    needed: set[str] = set()
    if isinstance(value, Mapping):
        resolved = {}
        for key, item in value.items():
            resolved[key], found = interpolate(item, own, cells, short)
            needed |= found
        return resolved, needed
    if isinstance(value, list | tuple):
        items = []
        for item in value:
            resolved_item, found = interpolate(item, own, cells, short)
            items.append(resolved_item)
            needed |= found
        return items, needed
    if not isinstance(value, str):
        return value, needed
    text = value
    while True:
        match = next((m for m in REFERENCE.finditer(text) if not FOLDER_REFERENCE.fullmatch(m.group(0))), None)
        if match is None:
            break
        name = match.group(1).strip()
        if "/" in name:
            replacement = "${" + _cell_reference(name, cells) + "}"
        elif name in own:
            if match.group(0) == text:  # the whole string: the value itself, of its own type
                return own[name], needed
            replacement = own[name] if isinstance(own[name], str) else short(own[name])
        else:
            raise InterpolationError(
                f"'${{{name}}}' names no grid key of this suite (grid keys: {sorted(own)}); "
                "'${<suite>/<cell>}' names a cell of a suite listed under 'needs'."
            )
        text = text[: match.start()] + replacement + text[match.end() :]
    needed |= {_cell_reference(f"{m.group(1)}/{m.group(2)}", cells) for m in FOLDER_REFERENCE.finditer(text)}
    return text, needed


def _cell_reference(name: str, cells: Mapping[str, list[str]]) -> str:
    """``<suite>/<cell, with or without its number>`` → ``<suite>/<NNN-cell>``."""
    suite, label = (part.strip() for part in name.split("/", 1))
    if suite not in cells:
        known = sorted(cells) or "none"
        raise InterpolationError(f"'${{{name}}}' names suite {suite!r}, which is not under 'needs' (needed: {known}).")
    matches = [cell for cell in cells[suite] if label in (cell, cell.split("-", 1)[-1])]
    if len(matches) != 1:
        shown = ", ".join(cell.split("-", 1)[-1] for cell in cells[suite][:6])
        more = " ..." if len(cells[suite]) > 6 else ""
        raise InterpolationError(f"'${{{name}}}': suite {suite!r} has no cell {label!r} (its cells: {shown}{more}).")
    return f"{suite}/{matches[0]}"


def fill_folders(value: Any, out: Path) -> Any:
    """Replace each ``${<suite>/<NNN-cell>}`` by that cell's run folder ``<out>/<suite>/<NNN-cell>`` (absolute)."""
    if isinstance(value, Mapping):
        return {key: fill_folders(item, out) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [fill_folders(item, out) for item in value]
    if not isinstance(value, str):
        return value
    return FOLDER_REFERENCE.sub(lambda m: str((Path(out) / m.group(1) / m.group(2)).resolve()), value)
