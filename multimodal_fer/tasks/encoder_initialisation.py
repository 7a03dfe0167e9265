"""Start a fusion model's encoders from single-modality runs: load their weights, optionally freeze them.

Two-stage multimodal training (train each modality alone, then fuse the trained encoders) sidesteps the
modality competition of joint training, where the modality that learns fastest (on SynthAffect, audio) takes
the gradient and the others stay under-trained. With frozen encoders the fusion stage trains only the fusion
and the heads on features each single-modality model already computes, so any gain over those models comes
from fusing them, not from more encoder training.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from multimodal_fer.errors import DataError
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
    """A checkpoint file as given, or the one best checkpoint (``best-*.ckpt``) anywhere under a run folder.

    Args:
        path: a checkpoint file, or a run's folder (e.g. the ``--trainer.default_root_dir`` of a single-modality
            fit; the checkpoint may sit in ``checkpoints/`` or, with W&B logging, in
            ``<project>/<run id>/checkpoints/``).

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
                "single-modality run (its --trainer.default_root_dir)."
            )
        return path
    found = sorted(path.rglob("best-*.ckpt"))
    if len(found) != 1:
        listed = ", ".join(str(f) for f in found[:5]) + (" …" if len(found) > 5 else "")
        raise DataError(
            f"pretrained_encoders: the run folder {path} holds {len(found)} best-*.ckpt files"
            + (f" ({listed})" if found else "")
            + ", one is needed. Name the checkpoint file itself, or give the folder of one finished run."
        )
    return found[0]


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
