"""Reading and writing Bosphorus ``.bnt`` range scans (little-endian binary, read with numpy).

Layout (``/work/shared/reference/datasets.md`` §9a, after Savran's reader)::

    uint16 nrows; uint16 ncols; float64 zmin     # zmin: the background (invalid point) value
    uint16 len; uint8 imfile[len]                # name of the scan's texture image
    uint32 n                                     # = nrows * ncols * 5
    float64 data[n]                              # column-major N×5, N = nrows * ncols: x, y, z, u, v

A point whose x, y or z equals ``zmin`` is background. The order of the N grid points (row after row, or column
after column) is not documented; :func:`bnt_grid` takes it as an argument.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from multimodal_fer.errors import DataError

_HEADER = struct.Struct("<HHd")


@dataclass(frozen=True)
class BntScan:
    """One ``.bnt`` file.

    Attributes:
        nrows: grid rows.
        ncols: grid columns.
        zmin: the background value.
        image_name: the texture image the file names.
        data: float64 (N, 5) columns x, y, z, u, v with N = nrows * ncols.
    """

    nrows: int
    ncols: int
    zmin: float
    image_name: str
    data: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """Measured points, bool (N,): those whose x, y and z are measured (not ``zmin``) and finite."""
        xyz = self.data[:, :3]
        return np.isfinite(xyz).all(axis=1) & (xyz != self.zmin).all(axis=1)


def read_bnt(path: str | Path) -> BntScan:
    """Read a ``.bnt`` file.

    Raises:
        DataError: the file is shorter than its header says (truncated), longer (not a ``.bnt``), or its point
            count disagrees with its grid size; the message names the file and the sizes.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from error
    offset = _HEADER.size
    if len(raw) < offset + 2:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, shorter than a .bnt header.")
    nrows, ncols, zmin = _HEADER.unpack_from(raw, 0)
    (name_length,) = struct.unpack_from("<H", raw, offset)
    offset += 2
    if len(raw) < offset + name_length + 4:
        raise DataError(f"{path} is truncated inside its header (image name of {name_length} bytes, then the count).")
    image_name = raw[offset : offset + name_length].decode("latin-1")
    offset += name_length
    (count,) = struct.unpack_from("<I", raw, offset)
    offset += 4
    if count != nrows * ncols * 5:
        raise DataError(
            f"{path} holds {count} values for a {nrows}×{ncols} grid, which needs {nrows * ncols * 5} "
            "(nrows × ncols × 5); the file is damaged or not a Bosphorus .bnt."
        )
    expected = offset + 8 * count
    if len(raw) < expected:
        raise DataError(
            f"{path} is truncated: {len(raw)} bytes, {expected} needed for {nrows}×{ncols} points; "
            "copy the file again from the distribution."
        )
    if len(raw) > expected:
        raise DataError(f"{path} has {len(raw) - expected} bytes after its {count} values; it is not a Bosphorus .bnt.")
    data = np.frombuffer(raw, dtype="<f8", count=count, offset=offset).reshape(5, nrows * ncols).T
    return BntScan(nrows=nrows, ncols=ncols, zmin=float(zmin), image_name=image_name, data=data.astype(np.float64))


def bnt_grid(scan: BntScan, order: Literal["row", "column"] = "row") -> tuple[np.ndarray, np.ndarray]:
    """A scan's points as a pixel grid.

    Args:
        scan: the scan.
        order: how the N points fill the grid: ``"row"`` (row after row) or ``"column"`` (column after column).

    Returns:
        ``(points float64 (nrows, ncols, 3), valid bool (nrows, ncols))``.
    """
    numpy_order = "C" if order == "row" else "F"
    points = scan.data[:, :3].reshape(scan.nrows, scan.ncols, 3, order=numpy_order)
    valid = scan.valid.reshape(scan.nrows, scan.ncols, order=numpy_order)
    return points, valid
