"""The fusion contract of :class:`multimodal_fer.models.fusion.Fusion`, checked for every exported fusion.

The fusions are discovered from ``multimodal_fer.models.fusion.__all__``: a new fusion is checked here as soon as it
is exported. Each ``check_*`` function states one clause of the contract and raises ``AssertionError`` when a fusion
breaks it; the parametrised tests run them over every exported fusion plus :class:`ToyMeanFusion`, a fusion
defined only in this file, and the last tests show that broken fusions fail them. Fusion-specific tests
(gate weights, late averaging, the low-rank identity, MulT's padding shapes) come at the end.
"""

import importlib
import inspect
import itertools
import pkgutil
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import multimodal_fer.models.fusion as fusion_package
from multimodal_fer.models.fusion import AttentionFusion, Fusion, GatedFusion, LateFusion, LowRankFusion, MulTFusion
from multimodal_fer.models.fusion.base import masked_mean, presence_matrix
from multimodal_fer.types import MODALITIES

REPO = Path(__file__).resolve().parents[1]
DIMS = {"face": 12, "audio": 8, "depth": 6, "physio": 10}
#: Token counts per modality for token fusions (different lengths on purpose).
LENGTHS = {"face": 4, "audio": 5, "depth": 3, "physio": 7}
B = 6
#: Small sizes for the constructor arguments of these names, where a fusion has them; others keep their defaults.
SMALL = {"d_model": 16, "num_heads": 2, "num_layers": 1, "self_layers": 1, "hidden_dim": 24, "out_dim": 16, "rank": 3}


def exported_fusions() -> list[type[Fusion]]:
    """Every fusion class that ``multimodal_fer.models.fusion`` exports, the base class aside."""
    found = [getattr(fusion_package, name) for name in fusion_package.__all__]
    return [c for c in found if isinstance(c, type) and issubclass(c, Fusion) and c is not Fusion]


class ToyMeanFusion(Fusion):
    """A fusion written only against the base class: one linear map per modality, averaged over present ones.

    Registered nowhere; it passes the whole suite because it keeps the contract declared on :class:`Fusion`.
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int = 8) -> None:
        super().__init__(in_dims)
        self.out_dim = out_dim
        self.proj = nn.ModuleDict({m: nn.Linear(dim, out_dim) for m, dim in self.in_dims.items()})

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        inputs = self.masked_features(features, present)
        stacked = torch.stack([self.proj[m](feat) for m, (feat, _) in inputs.items()], dim=1)  # (B, M, out_dim)
        return masked_mean(stacked, presence_matrix(inputs))


EXPORTED = exported_fusions()
CASES = [*EXPORTED, ToyMeanFusion]


def _name(cls: type) -> str:
    return cls.__name__


EVERY_FUSION = pytest.mark.parametrize("cls", CASES, ids=_name)
TOKEN_FUSIONS = pytest.mark.parametrize("cls", [c for c in CASES if c.consumes_tokens], ids=_name)
LATE_FUSIONS = pytest.mark.parametrize("cls", [c for c in CASES if c.late], ids=_name)
SUBSETS = [c for r in range(1, len(MODALITIES) + 1) for c in itertools.combinations(MODALITIES, r)]


def build(cls: type[Fusion], modalities: tuple[str, ...], dropout: float = 0.0) -> Fusion:
    """A small instance over ``modalities`` (the sizes in :data:`SMALL` the constructor accepts, seeded)."""
    params = inspect.signature(cls).parameters
    options: dict[str, object] = {k: v for k, v in SMALL.items() if k in params}
    if "dropout" in params:
        options["dropout"] = dropout
    torch.manual_seed(0)
    return cls({m: DIMS[m] for m in modalities}, **options)


def make_inputs(modalities: tuple[str, ...], seed: int = 0, tokens: bool = False) -> tuple[dict, dict]:
    """Random ``features`` (vectors (B, D), or tokens (B, T, D)) and ``present`` masks (~60 % present)."""
    g = torch.Generator().manual_seed(seed)
    features = {
        m: torch.randn(B, LENGTHS[m], DIMS[m], generator=g) if tokens else torch.randn(B, DIMS[m], generator=g)
        for m in modalities
    }
    present = {m: torch.rand(B, generator=g) > 0.4 for m in modalities}
    return features, present


def _fill_absent(features: dict[str, Tensor], present: dict[str, Tensor], garbage: str) -> dict[str, Tensor]:
    """A copy of ``features`` whose absent rows hold ``garbage``: large random values, NaN or inf."""
    changed = {m: f.clone() for m, f in features.items()}
    g = torch.Generator().manual_seed(7)
    for m, feat in changed.items():
        absent = ~present[m]
        shape = (int(absent.sum()), *feat.shape[1:])
        fill = {"random": torch.randn(shape, generator=g) * 100, "nan": float("nan"), "inf": float("inf")}[garbage]
        feat[absent] = fill
    return changed


# ------------------------------------------------------------------------------- the clauses of the contract
def check_shapes_and_out_dim(cls: type[Fusion]) -> None:
    fusion = build(cls, ("physio", "face"))
    assert isinstance(fusion, Fusion)
    assert fusion.modalities == ("face", "physio"), "modalities must be stored in canonical order"
    assert fusion.in_dims == {"face": DIMS["face"], "physio": DIMS["physio"]}
    assert isinstance(fusion.out_dim, int) and fusion.out_dim > 0, "out_dim must be a positive int"
    features, present = make_inputs(("face", "physio"), tokens=fusion.consumes_tokens)
    out = fusion(features, present)
    assert out.shape == (B, fusion.out_dim) and out.dtype == torch.float32


def check_builds_from_in_dims_alone(cls: type[Fusion]) -> None:
    params = list(inspect.signature(cls).parameters.values())
    assert params and params[0].name == "in_dims", "the first constructor argument must be in_dims"
    required = [p.name for p in params[1:] if p.default is inspect.Parameter.empty]
    assert not required, f"the model builds fusion(in_dims): give {required} defaults"
    fusion = cls({m: DIMS[m] for m in MODALITIES}).eval()
    features, present = make_inputs(MODALITIES, tokens=fusion.consumes_tokens)
    assert fusion(features, present).shape == (B, fusion.out_dim)


def check_absent_values_cannot_change_output(cls: type[Fusion], train: bool, garbage: str) -> None:
    fusion = build(cls, MODALITIES, dropout=0.1).train(train)
    features, present = make_inputs(MODALITIES, tokens=fusion.consumes_tokens)
    present["audio"] = torch.tensor([True, False, True, False, False, True])
    present["depth"] = torch.zeros(B, dtype=torch.bool)  # absent from the whole batch
    changed = _fill_absent(features, present, garbage)
    with torch.set_grad_enabled(train):
        torch.manual_seed(1)  # the same dropout draws in both calls
        reference = fusion(features, present)
        torch.manual_seed(1)
        out = fusion(changed, present)
    assert torch.isfinite(out).all(), "absent NaN/inf leaked into the output"
    assert torch.equal(out, reference), "absent modalities' values changed the output"


def check_gradients_reach_present_inputs_only(cls: type[Fusion]) -> None:
    modalities = ("face", "audio", "physio")
    fusion = build(cls, modalities).eval()
    features, present = make_inputs(modalities, tokens=fusion.consumes_tokens)
    present["face"][0] = True  # at least one present and one absent sample per modality
    present["audio"][1] = False
    features = {m: f.requires_grad_(True) for m, f in features.items()}
    fusion(features, present).square().sum().backward()
    for m, feat in features.items():
        grad = feat.grad if feat.grad is not None else torch.zeros_like(feat)
        assert torch.isfinite(grad).all()
        per_sample = grad.abs().flatten(1).sum(dim=1)  # (B,)
        assert torch.all(per_sample[~present[m]] == 0), f"gradient reached absent {m} samples"
        assert torch.all(per_sample[present[m]] > 0), f"no gradient reached some present {m} samples"
    assert all(torch.isfinite(p.grad).all() for p in fusion.parameters() if p.grad is not None)


def check_present_modalities_change_output(cls: type[Fusion]) -> None:
    fusion = build(cls, MODALITIES).eval()
    features, _ = make_inputs(MODALITIES, tokens=fusion.consumes_tokens)
    present = {m: torch.ones(B, dtype=torch.bool) for m in MODALITIES}
    reference = fusion(features, present)
    for m in MODALITIES:
        changed = {**features, m: features[m] + 1.0}
        out = fusion(changed, present)
        assert (out - reference).abs().amax(dim=1).min() > 1e-5, f"{m} does not change every sample's output"


def check_batch_matches_per_sample(cls: type[Fusion]) -> None:
    fusion = build(cls, MODALITIES).eval()
    features, present = make_inputs(MODALITIES, seed=3, tokens=fusion.consumes_tokens)
    batched = fusion(features, present)
    for i in range(B):
        single = fusion({m: f[i : i + 1] for m, f in features.items()}, {m: p[i : i + 1] for m, p in present.items()})
        torch.testing.assert_close(single, batched[i : i + 1], rtol=1e-4, atol=1e-5)


def check_single_present_modality(cls: type[Fusion]) -> None:
    fusion = build(cls, MODALITIES).eval()
    features, _ = make_inputs(MODALITIES, seed=5, tokens=fusion.consumes_tokens)
    # Sample b has only modality b % 4; the others hold NaN.
    present = {m: torch.tensor([i % len(MODALITIES) == j for i in range(B)]) for j, m in enumerate(MODALITIES)}
    features = _fill_absent(features, present, "nan")
    out = fusion(features, present)
    assert torch.isfinite(out).all()
    for i in range(B):
        m = MODALITIES[i % len(MODALITIES)]
        alone = fusion({m: features[m][i : i + 1]}, {m: torch.ones(1, dtype=torch.bool)})
        torch.testing.assert_close(out[i : i + 1], alone, rtol=1e-4, atol=1e-5)
        nudged = fusion({m: features[m][i : i + 1] + 1.0}, {m: torch.ones(1, dtype=torch.bool)})
        assert (nudged - alone).abs().max() > 1e-5, f"a sample with only {m} ignores it"


def check_any_subset_forward_backward(cls: type[Fusion], modalities: tuple[str, ...]) -> None:
    fusion = build(cls, modalities, dropout=0.1).train()
    features, present = make_inputs(modalities, tokens=fusion.consumes_tokens)
    out = fusion(features, present)
    assert out.shape == (B, fusion.out_dim) and torch.isfinite(out).all()
    out.square().mean().backward()
    trained = [p for p in fusion.parameters() if p.grad is not None]
    assert trained and all(torch.isfinite(p.grad).all() for p in trained)


def check_missing_key_equals_absent(cls: type[Fusion]) -> None:
    fusion = build(cls, ("face", "audio")).eval()
    features, _ = make_inputs(("face", "audio"), tokens=fusion.consumes_tokens)
    everywhere, nowhere = torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)
    only_face = fusion({"face": features["face"]}, {"face": everywhere})
    nan_audio = torch.full_like(features["audio"], float("nan"))
    with_absent_audio = fusion({"face": features["face"], "audio": nan_audio}, {"face": everywhere, "audio": nowhere})
    assert torch.equal(only_face, with_absent_audio)
    all_absent = fusion(features, {"face": nowhere, "audio": nowhere})
    assert torch.isfinite(all_absent).all()
    assert torch.allclose(all_absent, all_absent[:1].expand_as(all_absent)), "with nothing present, parameters only"


def check_refuses_bad_inputs(cls: type[Fusion]) -> None:
    with pytest.raises(ValueError, match="Unknown modality"):
        cls({"video": 4})
    fusion = build(cls, ("face",))
    vectors, present = make_inputs(("face",))
    tokens, _ = make_inputs(("face",), tokens=True)
    with pytest.raises(ValueError, match="shape"):
        fusion(vectors if fusion.consumes_tokens else tokens, present)
    with pytest.raises(ValueError, match="shape"):
        fusion({"face": torch.randn(B, 3, *([LENGTHS["face"]] if fusion.consumes_tokens else []))}, present)
    with pytest.raises(KeyError, match="present"):
        fusion(tokens if fusion.consumes_tokens else vectors, {})


def check_padding_cannot_change_output(cls: type[Fusion]) -> None:
    fusion = build(cls, ("face", "audio")).eval()
    features, _ = make_inputs(("face", "audio"), tokens=True)
    present = {m: torch.ones(B, dtype=torch.bool) for m in features}
    padding = {"audio": torch.zeros(B, LENGTHS["audio"], dtype=torch.bool)}
    padding["audio"][:, -2:] = True
    reference = fusion(features, present, padding=padding)
    changed = {**features, "audio": features["audio"].clone()}
    changed["audio"][:, -2:] = 1e3
    torch.testing.assert_close(fusion(changed, present, padding=padding), reference)
    assert not torch.allclose(fusion(changed, present), reference), "without padding the tokens must count"


def check_late_per_modality(cls: type[Fusion]) -> None:
    fusion = build(cls, ("face", "audio", "physio")).eval()
    features, present = make_inputs(("face", "audio", "physio"), seed=2)
    stacked, flags = fusion.per_modality(features, present)
    assert stacked.shape == (B, 3, fusion.out_dim) and flags.shape == (B, 3)
    expected_flags = torch.stack([present[m] for m in fusion.modalities], dim=1).float()
    assert torch.equal(flags, expected_flags)
    assert torch.all(stacked[flags == 0] == 0), "an absent modality's representation must be zeros"
    garbage_stacked, garbage_flags = fusion.per_modality(_fill_absent(features, present, "nan"), present)
    assert torch.equal(garbage_stacked, stacked) and torch.equal(garbage_flags, flags)


# ------------------------------------------------------------------------- the contract, every fusion
@EVERY_FUSION
def test_contract_shapes_out_dim_and_order(cls: type[Fusion]) -> None:
    check_shapes_and_out_dim(cls)


@EVERY_FUSION
def test_contract_builds_from_in_dims_alone(cls: type[Fusion]) -> None:
    check_builds_from_in_dims_alone(cls)


@EVERY_FUSION
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("garbage", ["random", "nan", "inf"])
def test_contract_absent_values_cannot_change_output(cls: type[Fusion], train: bool, garbage: str) -> None:
    check_absent_values_cannot_change_output(cls, train, garbage)


@EVERY_FUSION
def test_contract_gradients_reach_present_inputs_only(cls: type[Fusion]) -> None:
    check_gradients_reach_present_inputs_only(cls)


@EVERY_FUSION
def test_contract_present_modalities_change_output(cls: type[Fusion]) -> None:
    check_present_modalities_change_output(cls)


@EVERY_FUSION
def test_contract_partially_absent_batch_matches_per_sample(cls: type[Fusion]) -> None:
    check_batch_matches_per_sample(cls)


@EVERY_FUSION
def test_contract_single_present_modality(cls: type[Fusion]) -> None:
    check_single_present_modality(cls)


@EVERY_FUSION
@pytest.mark.parametrize("modalities", SUBSETS, ids="+".join)
def test_contract_any_subset_forward_backward(cls: type[Fusion], modalities: tuple[str, ...]) -> None:
    check_any_subset_forward_backward(cls, modalities)


@EVERY_FUSION
def test_contract_missing_key_equals_absent(cls: type[Fusion]) -> None:
    check_missing_key_equals_absent(cls)


@EVERY_FUSION
def test_contract_refuses_bad_inputs(cls: type[Fusion]) -> None:
    check_refuses_bad_inputs(cls)


@TOKEN_FUSIONS
def test_contract_padded_tokens_cannot_change_output(cls: type[Fusion]) -> None:
    check_padding_cannot_change_output(cls)


@LATE_FUSIONS
def test_contract_late_fusion_per_modality(cls: type[Fusion]) -> None:
    check_late_per_modality(cls)


# ------------------------------------------------------------------ discovery: what "every fusion" means
def test_every_fusion_class_of_the_package_is_exported() -> None:
    defined = set()
    for info in pkgutil.iter_modules(fusion_package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{fusion_package.__name__}.{info.name}")
        defined |= {
            name
            for name, obj in vars(module).items()
            if isinstance(obj, type) and issubclass(obj, Fusion) and obj.__module__ == module.__name__
            if not name.startswith("_")
        }
    assert defined - set(fusion_package.__all__) == set(), "export every public fusion in fusion/__init__.py"
    assert {c.__name__ for c in EXPORTED} == defined - {"Fusion"}
    assert len(EXPORTED) >= 6 and any(c.consumes_tokens for c in EXPORTED) and any(c.late for c in EXPORTED)


def test_every_exported_fusion_has_a_config() -> None:
    configs = "\n".join(p.read_text() for p in sorted((REPO / "configs").rglob("*.yaml")))
    missing = [c.__name__ for c in EXPORTED if f"class_path: multimodal_fer.models.fusion.{c.__name__}" not in configs]
    assert not missing, f"no config under configs/ selects {missing}"


# ------------------------------------------------------------ the suite can fail: broken fusions fail it
class IgnoresPresence(ToyMeanFusion):
    """Broken: averages every modality it is given, present or not, without zeroing absent rows."""

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        return torch.stack([self.proj[m](features[m]) for m in self.modalities if m in features], dim=1).mean(1)


class ZeroTimesNaN(ToyMeanFusion):
    """Broken: masks absent modalities by multiplying with the presence flag, so 0 * NaN leaks."""

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        inputs = self.masked_features(features, present)
        flags = presence_matrix(inputs)
        raw = [features.get(m, feat) for m, (feat, _) in inputs.items()]
        stacked = torch.stack([self.proj[m](x) for m, x in zip(inputs, raw, strict=True)], dim=1)
        return masked_mean(stacked * flags.unsqueeze(-1), flags)


class ReadsFirstModalityOnly(ToyMeanFusion):
    """Broken: fuses nothing; only the first modality reaches the output."""

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        inputs = self.masked_features(features, present)
        feat, mask = inputs[self.modalities[0]]
        return self.proj[self.modalities[0]](feat) * mask.unsqueeze(1)


class MixesSamples(ToyMeanFusion):
    """Broken: normalises over the batch, so one sample's output depends on the others."""

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        out = super().forward(features, present)
        return out - out.mean(dim=0, keepdim=True)


BROKEN: list[tuple[type[Fusion], Callable[[type[Fusion]], None]]] = [
    (IgnoresPresence, lambda cls: check_absent_values_cannot_change_output(cls, train=False, garbage="random")),
    (IgnoresPresence, check_gradients_reach_present_inputs_only),
    (ZeroTimesNaN, lambda cls: check_absent_values_cannot_change_output(cls, train=False, garbage="nan")),
    (ZeroTimesNaN, check_single_present_modality),
    (ReadsFirstModalityOnly, check_present_modalities_change_output),
    (ReadsFirstModalityOnly, check_gradients_reach_present_inputs_only),
    (MixesSamples, check_batch_matches_per_sample),
]


@pytest.mark.parametrize(("cls", "check"), BROKEN, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(BROKEN)])
def test_the_checks_catch_broken_fusions(cls: type[Fusion], check: Callable[[type[Fusion]], None]) -> None:
    with pytest.raises(AssertionError):
        check(cls)


def test_the_base_class_refuses_incomplete_capabilities() -> None:
    with pytest.raises(TypeError, match="per_modality"):

        class LateWithoutRepresentations(ToyMeanFusion):
            late = True

    with pytest.raises(TypeError, match="padding"):

        class TokensWithoutPadding(ToyMeanFusion):
            consumes_tokens = True

    with pytest.raises(TypeError, match="late fusion cannot consume tokens"):

        class LateTokens(LateFusion):
            consumes_tokens = True

    with pytest.raises(NotImplementedError, match="not a late fusion"):
        build(ToyMeanFusion, ("face",)).per_modality(*make_inputs(("face",)))


# ------------------------------------------------------------------------------ fusion-specific behaviour
def test_gated_weights_sum_to_one_over_present() -> None:
    fusion = build(GatedFusion, ("face", "audio")).eval()
    features, _ = make_inputs(("face", "audio"))
    only_audio = {"face": torch.zeros(B, dtype=torch.bool), "audio": torch.ones(B, dtype=torch.bool)}
    out = fusion(features, only_audio)
    # With one modality present its candidate passes through unchanged.
    torch.testing.assert_close(out, fusion.candidates["audio"](features["audio"]).tanh())


def test_late_fusion_averages_present_representations() -> None:
    fusion = build(LateFusion, ("face", "audio")).eval()
    features, present = make_inputs(("face", "audio"))
    stacked, flags = fusion.per_modality(features, present)
    out = fusion(features, present)
    for i in range(B):
        rows = [stacked[i, j] for j in range(2) if flags[i, j] > 0]
        expected = torch.stack(rows).mean(0) if rows else torch.zeros(fusion.out_dim)
        torch.testing.assert_close(out[i], expected)


def test_low_rank_matches_explicit_tensor_fusion() -> None:
    dims = {"face": 3, "audio": 2}
    fusion = LowRankFusion(dims, out_dim=4, rank=2, dropout=0.0).eval()
    features = {"face": torch.randn(B, 3), "audio": torch.randn(B, 2)}
    present = {m: torch.ones(B, dtype=torch.bool) for m in dims}
    # Explicit: Z = [x_f; 1] ⊗ [x_a; 1], weight W = Σ_r λ_r W_f^(r) ⊗ W_a^(r).
    zf = torch.cat([features["face"], torch.ones(B, 1)], 1)
    za = torch.cat([features["audio"], torch.ones(B, 1)], 1)
    z = torch.einsum("bi,bj->bij", zf, za)
    w = torch.einsum("r,rio,rjo->ijo", fusion.rank_weights, fusion.factors["face"], fusion.factors["audio"])
    expected = fusion.norm(torch.einsum("bij,ijo->bo", z, w) + fusion.bias)
    torch.testing.assert_close(fusion(features, present), expected, rtol=1e-4, atol=1e-5)


def test_mult_refuses_padding_of_the_wrong_shape() -> None:
    fusion = build(MulTFusion, ("face", "audio")).eval()
    features, _ = make_inputs(("face", "audio"), tokens=True)
    present = {m: torch.ones(B, dtype=torch.bool) for m in features}
    with pytest.raises(ValueError, match="padding"):
        fusion(features, present, {"audio": torch.zeros(B, 2, dtype=torch.bool)})


def test_attention_needs_heads_that_divide_the_width() -> None:
    with pytest.raises(ValueError, match="divisible"):
        AttentionFusion({"face": 4}, d_model=10, num_heads=4)
    with pytest.raises(ValueError, match="divisible"):
        MulTFusion({"face": 4}, d_model=10, num_heads=4)


def test_attention_masks_absent_tokens_instead_of_attending_to_zeros() -> None:
    both = build(AttentionFusion, ("face", "audio")).eval()
    face_only = build(AttentionFusion, ("face",)).eval()
    face_only.load_state_dict({k: v for k, v in both.state_dict().items() if "audio" not in k})
    features, _ = make_inputs(("face", "audio"))
    everywhere, nowhere = torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)
    reference = face_only({"face": features["face"]}, {"face": everywhere})
    torch.testing.assert_close(both(features, {"face": everywhere, "audio": nowhere}), reference)
    assert not torch.allclose(both(features, {"face": everywhere, "audio": everywhere}), reference)
