"""Face image encoder on any timm backbone (ResNet, EfficientNet, ConvNeXt, ViT, ...), built by name."""

from __future__ import annotations

import difflib
import pickle
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from multimodal_fer.errors import DataError
from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.models.restoration.restorer import PretrainedRestorer
from multimodal_fer.standardization import restandardize

#: How many offending keys an error message lists.
_SHOWN_KEYS = 5
#: How many close model names an unknown-backbone error lists.
_SHOWN_NAMES = 12
#: Buffers older checkpoints may lack; their absence is harmless.
_OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def _list_keys(keys: list[str], quote: bool = True) -> str:
    shown = ", ".join(repr(k) if quote else k for k in keys[:_SHOWN_KEYS])
    return shown + (f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def close_backbone_names(name: str) -> list[str]:
    """Known timm model names resembling ``name``: those containing it, else near spellings.

    Args:
        name: a backbone name that timm does not know.

    Returns:
        Up to a dozen known names, closest first.
    """
    import timm

    base = name.split(".")[0].lower()
    contained = timm.list_models(f"*{base}*")
    if contained:
        return sorted(contained, key=lambda known: (known.find(base), len(known)))[:_SHOWN_NAMES]

    def likeness(known: str) -> float:  # compares with the whole name and with its start (vit_tiny_patch16_224)
        whole = difflib.SequenceMatcher(None, base, known).ratio()
        return max(whole, difflib.SequenceMatcher(None, base, known[: len(base)]).ratio())

    scored = sorted(((likeness(known), known) for known in timm.list_models()), key=lambda s: (-s[0], len(s[1])))
    return [known for score, known in scored[:_SHOWN_NAMES] if score >= 0.75]


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read the weights in a local checkpoint file; never downloads.

    Accepts a plain state dict, a dict holding one under ``state_dict`` or ``model`` (Lightning and most
    training scripts), nested any number of times, or a ``.safetensors`` file.

    Args:
        path: the checkpoint file.

    Returns:
        Parameter and buffer tensors keyed by name, as stored (prefixes not yet removed).

    Raises:
        FileNotFoundError: no such file.
        DataError: the file holds no state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained_path {path} does not exist. Give the path of a local checkpoint file (a state dict saved "
            "with torch.save, a Lightning .ckpt or a .safetensors file); nothing is downloaded."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        content: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # The user's own local file, e.g. a Lightning checkpoint whose hyperparameters hold Python objects.
        content = torch.load(path, map_location="cpu", weights_only=False)
    while isinstance(content, Mapping) and not all(isinstance(v, Tensor) for v in content.values()):
        inner = next((content[k] for k in ("state_dict", "model") if isinstance(content.get(k), Mapping)), None)
        if inner is None:
            break
        content = inner
    if not isinstance(content, Mapping) or not content:
        raise DataError(
            f"{path} holds no state dict (found {type(content).__name__}). Save the weights with "
            "torch.save(model.state_dict(), path), or a dict holding them under 'state_dict' or 'model'."
        )
    tensors = {str(k): v for k, v in content.items() if isinstance(v, Tensor)}
    if not tensors:
        keys = [str(k) for k in content]
        raise DataError(
            f"{path} holds a dict without tensors (keys {_list_keys(keys)}); it needs a state dict directly or under "
            "'state_dict' or 'model'."
        )
    return tensors


def _weights_prefix(keys: list[str], wanted: set[str], source: str) -> str:
    """The key prefix (e.g. ``"model.encoders.face.backbone."``) under which most keys name wanted weights."""
    counts: dict[str, int] = {}
    for key in keys:
        cut = 0
        while True:
            if key[cut:] in wanted:
                counts[key[:cut]] = counts.get(key[:cut], 0) + 1
            dot = key.find(".", cut)
            if dot < 0:
                break
            cut = dot + 1
    if not counts:
        raise DataError(
            f"None of the {len(keys)} weights in {source} belongs to this backbone: the file has "
            f"{_list_keys(sorted(keys))}, the backbone expects {_list_keys(sorted(wanted))}. Check that the "
            "checkpoint was trained with the same backbone name."
        )
    best = max(counts.values())
    prefixes = sorted(p for p, n in counts.items() if n == best)
    if len(prefixes) > 1:
        raise DataError(
            f"The weights in {source} fit this backbone under several prefixes ({prefixes}); save only the "
            "backbone's state dict."
        )
    return prefixes[0]


def _fit_problems(weights: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> list[str]:
    """What keeps ``weights`` from loading into a model with state dict ``expected``: missing, unexpected, misshaped."""
    missing = [k for k in expected if k not in weights and not k.endswith(_OPTIONAL_SUFFIXES)]
    unexpected = [k for k in weights if k not in expected]
    misshaped = [
        f"{k!r} {tuple(v.shape)} (backbone: {tuple(expected[k].shape)})"
        for k, v in weights.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {_list_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {_list_keys(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape {len(misshaped)}: {_list_keys(misshaped, quote=False)}")
    return problems


def timm_checkpoint_filter(model: nn.Module) -> Callable[[dict[str, Tensor], nn.Module], dict[str, Tensor]] | None:
    """The checkpoint conversion timm has for the model's architecture (``checkpoint_filter_fn`` of its module).

    For ViTs it resamples the position embedding to the model's patch grid (another ``img_size``), resamples the
    patch embedding to another patch size, and converts the original DINOv2, CLIP and other releases to timm's
    names. None when the architecture's module defines no conversion.
    """
    function = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    return function if callable(function) else None


def load_backbone_weights(model: nn.Module, path: str | Path, classifier: tuple[str, ...] = ()) -> None:
    """Load a local checkpoint into a timm backbone built without a classifier, refusing weights that do not fit.

    The backbone's weights are found under the one key prefix that fits most of them (none, ``module.``,
    ``backbone.``, ``model.encoders.face.backbone.``, ...); keys outside it are ignored (e.g. the encoder's own
    projection or other modalities' encoders in a full checkpoint), and so are the classifier's (its names
    given by ``classifier``). Weights that fit as stored load as stored; otherwise timm's own conversion for the
    architecture (:func:`timm_checkpoint_filter`: position embeddings resampled to another ``img_size``, original
    DINOv2 checkpoints renamed, ...) is applied and must make them fit. Every backbone weight must be present with
    the right shape.

    Args:
        model: the timm model, built with ``num_classes=0``.
        path: the checkpoint file (see :func:`read_state_dict`).
        classifier: module names of the model's classifier head (timm's ``pretrained_cfg["classifier"]``).

    Raises:
        FileNotFoundError: no such file.
        DataError: missing, unexpected or wrongly shaped weights, listed by name.
    """
    source = str(path)
    stored = read_state_dict(path)
    expected = model.state_dict()
    prefix = _weights_prefix(list(stored), set(expected), source)

    def without_classifier(weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {k: v for k, v in weights.items() if not any(k.startswith(f"{c}.") for c in classifier)}

    chosen = without_classifier({k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)})
    problems = _fit_problems(chosen, expected)
    convert = timm_checkpoint_filter(model)
    conversion_note = ""
    if problems and convert is not None:
        try:
            converted = without_classifier(convert(dict(chosen), model))
        except Exception as error:  # noqa: BLE001 -- timm's conversion of foreign weights; reported below
            conversion_note = f" timm's conversion for this architecture failed too ({type(error).__name__}: {error})."
        else:
            if not _fit_problems(converted, expected):
                chosen, problems = converted, []
            else:
                conversion_note = " timm's conversion for this architecture (position-embedding resizing) did not help."
    if problems:
        where = f" under the prefix {prefix!r}" if prefix else ""
        raise DataError(
            f"The weights in {source}{where} do not fit this backbone — "
            + "; ".join(problems)
            + "."
            + conversion_note
            + " Check the backbone name (and model_args) against the model the checkpoint was trained with."
        )
    model.load_state_dict(chosen, strict=False)


class FaceBackbone(Encoder):
    """Any timm backbone, built by name, for aligned face crops; a linear projection to ``out_dim``.

    The model is always built with ``pretrained=False`` and without classifier or pooling
    (``num_classes=0, global_pool=""``), so its head layers that act per position (ConvNeXt's norm, MobileNetV3's
    1x1 conv) still run. Its last feature map becomes a token sequence ``t`` (B, N, C): the spatial positions of
    a CNN's map, or a ViT's patch tokens without the class/register (prefix) tokens, which still take part in
    attention. The encoder averages them itself:

    - :meth:`forward` = ``proj(dropout(mean_n t))``, (B, out_dim);
    - :meth:`forward_tokens` = ``proj(dropout(t))``, (B, N, out_dim).

    So, with dropout off (eval mode or ``drop_rate=0``), the mean of the tokens equals the vector exactly, for
    every backbone, and both modes use every parameter. This average replaces timm's own pooling: a ViT is
    pooled over its patch tokens instead of reading its class token, and ConvNeXt normalises every position
    before the average instead of the average itself.

    Args:
        backbone: a timm model name, e.g. ``resnet18``, ``efficientnet_b0``, ``convnext_atto``,
            ``vit_tiny_patch16_224`` (``timm.list_models()`` lists them); an optional ``.tag`` is allowed.
        out_dim: size of the output feature vector (and of each token).
        pretrained_path: a local checkpoint with the backbone's weights: a state dict, a dict holding one under
            ``state_dict`` or ``model`` (e.g. a Lightning checkpoint of this package), or a ``.safetensors``
            file. Key prefixes are found and removed, a classifier head is ignored, timm's own conversion for the
            architecture applies where the weights do not fit as stored (a ViT's position embedding is resampled
            to ``img_size``; original DINOv2 releases are renamed), and weights that still do not fit are refused
            by name. Nothing is ever downloaded. None (default): random initialisation.
        img_size: input side for backbones with a fixed input size (ViT, Swin, ...: their position grid is
            built for it), e.g. 64 for 64-px faces; None uses the model's default (224 for most). Ignored by
            backbones that take any size (CNNs).
        drop_rate: dropout on the features before the projection.
        drop_path_rate: stochastic depth of the backbone's residual blocks (passed to timm when positive).
        restorer: an occluded-face restorer run before the backbone, as in
            :class:`~multimodal_fer.models.encoders.FaceCNN` (its output is standardised per image again);
            None (default) switches restoration off.
        model_args: further keyword arguments of ``timm.create_model`` that change the architecture, e.g.
            ``{depth: 2, embed_dim: 48, num_heads: 2}`` for a small ViT in tests; a released checkpoint needs
            none (None, the default).

    Input: normalised float images (B, 3, H, W); contiguous or channels-last memory both work.
    Output: (B, out_dim).

    """

    modality = "face"

    def __init__(
        self,
        backbone: str = "resnet18",
        out_dim: int = 128,
        pretrained_path: str | None = None,
        img_size: int | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        restorer: PretrainedRestorer | None = None,
        model_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(out_dim)
        import timm

        if not timm.is_model(backbone):
            close = close_backbone_names(backbone)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise ValueError(
                f"timm has no backbone named {backbone!r}.{hint} timm.list_models('*name*') lists the others."
            )
        if img_size is not None and img_size < 1:
            raise ValueError(f"img_size must be positive, got {img_size}.")
        if not 0.0 <= drop_rate < 1.0 or not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_rate and drop_path_rate must lie in [0, 1), got {drop_rate}, {drop_path_rate}.")
        self.backbone_name = backbone
        self.pretrained_path = pretrained_path
        config = timm.models.get_pretrained_cfg(backbone)
        fixed_size = bool(getattr(config, "fixed_input_size", False))
        options: dict[str, Any] = {"num_classes": 0, "global_pool": ""}
        if fixed_size and img_size is not None:
            options["img_size"] = img_size
        if drop_path_rate > 0:
            options["drop_path_rate"] = drop_path_rate
        clashes = sorted(set(model_args or {}) & {*options, "pretrained", "img_size"})
        if clashes:
            raise ValueError(f"model_args may not set {clashes}: FaceBackbone sets them (use its own arguments).")
        options.update(model_args or {})
        try:
            self.backbone = timm.create_model(backbone, pretrained=False, **options)
        except (TypeError, AssertionError, ValueError) as error:
            raise ValueError(f"timm cannot build {backbone!r} with {options}: {error}") from error
        #: Input side the backbone requires (models with a fixed input size), else None.
        self.fixed_size: int | None = None
        if fixed_size:
            self.fixed_size = int(img_size) if img_size is not None else int(config.input_size[-1])
        self.feature_dim = int(getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features)
        self.num_prefix_tokens = int(getattr(self.backbone, "num_prefix_tokens", 0))
        self.channels_last_output = str(getattr(self.backbone, "output_fmt", "NCHW")) == "NHWC"
        if pretrained_path is not None:
            head = config.classifier if config is not None else None
            classifier = (head,) if isinstance(head, str) else tuple(head or ())
            load_backbone_weights(self.backbone, pretrained_path, classifier)
        self.restorer = restorer
        self.dropout = nn.Dropout(drop_rate)
        self.proj = nn.Linear(self.feature_dim, out_dim)

    def feature_tokens(self, x: Tensor) -> Tensor:
        """Face crops (B, 3, H, W) → the backbone's last features as tokens (B, N, feature_dim), before projection.

        N is h·w of a CNN's final map (row-major) or a ViT's number of patches.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise DataError(f"FaceBackbone expects RGB faces of shape (B, 3, H, W), got {tuple(x.shape)}.")
        if self.fixed_size is not None and tuple(x.shape[-2:]) != (self.fixed_size, self.fixed_size):
            raise DataError(
                f"Backbone {self.backbone_name!r} is built for {self.fixed_size}×{self.fixed_size} faces but receives "
                f"{x.shape[-2]}×{x.shape[-1]}; set img_size: {x.shape[-1]} on the encoder (or resize the faces)."
            )
        if self.restorer is not None:
            x = restandardize(self.restorer(x))
        features = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        if features.ndim == 4:  # a map: (B, C, h, w), or (B, h, w, C) for NHWC models (Swin, ...)
            nhwc = features if self.channels_last_output else features.permute(0, 2, 3, 1)
            return nhwc.flatten(1, 2)
        if features.ndim == 3:  # tokens (B, prefix + N, C)
            return features[:, self.num_prefix_tokens :]
        raise ValueError(
            f"Backbone {self.backbone_name!r} returns features of shape {tuple(features.shape)} without pooling; "
            "FaceBackbone needs a spatial map (B, C, h, w) or tokens (B, N, C). Choose another backbone."
        )

    def forward_tokens(self, x: Tensor) -> Tensor:
        """Face crops (B, 3, H, W) → one token per feature-map position or patch, (B, N, out_dim).

        In eval mode (or with ``drop_rate=0``) the tokens' mean is exactly :meth:`forward`'s vector.
        """
        return self.proj(self.dropout(self.feature_tokens(x)))

    def forward(self, x: Tensor) -> Tensor:
        """Encode face crops.

        Args:
            x: normalised images, float (B, 3, H, W).

        Returns:
            Features, (B, out_dim).

        """
        return self.proj(self.dropout(self.feature_tokens(x).mean(dim=1)))
