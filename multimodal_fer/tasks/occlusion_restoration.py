"""Occluded-face restoration as a GAN with manual optimisation: mask net + generator vs discriminator + critic.

Each training step runs two optimiser steps:

1. critic side (``discriminator`` and the expression ``critic``): hinge loss on clean vs restored faces, and
   expression / AU classification of clean faces;
2. restorer side (mask network and generator): mask BCE + Dice, masked L1 (hole and visible parts), hinge
   adversarial loss, perceptual loss on the critic's feature maps and expression consistency with the clean
   face.

With ``recogniser_critic`` (a face recogniser's checkpoint from an earlier ``mfer fit``) the critic is that
recogniser, frozen, instead of a critic trained here: the perceptual and expression-consistency losses then
ask that the trained recogniser sees on the restored face what it sees on the clean one
(recogniser-guided restoration), and the critic side trains the discriminator alone. A list of checkpoints
makes an ensemble of frozen recognisers the critic: each judges, and the perceptual, consistency and label losses
are the mean over them (fills that only one recogniser reads are not enough).

The generator fills either the true mask or, with probability ``predicted_mask_probability`` per batch, the
mask network's own (detached, binarised) prediction, so that it learns to cope with imperfect masks used at
test time (blind restoration). Under DDP use the strategy ``ddp_find_unused_parameters_true``: each backward
pass touches only one side's parameters.

Options for the long training (all off by default, so the shipped configuration trains as before):
``feature_matching_weight`` adds L1 between the discriminator's activations on restored and clean faces;
``ema_decay`` keeps an exponential moving average of the generator (in the checkpoint, so a resumed fit
continues it exactly) that validation, test, prediction and the exported restorer use; ``min_occluded_fraction``
leaves faces whose predicted occluded share is smaller unchanged; ``score="recognition"`` selects checkpoints by
the recogniser critic's expression macro-F1 on blindly restored validation faces.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassF1Score

from multimodal_fer.datamodules.base import FERData
from multimodal_fer.errors import DataError
from multimodal_fer.metrics import RestorationMetrics
from multimodal_fer.models.losses import masked_bce_with_logits, masked_cross_entropy
from multimodal_fer.models.restoration.critic import ExpressionCritic
from multimodal_fer.models.restoration.critic_views import jittered_views
from multimodal_fer.models.restoration.discriminator import PatchDiscriminator
from multimodal_fer.models.restoration.generator import GatedUNetGenerator
from multimodal_fer.models.restoration.losses import (
    expression_consistency_loss,
    feature_loss,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    mask_loss,
    masked_l1,
)
from multimodal_fer.models.restoration.mask_net import OcclusionMaskNet
from multimodal_fer.models.restoration.recogniser_critic import RecogniserCritic
from multimodal_fer.models.restoration.restorer import RESTORER_CHECKPOINT_KEY, FaceRestorer
from multimodal_fer.models.restoration.training_pass import restore_for_training
from multimodal_fer.standardization import unit_range_face
from multimodal_fer.tasks.restoration_warm_start import PART_NAMES, warm_start
from multimodal_fer.tasks.schedules import check_epoch_count, linear_decay_factor
from multimodal_fer.types import EXPR_UNLABELED, LabelSpace, validate_modalities

_STAGES = ("train", "val", "test")
_RESTORER_LOSSES = (
    "mask",
    "hole_l1",
    "valid_l1",
    "adversarial",
    "feature",
    "feature_matching",
    "consistency",
    "label",
    "generator_expression",
    "total",
)
_CRITIC_LOSSES = ("discriminator", "critic")
#: Batch fields the task needs (the data module's ``restoration_targets``).
REQUIRED_FIELDS = ("face", "face_clean", "occlusion_mask", "face_mean", "face_std")
#: What ``val/score`` (the checkpoints' monitor) can be.
Score = Literal["psnr", "recognition", "auto"]
#: A critic's judgement of a batch: feature maps and outputs (``expr`` / ``au`` logits).
_Judgement = tuple[list[Tensor], dict[str, Tensor]]
_EMA_PREFIX = "generator_ema."
_GENERATOR_PREFIX = "restorer.generator."


def _load_recogniser_critic(checkpoints: str | list[str], config: str | None) -> RecogniserCritic:
    """One frozen recogniser, or an ensemble of several, as the restoration GAN's critic."""
    from multimodal_fer.tasks.recogniser_loading import load_fer_model

    paths = [checkpoints] if isinstance(checkpoints, str) else list(checkpoints)
    if len(paths) > 1 and config:
        raise ValueError(
            "recogniser_critic_config names one run's config, but recogniser_critic lists several checkpoints; "
            "leave it out: each checkpoint's config.yaml is found beside or above it."
        )
    loaded = [load_fer_model(path, config) for path in paths]
    sizes = {size for _, size in loaded if size}
    if len(sizes) > 1:
        raise ValueError(
            f"The recogniser critics were trained on faces of different sizes ({sorted(sizes)} pixels); an ensemble "
            "judges one face size: train them all at the restorer's image size."
        )
    models = [model for model, _ in loaded]
    return RecogniserCritic(models[0], next(iter(sizes), 0), others=models[1:])


def _mean(values: list[Tensor]) -> Tensor:
    """The mean of one judge's or several judges' losses (one judge's value exactly as it is)."""
    return values[0] if len(values) == 1 else torch.stack(values).mean()


def _mean_outputs(outputs: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Several judges' outputs on one batch as one; one judge's outputs unchanged.

    Returns:
        ``expr``: the log of the judges' mean expression probabilities (B, C); ``au``: the logit of their mean AU
        probabilities (B, K).
    """
    if len(outputs) == 1:
        return outputs[0]
    merged: dict[str, Tensor] = {}
    if all("expr" in o for o in outputs):
        merged["expr"] = torch.stack([o["expr"].softmax(dim=-1) for o in outputs]).mean(0).log()
    if all("au" in o for o in outputs):
        merged["au"] = torch.logit(torch.stack([o["au"].sigmoid() for o in outputs]).mean(0), eps=1e-6)
    return merged


@contextmanager
def evaluation_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put a module (and all its children) in eval mode for a block, then restore every child's own mode."""
    modes = [(child, child.training) for child in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for child, training in modes:
            child.training = training


class OcclusionRestorationTask(pl.LightningModule):
    """Train the occlusion-mask network and the gated-convolution generator adversarially.

    Args:
        label_space: the data's label space (linked from the data module; sizes the critic's heads).
        modalities: the data's modalities (linked; must include ``face``).
        mask_net: the occlusion-mask network (default :class:`OcclusionMaskNet`).
        generator: the inpainting generator (default :class:`GatedUNetGenerator`).
        discriminator: the SN-PatchGAN discriminator (default :class:`PatchDiscriminator`).
        critic_widths: residual stage widths of the expression critic trained here.
        recogniser_critic: checkpoint of a trained face recogniser (``mfer fit`` of a MultitaskFERTask with the
            face modality), or a list of several (an ensemble, each judging: the perceptual, consistency and label
            losses are their mean, recognition is measured on their mean probabilities), to judge restored faces
            instead, frozen; None (default) trains a critic here.
        recogniser_critic_config: that run's saved ``config.yaml`` (one checkpoint only); None finds each
            checkpoint's beside or above it.
        mask_threshold: probability above which a predicted pixel is occluded.
        mask_dilation: pixels by which predicted masks grow.
        mask_opening: radius of the opening that removes specks from predicted masks (it also erases occluders
            thinner than ``2 * mask_opening + 1`` pixels: hair strands, strokes).
        min_occluded_fraction: faces whose predicted occluded share is below this pass unrestored (blind
            restoration only; 0 restores every face). Exported with the restorer.
        predicted_mask_probability: share of batches in which the generator fills the predicted mask.
        hole_weight: weight of the L1 loss inside the hole.
        valid_weight: weight of the L1 loss outside the hole.
        adversarial_weight: weight of the hinge generator loss.
        feature_weight: weight of the perceptual loss on the critic's feature maps.
        feature_matching_weight: weight of the feature-matching loss (L1 between the discriminator's
            intermediate activations on restored and clean faces); 0 (default) leaves it out.
        consistency_weight: weight of the expression-consistency loss.
        label_weight: weight of the cross-entropy of the critic's expression logits on restored faces against the
            faces' ground-truth expression labels (unlabelled faces ignored): the fill must show the true
            expression, not only what the critic reads on the clean face; 0 (default) leaves it out.
        generator_expression_weight: weight of the cross-entropy of the generator's own expression head (a
            generator with ``expression_classes``) against the faces' expression labels: the generator learns to
            read the expression from what the occluder leaves visible, and draws the fill from what it read; 0
            (default) leaves it out (the head then learns only through the other losses).
        expression_teacher_forcing: share of the labelled training faces (drawn afresh for every face and step)
            whose decoder is conditioned on their true expression (one-hot) instead of the reader's probabilities,
            so that the decoder learns to draw each expression from the condition even while the reader is
            unsure; validation, test and the exported restorer always use the reader. Needs a generator that reads
            the expression; 0 (default) never forces.
        critic_jitter: in training, the critics judge each restored face and its clean face under the same random
            view: shifted by up to this many whole pixels along each axis and mirrored with probability 1/2
            (:func:`~multimodal_fer.models.restoration.critic_views.jittered_views`), so that the fill must show the
            expression in a way that survives such changes rather than in details only the guiding recognisers
            read; validation and test judge the faces as they are. 0 (default) judges them as they are always.
        mask_weight: weight of the mask loss.
        critic_weight: weight of the critic's classification loss (on the critic side).
        generator_lr: Adam learning rate of the mask network and generator.
        discriminator_lr: Adam learning rate of the discriminator and critic.
        betas: Adam betas of both optimisers.
        lr_decay_epochs: the fit's last ``lr_decay_epochs`` epochs (of ``trainer.max_epochs``) decay both learning
            rates linearly towards zero, pix2pix's schedule
            (:func:`~multimodal_fer.tasks.schedules.linear_decay_factor`); 0 (default) keeps them constant. Set
            from the epoch alone, so a finished constant-rate fit continued with ``--ckpt_path last`` and a larger
            ``max_epochs`` decays over its last epochs as one long fit would.
        ema_decay: decay of an exponential moving average of the generator's weights, updated after every
            restorer step (e.g. 0.999); validation, test, prediction and the exported restorer then use the
            average. 0 (default) keeps no average.
        score: what ``{stage}/score`` (the checkpoints' monitor) is: ``"psnr"`` (default) the occluded-region
            PSNR; ``"recognition"`` the recogniser critic's expression macro-F1 on blindly restored faces
            (``{stage}/recognition/f1_macro``, needs a ``recogniser_critic`` with the data's expressions);
            ``"auto"`` recognition when such a recogniser is given, PSNR otherwise.
        train_metrics_interval: update the training epoch's restoration metrics (PSNR, SSIM, mask IoU) on every
            n-th batch only: on a CPU they cost about 14 % of a training step, and training does not depend on them
            (the same weights whatever n; validation and test always measure every batch). 1 (default) = every batch.
        initial_checkpoint: a restoration fit's checkpoint (``checkpoints/restorer.ckpt`` or ``last.ckpt``) whose
            mask network, generator (and its moving average), discriminator and trained critic this fit starts
            from, to fine-tune a trained restorer with other settings (a recogniser critic, the label term, other
            data); the optimisers, epochs and checkpoint choice start afresh. The architectures must match.
            Applied when a fit starts, not when one resumes (``--ckpt_path``), which continues from its own
            weights. None (default) trains from scratch.
        expression_reader_init: a face recogniser's checkpoint, or its run folder (the best checkpoint), whose face
            CNN starts the generator's expression reader (``expression_reader: recogniser``; the head on it starts
            fresh); ``"critic"``: the recogniser critic's (the first, with several). Applied when a fit starts,
            before ``initial_checkpoint``, not when one resumes. None (default) starts the reader from random
            weights.
    """

    def __init__(
        self,
        label_space: LabelSpace,
        modalities: list[str] | tuple[str, ...] | None = None,
        mask_net: OcclusionMaskNet | None = None,
        generator: GatedUNetGenerator | None = None,
        discriminator: PatchDiscriminator | None = None,
        critic_widths: tuple[int, ...] = (16, 32, 64, 128),
        recogniser_critic: str | list[str] | None = None,
        recogniser_critic_config: str | None = None,
        mask_threshold: float = 0.5,
        mask_dilation: int = 1,
        mask_opening: int = 0,
        min_occluded_fraction: float = 0.0,
        predicted_mask_probability: float = 0.5,
        hole_weight: float = 6.0,
        valid_weight: float = 1.0,
        adversarial_weight: float = 0.05,
        feature_weight: float = 1.0,
        feature_matching_weight: float = 0.0,
        consistency_weight: float = 0.5,
        label_weight: float = 0.0,
        generator_expression_weight: float = 0.0,
        expression_teacher_forcing: float = 0.0,
        critic_jitter: int = 0,
        mask_weight: float = 1.0,
        critic_weight: float = 1.0,
        generator_lr: float = 4e-4,
        discriminator_lr: float = 4e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        lr_decay_epochs: int = 0,
        ema_decay: float = 0.0,
        score: Score = "psnr",
        train_metrics_interval: int = 1,
        initial_checkpoint: str | None = None,
        expression_reader_init: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["mask_net", "generator", "discriminator"])
        self.automatic_optimization = False
        if modalities is not None and "face" not in validate_modalities(list(modalities)):
            raise ValueError(f"Restoration needs the face modality; the data loads {list(modalities)}.")
        if not 0.0 <= predicted_mask_probability <= 1.0:
            raise ValueError(f"predicted_mask_probability must lie in [0, 1], got {predicted_mask_probability}.")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1) (0 keeps no average), got {ema_decay}.")
        if train_metrics_interval < 1:
            raise ValueError(f"train_metrics_interval must be at least 1 (every batch), got {train_metrics_interval}.")
        check_epoch_count(lr_decay_epochs, "lr_decay_epochs")
        if label_weight < 0.0:
            raise ValueError(f"label_weight must be at least 0 (0 leaves the label term out), got {label_weight}.")
        if generator_expression_weight < 0.0:
            raise ValueError(
                f"generator_expression_weight must be at least 0 (0 leaves the term out), got "
                f"{generator_expression_weight}."
            )
        if not 0.0 <= expression_teacher_forcing <= 1.0:
            raise ValueError(f"expression_teacher_forcing must lie in [0, 1], got {expression_teacher_forcing}.")
        if critic_jitter < 0:
            raise ValueError(
                f"critic_jitter must be at least 0 pixels (0 judges the faces as they are), got {critic_jitter}."
            )
        if score not in ("psnr", "recognition", "auto"):
            raise ValueError(f"score must be 'psnr', 'recognition' or 'auto', got {score!r}.")
        self.restorer = FaceRestorer(
            mask_net,
            generator,
            mask_threshold=mask_threshold,
            mask_dilation=mask_dilation,
            mask_opening=mask_opening,
            min_occluded_fraction=min_occluded_fraction,
        )
        # The head's cross-entropy against the labels is measured whenever the generator has one, so its classes must
        # be the data's; the term's weight needs a head to train.
        reads = self.restorer.generator.config.get("expression_classes", 0)
        if (reads or generator_expression_weight > 0.0) and reads != label_space.num_expressions:
            raise ValueError(
                f"The generator reads {reads or 'no'} expressions; the data has {label_space.num_expressions} "
                f"(generator_expression_weight={generator_expression_weight}). Set "
                f"generator.init_args.expression_classes: {label_space.num_expressions}, or leave the head out "
                "(expression_classes: 0, generator_expression_weight: 0)."
            )
        if expression_teacher_forcing > 0.0 and not reads:
            raise ValueError(
                f"expression_teacher_forcing={expression_teacher_forcing} conditions the generator's decoder on the "
                "true expression, but the generator reads none: set generator.init_args.expression_classes (and "
                "generator_expression_weight), or expression_teacher_forcing: 0."
            )
        if expression_reader_init and self.restorer.generator.expression_recogniser is None:
            raise ValueError(
                "expression_reader_init starts the generator's recogniser reader, but this generator has none: set "
                "generator.init_args.expression_reader: recogniser (with expression_classes), or leave "
                "expression_reader_init out."
            )
        if expression_reader_init == "critic" and not recogniser_critic:
            raise ValueError(
                "expression_reader_init: critic starts the generator's reader from the recogniser critic, but no "
                "recogniser_critic is set: set it to a face recogniser's checkpoint, or give expression_reader_init "
                "one."
            )
        #: Moving average of the generator's weights (None without ``ema_decay``); not in any optimiser.
        self.generator_ema: GatedUNetGenerator | None = None
        if ema_decay > 0.0:
            self.generator_ema = copy.deepcopy(self.restorer.generator).requires_grad_(False)
        self.discriminator = discriminator if discriminator is not None else PatchDiscriminator()
        self.critic: ExpressionCritic | RecogniserCritic
        if recogniser_critic:
            self.critic = _load_recogniser_critic(recogniser_critic, recogniser_critic_config)
        else:
            self.critic = ExpressionCritic(label_space, critic_widths)
        self.label_space = label_space
        recognises = (
            isinstance(self.critic, RecogniserCritic)
            and label_space.num_expressions > 0
            and tuple(self.critic.model.label_space.expressions) == tuple(label_space.expressions)
        )
        if isinstance(self.critic, RecogniserCritic) and not recognises:
            rank_zero_warn(
                f"The recogniser critic predicts the expressions {list(self.critic.model.label_space.expressions)}, "
                f"not the data's {list(label_space.expressions)}: recognition of restored faces is not measured "
                "(no {stage}/recognition/f1_macro) and checkpoints are chosen by PSNR."
            )
        if score == "recognition" and not recognises:
            raise ValueError(
                "score='recognition' selects checkpoints by a recogniser's expression F1 on restored faces: set "
                "recogniser_critic to a face recogniser trained on this data's expressions "
                f"{list(label_space.expressions)}, or use score='psnr'."
            )
        self.score_name = "recognition" if score == "recognition" or (score == "auto" and recognises) else "psnr"
        #: Expression macro-F1 of the recogniser critic on blindly restored faces (val and test).
        self.recognition = torch.nn.ModuleDict(
            {
                stage: MulticlassF1Score(label_space.num_expressions, average="macro", ignore_index=EXPR_UNLABELED)
                for stage in ("val", "test")
                if recognises
            }
        )
        self.metrics = torch.nn.ModuleDict({f"{stage}_metrics": RestorationMetrics(stage) for stage in _STAGES})
        names = _RESTORER_LOSSES + _CRITIC_LOSSES
        self.loss_means = torch.nn.ModuleDict({f"{s}_{n}": MeanMetric() for s in _STAGES for n in names})
        self.validation_outputs: dict[str, Tensor] = {}
        #: Set when Lightning loads a checkpoint into this task (a resumed fit): no warm start then.
        self._weights_from_checkpoint = False

    # ----------------------------------------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        """Refuse a DDP strategy that cannot handle the two backward passes per step."""
        strategy = self.trainer.strategy
        kwargs = getattr(strategy, "_ddp_kwargs", None)
        if kwargs is not None and self.trainer.world_size > 1 and not kwargs.get("find_unused_parameters", False):
            raise ValueError(
                "The restoration GAN updates its two sides in separate backward passes; under DDP set "
                "trainer.strategy=ddp_find_unused_parameters_true."
            )

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for the restorer (mask net + generator) and Adam for the discriminator + critic."""
        betas = tuple(self.hparams.betas)
        # Named groups: a learning-rate monitor logs them as lr-Adam/restorer and lr-Adam-1/critic.
        restorer_group = {"params": list(self.restorer.parameters()), "name": "restorer"}
        restorer = torch.optim.Adam([restorer_group], lr=self.hparams.generator_lr, betas=betas)
        critic_params = [p for p in [*self.discriminator.parameters(), *self.critic.parameters()] if p.requires_grad]
        critic = torch.optim.Adam(
            [{"params": critic_params, "name": "critic"}], lr=self.hparams.discriminator_lr, betas=betas
        )
        return [restorer, critic]

    def on_fit_start(self) -> None:
        """Start from ``initial_checkpoint``'s weights (a fresh fit only); record the image size trained on."""
        linear_decay_factor(0, self.trainer.max_epochs, self.hparams.lr_decay_epochs)  # refuses a decay without E
        if self.hparams.expression_reader_init and not self._weights_from_checkpoint:
            self._start_reader(self.hparams.expression_reader_init)
        if self.hparams.initial_checkpoint and not self._weights_from_checkpoint:
            self._warm_start(self.hparams.initial_checkpoint)
        datamodule = getattr(self.trainer, "datamodule", None)
        size = datamodule.image_size if isinstance(datamodule, FERData) else None
        if size:
            self.restorer.image_size.fill_(int(size))
            trained = getattr(self.critic, "image_size", 0)
            if isinstance(self.critic, RecogniserCritic) and trained and trained != int(size):
                raise ValueError(
                    f"The recogniser critic was trained on {trained}-pixel faces but the data has {size}-pixel "
                    "faces; train the recogniser at this image size or set data.init_args.image_size="
                    f"{trained}."
                )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the restorer in a Lightning-free form under :data:`RESTORER_CHECKPOINT_KEY`.

        With ``ema_decay`` the exported generator is the moving average (what validation judged); the live
        generator and the average both stay in ``state_dict`` for an exact resume.
        """
        exported = self.restorer.export()
        if self.generator_ema is not None:
            exported["state_dict"].update(
                {f"generator.{k}": v.detach().cpu() for k, v in self.generator_ema.state_dict().items()}
            )
        checkpoint[RESTORER_CHECKPOINT_KEY] = exported

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Start the generator's moving average from the checkpoint's generator when the checkpoint has none.

        A checkpoint of a fit with ``ema_decay`` loaded without it keeps its average out of this model, with a
        warning (validation then judges the live generator).
        """
        self._weights_from_checkpoint = True
        state = checkpoint.get("state_dict", {})
        self._check_expression_reader(state)
        has_average = any(key.startswith(_EMA_PREFIX) for key in state)
        if self.generator_ema is not None and not has_average:
            for key in [k for k in state if k.startswith(_GENERATOR_PREFIX)]:
                state[_EMA_PREFIX + key.removeprefix(_GENERATOR_PREFIX)] = state[key].clone()
        elif self.generator_ema is None and has_average:
            rank_zero_warn(
                "The checkpoint holds a moving average of the generator (a fit with ema_decay) but this task keeps "
                "none: the live generator is used. Set model.init_args.ema_decay to use the average."
            )
            for key in [k for k in state if k.startswith(_EMA_PREFIX)]:
                del state[key]

    def _check_expression_reader(self, state: Mapping[str, Tensor]) -> None:
        """Refuse a checkpoint whose generator reads the expression with another reader than this config builds.

        Raises:
            DataError: the checkpoint's reader (``encoder``, ``recogniser`` or ``bottleneck``) is not the config's;
                runs trained before ``expression_reader`` existed used ``bottleneck``.
        """
        built = self.restorer.generator.config.get("expression_reader")
        if built is None or f"{_GENERATOR_PREFIX}expression_head.weight" not in state:
            return
        saved = "bottleneck"
        for reader, attribute in (("encoder", "expression_encoder"), ("recogniser", "expression_recogniser")):
            if any(key.startswith(f"{_GENERATOR_PREFIX}{attribute}.") for key in state):
                saved = reader
        if saved != built:
            raise DataError(
                f"The checkpoint's generator reads the expression with expression_reader: {saved}, but this config "
                f"builds {built}. Load it with --model.init_args.generator.init_args.expression_reader={saved} "
                "(runs trained before the option existed used bottleneck)."
            )

    def _start_reader(self, recogniser: str) -> None:
        """Start the generator's recogniser reader (and its moving average's) from a trained face recogniser."""
        from multimodal_fer.tasks.encoder_initialisation import resolve_run_checkpoint
        from multimodal_fer.tasks.recogniser_loading import load_fer_model

        reader = self.restorer.generator.expression_recogniser
        if reader is None:  # refused in __init__
            return
        if recogniser == "critic" and isinstance(self.critic, RecogniserCritic):
            source, model = "the recogniser critic", self.critic.model
        else:
            try:
                checkpoint = resolve_run_checkpoint(recogniser)
            except FileNotFoundError as error:
                raise FileNotFoundError(
                    f"expression_reader_init: {recogniser} does not exist. Give a face recogniser's checkpoint or its "
                    "run folder (runs/<experiment>/<run name>), or 'critic'."
                ) from error
            source, model = str(checkpoint), load_fer_model(checkpoint)[0]
        encoders = getattr(model, "encoders", {})
        if "face" not in encoders:
            raise DataError(f"expression_reader_init: {source} is not a face recogniser (no face encoder).")
        reader.load_face_encoder(encoders["face"])
        if self.generator_ema is not None and self.generator_ema.expression_recogniser is not None:
            self.generator_ema.expression_recogniser.load_state_dict(reader.state_dict())
        rank_zero_info(f"The generator's expression reader starts from the face CNN of {source}.")

    def _warm_start(self, checkpoint: str) -> None:
        """Load the trained parts of an earlier restoration fit (:mod:`multimodal_fer.tasks.restoration_warm_start`)."""
        frozen_critic = isinstance(self.critic, RecogniserCritic)  # loaded from its own checkpoints
        parts = {
            "restorer": self.restorer,
            "generator_ema": self.generator_ema,
            "discriminator": self.discriminator,
            "critic": None if frozen_critic else self.critic,
        }
        names = [f"the {PART_NAMES[name]}" for name in warm_start(parts, checkpoint)]
        listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
        rank_zero_info(
            f"Fine-tuning from {checkpoint}: {listed} start from its trained weights; optimisers and epochs start "
            "afresh."
        )

    # ------------------------------------------------------------------------------------------------ steps
    @staticmethod
    def _check_batch(batch: Mapping[str, Any]) -> None:
        missing = [name for name in REQUIRED_FIELDS if name not in batch]
        if missing:
            raise KeyError(
                f"The restoration task needs batch fields {missing}; set data.init_args.restoration_targets=true "
                "(SynthAffect) or use an occlusion split."
            )

    def _note_image_size(self, face: Tensor) -> None:
        if int(self.restorer.image_size) == 0:
            self.restorer.image_size.fill_(int(face.shape[-1]))

    def forward(self, face: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """Restore standardised faces (B, 3, H, W), blind unless a mask (B, 1, H, W) is given.

        Uses the generator's moving average when there is one (as validation, test and export do).
        """
        return self.restorer(face, mask, generator=self.generator_ema)

    @torch.no_grad()
    def _update_ema(self) -> None:
        """``average = decay * average + (1 - decay) * generator`` for every weight (buffers are copied)."""
        if self.generator_ema is None:
            return
        weight = 1.0 - self.hparams.ema_decay
        live = self.restorer.generator
        for average, current in zip(self.generator_ema.parameters(), live.parameters(), strict=True):
            average.lerp_(current.detach(), weight)
        for average, current in zip(self.generator_ema.buffers(), live.buffers(), strict=True):
            average.copy_(current)

    def _restore_for_training(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        forcing = self.hparams.expression_teacher_forcing
        forced = None
        if forcing > 0.0 and "expr" in batch:
            labels = batch["expr"]
            draw = torch.rand(labels.shape, device=labels.device) < forcing
            forced = labels.masked_fill(~draw, EXPR_UNLABELED)  # unlabelled (-1) and undrawn faces: the reader's
        return restore_for_training(
            self.restorer, batch["face"], batch["occlusion_mask"], self.hparams.predicted_mask_probability, forced
        )

    def _critic_losses(self, batch: Mapping[str, Any], restored: Tensor, used_mask: Tensor) -> dict[str, Tensor]:
        clean = batch["face_clean"]
        real = self.discriminator(clean, used_mask)
        fake = self.discriminator(restored.detach(), used_mask)
        losses = {"discriminator": hinge_discriminator_loss(real, fake)}
        critic = torch.zeros((), device=clean.device)
        if isinstance(self.critic, RecogniserCritic):  # frozen: nothing to learn on this side
            losses["critic"] = critic
            return losses
        _, outputs = self.critic(clean)
        if "expr" in outputs and "expr" in batch:
            critic = critic + masked_cross_entropy(outputs["expr"], batch["expr"])
        if "au" in outputs and "au" in batch:
            critic = critic + masked_bce_with_logits(outputs["au"], batch["au"])
        losses["critic"] = critic
        return losses

    def _judge(self, restored: Tensor, clean: Tensor) -> list[tuple[_Judgement, _Judgement]]:
        """The critic's feature maps and outputs on restored faces (with gradients) and clean faces (without).

        The critic is called in eval mode, on each batch alone. Its batch normalisation then uses the running
        statistics it learnt from clean faces on the critic side, the same for restored and clean faces and for
        every face whatever the rest of the batch; and restored faces never enter those statistics. (Called in
        train mode, as before, it normalised the restored and the clean batch each with its own statistics, so
        the perceptual and consistency losses compared differently normalised features, and every generator
        step pulled the running statistics towards restored faces. One concatenated clean + restored batch in
        train mode would still mix restored faces into both the batch and the running statistics, and let the
        generator shift a clean face's features through them.) Gradients still reach the restored faces.

        Args:
            restored: float (B, 3, H, W) restored faces (standardised).
            clean: float (B, 3, H, W) the clean faces.

        Returns:
            ``((restored_maps, restored_outputs), (clean_maps, clean_outputs))`` as the critic returns them, one
            pair per judge (an ensemble of recogniser critics has several).
        """
        with evaluation_mode(self.critic):
            if isinstance(self.critic, RecogniserCritic):
                on_restored = self.critic.forward_each(restored)
                with torch.no_grad():
                    on_clean = self.critic.forward_each(clean)
                return list(zip(on_restored, on_clean, strict=True))
            on_restored_one = self.critic(restored)
            with torch.no_grad():
                on_clean_one = self.critic(clean)
        return [(on_restored_one, on_clean_one)]

    def _restorer_losses(
        self, batch: Mapping[str, Any], out: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The restorer side's losses, and the critic's outputs on the restored faces (for recognition metrics)."""
        clean, true_mask = batch["face_clean"], batch["occlusion_mask"]
        hole, valid = masked_l1(out["generated"], clean, out["mask"])
        hp = self.hparams
        views = (out["restored"], clean)
        if self.training and hp.critic_jitter > 0:
            views = jittered_views(out["restored"], clean, hp.critic_jitter)
        judgements = self._judge(*views)
        scores, restored_features = self.discriminator.forward_with_features(out["restored"], out["mask"])
        matching = torch.zeros((), device=clean.device)
        if hp.feature_matching_weight > 0.0:
            with torch.no_grad():
                _, clean_features = self.discriminator.forward_with_features(clean, out["mask"])
            matching = feature_matching_loss(restored_features, clean_features)
        losses = {
            "mask": mask_loss(out["mask_logits"], true_mask),
            "hole_l1": hole,
            "valid_l1": valid,
            "adversarial": hinge_generator_loss(scores),
            "feature": _mean([feature_loss(r_maps, c_maps) for (r_maps, _), (c_maps, _) in judgements]),
            "feature_matching": matching,
            "consistency": _mean([expression_consistency_loss(r, c) for (_, r), (_, c) in judgements]),
            "label": torch.zeros((), device=clean.device),
            "generator_expression": torch.zeros((), device=clean.device),
        }
        if "expression_logits" in out and "expr" in batch:
            losses["generator_expression"] = masked_cross_entropy(out["expression_logits"], batch["expr"])
        restored_outputs = _mean_outputs([outputs for (_, outputs), _ in judgements])
        if "expr" in restored_outputs and "expr" in batch:
            losses["label"] = _mean([masked_cross_entropy(r["expr"], batch["expr"]) for (_, r), _ in judgements])
        losses["total"] = (
            hp.mask_weight * losses["mask"]
            + hp.hole_weight * hole
            + hp.valid_weight * valid
            + hp.adversarial_weight * losses["adversarial"]
            + hp.feature_weight * losses["feature"]
            + hp.consistency_weight * losses["consistency"]
        )
        if hp.label_weight > 0.0:  # measured always, in the loss only when asked: the default trains as before
            losses["total"] = losses["total"] + hp.label_weight * losses["label"]
        if hp.feature_matching_weight > 0.0:
            losses["total"] = losses["total"] + hp.feature_matching_weight * matching
        if hp.generator_expression_weight > 0.0:
            losses["total"] = losses["total"] + hp.generator_expression_weight * losses["generator_expression"]
        return losses, restored_outputs

    def _record(self, stage: str, losses: Mapping[str, Tensor], size: int) -> None:
        for name, value in losses.items():
            self.loss_means[f"{stage}_{name}"].update(value.detach().float(), weight=size)

    def _update_metrics(self, stage: str, batch: Mapping[str, Any], restored: Tensor, used_mask: Tensor) -> None:
        mean, std = batch["face_mean"], batch["face_std"]
        self.metrics[f"{stage}_metrics"].update(
            unit_range_face(restored.detach(), (mean, std)),
            unit_range_face(batch["face"], (mean, std)),
            unit_range_face(batch["face_clean"], (mean, std)),
            batch["occlusion_mask"],
            used_mask.detach(),
        )

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """One critic step, then one restorer step."""
        self._check_batch(batch)
        self._note_image_size(batch["face"])
        restorer_opt, critic_opt = self.optimizers()  # type: ignore[misc]
        size = batch["face"].shape[0]
        out = self._restore_for_training(batch)

        self.toggle_optimizer(critic_opt)
        critic_losses = self._critic_losses(batch, out["restored"], out["mask"])
        self.manual_backward(critic_losses["discriminator"] + self.hparams.critic_weight * critic_losses["critic"])
        critic_opt.step()
        critic_opt.zero_grad(set_to_none=True)
        self.untoggle_optimizer(critic_opt)

        self.toggle_optimizer(restorer_opt)
        restorer_losses, _ = self._restorer_losses(batch, out)
        self.manual_backward(restorer_losses["total"])
        restorer_opt.step()
        restorer_opt.zero_grad(set_to_none=True)
        self.untoggle_optimizer(restorer_opt)
        self._update_ema()

        self.log("train/loss_step", restorer_losses["total"].detach(), prog_bar=True, batch_size=size)
        self._record("train", {**critic_losses, **restorer_losses}, size)
        if batch_idx % self.hparams.train_metrics_interval == 0:
            self._update_metrics("train", batch, out["restored"], out["mask"])

    def _evaluate(self, batch: Mapping[str, Any], stage: str) -> dict[str, Tensor]:
        self._check_batch(batch)
        out = self(batch["face"])  # blind: the predicted mask (and the generator's average, if kept)
        losses, restored_outputs = self._restorer_losses(batch, out)
        losses.update(self._critic_losses(batch, out["restored"], out["mask"]))
        self._record(stage, losses, batch["face"].shape[0])
        self._update_metrics(stage, batch, out["restored"], out["mask"])
        if stage in self.recognition and "expr" in batch:
            self.recognition[stage].update(restored_outputs["expr"].argmax(dim=-1), batch["expr"])
        return out

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Blind restoration of held-out faces; returns the restorer's outputs (for image-grid callbacks)."""
        return self._evaluate(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Blind restoration of test faces."""
        return self._evaluate(batch, "test")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Restored faces (standardised), the mask used and the cache indices."""
        out = self(batch["face"])
        predictions = {"restored": out["restored"], "mask": out["mask"]}
        if "index" in batch:
            predictions["index"] = batch["index"]
        return predictions

    # ----------------------------------------------------------------------------------------------- epochs
    def _log_epoch(self, stage: str) -> None:
        values = self.metrics[f"{stage}_metrics"].compute()
        for key, mean in self.loss_means.items():
            if key.startswith(f"{stage}_"):
                values[f"{stage}/loss/{key.removeprefix(f'{stage}_')}"] = mean.compute()
                mean.reset()
        self.metrics[f"{stage}_metrics"].reset()
        if stage in self.recognition:
            values[f"{stage}/recognition/f1_macro"] = self.recognition[stage].compute()
            self.recognition[stage].reset()
        psnr = values.get(f"{stage}/restoration/psnr_occluded")
        self.log_dict(values)
        # What checkpoints monitor: restoration quality where the occluders were, or recognition of restored faces.
        score = values.get(f"{stage}/recognition/f1_macro") if self.score_name == "recognition" else psnr
        if score is not None:
            self.log(f"{stage}/score", score, prog_bar=True)

    def on_train_epoch_start(self) -> None:
        """Set both optimisers' rates for this epoch (``lr_decay_epochs``: the last epochs decay linearly)."""
        decay = self.hparams.lr_decay_epochs
        if not decay:
            return
        factor = linear_decay_factor(self.current_epoch, self.trainer.max_epochs, decay)
        restorer_opt, critic_opt = self.optimizers()  # type: ignore[misc]
        for optimizer, rate in ((restorer_opt, self.hparams.generator_lr), (critic_opt, self.hparams.discriminator_lr)):
            for group in optimizer.optimizer.param_groups:
                group["lr"] = rate * factor

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training losses and metrics."""
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        """Log validation losses and metrics (``val/score``: occluded-region PSNR or recognition, per ``score``)."""
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        """Log test losses and metrics."""
        self._log_epoch("test")
