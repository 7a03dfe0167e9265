"""Rebuild the SN-PatchGAN discriminator a restoration checkpoint trained, from its weights alone."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from multimodal_fer.errors import DataError
from multimodal_fer.models.restoration.discriminator import PatchDiscriminator

#: Where a checkpoint keeps the discriminator's weights: the restoration task's (and the joint task's) attribute.
DISCRIMINATOR_PREFIX = "discriminator."
_CONV_WEIGHT = re.compile(r"^net\.(\d+)\.parametrizations\.weight\.original$")
_STAGE_ONE_COMMAND = "mfer fit --config configs/restoration/synthaffect.yaml"


def discriminator_from_state(state: Mapping[str, Tensor], source: str = "the checkpoint") -> PatchDiscriminator:
    """Build a :class:`PatchDiscriminator` of the architecture its weights record, and load them.

    The architecture is read off the convolutions' weights: each stride-2 convolution's output channels are one
    of ``widths``, the first one's input channels are the image's plus the mask's.

    Args:
        state: the discriminator's own state dict (keys ``net.<i>.…``, without a prefix).
        source: what to name in messages.

    Returns:
        The discriminator with those weights, in train mode.

    Raises:
        DataError: no convolution weights, or weights that do not fit the architecture they imply.
    """
    convolutions = sorted(
        (int(match.group(1)), value) for key, value in state.items() if (match := _CONV_WEIGHT.match(key))
    )
    if not convolutions:
        raise DataError(
            f"{source} holds no PatchDiscriminator weights (no 'net.<i>.parametrizations.weight.original')."
        )
    *stages, _ = (weight for _, weight in convolutions)
    widths = [int(weight.shape[0]) for weight in stages]
    image_channels = int(convolutions[0][1].shape[1]) - 1
    discriminator = PatchDiscriminator(widths, image_channels=image_channels)
    try:
        discriminator.load_state_dict(dict(state), strict=True)
    except RuntimeError as error:
        raise DataError(
            f"The discriminator weights in {source} do not fit a PatchDiscriminator(widths={widths}, image_channels="
            f"{image_channels}); the file was edited or written by another version.\n{error}"
        ) from error
    return discriminator


def discriminator_weights(checkpoint: str | Path) -> dict[str, Tensor]:
    """The discriminator's weights in a checkpoint's ``state_dict`` (keys without the prefix); empty if none.

    Args:
        checkpoint: an existing checkpoint file (a restoration fit's, a joint fit's, or a calibrated restorer's).
    """
    # The user's own local file; Lightning checkpoints carry plain Python objects beside the tensors.
    content = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state = content.get("state_dict") if isinstance(content, dict) else None
    return {
        key.removeprefix(DISCRIMINATOR_PREFIX): value
        for key, value in (state or {}).items()
        if key.startswith(DISCRIMINATOR_PREFIX)
    }


def load_discriminator(checkpoint: str | Path) -> PatchDiscriminator:
    """The discriminator a restoration fit trained, from its Lightning checkpoint.

    Args:
        checkpoint: a checkpoint whose ``state_dict`` holds ``discriminator.*`` weights: stage 1's
            ``checkpoints/restorer.ckpt`` or ``last.ckpt``, or a checkpoint of the joint fine-tuning.

    Returns:
        The discriminator with the trained weights, in train mode.

    Raises:
        FileNotFoundError: no such file.
        DataError: the file holds no discriminator (e.g. a restorer exported on its own), or one that cannot be
            rebuilt.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"Discriminator checkpoint {path} does not exist; train stage 1 with {_STAGE_ONE_COMMAND}."
        )
    weights = discriminator_weights(path)
    if not weights:
        raise DataError(
            f"{path} holds no discriminator weights (no 'discriminator.*' entries in its state_dict): it is not the "
            "Lightning checkpoint of a restoration fit (a restorer exported on its own keeps only the mask network "
            "and generator). Point the restorer's checkpoint, or model.init_args.discriminator_checkpoint, at stage "
            f"1's runs/restoration/<run>/checkpoints/restorer.ckpt (written by {_STAGE_ONE_COMMAND})."
        )
    return discriminator_from_state(weights, str(path))
