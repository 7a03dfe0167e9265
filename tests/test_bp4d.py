import json
import math

import numpy as np
import pytest
from PIL import Image

from multimodal_fer.datasets import BP4D, SubjectPartitions
from multimodal_fer.datasets.au_benchmarks import FOLD_TEST_PART
from multimodal_fer.datasets.bp4d import BP4D_ACTION_UNITS, BP4D_PARTS, FERA2015_ACTION_UNITS
from multimodal_fer.errors import DataError

from adapter_checks import (
    assert_subject_disjoint,
    fit_through_config,
    kill_midway_then_resume,
    prepared,
    tiny_datamodule,
)
from data.bp4d.generate import OCC_DIR, write_fake_bp4d


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("bp4d")
    return raw, write_fake_bp4d(raw)


def _same(actual, expected):
    return all((math.isnan(a) and math.isnan(e)) or a == e for a, e in zip(actual, expected, strict=True))


def test_bp4d_prepares_expected_frames_labels_rejections_and_failures(fake, tmp_path):
    raw, expected = fake
    result = prepared(tiny_datamodule(BP4D(), raw, tmp_path / "cache"))
    usable = {k for k in expected["samples"] if f"{k}.jpg" not in expected["failures"]}
    assert set(result["samples"]) == usable
    for key in usable:
        assert _same(result["au"][key].tolist(), expected["samples"][key]), key
    assert {s: r.split(":")[0] for s, r in result["failures"].items()} == expected["failures"]
    assert sorted((r["source"], r["reason"]) for r in result["rejections"]) == expected["rejections"]
    reasons = result["summary"]["failures"]
    for reason in ("label line without a frame image", "AU columns missing: 24", "unknown AU code 5"):
        assert reasons[reason] == 1, reason
    assert_subject_disjoint(result)
    assert result["subjects"]["test"] == {"F007", "F015"}  # fold 1 tests part 3


def test_bp4d_unknown_code_9_is_nan_never_absent(fake):
    raw, _ = fake
    by_key = {s.key: s for s in BP4D().list_samples(raw).samples}
    au = np.array(by_key["F001/T1/12"].labels.au)
    assert np.isnan(au[BP4D_ACTION_UNITS.index(4)]) and np.isnan(au).sum() == 1  # only AU4 was 9
    assert au[BP4D_ACTION_UNITS.index(1)] == 1.0 and au[BP4D_ACTION_UNITS.index(6)] == 0.0
    assert "F001/T1/15" not in by_key  # every AU 9: labelled nowhere
    assert "F001/T1/14" not in by_key  # code 5 in AU12 (code 5 in the unused AU3 column of the same row is ignored)
    assert by_key["F001/T1/16"].source == "F001/T1/00016.jpg"  # zero-padded frame name
    assert by_key["F001/T1/16"].frame == 16 and by_key["F001/T1/16"].sequence == "F001_T1"
    for sample in by_key.values():
        values = np.array(sample.labels.au)
        assert np.isin(values[~np.isnan(values)], [0.0, 1.0]).all()


def test_bp4d_published_folds_and_subject_partitions(fake):
    raw, _ = fake
    subjects = np.array([s.subject for s in BP4D().list_samples(raw).samples])
    expected_tests = {1: {"F007", "F015"}, 2: {"M011", "F003"}, 3: {"F001", "M007"}}
    for fold, test_part in FOLD_TEST_PART.items():
        splits = SubjectPartitions(BP4D_PARTS, test_part=test_part).split(subjects, np.full(subjects.size, ""))
        named = {name: set(subjects[idx].tolist()) for name, idx in splits.items()}
        assert_subject_disjoint({"subjects": named})
        assert named["test"] == expected_tests[fold]
        assert named["train"] | named["val"] == set(subjects.tolist()) - expected_tests[fold]
    assert sorted(s for part in BP4D_PARTS for s in part) == sorted(
        [f"F{i:03d}" for i in range(1, 24)] + [f"M{i:03d}" for i in range(1, 19)]
    )  # 41 subjects, each in one part
    with pytest.raises(ValueError, match="too few"):
        SubjectPartitions([["F001"], ["F007"]], test_part=2).split(np.array(["F001", "F007"]), np.array(["", ""]))


def test_bp4d_options_occlusion_flag_frame_step_and_errors(fake, tmp_path):
    raw, _ = fake
    fera = BP4D(action_units=list(FERA2015_ACTION_UNITS))
    assert fera.label_space.action_units == FERA2015_ACTION_UNITS
    # without AU 24 the file lacking its column is usable
    assert "M007/T1/1" in {s.key for s in fera.list_samples(raw).samples}
    every_other = BP4D(frame_step=2).list_samples(raw)
    assert {s.key for s in every_other.samples if s.sequence == "F001_T1"} == {"F001/T1/10", "F001/T1/12", "F001/T1/16"}
    # FERA 2015's occlusion flag in the last column: 1 leaves the frame unlabelled, other codes are rejected
    flagged = tmp_path / "flagged"
    (flagged / OCC_DIR).mkdir(parents=True)
    (flagged / "F007" / "T1").mkdir(parents=True)
    rows = [",".join(["0", *map(str, range(1, 26))])]
    for frame, flag in ((1, 0), (2, 1), (3, 9)):
        rows.append(",".join([str(frame), *["1"] * 24, str(flag)]))
        Image.new("RGB", (16, 16)).save(flagged / "F007" / "T1" / f"{frame}.jpg")
    (flagged / OCC_DIR / "F007_T1.csv").write_text("\n".join(rows) + "\n")
    listing = BP4D(occlusion_flag=True).list_samples(flagged)
    assert [s.key for s in listing.samples] == ["F007/T1/1"]
    assert [(r.source, r.reason) for r in listing.rejected] == [
        (f"{OCC_DIR}/F007_T1.csv:3", "no codable AU (occluded)"),
        (f"{OCC_DIR}/F007_T1.csv:4", "unknown occlusion code 9"),
    ]
    assert len(BP4D().list_samples(flagged).samples) == 3  # without the option the column is not read
    with pytest.raises(ValueError, match="not FACS codes"):
        BP4D(action_units=[1, 3])
    with pytest.raises(ValueError, match="frame_step"):
        BP4D(frame_step=0)
    with pytest.raises(DataError, match="No AU occurrence folder"):
        BP4D().list_samples(tmp_path)
    (tmp_path / OCC_DIR).mkdir(parents=True)
    with pytest.raises(DataError, match="holds no"):
        BP4D().list_samples(tmp_path)
    with pytest.raises(DataError, match="inside raw_root"):
        BP4D(images_dir="/elsewhere").list_samples(raw)


@pytest.mark.slow  # three cache builds with face detection
def test_bp4d_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: tiny_datamodule(BP4D(), raw, root), tmp_path, count=5)
    assert straight == resumed


def test_bp4d_fits_through_its_config(fake, tmp_path):
    raw, expected = fake
    fit_through_config("bp4d.yaml", raw, tmp_path / "cache", tmp_path, ["--data.init_args.preprocessing.image_size=32"])
    summary = json.loads((tmp_path / "cache" / "summary.json").read_text())
    assert summary["au_positives"].keys() == {f"AU{n}" for n in BP4D_ACTION_UNITS}
