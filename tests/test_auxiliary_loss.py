"""Encoders' own regularisers (PointNet's T-Net orthogonality term) in the model and the training loss."""

import os
import warnings
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from multimodal_fer.models.encoders import DGCNNEncoder, FaceCNN, PhysioCNN, PointNetEncoder
from multimodal_fer.models.encoders.pointcloud import orthogonality_penalty
from multimodal_fer.models.fusion import AttentionFusion
from multimodal_fer.models.multimodal import MultimodalFERModel
from multimodal_fer.tasks import MultitaskFERTask
from multimodal_fer.types import PRESENT_KEY, LabelSpace

LABEL_SPACE = LabelSpace(expressions=("a", "b", "c"), action_units=(1, 2), dimensions=("valence", "arousal"))
FUSION = partial(AttentionFusion, d_model=8, num_heads=2, num_layers=1, dropout=0.0)


def _pointnet() -> PointNetEncoder:
    """A PointNet whose T-Net is pushed away from the identity, so that its regulariser is clearly positive."""
    encoder = PointNetEncoder(out_dim=8, widths=(8, 16), num_tokens=None)
    with torch.no_grad():
        encoder.transform.head[-1].bias.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    return encoder


def _cloud(batch: int, num_points: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    xyz = torch.randn(batch, num_points, 3, generator=generator) * 0.4
    return torch.cat([xyz, F.normalize(torch.randn(batch, num_points, 3, generator=generator), dim=-1)], dim=-1)


def _inputs() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Six samples: clouds present in four, physiology in all."""
    inputs = {"depth": _cloud(6), "physio": torch.randn(6, 3, 64, generator=torch.Generator().manual_seed(2))}
    present = {"depth": torch.tensor([True, False, True, True, False, True]), "physio": torch.ones(6, dtype=torch.bool)}
    return inputs, present


def _batch() -> dict[str, object]:
    inputs, present = _inputs()
    return {
        **inputs,
        PRESENT_KEY: present,
        "expr": torch.tensor([0, 1, 2, 0, 1, -1]),
        "au": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
        "va": torch.linspace(-0.9, 0.9, 12).view(6, 2),
    }


def test_only_encoders_with_a_regulariser_have_an_auxiliary_loss() -> None:
    encoder = _pointnet()
    assert encoder.auxiliary_loss() is None  # nothing before a forward
    encoder(_cloud(2))
    assert encoder.auxiliary_loss() is encoder.transform_regularizer and encoder.auxiliary_loss().item() > 1e-3
    plain = PointNetEncoder(out_dim=8, widths=(8,), input_transform=False)
    plain(_cloud(2))
    assert plain.auxiliary_loss() is None
    for other, x in (
        (DGCNNEncoder(out_dim=8, widths=(8,), k=4, embed_dim=8), _cloud(2)),
        (FaceCNN(out_dim=8, widths=(4, 8)), torch.randn(2, 3, 32, 32)),
        (PhysioCNN(out_dim=8, widths=(4,)), torch.randn(2, 3, 64)),
    ):
        other(x)
        assert other.auxiliary_loss() is None, type(other).__name__


def test_model_collects_the_regulariser_of_present_samples_only() -> None:
    torch.manual_seed(0)
    model = MultimodalFERModel({"depth": _pointnet(), "physio": PhysioCNN(out_dim=8, widths=(4,))}, FUSION, LABEL_SPACE)
    model.eval()
    inputs, present = _inputs()
    with torch.no_grad():
        losses = model(inputs, present).auxiliary_losses
        assert set(losses) == {"depth"}
        matrices = model.encoders["depth"].transform(inputs["depth"][present["depth"]][..., :3].transpose(1, 2))
        expected = orthogonality_penalty(matrices)
        assert losses["depth"].item() == pytest.approx(expected.item(), rel=1e-5)
        poisoned = dict(inputs, depth=inputs["depth"].clone())
        poisoned["depth"][~present["depth"]] = float("nan")  # absent clouds cannot reach it
        assert model(poisoned, present).auxiliary_losses["depth"].item() == pytest.approx(expected.item(), rel=1e-5)
        # Depth absent from the whole batch: its encoder does not run, so it has no regulariser.
        assert model(inputs, {**present, "depth": torch.zeros(6, dtype=torch.bool)}).auxiliary_losses == {}
    plain = MultimodalFERModel({"physio": PhysioCNN(out_dim=8, widths=(4,))}, FUSION, LABEL_SPACE)
    assert plain(inputs, present).auxiliary_losses == {}


def _task(**kwargs: object) -> MultitaskFERTask:
    torch.manual_seed(0)
    encoders = {"depth": _pointnet(), "physio": PhysioCNN(out_dim=8, widths=(4,))}
    return MultitaskFERTask(encoders, LABEL_SPACE, fusion=FUSION, head_dropout=0.0, **kwargs)


def _step(task: MultitaskFERTask, logged: dict[str, torch.Tensor]) -> torch.Tensor:
    task.train()
    task.zero_grad()
    torch.manual_seed(5)
    _record_logs(task, logged)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = task.training_step(_batch(), 0)
        task._log_epoch_metrics("train")  # the epoch's means of a one-step epoch
    loss.backward()
    return loss


def _record_logs(task: MultitaskFERTask, logged: dict[str, torch.Tensor]) -> None:
    task.log = lambda name, value, **_: logged.__setitem__(name, value)  # type: ignore[method-assign]
    task.log_dict = lambda values, **_: logged.update(values)  # type: ignore[method-assign]


def test_training_loss_adds_the_weighted_regulariser_and_its_gradient() -> None:
    task = _task(auxiliary_loss_weight=0.01)
    assert task.auxiliary_loss_weight == {"depth": 0.01, "physio": 0.01}
    logged: dict[str, torch.Tensor] = {}
    with_aux = _step(task, logged)
    regulariser = task.model(*_inputs()).auxiliary_losses["depth"].detach()
    assert regulariser.item() > 1e-2
    bias = task.model.encoders["depth"].transform.head[-1].bias
    grad_with = bias.grad.clone()
    assert logged["train/aux_loss"].item() == pytest.approx(0.01 * regulariser.item(), rel=1e-5)

    task.auxiliary_loss_weight = {"depth": 0.0, "physio": 0.0}
    logged_without: dict[str, torch.Tensor] = {}
    without = _step(task, logged_without)
    grad_without = bias.grad.clone()
    assert "train/aux_loss" not in logged_without
    assert (with_aux - without).item() == pytest.approx(0.01 * regulariser.item(), rel=1e-4)
    # The gradient the regulariser adds to the T-Net is the weighted gradient of the regulariser alone.
    task.zero_grad()
    task.model(*_inputs()).auxiliary_losses["depth"].backward()
    assert bias.grad.abs().sum() > 0
    torch.testing.assert_close(grad_with - grad_without, 0.01 * bias.grad, rtol=1e-3, atol=1e-7)


def test_default_weight_is_pointnets_and_per_modality_weights_are_checked() -> None:
    assert _task().auxiliary_loss_weight == {"depth": 0.001, "physio": 0.001}
    assert _task(auxiliary_loss_weight={"depth": 0.5}).auxiliary_loss_weight == {"depth": 0.5, "physio": 0.0}
    with pytest.raises(ValueError, match=r"names modalities \['face'\] that have no encoder"):
        _task(auxiliary_loss_weight={"face": 0.1})
    with pytest.raises(ValueError, match="finite and non-negative"):
        _task(auxiliary_loss_weight=-0.1)


def test_nothing_changes_without_a_regulariser() -> None:
    torch.manual_seed(0)
    task = MultitaskFERTask({"physio": PhysioCNN(out_dim=8, widths=(4,))}, LABEL_SPACE, fusion=FUSION, head_dropout=0.0)
    logged: dict[str, torch.Tensor] = {}
    batch = {k: v for k, v in _batch().items() if k != "depth"}
    batch[PRESENT_KEY] = {"physio": torch.ones(6, dtype=torch.bool)}
    task.train()
    _record_logs(task, logged)
    torch.manual_seed(5)
    loss = task.training_step(batch, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task._log_epoch_metrics("train")
    assert task.model_output(batch).auxiliary_losses == {} and "train/aux_loss" not in logged
    assert task.auxiliary_loss({}) is None
    assert loss.item() == pytest.approx(logged["train/loss_step"].item())


def _ddp_worker(rank: int, world_size: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        task = _task()
        model = torch.nn.parallel.DistributedDataParallel(task.model, find_unused_parameters=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(3):  # DDP refuses the next step if a parameter missed the previous reduction
            inputs, present = _inputs()
            output = model(inputs, present)  # DDP finds the tensors inside the named tuple
            auxiliary = task.auxiliary_loss(output.auxiliary_losses)
            assert auxiliary is not None and auxiliary.item() > 0
            loss = sum(value.square().mean() for value in output.heads.values()) + auxiliary
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_regulariser_trains_under_ddp_without_unused_parameters() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port), nprocs=2, join=True)
