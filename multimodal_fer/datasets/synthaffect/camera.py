"""The pinhole camera shared by the SynthAffect renderer and depth → point-cloud conversion."""

from __future__ import annotations

from multimodal_fer.geometry.camera import CameraIntrinsics

#: Distance in metres from the camera centre to the head centre in SynthAffect renders.
CAMERA_DISTANCE = 0.55

#: Height (metres, head frame, +y up) of the point the camera looks at; puts the eyes ~38 % from the top.
CAMERA_TARGET_Y = -0.006

#: Width in metres of the field of view at the face front (~0.46 m from the camera): an aligned face crop.
_FIELD_WIDTH_AT_FACE = 0.18
_FACE_FRONT_DISTANCE = 0.46


def face_crop_intrinsics(image_size: int) -> CameraIntrinsics:
    """The SynthAffect camera: a square image in which the face fills the frame like an aligned crop.

    Args:
        image_size: width and height in pixels.

    Returns:
        Intrinsics for a camera :data:`CAMERA_DISTANCE` metres from the head centre.
    """
    focal = image_size * _FACE_FRONT_DISTANCE / _FIELD_WIDTH_AT_FACE
    centre = (image_size - 1) / 2.0
    return CameraIntrinsics(fx=focal, fy=focal, cx=centre, cy=centre, width=image_size, height=image_size)
