"""Load a local wav2vec 2.0 / HuBERT / WavLM checkpoint into a torchaudio ``Wav2Vec2Model``; never downloads.

Three naming schemes are read and renamed to torchaudio's:

- **torchaudio** (``torch.save(model.state_dict())`` of a ``torchaudio.models.wav2vec2_model`` / ``hubert_base`` /
  ``wavlm_base`` ... model): ``feature_extractor.*``, ``encoder.feature_projection.*``, ``encoder.transformer.*``.
- **Hugging Face** (``pytorch_model.bin`` or ``model.safetensors`` of a ``Wav2Vec2Model`` / ``HubertModel`` /
  ``WavLMModel``, with or without the ``wav2vec2.`` / ``hubert.`` / ``wavlm.`` prefix of the pre-training and CTC
  classes): ``feature_extractor.*``, ``feature_projection.*``, ``encoder.*``; WavLM's separate q/k/v projections are
  joined into the packed projection torchaudio's WavLM attention uses.
- **fairseq** (a wav2vec 2.0 or HuBERT ``.pt`` of the fairseq releases, the weights under ``model``; fine-tuned ones
  under ``w2v_encoder.w2v_model.``): ``post_extract_proj``, ``encoder.pos_conv.0``, ``self_attn``, ``fc1``/``fc2``.

Only the encoder's weights are taken: keys outside the prefix they sit under (a CTC head, another model's weights
in a Lightning checkpoint) and the pre-training-only entries listed in :data:`PRETRAINING_ONLY` (mask embedding,
quantiser, target projections) are ignored. Every other key must map to a weight of the model with the right
shape, and every weight of the model must be found; otherwise a :class:`~multimodal_fer.errors.DataError` lists the
missing, unexpected and wrongly shaped keys by their torchaudio names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from multimodal_fer.errors import DataError
from multimodal_fer.models.encoders.face_backbone import read_state_dict

#: How many offending keys an error message lists.
_SHOWN_KEYS = 6
#: The first convolution's weight in torchaudio / Hugging Face naming, and in fairseq naming: marks the prefix.
_ANCHORS = ("feature_extractor.conv_layers.0.conv.weight", "feature_extractor.conv_layers.0.0.weight")
#: Entries only pre-training uses (after the prefix is removed); ignored.
PRETRAINING_ONLY = re.compile(r"^(mask_emb|masked_spec_embed|label_embs_concat|quantizer\.|project_q\.|final_proj\.)")

_FAIRSEQ_RULES = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)$", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"^feature_extractor\.conv_layers\.0\.2\.(weight|bias)$", r"feature_extractor.conv_layers.0.layer_norm.\1"),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.1\.(.+)$", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"^layer_norm\.(weight|bias)$", r"encoder.feature_projection.layer_norm.\1"),
    (r"^post_extract_proj\.(weight|bias)$", r"encoder.feature_projection.projection.\1"),
    (r"^encoder\.pos_conv\.0\.(.+)$", r"encoder.transformer.pos_conv_embed.conv.\1"),
    (r"^encoder\.layer_norm\.(weight|bias)$", r"encoder.transformer.layer_norm.\1"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.(.+)$", r"encoder.transformer.layers.\1.attention.\2"),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.(.+)$", r"encoder.transformer.layers.\1.layer_norm.\2"),
    (r"^encoder\.layers\.(\d+)\.fc1\.(.+)$", r"encoder.transformer.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"^encoder\.layers\.(\d+)\.fc2\.(.+)$", r"encoder.transformer.layers.\1.feed_forward.output_dense.\2"),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.(.+)$", r"encoder.transformer.layers.\1.final_layer_norm.\2"),
]
_HUGGING_FACE_RULES = [
    (r"^feature_projection\.(.+)$", r"encoder.feature_projection.\1"),
    (r"^encoder\.(.+)$", r"encoder.transformer.\1"),
]
#: The weight-norm parameters of the positional convolution: old ``weight_g``/``weight_v`` names → parametrisation.
_WEIGHT_NORM_RULES = [
    (r"\.weight_g$", ".parametrizations.weight.original0"),
    (r"\.weight_v$", ".parametrizations.weight.original1"),
]


def _list_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, replacement in rules:
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            return renamed
    return key


def _find_prefix(keys: list[str], source: str) -> str:
    """The one prefix under which the checkpoint's first feature-extractor convolution sits."""
    prefixes = sorted({key[: -len(anchor)] for key in keys for anchor in _ANCHORS if key.endswith(anchor)})
    if not prefixes:
        raise DataError(
            f"{source} holds no wav2vec 2.0 / HuBERT / WavLM weights: no key ends in {_ANCHORS[0]!r} (torchaudio, "
            f"Hugging Face) or {_ANCHORS[1]!r} (fairseq). Its keys: {_list_keys(sorted(keys))}."
        )
    if len(prefixes) > 1:
        raise DataError(
            f"{source} holds several speech models (under the prefixes {prefixes}); save only the one to load."
        )
    return prefixes[0]


def detect_format(keys: list[str]) -> str:
    """The naming scheme of checkpoint keys (prefix already removed): ``torchaudio``, ``huggingface`` or ``fairseq``.

    Args:
        keys: the checkpoint's keys without their prefix.

    Returns:
        The scheme's name.
    """
    if any(k.startswith(("post_extract_proj.", "encoder.pos_conv.0.")) or k.endswith(_ANCHORS[1]) for k in keys):
        return "fairseq"
    if any(k.startswith("feature_projection.") for k in keys):
        return "huggingface"
    return "torchaudio"


def _pack_wavlm_projections(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hugging Face WavLM's ``q_proj``/``k_proj``/``v_proj``/``out_proj`` → torchaudio's packed attention weights."""
    packed = dict(state)
    pattern = re.compile(r"^(encoder\.transformer\.layers\.\d+\.attention)\.q_proj\.(weight|bias)$")
    for match in filter(None, (pattern.match(k) for k in state)):
        layer, kind = match.groups()
        parts = [f"{layer}.{name}_proj.{kind}" for name in ("q", "k", "v")]
        if all(part in packed for part in parts):
            packed[f"{layer}.attention.in_proj_{kind}"] = torch.cat([packed.pop(part) for part in parts])
    for key in [k for k in packed if re.match(r"^encoder\.transformer\.layers\.\d+\.attention\.out_proj\.", k)]:
        packed[key.replace(".attention.out_proj.", ".attention.attention.out_proj.")] = packed.pop(key)
    return packed


def to_torchaudio_names(state: Mapping[str, Tensor], wavlm: bool) -> tuple[dict[str, Tensor], str]:
    """Rename a speech checkpoint's encoder weights to torchaudio's ``Wav2Vec2Model`` names.

    Args:
        state: the checkpoint's tensors, keyed as stored (any prefix, any of the three schemes).
        wavlm: the target is a WavLM model (Hugging Face's q/k/v projections are then packed).

    Returns:
        ``(weights, description)``: the renamed weights (pre-training-only entries dropped) and a description of
        what was read (scheme and prefix) for messages.

    Raises:
        DataError: no speech model in the checkpoint, or several.
    """
    keys = list(state)
    prefix = _find_prefix(keys, "The checkpoint")
    inner = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    inner = {k: v for k, v in inner.items() if not PRETRAINING_ONLY.match(k) and not k.startswith("aux.")}
    scheme = detect_format(list(inner))
    if scheme == "fairseq":
        renamed = {_rename(k, _FAIRSEQ_RULES): v for k, v in inner.items()}
    elif scheme == "huggingface":
        renamed = {_rename(k, _HUGGING_FACE_RULES): v for k, v in inner.items()}
    else:
        renamed = dict(inner)
    renamed = {_rename(k, _WEIGHT_NORM_RULES): v for k, v in renamed.items()}
    if wavlm and scheme == "huggingface":
        renamed = _pack_wavlm_projections(renamed)
    where = f" under the prefix {prefix!r}" if prefix else ""
    return renamed, f"read as a {scheme} checkpoint{where}"


def load_speech_weights(model: nn.Module, path: str | Path, architecture: str, wavlm: bool) -> None:
    """Load a local checkpoint into a torchaudio ``Wav2Vec2Model``, refusing weights that do not fit, by name.

    Args:
        model: the model (built without ``aux``), with the architecture the checkpoint was trained with.
        path: a ``.pt``/``.pth``/``.bin``/``.ckpt`` file (a state dict, or one under ``model`` or ``state_dict``)
            or a ``.safetensors`` file.
        architecture: the architecture's name, for messages.
        wavlm: the model is a WavLM.

    Raises:
        FileNotFoundError: no such file.
        DataError: the file holds no speech model, or missing, unexpected or wrongly shaped weights (listed).
    """
    stored = read_state_dict(path)
    try:
        weights, description = to_torchaudio_names(stored, wavlm)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    misshaped = [
        f"{k} {tuple(v.shape)} (model: {tuple(expected[k].shape)})"
        for k, v in weights.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {_list_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {_list_keys(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape {len(misshaped)}: {_list_keys(misshaped)}")
    if problems:
        raise DataError(
            f"The weights in {path} ({description}) do not fit the {architecture} architecture — "
            + "; ".join(problems)
            + ". Choose the architecture the checkpoint was trained with (base or large, wav2vec2, hubert or "
            "wavlm) and leave the size overrides (embed_dim, num_layers, ...) unset for released checkpoints."
        )
    model.load_state_dict(weights, strict=True)
