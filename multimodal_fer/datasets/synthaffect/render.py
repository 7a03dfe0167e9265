"""Ray-cast rendering of SynthAffect face meshes into RGB, depth and normal images (Open3D).

Open3D is imported lazily, only when a face is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from multimodal_fer._lazy import require
from multimodal_fer.datasets.synthaffect.camera import CAMERA_DISTANCE, CAMERA_TARGET_Y, face_crop_intrinsics
from multimodal_fer.datasets.synthaffect.face_model import (
    REGION_BROW,
    REGION_EYE_WHITE,
    REGION_HAIR,
    REGION_IRIS,
    REGION_LIPS,
    REGION_MOUTH,
    REGION_NAMES,
    REGION_NOSTRIL,
    REGION_PUPIL,
    REGION_SKIN,
    REGION_TEETH,
    FaceIdentity,
    FaceMesh,
)
from multimodal_fer.errors import DataError
from multimodal_fer.geometry.camera import CameraIntrinsics

__all__ = ["CameraIntrinsics", "RenderedFace", "render_face"]

#: Specular strength per region id.
_SPECULAR = np.zeros(len(REGION_NAMES), dtype=np.float32)
_SPECULAR[[REGION_SKIN, REGION_LIPS, REGION_EYE_WHITE, REGION_IRIS, REGION_PUPIL, REGION_TEETH]] = (
    0.06,
    0.12,
    0.35,
    0.45,
    0.45,
    0.2,
)


@dataclass
class RenderedFace:
    """One rendered view of a face.

    Attributes:
        rgb: uint8 (H, W, 3) shaded image with background, noise and a slight blur.
        depth: float32 (H, W) metres along the camera z axis; 0 on the background.
        normals: float32 (H, W, 3) unit surface normals in the camera frame (OpenCV axes: x right, y down,
            z forward, so normals facing the camera have z < 0); 0 on the background.
        foreground: bool (H, W) True where a ray hit the head.
        landmarks: name → float32 (2,) pixel coordinates (x, y) of the projected 3D landmarks.
        intrinsics: the camera.
    """

    rgb: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    foreground: np.ndarray
    landmarks: dict[str, np.ndarray]
    intrinsics: CameraIntrinsics


@lru_cache(maxsize=8)
def _ray_grid(image_size: int) -> np.ndarray:
    """Rays from the camera centre through every pixel centre, float32 (H, W, 6), direction z = 1."""
    intr = face_crop_intrinsics(image_size)
    v, u = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
    rays = np.zeros((image_size, image_size, 6), dtype=np.float32)
    rays[..., 3] = (u - intr.cx) / intr.fx
    rays[..., 4] = (v - intr.cy) / intr.fy
    rays[..., 5] = 1.0
    rays.setflags(write=False)
    return rays


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head rotation (head frame: +y up, +z to the camera): roll about z · yaw about y · pitch about x."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _head_to_camera(points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Rotate head-frame points by the pose and express them in the OpenCV camera frame, (N, 3)."""
    world = points @ rotation.T
    cam = np.empty_like(world)
    cam[:, 0] = world[:, 0]
    cam[:, 1] = CAMERA_TARGET_Y - world[:, 1]
    cam[:, 2] = CAMERA_DISTANCE - world[:, 2]
    return cam


def _head_to_camera_directions(directions: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Rotate head-frame directions by the pose into the OpenCV camera frame, float32 (N, 3)."""
    flip = np.array([1.0, -1.0, -1.0])
    return (directions.astype(np.float32) @ (rotation.T * flip[None, :]).astype(np.float32)).astype(np.float32)


def _vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, float32 (V, 3), unit length."""
    v0, v1, v2 = vertices[triangles[:, 0]], vertices[triangles[:, 1]], vertices[triangles[:, 2]]
    face_n = np.cross(v1 - v0, v2 - v0)
    normals = np.zeros_like(vertices)
    n_vert = len(vertices)
    for k in range(3):
        normals[:, k] = (
            np.bincount(triangles[:, 0], face_n[:, k], n_vert)
            + np.bincount(triangles[:, 1], face_n[:, k], n_vert)
            + np.bincount(triangles[:, 2], face_n[:, k], n_vert)
        )
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return normals


def _palette(identity: FaceIdentity) -> np.ndarray:
    """Albedo per region id, float32 (R, 3)."""
    skin = np.asarray(identity.skin_tone, dtype=np.float32)
    hair = np.asarray(identity.hair_colour, dtype=np.float32)
    palette = np.empty((len(REGION_NAMES), 3), dtype=np.float32)
    palette[REGION_SKIN] = skin
    palette[REGION_BROW] = 0.75 * hair + 0.25 * skin * 0.5
    palette[REGION_EYE_WHITE] = (0.88, 0.85, 0.80)
    palette[REGION_IRIS] = identity.iris_colour
    palette[REGION_PUPIL] = (0.03, 0.03, 0.03)
    palette[REGION_LIPS] = identity.lip_colour
    palette[REGION_MOUTH] = (0.22, 0.06, 0.06)
    palette[REGION_TEETH] = (0.88, 0.85, 0.76)
    palette[REGION_NOSTRIL] = skin * 0.25
    palette[REGION_HAIR] = hair
    return palette


def _blur(image: np.ndarray, weight: float) -> np.ndarray:
    """Separable 3-tap blur [w, 1 - 2w, w] with edge replication, (H, W, C) float32."""
    padded = np.pad(image, ((1, 1), (0, 0), (0, 0)), mode="edge")
    image = weight * (padded[:-2] + padded[2:]) + (1.0 - 2.0 * weight) * padded[1:-1]
    padded = np.pad(image, ((0, 0), (1, 1), (0, 0)), mode="edge")
    return weight * (padded[:, :-2] + padded[:, 2:]) + (1.0 - 2.0 * weight) * padded[:, 1:-1]


def render_face(
    mesh: FaceMesh,
    identity: FaceIdentity,
    image_size: int,
    yaw: float,
    pitch: float,
    roll: float,
    light_direction: np.ndarray,
    ambient: float,
    rng: np.random.Generator,
    noise_rng: np.random.Generator | None = None,
) -> RenderedFace:
    """Ray-cast one view of a face mesh: shaded RGB plus depth, normals, foreground and 2D landmarks.

    Args:
        mesh: the head mesh in the head frame.
        identity: the subject, for the region colours.
        image_size: width and height of the square image in pixels.
        yaw: head rotation about the vertical axis, radians (> 0 turns the face towards the image right).
        pitch: head rotation about the horizontal axis, radians (> 0 tilts the face down).
        roll: head rotation about the camera axis, radians.
        light_direction: float (3,) direction from the face towards the light in the head frame before
            the pose (+x image right, +y up, +z towards the camera); normalised here.
        ambient: ambient light fraction in [0, 1].
        rng: draws the background, light tint, noise and blur (same state → identical output).
        noise_rng: draws the per-pixel sensor noise instead of ``rng`` (its level still comes from ``rng``), so
            that frames of one clip rendered from copies of one ``rng`` state share background, tint, blur and
            noise level but get fresh noise; None: ``rng`` draws it too.

    Returns:
        The :class:`RenderedFace`.

    Raises:
        DataError: an invalid image size or light direction.
    """
    o3d = require("open3d", "rendering SynthAffect faces")
    if image_size < 8:
        raise DataError(f"image_size must be at least 8 pixels, got {image_size}.")
    light = np.asarray(light_direction, dtype=np.float64).reshape(-1)
    if light.shape != (3,) or not np.isfinite(light).all() or np.linalg.norm(light) == 0.0:
        raise DataError(f"light_direction must be a finite non-zero (3,) vector, got {light_direction!r}.")
    light = light / np.linalg.norm(light)
    light_cam = np.array([light[0], -light[1], -light[2]], dtype=np.float32)
    intr = face_crop_intrinsics(image_size)
    rotation = _rotation(yaw, pitch, roll)

    vertices = _head_to_camera(mesh.vertices.astype(np.float64), rotation).astype(np.float32)
    triangles = np.ascontiguousarray(mesh.triangles, dtype=np.int32)
    if mesh.vertex_normals is not None:
        vnormals = _head_to_camera_directions(mesh.vertex_normals, rotation)
    else:
        vnormals = _vertex_normals(vertices, triangles)
    # Back-face culling: a triangle none of whose vertices faces the camera cannot be the first hit of a
    # ray on a closed head (it is only ever seen from inside); dropping it halves the BVH build time.
    facing = np.einsum("vc,vc->v", vnormals, vertices) < 0.0
    kept = np.flatnonzero(facing[triangles].any(axis=1))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(vertices), o3d.core.Tensor(np.ascontiguousarray(triangles[kept]).view(np.uint32))
    )
    rays = _ray_grid(image_size)
    hits = scene.cast_rays(o3d.core.Tensor(rays), nthreads=1)
    t_hit = hits["t_hit"].numpy()
    foreground = np.isfinite(t_hit)
    prim = kept[hits["primitive_ids"].numpy()[foreground].astype(np.int64)]
    uv = hits["primitive_uvs"].numpy()[foreground]

    depth = np.where(foreground, t_hit, 0.0).astype(np.float32)
    corners = triangles[prim]  # (N, 3)
    bary = np.empty((len(prim), 3), dtype=np.float32)
    bary[:, 1:] = uv
    bary[:, 0] = 1.0 - uv[:, 0] - uv[:, 1]
    n = np.einsum("nk,nkc->nc", bary, vnormals[corners])
    dirs = rays[foreground][:, 3:]
    flip = np.einsum("nc,nc->n", n, dirs) > 0.0  # make normals face the camera
    n[flip] *= -1.0
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

    palette = _palette(identity)
    region = mesh.vertex_region
    albedo = np.einsum("nk,nkc->nc", bary, palette[region[corners]])
    specular = np.einsum("nk,nk->n", bary, _SPECULAR[region[corners]])
    view = -dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    half = view + light_cam
    half /= np.linalg.norm(half, axis=1, keepdims=True)
    diffuse = np.clip(n @ light_cam, 0.0, None)
    spec = specular * np.clip(np.einsum("nc,nc->n", n, half), 0.0, None) ** 24
    tint = 1.0 + rng.normal(0.0, 0.04, 3).astype(np.float32)
    shade = ambient + (1.0 - ambient) * 1.1 * diffuse
    colour = albedo * shade[:, None] * tint[None, :] + spec[:, None]

    # Background: a vertical/horizontal gradient between two muted colours.
    c0, c1 = rng.uniform(0.1, 0.85, 3), rng.uniform(0.1, 0.85, 3)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = np.linspace(-0.5, 0.5, image_size, dtype=np.float32)
    proj = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None] + 0.5
    image = (c0[None, None, :] * (1.0 - proj[..., None]) + c1[None, None, :] * proj[..., None]).astype(np.float32)
    image[foreground] = colour

    image = _blur(image, float(rng.uniform(0.04, 0.16)))
    noise_std = rng.uniform(0.004, 0.018)
    image += (rng if noise_rng is None else noise_rng).normal(0.0, noise_std, image.shape).astype(np.float32)
    rgb = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)

    normals = np.zeros((image_size, image_size, 3), dtype=np.float32)
    normals[foreground] = n
    names = list(mesh.landmarks_3d)
    points = _head_to_camera(np.stack([mesh.landmarks_3d[k] for k in names]).astype(np.float64), rotation)
    pixels = np.stack(
        [intr.fx * points[:, 0] / points[:, 2] + intr.cx, intr.fy * points[:, 1] / points[:, 2] + intr.cy], axis=1
    ).astype(np.float32)
    return RenderedFace(
        rgb=rgb,
        depth=depth,
        normals=normals,
        foreground=foreground,
        landmarks={k: pixels[i] for i, k in enumerate(names)},
        intrinsics=intr,
    )
