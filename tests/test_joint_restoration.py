"""End-to-end fine-tuning of the recogniser and its restorer, with the restorer's stage-1 losses kept."""

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from multimodal_fer.cli import main
from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_LABEL_SPACE
from multimodal_fer.errors import DataError
from multimodal_fer.models.encoders import FaceCNN
from multimodal_fer.models.fusion.concat import ConcatFusion
from multimodal_fer.models.restoration import RESTORER_CHECKPOINT_KEY, PretrainedRestorer, load_restorer
from multimodal_fer.models.restoration.discriminator_loading import load_discriminator
from multimodal_fer.tasks import JointRestorationFERTask, MultitaskFERTask
from multimodal_fer.tasks.joint_restoration_fer import RESTORATION_TERMS
from multimodal_fer.tasks.recogniser_loading import load_fer_run

from conftest import CONFIGS, run_folder, tiny_data_args, tiny_trainer_args
from restoration_fakes import restoration_samples, tiny_task, tiny_trainer

QUICKSTART = str(CONFIGS / "quickstart.yaml")
FACE_RESTORER = str(CONFIGS / "overlays" / "face_restorer.yaml")
JOINT = str(CONFIGS / "overlays" / "face_restorer_joint.yaml")
_RESTORER = "model.encoders.face.restorer.restorer."


def _stage_one(path: Path, size: int = 16, with_discriminator: bool = True) -> str:
    """A stage-1 checkpoint of a tiny restoration task: its exported restorer and (optionally) its state dict."""
    task = tiny_task(seed=1, mask_dilation=0)
    task.restorer.image_size.fill_(size)
    content: dict[str, Any] = {RESTORER_CHECKPOINT_KEY: task.restorer.export()}
    if with_discriminator:
        content["state_dict"] = task.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return str(path)


def _samples(count: int = 8, targets: bool = True) -> list[dict[str, Tensor]]:
    samples = restoration_samples(count, size=16)
    for sample in samples:
        sample["present"] = {"face": torch.tensor(True)}
        sample["va"] = torch.zeros(SYNTHAFFECT_LABEL_SPACE.num_dimensions)
        if not targets:
            for name in ("face_clean", "occlusion_mask", "face_mean", "face_std"):
                del sample[name]
    return samples


def _loader(targets: bool = True) -> DataLoader:
    return DataLoader(_samples(targets=targets), batch_size=4, shuffle=False)


def _batch() -> dict[str, Any]:
    return next(iter(_loader()))


def _encoders(stage_one: str, **restorer: Any) -> dict[str, FaceCNN]:
    options = {"finetune": True, "mask_gradient": "sigmoid", **restorer}
    return {"face": FaceCNN(out_dim=8, widths=(4, 8), restorer=PretrainedRestorer(stage_one, **options))}


def _joint(stage_one: str, restorer: dict[str, Any] | None = None, **options: Any) -> JointRestorationFERTask:
    torch.manual_seed(0)
    return JointRestorationFERTask(
        _encoders(stage_one, **(restorer or {})),
        SYNTHAFFECT_LABEL_SPACE,
        ["face"],
        fusion=partial(ConcatFusion, hidden_dim=8, out_dim=8),
        head_hidden_dim=8,
        head_dropout=0.0,
        optimizer=partial(torch.optim.SGD, lr=0.05),
        **options,
    )


@pytest.fixture
def stage_one(tmp_path: Path) -> str:
    return _stage_one(tmp_path / "stage1" / "restorer.ckpt")


def _changed(before: dict[str, Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items() if v.is_floating_point())


# ------------------------------------------------------------------------ gradients through the recognition loss
@pytest.mark.parametrize("mode", ["sigmoid", "ste", "none"])
def test_recognition_loss_reaches_the_mask_net_only_through_a_soft_or_straight_through_mask(
    stage_one: str, mode: str
) -> None:
    task = _joint(stage_one, {"mask_gradient": mode}, mask_weight=0.0 if mode == "none" else 1.0)
    task.train()
    batch = _batch()
    task.loss(task(batch), batch)["loss"].backward()  # the recognition losses alone
    mask_grads = [p.grad for p in task.face_restorer.mask_net.parameters()]
    generator_grads = [p.grad for p in task.face_restorer.generator.parameters()]
    assert sum(g.abs().sum() for g in generator_grads if g is not None) > 0
    if mode == "none":
        assert all(g is None for g in mask_grads)
    else:
        assert all(g is not None for g in mask_grads) and sum(g.abs().sum() for g in mask_grads) > 0
    assert all(p.grad is None for p in task.discriminator.parameters()), "recognition never trains the discriminator"


def test_each_restoration_term_moves_the_restorer(stage_one: str) -> None:
    task = _joint(stage_one, feature_matching_weight=1.0, predicted_mask_probability=0.0)
    task.train()
    batch = _batch()
    from multimodal_fer.models.restoration.training_pass import restore_for_training

    out = restore_for_training(task.face_restorer, batch["face"], batch["occlusion_mask"], 0.0)
    terms = task.restoration_terms(batch, out)
    assert set(terms) == {"mask", "hole_l1", "valid_l1", "adversarial", "feature_matching", "loss"}
    parts = {"mask": task.face_restorer.mask_net, **dict.fromkeys(terms.keys() - {"mask", "loss"}, None)}
    for name, module in parts.items():
        target = module if module is not None else task.face_restorer.generator
        grads = torch.autograd.grad(terms[name], list(target.parameters()), retain_graph=True, allow_unused=True)
        assert sum(g.abs().sum() for g in grads if g is not None) > 0, f"{name} gives the restorer no gradient"
    expected = 1.0 * terms["mask"] + 6.0 * terms["hole_l1"] + terms["valid_l1"] + 0.05 * terms["adversarial"]
    torch.testing.assert_close(terms["loss"], expected + terms["feature_matching"])


# ------------------------------------------------------------------------------------------- a fit in Python
def test_fit_logs_every_term_and_moves_restorer_and_discriminator(stage_one: str, tmp_path: Path) -> None:
    task = _joint(stage_one, feature_matching_weight=1.0)
    stage_one_discriminator = load_discriminator(stage_one).state_dict()
    assert not _changed(stage_one_discriminator, task.discriminator), "the discriminator starts as stage 1's"
    restorer = {k: v.clone() for k, v in task.face_restorer.state_dict().items()}
    assert task.face_restorer.mask_net.training and task.face_restorer.generator.training
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    trainer.fit(task, _loader(), _loader())
    logged = trainer.callback_metrics
    for stage in ("train", "val"):
        for term in RESTORATION_TERMS:
            assert torch.isfinite(logged[f"{stage}/restoration/{term}_loss"]), (stage, term)
        assert f"{stage}/restoration/loss" in logged and f"{stage}/loss" in logged
    assert "val/restoration/psnr_occluded" in logged and "val/mask/iou" in logged
    assert _changed(stage_one_discriminator, task.discriminator), "the discriminator steps"
    mask_net = {k.removeprefix("mask_net."): v for k, v in restorer.items() if k.startswith("mask_net.")}
    generator = {k.removeprefix("generator."): v for k, v in restorer.items() if k.startswith("generator.")}
    assert _changed(mask_net, task.face_restorer.mask_net) and _changed(generator, task.face_restorer.generator)
    assert [type(o).__name__ for o in trainer.optimizers] == ["SGD", "Adam"]
    assert trainer.optimizers[1].param_groups[0]["lr"] == pytest.approx(4e-5)

    trainer.save_checkpoint(tmp_path / "joint.ckpt")
    exported = load_restorer(tmp_path / "joint.ckpt")
    for key, value in task.face_restorer.state_dict().items():
        assert torch.equal(exported.state_dict()[key], value.cpu()), key
    again = _joint(str(tmp_path / "joint.ckpt"))  # a further joint round reads restorer and discriminator from it
    assert not _changed(task.discriminator.state_dict(), again.discriminator)


def test_recogniser_checkpoint_starts_the_whole_model(stage_one: str, tmp_path: Path) -> None:
    stage_two = _joint(stage_one)
    with torch.no_grad():  # unlike a fresh model's weights, the restorer's included
        for parameter in stage_two.model.parameters():
            parameter.add_(0.1)
    path = tmp_path / "stage2" / "checkpoints" / "best-epoch=03.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": stage_two.state_dict()}, path)
    task = _joint(stage_one, recogniser_checkpoint=str(path.parent.parent))  # a run folder is enough
    assert _changed(stage_two.model.state_dict(), task.model)
    task.load_recogniser(str(path.parent.parent))
    assert not _changed(stage_two.model.state_dict(), task.model)

    other = JointRestorationFERTask(
        {"face": FaceCNN(out_dim=8, widths=(4, 16), restorer=PretrainedRestorer(stage_one, finetune=True))},
        SYNTHAFFECT_LABEL_SPACE,
        ["face"],
        fusion=partial(ConcatFusion, hidden_dim=8, out_dim=8),
        head_hidden_dim=8,
        mask_weight=0.0,
    )
    with pytest.raises(DataError, match="wrong shape: .*recogniser_checkpoint at the stage-2 run"):
        other.load_recogniser(str(path))


# -------------------------------------------------------------------------------------------------- refusals
def test_what_cannot_be_fine_tuned_jointly_is_refused_with_the_fix(stage_one: str, tmp_path: Path) -> None:
    setting = r"model\.init_args\.encoders\.face\.init_args\.restorer\.init_args"
    with pytest.raises(ValueError, match=rf"frozen \(finetune: false\).*{setting}\.finetune=true"):
        _joint(stage_one, {"finetune": False, "mask_gradient": "none"}, mask_weight=0.0)
    with pytest.raises(ValueError, match=rf"'telea', a trivial fill.*{setting}\.fill=generator"):
        _joint(stage_one, {"finetune": False, "mask_gradient": "none", "fill": "telea"}, mask_weight=0.0)
    with pytest.raises(ValueError, match=rf"mask_gradient: none it is frozen.*{setting}\.mask_gradient=sigmoid"):
        _joint(stage_one, {"mask_gradient": "none"})
    with pytest.raises(ValueError, match="face encoder has no restorer.*face_restorer.yaml"):
        JointRestorationFERTask({"face": FaceCNN(out_dim=8, widths=(4, 8))}, SYNTHAFFECT_LABEL_SPACE, ["face"])
    with pytest.raises(ValueError, match="weights must be finite and non-negative"):
        _joint(stage_one, hole_weight=-1.0)
    exported_only = _stage_one(tmp_path / "exported.ckpt", with_discriminator=False)
    with pytest.raises(DataError, match=r"holds no discriminator weights.*restorer\.ckpt"):
        _joint(exported_only)
    assert _joint(exported_only, adversarial_weight=0.0).discriminator is None  # no adversarial term: none needed
    assert _joint(exported_only, discriminator_checkpoint=stage_one).discriminator is not None


def test_a_training_batch_without_restoration_targets_is_refused(stage_one: str, tmp_path: Path) -> None:
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    with pytest.raises(DataError, match=r"lacks\. Set data\.init_args\.restoration_targets=true"):
        trainer.fit(_joint(stage_one), _loader(targets=False))
    plain = _joint(
        stage_one, **dict.fromkeys(("hole_weight", "valid_weight", "mask_weight"), 0.0), adversarial_weight=0
    )
    tiny_trainer(tmp_path, max_epochs=1).fit(plain, _loader(targets=False))  # no restoration terms: no targets needed


# ------------------------------------------------------------------------------- the overlay through the CLI
def test_overlay_fits_resumes_from_last_and_exports_its_restorer(tmp_path: Path, tiny_cache: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _stage_one(tmp_path / "runs/restoration/latest/checkpoints/restorer.ckpt", size=32)
    data = [*tiny_data_args(tiny_cache), "--data.init_args.modalities=[face]"]
    from multimodal_fer.cli import build_cli

    stage_two = build_cli(["--config", QUICKSTART, "--config", FACE_RESTORER, *data], run=False).model
    assert type(stage_two) is MultitaskFERTask
    stage_two_ckpt = tmp_path / "runs/quickstart-restorer/latest/checkpoints/best-epoch=00.ckpt"
    stage_two_ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": stage_two.state_dict()}, stage_two_ckpt)

    configs = ["--config", QUICKSTART, "--config", FACE_RESTORER, "--config", JOINT]
    run = [*data, *tiny_trainer_args(tmp_path)]
    limits = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--test_after_fit=false"]
    # A cosine of its own length: one that follows max_epochs=1 would end the first fit at a learning rate of 0.
    common = ["fit", *configs, *run, *limits, "--model.init_args.lr_scheduler.init_args.T_max=4"]
    main([*common, "--trainer.max_epochs=1"])
    last = run_folder(tmp_path) / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=False)
    assert first["epoch"] == 0 and len(first["optimizer_states"]) == 2 and first["lr_schedulers"]
    assert first["hyper_parameters"]["recogniser_checkpoint"] == "runs/quickstart-restorer/latest"
    main([*common, "--trainer.max_epochs=2", "--ckpt_path=last"])  # the same run, continued
    resumed = torch.load(last, weights_only=False)
    assert resumed["epoch"] == 1 and resumed["global_step"] > first["global_step"]
    assert resumed["lr_schedulers"][0]["last_epoch"] == first["lr_schedulers"][0]["last_epoch"] + 1
    for prefix in ("discriminator.", f"{_RESTORER}mask_net.", f"{_RESTORER}generator."):
        moved = [k for k, v in resumed["state_dict"].items() if k.startswith(prefix) and v.is_floating_point()]
        assert moved and any(not torch.equal(resumed["state_dict"][k], first["state_dict"][k]) for k in moved)

    restorer = load_restorer(last)  # what the occlusion benchmark and a PretrainedRestorer read
    for key, value in restorer.state_dict().items():
        assert torch.equal(value, resumed["state_dict"][_RESTORER + key]), key
    task, _ = load_fer_run(last)
    assert isinstance(task, JointRestorationFERTask) and task.face_restorer.mask_gradient == "sigmoid"

    main(["test", *configs, *run, "--trainer.limit_test_batches=2", "--ckpt_path=last"])
    results = next(run_folder(tmp_path).glob("results-test*.json")).read_text()
    for name in ("test/expr/f1_macro", "test/restoration/hole_l1_loss", "test/restoration/psnr_occluded"):
        assert f'"{name}"' in results
