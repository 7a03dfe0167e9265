import numpy as np
import pytest

pytest.importorskip("open3d")

from multimodal_fer.datasets.synthaffect.camera import face_crop_intrinsics  # noqa: E402
from multimodal_fer.datasets.synthaffect.face_model import FaceIdentity, build_face_mesh  # noqa: E402
from multimodal_fer.datasets.synthaffect.render import render_face  # noqa: E402
from multimodal_fer.errors import DataError  # noqa: E402
from multimodal_fer.geometry.pointcloud import depth_to_points  # noqa: E402


@pytest.fixture(scope="module")
def rendered():
    mesh = build_face_mesh(FaceIdentity(), np.zeros(16, np.float32))
    return render_face(mesh, FaceIdentity(), 64, 0.1, 0.05, 0.0, np.array([0, 0, 1.0]), 0.3, np.random.default_rng(0))


def test_points_shape_centred_and_normals(rendered):
    pts = depth_to_points(rendered.depth, rendered.intrinsics, 1024, 0.004, np.random.default_rng(0))
    assert pts.shape == (1024, 6) and pts.dtype == np.float32
    assert np.abs(pts[:, :3].mean(axis=0)).max() < 1e-4
    assert np.allclose(np.linalg.norm(pts[:, 3:], axis=1), 1.0, atol=1e-4)
    assert len(np.unique(pts[:, :3], axis=0)) == 1024  # no repeats when enough points
    # Normals face the camera: recover the camera-frame positions from the foreground centroid.
    fg = rendered.foreground
    assert 0.1 < np.ptp(pts[:, 0]) < 0.3  # a head is 10-30 cm across
    v, u = np.nonzero(fg)
    z = rendered.depth[fg]
    k = rendered.intrinsics
    raw = np.stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z], axis=1)
    centroid = raw.mean(axis=0)  # close to the voxelised cloud's centroid
    camera_dir = -(pts[:, :3] + centroid)
    facing = np.einsum("ij,ij->i", pts[:, 3:], camera_dir) > 0
    assert facing.mean() > 0.97


def test_deterministic_and_repeats_when_few_points(rendered):
    a = depth_to_points(rendered.depth, rendered.intrinsics, 512, 0.004, np.random.default_rng(1))
    b = depth_to_points(rendered.depth, rendered.intrinsics, 512, 0.004, np.random.default_rng(1))
    assert np.array_equal(a, b)
    few = depth_to_points(rendered.depth, rendered.intrinsics, 5000, 0.02, np.random.default_rng(1))
    assert few.shape == (5000, 6)
    assert len(np.unique(few[:, :3], axis=0)) < 5000


def test_errors(rendered):
    k = rendered.intrinsics
    with pytest.raises(DataError, match="no foreground"):
        depth_to_points(np.zeros((64, 64), np.float32), k, 100, 0.004, np.random.default_rng(0))
    with pytest.raises(DataError, match="shape"):
        depth_to_points(np.ones((32, 64), np.float32), k, 100, 0.004, np.random.default_rng(0))
    with pytest.raises(DataError, match="num_points"):
        depth_to_points(rendered.depth, k, 0, 0.004, np.random.default_rng(0))


def test_flat_plane_normals_point_to_camera():
    k = face_crop_intrinsics(32)
    depth = np.full((32, 32), 0.5, np.float32)
    pts = depth_to_points(depth, k, 200, 0.0, np.random.default_rng(0))
    assert np.allclose(pts[:, 3:], [0, 0, -1], atol=1e-3)
