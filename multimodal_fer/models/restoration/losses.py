"""Losses of occluded-face restoration: masked L1, hinge GAN, mask, perceptual, feature matching, consistency."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_l1(prediction: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean absolute error inside and outside a mask.

    Args:
        prediction: (B, C, H, W).
        target: (B, C, H, W).
        mask: (B, 1, H, W) in [0, 1], 1 = hole.

    Returns:
        ``(hole, valid)``: L1 averaged over the masked and the unmasked pixels (0 where there are none).
    """
    error = (prediction - target).abs().mean(dim=1, keepdim=True)
    hole = (error * mask).sum() / mask.sum().clamp_min(1.0)
    valid = (error * (1.0 - mask)).sum() / (1.0 - mask).sum().clamp_min(1.0)
    return hole, valid


def hinge_discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Hinge loss of the discriminator: ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``."""
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def hinge_generator_loss(fake_scores: Tensor) -> Tensor:
    """Hinge loss of the generator: ``-mean(D(fake))``."""
    return -fake_scores.mean()


def mask_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy plus soft Dice between predicted mask logits and the true mask.

    Dice keeps small occluders (strokes, a hand's finger) from being drowned by the visible majority.

    Args:
        logits: (B, 1, H, W).
        target: (B, 1, H, W) in {0, 1}.

    Returns:
        Scalar loss.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probability = logits.sigmoid()
    intersection = (probability * target).sum(dim=(1, 2, 3))
    total = probability.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    dice = 1.0 - (2.0 * intersection + 1.0) / (total + 1.0)
    return bce + dice.mean()


def feature_loss(restored_maps: Sequence[Tensor], clean_maps: Sequence[Tensor]) -> Tensor:
    """Perceptual loss: L1 between a face encoder's feature maps of restored and clean faces, per stage mean."""
    losses = [F.l1_loss(r, c) for r, c in zip(restored_maps, clean_maps, strict=True)]
    return torch.stack(losses).mean()


def feature_matching_loss(restored_features: Sequence[Tensor], clean_features: Sequence[Tensor]) -> Tensor:
    """Feature matching: L1 between the discriminator's activations on restored and on clean faces, layer mean.

    The clean faces' activations are targets (detached): the loss moves the generator, not the discriminator.

    Args:
        restored_features: activations (B, C_i, H_i, W_i) on restored faces.
        clean_features: the same layers' activations on the clean faces.

    Returns:
        Scalar loss.
    """
    losses = [F.l1_loss(r, c.detach()) for r, c in zip(restored_features, clean_features, strict=True)]
    return torch.stack(losses).mean()


def expression_consistency_loss(restored: Mapping[str, Tensor], clean: Mapping[str, Tensor]) -> Tensor:
    """The restored face must keep the clean face's expression and AUs, as the critic sees them.

    Args:
        restored: critic outputs on restored faces, ``expr`` logits (B, C) and/or ``au`` logits (B, K).
        clean: critic outputs on the clean faces (targets; gradients are not taken through them).

    Returns:
        KL(clean ‖ restored) of the expression distributions plus BCE of restored AU logits against the clean
        AU probabilities; 0 if the critic has neither head.
    """
    terms: list[Tensor] = []
    if "expr" in restored:
        target = clean["expr"].detach().log_softmax(dim=-1)
        terms.append(F.kl_div(restored["expr"].log_softmax(dim=-1), target, log_target=True, reduction="batchmean"))
    if "au" in restored:
        terms.append(F.binary_cross_entropy_with_logits(restored["au"], clean["au"].detach().sigmoid()))
    if not terms:
        return torch.zeros((), device=next(iter(restored.values()), torch.zeros(())).device)
    return torch.stack(terms).sum()
