"""Self-supervised speech encoders (wav2vec 2.0, HuBERT, WavLM), ViT/DINOv2 face backbones on local weights, presets."""

import re
from pathlib import Path

import pytest
import timm
import torch
import torchaudio
import yaml
from safetensors.torch import save_file

from multimodal_fer.cli import main
from multimodal_fer.errors import DataError
from multimodal_fer.models.encoders import AudioSSLEncoder, FaceBackbone
from multimodal_fer.models.encoders.audio_ssl import (
    ARCHITECTURES,
    CONV_CHANNELS,
    POS_CONV_GROUPS,
    POS_CONV_KERNEL,
    build_speech_model,
)
from multimodal_fer.models.encoders.audio_ssl_weights import detect_format

from conftest import CONFIGS, tiny_data_args, tiny_trainer_args

#: Small sizes of every architecture (the released sizes take seconds to build and save on a CPU).
TINY = {
    "embed_dim": 32,
    "num_layers": 2,
    "num_heads": 2,
    "ff_dim": 64,
    "conv_channels": 16,
    "pos_conv_kernel": 8,
    "pos_conv_groups": 4,
}
#: One post-norm (base) and one pre-norm (large) architecture of each family's kind, WavLM with both.
FAMILIES = ["wav2vec2_base", "hubert_large", "wavlm_base", "wavlm_large"]
#: A small DINOv2-style ViT (timm's vit_small_patch14_dinov2 with fewer, narrower blocks).
SMALL_VIT = {"depth": 2, "embed_dim": 48, "num_heads": 2}
PRESETS = sorted((CONFIGS / "encoders" / "pretrained").glob("*.yaml"))


def _tiny(architecture: str, seed: int = 0, **options) -> AudioSSLEncoder:
    torch.manual_seed(seed)
    return AudioSSLEncoder(architecture, **{"out_dim": 8, "freeze": "none", "dropout": 0.0, **TINY, **options})


def _waveform(batch: int = 3, samples: int = 8000) -> torch.Tensor:
    return torch.rand(batch, samples, generator=torch.Generator().manual_seed(1)) * 2 - 1


# ------------------------------------------------------------------------------------- other naming schemes
def _to_huggingface(state: dict[str, torch.Tensor], wavlm: bool, prefix: str = "") -> dict[str, torch.Tensor]:
    """A torchaudio state dict renamed as Hugging Face's Wav2Vec2Model / HubertModel / WavLMModel saves it."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.replace("encoder.feature_projection.", "feature_projection.").replace(
            "encoder.transformer.", "encoder."
        )
        key = key.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        )
        if wavlm and ".attention.attention.in_proj_" in key:
            kind = key.rsplit("_", 1)[-1]
            for name, part in zip("qkv", value.chunk(3), strict=True):
                out[prefix + key.replace(f"attention.attention.in_proj_{kind}", f"attention.{name}_proj.{kind}")] = part
            continue
        out[prefix + key.replace(".attention.attention.out_proj.", ".attention.out_proj.")] = value
    out[prefix + "masked_spec_embed"] = torch.zeros(state["encoder.feature_projection.projection.bias"].shape)
    return out


def _to_fairseq(state: dict[str, torch.Tensor], layer_norm_extractor: bool) -> dict[str, torch.Tensor]:
    """A torchaudio wav2vec 2.0 / HuBERT state dict renamed as fairseq's models name their weights."""
    rules = [
        (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
        (r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_extractor.conv_layers.\1.2.1.")
        if layer_norm_extractor
        else (r"^feature_extractor\.conv_layers\.0\.layer_norm\.", r"feature_extractor.conv_layers.0.2."),
        (r"^encoder\.feature_projection\.layer_norm\.", "layer_norm."),
        (r"^encoder\.feature_projection\.projection\.", "post_extract_proj."),
        (
            r"^encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original0",
            "encoder.pos_conv.0.weight_g",
        ),
        (
            r"^encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original1",
            "encoder.pos_conv.0.weight_v",
        ),
        (r"^encoder\.transformer\.pos_conv_embed\.conv\.", "encoder.pos_conv.0."),
        (r"^encoder\.transformer\.layer_norm\.", "encoder.layer_norm."),
        (r"^encoder\.transformer\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
        (r"^encoder\.transformer\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
        (r"^encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
        (r"^encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    ]
    out = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key, count = re.subn(pattern, replacement, key)
            if count:
                break
        out[key] = value
    out["mask_emb"] = torch.zeros(state["encoder.feature_projection.projection.bias"].shape)
    out["final_proj.weight"] = torch.zeros(4, 4)
    return out


# -------------------------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_the_architecture_table_matches_torchaudios_builders(name: str) -> None:
    with torch.device("meta"):  # shapes only: the released sizes without allocating them
        ours = build_speech_model(ARCHITECTURES[name], CONV_CHANNELS, POS_CONV_KERNEL, POS_CONV_GROUPS, 0.0)
        theirs = getattr(torchaudio.models, name)()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert ours.encoder.transformer.layer_norm_first == theirs.encoder.transformer.layer_norm_first


@pytest.mark.parametrize("architecture", FAMILIES)
def test_forward_tokens_and_padding(architecture: str) -> None:
    encoder = _tiny(architecture).eval()
    assert encoder.modality == "audio" and encoder.out_dim == encoder.token_dim == 8
    x, lengths = _waveform(), torch.tensor([8000, 5000, 300])
    with torch.no_grad():
        out = encoder(x, audio_lengths=lengths)
        tokens, padding = encoder.forward_tokens(x, audio_lengths=lengths)
        assert out.shape == (3, 8) and tokens.shape == (3, 24, 8) and torch.isfinite(out).all()
        # 20-ms frames of 400 samples: (length - 400) // 320 + 1 valid ones, at least one.
        assert (~padding).sum(dim=1).tolist() == [24, 15, 1]
        valid = (~padding).float().unsqueeze(-1)
        torch.testing.assert_close((tokens * valid).sum(1) / valid.sum(1), out)
        changed = x.clone()
        changed[1, 5000:], changed[2, 300:] = 5.0, -5.0  # samples beyond the lengths
        torch.testing.assert_close(encoder(changed, audio_lengths=lengths), out, atol=0, rtol=0)
        assert not torch.allclose(encoder(changed), encoder(x))  # without lengths they count
        torch.testing.assert_close(encoder.forward_tokens(x).mean(dim=1), encoder(x))


def test_one_layer_is_that_hidden_state_and_the_layers_above_are_removed(tmp_path: Path) -> None:
    full = _tiny("wav2vec2_base", num_layers=3).eval()
    path = tmp_path / "w.pt"
    torch.save(full.model.state_dict(), path)
    x = _waveform()
    with torch.no_grad():
        states, _ = full.hidden_states(x)
        assert len(states) == 4 and full.num_states == 4
        for layer in (0, 2, 3):
            chosen = _tiny("wav2vec2_base", seed=5, num_layers=3, layer=layer, pretrained_path=str(path)).eval()
            assert len(chosen.model.encoder.transformer.layers) == layer and chosen.layer_weights is None
            torch.testing.assert_close(chosen.frame_features(x)[0], states[layer])
        # A weighted sum that puts all its weight on one state is that state, standardised per frame.
        full.layer_weights.data = torch.tensor([0.0, 0.0, 50.0, 0.0])
        expected = torch.nn.functional.layer_norm(states[2], (32,))
        torch.testing.assert_close(full.frame_features(x)[0], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"layer must lie in \[0, 3\]"):
        _tiny("wav2vec2_base", num_layers=3, layer=4)


def test_the_last_state_of_a_pre_norm_model_passes_the_final_norm() -> None:
    encoder = _tiny("hubert_large", normalize_waveform=False).eval()  # torchaudio's model reads x as it is
    x = _waveform()
    with torch.no_grad():
        states, _ = encoder.hidden_states(x)
        final = encoder.model(x)[0]  # torchaudio's own output: the last layer through the final LayerNorm
    torch.testing.assert_close(states[-1], final)


def test_weighted_sum_trains_every_parameter_in_bf16_autocast() -> None:
    for architecture in ("wav2vec2_base", "wavlm_large"):
        encoder = _tiny(architecture).train()
        x, lengths = _waveform(), torch.tensor([8000, 5000, 300])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = encoder(x, audio_lengths=lengths)
        out.float().square().mean().backward()
        assert torch.isfinite(out.float()).all()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters()), architecture


def test_freezing_keeps_parts_fixed_and_in_eval_mode(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(_tiny("wavlm_base").model.state_dict(), path)
    x = _waveform()
    encoder = _tiny("wavlm_base", freeze="feature_extractor", pretrained_path=str(path), dropout=0.1).train()
    assert not encoder.model.feature_extractor.training and encoder.model.encoder.training
    encoder(x).sum().backward()
    assert all(p.grad is None for p in encoder.model.feature_extractor.parameters())
    assert all(p.grad is not None for p in encoder.model.encoder.parameters())
    whole = _tiny("wavlm_base", freeze="all", pretrained_path=str(path), dropout=0.1).train()
    assert not whole.model.training and whole.proj.training
    whole(x).sum().backward()
    trained = {name for name, p in whole.named_parameters() if p.grad is not None}
    assert trained == {"layer_weights", "proj.weight", "proj.bias"}
    with pytest.raises(ValueError, match="freeze='all' keeps randomly initialised weights fixed.*freeze: none"):
        _tiny("wavlm_base", freeze="all")


def test_bad_input_is_refused_by_name() -> None:
    encoder = _tiny("wav2vec2_base")
    with pytest.raises(DataError, match=r"at least 400 samples"):
        encoder(torch.zeros(2, 399))
    with pytest.raises(DataError, match=r"shape \(B, S\).*mono audio"):
        encoder(torch.zeros(2, 1, 8000))
    with pytest.raises(DataError, match=r"audio_lengths must lie in \[1, 8000\]"):
        encoder(torch.zeros(2, 8000), audio_lengths=torch.tensor([0, 8000]))
    with pytest.raises(ValueError, match="architecture must be one of"):
        AudioSSLEncoder("wav2vec3_base", freeze="none")


# ---------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize(
    ("architecture", "layout"),
    [
        ("wav2vec2_base", "torchaudio"),
        ("wav2vec2_base", "huggingface_pretraining"),
        ("wav2vec2_base", "fairseq"),
        ("hubert_large", "fairseq_finetuned"),
        ("hubert_large", "huggingface_safetensors"),
        ("wavlm_base", "huggingface"),
        ("wavlm_large", "huggingface_safetensors"),
        ("wavlm_large", "lightning"),
    ],
)
def test_saved_weights_load_and_give_the_same_output(architecture: str, layout: str, tmp_path: Path) -> None:
    source = _tiny(architecture).eval()
    state = source.model.state_dict()
    wavlm = architecture.startswith("wavlm")
    path = tmp_path / "weights.pt"
    if layout == "torchaudio":
        torch.save(state, path)
    elif layout == "huggingface_pretraining":  # Wav2Vec2ForPreTraining: under "wav2vec2.", with the quantiser
        weights = _to_huggingface(state, wavlm, prefix="wav2vec2.")
        weights["quantizer.codevectors"] = torch.zeros(1, 4, 8)
        weights["project_hid.weight"] = torch.zeros(4, 32)
        torch.save(weights, path)
    elif layout == "huggingface":
        torch.save(_to_huggingface(state, wavlm), path)
    elif layout == "huggingface_safetensors":
        path = tmp_path / "model.safetensors"
        save_file({k: v.contiguous() for k, v in _to_huggingface(state, wavlm).items()}, str(path))
    elif layout == "fairseq":  # the release's .pt: weights under "model", settings beside them
        layer_norm = ARCHITECTURES[architecture].extractor_mode == "layer_norm"
        torch.save({"cfg": {"model": {"_name": "wav2vec2"}}, "model": _to_fairseq(state, layer_norm)}, path)
    elif layout == "fairseq_finetuned":  # a CTC fine-tuning: the encoder under w2v_encoder.w2v_model., a head
        weights = {f"w2v_encoder.w2v_model.{k}": v for k, v in _to_fairseq(state, layer_norm_extractor=True).items()}
        weights["w2v_encoder.proj.weight"] = torch.zeros(29, 32)
        torch.save({"model": weights}, path)
    else:  # this package's checkpoint of an AudioSSLEncoder
        torch.save({"state_dict": {f"model.encoders.audio.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = _tiny(architecture, seed=9, pretrained_path=str(path)).eval()
    fresh = _tiny(architecture, seed=9).eval()
    x, lengths = _waveform(), torch.tensor([8000, 6000, 3000])
    with torch.no_grad():
        expected = source.frame_features(x, lengths)[0]
        torch.testing.assert_close(loaded.frame_features(x, lengths)[0], expected)
        assert not torch.allclose(fresh.frame_features(x, lengths)[0], expected)


def test_detected_formats() -> None:
    state = _tiny("wav2vec2_base").model.state_dict()
    assert detect_format(list(state)) == "torchaudio"
    assert detect_format(list(_to_huggingface(state, wavlm=False))) == "huggingface"
    assert detect_format(list(_to_fairseq(state, layer_norm_extractor=False))) == "fairseq"


def test_wrong_files_are_refused_naming_the_keys(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist.*nothing is downloaded"):
        _tiny("wav2vec2_base", pretrained_path=str(tmp_path / "missing.pt"))
    face = tmp_path / "resnet.pt"
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict(), face)
    with pytest.raises(DataError, match=r"holds no wav2vec 2\.0 / HuBERT / WavLM weights.*conv1\.weight"):
        _tiny("wav2vec2_base", pretrained_path=str(face))
    speech = tmp_path / "wav2vec2.pt"
    torch.save(_tiny("wav2vec2_base").model.state_dict(), speech)
    with pytest.raises(DataError, match=r"do not fit the wavlm_base architecture — missing \d+: .*gru_rel_pos"):
        _tiny("wavlm_base", pretrained_path=str(speech))
    with pytest.raises(DataError, match=r"missing \d+: encoder\.transformer\.layers\.2\..*Choose the architecture"):
        _tiny("wav2vec2_base", num_layers=3, pretrained_path=str(speech))
    with pytest.raises(DataError, match=r"wrong shape \d+: .*\(32,\) \(model: \(48,\)\)"):
        _tiny("wav2vec2_base", embed_dim=48, pretrained_path=str(speech))
    broken = _tiny("wav2vec2_base").model.state_dict()
    broken["encoder.transformer.layers.0.extra.weight"] = torch.zeros(1)
    torch.save(broken, speech)
    with pytest.raises(DataError, match=r"unexpected 1: encoder\.transformer\.layers\.0\.extra\.weight"):
        _tiny("wav2vec2_base", pretrained_path=str(speech))


# ------------------------------------------------------------------------------------ ViT / DINOv2 faces
def test_a_dinov2_release_loads_with_its_position_embedding_resampled(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = FaceBackbone("vit_small_patch14_dinov2", out_dim=8, img_size=112, model_args=SMALL_VIT).eval()
    weights = source.backbone.state_dict()
    weights["mask_token"] = torch.zeros(1, 48)  # as in the original dinov2_vits14_pretrain.pth
    path = tmp_path / "dinov2.pth"
    torch.save(weights, path)
    same = FaceBackbone("vit_small_patch14_dinov2", 8, str(path), img_size=112, model_args=SMALL_VIT).eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(same.feature_tokens(x), source.feature_tokens(x))
    smaller = FaceBackbone("vit_small_patch14_dinov2", 8, str(path), img_size=42, model_args=SMALL_VIT)
    resampled = timm.layers.resample_abs_pos_embed(weights["pos_embed"], (3, 3), (8, 8), num_prefix_tokens=1)
    assert smaller.backbone.pos_embed.shape == (1, 1 + 9, 48)
    torch.testing.assert_close(smaller.backbone.pos_embed.detach(), resampled)
    torch.testing.assert_close(smaller.backbone.blocks[1].mlp.fc2.weight.detach(), weights["blocks.1.mlp.fc2.weight"])
    assert smaller(torch.randn(2, 3, 42, 42)).shape == (2, 8)


def test_a_vit_checkpoint_of_another_shape_is_refused_by_name(tmp_path: Path) -> None:
    deeper = FaceBackbone("vit_base_patch16_224", out_dim=8, img_size=32, model_args={**SMALL_VIT, "depth": 3})
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in deeper.backbone.state_dict().items()}, str(path))
    with pytest.raises(DataError, match=r"unexpected \d+: 'blocks\.2\..*did not help"):
        FaceBackbone("vit_base_patch16_224", 8, str(path), img_size=32, model_args=SMALL_VIT)
    with pytest.raises(ValueError, match=r"model_args may not set \['img_size'\]"):
        FaceBackbone("vit_base_patch16_224", img_size=32, model_args={"img_size": 64})


# ------------------------------------------------------------------------------------------------ presets
def _preset_entry(path: Path) -> tuple[str, dict]:
    encoders = yaml.safe_load(path.read_text())["model"]["init_args"]["encoders"]
    assert len(encoders) == 1, "a preset sets one modality's encoder"
    ((modality, entry),) = encoders.items()
    return modality, entry


def test_presets_cover_each_family_and_name_a_weights_file() -> None:
    entries = [_preset_entry(p)[1]["init_args"] for p in PRESETS]
    assert {e.get("architecture") for e in entries} >= {"wav2vec2_base", "hubert_base", "wavlm_base"}
    assert {e.get("backbone") for e in entries} >= {"vit_small_patch14_dinov2", "vit_base_patch16_224"}
    assert all(e["pretrained_path"] for e in entries)
    for path in PRESETS:
        lines = path.read_text().splitlines()
        assert f"configs/encoders/pretrained/{path.name}" in lines[1] and "pretrained_path=" in lines[2]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_fast_dev_run_with_tiny_overrides_and_a_local_weights_file(
    preset: Path, tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preset as shipped, made small by flags, fits one batch from a weights file saved beforehand."""
    monkeypatch.chdir(tmp_path)
    modality, entry = _preset_entry(preset)
    options = entry["init_args"]
    flag = f"--model.init_args.encoders.{modality}.init_args."
    weights = tmp_path / "weights.pt"
    if modality == "audio":
        tiny = {**TINY, "num_layers": 1}
        torch.save(_tiny(options["architecture"], **tiny).model.state_dict(), weights)
        overrides = [f"{flag}{key}={value}" for key, value in tiny.items()]
    else:  # saved at the preset's img_size, loaded at the tiny data's 32 px: the position embedding is resampled
        source = FaceBackbone(options["backbone"], img_size=options["img_size"], model_args={**SMALL_VIT, "depth": 1})
        torch.save(source.backbone.state_dict(), weights)
        overrides = [f"{flag}img_size=32", f"{flag}model_args={{depth: 1, embed_dim: 48, num_heads: 2}}"]
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "quickstart.yaml"),
            "--config",
            str(preset),
            *tiny_data_args(tiny_cache),
            *tiny_trainer_args(tmp_path),
            f"--data.init_args.modalities=[{modality}]",
            f"{flag}pretrained_path={weights}",
            *overrides,
            "--trainer.fast_dev_run=true",
        ]
    )


def test_a_model_cast_to_bfloat16_reads_float32_waveforms() -> None:
    encoder = _tiny("wavlm_base").eval().to(torch.bfloat16)
    with torch.no_grad():
        out = encoder(_waveform(), audio_lengths=torch.tensor([8000, 5000, 300]))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
