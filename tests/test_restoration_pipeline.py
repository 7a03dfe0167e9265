"""The two-stage pipeline through the CLI: restoration fit → FER with a restorer; occlusion splits; DDP; bf16."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal_fer.cli import main
from multimodal_fer.datamodules import OcclusionSplitDataModule, SynthAffectDataModule
from multimodal_fer.datamodules.online_occlusion import OnlineOcclusionDataset
from multimodal_fer.errors import DataError
from multimodal_fer.models.restoration import RESTORER_CHECKPOINT_KEY, load_restorer
from multimodal_fer.models.restoration.discriminator_loading import load_discriminator
from multimodal_fer.preprocessing.cache import CacheReader
from multimodal_fer.preprocessing.occlusion_split_cache import build_occlusion_split

from conftest import CONFIGS, MFER, REPO, TINY_DATA, run_args, run_folder, tiny_data_args, tiny_trainer_args

RESTORATION = str(CONFIGS / "restoration" / "synthaffect.yaml")
RESTORATION_LONG = str(CONFIGS / "restoration" / "synthaffect_long.yaml")
QUICKSTART = str(CONFIGS / "quickstart.yaml")
FACE_RESTORER = str(CONFIGS / "overlays" / "face_restorer.yaml")
#: Where stage 2 finds the restorer of stage 1's latest completed run, relative to the working folder.
RESTORER_CKPT = Path("runs/restoration/latest/checkpoints/restorer.ckpt")


@pytest.fixture(scope="module")
def trained_restorer(tmp_path_factory: pytest.TempPathFactory, tiny_cache: Path) -> Path:
    """Working folder in which a one-epoch restoration fit (with test) has run."""
    folder = tmp_path_factory.mktemp("restoration")
    previous = Path.cwd()
    os.chdir(folder)
    try:
        main(
            [
                "fit",
                "--config",
                RESTORATION,
                *tiny_data_args(tiny_cache),
                "--trainer.logger=false",
                "--trainer.accelerator=cpu",
                "--trainer.max_epochs=1",
            ]
        )
    finally:
        os.chdir(previous)
    return folder


def test_restoration_fit_writes_a_loadable_restorer_and_results(trained_restorer: Path) -> None:
    checkpoint = trained_restorer / RESTORER_CKPT
    restorer = load_restorer(checkpoint)
    assert int(restorer.image_size) == 32
    assert RESTORER_CHECKPOINT_KEY in torch.load(checkpoint, weights_only=False)
    run = checkpoint.parent.parent
    assert run.parent.name == "restoration" and (run.parent / "latest").is_symlink()
    results = json.loads((run / "results-test.json").read_text())
    for name in ("test/restoration/psnr_occluded", "test/restoration/ssim_face", "test/mask/iou"):
        assert np.isfinite(results["metrics"][name])
    grids = list((run / "restoration_grids").glob("epoch_*.png"))
    assert grids, "a grid of occluded | mask | restored | clean faces is written every validation epoch"


def test_the_stage_one_checkpoint_gives_joint_fine_tuning_its_discriminator(trained_restorer: Path) -> None:
    checkpoint = trained_restorer / RESTORER_CKPT
    discriminator = load_discriminator(checkpoint)  # its architecture read off its weights
    assert discriminator.config == {"widths": [32, 64, 128, 128], "image_channels": 3}  # the stage-1 config's
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    for key, value in discriminator.state_dict().items():
        assert torch.equal(value, state[f"discriminator.{key}"]), key


def test_a_new_fit_fine_tunes_a_trained_restorer_with_other_settings(
    trained_restorer: Path, tiny_cache: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    start = trained_restorer / RESTORER_CKPT
    main(
        [
            "fit",
            "--config",
            RESTORATION,
            *tiny_data_args(tiny_cache),
            *tiny_trainer_args(tmp_path),
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1",
            "--test_after_fit=false",
            f"--model.init_args.initial_checkpoint={start}",
            "--model.init_args.hole_weight=1.5",  # another setting than the first fit's: used, not overridden
        ]
    )
    tuned = torch.load(run_folder(tmp_path) / "checkpoints" / "last.ckpt", weights_only=False)
    assert tuned["epoch"] == 0 and tuned["hyper_parameters"]["hole_weight"] == 1.5
    assert tuned["hyper_parameters"]["initial_checkpoint"] == str(start)
    first = torch.load(start, weights_only=False)["state_dict"]
    generator = [k for k in first if k.startswith("restorer.generator.") and k.endswith("weight")]
    # One step away from the trained weights, not from a fresh initialisation.
    steps = [float((tuned["state_dict"][k] - first[k]).abs().max()) for k in generator]
    assert max(steps) < 0.01 and max(steps) > 0.0


def test_long_recipe_has_the_fixes_on_and_resumes_with_ckpt_path_last(
    tmp_path: Path, tiny_cache: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    common = [
        "fit",
        "--config",
        RESTORATION_LONG,
        *tiny_data_args(tiny_cache),
        *tiny_trainer_args(tmp_path),
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--test_after_fit=false",
    ]
    main([*common, "--trainer.max_epochs=1"])
    last = run_folder(tmp_path) / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=False)
    assert first["epoch"] == 0 and first["hyper_parameters"]["ema_decay"] == 0.999
    main([*common, "--trainer.max_epochs=2", "--ckpt_path=last"])  # the same run, continued
    resumed = torch.load(last, weights_only=False)
    assert resumed["epoch"] == 1
    average = {k: v for k, v in resumed["state_dict"].items() if k.startswith("generator_ema.")}
    assert average and any(not torch.equal(v, first["state_dict"][k]) for k, v in average.items())
    architecture = resumed[RESTORER_CHECKPOINT_KEY]["architecture"]
    assert architecture["mask_opening"] == 0 and architecture["min_occluded_fraction"] == 0.01
    assert architecture["mask_net"]["full_resolution"] is True
    restorer = load_restorer(last)
    for key, value in average.items():
        assert torch.equal(restorer.state_dict()[key.replace("generator_ema.", "generator.")], value)


def test_fer_fit_with_the_restorer_and_its_size_check(
    trained_restorer: Path, tmp_path: Path, tiny_cache: Path, monkeypatch
) -> None:
    monkeypatch.chdir(trained_restorer)
    args = ["fit", "--config", QUICKSTART, "--config", FACE_RESTORER, *tiny_trainer_args(tmp_path)]
    main([*args, *tiny_data_args(tiny_cache), "--trainer.max_epochs=1", "--test_after_fit=true"])
    results = json.loads((run_folder(tmp_path) / "results-test.json").read_text())
    encoders = results["config"]["model"]["init_args"]["encoders"]
    assert encoders["face"]["init_args"]["restorer"]["init_args"]["checkpoint"] == str(RESTORER_CKPT)
    assert encoders["audio"]["class_path"].endswith(".AudioMelCNN")  # the overlay changed the face encoder only
    assert "test/expr/f1_macro" in results["metrics"]

    other = tmp_path / "cache48"
    args = ["fit", "--config", QUICKSTART, "--config", FACE_RESTORER, *tiny_trainer_args(tmp_path / "other")]
    with pytest.raises(DataError, match=r"trained on 32×32 faces but receives 48×48"):
        main([*args, *tiny_data_args(other, image_size=48), "--trainer.fast_dev_run=true"])


def test_checkpoint_trained_without_restorer_is_tested_with_one(
    trained_restorer: Path, tmp_path: Path, tiny_cache: Path, monkeypatch
) -> None:
    monkeypatch.chdir(trained_restorer)
    base = [*tiny_data_args(tiny_cache), *tiny_trainer_args(tmp_path)]
    main(["fit", "--config", QUICKSTART, *base, "--trainer.max_epochs=1"])
    checkpoint = str(next((run_folder(tmp_path) / "checkpoints").glob("best-*.ckpt")))
    main(["test", "--config", QUICKSTART, "--config", FACE_RESTORER, *base, f"--ckpt_path={checkpoint}"])
    assert (run_folder(tmp_path) / "results-test.json").exists()


def test_occlusion_split_is_deterministic_and_faithful(tiny_cache: Path, tmp_path: Path) -> None:
    source = CacheReader(tiny_cache)
    indices = np.array([5, 1, 9])
    first = build_occlusion_split(source, indices, tmp_path / "a", kinds=("sunglasses", "strokes"), seed=3)
    second = build_occlusion_split(source, indices[::-1], tmp_path / "b", kinds=("sunglasses", "strokes"), seed=3)
    assert first.num_samples == 6
    for name in ("face", "occlusion_mask", "occlusion_type", "source_index", "expr"):
        assert np.array_equal(np.asarray(first.array(name)), np.asarray(second.array(name)))
    face, clean = np.asarray(first.array("face")), np.asarray(first.array("face_clean"))
    mask = np.asarray(first.array("occlusion_mask")).astype(bool)
    assert mask.reshape(6, -1).any(axis=1).all(), "every split face is occluded"
    visible = np.broadcast_to(~mask, face.shape)
    assert np.array_equal(face[visible], clean[visible])
    assert np.array_equal(np.asarray(first.array("source_index")), [1, 1, 5, 5, 9, 9])
    assert np.array_equal(np.asarray(first.array("expr")), np.asarray(source.array("expr"))[[1, 1, 5, 5, 9, 9]])
    with pytest.raises(DataError, match="not valid"):
        build_occlusion_split(source, indices, tmp_path / "c", kinds=("balaclava",))


def test_occlusion_split_verb_and_data_module(tiny_cache: Path, tmp_path: Path) -> None:
    output = tmp_path / "occluded"
    main(["occlusion-split", "--config", QUICKSTART, *tiny_data_args(tiny_cache), "--output", str(output)])
    module = OcclusionSplitDataModule(str(output), occlusion_types=["hand", "hair"], batch_size=4)
    assert module.label_space.num_expressions == 8
    batch = module.on_after_batch_transfer(next(iter(module.test_dataloader())), 0)
    assert set(batch["occlusion_type"].tolist()) <= {2, 4}
    assert batch["face"].dtype == torch.float32 and batch["occlusion_mask"].max() == 1
    module.setup()
    assert module.indices().size == 2 * 2 * 4  # 2 test subjects × 4 samples × 2 kinds

    fit_dir = tmp_path / "fer"
    base = [*tiny_trainer_args(fit_dir)]
    face_only = "--data.init_args.modalities=[face]"
    main(["fit", "--config", QUICKSTART, *tiny_data_args(tiny_cache), face_only, *base, "--trainer.max_epochs=1"])
    checkpoint = str(next((run_folder(fit_dir) / "checkpoints").glob("best-*.ckpt")))
    data = [
        "--data=multimodal_fer.datamodules.OcclusionSplitDataModule",
        f"--data.init_args.root={output}",
        "--data.init_args.batch_size=8",
    ]
    main(["test", "--config", QUICKSTART, *base, *data, f"--ckpt_path={checkpoint}"])
    main(["test", "--config", QUICKSTART, *base, *data, f"--ckpt_path={checkpoint}", "--data.init_args.faces=clean"])
    results = json.loads((run_folder(fit_dir) / "results-occluded.json").read_text())
    assert results["condition"] == "occluded" and (run_folder(fit_dir) / "results-occlusion-clean.json").is_file()
    assert results["cache_fingerprint"] == CacheReader(output).fingerprint
    assert "test/expr/f1_macro" in results["metrics"]


def test_online_occlusion_draws_new_occluders_on_clean_faces(tiny_cache: Path) -> None:
    module = SynthAffectDataModule(
        root=str(tiny_cache), **TINY_DATA, modalities=["face"], online_occlusion_probability=1.0
    )
    dataset = module.dataset("train")
    assert isinstance(dataset, OnlineOcclusionDataset)
    torch.manual_seed(0)
    batch = dataset.__getitems__(list(range(len(dataset))))
    mask = batch["occlusion_mask"].bool()
    assert mask.flatten(1).any(dim=1).all() and (batch["occlusion_type"] >= 0).all()
    visible = ~mask.expand_as(batch["face"])
    assert torch.equal(batch["face"][visible], batch["face_clean"][visible])
    torch.manual_seed(0)
    again = dataset.__getitems__(list(range(len(dataset))))
    assert torch.equal(again["face"], batch["face"])
    assert not isinstance(module.dataset("val"), OnlineOcclusionDataset)


def test_restoration_batches_keep_clean_and_occluded_faces_aligned(tiny_cache: Path) -> None:
    module = SynthAffectDataModule(root=str(tiny_cache), **TINY_DATA, modalities=["face"], restoration_targets=True)
    module.setup()
    batch = module.on_after_batch_transfer(module.dataset("train").__getitems__(list(range(8))), 0)
    visible = batch["occlusion_mask"].expand_as(batch["face"]) == 0
    torch.testing.assert_close(batch["face"][visible], batch["face_clean"][visible])
    assert batch["face_mean"].shape == (8, 1, 1, 1)


def test_restoration_with_ddp_needs_find_unused_parameters() -> None:
    from lightning.pytorch import Trainer

    from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_LABEL_SPACE
    from multimodal_fer.tasks import OcclusionRestorationTask

    task = OcclusionRestorationTask(SYNTHAFFECT_LABEL_SPACE)
    task.trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    with pytest.raises(ValueError, match="ddp_find_unused_parameters_true"):
        task.setup("fit")
    task.trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp_find_unused_parameters_true", logger=False)
    task.setup("fit")


@pytest.mark.slow
def test_restoration_ddp_two_cpu_processes(tmp_path: Path, tiny_cache: Path) -> None:
    command = [
        *MFER,
        "fit",
        "--config",
        RESTORATION,
        *tiny_data_args(tiny_cache),
        *tiny_trainer_args(tmp_path),
        "--trainer.max_epochs=1",
        "--trainer.devices=2",
        "--trainer.strategy=ddp_find_unused_parameters_true",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run_folder(tmp_path) / "results-test.json").read_text())
    assert results["environment"]["world_size"] == 2
    assert np.isfinite(results["metrics"]["test/restoration/psnr_occluded"])


def test_restoration_bf16_mixed_precision_on_cpu(tmp_path: Path, tiny_cache: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            "--config",
            RESTORATION,
            *tiny_data_args(tiny_cache),
            *tiny_trainer_args(tmp_path),
            "--trainer.fast_dev_run=true",
            "--trainer.precision=bf16-mixed",
        ]
    )


def test_restoration_grids_reach_wandb_offline(tmp_path: Path, tiny_cache: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    main(
        [
            "fit",
            "--config",
            RESTORATION,
            *tiny_data_args(tiny_cache),
            *run_args(tmp_path),
            "--trainer.accelerator=cpu",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1",
            "--test_after_fit=false",
        ]
    )
    images = list(run_folder(tmp_path).glob("wandb/offline-run-*/files/media/images/val/restoration_grid*.png"))
    assert images, "the validation grid is logged to W&B as an image"


def test_grids_are_not_written_when_the_data_card_forbids_faces(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from multimodal_fer.callbacks import RestorationGridLogger

    callback = RestorationGridLogger(num_faces=2)
    faces = torch.randn(2, 3, 8, 8)
    statistics = {"face_mean": torch.zeros(2, 1, 1, 1), "face_std": torch.ones(2, 1, 1, 1)}
    batch = {"face": faces, "face_clean": faces, **statistics}
    outputs = {"restored": faces, "mask": torch.zeros(2, 1, 8, 8)}
    trainer = SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        # the data-module contract (FERData) with faces forbidden
        datamodule=SimpleNamespace(
            face_media_allowed=False, label_space=None, modalities=("face",), cache_fingerprint="", image_size=8
        ),
        logger=None,
        loggers=[],
        default_root_dir=str(tmp_path),
        current_epoch=0,
        global_step=0,
    )
    callback.on_validation_batch_end(trainer, None, outputs, batch, 0)
    callback.on_validation_epoch_end(trainer, None)
    assert callback.last_path is None and not (tmp_path / "restoration_grids").exists()
    trainer.datamodule.face_media_allowed = True
    callback.on_validation_batch_end(trainer, None, outputs, batch, 0)
    callback.on_validation_epoch_end(trainer, None)
    assert callback.last_path is not None and callback.last_path.exists()


def test_clean_faces_feed_the_unoccluded_render(tiny_cache: Path) -> None:
    module = SynthAffectDataModule(root=str(tiny_cache), **TINY_DATA, modalities=["face"], clean_faces=True)
    batch = module.dataset("train").__getitems__(list(range(6)))
    reader = CacheReader(tiny_cache)
    assert np.array_equal(batch["face"].numpy(), np.asarray(reader.array("face_clean"))[batch["index"].numpy()])
    with pytest.raises(ValueError, match="clean_faces"):
        SynthAffectDataModule(root=str(tiny_cache), clean_faces=True, restoration_targets=True)
