"""Audio front end shared by the audio encoders: log-mel or MFCC (+ deltas), normalisation, SpecAugment.

Everything runs inside the model (on the accelerator), in float32 with autocast disabled, whatever precision
the rest of the model uses.

Padding semantics of variable-length audio (``lengths`` given): samples at and beyond ``lengths[b]`` are
replaced by zeros before the STFT, so their values can never reach the features. With ``center=True`` (the
torchaudio default used here) frame ``t`` is centred on sample ``t * hop_length`` and a waveform of ``S``
samples gives ``S // hop_length + 1`` frames; frame ``t`` of utterance ``b`` is *valid* when
``t < lengths[b] // hop_length + 1``, i.e. exactly the frames torchaudio gives for the waveform cut to its
length. Those valid frames equal the cut waveform's frames except the last ``ceil(n_fft / 2 / hop_length)``,
whose windows read zeros where the cut waveform would read its reflection. Normalisation statistics use the
valid frames only, and padded frames are 0 in the output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torchaudio
from torch import Tensor, nn

#: Added to mel power before the log so silence stays finite (the value torchaudio's MFCC uses too).
LOG_EPS = 1e-6
#: Added to the standard deviation in the per-utterance normalisation so constant input stays finite.
STD_EPS = 1e-5

AudioFeatures = Literal["log_mel", "mfcc"]
AudioNormalization = Literal["utterance", "band"]


def validate_waveform(waveform: Tensor, lengths: Tensor | None, min_samples: int) -> None:
    """Refuse waveforms that are not (B, S) and lengths that are not long (B,) within [1, S].

    Args:
        waveform: the encoder's input.
        lengths: valid samples per utterance, or None.
        min_samples: the fewest samples ``S`` the STFT accepts.

    Raises:
        ValueError: naming the problem and the expected shape or range.
    """
    if waveform.ndim != 2:
        hint = " (mono audio: drop or average the channel axis)" if waveform.ndim == 3 else ""
        raise ValueError(f"Audio must be a waveform of shape (B, S), got {tuple(waveform.shape)}{hint}.")
    if waveform.shape[1] < min_samples:
        raise ValueError(
            f"Audio waveforms must have at least {min_samples} samples (n_fft // 2 + 1), got {waveform.shape[1]}."
        )
    if lengths is None:
        return
    if lengths.shape != waveform.shape[:1] or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(
            f"audio_lengths must be an integer tensor of shape (B,) = ({waveform.shape[0]},), "
            f"got {lengths.dtype} {tuple(lengths.shape)}."
        )
    if bool(((lengths < 1) | (lengths > waveform.shape[1])).any()):
        raise ValueError(
            f"audio_lengths must lie in [1, {waveform.shape[1]}] (the waveform's samples), got {lengths.tolist()}."
        )


class AudioFrontEnd(nn.Module):
    """Waveforms → normalised (optionally augmented) spectral features with a frame padding mask.

    Pipeline: log-mel (``log(mel power + 1e-6)``) or MFCC (DCT-II of that log-mel, torchaudio ``MFCC`` with
    ``log_mels=True``); optional first and second order deltas (torchaudio ``ComputeDeltas``) stacked as
    channels; per-utterance standardisation of each channel over the valid frames; SpecAugment in training
    mode only. See the module docstring for the padding semantics.

    Deltas of variable-length audio are taken after repeating each utterance's last valid frame over its
    padded frames, as ``ComputeDeltas``' ``replicate`` mode does at the end of an unpadded one.

    SpecAugment (Park et al. 2019): ``freq_masks`` frequency masks of up to ``freq_mask_width`` bands and
    ``time_masks`` time masks of up to ``time_mask_width`` frames (at most ``time_mask_max_fraction`` of the
    frames), drawn independently for each utterance (torchaudio's ``iid_masks``) and shared by its channels;
    masked values are set to 0, the utterance mean after normalisation. Time masks are drawn over the whole
    frame axis, so in a padded batch some fall on padding.

    The transforms' buffers (window, mel filterbank, DCT matrix) follow device moves but stay float32 when
    the module is cast to another dtype (``.half()``, bf16-true precision).

    Args:
        sample_rate: sampling rate of the waveform in Hz.
        n_fft: FFT size = window length in samples.
        hop_length: hop between frames in samples (160 at 16 kHz = 10 ms).
        n_mels: mel bands.
        features: ``"log_mel"`` (``n_mels`` bands) or ``"mfcc"`` (``n_mfcc`` coefficients).
        n_mfcc: cepstral coefficients kept with ``features="mfcc"`` (at most ``n_mels``).
        deltas: 0 (features only), 1 (+ deltas) or 2 (+ deltas and delta-deltas).
        delta_window: window of the delta regression in frames (odd, >= 3).
        normalization: ``"utterance"`` (one mean and std per utterance and channel, over all bands and valid
            frames) or ``"band"`` (one per band: cepstral mean and variance normalisation).
        spec_augment: apply SpecAugment in training mode.
        freq_masks: frequency masks per utterance.
        freq_mask_width: largest frequency mask in bands.
        time_masks: time masks per utterance.
        time_mask_width: largest time mask in frames.
        time_mask_max_fraction: largest fraction of the frames one time mask may cover (SpecAugment's p).

    Attributes:
        num_channels: channels of the output, ``1 + deltas``.
        num_bands: bands of the output, ``n_mels`` or ``n_mfcc``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 160,
        n_mels: int = 64,
        features: AudioFeatures = "log_mel",
        n_mfcc: int = 40,
        deltas: int = 0,
        delta_window: int = 5,
        normalization: AudioNormalization = "utterance",
        spec_augment: bool = False,
        freq_masks: int = 2,
        freq_mask_width: int = 8,
        time_masks: int = 2,
        time_mask_width: int = 10,
        time_mask_max_fraction: float = 1.0,
    ) -> None:
        super().__init__()
        if features not in ("log_mel", "mfcc"):
            raise ValueError(f"features must be 'log_mel' or 'mfcc', got {features!r}.")
        if normalization not in ("utterance", "band"):
            raise ValueError(f"normalization must be 'utterance' or 'band', got {normalization!r}.")
        if deltas not in (0, 1, 2):
            raise ValueError(f"deltas must be 0, 1 or 2, got {deltas}.")
        if features == "mfcc" and not 1 <= n_mfcc <= n_mels:
            raise ValueError(f"n_mfcc must lie in [1, n_mels = {n_mels}], got {n_mfcc}.")
        if hop_length < 1 or n_fft < 2:
            raise ValueError(f"hop_length must be >= 1 and n_fft >= 2, got {hop_length} and {n_fft}.")
        if min(freq_masks, freq_mask_width, time_masks, time_mask_width) < 0:
            raise ValueError("SpecAugment mask counts and widths must be >= 0.")
        if not 0.0 < time_mask_max_fraction <= 1.0:
            raise ValueError(f"time_mask_max_fraction must lie in (0, 1], got {time_mask_max_fraction}.")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.features = features
        self.normalization = normalization
        self.deltas = deltas
        self.spec_augment = spec_augment
        mel_options = {"n_fft": n_fft, "hop_length": hop_length, "n_mels": n_mels, "power": 2.0, "center": True}
        self.transform: nn.Module
        if features == "log_mel":
            self.transform = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, **mel_options)
        else:
            self.transform = torchaudio.transforms.MFCC(
                sample_rate=sample_rate, n_mfcc=n_mfcc, log_mels=True, melkwargs=mel_options
            )
        self.compute_deltas = torchaudio.transforms.ComputeDeltas(win_length=delta_window)
        self.freq_masking = torchaudio.transforms.FrequencyMasking(freq_mask_width, iid_masks=True)
        self.time_masking = torchaudio.transforms.TimeMasking(time_mask_width, iid_masks=True, p=time_mask_max_fraction)
        self.freq_masks = freq_masks
        self.time_masks = time_masks
        self.num_channels = 1 + deltas
        self.num_bands = n_mels if features == "log_mel" else n_mfcc

    @property
    def mel_spectrogram(self) -> torchaudio.transforms.MelSpectrogram:
        """The torchaudio mel-spectrogram transform (inside the MFCC transform with ``features="mfcc"``)."""
        if isinstance(self.transform, torchaudio.transforms.MFCC):
            return self.transform.MelSpectrogram
        return self.transform

    @property
    def min_samples(self) -> int:
        """The fewest samples a waveform may have (the STFT's reflection padding needs ``n_fft // 2 + 1``)."""
        return self.n_fft // 2 + 1

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> AudioFrontEnd:
        # Device moves apply to the transforms' buffers as usual; dtype casts do not (the buffers keep their
        # float32 values exactly, rather than being rounded to bf16 and back).
        def keep_dtype(tensor: Tensor) -> Tensor:
            converted = fn(tensor)
            if tensor.is_floating_point() and converted.dtype != tensor.dtype:
                return tensor.to(device=converted.device)
            return converted

        return super()._apply(keep_dtype, recurse)

    def num_frames(self, num_samples: int) -> int:
        """Frames of a waveform of ``num_samples`` samples (``center=True``): ``num_samples // hop_length + 1``."""
        return num_samples // self.hop_length + 1

    def frame_counts(self, lengths: Tensor) -> Tensor:
        """Valid frames per utterance, long (B,): ``lengths // hop_length + 1`` (see the module docstring)."""
        return torch.div(lengths, self.hop_length, rounding_mode="floor").long() + 1

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Compute features, in float32 with autocast disabled.

        Args:
            waveform: float (B, S) in [-1, 1], S >= ``n_fft // 2 + 1``.
            lengths: valid samples per utterance, integer (B,) in [1, S]; None = every sample is valid.

        Returns:
            ``(features, padding)``: features float32 (B, num_channels, num_bands, T) with
            ``T = S // hop_length + 1``; padding bool (B, T), True on padded frames, or None without ``lengths``.

        Raises:
            ValueError: if the waveform is not (B, S) or ``lengths`` is not integer (B,) within [1, S].
        """
        validate_waveform(waveform, lengths, self.min_samples)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            waveform = waveform.float()
            padding: Tensor | None = None
            counts: Tensor | None = None
            if lengths is not None:
                samples = torch.arange(waveform.shape[1], device=waveform.device)
                waveform = waveform * (samples < lengths.unsqueeze(1))
            features = self.transform(waveform)  # (B, F, T)
            if self.features == "log_mel":
                features = torch.log(features + LOG_EPS)
            frames = torch.arange(features.shape[-1], device=features.device)
            if lengths is not None:
                counts = self.frame_counts(lengths).to(features.device)
                padding = frames >= counts.unsqueeze(1)  # (B, T)
            channels = [features]
            if self.deltas:
                base = features
                if counts is not None:  # repeat the last valid frame over the padding
                    last = torch.minimum(frames, (counts - 1).unsqueeze(1))  # (B, T)
                    base = features.gather(-1, last.unsqueeze(1).expand_as(features))
                channels.append(self.compute_deltas(base))
                if self.deltas == 2:
                    channels.append(self.compute_deltas(channels[-1]))
            stacked = self._standardize(torch.stack(channels, dim=1), padding)  # (B, C, F, T)
            if self.training and self.spec_augment:
                stacked = stacked * self._spec_augment_keep(stacked)
        return stacked, padding

    def _standardize(self, features: Tensor, padding: Tensor | None) -> Tensor:
        """Zero mean, unit (unbiased) variance per utterance and channel (and band) over valid frames; padding → 0.

        Args:
            features: (B, C, F, T).
            padding: bool (B, T) or None.

        Returns:
            (B, C, F, T).
        """
        dims = (-1,) if self.normalization == "band" else (-2, -1)
        if padding is None:
            valid = features.new_ones(1, 1, 1, features.shape[-1])
        else:
            valid = (~padding).to(features.dtype)[:, None, None, :]  # (B, 1, 1, T)
        count = valid.sum(dim=-1, keepdim=True)
        if self.normalization == "utterance":
            count = count * features.shape[-2]
        mean = (features * valid).sum(dim=dims, keepdim=True) / count
        centred = (features - mean) * valid
        variance = centred.square().sum(dim=dims, keepdim=True) / (count - 1).clamp_min(1.0)
        return centred / (variance.sqrt() + STD_EPS)

    def _spec_augment_keep(self, features: Tensor) -> Tensor:
        """SpecAugment keep-mask: float (B, 1, F, T), 0 inside the masks, one draw per utterance."""
        keep = features.new_ones(features.shape[0], 1, *features.shape[2:])
        for _ in range(self.freq_masks):
            keep = self.freq_masking(keep)
        for _ in range(self.time_masks):
            keep = self.time_masking(keep)
        return keep
