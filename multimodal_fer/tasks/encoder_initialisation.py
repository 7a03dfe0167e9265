"""Start a fusion model's encoders from single-modality runs: load their weights, optionally freeze them.

Two-stage multimodal training (train each modality alone, then fuse the trained encoders) sidesteps the
modality competition of joint training, where the modality that learns fastest (on SynthAffect, audio) takes
the gradient and the others stay under-trained. With frozen encoders the fusion stage trains only the fusion
and the heads on features each single-modality model already computes, so any gain over those models comes
from fusing them, not from more encoder training.

:class:`PretrainedEncoderPolicy` is the whole policy a task delegates to: which checkpoints start which encoders,
which stay frozen, their learning-rate scale and a warm-up during which they are held fixed. The functions below
it load the weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor, nn

from multimodal_fer.errors import DataError
from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.models.encoders.face_backbone import read_state_dict
from multimodal_fer.models.multimodal import MultimodalFERModel

#: Key prefixes an encoder's weights may sit under, tried in order: a checkpoint of this package's
#: MultitaskFERTask, a saved MultimodalFERModel, a saved encoder.
_ENCODER_PREFIXES = ("model.encoders.{m}.", "encoders.{m}.", "")
_NORM_PREFIXES = ("model.feature_norms.{m}.", "feature_norms.{m}.")


def _take(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def _load_strict(module: nn.Module, weights: Mapping[str, Tensor], what: str, path: Path) -> None:
    """Load ``weights`` into ``module``, refusing missing, unexpected or mis-shaped entries with one message."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    mismatched = sorted(
        f"{key} {tuple(weights[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in weights and tuple(weights[key].shape) != tuple(value.shape)
    )
    if missing or unexpected or mismatched:
        details = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if keys:
                shown = ", ".join(keys[:5]) + (f", … ({len(keys)} in all)" if len(keys) > 5 else "")
                details.append(f"{label}: {shown}")
        raise DataError(
            f"The {what} weights in {path} do not fit this model's {what} ({'; '.join(details)}). Point "
            "pretrained_encoders at a run trained with the same encoder configuration (class and init_args)."
        )
    module.load_state_dict(dict(weights), strict=True)


def resolve_run_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a run folder's best checkpoint.

    Args:
        path: a checkpoint file, or a run's folder: the best checkpoint its ``run.json`` names, else the one
            ``best-*.ckpt`` anywhere under it (folders written before run folders).

    Returns:
        The checkpoint file.

    Raises:
        FileNotFoundError: nothing at ``path``.
        DataError: a folder holding no ``best-*.ckpt``, or several.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(
                f"pretrained_encoders: {path} does not exist. Give a checkpoint file or the folder of a finished "
                "single-modality run (runs/<experiment>/<run name>)."
            )
        return path
    recorded = _recorded_best_checkpoint(path)
    if recorded is not None:
        return recorded
    found = sorted(path.rglob("best-*.ckpt"))
    if len(found) != 1:
        listed = ", ".join(str(f) for f in found[:5]) + (" …" if len(found) > 5 else "")
        raise DataError(
            f"pretrained_encoders: the run folder {path} holds {len(found)} best-*.ckpt files"
            + (f" ({listed})" if found else "")
            + ", one is needed. Name the checkpoint file itself, or give the folder of one finished run."
        )
    return found[0]


def _recorded_best_checkpoint(folder: Path) -> Path | None:
    """The best checkpoint a run folder's ``run.json`` names (None: no record, or the file is gone)."""
    try:
        best = json.loads((folder / "run.json").read_text()).get("best_checkpoint")
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return folder / best if best and (folder / best).is_file() else None


def load_pretrained_encoder(model: MultimodalFERModel, modality: str, path: str | Path) -> bool:
    """Copy one modality's encoder (and, when the file has it, its feature norm) from a local checkpoint.

    Args:
        model: the model whose ``encoders[modality]`` receives the weights.
        modality: which encoder.
        path: a checkpoint of a run that trained this modality with the same encoder configuration (a
            ``MultitaskFERTask`` ``.ckpt``, e.g. a single-modality run's ``best-*.ckpt``, or that run's folder:
            see :func:`resolve_run_checkpoint`), or a state dict of the encoder alone
            (``torch.save(encoder.state_dict(), path)``) or ``.safetensors`` file.

    A clip encoder (one with a ``frame_encoder``, e.g.
    :class:`~multimodal_fer.models.encoders.FaceClipEncoder`) also accepts a still-image run of the same
    per-frame encoder: its weights then start the per-frame encoder only, and the temporal model, the projections
    and the feature norm (which normalised still-image features, not clip features) keep their initialisation.

    Returns:
        Whether the feature norm was loaded too (only package checkpoints of the same encoder hold one).

    Raises:
        KeyError: ``modality`` has no encoder in the model.
        FileNotFoundError: no such file or folder.
        DataError: the file holds no weights for this encoder, or weights of another shape or architecture; a
            folder without exactly one best checkpoint.
    """
    if modality not in model.encoders:
        raise KeyError(
            f"pretrained_encoders names {modality!r}, which has no encoder in this model (encoders: "
            f"{list(model.encoders)})."
        )
    path = resolve_run_checkpoint(path)
    state = read_state_dict(path)
    encoder = model.encoders[modality]
    wanted = set(encoder.state_dict())
    for template in _ENCODER_PREFIXES:
        weights = _take(state, template.format(m=modality))
        if wanted & set(weights):
            break
    else:
        if _load_frame_encoder(encoder, state, modality, path):
            return False
        raise DataError(
            f"{path} holds no weights for the {modality} encoder (looked under 'model.encoders.{modality}.', "
            f"'encoders.{modality}.' and bare encoder names). Give a checkpoint of a run that trained the "
            f"{modality} modality."
        )
    if template == "":  # a bare encoder state dict must not carry other modules' weights
        weights = {key: value for key, value in weights.items() if not key.startswith(("model.", "encoders."))}
    if isinstance(encoder, Encoder):  # e.g. a mask-aware face encoder started from a plain one
        weights = encoder.adapt_pretrained(weights)
    _load_strict(encoder, weights, f"{modality} encoder", path)
    for template in _NORM_PREFIXES:
        norm_weights = _take(state, template.format(m=modality))
        if norm_weights:
            _load_strict(model.feature_norms[modality], norm_weights, f"{modality} feature-norm", path)
            return True
    return False


def _load_frame_encoder(encoder: nn.Module, state: Mapping[str, Tensor], modality: str, path: Path) -> bool:
    """Start a clip encoder's per-frame encoder from a still-image run's encoder; False if that does not apply."""
    frame_encoder = getattr(encoder, "frame_encoder", None)
    if not isinstance(frame_encoder, nn.Module):
        return False
    wanted = set(frame_encoder.state_dict())
    for template in _ENCODER_PREFIXES[:2]:
        weights = _take(state, template.format(m=modality))
        if wanted & set(weights):
            _load_strict(frame_encoder, weights, f"{modality} per-frame encoder", path)
            return True
    return False


class PretrainedEncoderPolicy:
    """Start encoders from single-modality runs, and keep them frozen, held for a warm-up or at a smaller rate.

    The task that owns the model calls :meth:`freeze_configured` once it is built, :meth:`load` when fitting
    starts, :meth:`keep_fixed_modules_in_eval` after every switch to train mode, :meth:`start_epoch` at each
    training epoch, :meth:`drop_held_gradients` before each optimiser step and :meth:`split_parameters` when it
    builds the optimiser. It is a plain object, not a module: it keeps references to the model's own modules and
    adds nothing to the checkpoint.

    Args:
        checkpoints: modality → a local checkpoint (or run folder) whose weights start that modality's encoder;
            see :func:`load_pretrained_encoder`.
        modalities: the modalities with an encoder in the model.
        freeze: keep the started encoders (and the feature norms loaded with them) fixed and in eval mode:
            ``True`` for all of them, or a list of modalities among those started.
        lr_scale: learning-rate factor of the started encoders that are not frozen.
        warmup_epochs: hold the started, unfrozen encoders fixed (eval mode, gradients dropped before every
            optimiser step) for this many epochs at the start of fitting, then fine-tune them.

    Raises:
        ValueError: a checkpoint for a modality without an encoder, a freeze or warm-up with nothing started, a
            freeze list naming an encoder that is not started, a warm-up when every started encoder is frozen, a
            non-positive ``lr_scale`` or a negative or fractional ``warmup_epochs``.
    """

    def __init__(
        self,
        checkpoints: Mapping[str, str] | None,
        modalities: Sequence[str],
        freeze: bool | Sequence[str] = False,
        lr_scale: float = 1.0,
        warmup_epochs: int = 0,
    ) -> None:
        self.checkpoints = dict(checkpoints or {})
        unknown = sorted(set(self.checkpoints) - set(modalities))
        if unknown:
            raise ValueError(
                f"pretrained_encoders names modalities {unknown} that have no encoder in this run (encoders: "
                f"{list(modalities)})."
            )
        if freeze and not self.checkpoints:
            raise ValueError(
                "freeze_pretrained_encoders is set but pretrained_encoders is empty: frozen random encoders would "
                "never learn. Name the checkpoints to start from, or switch the freeze off."
            )
        if isinstance(freeze, bool):
            frozen = tuple(self.checkpoints) if freeze else ()
        else:
            frozen = tuple(freeze)
            not_started = [m for m in frozen if m not in self.checkpoints]
            if not_started:
                raise ValueError(
                    f"freeze_pretrained_encoders names {not_started}, which pretrained_encoders does not start "
                    f"(it starts {list(self.checkpoints)}): a frozen random encoder would never learn. "
                    "Freeze only started encoders."
                )
        #: Modalities whose started encoders stay fixed.
        self.frozen_modalities: tuple[str, ...] = frozen
        if not (math.isfinite(lr_scale) and lr_scale > 0.0):
            raise ValueError(
                f"pretrained_encoder_lr_scale must be a positive number, got {lr_scale}; to keep "
                "the pretrained encoders fixed, set freeze_pretrained_encoders: true."
            )
        self.lr_scale = float(lr_scale)
        if isinstance(warmup_epochs, bool) or not (isinstance(warmup_epochs, int) and warmup_epochs >= 0):
            raise ValueError(
                f"pretrained_encoder_warmup_epochs must be a whole number of epochs >= 0, got {warmup_epochs!r}."
            )
        if warmup_epochs and not self.checkpoints:
            raise ValueError(
                "pretrained_encoder_warmup_epochs is set but pretrained_encoders is empty: there is nothing to hold "
                "fixed. Name the checkpoints to start from, or set the warm-up to 0."
            )
        if warmup_epochs and set(self.checkpoints) <= set(frozen):
            raise ValueError(
                "pretrained_encoder_warmup_epochs and freeze_pretrained_encoders are both set and every started "
                "encoder is frozen: frozen encoders never start training, so a warm-up means nothing. Keep one."
            )
        self.warmup_epochs = int(warmup_epochs)
        #: Modules kept fixed and in eval mode for good, and those held during the warm-up.
        self.frozen_modules: list[nn.Module] = []
        self.held_modules: list[nn.Module] = []
        #: Whether the warm-up holds :attr:`held_modules` now.
        self.warming_up = False

    def freeze_configured(self, model: MultimodalFERModel) -> None:
        """Freeze the encoders named to stay frozen (their feature norms follow once loaded with them)."""
        for modality in self.frozen_modalities:
            self._freeze(model.encoders[modality])

    def load(self, model: MultimodalFERModel) -> None:
        """Copy the configured weights into the model's encoders; freeze or hold them as configured."""
        for modality, path in self.checkpoints.items():
            norm_loaded = load_pretrained_encoder(model, modality, path)
            if modality in self.frozen_modalities:
                if norm_loaded:
                    self._freeze(model.feature_norms[modality])
            elif self.warmup_epochs:
                held = [model.encoders[modality]] + ([model.feature_norms[modality]] if norm_loaded else [])
                self.held_modules += [m for m in held if all(m is not kept for kept in self.held_modules)]

    def _freeze(self, module: nn.Module) -> None:
        """Stop gradients into ``module`` and keep it in eval mode from now on."""
        module.requires_grad_(False)
        module.eval()
        if all(module is not kept for kept in self.frozen_modules):
            self.frozen_modules.append(module)

    def keep_fixed_modules_in_eval(self) -> None:
        """Put frozen modules (and, during the warm-up, held ones) back in eval mode after a train-mode switch."""
        for module in self.frozen_modules:
            module.eval()
        if self.warming_up:
            for module in self.held_modules:
                module.eval()

    def start_epoch(self, epoch: int) -> None:
        """Hold the started encoders during the warm-up epochs and release them (train mode) afterwards."""
        if not self.held_modules:
            return
        self.warming_up = epoch < self.warmup_epochs
        for module in self.held_modules:
            module.train(not self.warming_up)

    def drop_held_gradients(self) -> None:
        """During the warm-up, drop the held modules' gradients so the optimiser leaves them untouched."""
        if not self.warming_up:
            return
        for module in self.held_modules:
            for parameter in module.parameters():
                parameter.grad = None

    def split_parameters(
        self, model: MultimodalFERModel, trainable: Sequence[nn.Parameter]
    ) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """Separate the started encoders' parameters, which learn at ``lr_scale`` times the rate, from the rest.

        Args:
            model: the model whose encoders and feature norms were started.
            trainable: the parameters the optimiser will train.

        Returns:
            ``(others, started)``, each in the order of ``trainable``; ``started`` is empty when ``lr_scale`` is 1.
        """
        if self.lr_scale == 1.0:
            return list(trainable), []
        modules = [model.encoders[m] for m in self.checkpoints] + [model.feature_norms[m] for m in self.checkpoints]
        chosen = {id(p) for module in modules for p in module.parameters() if p.requires_grad}
        return [p for p in trainable if id(p) not in chosen], [p for p in trainable if id(p) in chosen]
