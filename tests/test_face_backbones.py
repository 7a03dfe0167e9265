"""FaceBackbone (timm backbones by name) and FaceClipEncoder (dynamic FER over clips)."""

import socket
from functools import partial
from pathlib import Path

import pytest
import timm
import torch
import yaml

from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_LABEL_SPACE
from multimodal_fer.errors import DataError
from multimodal_fer.models.encoders import FaceBackbone, FaceClipEncoder, FaceCNN, PhysioCNN
from multimodal_fer.models.fusion import AttentionFusion, MulTFusion
from multimodal_fer.models.multimodal import MultimodalFERModel
from multimodal_fer.models.restoration import RESTORER_CHECKPOINT_KEY, FaceRestorer, PretrainedRestorer

from conftest import CONFIGS

#: Face presets with a single-image timm backbone; the clip presets (face_clip_*) wrap a frame encoder instead.
PRESETS = sorted(p for p in (CONFIGS / "encoders").glob("face_*.yaml") if not p.stem.startswith("face_clip"))
CLIP_PRESETS = sorted((CONFIGS / "encoders").glob("face_clip_*.yaml"))


def _preset_args(path: Path) -> dict:
    """init_args of the FaceBackbone entry of an encoder preset."""
    encoders = yaml.safe_load(path.read_text())["model"]["init_args"]["encoders"]
    assert list(encoders) == ["face"] and encoders["face"]["class_path"].endswith(".FaceBackbone")
    return dict(encoders["face"]["init_args"])


#: Every backbone preset plus a ViT at 64 px: (init_args, tokens of a 64-px face).
BACKBONES = [pytest.param(_preset_args(p), 4, id=p.stem) for p in PRESETS] + [
    pytest.param({"backbone": "vit_tiny_patch16_224", "img_size": 64, "out_dim": 32}, 16, id="vit_tiny_64px")
]


def _all_grads_finite(module: torch.nn.Module) -> None:
    for name, p in module.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} has no gradient"
            assert torch.isfinite(p.grad).all(), name


# ------------------------------------------------------------------------------------------------ FaceBackbone
def test_presets_exist() -> None:
    assert {p.stem for p in PRESETS} >= {"face_resnet18", "face_convnext_atto"}


@pytest.mark.parametrize(("args", "num_tokens"), BACKBONES)
def test_backbone_forward_backward_and_tokens(args: dict, num_tokens: int) -> None:
    torch.manual_seed(0)
    encoder = FaceBackbone(**args)
    out_dim = args["out_dim"]
    assert encoder.modality == "face" and encoder.out_dim == encoder.token_dim == out_dim
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    y = encoder(x)
    assert y.shape == (2, out_dim) and torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    _all_grads_finite(encoder)
    encoder.zero_grad()
    tokens = encoder.forward_tokens(x)
    assert tokens.shape == (2, num_tokens, out_dim)
    tokens.square().mean().backward()  # token mode also reaches every parameter
    _all_grads_finite(encoder)
    encoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder.forward_tokens(x).mean(dim=1), encoder(x), atol=1e-5, rtol=1e-5)


def test_channels_last_gives_the_same_output() -> None:
    torch.manual_seed(0)
    encoder = FaceBackbone("resnet18", out_dim=8).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = encoder(x)
        encoder = encoder.to(memory_format=torch.channels_last)
        fast = encoder(x.contiguous(memory_format=torch.channels_last))
        tokens = encoder.forward_tokens(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tokens.mean(dim=1), plain, atol=1e-5, rtol=1e-5)


def test_vit_refuses_another_image_size_with_the_fix() -> None:
    encoder = FaceBackbone("vit_tiny_patch16_224", img_size=64, out_dim=8)
    with pytest.raises(DataError, match="built for 64×64 faces but receives 32×32; set img_size: 32"):
        encoder(torch.randn(1, 3, 32, 32))
    with pytest.raises(DataError, match=r"\(B, 3, H, W\)"):
        encoder(torch.randn(1, 64, 64))


def test_unknown_backbone_lists_close_matches() -> None:
    with pytest.raises(ValueError, match="timm has no backbone named 'resnt18'.*Close matches: resnet18"):
        FaceBackbone("resnt18")
    with pytest.raises(ValueError, match="vit_tiny_patch16_224"):
        FaceBackbone("vit_tinny")


def test_building_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    FaceBackbone("convnext_atto", out_dim=8)
    FaceBackbone("vit_tiny_patch16_224", img_size=64, out_dim=8)


def _saved(path: Path, content: object) -> str:
    torch.save(content, path)
    return str(path)


@pytest.mark.parametrize("layout", ["backbone", "encoder", "lightning", "timm_with_head", "safetensors"])
def test_pretrained_path_round_trip(layout: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = FaceBackbone("resnet18", out_dim=8).eval()
    weights = source.backbone.state_dict()
    if layout == "backbone":
        path = _saved(tmp_path / "w.pth", weights)
    elif layout == "encoder":  # the encoder's own state dict: prefix "backbone.", its projection ignored
        path = _saved(tmp_path / "w.pth", source.state_dict())
    elif layout == "lightning":  # a task checkpoint: nested under state_dict with the model's prefix, other parts
        nested = {f"model.encoders.face.backbone.{k}": v for k, v in weights.items()}
        nested["model.encoders.audio.fc.weight"] = torch.zeros(3, 3)
        path = _saved(tmp_path / "w.ckpt", {"epoch": 3, "state_dict": nested})
    elif layout == "timm_with_head":  # a classification model: its classifier (fc) is ignored
        full = timm.create_model("resnet18", pretrained=False, num_classes=7)
        full.load_state_dict({**weights, **{k: v for k, v in full.state_dict().items() if k.startswith("fc.")}})
        path = _saved(tmp_path / "w.pth", {"model": full.state_dict()})
    else:
        from safetensors.torch import save_file

        path = str(tmp_path / "w.safetensors")
        save_file({k: v.contiguous() for k, v in weights.items()}, path)
    torch.manual_seed(1)  # another initialisation, overwritten by the file
    loaded = FaceBackbone("resnet18", out_dim=8, pretrained_path=path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.feature_tokens(x), source.feature_tokens(x))
        fresh = FaceBackbone("resnet18", out_dim=8).eval()
        assert not torch.allclose(fresh.feature_tokens(x), source.feature_tokens(x))
    loaded.proj.load_state_dict(source.proj.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x))


def test_pretrained_path_refuses_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist.*nothing is downloaded"):
        FaceBackbone("resnet18", pretrained_path=str(tmp_path / "nope.pth"))


def test_pretrained_path_refuses_weights_of_another_backbone(tmp_path: Path) -> None:
    other = timm.create_model("convnext_atto", pretrained=False, num_classes=0).state_dict()
    with pytest.raises(DataError, match="None of the .* weights .* belongs to this backbone"):
        FaceBackbone("resnet18", pretrained_path=_saved(tmp_path / "c.pth", other))
    deeper = timm.create_model("resnet34", pretrained=False, num_classes=0).state_dict()
    with pytest.raises(DataError, match=r"do not fit this backbone — unexpected \d+: 'layer1\.2\."):
        FaceBackbone("resnet18", pretrained_path=_saved(tmp_path / "r34.pth", deeper))


def test_pretrained_path_names_missing_and_misshaped_weights(tmp_path: Path) -> None:
    weights = FaceBackbone("resnet18", out_dim=8).backbone.state_dict()
    del weights["layer4.1.bn2.bias"]
    weights["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    message = (
        r"missing 1: 'layer4\.1\.bn2\.bias'; "
        r"wrong shape 1: 'conv1\.weight' \(64, 1, 7, 7\) \(backbone: \(64, 3, 7, 7\)\)"
    )
    with pytest.raises(DataError, match=message):
        FaceBackbone("resnet18", pretrained_path=_saved(tmp_path / "w.pth", weights))
    with pytest.raises(DataError, match="holds no state dict"):
        FaceBackbone("resnet18", pretrained_path=_saved(tmp_path / "list.pth", [1, 2]))


def test_restorer_runs_before_the_backbone_and_stays_frozen(tmp_path: Path) -> None:
    torch.manual_seed(0)
    restorer = FaceRestorer()
    restorer.image_size.fill_(32)
    checkpoint = _saved(tmp_path / "restorer.ckpt", {RESTORER_CHECKPOINT_KEY: restorer.export()})
    encoder = FaceBackbone("resnet18", out_dim=8, restorer=PretrainedRestorer(checkpoint=checkpoint, finetune=False))
    calls = []
    encoder.restorer.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    x = torch.randn(2, 3, 32, 32)
    encoder(x).sum().backward()
    tokens = encoder.forward_tokens(x)
    assert calls == [(2, 3, 32, 32), (2, 3, 32, 32)] and tokens.shape == (2, 1, 8)
    assert all(p.grad is None for p in encoder.restorer.parameters())
    assert encoder.backbone.conv1.weight.grad is not None
    encoder.train()
    assert not encoder.restorer.restorer.training  # frozen: batch-norm statistics stay fixed
    with pytest.raises(DataError, match="trained on 32×32 faces"):
        encoder(torch.randn(2, 3, 64, 64))


# -------------------------------------------------------------------------------------------- FaceClipEncoder
def _clip_encoder(temporal: str = "transformer", **kwargs: object) -> FaceClipEncoder:
    frame = FaceCNN(out_dim=12, widths=(4, 8))
    return FaceClipEncoder(frame, out_dim=10, temporal=temporal, d_model=16, num_heads=2, **kwargs)


CLIP_VARIANTS = [
    pytest.param({"temporal": "transformer", "pooling": "cls", "positions": "learned", "max_frames": 8}, id="tf_cls"),
    pytest.param({"temporal": "transformer", "pooling": "mean", "positions": "sinusoidal"}, id="tf_mean"),
    pytest.param({"temporal": "tcn", "num_layers": 3, "kernel_size": 3}, id="tcn"),
]


@pytest.mark.parametrize("variant", CLIP_VARIANTS)
def test_clip_encoder_forward_backward(variant: dict) -> None:
    torch.manual_seed(0)
    encoder = _clip_encoder(**variant)
    assert encoder.modality == "face" and encoder.side_inputs == ("face_clip_lengths",)
    x = torch.randn(3, 5, 3, 32, 32, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])
    y = encoder(x, face_clip_lengths=lengths)
    assert y.shape == (3, 10) and torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad[1, 2:].abs().max() == 0  # padded frames get no gradient: they are never read
    _all_grads_finite(encoder)
    tokens, padding = encoder.forward_tokens(x, face_clip_lengths=lengths)
    assert tokens.shape == (3, 5, 10)
    assert padding.tolist() == [[False] * 5, [False, False, True, True, True], [False] * 4 + [True]]
    assert tokens[padding].abs().max() == 0
    tokens.sum().backward()
    no_lengths, none_padded = encoder.forward_tokens(x)
    assert no_lengths.shape == (3, 5, 10) and not none_padded.any()


@pytest.mark.parametrize("variant", CLIP_VARIANTS)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_frames_beyond_a_clip_cannot_change_the_output(variant: dict, training: bool) -> None:
    torch.manual_seed(0)
    encoder = _clip_encoder(**variant).train(training)
    x = torch.randn(3, 6, 3, 32, 32)
    lengths = torch.tensor([6, 2, 4])
    changed = x.clone()
    changed[1, 2:] = torch.randn(4, 3, 32, 32) * 100
    changed[2, 4:] = float("nan")
    outputs = []
    for clips in (x, changed):
        torch.manual_seed(1)  # the same dropout masks in training mode
        vector = encoder(clips, face_clip_lengths=lengths)
        torch.manual_seed(1)
        tokens, _ = encoder.forward_tokens(clips, face_clip_lengths=lengths)
        outputs.append((vector, tokens))
    torch.testing.assert_close(outputs[1][0], outputs[0][0])
    torch.testing.assert_close(outputs[1][1], outputs[0][1])
    if variant.get("pooling") == "mean" or variant["temporal"] == "tcn":
        valid = torch.arange(6) < lengths.unsqueeze(1)
        means = (outputs[0][1] * valid.unsqueeze(-1)).sum(1) / lengths.unsqueeze(1)
        torch.testing.assert_close(means, outputs[0][0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", CLIP_VARIANTS)
def test_padded_clip_gives_the_output_of_the_clip_alone(variant: dict) -> None:
    torch.manual_seed(0)
    encoder = _clip_encoder(**variant).eval()
    x = torch.randn(2, 6, 3, 32, 32)
    with torch.no_grad():
        padded = encoder(x, face_clip_lengths=torch.tensor([6, 3]))
        alone = encoder(x[1:, :3])
    torch.testing.assert_close(padded[1:], alone, atol=1e-5, rtol=1e-5)


def test_clip_encoder_refuses_bad_input() -> None:
    encoder = _clip_encoder()
    x = torch.randn(2, 4, 3, 32, 32)
    with pytest.raises(DataError, match="between 1 and 4 frames"):
        encoder(x, face_clip_lengths=torch.tensor([0, 4]))
    with pytest.raises(DataError, match="between 1 and 4 frames"):
        encoder(x, face_clip_lengths=torch.tensor([5, 4]))
    with pytest.raises(DataError, match="integer tensor of shape"):
        encoder(x, face_clip_lengths=torch.tensor([2.0, 4.0]))
    with pytest.raises(DataError, match=r"\(B, T, 3, H, W\)"):
        encoder(torch.randn(2, 3, 32, 32))
    with pytest.raises(DataError, match="max_frames=8"):
        _clip_encoder(positions="learned", max_frames=8)(torch.randn(1, 9, 3, 32, 32))
    with pytest.raises(ValueError, match="pooling='cls' needs temporal='transformer'"):
        _clip_encoder(temporal="tcn", pooling="cls")
    with pytest.raises(ValueError, match="needs a face encoder"):
        FaceClipEncoder(PhysioCNN(in_channels=2, out_dim=8, widths=(4,)))


# ------------------------------------------------------------------------------------ inside the full model
FUSIONS = [
    pytest.param(partial(AttentionFusion, d_model=16, num_heads=2), id="attention"),
    pytest.param(partial(MulTFusion, d_model=16, num_heads=2, num_layers=1, out_dim=16), id="mult"),
]


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("temporal", ["transformer", "tcn"])
def test_clip_encoder_inside_the_multimodal_model(fusion: partial, temporal: str) -> None:
    torch.manual_seed(0)
    encoders = {"face": _clip_encoder(temporal), "physio": PhysioCNN(in_channels=2, out_dim=8, widths=(4,))}
    model = MultimodalFERModel(encoders, fusion, SYNTHAFFECT_LABEL_SPACE)
    assert model.side_inputs() == ("face_clip_lengths",)
    inputs = {
        "face": torch.randn(4, 5, 3, 32, 32),
        "face_clip_lengths": torch.tensor([5, 1, 3, 4]),
        "physio": torch.randn(4, 2, 64),
    }
    present = {"face": torch.tensor([True, True, False, True]), "physio": torch.ones(4, dtype=torch.bool)}
    out = model(inputs, present).heads
    assert out["expr"].shape == (4, SYNTHAFFECT_LABEL_SPACE.num_expressions)
    sum(o.sum() for o in out.values()).backward()
    assert all(p.grad is not None for p in model.encoders["face"].parameters())
    model.eval()
    changed = dict(inputs, face=inputs["face"].clone())
    changed["face"][1, 1:] = float("nan")  # beyond clip 1's single frame
    changed["face"][2] = float("nan")  # clip 2 is absent
    with torch.no_grad():
        before, after = model(inputs, present).heads, model(changed, present).heads
    for task in before:
        torch.testing.assert_close(after[task], before[task])


@pytest.mark.parametrize("fusion", FUSIONS)
def test_face_backbone_inside_the_multimodal_model(fusion: partial) -> None:
    torch.manual_seed(0)
    encoders = {
        "face": FaceBackbone("resnet18", out_dim=16),
        "physio": PhysioCNN(in_channels=2, out_dim=8, widths=(4,)),
    }
    model = MultimodalFERModel(encoders, fusion, SYNTHAFFECT_LABEL_SPACE)
    inputs = {"face": torch.randn(3, 3, 64, 64), "physio": torch.randn(3, 2, 64)}
    present = {"face": torch.tensor([True, False, True]), "physio": torch.ones(3, dtype=torch.bool)}
    out = model(inputs, present).heads
    sum(o.sum() for o in out.values()).backward()
    assert all(p.grad is not None for p in model.encoders["face"].parameters())


def test_clip_encoder_takes_a_timm_frame_encoder() -> None:
    torch.manual_seed(0)
    frame = FaceBackbone("vit_tiny_patch16_224", img_size=32, out_dim=12)
    encoder = FaceClipEncoder(frame, out_dim=6, temporal="tcn", d_model=8)
    encoder(torch.randn(2, 3, 3, 32, 32), face_clip_lengths=torch.tensor([3, 2])).sum().backward()
    assert frame.proj.weight.grad is not None


def test_clip_encoder_is_configurable_like_the_cli_does() -> None:
    from jsonargparse import ArgumentParser

    from multimodal_fer.models.encoders import Encoder

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--encoder", type=Encoder)
    config = parser.parse_object(
        {
            "encoder": {
                "class_path": "multimodal_fer.models.encoders.FaceClipEncoder",
                "init_args": {
                    "frame_encoder": {
                        "class_path": "multimodal_fer.models.encoders.FaceBackbone",
                        "init_args": {"backbone": "resnet18", "out_dim": 16},
                    },
                    "temporal": "tcn",
                    "out_dim": 8,
                },
            }
        }
    )
    encoder = parser.instantiate_classes(config).encoder
    assert isinstance(encoder, FaceClipEncoder) and isinstance(encoder.frame_encoder, FaceBackbone)
    assert encoder.temporal == "tcn" and encoder.out_dim == 8


@pytest.mark.parametrize("config", CLIP_PRESETS, ids=lambda p: p.stem)
def test_clip_presets_build_and_train_on_clips(config: Path) -> None:
    """Each clip preset's face encoder from its config, on 8-frame 64-px clips (the fit runs in test_cli)."""
    from jsonargparse import ArgumentParser

    from multimodal_fer.models.encoders import Encoder

    settings = yaml.safe_load(config.read_text())
    data = settings["data"]["init_args"]
    assert data["face_clip"] is True and data["clip_frames"] >= 3
    assert data["root"] != "data/synthaffect"  # never the still-face cache
    entry = settings["model"]["init_args"]["encoders"]["face"]
    assert entry["class_path"].endswith(".FaceClipEncoder")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--encoder", type=Encoder)
    encoder = parser.instantiate_classes(parser.parse_object({"encoder": entry})).encoder
    assert isinstance(encoder, FaceClipEncoder) and encoder.modality == "face"
    torch.manual_seed(0)
    clips = torch.randn(2, data["clip_frames"], 3, 64, 64)
    encoder(clips).square().mean().backward()
    _all_grads_finite(encoder)
