"""The learning-rate schedule spans trainer.max_epochs unless its length is set."""

import math
from functools import partial
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from multimodal_fer.cli import build_cli
from multimodal_fer.models.encoders import PhysioCNN
from multimodal_fer.models.fusion import AttentionFusion
from multimodal_fer.tasks import MultitaskFERTask
from multimodal_fer.tasks.schedules import CosineAnnealingLR, current_fit_length, fit_length, linear_decay_factor
from multimodal_fer.types import LabelSpace

from conftest import CONFIGS, tiny_data_args

LABEL_SPACE = LabelSpace(expressions=("a", "b"), dimensions=("valence", "arousal"))


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)


def test_the_length_comes_from_the_fit_unless_given() -> None:
    with fit_length(7):
        assert current_fit_length() == 7
        assert CosineAnnealingLR(_optimizer()).T_max == 7
        explicit = CosineAnnealingLR(_optimizer(), T_max=3)
        assert explicit.T_max == 3 and not explicit.follows_fit
    assert current_fit_length() is None


@pytest.mark.parametrize("epochs", [None, -1])
def test_an_unknown_length_is_refused_with_what_to_set(epochs: int | None) -> None:
    with pytest.raises(ValueError, match="T_max"):
        CosineAnnealingLR(_optimizer())
    with fit_length(epochs), pytest.raises(ValueError, match="trainer.max_epochs"):
        CosineAnnealingLR(_optimizer())
    with pytest.raises(ValueError, match="positive"):
        CosineAnnealingLR(_optimizer(), T_max=0)


def test_the_learning_rate_reaches_eta_min_at_the_end_of_the_fit() -> None:
    optimizer = _optimizer()
    with fit_length(4):
        scheduler = CosineAnnealingLR(optimizer, eta_min=0.1)
    rates = []
    for _ in range(4):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[-1] == pytest.approx(0.1)
    assert rates[1] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * 2 / 4)) / 2)


def _task(**scheduler: int) -> MultitaskFERTask:
    return MultitaskFERTask(
        {"physio": PhysioCNN(out_dim=8, widths=(4,))},
        LABEL_SPACE,
        fusion=partial(AttentionFusion, d_model=8, num_heads=2, num_layers=1),
        lr_scheduler=partial(CosineAnnealingLR, **scheduler),
    )


@pytest.mark.parametrize(("max_epochs", "explicit", "expected"), [(5, None, 5), (40, None, 40), (40, 20, 20)])
def test_the_task_builds_the_schedule_with_the_trainers_max_epochs(
    max_epochs: int, explicit: int | None, expected: int
) -> None:
    task = _task(**({"T_max": explicit} if explicit is not None else {}))
    task.trainer = Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False, accelerator="cpu")
    scheduler = task.configure_optimizers()["lr_scheduler"]
    assert scheduler.T_max == expected
    assert current_fit_length() is None  # the context ends with configure_optimizers


def test_quickstart_schedule_follows_the_max_epochs_flag(tmp_path: Path) -> None:
    base = ["--config", str(CONFIGS / "quickstart.yaml"), *tiny_data_args(tmp_path / "c"), "--trainer.logger=false"]
    small = ["--model.init_args.encoders.face.init_args.widths=[4, 8]"]
    for extra, expected in (
        (["--trainer.max_epochs=40"], 40),
        ([], 20),
        (["--trainer.max_epochs=40", "--model.init_args.lr_scheduler.init_args.T_max=25"], 25),
    ):
        cli = build_cli([*base, *small, *extra], run=False)
        cli.model.trainer = cli.trainer
        assert cli.model.configure_optimizers()["lr_scheduler"].T_max == expected, extra


def test_linear_decay_keeps_the_full_rate_then_falls_in_equal_steps_over_the_last_epochs() -> None:
    assert [linear_decay_factor(e, 5, 2) for e in range(5)] == [1.0, 1.0, 1.0, 2 / 3, 1 / 3]
    assert [linear_decay_factor(e, 3, 0) for e in range(3)] == [1.0, 1.0, 1.0]
    assert [linear_decay_factor(e, 2, 2) for e in range(2)] == [2 / 3, 1 / 3]


@pytest.mark.parametrize(("epochs", "decay", "message"), [(None, 2, "max_epochs"), (3, 4, "max_epochs"), (5, -1, "0")])
def test_an_impossible_decay_is_refused_with_what_to_set(epochs: int | None, decay: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        linear_decay_factor(0, epochs, decay)  # type: ignore[arg-type]
