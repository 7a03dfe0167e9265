import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from multimodal_fer._lazy import require
from multimodal_fer.cli import main
from multimodal_fer.errors import MissingDependencyError
from multimodal_fer.loggers import WandbLogger, wandb_credentials_available

from conftest import CONFIGS, REPO, run_args, run_folder, tiny_data_args

QUICKSTART = str(CONFIGS / "quickstart.yaml")


def _csv_fit_args(tmp_path: Path, cache: Path, *extra: str) -> list[str]:
    """``mfer fit`` arguments: the quickstart on the tiny cache, logging to CSV under ``tmp_path``, on the CPU."""
    return [
        "fit",
        "--config",
        QUICKSTART,
        "--config",
        str(CONFIGS / "overlays" / "csv_logger.yaml"),
        *tiny_data_args(cache),
        *run_args(tmp_path),
        "--trainer.accelerator=cpu",
        *extra,
    ]


def test_missing_dependency_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "open3d", None)
    with pytest.raises(MissingDependencyError, match=r"pip install open3d==0.20.0.*libusb-1.0-0"):
        require("open3d", "rendering faces")


def test_wandb_goes_offline_without_credentials_and_says_how_to_sync(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert not wandb_credentials_available()
    with caplog.at_level(logging.WARNING):
        logger = WandbLogger(save_dir=str(tmp_path / "runs"))
    assert logger._offline is True
    assert "wandb sync" in caplog.text


def test_wandb_online_with_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert WandbLogger(save_dir=str(tmp_path))._offline is False


def test_training_from_a_cache_imports_no_heavy_optional_dependency(tmp_path, tiny_cache):
    args = _csv_fit_args(tmp_path, tiny_cache, "--trainer.fast_dev_run=true")
    code = (
        "import sys, os; os.environ['WANDB_MODE'] = 'disabled';"
        "from multimodal_fer.cli import main;"
        f"main({args!r});"
        "loaded = [m for m in ('open3d', 'neurokit2', 'wandb') if m in sys.modules];"
        "print('LOADED', loaded); sys.exit(1 if loaded else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_show_batch_draws_a_png(tmp_path, tiny_cache):
    output = tmp_path / "batch.png"
    main(["show-batch", "--config", QUICKSTART, *tiny_data_args(tiny_cache), "--output", str(output), "--rows", "3"])
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and output.stat().st_size > 10_000


def test_show_batch_draws_what_a_real_data_sets_cache_holds_beside_the_cache(tmp_path, capsys):
    """Fake RAVDESS (faces and voices, some recordings without one): no SynthAffect field is asked for, the figure
    lands beside the cache (real faces stay with their data) and says so."""
    from multimodal_fer.preprocessing.cache import CacheReader
    from multimodal_fer.visualization.batch_figure import figure_columns

    from data.ravdess.generate import write_fake_ravdess

    raw, cache = tmp_path / "raw", tmp_path / "ravdess"
    write_fake_ravdess(raw)
    data = [f"--data.init_args.raw_root={raw}", f"--data.init_args.root={cache}", "--data.init_args.num_workers=0"]
    data += ["--data.init_args.preprocessing.image_size=32", "--data.init_args.preparation_workers=0"]
    main(
        ["show-batch", "--config", QUICKSTART, "--config", str(CONFIGS / "data" / "ravdess.yaml"), *data, "--rows", "4"]
    )
    output = cache / "batch-train.png"
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and output.stat().st_size > 5_000
    assert "real people's faces" in capsys.readouterr().err.replace("\n", " ")
    columns = [title for title, _, _ in figure_columns(CacheReader(cache).specs, ("face", "audio"))]
    assert columns == ["face (input)", "log-mel (audio)"]
    synthaffect = ["face", "face_clean", "occlusion_mask", "depth", "points", "audio", "physio"]
    assert [field for _, field, _ in figure_columns(synthaffect, ("face", "audio", "depth", "physio"))] == [
        "face", "occlusion_mask", "face_clean", "depth", "audio", "physio",
    ]  # fmt: skip
    assert [field for _, field, _ in figure_columns(["points", "physio"], ("depth",))] == ["points"]


def test_prepare_is_idempotent(tiny_cache, capsys):
    manifest = json.loads((tiny_cache / "manifest.json").read_text())
    main(["prepare", "--config", QUICKSTART, *tiny_data_args(tiny_cache)])
    assert json.loads((tiny_cache / "manifest.json").read_text()) == manifest
    assert "Cache ready" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_fit(tmp_path: Path, tiny_cache: Path) -> None:
    gpu = ("--trainer.accelerator=gpu", "--trainer.precision=bf16-mixed")
    main(_csv_fit_args(tmp_path, tiny_cache, "--trainer.max_epochs=1", *gpu))
    results = json.loads((run_folder(tmp_path) / "results-test.json").read_text())
    assert results["environment"]["accelerator"] == "CUDAAccelerator" and "bf16" in results["environment"]["precision"]


def test_logger_receives_config_parameter_counts_and_stage_metrics(tmp_path, tiny_cache):
    main(
        [
            "fit",
            "--config",
            QUICKSTART,
            "--config",
            str(CONFIGS / "overlays" / "csv_logger.yaml"),
            *tiny_data_args(tiny_cache),
            *run_args(tmp_path),
            "--trainer.max_epochs=1",
            "--trainer.accelerator=cpu",
        ]
    )
    import yaml

    run = run_folder(tmp_path) / "csv" / "session-0"
    hparams = yaml.safe_load((run / "hparams.yaml").read_text())
    assert hparams["config"]["data"]["init_args"]["image_size"] == 32
    assert hparams["params/total"] > 0 and hparams["params/encoder_face"] > 0
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("train/loss", "val/loss", "val/expr/f1_macro", "val/score", "test/va/ccc_arousal", "train/lr"):
        assert name in header, name
