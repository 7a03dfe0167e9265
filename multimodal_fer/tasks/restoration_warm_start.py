"""Start a restoration fit from the weights an earlier restoration fit trained (fine-tuning, not resuming).

Resuming (``mfer fit --ckpt_path``) continues a run exactly as it was trained: Lightning rebuilds the model from the
settings saved in the checkpoint, so new loss weights or another critic are ignored. Fine-tuning a trained
restorer with other settings (a recogniser critic, the label term, other data) is a new run whose networks start
from the trained weights: the restoration task's ``initial_checkpoint``, applied by :func:`warm_start`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from multimodal_fer.errors import DataError

_TRAIN_COMMAND = "mfer fit --config configs/restoration/synthaffect.yaml"
#: What each part is called in messages, by its attribute (its ``state_dict`` prefix) in the restoration task.
PART_NAMES = {
    "restorer": "mask network and generator",
    "generator_ema": "moving average of the generator",
    "discriminator": "discriminator",
    "critic": "expression critic trained alongside",
}

#: Where a frozen recogniser critic (``RecogniserCritic``) keeps its members' weights.
_RECOGNISER_CRITIC_PREFIXES = ("model.", "others.")


def _part_state(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}


def restoration_state(checkpoint: str | Path) -> dict[str, Tensor]:
    """The ``state_dict`` of a restoration fit's Lightning checkpoint.

    Args:
        checkpoint: ``checkpoints/restorer.ckpt`` or ``last.ckpt`` of an ``mfer fit`` of the restoration task (a
            copy written by ``mfer calibrate-restorer`` keeps only the exported restorer and is refused).

    Raises:
        FileNotFoundError: no such file.
        DataError: not a restoration fit's checkpoint (e.g. a restorer exported on its own, or a recogniser's).
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"initial_checkpoint {path} does not exist: point it at a restoration run's checkpoints/restorer.ckpt "
            f"(written by {_TRAIN_COMMAND})."
        )
    # The user's own local file; Lightning checkpoints carry plain Python objects beside the tensors.
    content = torch.load(path, map_location="cpu", weights_only=False)
    state = content.get("state_dict") if isinstance(content, dict) else None
    if not isinstance(state, Mapping) or not any(key.startswith("restorer.") for key in state):
        raise DataError(
            f"{path} is not the checkpoint of a restoration fit (its state_dict has no 'restorer.*' weights); "
            f"initial_checkpoint needs a run's checkpoints/restorer.ckpt or last.ckpt, written by {_TRAIN_COMMAND}."
        )
    return dict(state)


def warm_start(parts: Mapping[str, nn.Module | None], checkpoint: str | Path) -> list[str]:
    """Load each part's trained weights from a restoration checkpoint; the optimisers and epochs start afresh.

    The mask network and generator (``restorer``) must be in the checkpoint and of the same architecture. The
    generator's moving average starts from the checkpoint's average, or from its generator when it kept none; the
    discriminator and the critic trained alongside are loaded when the checkpoint holds them (a frozen recogniser
    critic is loaded from its own checkpoint, so pass None for it), and otherwise start fresh with a warning.

    Args:
        parts: the restoration task's modules by attribute: ``restorer``, ``generator_ema`` (None without a moving
            average), ``discriminator``, ``critic`` (None when it is a frozen recogniser).
        checkpoint: the earlier fit's checkpoint (see :func:`restoration_state`).

    Returns:
        The names of the parts loaded from the checkpoint.

    Raises:
        FileNotFoundError: no such file.
        DataError: not a restoration checkpoint, or a part whose architecture differs from this fit's.
    """
    state = restoration_state(checkpoint)
    loaded = []
    for name, module in parts.items():
        if module is None:
            continue
        weights = _part_state(state, f"{name}.")
        if name == "generator_ema" and not weights:
            weights = _part_state(state, "restorer.generator.")  # the average starts at the trained generator
        if name == "critic" and any(key.startswith(_RECOGNISER_CRITIC_PREFIXES) for key in weights):
            rank_zero_warn(
                f"{checkpoint} was trained against frozen recognisers, not a critic of its own: the critic trained "
                "here starts fresh."
            )
            continue
        if not weights:  # never the restorer: restoration_state checked it is there
            rank_zero_warn(f"{checkpoint} holds no weights of the {PART_NAMES[name]}: it starts fresh.")
            continue
        try:
            module.load_state_dict(weights, strict=True)
        except RuntimeError as error:
            raise DataError(
                f"The weights of the {PART_NAMES[name]} in {checkpoint} do not fit this fit's architecture: give "
                "model.init_args (mask_net, generator, discriminator, critic_widths) the settings of the run that "
                f"wrote it (its config.yaml), or leave initial_checkpoint out to train from scratch.\n{error}"
            ) from error
        loaded.append(name)
    return loaded
