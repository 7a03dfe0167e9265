import csv
import math
import os
import subprocess
import warnings
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from multimodal_fer.datamodules import FERDataModule
from multimodal_fer.models.encoders import PhysioCNN
from multimodal_fer.models.fusion import AttentionFusion, LateFusion
from multimodal_fer.models.losses import MultitaskLoss, class_balance_weights, masked_cross_entropy
from multimodal_fer.models.task_balancing import FixedWeighting, GradNorm, UncertaintyWeighting
from multimodal_fer.tasks import MultitaskFERTask
from multimodal_fer.types import PRESENT_KEY, LabelSpace

from conftest import CONFIGS, MFER, REPO, TINY_DATA, run_args, run_folder, tiny_data_args, tiny_trainer_args

NAN = float("nan")
QUICKSTART = str(CONFIGS / "quickstart.yaml")
OVERLAYS = {
    name: str(CONFIGS / "overlays" / f"{name}.yaml") for name in ("uncertainty_weighting", "gradnorm", "class_balanced")
}
LABEL_SPACE = LabelSpace(expressions=("a", "b", "c"), action_units=(1, 2), dimensions=("valence", "arousal"))


def _flags(**values: bool) -> dict[str, torch.Tensor]:
    return {task: torch.tensor(value) for task, value in values.items()}


def _losses(**values: float) -> dict[str, torch.Tensor]:
    return {task: torch.tensor(value) for task, value in values.items()}


# ------------------------------------------------------------------------------------------------- fixed
def test_fixed_weighting_total_is_the_weighted_sum() -> None:
    method = FixedWeighting({"expr": 2.0, "au": 0.5})
    method.set_tasks(("expr", "au", "va"))
    loss, auxiliary = method(_losses(expr=1.2, au=0.4, va=0.3), _flags(expr=True, au=True, va=True))
    assert loss.item() == pytest.approx(2.0 * 1.2 + 0.5 * 0.4 + 1.0 * 0.3)
    assert auxiliary is None
    assert {task: w.item() for task, w in method.task_weights().items()} == {"expr": 2.0, "au": 0.5, "va": 1.0}
    assert list(method.parameters()) == []
    with pytest.raises(ValueError, match="unknown tasks"):
        FixedWeighting({"valence": 1.0})


def test_fixed_weighting_is_the_default_and_conflicts_are_refused() -> None:
    loss_fn = MultitaskLoss(expr_weight=3.0)
    assert isinstance(loss_fn.balancing, FixedWeighting) and loss_fn.balancing.weights["expr"] == 3.0
    with pytest.raises(ValueError, match="expr_weight.*FixedWeighting"):
        MultitaskLoss(expr_weight=2.0, balancing=GradNorm())
    with pytest.raises(ValueError, match="va_weight"):
        MultitaskFERTask(
            [PhysioCNN(out_dim=8, widths=(4,))], LABEL_SPACE, va_weight=0.5, task_balancing=UncertaintyWeighting()
        )


# ------------------------------------------------------------------------------------------- uncertainty
def test_uncertainty_weighting_total_hand_computed() -> None:
    method = UncertaintyWeighting()
    method.set_tasks(("expr", "au", "va"))
    with torch.no_grad():
        method.log_variance.copy_(torch.tensor([0.0, math.log(2.0), -math.log(2.0)]))
    losses = _losses(expr=1.0, au=2.0, va=0.5)
    # exp(-0)*1 + 0 + exp(-ln 2)*2 + ln 2 + exp(ln 2)*0.5 - ln 2 = 1 + 1 + 1
    loss, auxiliary = method(losses, _flags(expr=True, au=True, va=True))
    assert loss.item() == pytest.approx(3.0) and auxiliary is None
    # An unlabeled task is left out, its regulariser too, and its log-variance gets an exact zero gradient.
    loss, _ = method(losses, _flags(expr=True, au=True, va=False))
    assert loss.item() == pytest.approx(2.0 + math.log(2.0))
    loss, _ = method(_losses(expr=3.0, au=1.0, va=0.5), _flags(expr=True, au=True, va=False))
    loss.backward()
    # d/ds (e^-s L + s) = 1 - e^-s L: 1 - 3 and 1 - 1/2; the unlabeled task gets an exact 0.
    torch.testing.assert_close(method.log_variance.grad, torch.tensor([-2.0, 0.5, 0.0]))
    weights = method.task_weights()
    assert weights["au"].item() == pytest.approx(0.5) and weights["va"].item() == pytest.approx(2.0)


def test_uncertainty_weights_learn_the_inverse_losses() -> None:
    method = UncertaintyWeighting()
    method.set_tasks(("expr", "au", "va"))
    optimizer = torch.optim.Adam(method.parameters(), lr=0.05)
    losses = _losses(expr=4.0, au=1.0, va=0.25)
    flags = _flags(expr=True, au=True, va=True)
    for _ in range(400):
        optimizer.zero_grad()
        method(losses, flags)[0].backward()
        optimizer.step()
    # The optimum of e^-s L + s is e^s = L: effective weights 1/L.
    torch.testing.assert_close(
        method.log_variance.detach(), torch.log(torch.tensor([4.0, 1.0, 0.25])), atol=0.02, rtol=0
    )


# ---------------------------------------------------------------------------------------------- gradnorm
@pytest.mark.parametrize(("alpha", "expected"), [(1.0, 8.0 / 3.0), (2.0, 16.0 / 3.0)])
def test_gradnorm_losses_hand_computed(alpha: float, expected: float) -> None:
    method = GradNorm(alpha=alpha)
    method.set_tasks(("expr", "au"))
    flags = _flags(expr=True, au=True)
    z = torch.ones(1, 1, requires_grad=True)
    # Step 1: L = (4z, z^2) = (4, 1), g = (4, 2); equal rates, mean G = 3, |4 - 3| + |2 - 3| = 2.
    loss, auxiliary = method({"expr": 4 * z.sum(), "au": (z**2).sum()}, flags, z)
    assert loss.item() == pytest.approx(5.0) and auxiliary.item() == pytest.approx(2.0)
    (grad,) = torch.autograd.grad(auxiliary, method.weights)
    torch.testing.assert_close(grad, torch.tensor([4.0, -2.0]))  # sign(G_t - target) * g_t
    torch.testing.assert_close(method.initial_losses, torch.tensor([4.0, 1.0]))
    # Step 2: z = 2: L = (8, 4), ratios (2, 4), r = (2/3, 4/3), g = (4, 4), G = (4, 4), mean 4.
    z = torch.full((1, 1), 2.0, requires_grad=True)
    loss, auxiliary = method({"expr": 4 * z.sum(), "au": (z**2).sum()}, flags, z)
    target = 4.0 * torch.tensor([2 / 3, 4 / 3]) ** alpha
    assert auxiliary.item() == pytest.approx(expected) and auxiliary.item() == pytest.approx((4 - target).abs().sum())
    torch.testing.assert_close(method.initial_losses, torch.tensor([4.0, 1.0]))  # kept from the first step
    # With weights (1.5, 0.5): loss 1.5*8 + 0.5*4 = 14, G = (6, 2), mean 4.
    with torch.no_grad():
        method.weights.copy_(torch.tensor([1.5, 0.5]))
    loss, auxiliary = method({"expr": 4 * z.sum(), "au": (z**2).sum()}, flags, z)
    assert loss.item() == pytest.approx(14.0)
    assert auxiliary.item() == pytest.approx(float((torch.tensor([6.0, 2.0]) - target).abs().sum()))


def test_gradnorm_target_is_a_constant() -> None:
    method = GradNorm()
    method.set_tasks(("expr", "au", "va"))
    z = torch.ones(1, 1, requires_grad=True)
    # L = (4z, z, z): g = (4, 1, 1), equal rates, mean G = 2, auxiliary |4-2| + |1-2| + |1-2| = 4.
    losses = {"expr": 4 * z.sum(), "au": z.sum(), "va": z.sum()}
    _, auxiliary = method(losses, _flags(expr=True, au=True, va=True), z)
    assert auxiliary.item() == pytest.approx(4.0)
    (grad,) = torch.autograd.grad(auxiliary, method.weights)
    # sign(G_t - target) * g_t; a target that moved with w would give g_t * (sign_t + 1/3) instead.
    torch.testing.assert_close(grad, torch.tensor([4.0, -1.0, -1.0]))


class _ToyTwoTask(nn.Module):
    """A shared trunk and two regression heads; the first head's output is scaled up (larger gradients)."""

    def __init__(self, scale: float = 10.0) -> None:
        super().__init__()
        self.trunk = nn.Linear(4, 8)
        self.head_a = nn.Linear(8, 1)
        self.head_b = nn.Linear(8, 1)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = torch.tanh(self.trunk(x))
        return z, {"expr": self.scale * self.head_a(z).squeeze(-1), "au": self.head_b(z).squeeze(-1)}


def _toy_losses(model: _ToyTwoTask, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    z, out = model(x)
    return z, {task: ((pred - y) ** 2).mean() for task, pred in out.items()}


def test_gradnorm_loss_reaches_only_the_weights_and_model_loss_never_them() -> None:
    torch.manual_seed(0)
    model = _ToyTwoTask()
    method = GradNorm()
    method.set_tasks(("expr", "au"))
    z, losses = _toy_losses(model, torch.randn(16, 4), torch.randn(16))
    loss, auxiliary = method(losses, _flags(expr=True, au=True), z)
    params = list(model.parameters())
    from_auxiliary = torch.autograd.grad(auxiliary, [*params, method.weights], retain_graph=True, allow_unused=True)
    assert all(g is None or torch.all(g == 0) for g in from_auxiliary[:-1])
    assert from_auxiliary[-1] is not None and from_auxiliary[-1].abs().sum() > 0
    from_loss = torch.autograd.grad(loss, [*params, method.weights], allow_unused=True)
    assert from_loss[-1] is None or torch.all(from_loss[-1] == 0)
    assert all(g is not None and g.abs().sum() > 0 for g in from_loss[:-1])


def test_gradnorm_lowers_the_weight_of_the_task_with_larger_gradients() -> None:
    torch.manual_seed(0)
    model = _ToyTwoTask(scale=10.0)
    method = GradNorm(alpha=1.5)
    method.set_tasks(("expr", "au"))
    optimizer = torch.optim.Adam([{"params": model.parameters(), "lr": 1e-3}, {"params": method.parameters()}], lr=0.02)
    x, y = torch.randn(32, 4), torch.randn(32)
    flags = _flags(expr=True, au=True)
    for _ in range(15):
        optimizer.zero_grad()
        z, losses = _toy_losses(model, x, y)
        loss, auxiliary = method(losses, flags, z)
        (loss + auxiliary).backward()
        optimizer.step()
        method.after_optimizer_step()
        assert torch.all(method.weights > 0)
        assert method.weights.sum().item() == pytest.approx(2.0, abs=1e-5)
    weights = method.task_weights()
    assert weights["expr"] < 0.9 and weights["au"] > 1.1


def test_gradnorm_renormalisation_keeps_weights_positive() -> None:
    method = GradNorm()
    method.set_tasks(("expr", "au", "va"))
    with torch.no_grad():
        method.weights.copy_(torch.tensor([-1.0, 3.0, 1.0]))
    method.after_optimizer_step()
    assert torch.all(method.weights > 0) and method.weights.sum().item() == pytest.approx(3.0)
    assert method.weights[0] < 1e-2


def test_gradnorm_skips_unlabeled_tasks_without_nan() -> None:
    torch.manual_seed(0)
    model = _ToyTwoTask()
    method = GradNorm()
    method.set_tasks(("expr", "au", "va"))
    z, losses = _toy_losses(model, torch.randn(8, 4), torch.randn(8))
    losses["va"] = z.sum() * 0.0  # unlabeled: the exact 0 the masked losses give
    loss, auxiliary = method(losses, _flags(expr=True, au=True, va=False), z)
    (loss + auxiliary).backward()
    assert torch.isfinite(loss) and torch.isfinite(auxiliary)
    assert method.weights.grad[2].item() == 0.0 and method.weights.grad[:2].abs().sum() > 0
    assert method.initialized.tolist() == [True, True, False] and method.initial_losses[2].item() == 0.0
    # Nothing labeled: finite zero auxiliary loss, and the weights still take part in the graph.
    method.weights.grad = None
    z, losses = _toy_losses(model, torch.randn(8, 4), torch.randn(8))
    loss, auxiliary = method(losses, _flags(expr=False, au=False), z)
    auxiliary.backward()
    assert auxiliary.item() == 0.0 and torch.all(method.weights.grad == 0)
    # A task first labeled later records its initial loss then.
    z, losses = _toy_losses(model, torch.randn(8, 4), torch.randn(8))
    losses["va"] = losses["au"] * 2
    method(losses, _flags(expr=True, au=True, va=True), z)
    assert method.initialized.all() and method.initial_losses[2].item() > 0


def test_gradnorm_outside_training_gives_only_the_weighted_loss() -> None:
    method = GradNorm()
    method.set_tasks(("expr", "au"))
    method.eval()
    loss, auxiliary = method(_losses(expr=1.0, au=2.0), _flags(expr=True, au=True))
    assert loss.item() == pytest.approx(3.0) and auxiliary is None and not method.initialized.any()
    method.train()
    with pytest.raises(ValueError, match="shared representation"):
        method({"expr": torch.ones((), requires_grad=True)}, _flags(expr=True))


@pytest.mark.parametrize("method", [FixedWeighting, UncertaintyWeighting, GradNorm])
def test_all_unlabeled_batch_gives_no_nan(method: type) -> None:
    torch.manual_seed(0)
    loss_fn = MultitaskLoss(balancing=method())
    z = torch.randn(4, 6, requires_grad=True)
    heads = nn.ModuleDict({"expr": nn.Linear(6, 3), "au": nn.Linear(6, 2), "va": nn.Linear(6, 2)})
    outputs = {task: head(z) for task, head in heads.items()}
    batch = {"expr": torch.full((4,), -1), "au": torch.full((4, 2), NAN), "va": torch.full((4, 2), NAN)}
    batch["va"][0, 0] = 0.3  # one row is not enough for a CCC
    out = loss_fn(outputs, batch, shared=z)
    total = out["loss"] + out.get("balancing_loss", 0.0)
    total.backward()
    assert out["loss"].item() == 0.0 and torch.isfinite(total)
    for p in [*heads.parameters(), *loss_fn.parameters(), z]:
        assert torch.isfinite(p.grad).all() and torch.all(p.grad == 0)


# ------------------------------------------------------------------------------------------ class weights
def test_class_balance_weights_for_a_toy_label_vector() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2, -1, 0])
    counts = torch.from_numpy(np.bincount(labels[labels >= 0], minlength=4))  # (4, 1, 2, 0)
    with pytest.warns(UserWarning, match=r"Classes \[3\]"):
        inverse = class_balance_weights(counts, "inverse_frequency")
    raw = np.array([1 / 4, 1 / 1, 1 / 2])
    np.testing.assert_allclose(inverse[:3].numpy(), raw / raw.mean(), rtol=1e-6)
    assert inverse[3].item() == 0.0
    beta = 0.9
    with pytest.warns(UserWarning):
        effective = class_balance_weights(counts, "effective_number", beta=beta)
    raw = np.array([(1 - beta) / (1 - beta**4), 1.0, (1 - beta) / (1 - beta**2)])
    np.testing.assert_allclose(effective[:3].numpy(), raw / raw.mean(), rtol=1e-6)
    full = torch.tensor([10, 5, 1])
    for scheme in ("inverse_frequency", "effective_number"):
        assert class_balance_weights(full, scheme).mean().item() == pytest.approx(1.0)
    torch.testing.assert_close(class_balance_weights(full, "effective_number", beta=0.0), torch.ones(3))
    torch.testing.assert_close(class_balance_weights(full, "none"), torch.ones(3))
    with pytest.raises(ValueError, match="beta"):
        class_balance_weights(full, "effective_number", beta=1.0)
    with pytest.raises(ValueError, match="Unknown class balance"):
        class_balance_weights(full, "focal")


def test_expression_class_counts_match_the_training_split(tiny_cache: Path) -> None:
    from multimodal_fer.datamodules import SynthAffectDataModule

    dm = SynthAffectDataModule(root=str(tiny_cache), **TINY_DATA)
    counts = dm.expression_class_counts()
    dataset = dm.dataset("train")
    labels = [int(dataset[i]["expr"]) for i in range(len(dataset))]
    expected = np.bincount([y for y in labels if y >= 0], minlength=dm.label_space.num_expressions)
    assert counts.dtype == torch.int64 and counts.tolist() == expected.tolist() and counts.sum() > 0


# ------------------------------------------------------------------------------------- within the task
def _task(**kwargs: object) -> MultitaskFERTask:
    fusion = partial(AttentionFusion, d_model=8, num_heads=2, num_layers=1)
    return MultitaskFERTask({"physio": PhysioCNN(out_dim=8, widths=(4,))}, LABEL_SPACE, fusion=fusion, **kwargs)


def _batch(size: int = 6) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {
        "physio": torch.randn(size, 3, 64),
        PRESENT_KEY: {"physio": torch.ones(size, dtype=torch.bool)},
        "expr": torch.tensor([0, 1, 2, 0, 1, -1])[:size],
        "au": torch.randint(0, 2, (size, 2)).float(),
        "va": torch.rand(size, 2) * 2 - 1,
    }


@pytest.mark.parametrize("method", [UncertaintyWeighting, GradNorm])
def test_task_trains_the_balancing_parameters(method: type) -> None:
    task = _task(task_balancing=method(lr=0.05))
    optimizer = task.configure_optimizers()
    model_group, balancing_group = optimizer.param_groups
    own = list(task.loss.balancing.parameters())
    assert len(own) == 1 and len(balancing_group["params"]) == 1 and balancing_group["params"][0] is own[0]
    assert balancing_group["weight_decay"] == 0.0 and balancing_group["lr"] == 0.05
    assert not any(p is own[0] for p in model_group["params"])
    assert len(model_group["params"]) + 1 == len(list(task.parameters()))
    before = own[0].detach().clone()
    task.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer
        for step in range(3):
            optimizer.zero_grad()
            task.training_step(_batch(), step).backward()
            assert own[0].grad is not None and own[0].grad.abs().sum() > 0
            optimizer.step()
            task.on_train_batch_end(None, None, step)
    assert not torch.equal(own[0].detach(), before)
    if method is GradNorm:
        assert task.loss.balancing.initialized.all() and (task.loss.balancing.initial_losses > 0).all()
        assert own[0].sum().item() == pytest.approx(3.0, abs=1e-5) and torch.all(own[0] > 0)


def test_gradnorm_refuses_late_fusion_and_uncertainty_accepts_it() -> None:
    late = partial(LateFusion, out_dim=8)
    encoders = {"physio": PhysioCNN(out_dim=8, widths=(4,))}
    with pytest.raises(ValueError, match="no shared heads"):
        MultitaskFERTask(encoders, LABEL_SPACE, fusion=late, task_balancing=GradNorm())
    task = MultitaskFERTask(encoders, LABEL_SPACE, fusion=late, task_balancing=UncertaintyWeighting())
    task.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer
        assert torch.isfinite(task.training_step(_batch(), 0))


def test_task_gradnorm_reads_the_heads_input() -> None:
    task = _task(task_balancing=GradNorm())
    seen: list[torch.Tensor] = []
    task.model.heads.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    task.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shared = {}
        original = task.loss.forward

        def spy(*args: object, **kwargs: object) -> dict[str, torch.Tensor]:
            shared["z"] = kwargs["shared"]
            return original(*args, **kwargs)

        task.loss.forward = spy
        task.training_step(_batch(), 0)
    assert shared["z"] is seen[0] and shared["z"].shape == (6, 8)
    with torch.no_grad():
        task.eval()
        task.validation_step(_batch(), 0)
    assert shared["z"] is None  # not kept without a graph


class _TrainingStatistics(FERDataModule):
    """A data module that only answers the training statistics (no cache behind it)."""

    def __init__(self) -> None:  # no cache, no adapter: the task asks for nothing else
        pass

    def au_positive_weight(self) -> torch.Tensor:
        return torch.tensor([3.0, 5.0])

    def expression_class_counts(self) -> torch.Tensor:
        return torch.tensor([4, 1, 2])


def test_task_class_balance_settings() -> None:
    datamodule = _TrainingStatistics()
    balanced = _task(expr_class_balance="inverse_frequency", au_class_balance="pos_weight")
    balanced.trainer = SimpleNamespace(datamodule=datamodule)
    balanced.setup("fit")
    torch.testing.assert_close(balanced.au_pos_weight, torch.tensor([3.0, 5.0]))
    raw = torch.tensor([1 / 4, 1.0, 1 / 2])
    torch.testing.assert_close(balanced.expr_class_weight, raw / raw.mean())
    plain = _task(au_class_balance="none")
    plain.trainer = SimpleNamespace(datamodule=datamodule)
    plain.setup("fit")
    assert torch.all(plain.au_pos_weight == 1) and torch.all(plain.expr_class_weight == 1)
    # The weights reach the expression loss.
    batch = _batch()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        balanced.eval()
        balanced.validation_step(batch, 0)
        outputs = balanced(batch)
    expected = masked_cross_entropy(outputs["expr"], batch["expr"], balanced.expr_class_weight)
    assert balanced.loss_means["val_expr"].compute().item() == pytest.approx(expected.item(), rel=1e-5)
    # A checkpoint from before class-balanced expression losses (no class weights) still loads strictly.
    old = {k: v for k, v in plain.state_dict().items() if k != "expr_class_weight"}
    checkpoint = {"state_dict": old}
    balanced.on_load_checkpoint(checkpoint)
    balanced.load_state_dict(checkpoint["state_dict"], strict=True)
    no_counts = _task(expr_class_balance="effective_number")
    no_counts.trainer = SimpleNamespace(datamodule=SimpleNamespace())
    with pytest.raises(ValueError, match="not a FERDataModule with training statistics"):
        no_counts.setup("fit")
    with pytest.raises(ValueError, match="beta"):
        _task(expr_class_balance="effective_number", class_balance_beta=1.5)


# ------------------------------------------------------------------------------------ quickstart fits
def _overlay_fit_args(tmp_path: Path, cache: Path, overlay: str, *extra: str) -> list[str]:
    return [
        "--config",
        QUICKSTART,
        "--config",
        OVERLAYS[overlay],
        "--config",
        str(CONFIGS / "overlays" / "csv_logger.yaml"),
        *tiny_data_args(cache),
        *run_args(tmp_path),
        "--trainer.accelerator=cpu",
        *extra,
    ]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_quickstart_fit_with_overlay_logs_weights_and_checkpoints_them(
    overlay: str, tmp_path: Path, tiny_cache: Path
) -> None:
    from multimodal_fer.cli import build_cli, main

    args = _overlay_fit_args(tmp_path, tiny_cache, overlay)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Classes .* have no training sample")
        main(["fit", *args, "--trainer.max_epochs=1", "--test_after_fit=false"])
    rows = list(csv.DictReader((run_folder(tmp_path) / "csv" / "session-0" / "metrics.csv").open()))
    for task in ("expr", "au", "va"):
        values = [float(r[f"train/{task}/task_weight"]) for r in rows if r.get(f"train/{task}/task_weight")]
        assert len(values) == 1 and math.isfinite(values[0]) and values[0] > 0
    assert all(math.isfinite(float(r["train/loss"])) for r in rows if r.get("train/loss"))
    state = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=False)["state_dict"]
    fresh = build_cli([*args, "--trainer.logger=false"], run=False).model
    if overlay == "gradnorm":
        assert "train/task_balancing_loss" in rows[0]
        assert state["loss.balancing.initialized"].all() and (state["loss.balancing.initial_losses"] > 0).all()
        assert state["loss.balancing.weights"].sum().item() == pytest.approx(3.0, abs=1e-5)
        assert not torch.equal(state["loss.balancing.weights"], torch.ones(3))  # trained: the round trip is not trivial
        assert not fresh.loss.balancing.initialized.any()
        fresh.load_state_dict(state, strict=True)
        balancing = fresh.loss.balancing
        torch.testing.assert_close(balancing.initial_losses, state["loss.balancing.initial_losses"])
        torch.testing.assert_close(balancing.weights.detach(), state["loss.balancing.weights"])
        assert balancing.initialized.all()
    elif overlay == "uncertainty_weighting":
        assert not torch.equal(state["loss.balancing.log_variance"], torch.zeros(3))
        fresh.load_state_dict(state, strict=True)
        torch.testing.assert_close(fresh.loss.balancing.log_variance.detach(), state["loss.balancing.log_variance"])
    else:
        from multimodal_fer.datamodules import SynthAffectDataModule

        counts = SynthAffectDataModule(root=str(tiny_cache), **TINY_DATA).expression_class_counts()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = class_balance_weights(counts, "effective_number", beta=0.999)
        torch.testing.assert_close(state["expr_class_weight"], expected)
        assert not torch.all(state["au_pos_weight"] == 1)
        fresh.load_state_dict(state, strict=True)
        torch.testing.assert_close(fresh.expr_class_weight, expected)


@pytest.mark.slow
def test_gradnorm_ddp_two_cpu_processes(tmp_path: Path, tiny_cache: Path) -> None:
    """GradNorm under DDP without find_unused_parameters: every parameter gets a gradient each step."""
    command = [
        *MFER,
        "fit",
        "--config",
        QUICKSTART,
        "--config",
        OVERLAYS["gradnorm"],
        *tiny_data_args(tiny_cache, batch_size=2),  # two optimiser steps per process
        *tiny_trainer_args(tmp_path),
        "--trainer.max_epochs=1",
        "--test_after_fit=false",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=False)["state_dict"]
    assert state["loss.balancing.initialized"].all()
    assert state["loss.balancing.weights"].sum().item() == pytest.approx(3.0, abs=1e-5)
