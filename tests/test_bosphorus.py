import numpy as np
import pytest

from multimodal_fer.datasets import Bosphorus, SampleError, SubjectKFold
from multimodal_fer.errors import DataError
from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing
from multimodal_fer.types import UNION_LABEL_SPACE

from adapter_checks import (
    assert_subject_disjoint,
    fit_through_config,
    kill_midway_then_resume,
    prepared,
    tiny_datamodule,
)
from data.bosphorus.generate import write_fake_bosphorus

PREPROCESSING = MediaPreprocessing(image_size=32, num_points=128)


def _datamodule(raw, root, **kwargs):
    return tiny_datamodule(Bosphorus(**kwargs), raw, root, split=SubjectKFold(num_folds=3), preprocessing=PREPROCESSING)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("bosphorus_raw")
    return raw, write_fake_bosphorus(raw)


def test_bosphorus_prepares_expected_scans_labels_failures_and_occlusion_flags(fake, tmp_path):
    raw, expected = fake
    result = prepared(_datamodule(raw, tmp_path / "cache"))
    assert result["samples"] == expected["samples"]
    assert result["failures"] == expected["failures"]
    assert {r["source"]: r["reason"] for r in result["rejections"]} == expected["rejections"]
    summary = result["summary"]
    assert summary["failures"]["truncated .bnt file"] == 1 and summary["failures"]["no valid point in the scan"] == 1
    assert summary["expression_counts"]["happy"] == 6 and summary["expression_counts"]["neutral"] == 6
    assert summary["au_positives"]["AU12"] == 2 and summary["au_positives"]["AU25"] == 1
    assert summary["modalities"] == {"depth": len(expected["samples"])}
    assert_subject_disjoint(result)
    aus = Bosphorus().label_space.action_units
    for key, named in expected["au"].items():
        values = result["au"][key]
        for j, au in enumerate(aus):
            assert values[j] == named[au] if au in named else np.isnan(values[j])
    assert (result["au"]["bs000_N_N_0"] == 0).all()  # neutral scans: every AU absent
    assert np.isnan(result["au"]["bs000_E_HAPPY_0"]).all()  # emotion scans carry no AU labels
    reader = result["reader"]
    keys = [r["key"] for r in _datamodule(raw, tmp_path / "cache").sample_records()]
    occlusion = np.asarray(reader.array("occlusion_type"))
    flagged = {keys[i]: OCCLUSION_TYPES[occlusion[i]] for i in reader.usable if occlusion[i] >= 0}
    assert flagged == expected["occluded"]
    assert reader.manifest["occlusion_types"] == list(OCCLUSION_TYPES)


def test_bosphorus_depth_maps_and_points_are_centred_faces(fake, tmp_path):
    raw, _ = fake
    datamodule = _datamodule(raw, tmp_path / "cache")
    reader = datamodule.prepare()
    keys = [r["key"] for r in datamodule.sample_records()]
    depth = np.asarray(reader.array("depth"), dtype=np.float32)
    points = np.asarray(reader.array("points"), dtype=np.float32)
    assert depth.shape[1:] == (1, 32, 32) and points.shape[1:] == (128, 6)
    for i in reader.usable:
        face = depth[i, 0]
        assert 0.3 < (face > 0).mean() < 0.8  # a face in the middle of the frame, background around it
        assert np.isfinite(points[i]).all() and np.allclose(np.linalg.norm(points[i, :, 3:], axis=1), 1, atol=1e-2)
    neutral = depth[keys.index("bs000_N_N_0"), 0]
    nearest = np.unravel_index(np.where(neutral > 0, neutral, np.inf).argmin(), neutral.shape)
    assert abs(nearest[0] - 15.5) <= 1.5 and abs(nearest[1] - 15.5) <= 1.5  # centred on the .lm3 nose tip
    assert abs(neutral[neutral > 0].min() - 0.46) < 0.005  # the nose tip 0.46 m from the virtual camera
    # the hand held in front of the eyes is nearer the camera than the nose tip of the same subject's neutral scan
    occluded = depth[keys.index("bs003_O_EYE_0"), 0]
    assert (
        occluded[occluded > 0].min()
        < depth[keys.index("bs003_N_N_0"), 0][depth[keys.index("bs003_N_N_0"), 0] > 0].min()
    )
    # different expressions give different surfaces
    assert np.abs(depth[keys.index("bs000_E_SURPRISE_0")] - depth[keys.index("bs000_N_N_0")]).max() > 0.002


def test_bosphorus_options_and_a_wrong_root(fake, tmp_path):
    raw, _ = fake
    listing = Bosphorus(scan_classes=["N", "E", "YR"], action_units=[]).list_samples(raw)
    keys = {s.key for s in listing.samples}
    assert "bs005_YR_R10_0" in keys and "bs000_LFAU_12_0" not in keys
    assert all(s.labels.au is None for s in listing.samples)
    with pytest.raises(ValueError, match="not Bosphorus classes"):
        Bosphorus(scan_classes=["X"])
    with pytest.raises(ValueError, match="occlusion_kinds"):
        Bosphorus(occlusion_kinds={"EYE": "bandage"})
    with pytest.raises(DataError, match="bs000_N_N_0.bnt"):
        Bosphorus().list_samples(tmp_path)
    # the wrong grid order scatters neighbours across the grid: no cell survives, and the failure names the option
    sample = next(s for s in Bosphorus().list_samples(raw).samples if s.key == "bs000_N_N_0")
    assert len(Bosphorus().load(raw, sample).surface.triangles) > 1000
    with pytest.raises(SampleError, match="grid_order='column'"):
        Bosphorus(grid_order="column").load(raw, sample)
    # without landmarks the view centres on the surface's middle
    assert Bosphorus(use_landmarks=False).list_samples(raw).samples[0].locators["landmarks"] is None


def test_bosphorus_maps_into_the_union_space():
    space = Bosphorus().label_space
    space.in_vocabulary()
    expr, _, _ = space.map_labels(
        UNION_LABEL_SPACE, np.arange(7), np.zeros((7, len(space.action_units))), np.zeros((7, 0))
    )
    assert [UNION_LABEL_SPACE.expressions[i] for i in expr] == list(space.expressions)


def test_bosphorus_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: _datamodule(raw, root), tmp_path, count=7)
    assert straight == resumed


def test_bosphorus_fits_depth_only_through_its_config(fake, tmp_path):
    raw, _ = fake
    fit_through_config(
        "bosphorus.yaml",
        raw,
        tmp_path / "cache",
        tmp_path,
        ["--data.init_args.split.init_args.num_folds=3", "--data.init_args.preprocessing.num_points=256"],
    )
    assert (tmp_path / "cache" / "summary.json").exists()
