"""Reading triangle meshes from VRML ``.wrl`` files (``IndexedFaceSet``; BU-3DFE's face models).

Open3D 0.20 reads no VRML (``read_triangle_mesh`` answers "unknown file extension"), so this small reader parses
what BU-3DFE's files hold: a ``#VRML V2.0`` (or ``V1.0``) header, then per shape a ``Coordinate { point [ x y z,
... ] }`` (``Coordinate3`` in VRML 1.0) and an ``IndexedFaceSet``'s ``coordIndex [ i, j, k, -1, ... ]``.
Texture coordinates (``TextureCoordinate { point [...] }``, ``texCoordIndex``), normals and colours are skipped.
Polygons with more than three corners are split into fans of triangles.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from multimodal_fer.errors import DataError

_HEADER = re.compile(r"#VRML V[12]\.0")
_COMMENT = re.compile(r"#[^\n]*")
# "Coordinate" as a word: TextureCoordinate's points are texture coordinates, not vertices.
_POINTS = re.compile(r"\bCoordinate3?\s*\{\s*point\s*\[([^\]]*)\]")
_INDICES = re.compile(r"\bcoordIndex\s*\[([^\]]*)\]")


def _numbers(block: str, path: Path, what: str) -> np.ndarray:
    text = block.replace(",", " ").split()
    try:
        return np.array([float(token) for token in text], dtype=np.float64)
    except ValueError as error:
        raise DataError(f"{path}: a {what} block holds a non-number ({error}); the file is damaged.") from error


def _triangles(indices: np.ndarray, path: Path) -> list[list[int]]:
    """Polygons separated by -1 (the last may lack it) → fan triangles."""
    triangles: list[list[int]] = []
    polygon: list[int] = []
    for value in [*indices.tolist(), -1.0]:
        if value != int(value):
            raise DataError(f"{path}: coordIndex holds a non-integer {value}.")
        if value < 0:
            if polygon and len(polygon) < 3:
                raise DataError(f"{path}: coordIndex holds a polygon of {len(polygon)} corners; at least 3 needed.")
            triangles += [[polygon[0], polygon[k], polygon[k + 1]] for k in range(1, len(polygon) - 1)]
            polygon = []
        else:
            polygon.append(int(value))
    return triangles


def read_vrml_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read every ``IndexedFaceSet`` of a VRML file into one triangle mesh.

    Returns:
        ``(vertices float64 (V, 3), triangles int64 (T, 3))`` in the file's units.

    Raises:
        DataError: not a VRML file, no vertex block, no faces (a point set without ``coordIndex``, or an empty
            one), a block that is not numbers, a vertex block not made of triples, or indices outside the vertices;
            the message names the file and the fault.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from error
    if not _HEADER.match(text):
        raise DataError(f"{path} does not start with a '#VRML V2.0' header; it is not a VRML file.")
    text = _COMMENT.sub(" ", text)
    point_blocks = _POINTS.findall(text)
    index_blocks = _INDICES.findall(text)
    if not point_blocks:
        raise DataError(f"{path} has no vertex block (Coordinate {{ point [ ... ] }}).")
    if len(index_blocks) != len(point_blocks):
        raise DataError(
            f"{path} has {len(point_blocks)} vertex blocks but {len(index_blocks)} coordIndex face lists; a mesh "
            "without faces cannot be rendered."
        )
    vertices, triangles, offset = [], [], 0
    for points_text, index_text in zip(point_blocks, index_blocks, strict=True):
        values = _numbers(points_text, path, "point")
        if values.size == 0 or values.size % 3:
            raise DataError(f"{path}: a point block holds {values.size} numbers, not x y z triples.")
        block = values.reshape(-1, 3)
        faces = np.array(_triangles(_numbers(index_text, path, "coordIndex"), path), dtype=np.int64).reshape(-1, 3)
        if faces.size and (faces.max() >= len(block)):
            raise DataError(f"{path}: coordIndex names vertex {faces.max()} of a block of {len(block)} vertices.")
        vertices.append(block)
        triangles.append(faces + offset)
        offset += len(block)
    mesh_triangles = np.concatenate(triangles)
    if len(mesh_triangles) == 0:
        raise DataError(f"{path} has vertices but no faces (empty coordIndex); a point set cannot be rendered.")
    return np.concatenate(vertices), mesh_triangles
