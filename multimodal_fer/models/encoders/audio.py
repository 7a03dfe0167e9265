"""Audio encoder: log-mel front end (computed on the device) and a residual 2-D CNN over (mel, time)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchaudio
from torch import Tensor, nn

from multimodal_fer.models.blocks import residual_cnn2d
from multimodal_fer.models.encoders.base import Encoder

#: Added to mel power before the log so silence stays finite.
_LOG_EPS = 1e-6
#: Added to the per-utterance standard deviation so constant input stays finite.
_STD_EPS = 1e-5


class AudioMelCNN(Encoder):
    """Log-mel spectrogram + residual CNN for speech/vocal-burst waveforms.

    The mel transform runs inside :meth:`forward` (so it runs on the accelerator with the rest of the
    model) in float32 even under bf16/fp16 autocast, and its buffers (window, filterbank) stay float32
    when the module is cast to a lower precision. Each utterance's log-mel is normalised to zero mean and
    unit variance before the CNN.

    Args:
        sample_rate: sampling rate of the waveform in Hz.
        n_fft: FFT size (window length) in samples.
        hop_length: hop between frames in samples (160 at 16 kHz = 10 ms).
        n_mels: number of mel bands.
        out_dim: size of the output feature vector.
        widths: channels of the residual stages; (mel, time) is downsampled by ``2 ** len(widths)``.

    Input: waveform, float (B, S) in [-1, 1].
    Output: (B, out_dim).

    """

    modality = "audio"

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 160,
        n_mels: int = 64,
        out_dim: int = 128,
        widths: tuple[int, ...] = (32, 64, 128),
    ) -> None:
        super().__init__(out_dim)
        self.sample_rate = sample_rate
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=2.0
        )
        self.features = residual_cnn2d(1, widths)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], out_dim)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> AudioMelCNN:
        # Device moves apply to the mel buffers as usual, dtype casts (``.half()``, bf16-true) do not.
        super()._apply(fn, recurse)
        self.melspec.float()
        return self

    def log_mel(self, waveform: Tensor) -> Tensor:
        """Per-utterance normalised log-mel spectrogram, computed in float32 with autocast disabled.

        Args:
            waveform: float (B, S).

        Returns:
            float32 (B, 1, n_mels, S // hop_length + 1).

        """
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            mel = self.melspec(waveform.float())
            logmel = torch.log(mel + _LOG_EPS)
            mean = logmel.mean(dim=(-2, -1), keepdim=True)
            std = logmel.std(dim=(-2, -1), keepdim=True)
            logmel = (logmel - mean) / (std + _STD_EPS)
        return logmel.unsqueeze(1)

    def forward(self, x: Tensor) -> Tensor:
        """Encode waveforms.

        Args:
            x: waveform, float (B, S) in [-1, 1].

        Returns:
            Features, (B, out_dim).

        """
        return self.fc(self.pool(self.feature_map(x)).flatten(1))

    def feature_map(self, x: Tensor) -> Tensor:
        """Waveforms (B, S) → the last residual stage's map over (mel bands, frames), (B, widths[-1], F', T')."""
        if x.ndim != 2:
            raise ValueError(f"AudioMelCNN expects a waveform of shape (B, S), got {tuple(x.shape)}.")
        return self.features(self.log_mel(x).to(self.fc.weight.dtype))

    def forward_tokens(self, x: Tensor) -> Tensor:
        """Waveforms (B, S) → one token per frame of the last feature map (mel axis averaged), (B, T', out_dim).

        Tokens are the final linear layer applied at every frame, so their mean is :meth:`forward`'s vector.
        """
        return self.fc(self.feature_map(x).mean(dim=2).transpose(1, 2))
