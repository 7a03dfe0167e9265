"""A range scan's pixel grid of 3-D points → a triangle mesh (two triangles per valid grid cell)."""

from __future__ import annotations

import numpy as np

from multimodal_fer.errors import DataError


def grid_mesh(points: np.ndarray, valid: np.ndarray, max_edge: float) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate a range scan's grid: each 2×2 cell of valid pixels gives two triangles.

    A triangle with an edge longer than ``max_edge`` is dropped, so depth steps (a hand in front of the face,
    the face's silhouette against the background) are not bridged by long thin triangles.

    Args:
        points: float (R, C, 3) the scan's 3-D point of each grid pixel.
        valid: bool (R, C) pixels that hold a measured point.
        max_edge: longest edge kept, in the units of ``points`` (> 0).

    Returns:
        ``(vertices float64 (V, 3), triangles int64 (T, 3))``: the points some triangle uses and the triangles
        indexing them; both empty when no cell of valid pixels is left.

    Raises:
        DataError: shapes that do not match, or a non-positive ``max_edge``.
    """
    if points.ndim != 3 or points.shape[2] != 3 or valid.shape != points.shape[:2]:
        raise DataError(f"grid points must be (R, C, 3) with an (R, C) mask, got {points.shape}, {valid.shape}.")
    if max_edge <= 0:
        raise DataError(f"max_edge must be positive, got {max_edge}.")
    rows, cols = valid.shape
    index = np.arange(rows * cols).reshape(rows, cols)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()  # top-left, top-right
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()  # bottom-left, bottom-right
    flat_valid = valid.ravel()
    flat = points.reshape(-1, 3)
    triangles = np.concatenate([np.stack([a, c, b], axis=1), np.stack([b, c, d], axis=1)])
    keep = flat_valid[triangles].all(axis=1)
    triangles = triangles[keep]
    if len(triangles):
        corners = flat[triangles]  # (T, 3, 3)
        edges = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2).max(axis=1)
        triangles = triangles[edges <= max_edge]
    used = np.zeros(len(flat), dtype=bool)
    used[triangles] = True
    new_index = np.cumsum(used) - 1  # old vertex index → index among the used ones
    return flat[used].astype(np.float64), new_index[triangles].astype(np.int64)
