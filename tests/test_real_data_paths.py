"""What FERDataModule offers every data set, checked on a real data set's fake files (RAF-DB): online occlusion
placed by the cache's landmarks, occlusion splits, label-space mapping, and refusals of unsafe cache folders."""

import numpy as np
import pytest
import torch

from multimodal_fer.cli import main
from multimodal_fer.datamodules import FERDataModule, OcclusionSplitDataModule
from multimodal_fer.datasets import RAFDB, OfficialSplits
from multimodal_fer.errors import DataError
from multimodal_fer.types import UNION_LABEL_SPACE, LabelSpace

from adapter_checks import REPO, tiny_datamodule
from data.rafdb.generate import write_fake_rafdb


@pytest.fixture(scope="module")
def rafdb(tmp_path_factory):
    raw = tmp_path_factory.mktemp("rafdb_paths")
    write_fake_rafdb(raw)
    return raw


def _datamodule(raw, root, **kwargs):
    return tiny_datamodule(RAFDB(), raw, root, split=OfficialSplits(val_fraction=0.2), **kwargs)


def test_online_occlusion_draws_occluders_on_real_faces_by_their_landmarks(rafdb, tmp_path):
    datamodule = _datamodule(rafdb, tmp_path / "cache", online_occlusion_probability=1.0)
    datamodule.prepare()
    dataset = datamodule.dataset("train")
    batch = dataset.__getitems__([0, 1, 2, 3])
    cached = torch.from_numpy(np.asarray(datamodule.reader.array("face")[batch["index"].numpy()]))
    assert (batch["occlusion_type"] >= 0).all() and (batch["occlusion_type"] < 7).all()
    assert batch["occlusion_mask"].sum() > 0
    changed = (batch["face"] != cached).any(dim=1, keepdim=True)
    # pixels change only where the occluder is
    assert not (changed & (batch["occlusion_mask"] == 0)).any()
    assert changed.any()
    # the validation split is never occluded
    assert "occlusion_type" not in datamodule.dataset("val").__getitems__([0])


def test_occlusion_split_of_a_real_data_set_through_the_cli(rafdb, tmp_path):
    cache, split = tmp_path / "cache", tmp_path / "occluded"
    args = [
        "--config",
        str(REPO / "configs" / "data" / "rafdb.yaml"),
        f"--data.init_args.raw_root={rafdb}",
        f"--data.init_args.root={cache}",
        "--data.init_args.preprocessing.image_size=32",
        "--data.init_args.preparation_workers=0",
    ]
    main(["prepare", *args])
    main(["occlusion-split", *args, "--split", "test", "--output", str(split), "--types", "sunglasses,medical_mask"])
    module = OcclusionSplitDataModule(root=str(split))
    assert module.label_space == RAFDB().label_space
    module.setup("test")
    batch = next(iter(module.test_dataloader()))
    assert batch["face"].shape[0] == 6  # 3 test faces x 2 kinds


def test_label_spaces_map_by_name_into_the_union_and_into_each_other():
    affect = LabelSpace(expressions=("happy", "calm", "anger"), action_units=(12, 6), dimensions=("valence", "arousal"))
    expr, au, va = affect.map_labels(
        UNION_LABEL_SPACE,
        np.array([0, 1, 2, -1]),
        np.array([[1, 0], [0, 1], [np.nan, 1], [0, 0]], dtype=np.float32),
        np.array([[0.5, -0.2], [np.nan, 0.1], [0, 0], [0.3, 0.3]], dtype=np.float32),
    )
    names = [UNION_LABEL_SPACE.expressions[i] if i >= 0 else None for i in expr]
    assert names == ["happy", "calm", "anger", None]
    assert np.array_equal(au[:, UNION_LABEL_SPACE.action_units.index(12)], [1, 0, np.nan, 0], equal_nan=True)
    assert np.array_equal(au[:, UNION_LABEL_SPACE.action_units.index(6)], [0, 1, 1, 0])
    assert np.isnan(au[:, UNION_LABEL_SPACE.action_units.index(1)]).all()  # never annotated → unlabelled
    assert np.isnan(va[:, 2]).all()
    np.testing.assert_allclose(va[:, :2], [[0.5, -0.2], [np.nan, 0.1], [0, 0], [0.3, 0.3]], rtol=1e-6)
    # a space without "calm" leaves calm samples unlabelled instead of guessing
    seven = RAFDB().label_space
    back, _, _ = affect.map_labels(seven, np.array([0, 1, 2]), np.zeros((3, 2)), np.zeros((3, 2)))
    assert [seven.expressions[i] if i >= 0 else None for i in back] == ["happy", None, "anger"]
    with pytest.raises(ValueError, match="vocabulary"):
        LabelSpace(expressions=("joy",)).in_vocabulary()


def test_a_folder_that_is_not_a_cache_is_never_deleted(rafdb, tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("important")
    with pytest.raises(DataError, match="not a cache"):
        _datamodule(rafdb, precious).prepare()
    with pytest.raises(DataError, match="not a cache"):
        _datamodule(rafdb, precious).prepare(overwrite=True)  # not even when asked to rebuild
    assert (precious / "chapter1.tex").read_text() == "important"


def test_a_data_set_cannot_load_modalities_it_does_not_have(rafdb, tmp_path):
    with pytest.raises(ValueError, match="provides \\['face'\\], not \\['audio'\\]"):
        FERDataModule(dataset=RAFDB(), raw_root=str(rafdb), root=str(tmp_path / "c"), modalities=["face", "audio"])


def test_a_data_set_declares_its_affect_range_and_maps_it_onto_minus_one_one():
    from multimodal_fer.datasets import DatasetAdapter, SampleError

    class NineLevels(DatasetAdapter):  # a self-assessment scale of 1-9 (DEAP, MAHNOB-HCI)
        va_range = (1.0, 9.0)

    assert [NineLevels.affect_to_unit(v) for v in (1.0, 3.0, 5.0, 9.0)] == [-1.0, -0.5, 0.0, 1.0]
    assert np.isnan(NineLevels.affect_to_unit(float("nan")))
    with pytest.raises(SampleError, match=r"outside the data set's range \[1.0, 9.0\]"):
        NineLevels.affect_to_unit(9.5)
    assert RAFDB.va_range == (-1.0, 1.0)


def test_changed_raw_files_stale_the_cache_for_prepare_but_a_fit_does_not_list_them_again(rafdb, tmp_path):
    import shutil

    from multimodal_fer.errors import StaleCacheError

    raw = tmp_path / "raw"
    shutil.copytree(rafdb, raw)
    datamodule = _datamodule(raw, tmp_path / "cache")
    datamodule.prepare()
    labels = raw / "basic" / "EmoLabel" / "list_patition_label.txt"
    labels.write_text("".join(labels.read_text().splitlines(keepends=True)[1:]))  # one image fewer
    with pytest.raises(StaleCacheError, match="listing"):
        _datamodule(raw, tmp_path / "cache").prepare()
    fitting = _datamodule(raw, tmp_path / "cache")
    fitting.prepare_data()  # a fit trusts a complete cache whose settings match
    fitting.setup()
    assert fitting.splits["test"].size == 3


def test_a_modality_the_cache_records_as_missing_is_fed_as_absent():
    """A real cache's ``present`` field (a video without audio, a window whose face was not found) reaches the
    batch: such a sample's modality is absent, not a zero-filled input marked present."""
    from types import SimpleNamespace

    from multimodal_fer.datamodules.cached_dataset import CachedMultimodalDataset

    arrays = {
        "face": np.zeros((4, 3, 8, 8), dtype=np.uint8),
        "audio": np.zeros((4, 16), dtype=np.int16),
        "present": np.array([[True, True], [True, False], [False, True], [True, True]]),
    }
    reader = SimpleNamespace(
        specs={name: None for name in arrays}, manifest={"modalities": ["face", "audio"]}, array=arrays.__getitem__
    )
    dataset = CachedMultimodalDataset(reader, np.arange(4), {"face": "face", "audio": "audio"}, ())
    batch = dataset.__getitems__([0, 1, 2, 3])
    assert batch["present"]["face"].tolist() == [True, True, False, True]
    assert batch["present"]["audio"].tolist() == [True, False, True, True]
    withheld = CachedMultimodalDataset(reader, np.arange(4), {"face": "face"}, (), withheld_modalities=["audio"])
    present = withheld.__getitems__([1, 2])["present"]
    assert present["face"].tolist() == [True, False] and present["audio"].tolist() == [False, False]
    generated = SimpleNamespace(specs={"face": None}, manifest={}, array=arrays.__getitem__)  # no present field
    assert CachedMultimodalDataset(generated, np.arange(4), {"face": "face"}, ()).__getitems__([2])["present"][
        "face"
    ].tolist() == [True]
