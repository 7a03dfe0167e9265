import inspect
from collections.abc import Callable, Mapping
from functools import partial

import pytest
import torch

import multimodal_fer.models.fusion as fusion_package
from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_LABEL_SPACE
from multimodal_fer.models.encoders import AudioMelCNN, DepthCNN, FaceCNN, ModalityEncoders, PhysioCNN
from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.models.fusion import (
    AttentionFusion,
    Fusion,
    LateFusion,
    MulTFusion,
)
from multimodal_fer.models.heads import MultitaskHeads
from multimodal_fer.models.multimodal import MultimodalFERModel, MultimodalOutput
from multimodal_fer.types import LabelSpace

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
    out = model(_inputs(), present).heads
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
    # The older list form still works: each encoder is placed by the modality it reads, whatever its position.
    model = MultimodalFERModel([encoders["physio"], encoders["face"]], AttentionFusion, space).eval()
    assert model.modalities == ("face", "physio")
    inputs = _inputs()
    ones = torch.ones(B, dtype=torch.bool)
    out = model({"face": inputs["face"], "physio": inputs["physio"]}, {"face": ones, "physio": ones}).heads
    assert set(out) == {"expr", "va"} and out["expr"].shape == (B, 3) and out["va"].shape == (B, 3)
    # Physio missing from the inputs = absent for every sample = absent with garbage data.
    only_face = model({"face": inputs["face"]}, {"face": ones}).heads
    garbage = model(
        {"face": inputs["face"], "physio": torch.full((B, 3, 128), float("nan"))},
        {"face": ones, "physio": torch.zeros(B, dtype=torch.bool)},
    ).heads
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
    reference = model({"face": x}, present).heads["expr"]
    x2 = x.clone()
    x2[~present["face"]] = float("nan")
    out = model({"face": x2}, present).heads["expr"]
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
    encoders = ModalityEncoders(face=FaceCNN(), audio=AudioMelCNN(), depth=DepthCNN(), physio=PhysioCNN())
    model = MultimodalFERModel(encoders, AttentionFusion, SYNTHAFFECT_LABEL_SPACE)
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) > 1_000_000


def test_feature_norm_handles_single_present_sample_in_training():
    import torch

    from multimodal_fer.models.feature_norm import FeatureNorm

    norm = FeatureNorm(4).train()
    out = norm(torch.randn(1, 4))
    assert out.shape == (1, 4) and torch.isfinite(out).all()
    batch = norm(torch.randn(8, 4) * 5 + 3)
    assert torch.allclose(batch.mean(0), torch.zeros(4), atol=1e-5)


# ------------------------------------------------------------------ fusion zoo, modality dropout, missing tokens
#: Every fusion the package exports (tests/test_fusion.py checks each one's contract on its own).
EXPORTED_FUSIONS = [
    cls
    for name in fusion_package.__all__
    if isinstance(cls := getattr(fusion_package, name), type) and issubclass(cls, Fusion) and cls is not Fusion
]
#: Small sizes for the constructor arguments of these names, where a fusion has them; others keep their defaults.
SMALL_SIZES = {"d_model": 16, "num_heads": 2, "num_layers": 1, "self_layers": 1, "hidden_dim": 16, "out_dim": 16}


def _small(fusion: type[Fusion]) -> Callable[[Mapping[str, int]], Fusion]:
    """A builder the model calls as ``builder(in_dims)``, like a config's ``class_path`` with ``init_args``."""
    accepted = inspect.signature(fusion).parameters
    return partial(fusion, **{k: v for k, v in SMALL_SIZES.items() if k in accepted})


SMALL_LATE = partial(LateFusion, out_dim=16)
SMALL_MULT = partial(MulTFusion, d_model=8, num_heads=2, num_layers=1, self_layers=1, out_dim=16)


@pytest.mark.parametrize("fusion", EXPORTED_FUSIONS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("missing_tokens", [False, True])
def test_every_fusion_in_the_model_forward_backward(fusion: type[Fusion], missing_tokens: bool) -> None:
    torch.manual_seed(0)
    space = SYNTHAFFECT_LABEL_SPACE
    model = MultimodalFERModel(_encoders(), _small(fusion), space, modality_dropout=0.3, missing_tokens=missing_tokens)
    assert isinstance(model.fusion, fusion)
    if fusion.consumes_tokens:  # token fusions get each encoder's token size and real token sequences
        assert model.uses_tokens
        assert model.fusion.in_dims == {"face": 24, "audio": 16, "depth": 8, "physio": 12}
    present = {m: torch.tensor([True, True, False, True]) for m in model.modalities}
    present["audio"] = torch.zeros(B, dtype=torch.bool)
    out = model(_inputs(), present).heads
    assert out["expr"].shape == (B, space.num_expressions) and torch.isfinite(out["expr"]).all()
    sum(o.square().mean() for o in out.values()).backward()
    encoder_grads = [p.grad for m in ("face", "depth", "physio") for p in model.encoders[m].parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in encoder_grads)
    if missing_tokens:
        assert model.missing_tokens["audio"].grad is not None and model.missing_tokens["audio"].grad.abs().sum() > 0
    # Absent modalities' values cannot change the output in eval mode, whatever they hold.
    model.eval()
    inputs = _inputs()
    reference = model(inputs, present).heads
    inputs["audio"] = torch.full_like(inputs["audio"], float("nan"))
    inputs["face"][2] = float("inf")
    torch.testing.assert_close(model(inputs, present).heads, reference)


def test_mult_reads_encoder_token_sequences() -> None:
    encoders = _encoders()
    inputs = _inputs()
    lengths = {m: encoders[m].forward_tokens(inputs[m]).shape for m in encoders}
    assert lengths["face"] == (B, 64, 24)  # 32 px crops, two stages: an 8 × 8 map
    assert all(shape[0] == B and shape[2] == encoders[m].token_dim for m, shape in lengths.items())
    assert all(shape[1] > 1 for shape in lengths.values())  # real sequences, not one pooled token
    for m, encoder in encoders.items():  # the tokens' mean is the pooled feature vector
        torch.testing.assert_close(encoder.forward_tokens(inputs[m]).mean(1), encoder(inputs[m]), rtol=1e-4, atol=1e-5)


def test_late_fusion_model_averages_per_modality_heads() -> None:
    torch.manual_seed(0)
    space = LabelSpace(expressions=("a", "b", "c"), dimensions=("valence", "arousal"))
    encoders = _encoders()
    model = MultimodalFERModel({"face": encoders["face"], "physio": encoders["physio"]}, SMALL_LATE, space).eval()
    assert set(model.modality_heads) == {"face", "physio"} and not hasattr(model, "heads")
    inputs = {"face": _inputs()["face"], "physio": _inputs()["physio"]}
    present = {"face": torch.tensor([True, True, False, False]), "physio": torch.tensor([True, False, True, False])}
    out = model(inputs, present).heads
    features = model.encode(inputs, present)
    stacked, _ = model.fusion.per_modality(features, present)
    face = model.modality_heads["face"](stacked[:, 0])
    physio = model.modality_heads["physio"](stacked[:, 1])
    torch.testing.assert_close(out["expr"][0], (face["expr"][0] + physio["expr"][0]) / 2)
    torch.testing.assert_close(out["expr"][1], face["expr"][1])
    torch.testing.assert_close(out["va"][2], physio["va"][2])
    assert torch.equal(out["expr"][3], torch.zeros(3))  # nothing present: no evidence, zero logits


def test_modality_dropout_hides_modalities_but_never_all() -> None:
    torch.manual_seed(0)
    model = MultimodalFERModel(_encoders(), AttentionFusion, SYNTHAFFECT_LABEL_SPACE, modality_dropout=0.6)
    n = 2000
    masks = {m: torch.rand(n) > 0.2 for m in model.modalities}
    masks["physio"][:10] = False
    dropped = model.drop_modalities(masks)
    before = torch.stack(list(masks.values()), 1)
    after = torch.stack(list(dropped.values()), 1)
    assert not (after & ~before).any()  # dropout only hides, never invents
    assert torch.equal(after.any(1), before.any(1))  # every sample keeps a modality if it had one
    rate = 1 - after.sum() / before.sum()
    assert 0.45 < rate < 0.6  # 0.6 minus the rescued samples
    per_modality = MultimodalFERModel(
        _encoders(), AttentionFusion, SYNTHAFFECT_LABEL_SPACE, modality_dropout={"audio": 0.5}
    )
    kept = per_modality.drop_modalities({m: torch.ones(n, dtype=torch.bool) for m in model.modalities})
    assert kept["face"].all() and kept["depth"].all() and 0.4 < kept["audio"].float().mean() < 0.6


def test_modality_dropout_only_in_training_and_validated() -> None:
    torch.manual_seed(0)
    model = MultimodalFERModel(_encoders(), AttentionFusion, SYNTHAFFECT_LABEL_SPACE, modality_dropout=0.9).eval()
    ones = {m: torch.ones(B, dtype=torch.bool) for m in model.modalities}
    inputs = _inputs()
    first, second = model(inputs, ones).heads, model(inputs, ones).heads
    torch.testing.assert_close(first, second)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        MultimodalFERModel(_encoders(), AttentionFusion, SYNTHAFFECT_LABEL_SPACE, modality_dropout=1.0)
    with pytest.raises(ValueError, match="no encoder"):
        MultimodalFERModel(
            {"face": _encoders()["face"]}, AttentionFusion, SYNTHAFFECT_LABEL_SPACE, modality_dropout={"audio": 0.2}
        )


def test_missing_tokens_stand_in_for_absent_modalities() -> None:
    torch.manual_seed(0)
    space = LabelSpace(expressions=("a", "b"))
    encoders = _encoders()
    model = MultimodalFERModel(
        {"face": encoders["face"], "audio": encoders["audio"]}, AttentionFusion, space, missing_tokens=True
    ).eval()
    inputs = {"face": _inputs()["face"], "audio": _inputs()["audio"]}
    ones, none = torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)
    reference = model(inputs, {"face": ones, "audio": none}).heads
    # Changing the learned token changes the prediction of samples missing audio; audio's values do not.
    torch.testing.assert_close(model({"face": inputs["face"]}, {"face": ones}).heads, reference)
    with torch.no_grad():
        model.missing_tokens["audio"].add_(1.0)
    assert not torch.allclose(model(inputs, {"face": ones, "audio": none}).heads["expr"], reference["expr"])
    # Every missing token takes part in the graph even when nothing is missing (DDP without unused params).
    model.train()
    model(inputs, {"face": ones, "audio": ones}).heads["expr"].sum().backward()
    assert all(token.grad is not None for token in model.missing_tokens.values())


class _LengthAwareAudio(Encoder):
    """Test encoder: mean of the valid samples of variable-length audio; tokens of 100 samples with padding."""

    modality = "audio"
    side_inputs = ("audio_lengths",)

    def __init__(self) -> None:
        super().__init__(out_dim=4)
        self.fc = torch.nn.Linear(1, 4)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        self.seen.append(audio_lengths)
        valid = torch.arange(x.shape[1]) < audio_lengths.unsqueeze(1)
        return self.fc(((x * valid).sum(1) / audio_lengths).unsqueeze(1))

    def forward_tokens(self, x: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append(audio_lengths)
        tokens = self.fc(x.view(x.shape[0], -1, 100).mean(-1, keepdim=True))  # (B, T, 4)
        padding = torch.arange(tokens.shape[1]) * 100 >= audio_lengths.unsqueeze(1)
        return tokens, padding


@pytest.mark.parametrize("fusion", [partial(AttentionFusion, d_model=8, num_heads=2), SMALL_MULT])
def test_side_inputs_reach_encoders_and_padding_reaches_token_fusions(fusion) -> None:
    torch.manual_seed(0)
    audio = _LengthAwareAudio()
    model = MultimodalFERModel({"audio": audio, "face": _encoders()["face"]}, fusion, LabelSpace(("a", "b"))).eval()
    assert model.side_inputs() == ("audio_lengths",)
    lengths = torch.tensor([400, 250, 120, 400])
    waveform = torch.randn(B, 400)
    present = {"audio": torch.tensor([True, True, False, True]), "face": torch.ones(B, dtype=torch.bool)}
    inputs = {"audio": waveform, "audio_lengths": lengths, "face": _inputs()["face"]}
    reference = model(inputs, present).heads
    assert torch.equal(audio.seen[-1], lengths[present["audio"]])  # sliced to the present samples
    # Samples beyond each length are padding: changing them cannot change the output.
    changed = waveform.clone()
    changed[1, 300:] = 1e3
    torch.testing.assert_close(model({**inputs, "audio": changed}, present).heads, reference)


def test_the_output_carries_fused_features_and_presence_and_nothing_stays_on_the_model() -> None:
    torch.manual_seed(0)
    space = LabelSpace(expressions=("a", "b", "c"), dimensions=("valence", "arousal"))
    encoders = _encoders()
    fusion = partial(AttentionFusion, d_model=16, num_heads=2, dropout=0.0)
    model = MultimodalFERModel(
        {"face": encoders["face"], "physio": encoders["physio"]}, fusion, space, head_dropout=0.0, modality_dropout=0.9
    ).train()
    inputs = {"face": _inputs()["face"], "physio": _inputs()["physio"]}
    present = {"face": torch.tensor([True, False, True, True]), "physio": torch.ones(B, dtype=torch.bool)}
    output = model(inputs, present)
    assert isinstance(output, MultimodalOutput)
    torch.testing.assert_close(model.heads(output.fused), output.heads)  # the heads read the fused features
    assert output.fused.shape == (B, 16)
    for m in ("face", "physio"):  # presence before modality dropout (0.9 hides most of them from the fusion)
        assert torch.equal(output.present[m], present[m])
    assert output.features["face"].shape == (B, 24) and not output.features["face"][1].any()  # absent row: zeros
    assert output.auxiliary_losses == {} and output.unimodal == {}
    assert not hasattr(model, "auxiliary_losses") and not hasattr(model, "unimodal_outputs")
    model.eval()
    torch.testing.assert_close(model(inputs, present).features, model.encode(inputs, present))
    late = MultimodalFERModel({"face": encoders["face"]}, SMALL_LATE, space).eval()
    late_output = late({"face": inputs["face"]}, {"face": present["face"]})
    assert late_output.fused is None and late_output.heads["expr"].shape == (B, 3)
