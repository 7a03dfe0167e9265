import itertools

import pytest
import torch

from multimodal_fer.models.fusion import AttentionFusion, Fusion
from multimodal_fer.types import MODALITIES

DIMS = {"face": 12, "audio": 8, "depth": 6, "physio": 10}
B = 6


def _inputs(modalities: tuple[str, ...], seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    features = {m: torch.randn(B, DIMS[m], generator=g) for m in modalities}
    present = {m: torch.rand(B, generator=g) > 0.4 for m in modalities}
    return features, present


def _fusion(modalities: tuple[str, ...], dropout: float = 0.0) -> AttentionFusion:
    torch.manual_seed(0)
    return AttentionFusion({m: DIMS[m] for m in modalities}, d_model=16, num_heads=4, num_layers=2, dropout=dropout)


def test_is_fusion_and_canonical_order() -> None:
    fusion = _fusion(("physio", "face"))
    assert isinstance(fusion, Fusion)
    assert fusion.modalities == ("face", "physio")
    assert fusion.out_dim == 16


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("garbage", ["random", "nan", "inf"])
def test_absent_features_cannot_change_output(train: bool, garbage: str) -> None:
    fusion = _fusion(MODALITIES).train(train)
    features, present = _inputs(MODALITIES)
    present["audio"] = torch.tensor([True, False, True, False, False, True])
    changed = {m: f.clone() for m, f in features.items()}
    for m in MODALITIES:
        absent = ~present[m]
        fill = {
            "random": torch.randn(int(absent.sum()), DIMS[m]) * 100,
            "nan": float("nan"),
            "inf": float("inf"),
        }
        changed[m][absent] = fill[garbage]
    # Eval mode runs without autograd too, which takes nn.MultiheadAttention's fast path.
    with torch.set_grad_enabled(train):
        reference = fusion(features, present)
        out = fusion(changed, present)
    assert torch.isfinite(out).all()
    assert torch.equal(out, reference)


def test_absent_features_gradients_are_zero() -> None:
    fusion = _fusion(("face", "audio"))
    features, present = _inputs(("face", "audio"))
    features = {m: f.requires_grad_(True) for m, f in features.items()}
    fusion(features, present).sum().backward()
    for m in features:
        assert torch.all(features[m].grad[~present[m]] == 0)
        assert torch.isfinite(features[m].grad).all()


def test_present_modalities_change_output() -> None:
    fusion = _fusion(MODALITIES).eval()
    features, _ = _inputs(MODALITIES)
    present = {m: torch.ones(B, dtype=torch.bool) for m in MODALITIES}
    reference = fusion(features, present)
    for m in MODALITIES:
        changed = dict(features)
        changed[m] = features[m] + 1.0
        out = fusion(changed, present)
        assert (out - reference).abs().amax(dim=1).min() > 1e-4, m


def test_partially_absent_batch_matches_per_sample() -> None:
    fusion = _fusion(MODALITIES).eval()
    features, present = _inputs(MODALITIES, seed=3)
    batched = fusion(features, present)
    for i in range(B):
        single = fusion({m: f[i : i + 1] for m, f in features.items()}, {m: p[i : i + 1] for m, p in present.items()})
        torch.testing.assert_close(single, batched[i : i + 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modalities", [c for r in range(1, 5) for c in itertools.combinations(MODALITIES, r)])
def test_any_subset(modalities: tuple[str, ...]) -> None:
    fusion = _fusion(modalities, dropout=0.1)
    features, present = _inputs(modalities)
    out = fusion(features, present)
    assert out.shape == (B, 16)
    assert torch.isfinite(out).all()


def test_all_absent_sample_and_missing_key() -> None:
    fusion = _fusion(("face", "audio")).eval()
    features, _ = _inputs(("face", "audio"))
    none = {m: torch.zeros(B, dtype=torch.bool) for m in features}
    out = fusion(features, none)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, out[:1].expand_as(out))  # depends on parameters only
    # A modality missing from the mapping counts as absent.
    only_face = fusion({"face": features["face"]}, {"face": torch.ones(B, dtype=torch.bool)})
    with_absent_audio = fusion(
        {"face": features["face"], "audio": torch.full((B, 8), float("nan"))},
        {"face": torch.ones(B, dtype=torch.bool), "audio": torch.zeros(B, dtype=torch.bool)},
    )
    assert torch.equal(only_face, with_absent_audio)


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="Unknown modality"):
        AttentionFusion({"video": 4})
    with pytest.raises(ValueError, match="divisible"):
        AttentionFusion({"face": 4}, d_model=10, num_heads=4)
    fusion = _fusion(("face",))
    with pytest.raises(ValueError, match="shape"):
        fusion({"face": torch.randn(B, 3)}, {"face": torch.ones(B, dtype=torch.bool)})
