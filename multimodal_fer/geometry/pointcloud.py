"""Depth map → fixed-size point cloud with camera-facing normals (Open3D, imported lazily)."""

from __future__ import annotations

import numpy as np

from multimodal_fer._lazy import require
from multimodal_fer.errors import DataError
from multimodal_fer.geometry.camera import CameraIntrinsics


def depth_to_points(
    depth: np.ndarray,
    intrinsics: CameraIntrinsics,
    num_points: int,
    voxel_size: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Back-project a depth map, voxel-downsample it, estimate normals and sample a fixed number of points.

    Args:
        depth: float (H, W) metres along the camera z axis; 0 (or non-finite) where there is no surface.
        intrinsics: the pinhole camera of the depth map (OpenCV axes: x right, y down, z forward).
        num_points: number of points N to return (> 0).
        voxel_size: voxel edge in metres for down-sampling (0 keeps every pixel).
        rng: chooses the subsample (same state → same output).

    Returns:
        float32 (N, 6): xyz in metres in the camera frame, centred on the cloud centroid, then unit normals
        oriented towards the camera. Points are drawn without replacement, or repeated when the cloud has
        fewer than N points.

    Raises:
        DataError: the depth map has the wrong shape or no valid pixel, or the arguments are invalid.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.shape != (intrinsics.height, intrinsics.width):
        raise DataError(
            f"depth must be a 2-D map of shape (height, width) = ({intrinsics.height}, {intrinsics.width}) "
            f"matching the intrinsics, got {depth.shape}."
        )
    if num_points <= 0:
        raise DataError(f"num_points must be positive, got {num_points}.")
    if voxel_size < 0.0:
        raise DataError(f"voxel_size must be >= 0 metres, got {voxel_size}.")
    depth = depth.astype(np.float64)
    valid = np.isfinite(depth) & (depth > 0.0)
    if not valid.any():
        raise DataError("The depth map has no foreground pixel (all zero or invalid); cannot build points.")
    o3d = require("open3d", "converting depth maps to point clouds")

    v, u = np.nonzero(valid)
    z = depth[v, u]
    xyz = np.stack([(u - intrinsics.cx) * z / intrinsics.fx, (v - intrinsics.cy) * z / intrinsics.fy, z], axis=1)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
    if voxel_size > 0.0:
        cloud = cloud.voxel_down_sample(voxel_size)
    spacing = max(voxel_size, float(np.median(z)) / intrinsics.fx)
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=4.0 * spacing, max_nn=24))
    cloud.orient_normals_towards_camera_location(np.zeros(3))
    points = np.asarray(cloud.points)
    normals = np.asarray(cloud.normals)
    count = len(points)
    if count >= num_points:
        index = rng.choice(count, size=num_points, replace=False)
    else:
        index = np.concatenate([np.arange(count), rng.choice(count, size=num_points - count, replace=True)])
    index = np.sort(index)
    points = points[index]
    out = np.empty((num_points, 6), dtype=np.float32)
    out[:, :3] = points - points.mean(axis=0, keepdims=True)
    out[:, 3:] = normals[index] / np.maximum(np.linalg.norm(normals[index], axis=1, keepdims=True), 1e-12)
    return out
