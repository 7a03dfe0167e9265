import json
import shutil

import numpy as np
import pytest

from multimodal_fer.datasets import DISFA, SubjectPartitions
from multimodal_fer.datasets.disfa import DISFA_ACTION_UNITS, DISFA_PARTS
from multimodal_fer.errors import DataError
from multimodal_fer.types import UNION_LABEL_SPACE

from adapter_checks import (
    assert_subject_disjoint,
    fit_through_config,
    kill_midway_then_resume,
    prepared,
    tiny_datamodule,
)
from data.disfa.generate import BROKEN_VIDEO, CHOSEN, NO_VIDEO, stamp, write_fake_disfa


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("disfa")
    return raw, write_fake_disfa(raw)


def _rows(result):
    return sorted((r["source"], r["reason"]) for r in result["rejections"])


def test_disfa_prepares_expected_frames_occurrences_and_rejections(fake, tmp_path):
    raw, expected = fake
    result = prepared(tiny_datamodule(DISFA(), raw, tmp_path / "cache"))
    assert set(result["samples"]) == set(expected["samples"])
    for key, occurrence in expected["samples"].items():
        assert result["au"][key].tolist() == list(occurrence), key
    # occurrence is intensity >= 2: 0 and 1 are absent, 2..5 present
    intensities = np.array([expected["intensities"][k] for k in expected["samples"]])
    occurrences = np.array([result["au"][k] for k in expected["samples"]])
    assert np.array_equal(occurrences, (intensities >= 2).astype(np.float32))
    assert set(intensities.ravel().tolist()) >= {0, 1, 2, 5}
    assert _rows(result) == expected["rejections"]
    reasons = result["summary"]["failures"]
    assert reasons["label line without a frame image"] == 4  # the extra last line of each subject with a video
    assert reasons["AU label file missing"] == reasons["unknown AU intensity 7"] == 1
    assert reasons["no video for the subject"] == reasons["unreadable video"] == 1
    assert not result["failures"]
    positives = {f"AU{n}": int(occurrences[:, j].sum()) for j, n in enumerate(DISFA_ACTION_UNITS)}
    assert result["summary"]["au_positives"] == positives


def test_disfa_faces_come_from_the_labelled_video_frame(fake):
    raw, _ = fake
    adapter = DISFA()
    samples = adapter.list_samples(raw).samples
    assert [s.frame for s in samples[:5]] == [0, 1, 3, 4, 5]  # SN002's frame 2 has an unknown intensity
    for sample in [samples[3], samples[0], samples[2], samples[4]]:  # backwards too: the decoder reopens
        image = adapter.load(raw, sample).image
        assert abs(float(image[4:12, 4:12].mean()) - stamp(sample.frame)) < 8, sample.key
        assert sample.key.endswith(f"{sample.frame:05d}") and sample.sequence == sample.subject


def test_disfa_published_folds_are_subject_exclusive(fake):
    raw, _ = fake
    samples = DISFA().list_samples(raw).samples
    subjects = np.array([s.subject for s in samples])
    tests = {}
    for test_part in (1, 2, 3):
        splits = SubjectPartitions(DISFA_PARTS, test_part=test_part).split(subjects, np.full(subjects.size, ""))
        named = {name: set(subjects[idx].tolist()) for name, idx in splits.items()}
        assert_subject_disjoint({"subjects": named})
        assert sum(idx.size for idx in splits.values()) == subjects.size  # every frame in one split
        assert named["test"] == set(DISFA_PARTS[test_part - 1]) & set(subjects.tolist())
        tests[test_part] = named["test"]
    # the fake's usable subjects: SN002 (part 1), SN013 and SN018 (part 2), SN023 (part 3)
    assert tests == {1: {"SN002"}, 2: {"SN013", "SN018"}, 3: {"SN023"}}
    assert DISFA().default_protocol().describe().startswith("SubjectPartitions(part sizes=[9, 9, 9], test_part=3")
    with pytest.raises(ValueError, match="in no part"):
        SubjectPartitions([["SN002"], ["SN013"]], test_part=1).split(np.array(["SN002", "SN099"]), np.array(["", ""]))
    with pytest.raises(ValueError, match="part 1 and part 2"):
        SubjectPartitions([["SN002"], ["SN002"]], test_part=1)
    with pytest.raises(ValueError, match="test_part"):
        SubjectPartitions(DISFA_PARTS, test_part=0)


def test_disfa_extracted_frames_threshold_and_frame_step(fake, tmp_path):
    raw, expected = fake
    listing = DISFA(frames="images").list_samples(raw)
    assert {s.key: s.labels.au for s in listing.samples} == expected["image_samples"]
    assert sorted((r.source, r.reason) for r in listing.rejected) == expected["image_rejections"]
    assert listing.samples[0].source == "SN002/0.png"
    result = prepared(_images_module(raw, tmp_path))
    assert {s: r.split(":")[0] for s, r in result["failures"].items()} == expected["image_failures"]  # truncated PNG
    # threshold 3: intensity 2 becomes absent
    strict = DISFA(threshold=3, action_units=[12, 1]).list_samples(raw)
    by_key = {s.key: s.labels.au for s in strict.samples}
    for key, values in expected["intensities"].items():
        if key in by_key:
            assert by_key[key] == tuple(1.0 if values[CHOSEN.index(au)] >= 3 else 0.0 for au in (12, 1))
    every_other = DISFA(frame_step=2).list_samples(raw)
    assert {s.frame for s in every_other.samples} <= {0, 2, 4} and len(every_other.samples) >= 6


def _images_module(raw, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    for subject in ("SN010", "SN018", "SN003", "SN029"):  # only the subjects with extracted frames
        shutil.rmtree(copy / "ActionUnit_Labels" / subject)
    split = SubjectPartitions([["SN002"], ["SN013"], ["SN023"]], test_part=3, val_fraction=0.5)
    return tiny_datamodule(DISFA(frames="images"), copy, tmp_path / "cache", split=split)


def test_disfa_label_space_options_and_layout_errors(fake, tmp_path):
    raw, _ = fake
    space = DISFA().label_space
    space.in_vocabulary()
    assert space.tasks == ("au",) and space.num_expressions == 0 and space.num_dimensions == 0
    _, au, _ = space.map_labels(UNION_LABEL_SPACE, -np.ones(1, int), np.ones((1, 8)), np.zeros((1, 0)))
    assert [UNION_LABEL_SPACE.action_units[j] for j in np.flatnonzero(~np.isnan(au[0]))] == [1, 2, 4, 6, 9, 12, 25, 26]
    with pytest.raises(ValueError, match="not coded by this data set"):
        DISFA(action_units=[1, 7])
    with pytest.raises(ValueError, match="threshold"):
        DISFA(threshold=0)
    with pytest.raises(ValueError, match="Name patterns"):
        DISFA(video_name="{Camera}{person}.avi")
    with pytest.raises(DataError, match="No DISFA label folder"):
        DISFA().list_samples(tmp_path)
    with pytest.raises(DataError, match="No video folder"):
        DISFA(camera="right").list_samples(raw)
    with pytest.raises(DataError, match="inside raw_root"):
        DISFA(labels_dir="../elsewhere").list_samples(raw)
    assert {r.source for r in DISFA().list_samples(raw).rejected} >= {
        f"Videos_LeftCamera/LeftVideo{NO_VIDEO}_comp.avi",
        f"Videos_LeftCamera/LeftVideo{BROKEN_VIDEO}_comp.avi",
    }


def test_disfa_fits_through_its_config(fake, tmp_path):
    raw, expected = fake
    extra = ["--data.init_args.preprocessing.image_size=32"]
    fit_through_config("disfa.yaml", raw, tmp_path / "cache", tmp_path, extra)
    summary = json.loads((tmp_path / "cache" / "summary.json").read_text())
    assert sum(summary["splits"].values()) == len(expected["samples"])


@pytest.mark.slow  # three cache builds with face detection
def test_disfa_kill_midway_then_resume_equals_a_straight_build(fake, tmp_path):
    raw, _ = fake
    straight, resumed = kill_midway_then_resume(lambda root: tiny_datamodule(DISFA(), raw, root), tmp_path, count=7)
    assert straight == resumed
