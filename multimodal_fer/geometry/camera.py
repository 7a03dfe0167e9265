"""Pinhole camera intrinsics (OpenCV convention)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in the OpenCV convention (x right, y down, z forward; pixel centres at integers).

    A camera point ``(X, Y, Z)`` projects to pixel ``(fx * X / Z + cx, fy * Y / Z + cy)``.

    Attributes:
        fx: focal length along x, in pixels.
        fy: focal length along y, in pixels.
        cx: principal point x, in pixels.
        cy: principal point y, in pixels.
        width: image width in pixels.
        height: image height in pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def matrix(self) -> np.ndarray:
        """The 3×3 intrinsic matrix K, float64 (3, 3)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])
