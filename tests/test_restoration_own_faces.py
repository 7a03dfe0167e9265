"""A restorer trained on a real data set's own faces: occluders drawn online, fixed per face outside training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal_fer.datamodules.online_occlusion import OnlineOcclusionDataset
from multimodal_fer.datasets import RAFDB, OfficialSplits
from multimodal_fer.errors import DataError

from adapter_checks import REPO, fake_rafdb_data_args, prepared_fake_rafdb, tiny_datamodule
from conftest import run_args, run_folder


@pytest.fixture(scope="module")
def rafdb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Fake RAF-DB raw files and their prepared cache (test_0004 fails preparation)."""
    return prepared_fake_rafdb(tmp_path_factory.mktemp("rafdb_raw"), tmp_path_factory.mktemp("rafdb_cache") / "rafdb")


def _datamodule(rafdb: tuple[Path, Path], **options):
    raw, cache = rafdb
    return tiny_datamodule(RAFDB(), raw, cache, split=OfficialSplits(val_fraction=0.2), **options)


def _batches(datamodule, split: str, batch_size: int) -> dict[int, dict[str, np.ndarray]]:
    """Every sample of a split by cache index: its face, clean face, mask and occluder kind."""
    datamodule.batch_size = batch_size
    dataset = datamodule.dataset(split)
    samples = {}
    for start in range(0, len(dataset), batch_size):
        batch = dataset.__getitems__(list(range(start, min(start + batch_size, len(dataset)))))
        for i, index in enumerate(batch["index"].tolist()):
            samples[index] = {
                name: batch[name][i].numpy() for name in ("face", "face_clean", "occlusion_mask", "occlusion_type")
            }
    return samples


def _batches_of_faces(datamodule, split: str) -> dict[int, np.ndarray]:
    dataset = datamodule.dataset(split)
    batch = dataset.__getitems__(list(range(len(dataset))))
    return {index: batch["face"][i].numpy() for i, index in enumerate(batch["index"].tolist())}


def test_real_faces_get_fixed_occluders_outside_training_and_keep_their_clean_face(rafdb) -> None:
    datamodule = _datamodule(rafdb, restoration_targets=True, online_occlusion_probability=0.7)
    datamodule.setup()
    plain = _datamodule(rafdb)
    plain.setup()
    for split in ("val", "test"):
        first, second = _batches(datamodule, split, 4), _batches(datamodule, split, 1)
        originals = _batches_of_faces(plain, split)
        assert first.keys() == second.keys() == originals.keys()
        occluded = 0
        for index, sample in first.items():
            # the same occluder whatever the batch it is read in
            for name, value in sample.items():
                np.testing.assert_array_equal(value, second[index][name])
            np.testing.assert_array_equal(sample["face_clean"], originals[index])  # the face as prepared
            mask = sample["occlusion_mask"][0].astype(bool)
            if sample["occlusion_type"] >= 0:
                occluded += 1
                assert mask.any()
            else:
                assert not mask.any()
            # outside the occluder the face is untouched
            np.testing.assert_array_equal(sample["face"][:, ~mask], sample["face_clean"][:, ~mask])
        assert occluded > 0
    # training faces get fresh occluders with their clean face beside them
    train = datamodule.dataset("train").__getitems__([0, 1, 2, 3])
    assert {"face_clean", "occlusion_mask", "occlusion_type"} <= train.keys()
    originals = plain.dataset("train").__getitems__([0, 1, 2, 3])
    assert torch.equal(train["face_clean"], originals["face"])


def test_restoration_targets_on_real_faces_need_drawn_occluders(rafdb) -> None:
    datamodule = _datamodule(rafdb, restoration_targets=True)
    datamodule.setup()
    with pytest.raises(DataError, match="online_occlusion_probability=0.7"):
        datamodule.dataset("val")


def test_per_sample_draws_depend_on_the_cache_index_alone() -> None:
    faces = torch.full((6, 3, 32, 32), 128, dtype=torch.uint8)

    class Faces(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 6

        def __getitems__(self, positions):
            return {"face": faces[positions].clone(), "index": torch.tensor(positions) + 100}

    fixed = OnlineOcclusionDataset(Faces(), 1.0, seed=5, keep_clean=True, per_sample=True)
    forward = fixed.__getitems__([0, 1, 2, 3, 4, 5])
    backward = fixed.__getitems__([5, 4, 3, 2, 1, 0])
    assert torch.equal(forward["face"], backward["face"].flip(0))
    assert torch.equal(forward["face_clean"], faces) and not torch.equal(forward["face"], faces)
    other = OnlineOcclusionDataset(Faces(), 1.0, seed=6, per_sample=True).__getitems__([0, 1, 2, 3, 4, 5])
    assert not torch.equal(other["face"], forward["face"]) and "face_clean" not in other


def test_the_restorer_trains_on_real_faces_through_its_overlay(rafdb, tmp_path: Path) -> None:
    from multimodal_fer.cli import main

    raw, cache = rafdb
    main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "restoration" / "synthaffect.yaml"),
            "--config",
            str(REPO / "configs" / "data" / "rafdb.yaml"),
            "--config",
            str(REPO / "configs" / "restoration" / "overlays" / "own_faces.yaml"),
            *fake_rafdb_data_args(raw, cache),
            "--trainer.logger=false",
            "--trainer.max_epochs=1",
            *run_args(tmp_path),
        ]
    )
    folder = run_folder(tmp_path)
    assert (folder / "checkpoints" / "restorer.ckpt").is_file()
    assert not (folder / "restoration_grids").exists()  # real people: RAF-DB's card allows no faces in the logs
    results = json.loads((folder / "results-test.json").read_text())
    assert results["data"]["dataset"] == "rafdb"
    assert np.isfinite(results["metrics"]["test/restoration/psnr_occluded_gain"])
    assert 0.0 <= results["metrics"]["test/mask/iou"] <= 1.0
