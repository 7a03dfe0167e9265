"""Per-modality (unimodal) heads: deep supervision of every encoder on its own signal."""

from functools import partial

import pytest
import torch

from multimodal_fer.models.encoders import FaceCNN, PhysioCNN
from multimodal_fer.models.fusion import AttentionFusion, LateFusion, MulTFusion
from multimodal_fer.models.multimodal import MultimodalFERModel
from multimodal_fer.tasks import MultitaskFERTask
from multimodal_fer.types import PRESENT_KEY, LabelSpace

LABEL_SPACE = LabelSpace(expressions=("a", "b", "c"), action_units=(1, 2), dimensions=("valence", "arousal"))
FUSION = partial(AttentionFusion, d_model=8, num_heads=2, num_layers=1, dropout=0.0)


def _encoders() -> list:
    return [FaceCNN(out_dim=8, widths=(4, 8)), PhysioCNN(out_dim=8, widths=(4,))]


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
    model({k: batch[k] for k in ("face", "physio")}, batch[PRESENT_KEY])
    assert set(model.unimodal_outputs) == {"face", "physio"}
    outputs, present = model.unimodal_outputs["face"]
    assert torch.equal(present, batch[PRESENT_KEY]["face"])
    assert outputs["expr"].shape == (6, 3) and outputs["au"].shape == (6, 2) and outputs["va"].shape == (6, 2)
    plain = MultimodalFERModel(_encoders(), FUSION, LABEL_SPACE)
    plain({k: batch[k] for k in ("face", "physio")}, batch[PRESENT_KEY])
    assert plain.unimodal_outputs == {} and plain.unimodal_heads is None


def test_token_fusion_heads_read_the_mean_of_valid_tokens() -> None:
    torch.manual_seed(0)
    fusion = partial(MulTFusion, d_model=8, num_heads=2, num_layers=1, dropout=0.0)
    model = MultimodalFERModel(_encoders(), fusion, LABEL_SPACE, unimodal_heads=True).eval()
    batch = _batch()
    inputs = {k: batch[k] for k in ("face", "physio")}
    model(inputs, batch[PRESENT_KEY])
    physio_tokens = model.feature_norms["physio"](
        model.encoders["physio"].forward_tokens(inputs["physio"]).reshape(-1, 8)
    ).view(6, -1, 8)
    expected = model.unimodal_heads["physio"](physio_tokens.mean(dim=1))
    torch.testing.assert_close(model.unimodal_outputs["physio"][0]["expr"], expected["expr"])


def test_unimodal_loss_is_added_with_its_weight_and_trains_each_encoder_alone() -> None:
    batch = _batch()
    with_heads, without = _task(0.5), _task(0.0)
    without.load_state_dict({k: v for k, v in with_heads.state_dict().items() if "unimodal" not in k})
    with_heads.train(), without.train()
    total = with_heads.training_step(batch, 0)
    term = with_heads.unimodal_loss_term(batch)
    torch.testing.assert_close(total, without.training_step(batch, 0) + 0.5 * term)
    # The unimodal term alone reaches the face encoder through the face's own head, not through the fusion.
    with_heads.zero_grad()
    with_heads.unimodal_loss_term(batch).backward()
    assert with_heads.model.encoders["face"].fc.weight.grad.abs().sum() > 0
    assert with_heads.model.unimodal_heads["face"].heads["expr"][0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in with_heads.model.fusion.parameters())


def test_absent_samples_do_not_count_in_the_unimodal_loss() -> None:
    task = _task(1.0).eval()
    batch = _batch()
    task(batch)
    reference = task.unimodal_loss_term(batch)
    changed = dict(batch)
    absent = ~batch[PRESENT_KEY]["face"]
    changed["expr"] = torch.where(absent, (batch["expr"] + 1) % 3, batch["expr"])
    changed["au"] = torch.where(absent.view(-1, 1), 1.0 - batch["au"], batch["au"])
    task(changed)
    # Only the face's absent rows changed labels; physio sees all rows, so compare the face term alone.
    face_outputs, present = task.model.unimodal_outputs["face"]
    assert torch.equal(present, batch[PRESENT_KEY]["face"])
    physio_only = _task(1.0).eval()
    physio_only.load_state_dict(task.state_dict())
    physio_only.model.unimodal_outputs = {}
    assert physio_only.unimodal_loss_term(batch) is None
    task.model.unimodal_outputs = {"face": (face_outputs, present)}
    first = task.unimodal_loss_term(batch)
    second = task.unimodal_loss_term(changed)
    torch.testing.assert_close(first, second)
    assert torch.isfinite(reference)


def test_late_fusion_refuses_unimodal_heads_and_bad_weights() -> None:
    with pytest.raises(ValueError, match="Late fusion already trains one set of heads per modality"):
        _task(1.0, fusion=partial(LateFusion))
    with pytest.raises(ValueError, match="unimodal_loss_weight must be finite and non-negative"):
        _task(-1.0)
