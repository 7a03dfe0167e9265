"""Fine-tuning a trained restorer: a new restoration fit whose networks start from an earlier fit's weights
(``initial_checkpoint``), with fresh optimisers and epochs; a resumed fit keeps its own weights."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from multimodal_fer.errors import DataError
from multimodal_fer.models.restoration import GatedUNetGenerator
from multimodal_fer.tasks.restoration_warm_start import warm_start

from restoration_fakes import restoration_loader, tiny_task, tiny_trainer

_PARTS = ("restorer", "generator_ema", "discriminator", "critic")


class _WeightsAtTrainStart(pl.Callback):
    """Copies the task's parts, the optimisers' state and the epoch when training starts (after any restore)."""

    def on_train_start(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        self.parts = {name: _copy(getattr(task, name)) for name in _PARTS if getattr(task, name) is not None}
        self.optimiser_states = [len(optimiser.state) for optimiser in trainer.optimizers]
        self.epoch = trainer.current_epoch


def _copy(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def _assert_same(weights: dict[str, torch.Tensor], module: nn.Module, what: str) -> None:
    state = module.state_dict()
    assert weights.keys() == state.keys(), what
    for key, value in weights.items():
        assert torch.equal(state[key], value), f"{what}: {key}"


def _trained(tmp_path: Path, name: str, epochs: int = 1, **options: object) -> tuple[pl.LightningModule, Path]:
    task = tiny_task(**options)
    trainer = tiny_trainer(tmp_path / name, max_epochs=epochs)
    trainer.fit(task, restoration_loader())
    path = tmp_path / f"{name}.ckpt"
    trainer.save_checkpoint(path)
    return task, path


def test_fine_tuning_starts_from_the_trained_weights_with_fresh_optimisers_and_epochs(tmp_path: Path) -> None:
    trained, checkpoint = _trained(tmp_path, "first", epochs=2, ema_decay=0.9)
    seen = _WeightsAtTrainStart()
    # Other initial weights and other loss settings: every trained part must come from the checkpoint.
    tuned = tiny_task(seed=5, ema_decay=0.9, label_weight=2.0, hole_weight=1.0, initial_checkpoint=str(checkpoint))
    tiny_trainer(tmp_path / "tuned", max_epochs=1, callbacks=[seen]).fit(tuned, restoration_loader())
    for name in _PARTS:
        _assert_same(seen.parts[name], getattr(trained, name), name)
    assert seen.epoch == 0 and seen.optimiser_states == [0, 0], "optimisers and epochs start afresh"
    assert tuned.hparams.label_weight == 2.0 and tuned.hparams.hole_weight == 1.0, "this fit's own settings"
    moved = tuned.restorer.generator.state_dict()
    assert any(not torch.equal(moved[k], v) for k, v in trained.restorer.generator.state_dict().items())


def test_a_resumed_fine_tuning_continues_from_its_own_weights_without_the_first_checkpoint(tmp_path: Path) -> None:
    _, checkpoint = _trained(tmp_path, "first")
    tuned = tiny_task(seed=5, initial_checkpoint=str(checkpoint))
    trainer = tiny_trainer(tmp_path / "tuned", max_epochs=1)
    trainer.fit(tuned, restoration_loader())
    trainer.save_checkpoint(tmp_path / "tuned.ckpt")
    checkpoint.unlink()  # a resumed fit needs only its own checkpoint

    seen = _WeightsAtTrainStart()
    resumed = tiny_task(seed=9, initial_checkpoint=str(checkpoint))
    tiny_trainer(tmp_path / "resumed", max_epochs=2, callbacks=[seen]).fit(
        resumed, restoration_loader(), ckpt_path=tmp_path / "tuned.ckpt", weights_only=False
    )
    for name in ("restorer", "discriminator", "critic"):
        _assert_same(seen.parts[name], getattr(tuned, name), name)
    assert seen.epoch == 1


def test_the_average_starts_at_the_generator_of_a_checkpoint_that_kept_none(tmp_path: Path) -> None:
    trained, checkpoint = _trained(tmp_path, "plain")
    averaged = tiny_task(seed=3, ema_decay=0.99)
    parts = {"restorer": averaged.restorer, "generator_ema": averaged.generator_ema}
    assert warm_start(parts, checkpoint) == ["restorer", "generator_ema"]
    _assert_same(_copy(trained.restorer.generator), averaged.generator_ema, "average")


def test_a_checkpoint_that_does_not_fit_is_refused_with_the_fix(tmp_path: Path) -> None:
    _, checkpoint = _trained(tmp_path, "first")
    wider = tiny_task()
    wider.restorer.generator = GatedUNetGenerator(widths=(4, 8, 16), dilations=(2,), extra_convs=0, stem_kernel=3)
    with pytest.raises(DataError, match="mask network and generator .* do not fit this fit's architecture"):
        wider._warm_start(str(checkpoint))
    with pytest.raises(FileNotFoundError, match="initial_checkpoint .* does not exist"):
        tiny_task()._warm_start(str(tmp_path / "missing.ckpt"))
    torch.save({"state_dict": {"model.encoder.weight": torch.zeros(1)}}, tmp_path / "recogniser.ckpt")
    with pytest.raises(DataError, match="not the checkpoint of a restoration fit"):
        tiny_task()._warm_start(str(tmp_path / "recogniser.ckpt"))


def test_parts_the_checkpoint_lacks_start_fresh_with_a_warning(tmp_path: Path) -> None:
    trained, checkpoint = _trained(tmp_path, "first")
    content = torch.load(checkpoint, weights_only=False)
    content["state_dict"] = {k: v for k, v in content["state_dict"].items() if not k.startswith("discriminator.")}
    torch.save(content, tmp_path / "no_discriminator.ckpt")
    task = tiny_task(seed=4)
    fresh = _copy(task.discriminator)
    with pytest.warns(UserWarning, match="no weights of the discriminator: it starts fresh"):
        loaded = warm_start(
            {"restorer": task.restorer, "discriminator": task.discriminator}, tmp_path / "no_discriminator.ckpt"
        )
    assert loaded == ["restorer"]
    _assert_same(fresh, task.discriminator, "discriminator")
    _assert_same(_copy(trained.restorer), task.restorer, "restorer")
