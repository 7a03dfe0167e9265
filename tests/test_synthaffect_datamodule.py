import json

import numpy as np
import pytest
import torch

from multimodal_fer.datamodules import SynthAffectDataModule
from multimodal_fer.datamodules.synthaffect import build_synthaffect_cache as build_cache
from multimodal_fer.datasets.synthaffect.generator import SynthAffectSettings, generate_sample
from multimodal_fer.errors import StaleCacheError
from multimodal_fer.types import PRESENT_KEY

SMALL = dict(num_subjects=4, samples_per_subject=3, image_size=32, audio_seconds=0.5, physio_seconds=4.0)


def _datamodule(root, **overrides):
    args = dict(SMALL, val_subjects=1, test_subjects=1, batch_size=4, num_workers=0, generation_workers=1)
    args.update(overrides)
    return SynthAffectDataModule(root=str(root), **args)


def test_generation_is_byte_identical_across_runs_and_worker_counts(tmp_path):
    settings = SynthAffectSettings(**SMALL, seed=5)
    one = build_cache(settings, tmp_path / "a", num_workers=1)
    two = build_cache(settings, tmp_path / "b", num_workers=2)
    assert one.manifest["sha256"] == two.manifest["sha256"]
    other = build_cache(SynthAffectSettings(**SMALL, seed=6), tmp_path / "c", num_workers=1)
    assert other.manifest["sha256"]["face"] != one.manifest["sha256"]["face"]


def test_sample_fields_match_specs_and_labels_are_consistent():
    settings = SynthAffectSettings(**SMALL, occlusion_probability=1.0)
    sample = generate_sample(settings, 5)
    assert sample["face"].shape == (3, 32, 32) and sample["face"].dtype == np.uint8
    assert sample["occlusion_type"] >= 0 and sample["occlusion_mask"].any()
    visible = sample["occlusion_mask"][0] == 0
    assert np.array_equal(sample["face"][:, visible], sample["face_clean"][:, visible])
    assert sample["audio"].shape == (8000,) and sample["audio"].dtype == np.int16
    assert sample["physio"].shape == (3, 512) and np.isfinite(sample["physio"].astype(np.float32)).all()
    assert sample["points"].shape == (1024, 6)
    assert sample["subject"] == 5 // 3
    assert -1 <= sample["va"].min() and sample["va"].max() <= 1
    depth = sample["depth"][0].astype(np.float32)
    assert depth.max() > 0.2 and (depth == 0).any()


def test_subjects_keep_their_traits_across_samples():
    settings = SynthAffectSettings(**SMALL)
    from multimodal_fer.datasets.synthaffect.generator import subject_traits

    assert subject_traits(0, 1) == subject_traits(0, 1)
    assert subject_traits(0, 1) != subject_traits(0, 2)
    assert generate_sample(settings, 3)["subject"] == generate_sample(settings, 4)["subject"]


def test_datamodule_batches_and_device_transform(tmp_path):
    dm = _datamodule(tmp_path / "c")
    dm.prepare_data()
    dm.setup("fit")
    subjects = {name: set(np.asarray(dm.reader.array("subject"))[idx]) for name, idx in dm.splits.items()}
    assert not subjects["train"] & subjects["test"] and not subjects["val"] & subjects["test"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["face"].dtype == torch.uint8 and batch["audio"].dtype == torch.int16
    assert set(batch[PRESENT_KEY]) == {"face", "audio", "depth", "physio"}
    assert batch[PRESENT_KEY]["face"].all() and batch["expr"].shape == (4,)
    batch = dm.on_after_batch_transfer(batch, 0)
    assert batch["face"].dtype == torch.float32 and batch["face"].shape == (4, 3, 32, 32)
    assert batch["depth"].shape == (4, 2, 32, 32) and set(batch["depth"][:, 1].unique().tolist()) <= {0.0, 1.0}
    assert batch["audio"].abs().max() <= 1.0
    assert torch.allclose(batch["physio"].mean(-1), torch.zeros(4, 3), atol=1e-3)
    weight = dm.au_positive_weight()
    assert weight.shape == (16,) and (weight >= 1).all()


def test_modality_subset_loads_only_those(tmp_path):
    dm = _datamodule(tmp_path / "c", modalities=["physio", "face"])
    dm.prepare_data()
    batch = next(iter(dm.val_dataloader()))
    assert "audio" not in batch and "depth" not in batch
    assert set(batch[PRESENT_KEY]) == {"face", "physio"}


def test_withheld_modality_is_not_read_and_marked_absent(tmp_path):
    dm = _datamodule(tmp_path / "c", withheld_modalities=["audio"])
    assert dm.modalities == ("face", "audio", "depth", "physio")  # the model keeps the audio encoder
    dm.prepare_data()
    batch = next(iter(dm.test_dataloader()))
    assert "audio" not in batch and "face" in batch
    assert set(batch[PRESENT_KEY]) == {"face", "audio", "depth", "physio"}
    assert not batch[PRESENT_KEY]["audio"].any() and batch[PRESENT_KEY]["face"].all()
    with pytest.raises(ValueError, match="not among the modalities"):
        _datamodule(tmp_path / "c", modalities=["face", "physio"], withheld_modalities=["audio"])
    with pytest.raises(ValueError, match="nothing to predict"):
        _datamodule(tmp_path / "c", modalities=["face"], withheld_modalities=["face"])
    with pytest.raises(ValueError, match="face modality is withheld"):
        _datamodule(tmp_path / "c", withheld_modalities=["face"], clean_faces=True)


def test_stale_cache_refused_and_interrupted_cache_resumed(tmp_path):
    root = tmp_path / "c"
    _datamodule(root).prepare_data()
    with pytest.raises(StaleCacheError, match="occlusion_probability: 0.3 → 0.5"):
        _datamodule(root, occlusion_probability=0.5).prepare_data()
    complete = json.loads((root / "manifest.json").read_text())["sha256"]
    # Simulate an interruption: a new build that wrote only the first 6 samples before it stopped.
    from multimodal_fer.datasets.synthaffect.adapter import SynthAffect
    from multimodal_fer.datasets.synthaffect.generator import array_specs
    from multimodal_fer.preprocessing.builder import write_samples
    from multimodal_fer.preprocessing.cache import CacheWriter
    from multimodal_fer.preprocessing.dataset_cache import _AdapterProducer
    from multimodal_fer.preprocessing.media_processor import PassThroughProcessor

    settings = _datamodule(root).settings
    writer = CacheWriter(
        root, array_specs(settings), settings.num_samples, settings.fingerprint(), settings.fingerprint_settings()
    )
    adapter = SynthAffect(settings)
    producer = _AdapterProducer(
        adapter, PassThroughProcessor(array_specs(settings)), None, adapter.list_samples().samples
    )
    outcomes = write_samples(producer, str(root), [spec.name for spec in array_specs(settings)], list(range(6)))
    assert all(reason is None for _, reason, _ in outcomes)
    writer.mark_done([index for index, _, _ in outcomes])
    del writer
    assert not (root / "manifest.json").exists()
    again = CacheWriter(
        root, array_specs(settings), settings.num_samples, settings.fingerprint(), settings.fingerprint_settings()
    )
    assert again.pending.tolist() == list(range(6, settings.num_samples))
    del again
    resumed = _datamodule(root)
    resumed.prepare_data()
    assert json.loads((root / "manifest.json").read_text())["sha256"] == complete


def test_bad_datamodule_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Unknown modality"):
        _datamodule(tmp_path, modalities=["face", "eeg"])
    with pytest.raises(ValueError, match="leaves no training subject"):
        _datamodule(tmp_path, val_subjects=2, test_subjects=2)
