"""The 3-D file readers on hand-made bytes and text: .bnt, VRML IndexedFaceSet, .lm3/.lm2 and .bnd."""

import struct

import numpy as np
import pytest

from multimodal_fer.errors import DataError
from multimodal_fer.geometry.frontal_view import render_frontal_view
from multimodal_fer.geometry.range_grid import grid_mesh
from multimodal_fer.geometry.surface import FaceSurface
from multimodal_fer.media.bnt import bnt_grid, read_bnt
from multimodal_fer.media.landmark_files_3d import read_bnd, read_bosphorus_landmarks
from multimodal_fer.media.vrml import read_vrml_mesh

from data.bosphorus.generate import bnt_bytes, lm3_text


def test_bnt_reads_the_documented_layout_and_refuses_damaged_files(tmp_path):
    points = np.arange(2 * 3 * 3, dtype=np.float64).reshape(2, 3, 3)
    points[1, 2] = np.nan  # background
    path = tmp_path / "a.bnt"
    path.write_bytes(bnt_bytes(points, zmin=-1e9, image_name="bs000_N_N_0.png"))
    scan = read_bnt(path)
    assert (scan.nrows, scan.ncols, scan.zmin, scan.image_name) == (2, 3, -1e9, "bs000_N_N_0.png")
    grid, valid = bnt_grid(scan)
    np.testing.assert_array_equal(grid[valid], points[np.isfinite(points).all(axis=2)])
    assert valid.tolist() == [[True, True, True], [True, True, False]]
    np.testing.assert_allclose(scan.data[:, 3:].max(axis=0), [1.0, 1.0])  # u, v
    data = path.read_bytes()
    path.write_bytes(data[:-8])
    with pytest.raises(DataError, match="truncated"):
        read_bnt(path)
    path.write_bytes(data + b"\0" * 8)
    with pytest.raises(DataError, match="bytes after"):
        read_bnt(path)
    wrong_count = bytearray(data)
    offset = struct.calcsize("<HHdH") + len("bs000_N_N_0.png")
    wrong_count[offset : offset + 4] = struct.pack("<I", 29)
    path.write_bytes(bytes(wrong_count))
    with pytest.raises(DataError, match="2×3 grid"):
        read_bnt(path)
    path.write_bytes(data[:5])
    with pytest.raises(DataError, match="truncated"):
        read_bnt(path)


def test_grid_mesh_drops_depth_steps_and_the_renderer_sees_the_nearest_surface():
    y, x = np.mgrid[0:20, 0:20].astype(np.float64)
    z = np.where(x < 10, 0.0, 0.05)  # a 5-cm step between two flat halves
    points = np.stack([x * 0.002, -y * 0.002, z], axis=-1)
    vertices, triangles = grid_mesh(points, np.ones((20, 20), bool), max_edge=0.01)
    assert len(triangles) == 2 * 19 * 18  # the column of cells across the step is dropped
    view = render_frontal_view(FaceSurface(vertices, triangles), 16, field_width=0.06, distance=0.5)
    hit = view.depth > 0
    assert hit.any() and np.allclose(view.depth[hit].min(), 0.5, atol=1e-4)
    assert np.allclose(view.normals[hit][:, 2], -1.0, atol=1e-4)  # flat faces facing the camera
    with pytest.raises(DataError, match="no triangle"):
        FaceSurface(vertices, np.zeros((0, 3), int))
    with pytest.raises(DataError, match="outside"):
        render_frontal_view(FaceSurface(vertices, triangles, centre=np.array([5.0, 5.0, 0.0])), 16, 0.06, 0.5)


_WRL = """#VRML V2.0 utf8
# a comment with point [ 9 9 9 ] in it
Shape { geometry IndexedFaceSet {
  coord Coordinate { point [ 0 0 0, 1 0 0, 1 1 0,
    0 1 0 ] }
  texCoord TextureCoordinate { point [ 0 0, 1 0, 1 1, 0 1 ] }
  coordIndex [ 0, 1, 2, 3, -1 ]
  texCoordIndex [ 0, 1, 2, 3, -1 ]
} }
"""


def test_vrml_reader_triangulates_polygons_and_skips_texture_coordinates(tmp_path):
    path = tmp_path / "m.wrl"
    path.write_text(_WRL)
    vertices, triangles = read_vrml_mesh(path)
    assert vertices.shape == (4, 3) and triangles.tolist() == [[0, 1, 2], [0, 2, 3]]
    for text, match in [
        (_WRL.replace("#VRML V2.0 utf8", "solid x"), "not a VRML file"),
        (_WRL.replace("coordIndex [ 0, 1, 2, 3, -1 ]", ""), "without faces"),
        (_WRL.replace("coordIndex [ 0, 1, 2, 3, -1 ]", "coordIndex [ ]"), "no faces"),
        (_WRL.replace("coordIndex [ 0, 1, 2, 3, -1 ]", "coordIndex [ 0, 1, 7, -1 ]"), "names vertex 7"),
        (_WRL.replace("coordIndex [ 0, 1, 2, 3, -1 ]", "coordIndex [ 0, 1, -1 ]"), "polygon of 2"),
        (_WRL.replace("1 1 0,", "1 1 x,"), "non-number"),
        (_WRL.replace("1 1 0,", "1 1,"), "triples"),
    ]:
        path.write_text(text)
        with pytest.raises(DataError, match=match):
            read_vrml_mesh(path)


def test_landmark_files_are_read_and_cut_ones_refused(tmp_path):
    path = tmp_path / "a.lm3"
    path.write_text(lm3_text(["Nose tip", "Chin middle"], np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])))
    landmarks = read_bosphorus_landmarks(path)
    assert list(landmarks) == ["Nose tip", "Chin middle"] and landmarks["Chin middle"].tolist() == [4.0, 5.0, 6.0]
    path.write_text(lm3_text(["Nose tip"], np.array([[1.0, 2.0, 3.0]]), declared=22))
    with pytest.raises(DataError, match="announces 22 landmarks but holds 1"):
        read_bosphorus_landmarks(path)
    path.write_text(lm3_text(["Nose tip"], np.array([[1.0, 2.0]])))
    assert read_bosphorus_landmarks(path, dims=2)["Nose tip"].tolist() == [1.0, 2.0]
    with pytest.raises(DataError, match="not 3 finite numbers"):
        read_bosphorus_landmarks(path, dims=3)
    path.write_text("no header\n")
    with pytest.raises(DataError, match="landmarks:"):
        read_bosphorus_landmarks(path)
    bnd = tmp_path / "a.bnd"
    bnd.write_text("12\t\t1.5\t\t-2.0\t\t30.25\n7\t\t0\t\t0\t\t0\n")
    indices, points = read_bnd(bnd)
    assert indices.tolist() == [12, 7] and points[0].tolist() == [1.5, -2.0, 30.25]
    bnd.write_text("12\t\t1.5\t\t-2.0\n")
    with pytest.raises(DataError, match="line 1"):
        read_bnd(bnd)
