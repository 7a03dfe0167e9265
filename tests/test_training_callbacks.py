"""The learning-rate monitor of the shipped configs and the early-stopping overlay that appends to their callbacks."""

import csv
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from multimodal_fer.callbacks import LearningRateMonitor
from multimodal_fer.cli import build_cli, main

from conftest import CONFIGS, run_args, run_folder, tiny_data_args

QUICKSTART = str(CONFIGS / "quickstart.yaml")
EARLY_STOPPING = str(CONFIGS / "overlays" / "early_stopping.yaml")
#: Small encoders: these tests are about callbacks, not about the model.
SMALL = [
    "--model.init_args.encoders.face.init_args.widths=[4, 8]",
    "--model.init_args.encoders.audio.init_args.widths=[4]",
    "--model.init_args.encoders.depth.init_args.widths=[4]",
    "--model.init_args.encoders.physio.init_args.widths=[4]",
]


def _callbacks(tmp_path: Path, *configs: str) -> list:
    args = []
    for config in (QUICKSTART, *configs):
        args += ["--config", config]
    cli = build_cli([*args, *SMALL, *tiny_data_args(tmp_path / "c"), "--trainer.logger=false"], run=False)
    return cli.trainer.callbacks


def _logged_columns(folder: Path) -> set[str]:
    (metrics,) = folder.rglob("metrics.csv")
    with metrics.open() as handle:
        return set(next(csv.reader(handle)))


def test_the_early_stopping_overlay_appends_to_the_quickstarts_callbacks(tmp_path: Path) -> None:
    callbacks = _callbacks(tmp_path, EARLY_STOPPING)
    (stopping,) = [c for c in callbacks if isinstance(c, EarlyStopping)]
    assert stopping.monitor == "val/score" and stopping.mode == "max" and stopping.patience == 5
    # The quickstart's own callbacks are all still there.
    assert any(isinstance(c, ModelCheckpoint) and c.monitor == "val/score" for c in callbacks)
    assert any(isinstance(c, LearningRateMonitor) for c in callbacks)
    assert not any(isinstance(c, EarlyStopping) for c in _callbacks(tmp_path))


def test_a_plain_callbacks_key_would_replace_them(tmp_path: Path) -> None:
    """Why the overlay says ``callbacks+``: without the ``+`` the quickstart's checkpointing is gone."""
    replacing = tmp_path / "replacing.yaml"
    replacing.write_text(
        "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.EarlyStopping\n"
        "      init_args: {monitor: val/score, mode: max}\n"
    )
    callbacks = _callbacks(tmp_path, str(replacing))
    assert any(isinstance(c, EarlyStopping) for c in callbacks)
    assert not any(isinstance(c, ModelCheckpoint) and c.monitor == "val/score" for c in callbacks)
    assert not any(isinstance(c, LearningRateMonitor) for c in callbacks)


def test_an_appended_early_stopping_ends_the_fit(tmp_path: Path, tiny_cache: Path) -> None:
    hopeless = tmp_path / "stop_soon.yaml"  # no epoch can improve val/score by 10: stop after the second
    hopeless.write_text(
        "trainer:\n  callbacks+:\n    - class_path: lightning.pytorch.callbacks.EarlyStopping\n"
        "      init_args: {monitor: val/score, mode: max, patience: 1, min_delta: 10.0}\n"
    )
    cli = build_cli(
        [
            "--config",
            QUICKSTART,
            "--config",
            str(hopeless),
            *SMALL,
            *tiny_data_args(tiny_cache),
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false",
            "--trainer.accelerator=cpu",
            "--trainer.max_epochs=5",
        ],
        run=False,
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.current_epoch == 2 and cli.trainer.should_stop


def test_every_parameter_group_of_the_fer_task_is_logged(tmp_path: Path, tiny_cache: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            "--config",
            QUICKSTART,
            "--config",
            str(CONFIGS / "overlays" / "uncertainty_weighting.yaml"),
            *SMALL,
            *tiny_data_args(tiny_cache),
            *run_args(tmp_path),
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.accelerator=cpu",
            "--trainer.max_epochs=1",
            "--test_after_fit=false",
        ]
    )
    columns = _logged_columns(run_folder(tmp_path))
    assert {"lr-AdamW/model", "lr-AdamW/task_balancing", "train/lr"} <= columns


def test_the_restoration_tasks_two_optimisers_are_logged(tmp_path: Path, tiny_cache: Path, monkeypatch) -> None:
    """Manual optimisation with two optimisers and no scheduler: both learning rates are logged by name."""
    monkeypatch.chdir(tmp_path)  # the config writes its checkpoint under runs/ of the working folder
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "restoration" / "synthaffect.yaml"),
            *tiny_data_args(tiny_cache),
            *run_args(tmp_path),
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.accelerator=cpu",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            "--test_after_fit=false",
        ]
    )
    assert {"lr-Adam/restorer", "lr-Adam-1/critic"} <= _logged_columns(run_folder(tmp_path))


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_the_monitor_is_silent_without_a_logger(tmp_path: Path, tiny_cache: Path, interval: str) -> None:
    cli = build_cli(
        [
            "--config",
            QUICKSTART,
            *SMALL,
            *tiny_data_args(tiny_cache),
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false",
            "--trainer.accelerator=cpu",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1",
        ],
        run=False,
    )
    (monitor,) = [c for c in cli.trainer.callbacks if isinstance(c, LearningRateMonitor)]
    monitor.logging_interval = interval
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert not monitor.active and monitor.lrs == {}
