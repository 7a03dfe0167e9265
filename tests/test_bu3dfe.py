import numpy as np
import pytest

from multimodal_fer.datasets import BU3DFE, SubjectKFold
from multimodal_fer.errors import DataError
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing

from adapter_checks import (
    REPO,
    assert_subject_disjoint,
    fit_through_config,
    kill_midway_then_resume,
    prepared,
    tiny_datamodule,
)
from data.bu3dfe.generate import write_fake_bu3dfe

PREPROCESSING = MediaPreprocessing(image_size=32, num_points=128)


def _datamodule(raw, root, **kwargs):
    return tiny_datamodule(BU3DFE(**kwargs), raw, root, split=SubjectKFold(num_folds=3), preprocessing=PREPROCESSING)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("bu3dfe_raw")
    return raw, write_fake_bu3dfe(raw)


def test_bu3dfe_prepares_expected_models_labels_intensities_and_failures(fake, tmp_path):
    raw, expected = fake
    datamodule = _datamodule(raw, tmp_path / "cache")
    result = prepared(datamodule)
    assert result["samples"] == expected["samples"]
    assert result["failures"] == expected["failures"]
    assert {r["source"]: r["reason"] for r in result["rejections"]} == expected["rejections"]
    summary = result["summary"]
    assert summary["expression_counts"] == {
        "neutral": 6, "anger": 1, "disgust": 0, "fear": 0, "happy": 6, "sad": 1, "surprise": 3
    }  # fmt: skip
    assert summary["failures"]["VRML mesh without faces"] == 1 and summary["failures"]["too few landmarks"] == 1
    assert_subject_disjoint(result)
    reader = result["reader"]
    keys = [r["key"] for r in datamodule.sample_records()]
    intensity = np.asarray(reader.array("intensity"))
    assert {keys[i]: int(intensity[i]) for i in reader.usable} == expected["intensity"]
    depth = np.asarray(reader.array("depth"), dtype=np.float32)
    points = np.asarray(reader.array("points"), dtype=np.float32)
    for i in reader.usable:
        assert 0.3 < (depth[i, 0] > 0).mean() < 0.8 and np.isfinite(points[i]).all()
    assert np.abs(depth[keys.index("F0001_SU03BL_F3D")] - depth[keys.index("F0001_NE00WH_F3D")]).max() > 0.002


def test_bu3dfe_protocol_options_and_a_wrong_root(fake, tmp_path):
    raw, _ = fake
    six = BU3DFE(intensities=[3, 4], include_neutral=False)
    assert six.label_space.expressions == ("anger", "disgust", "fear", "happy", "sad", "surprise")
    listing = six.list_samples(raw)
    assert {int(s.extras["intensity"]) for s in listing.samples} == {3, 4}
    reasons = {r.source: r.reason for r in listing.rejected}
    assert reasons["F0001/F0001_AN01WH_F3D.wrl"] == "intensity not included"
    assert reasons["F0001/F0001_NE00WH_F3D.wrl"] == "neutral not included"
    assert not any("RAW" in r.source for r in listing.rejected)  # other file types are not part of the listing
    with pytest.raises(ValueError, match="intensities"):
        BU3DFE(intensities=[5])
    with pytest.raises(DataError, match="F0001_AN01WH_F3D.wrl"):
        BU3DFE().list_samples(tmp_path)
    # the mesh is read as written: every vertex, none of the texture coordinates
    sample = next(s for s in BU3DFE().list_samples(raw).samples if s.key == "F0001_NE00WH_F3D")
    surface = BU3DFE().load(raw, sample).surface
    from data.bu3dfe.generate import face_mesh

    vertices, triangles = face_mesh("N", 70.0)
    np.testing.assert_allclose(surface.vertices, vertices * 0.001, atol=1e-7)
    np.testing.assert_array_equal(surface.triangles, triangles)
    no_landmarks = BU3DFE(use_landmarks=False)
    unlocated = next(s for s in no_landmarks.list_samples(raw).samples if s.key == "F0001_NE00WH_F3D")
    assert no_landmarks.load(raw, unlocated).surface.centre is None


def test_bu3dfe_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: _datamodule(raw, root), tmp_path, count=5)
    assert straight == resumed


def test_bu3dfe_fits_point_clouds_through_its_config(fake, tmp_path):
    raw, _ = fake
    fit_through_config(
        "bu3dfe.yaml",
        raw,
        tmp_path / "cache",
        tmp_path,
        [
            "--config",
            str(REPO / "configs" / "encoders" / "depth_pointnet.yaml"),
            "--data.init_args.split.init_args.num_folds=3",
            "--data.init_args.preprocessing.num_points=256",
        ],
    )
