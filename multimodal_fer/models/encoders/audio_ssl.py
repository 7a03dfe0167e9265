"""Self-supervised speech encoders (wav2vec 2.0, HuBERT, WavLM) from torchaudio's builders, on local weights."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from multimodal_fer.errors import DataError
from multimodal_fer.models.encoders.audio_ssl_weights import load_speech_weights
from multimodal_fer.models.encoders.base import Encoder

SSLArchitecture = Literal[
    "wav2vec2_base",
    "wav2vec2_large",
    "wav2vec2_large_lv60k",
    "wav2vec2_xlsr_300m",
    "hubert_base",
    "hubert_large",
    "wavlm_base",
    "wavlm_large",
]
SSLFreeze = Literal["none", "feature_extractor", "all"]

#: The rate every released wav2vec 2.0 / HuBERT / WavLM model was trained at.
SSL_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class SSLShape:
    """Hyperparameters of one released architecture (the values of torchaudio's builder of the same name).

    Attributes:
        family: ``"wav2vec2"``, ``"hubert"`` or ``"wavlm"``.
        extractor_mode: ``"group_norm"`` (base-style) or ``"layer_norm"`` feature extractor.
        conv_bias: the feature extractor's convolutions have biases.
        embed_dim: transformer width.
        num_layers: transformer layers.
        num_heads: attention heads.
        ff_dim: feed-forward width.
        layer_norm_first: pre-norm transformer (large models).
        normalize_waveform: the model was pre-trained on per-utterance standardised waveforms.
    """

    family: str
    extractor_mode: str
    conv_bias: bool
    embed_dim: int
    num_layers: int
    num_heads: int
    ff_dim: int
    layer_norm_first: bool
    normalize_waveform: bool


_BASE = {"embed_dim": 768, "num_layers": 12, "num_heads": 12, "ff_dim": 3072}
_LARGE = {"embed_dim": 1024, "num_layers": 24, "num_heads": 16, "ff_dim": 4096}
_POST_NORM = {"extractor_mode": "group_norm", "layer_norm_first": False, "normalize_waveform": False}
_PRE_NORM = {"extractor_mode": "layer_norm", "layer_norm_first": True, "normalize_waveform": True}

#: The released architectures by torchaudio builder name.
ARCHITECTURES: dict[str, SSLShape] = {
    "wav2vec2_base": SSLShape("wav2vec2", conv_bias=False, **_BASE, **_POST_NORM),
    "wav2vec2_large": SSLShape("wav2vec2", conv_bias=False, **_LARGE, **_POST_NORM),
    "wav2vec2_large_lv60k": SSLShape("wav2vec2", conv_bias=True, **_LARGE, **_PRE_NORM),
    "wav2vec2_xlsr_300m": SSLShape("wav2vec2", conv_bias=True, **_LARGE, **_PRE_NORM),
    "hubert_base": SSLShape("hubert", conv_bias=False, **_BASE, **_POST_NORM),
    "hubert_large": SSLShape("hubert", conv_bias=False, **_LARGE, **_PRE_NORM),
    "wavlm_base": SSLShape("wavlm", conv_bias=False, **_BASE, **_POST_NORM),
    "wavlm_large": SSLShape("wavlm", conv_bias=False, **_LARGE, **_PRE_NORM),
}
#: The feature extractor's convolutions (channels, kernel, stride): 400 samples per frame, 20 ms hop at 16 kHz.
CONV_KERNELS_STRIDES = [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2
#: Channels of every feature-extractor convolution in the released models.
CONV_CHANNELS = 512
#: The positional convolution of the released models: kernel and groups.
POS_CONV_KERNEL, POS_CONV_GROUPS = 128, 16
#: WavLM's relative-position buckets and largest distance.
WAVLM_BUCKETS, WAVLM_MAX_DISTANCE = 320, 800
#: Added to the variance in the per-utterance waveform standardisation.
WAVEFORM_EPS = 1e-7


def build_speech_model(
    shape: SSLShape,
    conv_channels: int,
    pos_conv_kernel: int,
    pos_conv_groups: int,
    dropout: float,
) -> torchaudio.models.Wav2Vec2Model:
    """A torchaudio ``Wav2Vec2Model`` of the given shape, without a CTC head, randomly initialised.

    Args:
        shape: the architecture's hyperparameters.
        conv_channels: channels of every feature-extractor convolution.
        pos_conv_kernel: kernel of the positional convolution.
        pos_conv_groups: groups of the positional convolution.
        dropout: dropout of the feature projection, attention weights, feed-forward and residual branches.

    Returns:
        The model (layer drop off: every layer runs, so that each hidden state is defined).
    """
    common = {
        "extractor_mode": shape.extractor_mode,
        "extractor_conv_layer_config": [(conv_channels, k, s) for k, s in CONV_KERNELS_STRIDES],
        "extractor_conv_bias": shape.conv_bias,
        "encoder_embed_dim": shape.embed_dim,
        "encoder_projection_dropout": dropout,
        "encoder_pos_conv_kernel": pos_conv_kernel,
        "encoder_pos_conv_groups": pos_conv_groups,
        "encoder_num_layers": shape.num_layers,
        "encoder_num_heads": shape.num_heads,
        "encoder_attention_dropout": dropout,
        "encoder_ff_interm_features": shape.ff_dim,
        "encoder_ff_interm_dropout": dropout,
        "encoder_dropout": dropout,
        "encoder_layer_norm_first": shape.layer_norm_first,
        "encoder_layer_drop": 0.0,
        "aux_num_out": None,
    }
    if shape.family == "wavlm":
        return torchaudio.models.wavlm_model(
            encoder_num_buckets=WAVLM_BUCKETS, encoder_max_distance=WAVLM_MAX_DISTANCE, **common
        )
    return torchaudio.models.wav2vec2_model(**common)


def receptive_field() -> int:
    """Samples one frame of the feature extractor reads (400 for the released convolutions)."""
    field = 1
    for kernel, stride in reversed(CONV_KERNELS_STRIDES):
        field = (field - 1) * stride + kernel
    return field


class AudioSSLEncoder(Encoder):
    """wav2vec 2.0 / HuBERT / WavLM on raw 16 kHz waveforms; one hidden layer or a learned mix of all (SUPERB).

    The model is built with torchaudio's components (``torchaudio.models.wav2vec2_model`` / ``wavlm_model`` with
    the hyperparameters of the builder named by ``architecture``) and starts from the local checkpoint
    ``pretrained_path`` (torchaudio, Hugging Face or fairseq naming: see
    :mod:`~multimodal_fer.models.encoders.audio_ssl_weights`); nothing is downloaded.

    Hidden states are numbered 0 to L (L = transformer layers): 0 is the transformer's input (feature projection
    plus positional convolution), l the output of layer l; for pre-norm (large) models the last one passes the
    transformer's final LayerNorm, as in the models' own output. With ``layer`` set, that state is used and the
    layers above it are removed after loading (never run, no parameters). With ``layer=None`` the states are mixed
    with softmax-normalised learned weights (one per state, starting equal), as in SUPERB's weighted sum; with
    ``normalize_layers`` each state is first standardised over its features (LayerNorm without parameters), so
    that states of different scale mix evenly. The frames of the chosen or mixed state are projected to
    ``out_dim``: :meth:`forward` gives ``proj(mean over valid frames)``, :meth:`forward_tokens` ``proj`` of every
    frame, so the mean of the valid tokens is the vector.

    Variable-length audio (``audio_lengths``): samples at and beyond each length are set to 0 before the model
    (after the optional standardisation, whose statistics use the valid samples only), frames are valid up to
    the feature extractor's output length of the valid samples (at least one), padded frames are zeroed after
    the feature projection and masked as attention keys, and only valid frames are pooled. So samples beyond a
    length cannot change the output. (The base models' GroupNorm feature extractor normalises over the whole
    padded utterance, so the *amount* of padding does change it slightly, as in the released models.)

    Args:
        architecture: a torchaudio builder's name, e.g. ``wav2vec2_base``, ``hubert_base``, ``wavlm_base`` or
            their ``_large`` variants; it must be the architecture of the checkpoint.
        out_dim: size of the output vector (and of each token).
        pretrained_path: a local checkpoint of the architecture (``.pt``, ``.pth``, ``.bin``, ``.ckpt`` or
            ``.safetensors``); None: random initialisation (only for tests or training from scratch).
        layer: the hidden state to use, 0 to L; None (default) learns a weighted sum of all of them.
        normalize_layers: standardise each hidden state over its features before the weighted sum.
        freeze: ``"feature_extractor"`` (default: the convolutional feature extractor stays fixed, as in the
            released fine-tuning recipes), ``"all"`` (the whole speech model stays fixed; only the layer weights
            and the projection learn, SUPERB's protocol) or ``"none"``. Fixed parts run in eval mode without
            gradients. Freezing needs ``pretrained_path``.
        normalize_waveform: standardise each waveform over its valid samples; None (default) does what the
            architecture was pre-trained with (the large, pre-norm models: yes; the base models: no).
        dropout: dropout inside the speech model (feature projection, attention, feed-forward, residuals).
        embed_dim: transformer width instead of the architecture's (only for small models trained from scratch
            or tests: a released checkpoint needs the architecture's own sizes).
        num_layers: transformer layers instead of the architecture's (same caveat).
        num_heads: attention heads instead of the architecture's (same caveat).
        ff_dim: feed-forward width instead of the architecture's (same caveat).
        conv_channels: channels of the feature extractor's convolutions instead of 512 (same caveat).
        pos_conv_kernel: kernel of the positional convolution instead of 128 (same caveat).
        pos_conv_groups: groups of the positional convolution instead of 16 (same caveat).

    Input: waveform, float (B, S) at 16 kHz in [-1, 1], S >= 400; side input ``audio_lengths`` integer (B,) in
    [1, S], optional.
    Output: (B, out_dim).

    Raises:
        ValueError: an unknown architecture, a layer out of range, freezing without weights, bad sizes.
        FileNotFoundError: ``pretrained_path`` does not exist.
        DataError: the checkpoint does not fit the architecture (keys listed).
    """

    modality = "audio"
    side_inputs = ("audio_lengths",)

    def __init__(
        self,
        architecture: SSLArchitecture = "wav2vec2_base",
        out_dim: int = 128,
        pretrained_path: str | None = None,
        layer: int | None = None,
        normalize_layers: bool = True,
        freeze: SSLFreeze = "feature_extractor",
        normalize_waveform: bool | None = None,
        dropout: float = 0.1,
        embed_dim: int | None = None,
        num_layers: int | None = None,
        num_heads: int | None = None,
        ff_dim: int | None = None,
        conv_channels: int | None = None,
        pos_conv_kernel: int | None = None,
        pos_conv_groups: int | None = None,
    ) -> None:
        super().__init__(out_dim)
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}.")
        if freeze not in ("none", "feature_extractor", "all"):
            raise ValueError(f"freeze must be 'none', 'feature_extractor' or 'all', got {freeze!r}.")
        if freeze != "none" and pretrained_path is None:
            raise ValueError(
                f"freeze={freeze!r} keeps randomly initialised weights fixed, which never learn. Give "
                "pretrained_path (a local checkpoint of the architecture), or set freeze: none to train from scratch."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}.")
        released = ARCHITECTURES[architecture]
        overrides = {"embed_dim": embed_dim, "num_layers": num_layers, "num_heads": num_heads, "ff_dim": ff_dim}
        sizes = {name: getattr(released, name) if value is None else value for name, value in overrides.items()}
        if min(sizes.values()) < 1 or sizes["embed_dim"] % sizes["num_heads"]:
            raise ValueError(f"Sizes must be positive and embed_dim divisible by num_heads, got {sizes}.")
        self.shape = SSLShape(
            family=released.family,
            extractor_mode=released.extractor_mode,
            conv_bias=released.conv_bias,
            layer_norm_first=released.layer_norm_first,
            normalize_waveform=released.normalize_waveform if normalize_waveform is None else normalize_waveform,
            **sizes,
        )
        total = self.shape.num_layers
        if layer is not None and not 0 <= layer <= total:
            raise ValueError(f"layer must lie in [0, {total}] (0: the transformer's input), got {layer}.")
        self.architecture = architecture
        self.pretrained_path = pretrained_path
        self.layer = layer
        self.normalize_layers = normalize_layers
        self.freeze = freeze
        self.model = build_speech_model(
            self.shape,
            conv_channels=conv_channels or CONV_CHANNELS,
            pos_conv_kernel=pos_conv_kernel or POS_CONV_KERNEL,
            pos_conv_groups=pos_conv_groups or POS_CONV_GROUPS,
            dropout=dropout,
        )
        if pretrained_path is not None:
            load_speech_weights(self.model, pretrained_path, architecture, wavlm=self.shape.family == "wavlm")
        transformer = self.model.encoder.transformer
        #: Whether the last state passes the transformer's final LayerNorm (pre-norm models, every layer kept).
        self.final_norm = self.shape.layer_norm_first and (layer is None or layer == total)
        if layer is not None:
            transformer.layers = transformer.layers[:layer]
            if self.shape.layer_norm_first and layer < total:
                transformer.layer_norm = nn.Identity()  # only the last layer's output passes it: unused here
        self.num_states = len(transformer.layers) + 1
        self.layer_weights = nn.Parameter(torch.zeros(self.num_states)) if layer is None else None
        self.proj = nn.Linear(self.shape.embed_dim, out_dim)
        if freeze != "none":
            self.model.feature_extractor.requires_grad_(False)
        if freeze == "all":
            self.model.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> AudioSSLEncoder:
        """Set train or eval mode; frozen parts of the speech model stay in eval mode."""
        super().train(mode)
        if self.freeze != "none":
            self.model.feature_extractor.eval()
        if self.freeze == "all":
            self.model.eval()
        return self

    @property
    def min_samples(self) -> int:
        """The fewest samples a waveform may have: one frame of the feature extractor (400)."""
        return receptive_field()

    def _validate(self, x: Tensor, lengths: Tensor | None) -> None:
        if x.ndim != 2:
            hint = " (mono audio: drop or average the channel axis)" if x.ndim == 3 else ""
            raise DataError(f"AudioSSLEncoder expects waveforms of shape (B, S), got {tuple(x.shape)}{hint}.")
        if x.shape[1] < self.min_samples:
            raise DataError(
                f"AudioSSLEncoder needs at least {self.min_samples} samples (25 ms at 16 kHz), got {x.shape[1]}."
            )
        if lengths is None:
            return
        if lengths.shape != x.shape[:1] or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
            raise DataError(
                f"audio_lengths must be an integer tensor of shape ({x.shape[0]},), got {lengths.dtype} "
                f"{tuple(lengths.shape)}."
            )
        if bool(((lengths < 1) | (lengths > x.shape[1])).any()):
            raise DataError(f"audio_lengths must lie in [1, {x.shape[1]}], got {lengths.tolist()}.")

    def _prepare_waveform(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """Standardise (if configured) over valid samples and zero the samples beyond each length; float32."""
        x = x.float()
        valid = None
        if lengths is not None:
            valid = (torch.arange(x.shape[1], device=x.device) < lengths.unsqueeze(1)).float()  # (B, S)
        if self.shape.normalize_waveform:
            weight = valid if valid is not None else torch.ones_like(x)
            count = weight.sum(dim=1, keepdim=True)
            mean = (x * weight).sum(dim=1, keepdim=True) / count
            variance = ((x - mean).square() * weight).sum(dim=1, keepdim=True) / count
            x = (x - mean) / torch.sqrt(variance + WAVEFORM_EPS)
        return x if valid is None else x * valid

    def hidden_states(self, x: Tensor, audio_lengths: Tensor | None = None) -> tuple[list[Tensor], Tensor | None]:
        """The speech model's hidden states 0 to L (or to ``layer``) and the frame padding.

        Args:
            x: waveform, float (B, S) at 16 kHz.
            audio_lengths: valid samples per utterance, integer (B,) in [1, S], or None (all valid).

        Returns:
            ``(states, padding)``: ``num_states`` tensors (B, T, embed_dim) with T = frames of S samples (20 ms
            each), and padding bool (B, T), True on padded frames (None without ``audio_lengths``).
        """
        self._validate(x, audio_lengths)
        # Prepared in float32, then given in the parameters' dtype (bf16-true precision casts the model).
        waveform = self._prepare_waveform(x, audio_lengths).to(self.proj.weight.dtype)
        extractor_grad = self.freeze == "none" and torch.is_grad_enabled()
        with contextlib.nullcontext() if extractor_grad else torch.no_grad():
            features, frames = self.model.feature_extractor(waveform, audio_lengths)  # (B, T, C), (B,)
        transformer_grad = self.freeze != "all" and torch.is_grad_enabled()
        with contextlib.nullcontext() if transformer_grad else torch.no_grad():
            states, padding = self._transformer_states(features, frames)
        return states, padding

    def _transformer_states(self, features: Tensor, frames: Tensor | None) -> tuple[list[Tensor], Tensor | None]:
        encoder = self.model.encoder
        transformer = encoder.transformer
        hidden = encoder.feature_projection(features)  # (B, T, embed_dim)
        padding: Tensor | None = None
        attention_mask: Tensor | None = None  # wav2vec 2.0 / HuBERT: additive (B, 1, T, T), as torchaudio builds it
        key_padding: Tensor | None = None  # WavLM: additive (B, T) in the dtype of its position bias (parameters)
        if frames is not None:
            counts = frames.clamp_min(1)  # an utterance shorter than one frame keeps its (zero-padded) first frame
            padding = torch.arange(hidden.shape[1], device=hidden.device) >= counts.unsqueeze(1)  # (B, T)
            hidden = hidden.masked_fill(padding.unsqueeze(-1), 0.0)
            if self.shape.family == "wavlm":
                key_padding = padding.to(self.proj.weight.dtype).masked_fill(padding, float("-inf"))
            else:
                attention_mask = (padding.to(hidden.dtype) * -10000.0)[:, None, None, :]
                attention_mask = attention_mask.expand(-1, 1, hidden.shape[1], -1)
        # torchaudio 2.11's own preparation of the transformer input (positional convolution, norm, dropout).
        hidden = transformer._preprocess(hidden)
        states = [hidden]
        position_bias = None
        for block in transformer.layers:
            hidden, position_bias = block(
                hidden,
                attention_mask,
                position_bias=position_bias,
                key_padding_mask=key_padding,
            )
            states.append(hidden)
        if self.final_norm:
            states[-1] = transformer.layer_norm(states[-1])
        return states, padding

    def frame_features(self, x: Tensor, audio_lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Waveforms → the chosen or mixed hidden state (B, T, embed_dim), before projection, and its padding."""
        states, padding = self.hidden_states(x, audio_lengths)
        if self.layer_weights is None:
            return states[-1], padding
        if self.normalize_layers:
            states = [F.layer_norm(state, state.shape[-1:]) for state in states]
        weights = torch.softmax(self.layer_weights, dim=0)
        mixed = torch.stack(states).mul(weights.to(states[0].dtype)[:, None, None, None]).sum(dim=0)
        return mixed, padding

    def forward_tokens(self, x: Tensor, audio_lengths: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Waveforms → one token per 20-ms frame, (B, T, out_dim); with ``audio_lengths`` also the padding (B, T)."""
        frames, padding = self.frame_features(x, audio_lengths)
        tokens = self.proj(frames)
        return tokens if padding is None else (tokens, padding)

    def forward(self, x: Tensor, audio_lengths: Tensor | None = None) -> Tensor:
        """Encode waveforms.

        Args:
            x: waveform, float (B, S) at 16 kHz in [-1, 1].
            audio_lengths: valid samples per utterance, integer (B,) in [1, S], or None (all valid).

        Returns:
            Features, (B, out_dim): the projection of the valid frames' mean.
        """
        frames, padding = self.frame_features(x, audio_lengths)
        if padding is None:
            return self.proj(frames.mean(dim=1))
        valid = (~padding).to(frames.dtype).unsqueeze(-1)  # (B, T, 1)
        return self.proj((frames * valid).sum(dim=1) / valid.sum(dim=1))
