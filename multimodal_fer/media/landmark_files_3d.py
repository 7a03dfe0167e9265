"""Reading the landmark files of 3-D face data sets: Bosphorus ``.lm3``/``.lm2`` and BU-3DFE ``.bnd``.

Bosphorus (``/work/shared/reference/datasets.md`` §9a): free-text header lines, a line ``<N> landmarks:``, then
pairs of lines, the landmark's name and its coordinates (``x y z`` in ``.lm3``, ``x y`` in ``.lm2``). Occluded
landmarks are left out of a file, so N varies.

BU-3DFE (§9b): one landmark per line, ``<vertex index> <x> <y> <z>`` separated by whitespace (two tabs in the
distribution); the index is 0-based into the ``.wrl`` vertex list.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from multimodal_fer.errors import DataError

_COUNT = re.compile(r"^\s*(\d+)\s+landmarks:\s*$")


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="latin-1").splitlines()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from error


def read_bosphorus_landmarks(path: str | Path, dims: int = 3) -> dict[str, np.ndarray]:
    """Read a Bosphorus ``.lm3`` (``dims=3``) or ``.lm2`` (``dims=2``) file.

    Returns:
        Landmark name → float64 (dims,) coordinates, in the file's order.

    Raises:
        DataError: no ``<N> landmarks:`` line, fewer name/coordinate pairs than N (a cut file), coordinates that
            are not ``dims`` numbers, or a name given twice.
    """
    path = Path(path)
    lines = _lines(path)
    start = next((i for i, line in enumerate(lines) if _COUNT.match(line)), None)
    if start is None:
        raise DataError(f"{path} has no '<N> landmarks:' line; it is not a Bosphorus landmark file.")
    count = int(_COUNT.match(lines[start]).group(1))  # type: ignore[union-attr]
    body = [line.strip() for line in lines[start + 1 :] if line.strip()]
    if len(body) < 2 * count:
        raise DataError(
            f"{path} announces {count} landmarks but holds {len(body) // 2} name/coordinate pairs; the file is cut."
        )
    landmarks: dict[str, np.ndarray] = {}
    for k in range(count):
        name, values = body[2 * k], body[2 * k + 1].split()
        try:
            point = np.array([float(v) for v in values], dtype=np.float64)
        except ValueError as error:
            raise DataError(f"{path}: landmark {name!r} has coordinates {values}, not numbers.") from error
        if point.shape != (dims,) or not np.isfinite(point).all():
            raise DataError(f"{path}: landmark {name!r} has coordinates {values}, not {dims} finite numbers.")
        if name in landmarks:
            raise DataError(f"{path}: landmark {name!r} is given twice.")
        landmarks[name] = point
    return landmarks


def read_bnd(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a BU-3DFE ``.bnd`` landmark file.

    Returns:
        ``(vertex indices int64 (K,), points float64 (K, 3))``.

    Raises:
        DataError: a non-empty line that is not an index and three numbers.
    """
    path = Path(path)
    indices, points = [], []
    for number, line in enumerate(_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 4:
                raise ValueError(f"{len(fields)} fields")
            index = float(fields[0])
            point = [float(v) for v in fields[1:]]
        except ValueError as error:
            expected = "'<index> <x> <y> <z>'"
            raise DataError(f"{path} line {number}: {line.strip()!r} is not {expected} ({error}).") from error
        if index != int(index) or index < 0 or not np.isfinite(point).all():
            raise DataError(f"{path} line {number}: {line.strip()!r} has a bad vertex index or coordinate.")
        indices.append(int(index))
        points.append(point)
    return np.array(indices, dtype=np.int64), np.array(points, dtype=np.float64).reshape(-1, 3)
