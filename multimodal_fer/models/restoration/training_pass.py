"""The restorer's training pass: the generator fills the true occluder, or the mask network's own prediction too."""

from __future__ import annotations

import torch
from torch import Tensor

from multimodal_fer.models.restoration.restorer import FaceRestorer


def restore_for_training(
    restorer: FaceRestorer,
    face: Tensor,
    true_mask: Tensor,
    predicted_mask_probability: float,
    forced_expression: Tensor | None = None,
) -> dict[str, Tensor]:
    """Restore occluded faces as the restorer is trained: behind the true mask, or the predicted one united with it.

    With probability ``predicted_mask_probability`` (one draw per batch) the generator fills whatever the mask
    network finds (binarised, detached) plus the true occluder, so it learns to live with imperfect masks while no
    occluder pixel is left as "visible"; otherwise it fills the true mask. The mask network's logits are returned
    with their gradient, for the mask loss against the true mask.

    Args:
        restorer: the restorer whose mask network and generator run (in their current modes).
        face: float (B, 3, H, W) standardised occluded faces.
        true_mask: float (B, 1, H, W) the true occluder mask (1 = occluded).
        predicted_mask_probability: share of batches in which the predicted mask joins the true one, in [0, 1].
        forced_expression: optional long (B,) expression class per face that the generator's decoder is conditioned
            on instead of what its reader reads (-1: the reader's); for a generator that reads the expression.

    Returns:
        ``mask_logits`` (B, 1, H, W), ``mask`` (B, 1, H, W) the 0/1 mask filled, ``generated`` (B, 3, H, W) the
        generator's whole image and ``restored`` (B, 3, H, W) its pixels inside ``mask``, the input's outside;
        with a generator that reads the expression also ``expression_logits`` (B, E).
    """
    mask_logits = restorer.mask_net(face)
    if torch.rand(()) < predicted_mask_probability:
        used = torch.maximum(restorer.binarize(mask_logits.detach()), true_mask)
    else:
        used = true_mask
    generated, expression_logits = restorer.generator.forward_with_expression(face, used, forced_expression)
    restored = face * (1.0 - used) + generated * used
    out = {"mask_logits": mask_logits, "mask": used, "generated": generated, "restored": restored}
    if expression_logits is not None:
        out["expression_logits"] = expression_logits
    return out
