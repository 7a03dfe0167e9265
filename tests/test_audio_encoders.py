import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torchaudio
import yaml

from multimodal_fer.models.encoders import AudioFrontEnd, AudioMelCNN, AudioSpectrogramTransformer, FaceCNN
from multimodal_fer.models.fusion import AttentionFusion, MulTFusion
from multimodal_fer.models.multimodal import MultimodalFERModel
from multimodal_fer.types import LabelSpace

from conftest import CONFIGS

S = 4000  # 0.25 s at 16 kHz
HOP = 160
FRAMES = S // HOP + 1  # 26


def _waveform(batch: int = 3, samples: int = S, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, samples, generator=generator) * 2 - 1


def _cnn(**options) -> AudioMelCNN:
    return AudioMelCNN(**{"out_dim": 8, "n_mels": 16, "widths": (4, 8), **options})


def _ast(**options) -> AudioSpectrogramTransformer:
    defaults = {
        "n_fft": 400,
        "n_mels": 16,
        "out_dim": 8,
        "d_model": 16,
        "num_heads": 2,
        "num_layers": 2,
        "patch_size": (8, 6),
        "patch_stride": (4, 4),
        "freq_mask_width": 4,
        "time_mask_width": 6,
    }
    return AudioSpectrogramTransformer(**{**defaults, **options})


ENCODERS = {"cnn": _cnn, "ast": _ast}


# ---------------------------------------------------------------------------------------------- front end


@pytest.mark.parametrize("features", ["log_mel", "mfcc"])
@pytest.mark.parametrize("deltas", [0, 1, 2])
def test_frontend_shapes(features: str, deltas: int) -> None:
    frontend = AudioFrontEnd(n_mels=32, n_mfcc=13, features=features, deltas=deltas)
    out, padding = frontend(_waveform())
    bands = 32 if features == "log_mel" else 13
    assert out.shape == (3, 1 + deltas, bands, FRAMES) and out.dtype == torch.float32
    assert frontend.num_channels == 1 + deltas and frontend.num_bands == bands
    assert padding is None and torch.isfinite(out).all()
    lengths = torch.tensor([S, 2500, 400])
    out, padding = frontend(_waveform(), lengths)
    assert out.shape == (3, 1 + deltas, bands, FRAMES) and padding.shape == (3, FRAMES)
    # Valid frames = torchaudio's frame count of the waveform cut to its length (center=True: L // hop + 1).
    cut_frames = [
        torchaudio.transforms.MelSpectrogram(n_fft=512, hop_length=HOP, n_mels=32)(_waveform(1, n)).shape[-1]
        for n in (S, 2500, 400)
    ]
    assert (~padding).sum(1).tolist() == cut_frames == [26, 16, 3]
    assert (out.transpose(1, 3)[padding] == 0).all()  # padded frames are 0


@pytest.mark.parametrize("normalization", ["utterance", "band"])
def test_frontend_normalises_over_valid_frames_only(normalization: str) -> None:
    frontend = AudioFrontEnd(n_mels=16, deltas=1, normalization=normalization)
    lengths = torch.tensor([S, 2000])
    out, padding = frontend(_waveform(2), lengths)
    dims = (-1,) if normalization == "band" else (-2, -1)
    for b in range(2):
        valid = out[b][..., ~padding[b]]  # (C, F, T_valid)
        torch.testing.assert_close(valid.mean(dim=dims), torch.zeros_like(valid.mean(dim=dims)), atol=1e-4, rtol=0)
        torch.testing.assert_close(valid.std(dim=dims), torch.ones_like(valid.std(dim=dims)), atol=1e-3, rtol=0)


def test_frontend_deltas_match_torchaudio_on_the_cut_waveform() -> None:
    # Deltas of padded audio are taken with the last valid frame repeated (ComputeDeltas' replicate mode), so
    # away from the last ceil(n_fft / 2 / hop) valid frames they equal the deltas of the cut waveform.
    frontend = AudioFrontEnd(n_mels=16, deltas=2, normalization="band")
    waveform, length = _waveform(1), 2500
    frames = length // HOP + 1
    tail = math.ceil(512 / 2 / HOP) + 2 * 2  # + two delta windows' reach (win_length 5: 2 frames each)
    padded, _ = frontend(waveform, torch.tensor([length]))
    cut, _ = frontend(waveform[:, :length])
    assert cut.shape[-1] == frames
    # Normalisation statistics differ slightly (the last frames differ), so compare up to an affine map per band.
    for channel in range(3):
        a, b = padded[0, channel, :, : frames - tail], cut[0, channel, :, : frames - tail]
        correlation = torch.nn.functional.cosine_similarity(a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True))
        assert (correlation > 0.99).all(), channel


def test_spec_augment_in_training_only_and_different_per_sample() -> None:
    torch.manual_seed(0)
    frontend = AudioFrontEnd(n_mels=32, deltas=1, spec_augment=True, freq_mask_width=8, time_mask_width=8)
    waveform = _waveform(1).expand(8, S)  # the same utterance eight times
    plain = AudioFrontEnd(n_mels=32, deltas=1)(waveform)[0]
    torch.testing.assert_close(frontend.eval()(waveform)[0], plain)  # eval: no masks
    augmented = frontend.train()(waveform)[0]
    assert not torch.equal(augmented, plain)
    masked = (augmented == 0) & (plain != 0)  # (B, C, F, T)
    assert masked.any(dim=(1, 2, 3)).float().mean() > 0.5  # most utterances got masks
    assert torch.equal(masked[:, 0], masked[:, 1])  # channels of an utterance share its masks
    patterns = {tuple(m.flatten().tolist()) for m in masked[:, 0]}
    assert len(patterns) > 4  # drawn per utterance, not one mask for the batch
    # Frequency masks cover whole bands, time masks whole frames, within the configured widths.
    full_bands = masked[:, 0].all(dim=2).sum(dim=1)  # (B,) masked frames
    full_frames = masked[:, 0].all(dim=1).sum(dim=1)  # (B,) masked bands
    assert (full_bands <= 2 * 8).all() and (full_frames <= 2 * 8).all()
    assert ((masked[:, 0].all(dim=2, keepdim=True) | masked[:, 0].all(dim=1, keepdim=True)) == masked[:, 0]).all()


def test_frontend_stays_float32_when_cast_and_under_autocast() -> None:
    reference = AudioFrontEnd(features="mfcc", n_mels=32, n_mfcc=13)
    frontend = AudioFrontEnd(features="mfcc", n_mels=32, n_mfcc=13).to(torch.bfloat16)
    for name, buffer in frontend.named_buffers():
        assert buffer.dtype == torch.float32, name
        assert torch.equal(buffer, dict(reference.named_buffers())[name]), name  # exact: never rounded to bf16
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out, _ = frontend(_waveform().bfloat16())
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", list(ENCODERS))
def test_wrong_input_is_refused(name: str) -> None:
    encoder = ENCODERS[name]()
    with pytest.raises(ValueError, match=r"shape \(B, S\), got \(3, 1, 4000\).*channel axis"):
        encoder(_waveform().unsqueeze(1))
    with pytest.raises(ValueError, match=r"shape \(B, S\), got \(4000,\)"):
        encoder(_waveform()[0])
    with pytest.raises(ValueError, match="at least"):
        encoder(_waveform(3, 100))
    with pytest.raises(ValueError, match=r"audio_lengths must lie in \[1, 4000\]"):
        encoder(_waveform(), audio_lengths=torch.tensor([S, S + 1, 10]))
    with pytest.raises(ValueError, match=r"integer tensor of shape \(B,\)"):
        encoder(_waveform(), audio_lengths=torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"integer tensor of shape \(B,\)"):
        encoder(_waveform(), audio_lengths=torch.tensor([S, S]))


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ValueError, match="n_mfcc"):
        AudioFrontEnd(features="mfcc", n_mels=16, n_mfcc=20)
    with pytest.raises(ValueError, match="deltas"):
        AudioFrontEnd(deltas=3)
    with pytest.raises(ValueError, match="features"):
        AudioFrontEnd(features="cqt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="patch_stride"):
        _ast(patch_stride=(4, 8))
    with pytest.raises(ValueError, match="bands"):
        _ast(patch_size=(32, 6))


# ---------------------------------------------------------------------------------------------- encoders


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("options", [{}, {"features": "mfcc", "n_mfcc": 12, "deltas": 2, "spec_augment": True}])
def test_forward_backward(name: str, options: dict) -> None:
    torch.manual_seed(0)
    encoder = ENCODERS[name](**options).train()
    x = _waveform().requires_grad_(True)
    lengths = torch.tensor([S, 3000, 1000])
    for out in (encoder(x), encoder(x, audio_lengths=lengths), encoder.forward_tokens(x, audio_lengths=lengths)[0]):
        assert torch.isfinite(out).all() and out.shape[-1] == 8
        out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for parameter_name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name


@pytest.mark.parametrize("name", list(ENCODERS))
def test_bf16_autocast_and_bf16_weights_on_cpu(name: str) -> None:
    torch.manual_seed(0)
    encoder = ENCODERS[name](deltas=1)
    lengths = torch.tensor([S, 2000, 800])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = encoder(_waveform(), audio_lengths=lengths)
        tokens, _ = encoder.forward_tokens(_waveform(), audio_lengths=lengths)
    assert out.shape == (3, 8) and torch.isfinite(out.float()).all() and torch.isfinite(tokens.float()).all()
    (out.float().sum() + tokens.float().sum()).backward()
    assert all(p.grad is not None for p in encoder.parameters())
    encoder = encoder.to(torch.bfloat16).eval()
    assert encoder.frontend.mel_spectrogram.mel_scale.fb.dtype == torch.float32
    assert encoder(_waveform(), audio_lengths=lengths).dtype == torch.bfloat16


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("training", [False, True])
def test_samples_beyond_lengths_cannot_change_outputs(name: str, training: bool) -> None:
    torch.manual_seed(0)
    encoder = ENCODERS[name](deltas=2, spec_augment=True)
    encoder.train(training)  # training: batch-norm batch statistics (CNN), SpecAugment with a fixed seed
    waveform = _waveform()
    lengths = torch.tensor([S, 2500, 700])
    changed = waveform.clone()
    changed[1, 2500:] = 50.0
    changed[2, 700:] = torch.randn(S - 700)

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        torch.manual_seed(1)
        vector = encoder(x, audio_lengths=lengths)
        torch.manual_seed(1)
        tokens, padding = encoder.forward_tokens(x, audio_lengths=lengths)
        return vector, tokens, padding

    vector, tokens, padding = run(waveform)
    vector2, tokens2, padding2 = run(changed)
    torch.testing.assert_close(vector2, vector, rtol=0, atol=1e-5)
    assert torch.equal(padding, padding2)
    torch.testing.assert_close(tokens2[~padding], tokens[~padding], rtol=0, atol=1e-5)
    # Without lengths the same change reaches the output.
    torch.manual_seed(1)
    without = encoder(changed)
    torch.manual_seed(1)
    assert not torch.allclose(without[1], encoder(waveform)[1], atol=1e-3)
    assert padding[0].sum() == 0 and 0 < padding[1].sum() < padding[2].sum() < padding.shape[1]


def test_cnn_padding_follows_its_documented_semantics() -> None:
    # Valid frames: L // hop + 1; the CNN halves them len(widths) times (ceil), which is the width of the map it
    # gives for the valid frames alone; the output is the final linear layer on the mean over those positions.
    torch.manual_seed(0)
    encoder = AudioMelCNN(out_dim=8, n_mels=16, widths=(4, 8, 8)).eval()
    waveform, lengths = _waveform(), torch.tensor([S, 2500, 700])
    spectrogram, frame_padding = encoder.frontend(waveform, lengths)
    fmap = encoder.features(spectrogram)
    tokens, padding = encoder.forward_tokens(waveform, audio_lengths=lengths)
    for b, length in enumerate(lengths.tolist()):
        frames = length // HOP + 1
        assert (~frame_padding[b]).sum() == frames
        alone = encoder.features(spectrogram[b : b + 1, ..., :frames]).shape[-1]
        assert alone == math.ceil(frames / 2**3) == (~padding[b]).sum()
        expected = encoder.fc(fmap[b, :, :, :alone].mean(dim=(1, 2)))
        torch.testing.assert_close(encoder(waveform, audio_lengths=lengths)[b], expected, rtol=1e-5, atol=1e-6)
        # The mean of the valid tokens is the feature vector.
        torch.testing.assert_close(tokens[b, :alone].mean(0), expected, rtol=1e-5, atol=1e-6)
    # Padded frames enter the CNN as 0; samples beyond the length are zeroed, so any padding equals zero padding.
    assert (spectrogram.transpose(1, 3)[frame_padding] == 0).all()
    zero_padded = waveform * (torch.arange(S) < lengths.unsqueeze(1))
    torch.testing.assert_close(encoder(zero_padded, audio_lengths=lengths), encoder(waveform, audio_lengths=lengths))


def test_cnn_tokens_average_to_the_vector_and_keep_old_arguments() -> None:
    encoder = AudioMelCNN(out_dim=16, n_mels=40, hop_length=320, widths=(16, 32, 64)).eval()  # quickstart's
    tokens = encoder.forward_tokens(_waveform())
    assert isinstance(tokens, torch.Tensor) and tokens.shape == (3, math.ceil((S // 320 + 1) / 8), 16)
    torch.testing.assert_close(tokens.mean(1), encoder(_waveform()), rtol=1e-4, atol=1e-5)
    assert encoder.melspec.n_mels == 40 and encoder.side_inputs == ("audio_lengths",)


def test_cnn_loads_a_checkpoint_from_before_the_front_end() -> None:
    encoder = _cnn()
    state = {
        (key.replace("frontend.transform.", "melspec.") if key.startswith("frontend.") else key): value
        for key, value in encoder.state_dict().items()
    }
    assert any(key.startswith("melspec.") for key in state)
    _cnn().load_state_dict(state)  # strict


@pytest.mark.parametrize("time_positions", ["sinusoidal", "learned"])
def test_ast_patches_and_any_length(time_positions: str) -> None:
    torch.manual_seed(0)
    encoder = _ast(time_positions=time_positions, learned_time_patches=6).eval()
    assert encoder.freq_patches == (16 - 8) // 4 + 1
    for samples in (S, 1000, 12000):  # 26, 7 and 76 frames
        frames = samples // HOP + 1
        tokens = encoder.forward_tokens(_waveform(2, samples))
        columns = 1 + math.ceil(max(frames - 6, 0) / 4)
        assert tokens.shape == (2, 3 * columns, 8)
        assert torch.isfinite(encoder(_waveform(2, samples))).all()
    # A patch is padding exactly when all its frames are: column j starts at frame 4 j.
    lengths = torch.tensor([S, 1500, 200])
    _, padding = encoder.forward_tokens(_waveform(), audio_lengths=lengths)
    columns = padding.view(3, -1, 3)[..., 0]
    for b, length in enumerate(lengths.tolist()):
        frames = length // HOP + 1
        assert (~columns[b]).sum() == min(math.ceil(frames / 4), columns.shape[1])
        assert (padding.view(3, -1, 3)[b] == columns[b].unsqueeze(1)).all()  # every band of a column alike


# ---------------------------------------------------------------------------------------------- in the model

FUSIONS = {
    "attention": partial(AttentionFusion, d_model=8, num_heads=2, num_layers=1),
    "mult": partial(MulTFusion, d_model=8, num_heads=2, num_layers=1, self_layers=1, out_dim=8),
}


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_in_the_model_with_audio_lengths(name: str, fusion: str) -> None:
    torch.manual_seed(0)
    encoders = {"audio": ENCODERS[name](deltas=1), "face": FaceCNN(out_dim=8, widths=(4, 8))}
    model = MultimodalFERModel(encoders, FUSIONS[fusion], LabelSpace(("a", "b"), dimensions=("valence", "arousal")))
    assert model.side_inputs() == ("audio_lengths",) and model.uses_tokens == (fusion == "mult")
    waveform = _waveform(4)
    lengths = torch.tensor([S, 2500, 900, 3000])
    present = {"audio": torch.tensor([True, True, False, True]), "face": torch.ones(4, dtype=torch.bool)}
    inputs = {"audio": waveform, "audio_lengths": lengths, "face": torch.randn(4, 3, 32, 32)}
    model.train()
    out = model(inputs, present).heads
    (out["expr"].sum() + out["va"].sum()).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused
    model.eval()
    reference = model(inputs, present).heads
    changed = waveform.clone()
    changed[1, 2500:] = 7.0
    changed[3, 3000:] = -7.0
    changed[2] = 0.5  # absent sample
    torch.testing.assert_close(model({**inputs, "audio": changed}, present).heads, reference)
    # Without lengths the same change reaches the output.
    no_lengths = {k: v for k, v in inputs.items() if k != "audio_lengths"}
    assert not torch.allclose(
        model({**no_lengths, "audio": changed}, present).heads["expr"], model(no_lengths, present).heads["expr"]
    )


# ---------------------------------------------------------------------------------------------- presets

PRESETS = {"audio_cnn_mfcc.yaml": AudioMelCNN, "audio_ast.yaml": AudioSpectrogramTransformer}


def _preset_encoder(path: Path):
    config = yaml.safe_load(path.read_text())
    entries = config["model"]["init_args"]["encoders"]
    assert list(entries) == ["audio"]  # an overlay of the audio encoder only: the others stay the quickstart's
    audio = entries["audio"]
    module, _, class_name = audio["class_path"].rpartition(".")
    cls = getattr(__import__(module, fromlist=[class_name]), class_name)
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in audio["init_args"].items()}
    return cls(**options)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_build_and_train(preset: str) -> None:
    path = CONFIGS / "encoders" / preset
    first = path.read_text().splitlines()[:2]
    assert first[0].startswith("# ") and "configs/encoders/" + preset in first[1]
    torch.manual_seed(0)
    encoder = _preset_encoder(path).train()
    assert isinstance(encoder, PRESETS[preset]) and encoder.frontend.spec_augment
    x = torch.rand(2, 8000) * 2 - 1  # the tiny test data: 0.5 s at 16 kHz
    lengths = torch.tensor([8000, 5000])
    out = encoder(x) + encoder(x, audio_lengths=lengths)
    tokens, _ = encoder.forward_tokens(x, audio_lengths=lengths)
    (out.square().mean() + tokens.square().mean()).backward()
    assert out.shape == (2, 128)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())
