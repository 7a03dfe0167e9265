"""The pinhole camera shared by the SynthAffect renderer and depth → point-cloud conversion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Distance in metres from the camera centre to the head centre in SynthAffect renders.
CAMERA_DISTANCE = 0.55

#: Height (metres, head frame, +y up) of the point the camera looks at; puts the eyes ~38 % from the top.
CAMERA_TARGET_Y = -0.006

#: Width in metres of the field of view at the face front (~0.46 m from the camera): an aligned face crop.
_FIELD_WIDTH_AT_FACE = 0.18
_FACE_FRONT_DISTANCE = 0.46


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

    @classmethod
    def for_face_crop(cls, image_size: int) -> CameraIntrinsics:
        """The SynthAffect camera: a square image in which the face fills the frame like an aligned crop.

        Args:
            image_size: width and height in pixels.

        Returns:
            Intrinsics for a camera :data:`CAMERA_DISTANCE` metres from the head centre.
        """
        focal = image_size * _FACE_FRONT_DISTANCE / _FIELD_WIDTH_AT_FACE
        centre = (image_size - 1) / 2.0
        return cls(fx=focal, fy=focal, cx=centre, cy=centre, width=image_size, height=image_size)

    def matrix(self) -> np.ndarray:
        """The 3×3 intrinsic matrix K, float64 (3, 3)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])
