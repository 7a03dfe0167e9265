import numpy as np
import pytest

from multimodal_fer.datasets.synthaffect.face_model import (
    LANDMARK_NAMES,
    REGION_EYE_WHITE,
    REGION_IRIS,
    REGION_MOUTH,
    FaceIdentity,
    build_face_mesh,
    sample_face_identity,
)
from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_AUS
from multimodal_fer.errors import DataError

pytest.importorskip("open3d")
from multimodal_fer.datasets.synthaffect.render import render_face  # noqa: E402

IDENTITY = FaceIdentity()
LIGHT = np.array([0.2, 0.3, 1.0]) / np.linalg.norm([0.2, 0.3, 1.0])


def aus(**values: float) -> np.ndarray:
    vec = np.zeros(len(SYNTHAFFECT_AUS), np.float32)
    for name, value in values.items():
        vec[SYNTHAFFECT_AUS.index(int(name[2:]))] = value
    return vec


def lm(mesh, name):
    return mesh.landmarks_3d[name]


def test_mesh_shapes_and_dtypes():
    mesh = build_face_mesh(IDENTITY, aus())
    assert mesh.vertices.dtype == np.float32 and mesh.vertices.ndim == 2 and mesh.vertices.shape[1] == 3
    assert mesh.triangles.dtype == np.int32 and mesh.triangles.shape[1] == 3
    assert 8_000 < len(mesh.triangles) < 30_000
    assert mesh.triangles.max() < len(mesh.vertices)
    assert mesh.vertex_region.dtype == np.uint8 and mesh.vertex_region.shape == (len(mesh.vertices),)
    assert set(LANDMARK_NAMES) <= set(mesh.landmarks_3d)
    assert all(v.shape == (3,) for v in mesh.landmarks_3d.values())
    # Head frame: nose in front, eyes above the mouth, subject's left eye at +x.
    assert lm(mesh, "nose_tip")[2] > lm(mesh, "left_eye")[2]
    assert lm(mesh, "left_eye")[1] > lm(mesh, "mouth_center")[1] > lm(mesh, "chin")[1]
    assert lm(mesh, "left_eye")[0] > 0 > lm(mesh, "right_eye")[0]


def test_mesh_is_deterministic_and_identity_changes_it():
    a = build_face_mesh(IDENTITY, aus(AU12=0.7))
    b = build_face_mesh(IDENTITY, aus(AU12=0.7))
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.vertex_region, b.vertex_region)
    i1 = sample_face_identity(np.random.default_rng(5))
    assert i1 == sample_face_identity(np.random.default_rng(5))
    assert i1 != sample_face_identity(np.random.default_rng(6))
    for seed in range(20):
        identity = sample_face_identity(np.random.default_rng(seed))
        assert all(0.0 <= c <= 1.0 for c in identity.skin_tone + identity.iris_colour + identity.hair_colour)


def test_au12_raises_and_widens_mouth_corners():
    rest, smile = build_face_mesh(IDENTITY, aus()), build_face_mesh(IDENTITY, aus(AU12=1.0))
    for side in ("left_mouth_corner", "right_mouth_corner"):
        assert lm(smile, side)[1] > lm(rest, side)[1] + 0.004
    width = lambda m: lm(m, "left_mouth_corner")[0] - lm(m, "right_mouth_corner")[0]  # noqa: E731
    assert width(smile) > width(rest) + 0.006


def test_asymmetry_makes_contempt_unilateral():
    mesh = build_face_mesh(IDENTITY, aus(AU12=1.0, AU14=1.0), asymmetry=1.0)
    rest = build_face_mesh(IDENTITY, aus())
    left_rise = lm(mesh, "left_mouth_corner")[1] - lm(rest, "left_mouth_corner")[1]
    right_rise = lm(mesh, "right_mouth_corner")[1] - lm(rest, "right_mouth_corner")[1]
    assert left_rise > 0.004 and abs(right_rise) < 0.001


def test_au26_lowers_chin_and_opens_mouth():
    rest, open_ = build_face_mesh(IDENTITY, aus()), build_face_mesh(IDENTITY, aus(AU26=1.0, AU25=1.0))
    assert lm(open_, "chin")[1] < lm(rest, "chin")[1] - 0.012
    # The mouth-interior material is stretched open: its vertical extent grows.
    extent = lambda m: np.ptp(m.vertices[m.vertex_region == REGION_MOUTH][:, 1])  # noqa: E731
    assert extent(open_) > extent(rest) + 0.01


def test_brow_aus_move_brows():
    rest = build_face_mesh(IDENTITY, aus())
    up = build_face_mesh(IDENTITY, aus(AU1=1.0, AU2=1.0))
    down = build_face_mesh(IDENTITY, aus(AU4=1.0))
    for side in ("left_brow", "right_brow"):
        assert lm(up, side)[1] > lm(rest, side)[1] + 0.004
        assert lm(down, side)[1] < lm(rest, side)[1] - 0.003


def test_au5_opens_and_au7_narrows_the_eyes():
    count = lambda m: np.isin(m.vertex_region, [REGION_EYE_WHITE, REGION_IRIS]).sum()  # noqa: E731
    extent = lambda m: np.ptp(m.vertices[np.isin(m.vertex_region, [REGION_EYE_WHITE])][:, 1])  # noqa: E731
    rest = build_face_mesh(IDENTITY, aus())
    assert extent(build_face_mesh(IDENTITY, aus(AU5=1.0))) > extent(rest)
    assert extent(build_face_mesh(IDENTITY, aus(AU7=1.0, AU6=1.0))) < extent(rest)
    assert count(rest) > 0


def test_bad_au_shape():
    with pytest.raises(DataError, match="SYNTHAFFECT_AUS"):
        build_face_mesh(IDENTITY, np.zeros(5))


def _render(mesh, size=64, seed=0, pose=(0.0, 0.0, 0.0)):
    return render_face(mesh, IDENTITY, size, *pose, LIGHT, 0.35, np.random.default_rng(seed))


def test_render_outputs():
    out = _render(build_face_mesh(IDENTITY, aus()), size=64)
    assert out.rgb.shape == (64, 64, 3) and out.rgb.dtype == np.uint8
    assert out.depth.shape == (64, 64) and out.depth.dtype == np.float32
    assert out.normals.shape == (64, 64, 3) and out.normals.dtype == np.float32
    assert out.foreground.dtype == bool and 0.3 < out.foreground.mean() < 0.9
    assert (out.depth[out.foreground] > 0.3).all() and (out.depth[~out.foreground] == 0).all()
    assert (out.depth[out.foreground] < 0.7).all()
    norms = np.linalg.norm(out.normals[out.foreground], axis=1)
    assert np.allclose(norms, 1.0, atol=1e-3) and (out.normals[~out.foreground] == 0).all()
    assert (out.normals[out.foreground][:, 2] < 0.05).mean() > 0.98  # facing the camera (OpenCV frame)
    assert set(LANDMARK_NAMES) <= set(out.landmarks)
    for point in out.landmarks.values():
        assert point.shape == (2,) and point.dtype == np.float32 and (0 <= point).all() and (point < 64).all()
    assert out.intrinsics.width == 64


def test_render_geometry_matches_landmarks():
    out = _render(build_face_mesh(IDENTITY, aus()), size=112)
    p = {k: np.round(v).astype(int) for k, v in out.landmarks.items()}
    depth = lambda name: out.depth[p[name][1], p[name][0]]  # noqa: E731
    cheek = out.depth[p["nose_tip"][1], (p["nose_tip"][0] + p["left_eye"][0]) // 2 + 6]
    assert depth("nose_tip") < cheek - 0.01  # the nose is closer to the camera
    assert p["left_eye"][0] > p["right_eye"][0]  # subject's left eye on the image right
    assert p["left_eye"][1] < p["mouth_center"][1] < p["chin"][1]
    # The dark pupil lies under the eye landmark.
    gray = out.rgb.mean(axis=2)
    assert gray[p["left_eye"][1], p["left_eye"][0]] < np.median(gray[out.foreground])


def test_render_deterministic_and_pose_dependent():
    mesh = build_face_mesh(IDENTITY, aus(AU6=1.0, AU12=1.0))
    a, b = _render(mesh, seed=3), _render(mesh, seed=3)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)
    turned = _render(mesh, seed=3, pose=(0.4, 0.0, 0.0))
    assert turned.landmarks["nose_tip"][0] > a.landmarks["nose_tip"][0] + 3  # yaw > 0 turns to the image right


def test_expressions_change_the_image():
    neutral = _render(build_face_mesh(IDENTITY, aus()), seed=1).rgb.astype(int)
    surprise = _render(build_face_mesh(IDENTITY, aus(AU1=1, AU2=1, AU5=1, AU26=1)), seed=1).rgb.astype(int)
    assert np.abs(neutral - surprise).mean() > 2.0


def test_render_errors():
    mesh = build_face_mesh(IDENTITY, aus())
    with pytest.raises(DataError, match="light_direction"):
        render_face(mesh, IDENTITY, 64, 0, 0, 0, np.zeros(3), 0.3, np.random.default_rng(0))
