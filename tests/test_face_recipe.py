"""Issue 18's face recogniser recipe: label smoothing, learning-rate warm-up, zero-initialised residual branches,
augmentation strength; the overlay that switches them on and the suite that measures them."""

import json
import math
from functools import partial
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

from multimodal_fer.benchmarking import load_suite
from multimodal_fer.cli import build_cli, main
from multimodal_fer.datamodules.device_transforms import augment_face_and_depth
from multimodal_fer.models.blocks import ResidualBlock2d
from multimodal_fer.models.encoders import FaceCNN, PhysioCNN
from multimodal_fer.models.fusion import ConcatFusion
from multimodal_fer.models.losses import MultitaskLoss, UnimodalLoss, masked_cross_entropy
from multimodal_fer.tasks import MultitaskFERTask
from multimodal_fer.tasks.schedules import CosineAnnealingLR, with_linear_warmup
from multimodal_fer.types import LabelSpace

from conftest import CONFIGS, REPO, run_folder, tiny_data_args, tiny_trainer_args

QUICKSTART = str(CONFIGS / "quickstart.yaml")
CONCAT = str(CONFIGS / "overlays" / "fusion_concat.yaml")
RECIPE = CONFIGS / "overlays" / "face_recipe.yaml"
SUITE = REPO / "benchmarks" / "suites" / "face_recipe.yaml"
LABEL_SPACE = LabelSpace(expressions=("a", "b", "c"), dimensions=("valence", "arousal"))


# ------------------------------------------------------------------------------------------- label smoothing
def test_smoothed_cross_entropy_equals_the_hand_computed_one() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [1.0, 3.0, 0.0], [0.3, -0.2, 0.9]])
    target = torch.tensor([0, -1, 1, 2])
    eps, classes = 0.1, 3
    log_p = logits.log_softmax(-1)
    labeled = [(0, 0), (2, 1), (3, 2)]
    per_sample = {i: -(1 - eps) * log_p[i, y] - eps / classes * log_p[i].sum() for i, y in labeled}
    expected = sum(per_sample.values()) / 3
    torch.testing.assert_close(masked_cross_entropy(logits, target, label_smoothing=eps), expected)
    weight = torch.tensor([1.0, 2.0, 0.5])  # each sample's whole smoothed loss carries its true class's weight
    weighted = (1.0 * per_sample[0] + 2.0 * per_sample[2] + 0.5 * per_sample[3]) / 3.5
    torch.testing.assert_close(masked_cross_entropy(logits, target, weight, label_smoothing=eps), weighted)
    # At uniform predictions the smoothed loss is still ln C: the plateau reads the same in the logs.
    uniform = torch.zeros(4, 8)
    torch.testing.assert_close(
        masked_cross_entropy(uniform, torch.tensor([0, 3, 7, -1]), label_smoothing=0.1), torch.tensor(math.log(8))
    )


def test_the_losses_and_the_task_pass_the_smoothing_on() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [1.0, 3.0, 0.0]])
    batch = {"expr": torch.tensor([0, 2])}
    smoothed = masked_cross_entropy(logits, batch["expr"], label_smoothing=0.2)
    assert not torch.allclose(smoothed, masked_cross_entropy(logits, batch["expr"]))
    torch.testing.assert_close(
        MultitaskLoss(tasks=("expr",), expr_label_smoothing=0.2)({"expr": logits}, batch)["expr"], smoothed
    )
    unimodal = UnimodalLoss(tasks=("expr",), expr_label_smoothing=0.2)
    present = {"face": torch.tensor([True, True])}
    torch.testing.assert_close(unimodal({"face": {"expr": logits}}, present, batch), smoothed)
    task = _task(expr_label_smoothing=0.2, unimodal_loss_weight=0.5)
    assert task.loss.expr_label_smoothing == 0.2 and task.unimodal_loss.loss.expr_label_smoothing == 0.2
    assert _task().loss.expr_label_smoothing == 0.0  # off by default


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan"), 1.5])
def test_smoothing_outside_zero_to_one_is_refused_by_name(bad: float) -> None:
    with pytest.raises(ValueError, match=r"expr_label_smoothing=.* must lie in \[0, 1\)"):
        _task(expr_label_smoothing=bad)
    with pytest.raises(ValueError, match="expr_label_smoothing"):
        masked_cross_entropy(torch.zeros(1, 3), torch.tensor([0]), label_smoothing=bad)


# --------------------------------------------------------------------------------------------------- warm-up
def _task(scheduler: bool = True, **options) -> MultitaskFERTask:
    return MultitaskFERTask(
        {"physio": PhysioCNN(out_dim=8, widths=(4,))},
        LABEL_SPACE,
        fusion=partial(ConcatFusion, hidden_dim=8, out_dim=8),
        optimizer=partial(torch.optim.SGD, lr=0.3),
        lr_scheduler=partial(CosineAnnealingLR) if scheduler else None,
        **options,
    )


def _epoch_rates(task: LightningModule, max_epochs: int, **trainer: object) -> list[float]:
    """The learning rate of each epoch of a fit of ``max_epochs``, stepping the task's scheduler once per epoch."""
    task.trainer = Trainer(
        max_epochs=max_epochs, logger=False, enable_checkpointing=False, accelerator="cpu", **trainer
    )
    configured = task.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]
    rates = []
    for _ in range(max_epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_ramps_linearly_then_the_cosine_spans_the_rest_of_the_fit() -> None:
    rates = _epoch_rates(_task(lr_warmup_epochs=2), max_epochs=6)
    cosine = [0.3 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]  # T_max = 6 - 2 epochs
    assert rates == pytest.approx([0.1, 0.2, *cosine])
    assert _epoch_rates(_task(), max_epochs=6) == pytest.approx(
        [0.3 * (1 + math.cos(math.pi * t / 6)) / 2 for t in range(6)]
    )


def test_warmup_without_a_scheduler_holds_the_full_rate_afterwards() -> None:
    assert _epoch_rates(_task(scheduler=False, lr_warmup_epochs=3), max_epochs=6) == pytest.approx(
        [0.075, 0.15, 0.225, 0.3, 0.3, 0.3]
    )
    assert _task(scheduler=False).configure_optimizers().__class__.__name__ == "SGD"  # off: no scheduler at all


def test_warmup_that_takes_the_whole_fit_is_refused_except_in_fast_dev_run() -> None:
    with pytest.raises(ValueError, match=r"lr_warmup_epochs=2 leaves no epoch .*max_epochs=2"):
        _epoch_rates(_task(lr_warmup_epochs=2), max_epochs=2)
    assert _epoch_rates(_task(lr_warmup_epochs=2), max_epochs=1, fast_dev_run=True) == pytest.approx([0.1])
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="lr_warmup_epochs"):
            _task(lr_warmup_epochs=bad)
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        with_linear_warmup(optimizer, 2, torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer))


def test_warmup_state_restores_exactly_in_a_fresh_scheduler() -> None:
    whole = _epoch_rates(_task(lr_warmup_epochs=2), max_epochs=7)
    first = _task(lr_warmup_epochs=2)
    first.trainer = Trainer(max_epochs=7, logger=False, enable_checkpointing=False, accelerator="cpu")
    configured = first.configure_optimizers()
    for _ in range(3):  # stopped after three epochs: warm-up done, cosine at its first step
        configured["optimizer"].step()
        configured["lr_scheduler"].step()
    state = (configured["optimizer"].state_dict(), configured["lr_scheduler"].state_dict())
    second = _task(lr_warmup_epochs=2)
    second.trainer = Trainer(max_epochs=7, logger=False, enable_checkpointing=False, accelerator="cpu")
    resumed = second.configure_optimizers()
    resumed["optimizer"].load_state_dict(state[0])
    resumed["lr_scheduler"].load_state_dict(state[1])
    rates = []
    for _ in range(4):
        rates.append(resumed["optimizer"].param_groups[0]["lr"])
        resumed["optimizer"].step()
        resumed["lr_scheduler"].step()
    assert rates == whole[3:]


class LearningRateRecorder(Callback):
    """Writes ``{epoch: learning rate of the model's group}`` to a JSON file at every training epoch's start."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Record this epoch's rate (a redone epoch replaces its entry)."""
        rates = json.loads(self.path.read_text()) if self.path.exists() else {}
        rates[str(trainer.current_epoch)] = trainer.optimizers[0].param_groups[0]["lr"]
        self.path.write_text(json.dumps(rates))


class Interrupted(RuntimeError):
    """The fault :class:`InterruptAtEpochEnd` raises."""


class InterruptAtEpochEnd(Callback):
    """Stops a fit with an exception at an epoch's end, before that epoch's checkpoint is written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fail at the end of :attr:`epoch`."""
        if trainer.current_epoch == self.epoch:
            raise Interrupted(f"interrupted at the end of epoch {self.epoch}")


@pytest.mark.slow
def test_a_fit_interrupted_in_the_cosine_resumes_the_learning_rates_exactly(tmp_path: Path, tiny_cache: Path) -> None:
    """Stopped in the cosine after the warm-up, resumed with ``--ckpt_path last``: every epoch's rate as unbroken."""

    def fit(root: Path, record: Path, *extra: str) -> None:
        recorder = json.dumps({"class_path": f"{__name__}.LearningRateRecorder", "init_args": {"path": str(record)}})
        main(
            [
                *("fit", "--config", QUICKSTART, "--config", CONCAT, "--model.init_args.lr_warmup_epochs=2"),
                *tiny_data_args(tiny_cache),
                *tiny_trainer_args(root),
                "--data.init_args.modalities=[face]",
                "--model.init_args.encoders.face.init_args.widths=[4, 8]",
                "--trainer.max_epochs=4",
                "--trainer.limit_val_batches=1",
                "--test_after_fit=false",
                f"--trainer.callbacks+={recorder}",
                *extra,
            ]
        )

    fit(tmp_path / "whole", tmp_path / "whole.json")
    fault = json.dumps({"class_path": f"{__name__}.InterruptAtEpochEnd", "init_args": {"epoch": 3}})
    with pytest.raises(Interrupted):
        fit(tmp_path / "broken", tmp_path / "broken.json", f"--trainer.callbacks+={fault}")
    last = torch.load(run_folder(tmp_path / "broken") / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2  # stopped one epoch into the cosine
    fit(tmp_path / "broken", tmp_path / "broken.json", "--ckpt_path=last")  # redoes epoch 3
    whole = json.loads((tmp_path / "whole.json").read_text())
    lr = 0.001
    cosine = [lr * (1 + math.cos(math.pi * t / 2)) / 2 for t in range(2)]  # T_max = 4 - 2 epochs
    assert [whole[str(e)] for e in range(4)] == pytest.approx([lr / 3, 2 * lr / 3, *cosine])
    assert json.loads((tmp_path / "broken.json").read_text()) == whole


# ---------------------------------------------------------------------------------------- zero-init residual
def _blocks(encoder: FaceCNN) -> list[ResidualBlock2d]:
    return [module for module in encoder.modules() if isinstance(module, ResidualBlock2d)]


@pytest.mark.parametrize("train", [True, False])
def test_zero_initialised_blocks_compute_their_shortcut(train: bool) -> None:
    torch.manual_seed(0)
    encoder = FaceCNN(out_dim=8, widths=(4, 8, 8), zero_init_residual=True).train(train)
    x = torch.randn(3, 3, 32, 32)
    h = encoder.features[:3](x)  # the stem's output, the first block's input (non-negative)
    blocks = _blocks(encoder)
    assert len(blocks) == 3
    for index, block in enumerate(blocks):
        out = block(h)
        torch.testing.assert_close(out, torch.relu(block.shortcut(h)), rtol=0, atol=0)
        if isinstance(block.shortcut, torch.nn.Identity):
            torch.testing.assert_close(out, h, rtol=0, atol=0)  # the identity
        else:
            assert index > 0  # only the downsampling blocks project
        h = out


def test_zero_init_changes_only_the_branches_last_norm_scales() -> None:
    torch.manual_seed(0)
    plain = FaceCNN(out_dim=8, widths=(4, 8), zero_init_residual=False)
    torch.manual_seed(0)
    zeroed = FaceCNN(out_dim=8, widths=(4, 8), zero_init_residual=True)
    changed = {name for name, value in zeroed.state_dict().items() if not torch.equal(value, plain.state_dict()[name])}
    assert changed == {"features.3.bn2.weight", "features.4.bn2.weight"}
    plain.eval()  # keeps the running statistics compared above
    h = plain.features[:3](torch.randn(2, 3, 32, 32))
    assert not torch.allclose(_blocks(plain)[0](h), h)  # by default a block is no identity
    assert all(torch.count_nonzero(block.bn2.weight) == 0 for block in _blocks(zeroed))


# ----------------------------------------------------------------------------------------- augment strength
def test_augment_strength_one_is_the_default_and_zero_keeps_flips_only() -> None:
    face = torch.randn(6, 3, 16, 16)
    default, _ = augment_face_and_depth(face, None, generator=torch.Generator().manual_seed(3))
    same, _ = augment_face_and_depth(face, None, generator=torch.Generator().manual_seed(3), strength=1.0)
    assert torch.equal(default, same)
    stronger, _ = augment_face_and_depth(face, None, generator=torch.Generator().manual_seed(3), strength=2.0)
    assert not torch.allclose(stronger, default)
    flips_only, _ = augment_face_and_depth(face, None, generator=torch.Generator().manual_seed(3), strength=0.0)
    mirrored = face.flip(-1)
    for i in range(len(face)):
        kept = torch.allclose(flips_only[i], face[i], atol=1e-5)
        assert kept or torch.allclose(flips_only[i], mirrored[i], atol=1e-5), i


def test_augment_strength_outside_its_range_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"augment_strength=5.0 must lie in \[0, 4.0\]"):
        augment_face_and_depth(torch.zeros(1, 3, 8, 8), None, strength=5.0)
    with pytest.raises(ValueError, match="augment_strength=-1"):
        build_cli(
            ["--config", QUICKSTART, *tiny_data_args(tmp_path / "c"), "--data.init_args.augment_strength=-1"], run=False
        )


# ------------------------------------------------------------------------------------------ overlay and suite
def test_the_overlay_sets_the_measured_learning_rate_and_nothing_else(tmp_path: Path) -> None:
    configs = ["--config", QUICKSTART, "--config", CONCAT, "--config", str(RECIPE)]
    small = ["--model.init_args.encoders.face.init_args.widths=[4, 8]", "--data.init_args.modalities=[face]"]
    cli = build_cli([*configs, *tiny_data_args(tmp_path / "c"), *small, "--trainer.logger=false"], run=False)
    task = cli.model
    task.trainer = cli.trainer
    optimisation = task.configure_optimizers()
    optimizer = optimisation["optimizer"] if isinstance(optimisation, dict) else optimisation[0][0]
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([3e-4] * len(optimizer.param_groups))
    assert optimizer.param_groups[0]["weight_decay"] == 1e-4  # the quickstart's, kept
    # the first-round candidates, which the measurement did not keep, stay off
    assert task.loss.expr_label_smoothing == 0.0 and task.lr_warmup_epochs == 0
    assert all(torch.count_nonzero(block.bn2.weight) > 0 for block in _blocks(task.model.encoders["face"]))


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_the_suite_expands_to_thirteen_settings_and_the_overlay_is_its_chosen_setting() -> None:
    suite = load_suite(SUITE)
    assert len(suite.cells) == 39
    names = [cell.values["overrides"]["name"] for cell in suite.cells if cell.values["seed_everything"] == 0]
    first_round = ["baseline", "recipe", "occ-baseline", "occ-recipe", "smoothing", "warmup", "zero-init"]
    assert names == [*first_round, "lr-3e-3", "batch-32", "augment-2", "lr-3e-4", "occ-batch-32", "occ-lr-3e-4"]
    # the second round is appended: the first 21 cells keep their names, so finished ones are reused
    assert [cell.name for cell in suite.cells[:3]] == [
        "000-baseline-seed=0",
        "001-baseline-seed=1",
        "002-baseline-seed=2",
    ]
    assert suite.overrides["data.init_args.modalities"] == ["face"] and suite.overrides["trainer.max_epochs"] == 20
    overrides = {cell.values["overrides"]["name"]: cell.values["overrides"] for cell in suite.cells}
    candidates = {
        "model.init_args.expr_label_smoothing": 0.1,
        "model.init_args.lr_warmup_epochs": 2,
        "model.init_args.encoders.face.init_args.zero_init_residual": True,
    }
    assert {key: value for key, value in overrides["recipe"].items() if key != "name"} == candidates  # first round
    occluded = {key: value for key, value in overrides["occ-recipe"].items() if key != "name"}
    assert occluded == {**candidates, "data.init_args.online_occlusion_probability": 1.0}
    assert overrides["occ-baseline"] == {"name": "occ-baseline", "data.init_args.online_occlusion_probability": 1.0}
    # the overlay is the setting the measurement chose: the quickstart's optimiser at lr 3e-4
    overlay = _flat(yaml.safe_load(RECIPE.read_text()))
    chosen = {key: value for key, value in overrides["lr-3e-4"].items() if key != "name"}
    assert overlay["model.init_args.optimizer.init_args.lr"] == chosen["model.init_args.optimizer.init_args.lr"]
    quickstart = _flat(yaml.safe_load(Path(QUICKSTART).read_text()))
    assert {k: v for k, v in overlay.items() if not k.endswith(".lr")} == {
        k: v for k, v in quickstart.items() if k.startswith("model.init_args.optimizer.") and not k.endswith(".lr")
    }
    assert overrides["occ-lr-3e-4"] == {
        "name": "occ-lr-3e-4",
        "data.init_args.online_occlusion_probability": 1.0,
        **chosen,
    }
