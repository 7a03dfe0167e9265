import pytest
import torch

from multimodal_fer.models.encoders import AudioMelCNN, DepthCNN, Encoder, FaceCNN, PhysioCNN
from multimodal_fer.types import MODALITIES


def _check(encoder: Encoder, x: torch.Tensor, out_dim: int) -> None:
    assert encoder.modality in MODALITIES
    assert encoder.out_dim == out_dim
    x = x.clone().requires_grad_(True)
    y = encoder(x)
    assert y.shape == (x.shape[0], out_dim)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    grads = [p.grad for p in encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("size", [32, 64])
def test_face(size: int) -> None:
    torch.manual_seed(0)
    _check(FaceCNN(out_dim=24, widths=(8, 16, 16, 32), dropout=0.1), torch.randn(3, 3, size, size), 24)
    assert FaceCNN.modality == "face"


def test_audio() -> None:
    torch.manual_seed(0)
    encoder = AudioMelCNN(out_dim=16, n_mels=32, widths=(8, 16))
    _check(encoder, torch.rand(2, 8000) * 2 - 1, 16)
    assert encoder.modality == "audio"


def test_audio_silence_is_finite() -> None:
    encoder = AudioMelCNN(out_dim=8, n_mels=16, widths=(4,)).eval()
    assert torch.isfinite(encoder(torch.zeros(2, 4000))).all()


def test_audio_bf16_autocast_keeps_mel_in_float32() -> None:
    torch.manual_seed(0)
    encoder = AudioMelCNN(out_dim=16, n_mels=32, widths=(8, 16))
    x = torch.rand(2, 8000) * 2 - 1
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        assert encoder.log_mel(x).dtype == torch.float32
        y = encoder(x)
    assert y.shape == (2, 16)
    assert torch.isfinite(y.float()).all()
    y.float().sum().backward()
    assert encoder.fc.weight.grad is not None


def test_audio_mel_buffers_stay_float32_when_cast() -> None:
    encoder = AudioMelCNN(out_dim=8, n_mels=16, widths=(4,)).to(torch.bfloat16).eval()
    assert encoder.melspec.mel_scale.fb.dtype == torch.float32
    assert encoder.fc.weight.dtype == torch.bfloat16
    assert encoder(torch.rand(2, 4000)).dtype == torch.bfloat16


def test_depth() -> None:
    torch.manual_seed(0)
    _check(DepthCNN(out_dim=12, widths=(8, 16)), torch.randn(2, 1, 32, 32), 12)
    _check(DepthCNN(out_dim=12, in_channels=2, widths=(8, 16)), torch.randn(2, 2, 32, 32), 12)
    assert DepthCNN.modality == "depth"


def test_physio() -> None:
    torch.manual_seed(0)
    _check(PhysioCNN(in_channels=4, out_dim=20, widths=(8, 16)), torch.randn(2, 4, 256), 20)
    assert PhysioCNN.modality == "physio"


def test_default_out_dims() -> None:
    for encoder in (FaceCNN(), AudioMelCNN(), DepthCNN(), PhysioCNN()):
        assert encoder.out_dim == 128
