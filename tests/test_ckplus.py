import numpy as np
import pytest

from multimodal_fer.datasets import ExplicitSubjects, SubjectKFold
from multimodal_fer.datasets.ckplus import DEFAULT_ACTION_UNITS, CKPlus
from multimodal_fer.errors import DataError
from multimodal_fer.types import UNION_LABEL_SPACE

from adapter_checks import (
    assert_subject_disjoint,
    fit_through_config,
    kill_midway_then_resume,
    prepared,
    tiny_datamodule,
)
from data.ckplus.generate import write_fake_ckplus


def _datamodule(raw, root, split=None, **kwargs):
    return tiny_datamodule(CKPlus(**kwargs), raw, root, split=split or SubjectKFold(num_folds=3))


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("ckplus_raw")
    return raw, write_fake_ckplus(raw)


def test_ckplus_prepares_expected_samples_labels_and_failures(fake, tmp_path):
    raw, expected = fake
    result = prepared(_datamodule(raw, tmp_path / "cache"))
    assert result["samples"] == expected["samples"]
    assert {s: r.split(":")[0] for s, r in result["failures"].items()} == expected["failures"]
    assert {r["source"]: r["reason"] for r in result["rejections"]} == expected["rejections"]
    for key, aus in expected["au"].items():
        np.testing.assert_array_equal(result["au"][key], aus)
    summary = result["summary"]
    assert summary["splits"] == {"unassigned": 26}  # 7 labelled sequences x (3 peak + 1 first frame) - 2 failures
    assert summary["expression_counts"]["neutral"] == 7 and summary["expression_counts"]["contempt"] == 3
    assert summary["au_positives"]["AU25"] == 7 and "AU43" not in summary["au_positives"]
    expr = np.asarray(result["reader"].array("expr"))[result["reader"].usable]
    assert ((expr >= 0) & (expr < 8)).all()  # the out-of-range code never reaches the cache
    # subjects are the Sxxx folders; the protocol's folds are subject-disjoint
    assert set().union(*result["subjects"].values()) == expected["subjects"]
    assert_subject_disjoint(result)
    # the frame without a landmark file (a real photo) was aligned by the detector
    assert "S010_002_00000004" in result["samples"]


def test_ckplus_leave_one_subject_out_by_subject_name_and_ten_fold_default(fake):
    raw, _ = fake
    assert isinstance(CKPlus().default_protocol(), SubjectKFold) and CKPlus().default_protocol().num_folds == 10
    subjects = np.array([s.subject for s in CKPlus().list_samples(raw).samples])
    splits = ExplicitSubjects(test_subjects=["S026"], val_subjects=["S005"]).split(subjects, np.full(subjects.size, ""))
    assert set(subjects[splits["test"]]) == {"S026"} and set(subjects[splits["val"]]) == {"S005"}
    assert splits["test"].size == 8 and "S026" not in set(subjects[splits["train"]])


def test_ckplus_leave_one_subject_out_through_the_datamodule(fake, tmp_path):
    raw, _ = fake
    split = ExplicitSubjects(test_subjects=["S026"], val_subjects=["S005"])
    result = prepared(_datamodule(raw, tmp_path / "cache", split=split))
    assert result["subjects"]["test"] == {"S026"} and result["subjects"]["val"] == {"S005"}
    assert_subject_disjoint(result)


def test_ckplus_class_settings_and_au_only_sequences(fake):
    raw, expected = fake
    six = CKPlus(num_classes=6, include_neutral_first_frame=False)
    assert six.label_space.expressions == ("anger", "disgust", "fear", "happy", "sad", "surprise")
    listing = six.list_samples(raw)
    assert "contempt excluded in CK+-6" in [r.reason for r in listing.rejected]
    assert not any(s.key.endswith("_00000001") for s in listing.samples)
    assert {six.label_space.expressions[s.labels.expr] for s in listing.samples} == {
        "anger", "disgust", "fear", "happy", "sad", "surprise"
    }  # fmt: skip
    with pytest.raises(ValueError, match="include_neutral_first_frame"):
        CKPlus(num_classes=7)
    au_only = CKPlus(au_only_sequences=True, neutral_frame_aus="absent", peak_frames=2).list_samples(raw)
    by_key = {s.key: s for s in au_only.samples}
    for key, aus in expected["au_only"].items():
        if key.endswith("_00000003"):  # peak_frames=2: only the last two frames
            assert key not in by_key
            continue
        assert by_key[key].labels.expr == -1
        np.testing.assert_array_equal(by_key[key].labels.au, aus)
    assert by_key["S005_001_00000001"].labels.au == (0.0,) * len(DEFAULT_ACTION_UNITS)
    assert "sequence without emotion file" not in [r.reason for r in au_only.rejected]
    no_aus = CKPlus(action_units=[])
    assert no_aus.label_space.action_units == () and all(s.labels.au is None for s in no_aus.list_samples(raw).samples)


def test_ckplus_landmarks_and_missing_folders(fake, tmp_path):
    raw, _ = fake
    adapter = CKPlus()
    samples = {s.key: s for s in adapter.list_samples(raw).samples}
    media = adapter.load(raw, samples["S005_001_00000005"])
    assert media.face_points.shape == (68, 2) and media.image.shape == (122, 160, 3)
    assert adapter.load(raw, samples["S010_002_00000004"]).face_points is None  # detected instead
    assert CKPlus(use_landmarks=False).list_samples(raw).samples[0].locators["landmarks"] is None
    with pytest.raises(DataError, match="cohn-kanade-images"):
        adapter.list_samples(tmp_path)


def test_ckplus_maps_into_the_union_space():
    space = CKPlus().label_space
    space.in_vocabulary()
    au = np.eye(len(DEFAULT_ACTION_UNITS))[:8]
    expr, mapped_au, va = space.map_labels(UNION_LABEL_SPACE, np.arange(8), au, np.zeros((8, 0)))
    assert [UNION_LABEL_SPACE.expressions[i] for i in expr] == [
        "neutral", "anger", "contempt", "disgust", "fear", "happy", "sad", "surprise"
    ]  # fmt: skip
    columns = [UNION_LABEL_SPACE.action_units.index(n) for n in DEFAULT_ACTION_UNITS]
    np.testing.assert_array_equal(mapped_au[:, columns], au)
    assert np.isnan(np.delete(mapped_au, columns, axis=1)).all() and np.isnan(va).all()


def test_ckplus_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: _datamodule(raw, root), tmp_path, count=6)
    assert straight == resumed


def test_ckplus_fits_through_its_config(fake, tmp_path):
    raw, _ = fake
    fit_through_config(
        "ckplus.yaml",
        raw,
        tmp_path / "cache",
        tmp_path,
        ["--data.init_args.preprocessing.image_size=32", "--data.init_args.split.init_args.num_folds=3"],
    )
