import numpy as np
import pytest

from multimodal_fer.datamodules import FERDataModule
from multimodal_fer.datasets import OfficialSplits
from multimodal_fer.datasets.affectnet import AffectNet
from multimodal_fer.errors import DataError
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing
from multimodal_fer.types import UNION_LABEL_SPACE

from adapter_checks import (
    assert_subject_disjoint,
    fit_through_config,
    kill_midway_then_resume,
    prepared,
    tiny_datamodule,
)
from data.affectnet.generate import HEADER, write_fake_affectnet


def _datamodule(raw, root, **kwargs):
    return tiny_datamodule(AffectNet(**kwargs), raw, root, split=OfficialSplits(val_fraction=0.2))


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("affectnet_raw")
    return raw, write_fake_affectnet(raw)


def _failure_prefixes(result):
    return {source: reason.split(":")[0] for source, reason in result["failures"].items()}


def test_affectnet_prepares_expected_samples_labels_and_failures(fake, tmp_path):
    raw, expected = fake
    result = prepared(_datamodule(raw, tmp_path / "cache"))
    assert result["samples"] == expected["samples"]
    assert _failure_prefixes(result) == expected["failures"]
    reasons = {}
    for rejection in result["rejections"]:
        reasons[rejection["reason"]] = reasons.get(rejection["reason"], 0) + 1
    assert reasons == expected["rejections"]
    # valence/arousal stored as given, -2 as NaN (unlabelled), with the expression still labelled
    for key, va in expected["va"].items():
        np.testing.assert_allclose(result["va"][key], va, atol=1e-6)
    assert sum(np.isnan(v).all() for v in result["va"].values()) == 1
    summary = result["summary"]
    assert summary["splits"] == {"test": 5, "train": 11}
    assert summary["expression_counts"]["contempt"] == 2 and sum(summary["expression_counts"].values()) == 16
    assert summary["va_labelled"] == 15
    assert summary["failures"]["expression code 9 (Uncertain) excluded"] == 2
    # the excluded codes never reach the cache as labels: every cached expression is a class index
    expr = np.asarray(result["reader"].array("expr"))[result["reader"].usable]
    assert ((expr >= 0) & (expr < 8)).all()
    # the zero-box row's face was detected in the photo (default zero_box="detect")
    assert expected["keys"]["zero_box"] in result["samples"]
    assert_subject_disjoint(result)
    # official validation images are the test split; validation is carved from training images
    assert result["splits"]["test"] == sorted(k for k, (s, _) in expected["samples"].items() if s == "test")
    assert len(result["splits"]["val"]) == 2


def test_affectnet_7_class_rejects_contempt(fake, tmp_path):
    raw, expected = fake
    result = prepared(_datamodule(raw, tmp_path / "cache", num_classes=7))
    contempt = set(expected["keys"]["contempt"])
    assert result["samples"] == {k: v for k, v in expected["samples"].items() if k not in contempt}
    reasons = [r["reason"] for r in result["rejections"]]
    assert reasons.count("contempt excluded in AffectNet-7") == 2
    assert AffectNet(num_classes=7).label_space.expressions == (
        "neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"
    )  # fmt: skip


def test_affectnet_zero_box_reject_and_none_rows_kept_for_va(fake, tmp_path):
    raw, expected = fake
    adapter = AffectNet(zero_box="reject", keep_none_for_va=True)
    listing = adapter.list_samples(raw)
    keys = {s.key: s for s in listing.samples}
    assert expected["keys"]["zero_box"] not in keys
    assert "zero-size face box" in [r.reason for r in listing.rejected]
    none_row = keys[expected["keys"]["none_with_va"]]
    assert none_row.labels.expr == -1 and none_row.labels.va == pytest.approx((0.1, -0.3))
    # None rows without valence/arousal, Uncertain and Non-Face stay excluded
    assert {"expression code 9 (Uncertain) excluded", "expression code 10 (Non-Face) excluded"} <= {
        r.reason for r in listing.rejected
    }
    result = prepared(
        FERDataModule(
            dataset=adapter,
            raw_root=str(raw),
            root=str(tmp_path / "cache"),
            split=OfficialSplits(val_fraction=0.2),
            preprocessing=MediaPreprocessing(image_size=32),
            preparation_workers=0,
            num_workers=0,
        )
    )
    assert result["samples"][expected["keys"]["none_with_va"]] == ("train", None)
    np.testing.assert_allclose(result["va"][expected["keys"]["none_with_va"]], (0.1, -0.3), atol=1e-6)


def test_affectnet_load_gives_box_and_landmarks_from_the_row(fake):
    raw, _ = fake
    for alignment in ("landmarks", "box"):
        adapter = AffectNet(alignment=alignment)
        sample = adapter.list_samples(raw).samples[0]
        media = adapter.load(raw, sample)
        assert media.image.dtype == np.uint8 and media.face_box is not None and not media.face_aligned
        line = (raw / "Manually_Annotated_file_lists" / "training.csv").read_text().splitlines()[1].split(",")
        assert media.face_box == tuple(float(v) for v in line[1:5])
        if alignment == "landmarks":
            np.testing.assert_allclose(media.face_points.reshape(-1), [float(v) for v in line[5].split(";")], atol=1e-4)
        else:
            assert media.face_points is None


def test_affectnet_maps_into_the_union_space():
    space = AffectNet().label_space
    space.in_vocabulary()
    va = np.array([[0.5, -0.25]] * 8)
    expr, au, mapped_va = space.map_labels(UNION_LABEL_SPACE, np.arange(8), np.zeros((8, 0)), va)
    assert [UNION_LABEL_SPACE.expressions[i] for i in expr] == list(space.expressions)
    assert np.isnan(au).all() and au.shape == (8, len(UNION_LABEL_SPACE.action_units))
    np.testing.assert_allclose(mapped_va[:, :2], va) and np.isnan(mapped_va[:, 2]).all()


def test_affectnet_refuses_missing_lists_and_a_wrong_header(tmp_path):
    with pytest.raises(DataError, match="training.csv"):
        AffectNet().list_samples(tmp_path)
    lists = tmp_path / "Manually_Annotated_file_lists"
    lists.mkdir()
    (lists / "training.csv").write_text("path,expression\n")
    (lists / "validation.csv").write_text(HEADER + "\n")
    with pytest.raises(DataError, match="header"):
        AffectNet().list_samples(tmp_path)
    with pytest.raises(DataError, match="automatically_annotated"):
        AffectNet(include_automatic=True).list_samples(tmp_path)
    with pytest.raises(ValueError, match="num_classes"):
        AffectNet(num_classes=5)


def test_affectnet_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: _datamodule(raw, root), tmp_path, count=6)
    assert straight == resumed


def test_affectnet_fits_through_its_config(fake, tmp_path):
    raw, _ = fake
    fit_through_config(
        "affectnet.yaml", raw, tmp_path / "cache", tmp_path, ["--data.init_args.preprocessing.image_size=32"]
    )


def test_occlusion_affectnet_style_lists_select_validation_images(fake, tmp_path):
    """RAN's Occlusion-AffectNet list names images as ``val/<class>/<file stem>/``: the stem finds them."""
    raw, expected = fake
    datamodule = _datamodule(raw, tmp_path / "cache")
    datamodule.prepare()
    datamodule.setup()
    records = datamodule.sample_records()
    chosen = [records[i] for i in datamodule.splits["test"][:2]]
    listed = tmp_path / "occlusion_affectnet_list.txt"
    stems = [record["source"].rsplit("/", 1)[-1].removesuffix(".jpg") for record in chosen]
    listed.write_text("".join(f"val/3/{stem}/\n" for stem in stems))
    subset = tiny_datamodule(
        AffectNet(), raw, tmp_path / "cache", split=OfficialSplits(val_fraction=0.2), test_subset=str(listed)
    )
    subset.setup()
    assert sorted(subset.subset.indices.tolist()) == sorted(datamodule.splits["test"][:2].tolist())
    assert subset.test_condition == "test-subset-occlusion_affectnet_list"
