"""Ray-cast a face surface from the front into a depth map and normals (Open3D ``RaycastingScene``).

The camera sits on the face frame's +z axis, ``distance`` metres in front of the surface's nearest point, above
the view centre, and looks along -z; its square field is ``field_width`` metres wide at that nearest point. Fixed
physical framing (not a field stretched to each face) keeps every scan at the scale of SynthAffect's renders, whose
field is 0.18 m wide at the face front 0.46 m from the camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multimodal_fer._lazy import require
from multimodal_fer.errors import DataError
from multimodal_fer.geometry.camera import CameraIntrinsics
from multimodal_fer.geometry.surface import FaceSurface


@dataclass(frozen=True)
class FrontalView:
    """One frontal render.

    Attributes:
        depth: float32 (S, S) metres along the camera z axis; 0 where no ray hit the surface.
        normals: float32 (S, S, 3) unit surface normals in the camera frame (OpenCV axes: x right, y down,
            z forward), facing the camera (z < 0); 0 where there is no hit.
        intrinsics: the pinhole camera of ``depth``.
    """

    depth: np.ndarray
    normals: np.ndarray
    intrinsics: CameraIntrinsics


def frontal_intrinsics(image_size: int, field_width: float, distance: float) -> CameraIntrinsics:
    """The square pinhole camera whose field is ``field_width`` metres wide ``distance`` metres away."""
    focal = image_size * distance / field_width
    centre = (image_size - 1) / 2.0
    return CameraIntrinsics(fx=focal, fy=focal, cx=centre, cy=centre, width=image_size, height=image_size)


def render_frontal_view(surface: FaceSurface, image_size: int, field_width: float, distance: float) -> FrontalView:
    """Ray-cast a surface from the front.

    Args:
        surface: the face in metres (x right, y up, z towards the viewer).
        image_size: side S of the square depth map in pixels (≥ 8).
        field_width: width in metres of the field at the surface's nearest point (> 0).
        distance: metres from the camera to the surface's nearest point (> 0).

    Returns:
        The :class:`FrontalView`.

    Raises:
        DataError: invalid sizes, or no ray hits the surface (it lies outside the field).
    """
    if image_size < 8:
        raise DataError(f"image_size must be at least 8 pixels, got {image_size}.")
    if field_width <= 0 or distance <= 0:
        raise DataError(f"field_width and distance must be positive metres, got {field_width}, {distance}.")
    o3d = require("open3d", "rendering 3-D face scans into depth maps")
    intrinsics = frontal_intrinsics(image_size, field_width, distance)
    vertices = np.asarray(surface.vertices, dtype=np.float64)
    centre = surface.view_centre()
    front = float(surface.used_vertices()[:, 2].max())
    camera = np.empty_like(vertices)
    camera[:, 0] = vertices[:, 0] - centre[0]
    camera[:, 1] = centre[1] - vertices[:, 1]
    camera[:, 2] = front + distance - vertices[:, 2]
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(camera.astype(np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(surface.triangles, dtype=np.uint32)),
    )
    v, u = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
    rays = np.zeros((image_size, image_size, 6), dtype=np.float32)
    rays[..., 3] = (u - intrinsics.cx) / intrinsics.fx
    rays[..., 4] = (v - intrinsics.cy) / intrinsics.fy
    rays[..., 5] = 1.0
    hits = scene.cast_rays(o3d.core.Tensor(rays), nthreads=1)
    t_hit = hits["t_hit"].numpy()
    hit = np.isfinite(t_hit)
    if not hit.any():
        raise DataError(
            f"no ray hits the surface: it lies outside the {field_width} m field around its view centre {centre}."
        )
    depth = np.where(hit, t_hit, 0.0).astype(np.float32)  # ray directions have z = 1: t is the z depth
    normals = np.zeros((image_size, image_size, 3), dtype=np.float32)
    n = hits["primitive_normals"].numpy()[hit]
    n[np.einsum("nc,nc->n", n, rays[hit][:, 3:]) > 0.0] *= -1.0  # face the camera
    normals[hit] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return FrontalView(depth=depth, normals=normals, intrinsics=intrinsics)
