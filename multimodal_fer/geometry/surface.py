"""A face surface as a triangle mesh in metres: what 3-D data sets give and the frontal renderer reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multimodal_fer.errors import DataError


@dataclass(frozen=True)
class FaceSurface:
    """A triangulated face surface in the face frame: x to the image right, y up, z towards the viewer (metres).

    Attributes:
        vertices: float (V, 3) vertex positions in metres.
        triangles: int (T, 3) vertex indices of each triangle.
        centre: float (3,) the point the frontal view centres on (a nose tip, the landmarks' mean), or None: the
            middle of the surface's x-y bounding box.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    centre: np.ndarray | None = None

    def __post_init__(self) -> None:
        vertices = np.asarray(self.vertices)
        triangles = np.asarray(self.triangles)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise DataError(f"surface vertices must be (V, 3), got {vertices.shape}.")
        if triangles.ndim != 2 or triangles.shape[1] != 3:
            raise DataError(f"surface triangles must be (T, 3), got {triangles.shape}.")
        if len(triangles) == 0:
            raise DataError("the surface has no triangle; there is nothing to render.")
        if not np.isfinite(vertices).all():
            raise DataError("surface vertices hold NaN or infinity.")
        if triangles.min() < 0 or triangles.max() >= len(vertices):
            raise DataError(
                f"triangle indices must lie in [0, {len(vertices)}), got [{triangles.min()}, {triangles.max()}]."
            )
        if self.centre is not None and (np.shape(self.centre) != (3,) or not np.isfinite(self.centre).all()):
            raise DataError(f"the view centre must be a finite (3,) point, got {self.centre!r}.")

    def used_vertices(self) -> np.ndarray:
        """float64 (U, 3): the vertices some triangle uses."""
        used = np.zeros(len(self.vertices), dtype=bool)
        used[np.asarray(self.triangles)] = True
        return np.asarray(self.vertices, dtype=np.float64)[used]

    def view_centre(self) -> np.ndarray:
        """float64 (3,): :attr:`centre`, or the x-y bounding box middle at the surface's largest z."""
        if self.centre is not None:
            return np.asarray(self.centre, dtype=np.float64)
        used = self.used_vertices()
        low, high = used.min(axis=0), used.max(axis=0)
        return np.array([(low[0] + high[0]) / 2.0, (low[1] + high[1]) / 2.0, high[2]])
