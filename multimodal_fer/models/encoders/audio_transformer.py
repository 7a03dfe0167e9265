"""Audio Spectrogram Transformer (AST, after Gong et al., Interspeech 2021), trained from scratch."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multimodal_fer.models.encoders.audio_frontend import AudioFeatures, AudioFrontEnd, AudioNormalization
from multimodal_fer.models.encoders.base import Encoder

TimePositions = Literal["sinusoidal", "learned"]


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or a (bands, frames) pair, got {value!r}.")
    return int(pair[0]), int(pair[1])


def _sinusoidal_codes(length: int, dim: int, device: torch.device) -> Tensor:
    """Sinusoidal position codes, float32 (length, dim) (Vaswani et al. 2017); ``dim`` must be even."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = position * frequency  # (length, dim / 2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)


class AudioSpectrogramTransformer(Encoder):
    """Patches of the (bands × frames) spectrogram → pre-norm transformer encoder with a CLS token.

    The :class:`~multimodal_fer.models.encoders.audio_frontend.AudioFrontEnd` gives (B, C, bands, frames)
    in float32; a Conv2d with kernel ``patch_size`` and stride ``patch_stride`` (stride < size: overlapping
    patches, AST uses 16 × 16 with stride 10) embeds patches to ``d_model``. The frame axis is padded with
    zeros so that every frame lies in a patch; bands that do not fill a last patch are dropped. Each patch
    gets a learned embedding of its frequency row plus an embedding of its time column: sinusoidal (any
    length, the same for every length) or ``"learned"`` (a table of ``learned_time_patches`` entries, linearly
    resampled when the input has another number of time columns, as AST does for other lengths). Tokens are
    ordered time-major (all frequency rows of column 0, then column 1, ...). A CLS token is prepended; the
    output is ``Linear(LayerNorm(CLS))``.

    Variable-length audio (``audio_lengths``): frames are valid as described in
    :mod:`~multimodal_fer.models.encoders.audio_frontend` (padded frames are 0), and a patch is padding when
    all its frames are, i.e. column ``j`` is padding when ``j * stride_frames >= valid frames``. Padded
    patches are masked as attention keys, so samples beyond a length cannot change the output.

    :meth:`forward_tokens` gives the patch tokens through the same final LayerNorm and Linear (so every
    parameter takes part in both modes); unlike the CNN encoders, their mean is not :meth:`forward`'s vector
    (that is the CLS token's).

    Args:
        sample_rate: sampling rate of the waveform in Hz.
        n_fft: FFT size (window length) in samples.
        hop_length: hop between frames in samples.
        n_mels: mel bands.
        out_dim: size of the output vector and of each token.
        d_model: transformer width (even with ``time_positions="sinusoidal"``).
        num_heads: attention heads (must divide ``d_model``).
        num_layers: transformer blocks.
        mlp_ratio: feed-forward width as a multiple of ``d_model``.
        dropout: dropout on embeddings, attention weights and residual branches.
        patch_size: patch (bands, frames), or one int for both.
        patch_stride: stride (bands, frames) between patches, at most ``patch_size`` (overlap = size - stride).
        time_positions: ``"sinusoidal"`` or ``"learned"`` (resampled) time-column embeddings.
        learned_time_patches: entries of the learned time table (time columns it describes without resampling).
        features: ``"log_mel"`` or ``"mfcc"``.
        n_mfcc: cepstral coefficients with ``features="mfcc"``.
        deltas: 0, 1 or 2 delta orders stacked as input channels.
        normalization: ``"utterance"`` or ``"band"`` (see the front end).
        spec_augment: SpecAugment in training mode (masks drawn per utterance).
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
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 128,
        out_dim: int = 128,
        d_model: int = 192,
        num_heads: int = 4,
        num_layers: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        patch_size: int | tuple[int, int] = 16,
        patch_stride: int | tuple[int, int] = 10,
        time_positions: TimePositions = "sinusoidal",
        learned_time_patches: int = 32,
        features: AudioFeatures = "log_mel",
        n_mfcc: int = 40,
        deltas: int = 0,
        normalization: AudioNormalization = "utterance",
        spec_augment: bool = False,
        freq_masks: int = 2,
        freq_mask_width: int = 24,
        time_masks: int = 2,
        time_mask_width: int = 48,
        time_mask_max_fraction: float = 1.0,
    ) -> None:
        super().__init__(out_dim)
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
        self.patch_size = _pair(patch_size, "patch_size")
        self.patch_stride = _pair(patch_stride, "patch_stride")
        if any(s > k for s, k in zip(self.patch_stride, self.patch_size, strict=True)):
            raise ValueError(
                f"patch_stride {self.patch_stride} must not exceed patch_size {self.patch_size} (frames skipped)."
            )
        bands = self.frontend.num_bands
        if bands < self.patch_size[0]:
            raise ValueError(f"The front end gives {bands} bands, fewer than the patch height {self.patch_size[0]}.")
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads}).")
        if time_positions not in ("sinusoidal", "learned"):
            raise ValueError(f"time_positions must be 'sinusoidal' or 'learned', got {time_positions!r}.")
        if time_positions == "sinusoidal" and d_model % 2:
            raise ValueError(f"Sinusoidal time positions need an even d_model, got {d_model}.")
        self.d_model = d_model
        self.time_positions = time_positions
        self.freq_patches = (bands - self.patch_size[0]) // self.patch_stride[0] + 1
        self.patch_embed = nn.Conv2d(
            self.frontend.num_channels, d_model, kernel_size=self.patch_size, stride=self.patch_stride
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.freq_embed = nn.Parameter(torch.zeros(self.freq_patches, d_model))
        self.time_embed = (
            nn.Parameter(torch.zeros(learned_time_patches, d_model)) if time_positions == "learned" else None
        )
        for parameter in (self.cls_token, self.freq_embed, self.time_embed):
            if parameter is not None:
                nn.init.trunc_normal_(parameter, std=0.02)
        self.embed_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model,
            num_heads,
            dim_feedforward=int(d_model * mlp_ratio),
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, out_dim)

    def _time_codes(self, columns: int, device: torch.device) -> Tensor:
        """Time-column embeddings, float (columns, d_model)."""
        if self.time_embed is None:
            return _sinusoidal_codes(columns, self.d_model, device)
        if columns == self.time_embed.shape[0]:
            return self.time_embed
        table = self.time_embed.t().unsqueeze(0)  # (1, d_model, entries)
        return F.interpolate(table, size=columns, mode="linear", align_corners=False)[0].t()

    def encode(self, x: Tensor, audio_lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Run the transformer.

        Args:
            x: waveform, float (B, S).
            audio_lengths: valid samples per utterance, integer (B,), or None (all valid).

        Returns:
            ``(hidden, padding)``: hidden states (B, 1 + N, d_model) after the final LayerNorm (CLS first, then
            N = freq_patches × time columns patch tokens, time-major), and bool (B, N) True on padded patches
            (None without ``audio_lengths``).
        """
        spectrogram, frame_padding = self.frontend(x, audio_lengths)  # (B, C, F, T), (B, T)
        frames = spectrogram.shape[-1]
        size, stride = self.patch_size[1], self.patch_stride[1]
        columns = 1 + math.ceil(max(frames - size, 0) / stride)
        extra = (columns - 1) * stride + size - frames
        spectrogram = F.pad(spectrogram, (0, extra)).to(self.patch_embed.weight.dtype)
        patches = self.patch_embed(spectrogram)  # (B, D, F_p, columns)
        positions = self.freq_embed.unsqueeze(0) + self._time_codes(columns, patches.device).unsqueeze(1)
        tokens = patches.permute(0, 3, 2, 1) + positions.to(patches.dtype)  # (B, columns, F_p, D)
        tokens = tokens.flatten(1, 2)  # (B, N, D)
        batch = tokens.shape[0]
        sequence = self.embed_dropout(torch.cat([self.cls_token.expand(batch, -1, -1).to(tokens.dtype), tokens], 1))
        padding: Tensor | None = None
        key_padding: Tensor | None = None
        if frame_padding is not None:
            # Column j starts at frame j * stride; it is padding when that frame is (padding is a suffix).
            column_padding = F.pad(frame_padding, (0, extra), value=True)[:, ::stride][:, :columns]
            padding = column_padding.repeat_interleave(self.freq_patches, dim=1)  # (B, N)
            key_padding = torch.cat([padding.new_zeros(batch, 1), padding], dim=1)
        hidden = self.encoder(sequence, src_key_padding_mask=key_padding)
        return self.norm(hidden), padding

    def forward(self, x: Tensor, audio_lengths: Tensor | None = None) -> Tensor:
        """Encode waveforms.

        Args:
            x: waveform, float (B, S) in [-1, 1].
            audio_lengths: valid samples per utterance, integer (B,) in [1, S], or None (all valid).

        Returns:
            Features, (B, out_dim): the final Linear on the normalised CLS token.
        """
        hidden, _ = self.encode(x, audio_lengths)
        return self.head(hidden[:, 0])

    def forward_tokens(self, x: Tensor, audio_lengths: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Waveforms → patch tokens through the final LayerNorm and Linear.

        Args:
            x: waveform, float (B, S).
            audio_lengths: valid samples per utterance, integer (B,), or None (all valid).

        Returns:
            Tokens (B, N, out_dim) (time-major patches); with ``audio_lengths``, ``(tokens, padding)`` with
            padding bool (B, N).
        """
        hidden, padding = self.encode(x, audio_lengths)
        tokens = self.head(hidden[:, 1:])
        return tokens if padding is None else (tokens, padding)
