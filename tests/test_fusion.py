import itertools
from collections.abc import Callable

import pytest
import torch

from multimodal_fer.models.fusion import (
    AttentionFusion,
    ConcatFusion,
    Fusion,
    GatedFusion,
    LateFusion,
    LowRankFusion,
    MulTFusion,
)
from multimodal_fer.types import MODALITIES

DIMS = {"face": 12, "audio": 8, "depth": 6, "physio": 10}
#: Token counts per modality for token fusions (different lengths on purpose).
LENGTHS = {"face": 4, "audio": 5, "depth": 3, "physio": 7}
B = 6

#: Every fusion method, as a builder of a small instance: ``builder(in_dims, dropout)``.
FUSIONS: dict[str, Callable[..., Fusion]] = {
    "attention": lambda dims, dropout: AttentionFusion(dims, d_model=16, num_heads=4, num_layers=2, dropout=dropout),
    "mult": lambda dims, dropout: MulTFusion(
        dims, d_model=8, num_heads=2, num_layers=1, self_layers=1, out_dim=16, dropout=dropout
    ),
    "concat": lambda dims, dropout: ConcatFusion(dims, hidden_dim=24, out_dim=16, dropout=dropout),
    "gated": lambda dims, dropout: GatedFusion(dims, out_dim=16, dropout=dropout),
    "late": lambda dims, dropout: LateFusion(dims, out_dim=16, dropout=dropout),
    "low_rank": lambda dims, dropout: LowRankFusion(dims, out_dim=16, rank=3, dropout=dropout),
}
ALL = pytest.mark.parametrize("method", list(FUSIONS))


def _make(method: str, modalities: tuple[str, ...], dropout: float = 0.0) -> Fusion:
    torch.manual_seed(0)
    return FUSIONS[method]({m: DIMS[m] for m in modalities}, dropout)


def _inputs(modalities: tuple[str, ...], seed: int = 0, tokens: bool = False) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    features = {
        m: torch.randn(B, LENGTHS[m], DIMS[m], generator=g) if tokens else torch.randn(B, DIMS[m], generator=g)
        for m in modalities
    }
    present = {m: torch.rand(B, generator=g) > 0.4 for m in modalities}
    return features, present


def _fusion(modalities: tuple[str, ...], dropout: float = 0.0) -> AttentionFusion:
    return _make("attention", modalities, dropout)  # type: ignore[return-value]


# ------------------------------------------------------------------------ contract, every fusion method
@ALL
def test_contract_out_dim_and_order(method: str) -> None:
    fusion = _make(method, ("physio", "face"))
    assert isinstance(fusion, Fusion)
    assert fusion.modalities == ("face", "physio")
    features, present = _inputs(("face", "physio"), tokens=fusion.consumes_tokens)
    assert fusion(features, present).shape == (B, fusion.out_dim)


@ALL
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("garbage", ["random", "nan", "inf"])
def test_contract_absent_values_cannot_change_output(method: str, train: bool, garbage: str) -> None:
    fusion = _make(method, MODALITIES).train(train)
    features, present = _inputs(MODALITIES, tokens=fusion.consumes_tokens)
    present["audio"] = torch.tensor([True, False, True, False, False, True])
    present["depth"] = torch.zeros(B, dtype=torch.bool)  # absent from the whole batch
    changed = {m: f.clone() for m, f in features.items()}
    for m in MODALITIES:
        absent = ~present[m]
        shape = (int(absent.sum()), *features[m].shape[1:])
        fill = {"random": torch.randn(shape) * 100, "nan": float("nan"), "inf": float("inf")}
        changed[m][absent] = fill[garbage]
    with torch.set_grad_enabled(train):
        torch.manual_seed(1)  # same dropout draws in both calls
        reference = fusion(features, present)
        torch.manual_seed(1)
        out = fusion(changed, present)
    assert torch.isfinite(out).all()
    assert torch.equal(out, reference)


@ALL
def test_contract_absent_values_get_zero_gradient(method: str) -> None:
    fusion = _make(method, ("face", "audio", "physio"))
    features, present = _inputs(("face", "audio", "physio"), tokens=fusion.consumes_tokens)
    features = {m: f.requires_grad_(True) for m, f in features.items()}
    fusion(features, present).square().sum().backward()
    for m in features:
        assert torch.all(features[m].grad[~present[m]] == 0)
        assert torch.isfinite(features[m].grad).all()
    assert all(torch.isfinite(p.grad).all() for p in fusion.parameters() if p.grad is not None)


@ALL
def test_contract_present_modalities_change_output(method: str) -> None:
    fusion = _make(method, MODALITIES).eval()
    features, _ = _inputs(MODALITIES, tokens=fusion.consumes_tokens)
    present = {m: torch.ones(B, dtype=torch.bool) for m in MODALITIES}
    reference = fusion(features, present)
    for m in MODALITIES:
        changed = dict(features)
        changed[m] = features[m] + 1.0
        out = fusion(changed, present)
        assert (out - reference).abs().amax(dim=1).min() > 1e-5, m


@ALL
def test_contract_partially_absent_batch_matches_per_sample(method: str) -> None:
    fusion = _make(method, MODALITIES).eval()
    features, present = _inputs(MODALITIES, seed=3, tokens=fusion.consumes_tokens)
    batched = fusion(features, present)
    for i in range(B):
        single = fusion({m: f[i : i + 1] for m, f in features.items()}, {m: p[i : i + 1] for m, p in present.items()})
        torch.testing.assert_close(single, batched[i : i + 1], rtol=1e-4, atol=1e-5)


@ALL
@pytest.mark.parametrize("modalities", [c for r in range(1, 5) for c in itertools.combinations(MODALITIES, r)])
def test_contract_any_subset_forward_backward(method: str, modalities: tuple[str, ...]) -> None:
    fusion = _make(method, modalities, dropout=0.1)
    features, present = _inputs(modalities, tokens=fusion.consumes_tokens)
    out = fusion(features, present)
    assert out.shape == (B, fusion.out_dim)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    trained = [p for p in fusion.parameters() if p.grad is not None]
    assert trained and all(torch.isfinite(p.grad).all() for p in trained)


@ALL
def test_contract_missing_key_equals_absent(method: str) -> None:
    fusion = _make(method, ("face", "audio")).eval()
    features, _ = _inputs(("face", "audio"), tokens=fusion.consumes_tokens)
    everywhere = torch.ones(B, dtype=torch.bool)
    none = torch.zeros(B, dtype=torch.bool)
    only_face = fusion({"face": features["face"]}, {"face": everywhere})
    nan_audio = torch.full_like(features["audio"], float("nan"))
    with_absent_audio = fusion({"face": features["face"], "audio": nan_audio}, {"face": everywhere, "audio": none})
    assert torch.equal(only_face, with_absent_audio)
    all_absent = fusion(features, {"face": none, "audio": none})
    assert torch.isfinite(all_absent).all()
    assert torch.allclose(all_absent, all_absent[:1].expand_as(all_absent))  # depends on parameters only


def test_mult_padding_masks_tokens() -> None:
    fusion = _make("mult", ("face", "audio")).eval()
    features, _ = _inputs(("face", "audio"), tokens=True)
    present = {m: torch.ones(B, dtype=torch.bool) for m in features}
    padding = {"audio": torch.zeros(B, LENGTHS["audio"], dtype=torch.bool)}
    padding["audio"][:, -2:] = True
    reference = fusion(features, present, padding)
    changed = dict(features)
    changed["audio"] = features["audio"].clone()
    changed["audio"][:, -2:] = 1e3
    torch.testing.assert_close(fusion(changed, present, padding), reference)
    assert not torch.allclose(fusion(changed, present), reference)
    with pytest.raises(ValueError, match="padding"):
        fusion(features, present, {"audio": torch.zeros(B, 2, dtype=torch.bool)})


def test_token_fusion_refuses_vectors_and_vector_fusion_refuses_tokens() -> None:
    vectors, present = _inputs(("face",))
    tokens, _ = _inputs(("face",), tokens=True)
    with pytest.raises(ValueError, match="tokens"):
        _make("mult", ("face",))(vectors, present)
    with pytest.raises(ValueError, match="shape"):
        _make("concat", ("face",))(tokens, present)


def test_gated_weights_sum_to_one_over_present() -> None:
    fusion = _make("gated", ("face", "audio")).eval()
    features, present = _inputs(("face", "audio"))
    only_audio = {"face": torch.zeros(B, dtype=torch.bool), "audio": torch.ones(B, dtype=torch.bool)}
    out = fusion(features, only_audio)
    # With one modality present its candidate passes through unchanged.
    torch.testing.assert_close(out, fusion.candidates["audio"](features["audio"]).tanh())


def test_late_fusion_averages_present_representations() -> None:
    fusion = _make("late", ("face", "audio")).eval()
    features, present = _inputs(("face", "audio"))
    stacked, flags = fusion.per_modality(features, present)
    for i in range(B):
        rows = [stacked[i, j] for j in range(2) if flags[i, j] > 0]
        expected = torch.stack(rows).mean(0) if rows else torch.zeros(fusion.out_dim)
        torch.testing.assert_close(fusion(features, present)[i], expected)


def test_low_rank_matches_explicit_tensor_fusion() -> None:
    dims = {"face": 3, "audio": 2}
    fusion = LowRankFusion(dims, out_dim=4, rank=2, dropout=0.0).eval()
    features, _ = _inputs(("face", "audio"))
    features = {"face": torch.randn(B, 3), "audio": torch.randn(B, 2)}
    present = {m: torch.ones(B, dtype=torch.bool) for m in dims}
    # Explicit: Z = [x_f; 1] ⊗ [x_a; 1], weight W = Σ_r λ_r W_f^(r) ⊗ W_a^(r).
    zf = torch.cat([features["face"], torch.ones(B, 1)], 1)
    za = torch.cat([features["audio"], torch.ones(B, 1)], 1)
    z = torch.einsum("bi,bj->bij", zf, za)
    w = torch.einsum("r,rio,rjo->ijo", fusion.rank_weights, fusion.factors["face"], fusion.factors["audio"])
    expected = fusion.norm(torch.einsum("bij,ijo->bo", z, w) + fusion.bias)
    torch.testing.assert_close(fusion(features, present), expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- attention fusion specifics
def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="Unknown modality"):
        AttentionFusion({"video": 4})
    with pytest.raises(ValueError, match="divisible"):
        AttentionFusion({"face": 4}, d_model=10, num_heads=4)
    fusion = _fusion(("face",))
    with pytest.raises(ValueError, match="shape"):
        fusion({"face": torch.randn(B, 3)}, {"face": torch.ones(B, dtype=torch.bool)})
