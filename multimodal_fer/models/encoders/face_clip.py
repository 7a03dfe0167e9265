"""Dynamic FER: a per-frame face encoder followed by a temporal transformer or TCN over variable-length clips."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from multimodal_fer.errors import DataError
from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.models.fusion.mult import sinusoidal_positions


def clip_padding(lengths: Tensor | None, batch: int, frames: int, device: torch.device) -> Tensor:
    """Padding mask of clips from their lengths.

    Args:
        lengths: valid frames per clip, integer (B,), each in [1, frames]; None means every clip is full.
        batch: B.
        frames: T, frames per clip in the batch (the longest clip).
        device: where the mask lives.

    Returns:
        bool (B, T), True where a frame lies beyond its clip's length (padding).

    Raises:
        DataError: lengths of the wrong shape, type or range.
    """
    if lengths is None:
        return torch.zeros(batch, frames, dtype=torch.bool, device=device)
    if tuple(lengths.shape) != (batch,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise DataError(
            f"face_clip_lengths must be an integer tensor of shape ({batch},), got {lengths.dtype} "
            f"{tuple(lengths.shape)}."
        )
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > frames:
        raise DataError(
            f"face_clip_lengths range over [{low}, {high}]; each clip needs between 1 and {frames} frames (the "
            "clips' padded length T)."
        )
    return torch.arange(frames, device=device) >= lengths.to(device).unsqueeze(1)


class TemporalResidualBlock(nn.Module):
    """Pre-norm residual block of two dilated, non-causal 1-D convolutions over time.

    Padded time steps are set to zero before each convolution, so they never reach valid steps: a clip's
    valid outputs are those of the clip alone (zero-padded at its borders), whatever the padding holds.

    Args:
        channels: feature size D.
        kernel_size: odd temporal kernel size.
        dilation: spacing of the kernel's taps in frames.
        dropout: dropout between the convolutions.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.norm1 = nn.LayerNorm(channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=padding)
        self.norm2 = nn.LayerNorm(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=padding)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def _conv(conv: nn.Conv1d, x: Tensor, padding: Tensor) -> Tensor:
        x = x.masked_fill(padding.unsqueeze(-1), 0.0)
        return conv(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        """Frames (B, T, D), padding bool (B, T) (True = padded frame) → frames (B, T, D)."""
        h = self._conv(self.conv1, self.act(self.norm1(x)), padding)
        h = self._conv(self.conv2, self.dropout(self.act(self.norm2(h))), padding)
        return x + h


class FaceClipEncoder(Encoder):
    """Dynamic FER encoder: a face encoder on every frame, then a temporal model over the clip.

    Frames are encoded independently by ``frame_encoder`` (any face
    :class:`~multimodal_fer.models.encoders.Encoder`, e.g. ``FaceCNN`` or ``FaceBackbone``), projected to
    ``d_model`` and passed to the temporal model:

    - ``"transformer"``: a pre-norm transformer encoder with time positions (``"sinusoidal"`` or
      ``"learned"``, up to ``max_frames``), a final layer norm, and ``"cls"`` pooling (a learned summary token
      in front of the frames) or ``"mean"`` pooling over the valid frames;
    - ``"tcn"``: ``num_layers`` residual blocks of non-causal 1-D convolutions with dilations 1, 2, 4, ...
      (receptive field ``1 + 2 (kernel_size - 1) (2 ** num_layers - 1)`` frames), a final layer norm and mean
      pooling over the valid frames.

    A linear layer maps the pooled vector to ``out_dim`` (:meth:`forward`) and each frame's output to a token
    (:meth:`forward_tokens`); with ``"mean"`` pooling the mean of a clip's valid tokens equals its vector.

    Variable-length clips: the side input ``face_clip_lengths`` (long (B,)) gives each clip's valid frames;
    the frames after them are padding. Padded frames are never encoded (so they cannot disturb batch-norm
    statistics either), are excluded from attention (``key_padding_mask``), zeroed before every convolution
    and left out of the pooling: they cannot change the output, and a padded clip gets the output of the same
    clip alone. Without ``face_clip_lengths`` every frame counts.

    Args:
        frame_encoder: the per-frame face encoder, (N, 3, H, W) → (N, frame_encoder.out_dim).
        out_dim: size of the output feature vector (and of each token).
        temporal: the temporal model, ``"transformer"`` or ``"tcn"``.
        d_model: width of the temporal model.
        num_layers: transformer layers, or TCN residual blocks.
        num_heads: attention heads of the transformer (must divide ``d_model``).
        dropout: dropout inside the temporal model.
        positions: the transformer's time positions, ``"sinusoidal"`` (any length) or ``"learned"``.
        max_frames: longest clip learned positions cover.
        pooling: ``"mean"`` over valid frames, or ``"cls"`` (transformer only).
        kernel_size: the TCN's odd temporal kernel size.

    Input: normalised float clips (B, T, 3, H, W), optionally ``face_clip_lengths`` long (B,) in [1, T].
    Output: (B, out_dim).

    """

    modality = "face"
    side_inputs = ("face_clip_lengths",)

    def __init__(
        self,
        frame_encoder: Encoder,
        out_dim: int = 128,
        temporal: Literal["transformer", "tcn"] = "transformer",
        d_model: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        positions: Literal["sinusoidal", "learned"] = "sinusoidal",
        max_frames: int = 64,
        pooling: Literal["mean", "cls"] = "mean",
        kernel_size: int = 3,
    ) -> None:
        super().__init__(out_dim)
        if frame_encoder.modality != "face":
            raise ValueError(
                f"frame_encoder is a {type(frame_encoder).__name__}, which reads {frame_encoder.modality!r}; "
                "FaceClipEncoder needs a face encoder (FaceCNN, FaceBackbone, ...)."
            )
        if temporal not in ("transformer", "tcn"):
            raise ValueError(f"temporal must be 'transformer' or 'tcn', got {temporal!r}.")
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}.")
        if pooling == "cls" and temporal != "transformer":
            raise ValueError("pooling='cls' needs temporal='transformer'; the TCN pools with 'mean'.")
        if positions not in ("sinusoidal", "learned"):
            raise ValueError(f"positions must be 'sinusoidal' or 'learned', got {positions!r}.")
        if num_layers < 1 or d_model < 1 or max_frames < 1:
            raise ValueError(
                f"num_layers, d_model and max_frames must be positive, got {num_layers}, {d_model}, {max_frames}."
            )
        if temporal == "transformer" and d_model % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide d_model ({d_model}).")
        if temporal == "tcn" and (kernel_size < 1 or kernel_size % 2 == 0):
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}.")
        self.frame_encoder = frame_encoder
        self.temporal = temporal
        self.pooling = pooling
        self.positions = positions
        self.max_frames = int(max_frames)
        self.input_proj = nn.Linear(frame_encoder.out_dim, d_model)
        if temporal == "transformer":
            layer = nn.TransformerEncoderLayer(
                d_model, num_heads, 4 * d_model, dropout, activation="gelu", batch_first=True, norm_first=True
            )
            self.transformer: nn.TransformerEncoder | None = nn.TransformerEncoder(
                layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
            )
            self.tcn: nn.ModuleList | None = None
            self.cls_token = nn.Parameter(torch.randn(d_model) * 0.02) if pooling == "cls" else None
            self.time_embedding = (
                nn.Parameter(torch.randn(max_frames, d_model) * 0.02) if positions == "learned" else None
            )
        else:
            self.transformer = None
            self.tcn = nn.ModuleList(
                TemporalResidualBlock(d_model, kernel_size, 2**i, dropout) for i in range(num_layers)
            )
            self.tcn_norm = nn.LayerNorm(d_model)
            self.cls_token = None
            self.time_embedding = None
        self.out_proj = nn.Linear(d_model, out_dim)

    # ------------------------------------------------------------------------------------------------ parts
    def encode_frames(self, x: Tensor, padding: Tensor) -> Tensor:
        """Run the frame encoder on the valid frames only.

        Args:
            x: clips (B, T, 3, H, W).
            padding: bool (B, T), True = padded frame.

        Returns:
            Frame features (B, T, frame_encoder.out_dim), zeros at padded frames.
        """
        batch, frames = x.shape[:2]
        flat = x.flatten(0, 1)  # (B·T, 3, H, W)
        if not bool(padding.any()):
            return self.frame_encoder(flat).view(batch, frames, -1)
        valid = (~padding.flatten()).nonzero(as_tuple=True)[0]
        encoded = self.frame_encoder(flat[valid])  # (N_valid, D_f)
        return encoded.new_zeros(batch * frames, encoded.shape[1]).index_put((valid,), encoded).view(batch, frames, -1)

    def temporal_outputs(self, x: Tensor, padding: Tensor) -> tuple[Tensor, Tensor | None]:
        """Clips → per-frame outputs of the temporal model and the CLS output.

        Args:
            x: clips (B, T, 3, H, W).
            padding: bool (B, T), True = padded frame.

        Returns:
            Frame outputs (B, T, d_model) (meaningless at padded frames) and the summary token's output
            (B, d_model) with ``"cls"`` pooling, else None.
        """
        h = self.input_proj(self.encode_frames(x, padding))  # (B, T, d_model)
        frames = h.shape[1]
        if self.transformer is None:
            assert self.tcn is not None
            for block in self.tcn:
                h = block(h, padding)
            return self.tcn_norm(h), None
        if self.time_embedding is not None:
            if frames > self.max_frames:
                raise DataError(
                    f"Clips have {frames} frames but the learned time positions cover max_frames={self.max_frames}; "
                    "raise max_frames or use positions: sinusoidal."
                )
            h = h + self.time_embedding[:frames]
        else:
            h = h + sinusoidal_positions(frames, h.shape[-1], h.device, h.dtype)
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.to(h.dtype).expand(h.shape[0], 1, -1), h], dim=1)
            padding = torch.cat([padding.new_zeros(h.shape[0], 1), padding], dim=1)
        h = self.transformer(h, src_key_padding_mask=padding if bool(padding.any()) else None)
        if self.cls_token is not None:
            return h[:, 1:], h[:, 0]
        return h, None

    def _check(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        if x.ndim != 5 or x.shape[2] != 3:
            raise DataError(
                f"FaceClipEncoder expects clips of shape (B, T, 3, H, W), got {tuple(x.shape)}; a batch of single "
                "images needs FaceCNN or FaceBackbone."
            )
        return clip_padding(lengths, x.shape[0], x.shape[1], x.device)

    # ---------------------------------------------------------------------------------------------- outputs
    def forward_tokens(self, x: Tensor, face_clip_lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Clips → one token per frame, and the padding mask.

        Args:
            x: normalised clips, float (B, T, 3, H, W).
            face_clip_lengths: valid frames per clip, long (B,); None = all T.

        Returns:
            Tokens (B, T, out_dim), exactly zero at padded frames, and padding bool (B, T) (True = padded).
        """
        padding = self._check(x, face_clip_lengths)
        frames, _ = self.temporal_outputs(x, padding)
        tokens = self.out_proj(frames)
        return tokens.masked_fill(padding.unsqueeze(-1), 0.0), padding

    def forward(self, x: Tensor, face_clip_lengths: Tensor | None = None) -> Tensor:
        """Encode clips.

        Args:
            x: normalised clips, float (B, T, 3, H, W).
            face_clip_lengths: valid frames per clip, long (B,); None = all T.

        Returns:
            Features, (B, out_dim).
        """
        padding = self._check(x, face_clip_lengths)
        frames, summary = self.temporal_outputs(x, padding)
        if summary is None:
            valid = (~padding).sum(dim=1, keepdim=True).to(frames.dtype)  # (B, 1)
            summary = frames.masked_fill(padding.unsqueeze(-1), 0.0).sum(dim=1) / valid
        return self.out_proj(summary)
