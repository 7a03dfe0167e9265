import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from multimodal_fer.cli import main
from multimodal_fer.errors import StaleCacheError

from conftest import CONFIGS, MFER, REPO, TINY_CLIP_FRAMES, run_folder, tiny_data_args, tiny_trainer_args

QUICKSTART = str(CONFIGS / "quickstart.yaml")
RESTORATION = str(CONFIGS / "restoration" / "synthaffect.yaml")
#: Real data sets' configs are exercised by their adapters' tests, on their own fake raw files
#: (tests/test_<name>.py, ``fit_through_config``); every other config runs here on tiny SynthAffect data.
DATA_SET_CONFIGS = sorted((CONFIGS / "data").glob("*.yaml"))
#: Presets of pretrained encoders name a weights file the user downloads: tests/test_ssl_encoders.py fits each one
#: with tiny sizes and a weights file it saves first.
PRETRAINED_PRESETS = sorted((CONFIGS / "encoders" / "pretrained").glob("*.yaml"))
ALL_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml") if p not in DATA_SET_CONFIGS and p not in PRETRAINED_PRESETS)
#: Overlay configs (they change one part and compose after a full config): overlays/ and encoder presets.
OVERLAYS = {p for p in ALL_CONFIGS if {"overlays", "encoders"} & set(p.parts)}


def _fit(
    tmp_path: Path,
    cache: Path,
    *extra: str,
    configs: tuple[str, ...] = (QUICKSTART,),
    data: dict[str, object] | None = None,
) -> None:
    args = ["fit"]
    for config in configs:
        args += ["--config", config]
    main([*args, *tiny_data_args(cache, **(data or {})), *tiny_trainer_args(tmp_path), *extra])


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_runs_fast_dev_run(
    config: Path, tmp_path: Path, tiny_cache: Path, monkeypatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.chdir(tmp_path)  # configs name output folders relative to the working folder
    restorer_overlays = ("face_restorer.yaml", "face_mask_aware.yaml", "face_restorer_joint.yaml")
    if config.name in restorer_overlays:  # need stage 1's checkpoint (restorer, discriminator): an untrained one
        from multimodal_fer.models.restoration import RESTORER_CHECKPOINT_KEY, FaceRestorer, PatchDiscriminator

        restorer = FaceRestorer()
        restorer.image_size.fill_(32)
        target = tmp_path / "runs/restoration/latest/checkpoints/restorer.ckpt"
        target.parent.mkdir(parents=True)
        discriminator = {f"discriminator.{k}": v for k, v in PatchDiscriminator().state_dict().items()}
        torch.save({RESTORER_CHECKPOINT_KEY: restorer.export(), "state_dict": discriminator}, target)
    if config.name == "face_restorer_joint.yaml":  # and stage 2's recogniser: an untrained one
        from multimodal_fer.cli import build_cli

        stage_two = ["--config", QUICKSTART, "--config", str(CONFIGS / "overlays/face_restorer.yaml")]
        cli = build_cli([*stage_two, *tiny_data_args(tiny_cache), *tiny_trainer_args(tmp_path)], run=False)
        target = tmp_path / "runs/quickstart-restorer/latest/checkpoints/best-epoch=00.ckpt"
        target.parent.mkdir(parents=True)
        torch.save({"state_dict": cli.model.state_dict()}, target)
    if config.name == "fusion_from_singles.yaml":  # needs stage-1 runs: an untrained quickstart model's weights do
        from multimodal_fer.cli import build_cli

        cli = build_cli(["--config", QUICKSTART, *tiny_data_args(tiny_cache), *tiny_trainer_args(tmp_path)], run=False)
        for modality in ("face", "audio", "depth", "physio"):
            target = tmp_path / "runs/single" / modality / "checkpoints/best-epoch=00.ckpt"
            target.parent.mkdir(parents=True)
            torch.save({"state_dict": cli.model.state_dict()}, target)
    if config.name == "physio_cnn_features.yaml":  # reads the neurokit2 feature side cache: compute it first
        main(["physio-features", "--config", QUICKSTART, *tiny_data_args(tiny_cache), "--workers", "1"])
    extra: list[str] = []
    if config.name == "reads_expression_recogniser.yaml":  # its reader starts from the recogniser critic: train one
        recogniser = tmp_path / "recogniser"
        face_only = ("--config", QUICKSTART, "--config", str(CONFIGS / "overlays/fusion_concat.yaml"))
        main(
            [
                "fit",
                *face_only,
                *tiny_data_args(tiny_cache, modalities="[face]"),
                *tiny_trainer_args(recogniser),
                "--trainer.max_epochs=1",
                "--trainer.limit_train_batches=1",
                "--trainer.limit_val_batches=1",
                "--test_after_fit=false",
            ]
        )
        best = next((run_folder(recogniser) / "checkpoints").glob("best-*.ckpt"))
        extra.append(f"--model.init_args.recogniser_critic={best}")
    base = RESTORATION if "restoration" in config.parts else QUICKSTART  # a restoration overlay composes onto stage 1
    configs = (base, str(config)) if config in OVERLAYS else (str(config),)
    cache, data = tiny_cache, {}
    if config.name.startswith("face_clip"):  # clip presets read a clip cache (its own root)
        cache, data = request.getfixturevalue("tiny_clip_cache"), {"clip_frames": TINY_CLIP_FRAMES}
    _fit(tmp_path, cache, "--trainer.fast_dev_run=true", *extra, configs=configs, data=data)


def test_fit_then_test_writes_results_beside_checkpoint(tmp_path: Path, tiny_cache: Path) -> None:
    _fit(tmp_path, tiny_cache, "--trainer.max_epochs=1", "--seed_everything=3")
    checkpoints = list((run_folder(tmp_path) / "checkpoints").glob("best-*.ckpt"))
    assert len(checkpoints) == 1
    results = json.loads((run_folder(tmp_path) / "results-test.json").read_text())
    assert results["condition"] == "test" and results["run"]["name"] == "run"
    metrics = results["metrics"]
    for name in (
        "test/expr/f1_macro",
        "test/expr/accuracy",
        "test/au/f1_mean",
        "test/au/f1_au12",
        "test/va/ccc_arousal",
        "test/va/rmse_valence",
        "test/score",
    ):
        assert name in metrics and metrics[name] == metrics[name]  # present and not NaN
    assert results["seed"] == 3
    assert results["checkpoint"] == str(checkpoints[0].resolve())
    assert len(results["cache_fingerprint"]) == 64
    assert results["package_version"] and "sha" in results["git"]
    assert results["config"]["data"]["init_args"]["image_size"] == 32
    assert results["modalities"] == ["face", "audio", "depth", "physio"]
    assert results["num_parameters"] > 0
    assert results["data"]["face_media_allowed"] is True  # generated faces: mfer report may show restoration grids


def test_modality_ablation_is_a_data_flag(tmp_path: Path, tiny_cache: Path) -> None:
    _fit(tmp_path, tiny_cache, "--trainer.max_epochs=1", "--data.init_args.modalities=[face,audio]")
    results = json.loads((run_folder(tmp_path) / "results-test.json").read_text())
    assert results["modalities"] == ["face", "audio"]
    state = torch.load(next((run_folder(tmp_path) / "checkpoints").glob("best-*.ckpt")), weights_only=False)
    encoders = {key.split(".")[2] for key in state["state_dict"] if key.startswith("model.encoders.")}
    assert encoders == {"face", "audio"}


def test_unknown_modality_is_refused_before_training(tmp_path: Path, tiny_cache: Path) -> None:
    with pytest.raises(ValueError, match="Unknown modality 'thermal'"):
        _fit(tmp_path, tiny_cache, "--trainer.fast_dev_run=true", "--data.init_args.modalities=[face,thermal]")
    assert not (run_folder(tmp_path) / "checkpoints").exists()


def test_unknown_config_key_is_refused_by_name(tmp_path: Path, tiny_cache: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _fit(tmp_path, tiny_cache, "--trainer.fast_dev_run=true", "--data.init_args.image_sise=32")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Option 'image_sise' is not accepted" in err
    assert "hint: 'image_sise': did you mean 'image_size' (an argument of" in err
    assert "mfer fit --help" in err and "--trainer.max_epochs MAX_EPOCHS" not in err  # no page of usage above it
    config = tmp_path / "typo.yaml"
    config.write_text("trainer:\n  max_epoch: 3\n")
    with pytest.raises(SystemExit):
        _fit(tmp_path, tiny_cache, "--config", str(config))
    assert "hint: 'trainer.max_epoch': did you mean 'trainer.max_epochs'?" in capsys.readouterr().err


def test_error_hints_name_the_closest_option_or_list_a_small_classs_arguments() -> None:
    from multimodal_fer.cli_errors import suggestions

    unrecognized = "unrecognized arguments: --trainer.max_epohcs=3 --seed 1"
    assert suggestions(unrecognized, ["trainer.max_epochs", "trainer.max_steps", "seed_everything"]) == [
        "'trainer.max_epohcs': did you mean 'trainer.max_epochs'?",
    ]  # fmt: skip
    nested = (
        "Problem with given class_path 'multimodal_fer.corruption_conditions.Corruption':\n"
        "    Option 'severity' is not accepted"
    )
    assert suggestions(nested, []) == [
        "'severity': multimodal_fer.corruption_conditions.Corruption accepts modality, kind, strength, seed"
    ]
    assert suggestions("Option 'x' is not accepted", ["x_y"]) == []  # no class named: nothing to compare with


def test_stale_cache_is_refused_with_rebuild_command(tmp_path: Path, tiny_cache: Path) -> None:
    with pytest.raises(StaleCacheError, match=r"image_size: 32 → 48.*mfer prepare"):
        _fit(tmp_path, tiny_cache, "--trainer.fast_dev_run=true", "--data.init_args.image_size=48")


def test_python_dash_m_runs_the_same_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "multimodal_fer", "fit", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0 and "--data" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "overlays",
    [("modality_dropout.yaml", "fusion_mult.yaml")],  # attention fusion alone: test_ddp_evaluation.py's DDP fit
    ids=["mult+modality_dropout+missing_tokens"],
)
def test_ddp_fit_and_test(tmp_path: Path, tiny_cache: Path, overlays: tuple[str, ...]) -> None:
    # Plain "ddp" (no find_unused_parameters): modality dropout, missing tokens and token fusion must leave no
    # parameter without a gradient.
    command = [
        *MFER,
        "fit",
        "--config",
        QUICKSTART,
        *(arg for name in overlays for arg in ("--config", str(CONFIGS / "overlays" / name))),
        *tiny_data_args(tiny_cache),
        *tiny_trainer_args(tmp_path),
        "--trainer.max_epochs=1",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
    ]
    done = subprocess.run(
        command, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run_folder(tmp_path) / "results-test.json").read_text())
    assert results["environment"]["world_size"] == 2
    assert "test/expr/f1_macro" in results["metrics"]
    # Every epoch value is a torchmetrics state reduced across processes: Lightning's advice to sync it is silenced.
    assert "sync_dist=True" not in done.stderr


def test_validate_and_predict_from_a_checkpoint(tmp_path: Path, tiny_cache: Path) -> None:
    _fit(tmp_path, tiny_cache, "--trainer.max_epochs=1")
    checkpoint = str(next((run_folder(tmp_path) / "checkpoints").glob("best-*.ckpt")))
    common = ["--config", QUICKSTART, *tiny_data_args(tiny_cache), *tiny_trainer_args(tmp_path)]
    main(["validate", *common, f"--ckpt_path={checkpoint}"])
    main(["predict", *common, f"--ckpt_path={checkpoint}"])
    from multimodal_fer.cli import build_cli

    cli = build_cli([*common, f"--trainer.default_root_dir={tmp_path}"], run=False)  # no run folder without a verb
    predictions = cli.trainer.predict(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint)
    first = predictions[0]
    assert first["expr_probs"].shape == (4, 8)
    assert torch.allclose(first["expr_probs"].sum(-1), torch.ones(4), atol=1e-5)
    assert first["au_probs"].shape == (4, 16) and first["va"].shape == (4, 2)
    assert first["index"].shape == (4,)


def test_every_data_set_config_has_an_adapter_test():
    tested = {p.name for p in (REPO / "tests").glob("test_*.py") if "fit_through_config(" in p.read_text()}
    combined = (REPO / "tests" / "test_combined_data.py").read_text()
    assert '"combined.yaml"' in combined and '"fit"' in combined  # its members' fakes, fitted and tested there
    for config in DATA_SET_CONFIGS:
        if config.name == "combined.yaml":
            continue
        users = [name for name in tested if f'"{config.name}"' in (REPO / "tests" / name).read_text()]
        assert users, f"configs/data/{config.name} is not fitted by any adapter test"


def test_help_lists_every_verb_and_each_own_verb_has_its_help(capsys) -> None:
    from multimodal_fer.cli import OWN_VERBS, main

    main(["--help"])
    overview = capsys.readouterr().out
    for verb in ("fit", "validate", "test", "predict", *OWN_VERBS):
        assert f"\n  {verb} " in overview
    for verb in OWN_VERBS:
        with pytest.raises(SystemExit) as exit_info:
            main([verb, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: mfer {verb}" in capsys.readouterr().out


def test_a_disabled_progress_bar_drops_the_configs_progress_bar_callback(tmp_path: Path, tiny_cache: Path) -> None:
    """Lightning refuses ``enable_progress_bar=False`` beside a ``RichProgressBar`` callback; the configs carry one."""
    _fit(tmp_path, tiny_cache, "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false")
