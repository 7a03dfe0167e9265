"""Audio encoder: the shared spectral front end (on the device) and a residual 2-D CNN over (bands, frames)."""

from __future__ import annotations

from typing import Any

import torch
import torchaudio
from torch import Tensor, nn

from multimodal_fer.models.blocks import residual_cnn2d
from multimodal_fer.models.encoders.audio_frontend import AudioFeatures, AudioFrontEnd, AudioNormalization
from multimodal_fer.models.encoders.base import Encoder


class AudioMelCNN(Encoder):
    """Log-mel or MFCC (+ deltas) spectrogram + residual CNN for speech/vocal-burst waveforms.

    The :class:`~multimodal_fer.models.encoders.audio_frontend.AudioFrontEnd` runs inside :meth:`forward` (on
    the accelerator, float32 even under bf16/fp16 autocast) and gives (B, 1 + deltas, bands, frames), the
    CNN's input channels. The residual CNN halves bands and frames ``len(widths)`` times (a stride-2 stem,
    then every block after the first); the map is averaged over bands and over the valid frames.

    Variable-length audio: with ``audio_lengths`` (valid samples per utterance), frames beyond each length
    are padding (frame semantics in :mod:`~multimodal_fer.models.encoders.audio_frontend`: the waveform is
    zeroed beyond its length, ``lengths // hop_length + 1`` frames are valid, padded frames enter the CNN as
    0). A position ``t`` of the CNN's last map counts as valid when ``t < ceil(valid_frames / 2 **
    len(widths))`` -- the width of the map the CNN gives for the valid frames alone -- and only valid
    positions are pooled. So samples beyond a length cannot change the output; the output is not the same
    as for the cut waveform, because the last valid positions' receptive fields include the zeroed padding.

    Args:
        sample_rate: sampling rate of the waveform in Hz.
        n_fft: FFT size (window length) in samples.
        hop_length: hop between frames in samples (160 at 16 kHz = 10 ms).
        n_mels: number of mel bands.
        out_dim: size of the output feature vector.
        widths: channels of the residual stages; (bands, frames) is downsampled by ``2 ** len(widths)``.
        features: ``"log_mel"`` or ``"mfcc"``.
        n_mfcc: cepstral coefficients with ``features="mfcc"`` (at most ``n_mels``).
        deltas: 0, 1 (+ deltas) or 2 (+ deltas and delta-deltas), stacked as input channels.
        normalization: ``"utterance"`` (per utterance and channel) or ``"band"`` (also per band).
        spec_augment: SpecAugment in training mode (frequency and time masks drawn per utterance).
        freq_masks: frequency masks per utterance.
        freq_mask_width: largest frequency mask in bands.
        time_masks: time masks per utterance.
        time_mask_width: largest time mask in frames.
        time_mask_max_fraction: largest fraction of the frames one time mask may cover.

    Input: waveform, float (B, S) in [-1, 1]; side input ``audio_lengths`` integer (B,) in [1, S], optional.
    Output: (B, out_dim).

    """

    modality = "audio"
    side_inputs = ("audio_lengths",)

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 160,
        n_mels: int = 64,
        out_dim: int = 128,
        widths: tuple[int, ...] = (32, 64, 128),
        features: AudioFeatures = "log_mel",
        n_mfcc: int = 40,
        deltas: int = 0,
        normalization: AudioNormalization = "utterance",
        spec_augment: bool = False,
        freq_masks: int = 2,
        freq_mask_width: int = 8,
        time_masks: int = 2,
        time_mask_width: int = 10,
        time_mask_max_fraction: float = 1.0,
    ) -> None:
        super().__init__(out_dim)
        self.sample_rate = sample_rate
        self.frontend = AudioFrontEnd(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            features=features,
            n_mfcc=n_mfcc,
            deltas=deltas,
            normalization=normalization,
            spec_augment=spec_augment,
            freq_masks=freq_masks,
            freq_mask_width=freq_mask_width,
            time_masks=time_masks,
            time_mask_width=time_mask_width,
            time_mask_max_fraction=time_mask_max_fraction,
        )
        self.features = residual_cnn2d(self.frontend.num_channels, widths)
        self.num_halvings = len(widths)
        self.fc = nn.Linear(widths[-1], out_dim)
        self.register_load_state_dict_pre_hook(_rename_old_mel_buffers)

    @property
    def melspec(self) -> torchaudio.transforms.MelSpectrogram:
        """The front end's torchaudio mel-spectrogram transform."""
        return self.frontend.mel_spectrogram

    def log_mel(self, waveform: Tensor) -> Tensor:
        """The front end's features of whole waveforms (log-mel or MFCC, + deltas), float32.

        Args:
            waveform: float (B, S).

        Returns:
            float32 (B, 1 + deltas, bands, S // hop_length + 1).

        """
        return self.frontend(waveform)[0]

    def feature_map(self, x: Tensor, audio_lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Waveforms → the last residual stage's map and its time padding.

        Args:
            x: waveform, float (B, S).
            audio_lengths: valid samples per utterance, integer (B,), or None (all valid).

        Returns:
            ``(feature_map, padding)``: (B, widths[-1], F', T') and bool (B, T') True on padded positions
            (None without ``audio_lengths``).

        """
        spectrogram, _ = self.frontend(x, audio_lengths)
        fmap = self.features(spectrogram.to(self.fc.weight.dtype))
        if audio_lengths is None:
            return fmap, None
        valid = self.frontend.frame_counts(audio_lengths).to(fmap.device)
        for _ in range(self.num_halvings):  # each stride-2 stage maps n frames to ceil(n / 2)
            valid = torch.div(valid + 1, 2, rounding_mode="floor")
        return fmap, torch.arange(fmap.shape[-1], device=fmap.device) >= valid.unsqueeze(1)

    def forward(self, x: Tensor, audio_lengths: Tensor | None = None) -> Tensor:
        """Encode waveforms.

        Args:
            x: waveform, float (B, S) in [-1, 1].
            audio_lengths: valid samples per utterance, integer (B,) in [1, S], or None (all valid).

        Returns:
            Features, (B, out_dim): the final linear layer on the map averaged over bands and valid frames.

        """
        fmap, padding = self.feature_map(x, audio_lengths)
        if padding is None:
            return self.fc(fmap.mean(dim=(2, 3)))
        valid = (~padding).to(fmap.dtype)[:, None, None, :]  # (B, 1, 1, T')
        pooled = (fmap * valid).sum(dim=(2, 3)) / (valid.sum(dim=(2, 3)) * fmap.shape[2])
        return self.fc(pooled)

    def forward_tokens(self, x: Tensor, audio_lengths: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Waveforms → one token per frame of the last feature map (bands averaged).

        Tokens are the final linear layer applied at every frame, so the mean of the valid tokens is
        :meth:`forward`'s vector.

        Args:
            x: waveform, float (B, S).
            audio_lengths: valid samples per utterance, integer (B,), or None (all valid).

        Returns:
            Tokens (B, T', out_dim); with ``audio_lengths``, ``(tokens, padding)`` with padding bool (B, T').

        """
        fmap, padding = self.feature_map(x, audio_lengths)
        tokens = self.fc(fmap.mean(dim=2).transpose(1, 2))
        return tokens if padding is None else (tokens, padding)


def _rename_old_mel_buffers(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load checkpoints written before the front end existed: ``melspec.*`` → ``frontend.transform.*``."""
    old = prefix + "melspec."
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + "frontend.transform." + key[len(old) :]] = state_dict.pop(key)
