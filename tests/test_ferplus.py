"""FER+ (FER2013's faces, FER+'s votes): majority labels, rejections, row alignment, keys, a fit through its config."""

import numpy as np
import pytest

from multimodal_fer.datasets import FERPlus, OfficialSplits
from multimodal_fer.datasets.fer2013 import FER2013
from multimodal_fer.datasets.ferplus import majority_label
from multimodal_fer.errors import DataError
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing
from multimodal_fer.types import UNION_LABEL_SPACE

from adapter_checks import assert_subject_disjoint, fit_through_config, prepared, tiny_datamodule
from data.ferplus.generate import write_fake_ferplus


def _datamodule(raw, root, **kwargs):
    return tiny_datamodule(FERPlus(**kwargs), raw, root, OfficialSplits(), MediaPreprocessing(image_size=48))


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    raw = tmp_path_factory.mktemp("ferplus_raw")
    return raw, write_fake_ferplus(raw)


def test_majority_follows_ferplus_protocol() -> None:
    assert majority_label((0, 10, 0, 0, 0, 0, 0, 0, 0, 0)) == 1
    # single votes are dropped first: 6 of 8 remaining, not 6 of 10
    assert majority_label((6, 0, 1, 1, 0, 0, 0, 0, 2, 0)) == 0
    assert majority_label((5, 5, 0, 0, 0, 0, 0, 0, 0, 0)).startswith("no label: no column has more than half")
    assert majority_label((0, 0, 0, 0, 0, 0, 0, 2, 0, 0)) == 7
    assert majority_label((1, 1, 1, 1, 1, 1, 1, 1, 1, 1)) == "no label: no column has two votes or more"
    assert majority_label((2, 0, 0, 0, 0, 0, 0, 0, 8, 0)) == "no label: the majority says unknown"
    assert majority_label((0, 0, 0, 0, 0, 0, 0, 0, 3, 7)) == "no label: the majority says not a face"


def test_ferplus_prepares_majority_labels_with_every_rejection_named(fake, tmp_path) -> None:
    raw, expected = fake
    result = prepared(_datamodule(raw, tmp_path / "cache"))
    assert result["samples"] == expected["samples"]
    assert result["failures"] == expected["failures"]
    assert {r["source"]: r["reason"] for r in result["rejections"]} == expected["rejections"]
    assert result["summary"]["expression_counts"]["contempt"] == 1
    assert_subject_disjoint(result)
    space = FERPlus().label_space
    assert space.expressions == ("neutral", "happy", "surprise", "sad", "anger", "disgust", "fear", "contempt")
    assert all(name in UNION_LABEL_SPACE.expressions for name in space.expressions)
    # the faces are FER2013's, row for row: FER+'s key fer<i> is FER2013's row<i>
    fer, _ = FER2013().list_rows(raw, read_labels=False)
    plus = FERPlus().list_samples(raw)
    by_key = {sample.key: sample for sample in fer.samples}
    for sample in plus.samples:
        if sample.key not in expected["samples"]:
            continue  # rows whose pixels fail (checked above)
        twin = by_key["row" + sample.key.removeprefix("fer")[-5:]]
        assert (sample.source, sample.split, dict(sample.locators)) == (twin.source, twin.split, dict(twin.locators))
        np.testing.assert_array_equal(FERPlus().load(raw, sample).image, FER2013().load(raw, twin).image)


def test_vote_files_that_do_not_belong_to_the_csv_are_refused(fake, tmp_path) -> None:
    raw, _ = fake
    text = (raw / "fer2013new.csv").read_text()
    lines = text.splitlines()
    broken = tmp_path / "raw"
    broken.mkdir()
    (broken / "fer2013.csv").write_text((raw / "fer2013.csv").read_text())
    (broken / "short.csv").write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(DataError, match=r"short.csv has 18 data rows and fer2013.csv 20.*belong together"):
        FERPlus(label_file="short.csv").list_samples(broken)
    swapped = [lines[0], lines[1], *lines[9:12], *lines[2:9], *lines[12:]]
    (broken / "swapped.csv").write_text("\n".join(swapped) + "\n")
    with pytest.raises(DataError, match=r"says Usage 'PublicTest' but fer2013.csv:3 is in train.*row order"):
        FERPlus(label_file="swapped.csv").list_samples(broken)
    (broken / "columns.csv").write_text("Usage,Image name,neutral\n")
    with pytest.raises(DataError, match=r"without \['happiness'"):
        FERPlus(label_file="columns.csv").list_samples(broken)
    with pytest.raises(DataError, match="No FER\\+ vote file"):
        FERPlus().list_samples(broken)
    with pytest.raises(ValueError, match="relative to raw_root"):
        FERPlus(label_file="/abs/fer2013new.csv")


def test_ferplus_fits_through_its_config(fake, tmp_path) -> None:
    raw, _ = fake
    fit_through_config("ferplus.yaml", raw, tmp_path / "cache", tmp_path)


def test_lists_of_ferplus_image_names_select_test_samples(fake, tmp_path) -> None:
    """Occlusion-FERPlus style lists name FER+'s images (``fer0000016.png``): they are the samples' keys."""
    raw, expected = fake
    datamodule = _datamodule(raw, tmp_path / "cache")
    datamodule.prepare()
    tests = sorted(key for key, (split, _) in expected["samples"].items() if split == "test")
    listed = tmp_path / "occlusion_ferplus.txt"
    listed.write_text("".join(f"{key}.png 8 1\n" for key in tests[:2]))
    subset = tiny_datamodule(
        FERPlus(), raw, tmp_path / "cache", OfficialSplits(), MediaPreprocessing(image_size=48), test_subset=str(listed)
    )
    subset.setup()
    keys = [record["key"] for record in subset.sample_records()]
    assert sorted(keys[i] for i in subset.subset.indices) == tests[:2]
