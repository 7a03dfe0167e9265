"""The restoration GAN's second-round options: critic judged in eval mode, mask-net gradients when fine-tuned,
feature matching, a moving average of the generator, a full-resolution mask net, and pass-through of faces
whose predicted occlusion is too small."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_LABEL_SPACE
from multimodal_fer.models.restoration import (
    RESTORER_CHECKPOINT_KEY,
    FaceRestorer,
    GatedUNetGenerator,
    OcclusionMaskNet,
    PatchDiscriminator,
    PretrainedRestorer,
    load_restorer,
)
from multimodal_fer.models.restoration.losses import feature_matching_loss

from restoration_fakes import restoration_loader, restoration_samples, tiny_task, tiny_trainer


def _batch(count: int = 4, size: int = 16) -> dict[str, Tensor]:
    return next(iter(restoration_loader(count, size, batch_size=count)))


def _tiny_restorer(**options: object) -> FaceRestorer:
    mask_net, generator = OcclusionMaskNet(widths=(4, 8)), GatedUNetGenerator(widths=(4, 8, 8), dilations=(2,))
    return FaceRestorer(mask_net, generator, **options)  # type: ignore[arg-type]


def _saved(restorer: FaceRestorer, path: Path, image_size: int = 16) -> str:
    restorer.image_size.fill_(image_size)
    torch.save({RESTORER_CHECKPOINT_KEY: restorer.export()}, path)
    return str(path)


# ------------------------------------------------------------------------------------- 1. the critic's mode
def test_critic_judges_restored_faces_in_eval_mode_and_keeps_its_statistics() -> None:
    task = tiny_task()
    task.train()
    batch = _batch()
    with torch.no_grad():  # give the critic running statistics of clean faces, as its own side does
        for _ in range(3):
            task.critic(batch["face_clean"] * 2.0 + 1.0)
    statistics = [b.clone() for b in task.critic.buffers()]
    out = task._restore_for_training(batch)
    losses, outputs = task._restorer_losses(batch, out)
    assert all(torch.equal(a, b) for a, b in zip(statistics, task.critic.buffers(), strict=True)), (
        "restored (and clean) faces judged on the generator side must not enter the critic's running statistics"
    )
    assert all(m.training for m in task.critic.modules()), "the critic's own mode is restored afterwards"
    # Each face is judged alone, with the statistics of clean faces: not with those of its batch.
    alone = task.critic.eval()(out["restored"][:1].detach())[1]["expr"]
    torch.testing.assert_close(outputs["expr"][:1].detach(), alone)
    task.critic.train()
    losses["total"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.restorer.generator.parameters())


# ------------------------------------------------------------------------ 2. the mask net when fine-tuned
def test_finetuned_restorer_freezes_a_mask_net_that_gets_no_gradient(tmp_path: Path) -> None:
    torch.manual_seed(0)
    restorer = PretrainedRestorer(_saved(_tiny_restorer(), tmp_path / "r.ckpt"), finetune=True)
    restorer.train()
    mask_net = restorer.restorer.mask_net
    assert restorer.restorer.generator.training and not mask_net.training
    statistics = [b.clone() for b in mask_net.buffers()]
    restorer(torch.randn(4, 3, 16, 16)).square().mean().backward()
    assert all(torch.equal(a, b) for a, b in zip(statistics, mask_net.buffers(), strict=True))
    assert all(p.grad is None and not p.requires_grad for p in mask_net.parameters())
    assert any(p.grad is not None for p in restorer.restorer.generator.parameters())


@pytest.mark.parametrize("mode", ["ste", "sigmoid"])
def test_straight_through_and_soft_masks_let_the_mask_net_learn(tmp_path: Path, mode: str) -> None:
    torch.manual_seed(0)
    base = _tiny_restorer(mask_dilation=0)
    faces = torch.randn(4, 3, 16, 16)
    with torch.no_grad():  # centre the untrained mask net so that it marks some pixels, not all
        base.mask_net.head.bias -= base.mask_net(faces).median()
    restorer = PretrainedRestorer(_saved(base, tmp_path / "r.ckpt"), finetune=True, mask_gradient=mode)
    restorer.train()
    assert restorer.restorer.mask_net.training
    restored = restorer(faces)
    restored.square().mean().backward()
    grads = [p.grad for p in restorer.restorer.mask_net.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    restorer.eval()
    with torch.no_grad():
        out = restorer.restorer(faces)
    visible = (out["mask"] == 0).expand_as(faces)
    if mode == "ste":  # the hard mask's values: visible pixels pass bit for bit
        assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(out["restored"][visible], faces[visible])
    else:  # soft compositing: the mask is the probability
        assert ((out["mask"] > 0) & (out["mask"] < 1)).any()


def test_mask_gradient_without_finetuning_is_refused(tmp_path: Path) -> None:
    path = _saved(_tiny_restorer(), tmp_path / "r.ckpt")
    with pytest.raises(ValueError, match="finetune: true"):
        PretrainedRestorer(path, mask_gradient="ste")
    with pytest.raises(ValueError, match="mask_gradient must be one of"):
        PretrainedRestorer(path, finetune=True, mask_gradient="gumbel")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- 3. feature matching
def test_discriminator_features_and_the_feature_matching_term() -> None:
    discriminator = PatchDiscriminator(widths=(8, 16)).eval()
    faces, mask = torch.randn(2, 3, 16, 16), torch.ones(2, 1, 16, 16)
    scores, features = discriminator.forward_with_features(faces, mask)
    torch.testing.assert_close(scores, discriminator(faces, mask))
    assert [tuple(f.shape) for f in features] == [(2, 8, 8, 8), (2, 16, 4, 4)]

    batch = _batch()
    plain, matched = tiny_task(), tiny_task(feature_matching_weight=2.5)
    plain.eval(), matched.eval()
    with torch.no_grad():
        out = matched.restorer(batch["face"], batch["occlusion_mask"])
        without, _ = plain._restorer_losses(batch, out)
        losses, _ = matched._restorer_losses(batch, out)
        expected = feature_matching_loss(
            matched.discriminator.forward_with_features(out["restored"], out["mask"])[1],
            matched.discriminator.forward_with_features(batch["face_clean"], out["mask"])[1],
        )
    assert without["feature_matching"].item() == 0.0
    assert losses["feature_matching"].item() == pytest.approx(expected.item()) and expected.item() > 0
    assert losses["total"].item() == pytest.approx(without["total"].item() + 2.5 * expected.item(), rel=1e-5)
    same = {**out, "restored": batch["face_clean"]}
    with torch.no_grad():
        assert matched._restorer_losses(batch, same)[0]["feature_matching"].item() == 0.0


def test_label_term_is_the_critics_cross_entropy_on_restored_faces_against_the_true_labels() -> None:
    batch = _batch()
    batch["expr"][0] = -1  # an unlabelled face takes no part
    plain, labelled = tiny_task(), tiny_task(label_weight=4.0)
    labelled.load_state_dict(plain.state_dict())
    plain.eval(), labelled.eval()
    with torch.no_grad():
        out = labelled.restorer(batch["face"], batch["occlusion_mask"])
        without, _ = plain._restorer_losses(batch, out)
        losses, outputs = labelled._restorer_losses(batch, out)
    expected = torch.nn.functional.cross_entropy(outputs["expr"][1:], batch["expr"][1:])
    assert without["label"].item() == pytest.approx(expected.item())  # measured even when it weighs nothing
    assert losses["label"].item() == pytest.approx(expected.item()) and expected.item() > 0
    assert losses["total"].item() == pytest.approx(without["total"].item() + 4.0 * expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="label_weight must be at least 0"):
        tiny_task(label_weight=-1.0)


# --------------------------------------------------------------------------- 3. the generator's average
def test_generator_average_follows_each_step_and_serves_validation_and_export(tmp_path: Path) -> None:
    task = tiny_task(ema_decay=0.9, predicted_mask_probability=0.0)
    start = [p.detach().clone() for p in task.restorer.generator.parameters()]
    assert not any(p.requires_grad for p in task.generator_ema.parameters())
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=1)
    trainer.fit(task, restoration_loader())
    live = list(task.restorer.generator.parameters())
    for average, first, now in zip(task.generator_ema.parameters(), start, live, strict=True):
        torch.testing.assert_close(average, 0.9 * first + 0.1 * now)
    assert any(not torch.equal(a, b) for a, b in zip(task.generator_ema.parameters(), live, strict=True))
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in task.generator_ema.parameters()}

    batch = _batch()
    task.eval()
    with torch.no_grad():
        out = task(batch["face"])
        torch.testing.assert_close(out["generated"], task.generator_ema(batch["face"], out["mask"]))
    path = tmp_path / "restorer.ckpt"
    trainer.save_checkpoint(path)
    exported = load_restorer(path)
    for name, value in task.generator_ema.state_dict().items():
        assert torch.equal(exported.generator.state_dict()[name], value), "the export carries the average"


def test_resumed_fit_continues_the_generator_average_exactly(tmp_path: Path) -> None:
    options = {"ema_decay": 0.5, "predicted_mask_probability": 0.0}
    straight = tiny_task(**options)
    tiny_trainer(tmp_path / "a", max_epochs=2).fit(straight, restoration_loader())

    first = tiny_task(**options)
    trainer = tiny_trainer(tmp_path / "b", max_epochs=1)
    trainer.fit(first, restoration_loader())
    trainer.save_checkpoint(tmp_path / "epoch1.ckpt")
    resumed = tiny_task(seed=7, **options)  # other initial weights: everything must come from the checkpoint
    tiny_trainer(tmp_path / "c", max_epochs=2).fit(
        resumed, restoration_loader(), ckpt_path=tmp_path / "epoch1.ckpt", weights_only=False
    )
    for name, value in straight.generator_ema.state_dict().items():
        torch.testing.assert_close(resumed.generator_ema.state_dict()[name], value, rtol=0, atol=0, msg=name)


class _RateRecorder(Callback):
    """Records both optimisers' learning rates at every training batch."""

    def __init__(self) -> None:
        self.rates: list[float] = []  # restorer, critic, restorer, critic, ...

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        restorer, critic = trainer.optimizers
        self.rates += [restorer.param_groups[0]["lr"], critic.param_groups[0]["lr"]]


def test_the_last_epochs_decay_both_rates_and_a_continued_constant_fit_decays_as_one_long_fit(
    tmp_path: Path,
) -> None:
    options = {"generator_lr": 3e-3, "discriminator_lr": 6e-3, "predicted_mask_probability": 0.0}
    straight, straight_rates = tiny_task(lr_decay_epochs=2, **options), _RateRecorder()
    tiny_trainer(tmp_path / "a", max_epochs=3, limit_train_batches=1, callbacks=[straight_rates]).fit(
        straight, restoration_loader()
    )
    assert straight_rates.rates == pytest.approx([3e-3, 6e-3, 2e-3, 4e-3, 1e-3, 2e-3])

    constant = tiny_task(**options)  # one epoch at the full rates, saved, then continued to 3 with the decay
    trainer = tiny_trainer(tmp_path / "b", max_epochs=1, limit_train_batches=1)
    trainer.fit(constant, restoration_loader())
    trainer.save_checkpoint(tmp_path / "epoch1.ckpt")
    continued, continued_rates = tiny_task(seed=5, lr_decay_epochs=2, **options), _RateRecorder()
    tiny_trainer(tmp_path / "c", max_epochs=3, limit_train_batches=1, callbacks=[continued_rates]).fit(
        continued, restoration_loader(), ckpt_path=tmp_path / "epoch1.ckpt", weights_only=False
    )
    assert continued_rates.rates == pytest.approx(straight_rates.rates[2:])
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(continued.state_dict()[name], value, msg=name)


def test_a_decay_longer_than_the_fit_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lr_decay_epochs=3"):
        tiny_trainer(tmp_path, max_epochs=2).fit(tiny_task(lr_decay_epochs=3), restoration_loader())
    with pytest.raises(ValueError, match="lr_decay_epochs"):
        tiny_task(lr_decay_epochs=-1)


def test_sparse_training_metrics_leave_the_weights_alone(tmp_path: Path) -> None:
    every = tiny_task(ema_decay=0.5)
    tiny_trainer(tmp_path / "a", max_epochs=1, limit_train_batches=5).fit(every, restoration_loader(count=20))
    sparse = tiny_task(ema_decay=0.5, train_metrics_interval=3)
    updates = []
    metrics = sparse.metrics["train_metrics"]
    original = metrics.update
    metrics.update = lambda *a, **k: (updates.append(1), original(*a, **k))  # type: ignore[method-assign]
    tiny_trainer(tmp_path / "b", max_epochs=1, limit_train_batches=5).fit(sparse, restoration_loader(count=20))
    assert len(updates) == 2  # batches 0 and 3 of 5
    for name, value in every.state_dict().items():
        assert torch.equal(sparse.state_dict()[name], value), name


def test_checkpoints_with_and_without_an_average_load_both_ways(tmp_path: Path) -> None:
    without = tiny_task()
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=1)
    trainer.fit(without, restoration_loader())
    trainer.save_checkpoint(tmp_path / "plain.ckpt")
    checkpoint = torch.load(tmp_path / "plain.ckpt", weights_only=False)
    averaged = tiny_task(seed=3, ema_decay=0.99)
    averaged.on_load_checkpoint(checkpoint)  # what Lightning does before loading the weights strictly
    averaged.load_state_dict(checkpoint["state_dict"])
    for name, value in without.restorer.generator.state_dict().items():
        assert torch.equal(averaged.generator_ema.state_dict()[name], value), "the average starts at the generator"

    checkpoint = {"state_dict": averaged.state_dict()}
    plain = tiny_task()
    with pytest.warns(UserWarning, match="moving average"):
        plain.on_load_checkpoint(checkpoint)
    plain.load_state_dict(checkpoint["state_dict"])


def test_bad_training_options_are_refused() -> None:
    with pytest.raises(ValueError, match="ema_decay"):
        tiny_task(ema_decay=1.0)
    with pytest.raises(ValueError, match="score"):
        tiny_task(score="ssim")
    with pytest.raises(ValueError, match="train_metrics_interval"):
        tiny_task(train_metrics_interval=0)
    with pytest.raises(ValueError, match="recogniser_critic"):
        tiny_task(score="recognition")
    assert tiny_task(score="auto").score_name == "psnr", "without a recogniser, auto keeps PSNR"
    with pytest.raises(ValueError, match="min_occluded_fraction"):
        tiny_task(min_occluded_fraction=1.5)


# ------------------------------------------------------------------------- 4. full-resolution mask net
def test_full_resolution_mask_net_sees_detail_the_pooled_one_cannot() -> None:
    torch.manual_seed(0)
    faces = torch.randn(2, 3, 16, 16)
    swapped = faces.clone()  # swap the columns inside every 2×2 pooling cell: the pooled face is the same
    swapped[..., 0::2], swapped[..., 1::2] = faces[..., 1::2], faces[..., 0::2]
    pooled = OcclusionMaskNet(widths=(4, 8), downsample=2).eval()
    torch.testing.assert_close(pooled(faces), pooled(swapped))
    full = OcclusionMaskNet(widths=(4, 8), downsample=2, full_resolution=True).eval()
    assert full(faces).shape == (2, 1, 16, 16)
    assert (full(faces) - full(swapped)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="already predicts at full resolution"):
        OcclusionMaskNet(widths=(4, 8), downsample=1, full_resolution=True)


def test_full_resolution_restorer_round_trips_through_export(tmp_path: Path) -> None:
    restorer = FaceRestorer(
        OcclusionMaskNet(widths=(4, 8), downsample=2, full_resolution=True),
        GatedUNetGenerator(widths=(4, 8, 8), dilations=(2,)),
        min_occluded_fraction=0.03,
    ).eval()
    loaded = load_restorer(_saved(restorer, tmp_path / "r.ckpt"))
    assert loaded.mask_net.full_resolution and loaded.min_occluded_fraction == 0.03
    faces = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(loaded(faces)["restored"], restorer(faces)["restored"])
    assert OcclusionMaskNet().config["full_resolution"] is False


# ----------------------------------------------------------------- 5. only faces occluded enough are restored
class FixedMask(nn.Module):
    """A mask "network" that returns the logits it was given, whatever the face."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, image: Tensor) -> Tensor:
        return self.logits.to(image.dtype)


def test_a_clean_face_with_a_tiny_false_alarm_is_returned_bit_identical() -> None:
    logits = torch.full((2, 1, 16, 16), -10.0)
    logits[0, :, 7:9, 7:9] = 10.0  # face 0: a 2×2 false alarm, 4 / 256 = 1.6 % of the face
    logits[1, :, 2:10, 2:12] = 10.0  # face 1: a real occluder, 31 % of the face
    generator = GatedUNetGenerator(widths=(4, 8, 8), dilations=(2,))
    faces = torch.randn(2, 3, 16, 16)
    faces[0, :, 0, 0] = -0.0  # signed zeros must survive too
    gated = FaceRestorer(FixedMask(logits), generator, min_occluded_fraction=0.05).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        out = gated(faces)
    assert out["applied"].tolist() == [False, True]
    assert out["restored"][0].view(torch.int32).equal(faces[0].view(torch.int32)), "not bit-identical"
    assert out["mask"][0].sum() == 0
    assert not torch.equal(out["restored"][1], faces[1]) and out["mask"][1].sum() > 0
    ungated = FaceRestorer(FixedMask(logits), generator).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        everywhere = ungated(faces)
    assert everywhere["applied"].all() and not torch.equal(everywhere["restored"][0], faces[0])
    torch.testing.assert_close(everywhere["restored"][1], out["restored"][1])
    with torch.no_grad():  # a given mask is always used
        given = gated(faces, (logits > 0).float())
    assert given["applied"].all() and not torch.equal(given["restored"][0], faces[0])


def test_faces_hidden_beyond_the_largest_share_pass_unrestored_and_the_rule_survives_export(tmp_path: Path) -> None:
    logits = torch.full((3, 1, 16, 16), -10.0)
    logits[0, :, 7:9, 7:9] = 10.0  # 1.6 % of the face: under the minimum
    logits[1, :, 2:6, 2:12] = 10.0  # 15.6 %: restored
    logits[2, :, 2:14, 1:15] = 10.0  # 65.6 %: over the maximum (a scarf's share, say)
    generator = GatedUNetGenerator(widths=(4, 8, 8), dilations=(2,))
    faces = torch.randn(3, 3, 16, 16)
    selective = FaceRestorer(
        FixedMask(logits),  # type: ignore[arg-type]
        generator,
        min_occluded_fraction=0.05,
        max_occluded_fraction=0.5,
    ).eval()
    with torch.no_grad():
        out = selective(faces)
        everywhere = FaceRestorer(FixedMask(logits), generator).eval()(faces)  # type: ignore[arg-type]
    assert out["applied"].tolist() == [False, True, False]
    torch.testing.assert_close(selective.occluded_share(logits), torch.tensor([4 / 256, 40 / 256, 168 / 256]))
    for face in (0, 2):
        assert out["restored"][face].view(torch.int32).equal(faces[face].view(torch.int32)), "not bit-identical"
        assert out["mask"][face].sum() == 0
    torch.testing.assert_close(out["restored"][1], everywhere["restored"][1])
    assert not torch.equal(everywhere["restored"][2], faces[2])
    with torch.no_grad():  # a given mask is always used
        assert selective(faces, (logits > 0).float())["applied"].all()

    path = _saved(_tiny_restorer(), tmp_path / "r.ckpt")
    assert PretrainedRestorer(path).restorer.max_occluded_fraction == 1.0
    loaded = PretrainedRestorer(path, max_occluded_fraction=0.3).restorer
    assert loaded.max_occluded_fraction == 0.3 and loaded.selects_faces
    assert load_restorer(_saved(loaded, tmp_path / "r2.ckpt")).max_occluded_fraction == 0.3
    with pytest.raises(ValueError, match=r"max_occluded_fraction is a share of the face's pixels in \(0, 1\]"):
        PretrainedRestorer(path, max_occluded_fraction=0.0)
    with pytest.raises(ValueError, match="must exceed min_occluded_fraction"):
        PretrainedRestorer(path, min_occluded_fraction=0.2, max_occluded_fraction=0.1)


def test_stage_two_can_set_the_occluded_share_of_a_restorer(tmp_path: Path) -> None:
    path = _saved(_tiny_restorer(), tmp_path / "r.ckpt")
    assert PretrainedRestorer(path).restorer.min_occluded_fraction == 0.0
    assert PretrainedRestorer(path, min_occluded_fraction=0.1).restorer.min_occluded_fraction == 0.1
    with pytest.raises(ValueError, match="min_occluded_fraction"):
        PretrainedRestorer(path, min_occluded_fraction=-0.1)


def test_restoration_task_passes_the_occluded_share_to_its_restorer(tmp_path: Path) -> None:
    task = tiny_task(min_occluded_fraction=0.02)
    assert task.restorer.min_occluded_fraction == 0.02
    samples = restoration_samples(1)
    assert samples[0]["occlusion_mask"].mean() > 0.02
    assert SYNTHAFFECT_LABEL_SPACE.num_expressions == 8
