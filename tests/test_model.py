from functools import partial

import pytest
import torch

from multimodal_fer.models.encoders import AudioMelCNN, DepthCNN, FaceCNN, PhysioCNN
from multimodal_fer.models.fusion import AttentionFusion
from multimodal_fer.models.heads import MultitaskHeads
from multimodal_fer.models.multimodal import MultimodalFERModel
from multimodal_fer.types import SYNTHAFFECT_LABEL_SPACE, LabelSpace

B = 4


def _encoders() -> dict:
    return {
        "face": FaceCNN(out_dim=24, widths=(8, 16)),
        "audio": AudioMelCNN(out_dim=16, n_mels=16, widths=(8,)),
        "depth": DepthCNN(out_dim=8, widths=(8,)),
        "physio": PhysioCNN(in_channels=3, out_dim=12, widths=(8,)),
    }


def _inputs() -> dict:
    return {
        "face": torch.randn(B, 3, 32, 32),
        "audio": torch.rand(B, 4000) * 2 - 1,
        "depth": torch.randn(B, 1, 32, 32),
        "physio": torch.randn(B, 3, 128),
    }


def test_all_modalities_end_to_end() -> None:
    torch.manual_seed(0)
    space = SYNTHAFFECT_LABEL_SPACE
    model = MultimodalFERModel(_encoders(), partial(AttentionFusion, d_model=32, num_heads=4), space)
    assert model.modalities == ("face", "audio", "depth", "physio")
    assert model.fusion.in_dims == {"face": 24, "audio": 16, "depth": 8, "physio": 12}
    present = {m: torch.tensor([True, True, False, True]) for m in model.modalities}
    present["audio"] = torch.ones(B, dtype=torch.bool)
    out = model(_inputs(), present)
    assert out["expr"].shape == (B, space.num_expressions)
    assert out["au"].shape == (B, space.num_action_units)
    assert out["va"].shape == (B, space.num_dimensions)
    assert out["va"].abs().max() <= 1
    sum(o.sum() for o in out.values()).backward()
    assert model.num_parameters() > 0
    assert model.num_parameters(trainable_only=True) == model.num_parameters()


def test_subset_and_missing_modality() -> None:
    torch.manual_seed(0)
    encoders = _encoders()
    space = LabelSpace(expressions=("a", "b", "c"), dimensions=("valence", "arousal", "dominance"))
    model = MultimodalFERModel([encoders["physio"], encoders["face"]], AttentionFusion, space).eval()
    assert model.modalities == ("face", "physio")
    inputs = _inputs()
    ones = torch.ones(B, dtype=torch.bool)
    out = model({"face": inputs["face"], "physio": inputs["physio"]}, {"face": ones, "physio": ones})
    assert set(out) == {"expr", "va"} and out["expr"].shape == (B, 3) and out["va"].shape == (B, 3)
    # Physio missing from the inputs = absent for every sample = absent with garbage data.
    only_face = model({"face": inputs["face"]}, {"face": ones})
    garbage = model(
        {"face": inputs["face"], "physio": torch.full((B, 3, 128), float("nan"))},
        {"face": ones, "physio": torch.zeros(B, dtype=torch.bool)},
    )
    torch.testing.assert_close(only_face, garbage)
    assert torch.isfinite(only_face["expr"]).all()


def test_absent_samples_do_not_reach_encoders_in_train_mode() -> None:
    torch.manual_seed(0)
    model = MultimodalFERModel(
        {"face": FaceCNN(out_dim=8, widths=(8,))},
        partial(AttentionFusion, dropout=0.0),
        LabelSpace(expressions=("a", "b")),
        head_dropout=0.0,
    ).train()
    x = torch.randn(B, 3, 32, 32)
    present = {"face": torch.tensor([True, False, True, False])}
    reference = model({"face": x}, present)["expr"]
    x2 = x.clone()
    x2[~present["face"]] = float("nan")
    out = model({"face": x2}, present)["expr"]
    torch.testing.assert_close(out, reference)


def test_heads_sized_from_label_space() -> None:
    heads = MultitaskHeads(16, LabelSpace(action_units=(1, 2, 4, 6, 12)), hidden_dim=8)
    assert heads.tasks == ("au",)
    assert heads(torch.randn(2, 16))["au"].shape == (2, 5)
    with pytest.raises(ValueError):
        MultitaskHeads(16, LabelSpace())


def test_encoder_key_must_match_modality() -> None:
    with pytest.raises(ValueError, match="reads"):
        MultimodalFERModel({"audio": FaceCNN()}, AttentionFusion, SYNTHAFFECT_LABEL_SPACE)
    with pytest.raises(ValueError, match="Two encoders"):
        MultimodalFERModel([FaceCNN(), FaceCNN()], AttentionFusion, SYNTHAFFECT_LABEL_SPACE)


def test_default_model_parameter_count() -> None:
    model = MultimodalFERModel(
        [FaceCNN(), AudioMelCNN(), DepthCNN(), PhysioCNN()], AttentionFusion, SYNTHAFFECT_LABEL_SPACE
    )
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) > 1_000_000


def test_feature_norm_handles_single_present_sample_in_training():
    import torch

    from multimodal_fer.models.feature_norm import FeatureNorm

    norm = FeatureNorm(4).train()
    out = norm(torch.randn(1, 4))
    assert out.shape == (1, 4) and torch.isfinite(out).all()
    batch = norm(torch.randn(8, 4) * 5 + 3)
    assert torch.allclose(batch.mean(0), torch.zeros(4), atol=1e-5)
