"""Per-modality (unimodal) heads: deep supervision of every encoder on its own signal."""

from functools import partial

import pytest
import torch

from multimodal_fer.models.encoders import FaceCNN, ModalityEncoders, PhysioCNN
from multimodal_fer.models.fusion import AttentionFusion, LateFusion, MulTFusion
from multimodal_fer.models.losses import UnimodalLoss, labels_of_present
from multimodal_fer.models.multimodal import MultimodalFERModel
from multimodal_fer.tasks import MultitaskFERTask
from multimodal_fer.types import PRESENT_KEY, LabelSpace

LABEL_SPACE = LabelSpace(expressions=("a", "b", "c"), action_units=(1, 2), dimensions=("valence", "arousal"))
FUSION = partial(AttentionFusion, d_model=8, num_heads=2, num_layers=1, dropout=0.0)


def _encoders() -> ModalityEncoders:
    return ModalityEncoders(face=FaceCNN(out_dim=8, widths=(4, 8)), physio=PhysioCNN(out_dim=8, widths=(4,)))


def _batch(face_present: list[bool] | None = None) -> dict[str, object]:
    generator = torch.Generator().manual_seed(0)
    present = torch.tensor(face_present or [True, False, True, True, False, True])
    return {
        "face": torch.randn(6, 3, 32, 32, generator=generator),
        "physio": torch.randn(6, 3, 64, generator=generator),
        PRESENT_KEY: {"face": present, "physio": torch.ones(6, dtype=torch.bool)},
        "expr": torch.tensor([0, 1, 2, 0, 1, 2]),
        "au": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
        "va": torch.linspace(-0.9, 0.9, 12).view(6, 2),
    }


def _task(weight: float, fusion=FUSION) -> MultitaskFERTask:
    torch.manual_seed(0)
    return MultitaskFERTask(_encoders(), LABEL_SPACE, fusion=fusion, head_dropout=0.0, unimodal_loss_weight=weight)


def test_model_predicts_every_encoded_modality_with_its_presence() -> None:
    torch.manual_seed(0)
    model = MultimodalFERModel(_encoders(), FUSION, LABEL_SPACE, unimodal_heads=True).eval()
    batch = _batch()
    output = model({k: batch[k] for k in ("face", "physio")}, batch[PRESENT_KEY])
    assert set(output.unimodal) == {"face", "physio"}
    outputs = output.unimodal["face"]
    assert torch.equal(output.present["face"], batch[PRESENT_KEY]["face"])
    assert outputs["expr"].shape == (6, 3) and outputs["au"].shape == (6, 2) and outputs["va"].shape == (6, 2)
    plain = MultimodalFERModel(_encoders(), FUSION, LABEL_SPACE)
    assert plain({k: batch[k] for k in ("face", "physio")}, batch[PRESENT_KEY]).unimodal == {}
    assert plain.unimodal_heads is None


def test_token_fusion_heads_read_the_mean_of_valid_tokens() -> None:
    torch.manual_seed(0)
    fusion = partial(MulTFusion, d_model=8, num_heads=2, num_layers=1, dropout=0.0)
    model = MultimodalFERModel(_encoders(), fusion, LABEL_SPACE, unimodal_heads=True).eval()
    batch = _batch()
    inputs = {k: batch[k] for k in ("face", "physio")}
    output = model(inputs, batch[PRESENT_KEY])
    physio_tokens = model.feature_norms["physio"](
        model.encoders["physio"].forward_tokens(inputs["physio"]).reshape(-1, 8)
    ).view(6, -1, 8)
    expected = model.unimodal_heads["physio"](physio_tokens.mean(dim=1))
    torch.testing.assert_close(output.unimodal["physio"]["expr"], expected["expr"])


def test_unimodal_loss_is_added_with_its_weight_and_trains_each_encoder_alone() -> None:
    batch = _batch()
    with_heads, without = _task(0.5), _task(0.0)
    without.load_state_dict({k: v for k, v in with_heads.state_dict().items() if "unimodal" not in k})
    with_heads.train(), without.train()
    total = with_heads.training_step(batch, 0)
    term = _unimodal_term(with_heads, batch)
    torch.testing.assert_close(total, without.training_step(batch, 0) + 0.5 * term)
    # The unimodal term alone reaches the face encoder through the face's own head, not through the fusion.
    with_heads.zero_grad()
    _unimodal_term(with_heads, batch).backward()
    assert with_heads.model.encoders["face"].fc.weight.grad.abs().sum() > 0
    assert with_heads.model.unimodal_heads["face"].heads["expr"][0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in with_heads.model.fusion.parameters())


def _unimodal_term(task: MultitaskFERTask, batch: dict[str, object]) -> torch.Tensor:
    """The task's unimodal loss term of a batch (a fresh forward, unweighted)."""
    output = task.model_output(batch)
    return task.unimodal_loss(output.unimodal, output.present, batch, task.au_pos_weight, None)


def test_absent_samples_do_not_count_in_the_unimodal_loss() -> None:
    task = _task(1.0).eval()
    batch = _batch()
    output = task.model_output(batch)
    changed = dict(batch)
    absent = ~batch[PRESENT_KEY]["face"]
    changed["expr"] = torch.where(absent, (batch["expr"] + 1) % 3, batch["expr"])
    changed["au"] = torch.where(absent.view(-1, 1), 1.0 - batch["au"], batch["au"])
    assert torch.equal(output.present["face"], batch[PRESENT_KEY]["face"])
    # Only the face's absent rows changed labels; physio sees all rows, so compare the face term alone.
    face_only = {"face": output.unimodal["face"]}
    first = task.unimodal_loss(face_only, output.present, batch)
    second = task.unimodal_loss(face_only, output.present, changed)
    torch.testing.assert_close(first, second)
    # The labels of present rows do count: changing one changes the term.
    flipped = dict(batch, expr=torch.where(~absent, (batch["expr"] + 1) % 3, batch["expr"]))
    assert not torch.allclose(task.unimodal_loss(face_only, output.present, flipped), first)
    # A modality absent from every sample adds nothing; nothing present at all gives no term.
    nobody = {**output.present, "face": torch.zeros(6, dtype=torch.bool)}
    assert task.unimodal_loss(face_only, nobody, batch) is None
    assert torch.isfinite(task.unimodal_loss(output.unimodal, output.present, batch))


def test_labels_of_absent_samples_become_unlabeled() -> None:
    batch = _batch()
    present = torch.tensor([True, False, True, False, True, True])
    labels = labels_of_present(batch, present)
    assert labels["expr"].tolist() == [0, -1, 2, -1, 1, 2]
    assert torch.isnan(labels["au"][~present]).all() and torch.equal(labels["au"][present], batch["au"][present])
    assert torch.isnan(labels["va"][~present]).all() and torch.equal(labels["va"][present], batch["va"][present])
    assert set(labels_of_present({"va": batch["va"]}, present)) == {"va"}


def test_unimodal_loss_is_the_mean_of_each_modalitys_masked_multitask_loss() -> None:
    from multimodal_fer.models.losses import MultitaskLoss

    torch.manual_seed(0)
    batch = _batch()
    present = {"face": torch.tensor([True, False, True, True, False, True]), "physio": torch.ones(6, dtype=torch.bool)}
    outputs = {
        m: {"expr": torch.randn(6, 3), "au": torch.randn(6, 2), "va": torch.tanh(torch.randn(6, 2))} for m in present
    }
    plain = MultitaskLoss(tasks=LABEL_SPACE.tasks)
    expected = torch.stack([plain(outputs[m], labels_of_present(batch, present[m]))["loss"] for m in present]).mean()
    torch.testing.assert_close(UnimodalLoss(LABEL_SPACE.tasks)(outputs, present, batch), expected)


def test_late_fusion_refuses_unimodal_heads_and_bad_weights() -> None:
    with pytest.raises(ValueError, match="Late fusion already trains one set of heads per modality"):
        _task(1.0, fusion=partial(LateFusion))
    with pytest.raises(ValueError, match="unimodal_loss_weight must be finite and non-negative"):
        _task(-1.0)
