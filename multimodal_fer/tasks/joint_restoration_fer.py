"""End-to-end fine-tuning: the recogniser and its restorer trained together, the restorer kept a restorer.

Stage 3 of the occluded-face pipeline. Stage 1 (:class:`~multimodal_fer.tasks.OcclusionRestorationTask`) trains the
restorer as a GAN; stage 2 (:class:`~multimodal_fer.tasks.MultitaskFERTask` with a face encoder behind a
:class:`~multimodal_fer.models.restoration.PretrainedRestorer`) trains the recogniser on restored faces. Here both
are fine-tuned together: the recognition loss reaches the generator, and the mask network through a soft
(``mask_gradient: sigmoid``) or straight-through (``ste``) mask, while the restorer keeps stage 1's own objective on
batches that carry restoration targets (``face_clean``, ``occlusion_mask``): hole and visible L1 against the clean
face, the mask loss (BCE + Dice) against the true mask and the hinge adversarial term from stage 1's
discriminator, which trains on alongside with an optimiser of its own. Without these terms nothing keeps the
restorer a restorer: it drifts into whatever helps the classifier.

Per training step (manual optimisation, two optimisers): the restorer's stage-1 training pass on the batch
(:func:`~multimodal_fer.models.restoration.training_pass.restore_for_training`: the true mask, or the prediction
united with it); one discriminator step on clean vs those restored faces; then one step of everything else on the
recognition losses (through the blind restoration the recogniser sees) plus the weighted restoration terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics import MeanMetric

from multimodal_fer.errors import DataError, NonFiniteLossError
from multimodal_fer.metrics import RestorationMetrics
from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.models.encoders.by_modality import ModalityEncoders
from multimodal_fer.models.encoders.face_backbone import read_state_dict
from multimodal_fer.models.fusion.base import Fusion
from multimodal_fer.models.restoration.discriminator import PatchDiscriminator
from multimodal_fer.models.restoration.discriminator_loading import load_discriminator
from multimodal_fer.models.restoration.losses import (
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    mask_loss,
    masked_l1,
)
from multimodal_fer.models.restoration.restorer import RESTORER_CHECKPOINT_KEY, FaceRestorer, PretrainedRestorer
from multimodal_fer.models.restoration.training_pass import restore_for_training
from multimodal_fer.models.state_fit import state_mismatch
from multimodal_fer.models.task_balancing import TaskBalancing
from multimodal_fer.standardization import unit_range_face
from multimodal_fer.tasks.encoder_initialisation import resolve_run_checkpoint
from multimodal_fer.tasks.multitask_fer import MultitaskFERTask, describe_non_finite_batch
from multimodal_fer.types import LabelSpace

_STAGES = ("train", "val", "test")
#: The restorer's terms, each logged as ``{stage}/restoration/{term}_loss``; ``loss`` is their weighted sum.
RESTORATION_TERMS = ("mask", "hole_l1", "valid_l1", "adversarial", "feature_matching", "discriminator")
#: Batch fields the restoration terms need (``restoration_targets: true`` or online occlusion).
TARGET_FIELDS = ("face_clean", "occlusion_mask")
_RESTORER_SETTING = "model.init_args.encoders.face.init_args.restorer.init_args"


class JointRestorationFERTask(MultitaskFERTask):
    """Fine-tune a recogniser and its restorer together, with the restorer's stage-1 losses kept.

    Everything of :class:`MultitaskFERTask` (the recognition model, losses, metrics, ``val/score``, optimiser and
    scheduler) stays as it is; the face encoder's :class:`~multimodal_fer.models.restoration.PretrainedRestorer`
    must be fine-tuned (``finetune: true``) with its generator (``fill: generator``).

    What is fine-tuned: the restorer the face encoder loaded (for a stage-1 fit with ``ema_decay``, the exported
    moving average of the generator, which stage 2's recogniser was trained behind), then overwritten by
    ``recogniser_checkpoint``'s copy of it (the same weights unless stage 2 fine-tuned it). No new average is kept:
    the recogniser co-adapts with the live weights, and an average would lag behind what it was trained against.
    The discriminator starts from stage 1's (trained against the live generator, not the average).

    Every checkpoint carries the fine-tuned restorer in the Lightning-free form of stage 1
    (:data:`~multimodal_fer.models.restoration.RESTORER_CHECKPOINT_KEY`), so
    :func:`~multimodal_fer.models.restoration.load_restorer` and a ``PretrainedRestorer`` read it as they read
    stage 1's, and its ``discriminator.*`` weights let a further joint round start from it.

    Args:
        encoders: as :class:`MultitaskFERTask`; the face encoder needs a fine-tuned ``restorer``.
        label_space: as :class:`MultitaskFERTask`.
        modalities: as :class:`MultitaskFERTask`; must include ``face``.
        fusion: as :class:`MultitaskFERTask`.
        head_hidden_dim: as :class:`MultitaskFERTask`.
        head_dropout: as :class:`MultitaskFERTask`.
        modality_dropout: as :class:`MultitaskFERTask`.
        missing_tokens: as :class:`MultitaskFERTask`.
        expr_weight: as :class:`MultitaskFERTask`.
        au_weight: as :class:`MultitaskFERTask`.
        va_weight: as :class:`MultitaskFERTask`.
        task_balancing: as :class:`MultitaskFERTask`.
        expr_class_balance: as :class:`MultitaskFERTask`.
        class_balance_beta: as :class:`MultitaskFERTask`.
        expr_label_smoothing: as :class:`MultitaskFERTask`.
        au_class_balance: as :class:`MultitaskFERTask`.
        auxiliary_loss_weight: as :class:`MultitaskFERTask`.
        unimodal_loss_weight: as :class:`MultitaskFERTask`.
        pretrained_encoders: as :class:`MultitaskFERTask` (not together with ``recogniser_checkpoint``).
        freeze_pretrained_encoders: as :class:`MultitaskFERTask`.
        pretrained_encoder_lr_scale: as :class:`MultitaskFERTask`.
        pretrained_encoder_warmup_epochs: as :class:`MultitaskFERTask`.
        optimizer: builds the optimiser of the recogniser and the restorer (everything but the discriminator).
        lr_scheduler: as :class:`MultitaskFERTask`, stepped once per epoch (not ``ReduceLROnPlateau``).
        lr_warmup_epochs: as :class:`MultitaskFERTask`.
        non_finite_loss: as :class:`MultitaskFERTask` (a skipped batch skips the recogniser's and restorer's step).
        recogniser_checkpoint: the stage-2 run whose weights start the whole model (recogniser and restorer): a
            checkpoint of a ``MultitaskFERTask`` fit with the same configuration, or that run's folder (its best
            checkpoint). Loaded when fitting starts, so a resumed fit restores its own checkpoint over it. None
            starts the recogniser from its initialisation (with a warning).
        discriminator_checkpoint: a checkpoint holding ``discriminator.*`` weights (stage 1's, or a joint run's);
            None takes them from the restorer's own ``checkpoint``. Its architecture is read off its weights.
        hole_weight: weight of the L1 between the generator's fill and the clean face inside the filled mask.
        valid_weight: weight of the L1 between the generator's image and the clean face outside the filled mask.
        mask_weight: weight of the mask loss (BCE + Dice) of the mask network's logits against the true mask.
        adversarial_weight: weight of the hinge generator loss under the discriminator.
        feature_matching_weight: weight of the L1 between the discriminator's activations on restored and clean
            faces; 0 (default) leaves it out.
        predicted_mask_probability: share of batches in which the generator's training pass fills the predicted
            mask united with the true one (otherwise the true mask), as in stage 1.
        discriminator_lr: Adam learning rate of the discriminator.
        discriminator_betas: Adam betas of the discriminator.

    Raises:
        ValueError: no face encoder with a restorer, a trivial ``fill``, a frozen restorer (``finetune: false``), a
            mask loss on a mask network that gets no gradient (``mask_gradient: none``), a negative or non-finite
            weight, or ``recogniser_checkpoint`` together with ``pretrained_encoders``.
        DataError: the discriminator's checkpoint holds no discriminator.
    """

    def __init__(
        self,
        encoders: ModalityEncoders | list[Encoder],
        label_space: LabelSpace,
        modalities: list[str] | tuple[str, ...] | None = None,
        fusion: Callable[[Mapping[str, int]], Fusion] | None = None,
        head_hidden_dim: int = 128,
        head_dropout: float = 0.1,
        modality_dropout: float | dict[str, float] = 0.0,
        missing_tokens: bool = False,
        expr_weight: float = 1.0,
        au_weight: float = 1.0,
        va_weight: float = 1.0,
        task_balancing: TaskBalancing | None = None,
        expr_class_balance: Literal["none", "inverse_frequency", "effective_number"] = "none",
        class_balance_beta: float = 0.999,
        expr_label_smoothing: float = 0.0,
        au_class_balance: Literal["none", "pos_weight"] = "pos_weight",
        auxiliary_loss_weight: float | dict[str, float] = 0.001,
        unimodal_loss_weight: float = 0.0,
        pretrained_encoders: dict[str, str] | None = None,
        freeze_pretrained_encoders: bool | list[str] = False,
        pretrained_encoder_lr_scale: float = 1.0,
        pretrained_encoder_warmup_epochs: int = 0,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_warmup_epochs: int = 0,
        non_finite_loss: Literal["stop", "skip"] = "stop",
        recogniser_checkpoint: str | None = None,
        discriminator_checkpoint: str | None = None,
        hole_weight: float = 6.0,
        valid_weight: float = 1.0,
        mask_weight: float = 1.0,
        adversarial_weight: float = 0.05,
        feature_matching_weight: float = 0.0,
        predicted_mask_probability: float = 0.5,
        discriminator_lr: float = 4e-5,
        discriminator_betas: tuple[float, float] = (0.5, 0.999),
    ) -> None:
        super().__init__(
            encoders,
            label_space,
            modalities,
            fusion,
            head_hidden_dim=head_hidden_dim,
            head_dropout=head_dropout,
            modality_dropout=modality_dropout,
            missing_tokens=missing_tokens,
            expr_weight=expr_weight,
            au_weight=au_weight,
            va_weight=va_weight,
            task_balancing=task_balancing,
            expr_class_balance=expr_class_balance,
            class_balance_beta=class_balance_beta,
            expr_label_smoothing=expr_label_smoothing,
            au_class_balance=au_class_balance,
            auxiliary_loss_weight=auxiliary_loss_weight,
            unimodal_loss_weight=unimodal_loss_weight,
            pretrained_encoders=pretrained_encoders,
            freeze_pretrained_encoders=freeze_pretrained_encoders,
            pretrained_encoder_lr_scale=pretrained_encoder_lr_scale,
            pretrained_encoder_warmup_epochs=pretrained_encoder_warmup_epochs,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            lr_warmup_epochs=lr_warmup_epochs,
            non_finite_loss=non_finite_loss,
        )
        self.automatic_optimization = False
        self.restoration_weights = {
            "mask": mask_weight,
            "hole_l1": hole_weight,
            "valid_l1": valid_weight,
            "adversarial": adversarial_weight,
            "feature_matching": feature_matching_weight,
        }
        bad = {name: w for name, w in self.restoration_weights.items() if not (math.isfinite(w) and w >= 0.0)}
        if bad:
            raise ValueError(f"The restoration weights must be finite and non-negative, got {bad}.")
        if not 0.0 <= predicted_mask_probability <= 1.0:
            raise ValueError(f"predicted_mask_probability must lie in [0, 1], got {predicted_mask_probability}.")
        self.predicted_mask_probability = float(predicted_mask_probability)
        if recogniser_checkpoint and pretrained_encoders:
            raise ValueError(
                "recogniser_checkpoint starts every weight of the model; pretrained_encoders would overwrite some of "
                "them. Set one of the two."
            )
        self.recogniser_checkpoint = recogniser_checkpoint
        restorer = self._checked_restorer(mask_weight)
        #: Whether the restorer's stage-1 terms count (then training batches must carry restoration targets).
        self.restoration_on = any(w > 0.0 for w in self.restoration_weights.values())
        self.discriminator: PatchDiscriminator | None = None
        if adversarial_weight > 0.0 or feature_matching_weight > 0.0:
            self.discriminator = load_discriminator(discriminator_checkpoint or restorer.checkpoint)
        self.discriminator_lr = float(discriminator_lr)
        self.discriminator_betas = (float(discriminator_betas[0]), float(discriminator_betas[1]))
        names = (*RESTORATION_TERMS, "loss")
        self.restoration_means = torch.nn.ModuleDict({f"{s}_{n}": MeanMetric() for s in _STAGES for n in names})
        self.restoration_metrics = torch.nn.ModuleDict({s: RestorationMetrics(s) for s in ("val", "test")})

    # ------------------------------------------------------------------------------------------------ set-up
    def _checked_restorer(self, mask_weight: float) -> PretrainedRestorer:
        """The face encoder's restorer, refused (with the setting that fixes it) unless it can be fine-tuned."""
        encoder = self.model.encoders["face"] if "face" in self.model.encoders else None
        restorer = getattr(encoder, "restorer", None)
        if not isinstance(restorer, PretrainedRestorer):
            raise ValueError(
                "Joint fine-tuning trains the face encoder's restorer with the recogniser, but "
                + ("the data loads no face modality" if encoder is None else "the face encoder has no restorer")
                + ". Compose configs/overlays/face_restorer.yaml (with the face modality) before "
                "configs/overlays/face_restorer_joint.yaml."
            )
        if restorer.restorer.fill != "generator":
            raise ValueError(
                f"The restorer's fill is {restorer.restorer.fill!r}, a trivial fill with no weights to fine-tune; set "
                f"{_RESTORER_SETTING}.fill=generator."
            )
        if not restorer.finetune:
            raise ValueError(
                "The restorer is frozen (finetune: false), so joint fine-tuning would train the recogniser alone; set "
                f"{_RESTORER_SETTING}.finetune=true (configs/overlays/face_restorer_joint.yaml does)."
            )
        if mask_weight > 0.0 and not restorer.mask_net_trains:
            raise ValueError(
                "mask_weight > 0 trains the mask network, but with mask_gradient: none it is frozen; set "
                f"{_RESTORER_SETTING}.mask_gradient=sigmoid (or ste), or model.init_args.mask_weight=0."
            )
        return restorer

    @property
    def pretrained_restorer(self) -> PretrainedRestorer:
        """The face encoder's restorer (a property: assigning it would register it twice in the state dict)."""
        return self.model.encoders["face"].restorer  # type: ignore[return-value]

    @property
    def face_restorer(self) -> FaceRestorer:
        """The mask network + generator being fine-tuned."""
        return self.pretrained_restorer.restorer

    def setup(self, stage: str) -> None:
        """As :class:`MultitaskFERTask`; when fitting, also start the model from ``recogniser_checkpoint``.

        Raises:
            ValueError: DDP without ``find_unused_parameters`` (each backward pass touches one side).
            DataError: the checkpoint's weights do not fit this model.
        """
        super().setup(stage)
        strategy = self.trainer.strategy
        kwargs = getattr(strategy, "_ddp_kwargs", None)
        if kwargs is not None and self.trainer.world_size > 1 and not kwargs.get("find_unused_parameters", False):
            raise ValueError(
                "Joint fine-tuning updates the discriminator and the rest in separate backward passes; under DDP "
                "set trainer.strategy=ddp_find_unused_parameters_true."
            )
        if stage != "fit":
            return
        if self.recogniser_checkpoint:
            self.load_recogniser(self.recogniser_checkpoint)
        else:
            rank_zero_warn(
                "recogniser_checkpoint is not set: the recogniser starts from its initialisation, not from stage 2's "
                "recogniser trained on restored faces. Set model.init_args.recogniser_checkpoint=runs/<stage-2 "
                "experiment>/<run> (or its best-*.ckpt)."
            )

    def load_recogniser(self, checkpoint: str | Path) -> None:
        """Copy a stage-2 checkpoint's whole model (recogniser and restorer) into this one.

        Args:
            checkpoint: a ``MultitaskFERTask`` checkpoint (or its run folder) of the same configuration.

        Raises:
            DataError: the checkpoint holds no model weights, or weights that do not fit this model.
        """
        path = resolve_run_checkpoint(checkpoint)
        state = {k.removeprefix("model."): v for k, v in read_state_dict(path).items() if k.startswith("model.")}
        details = state_mismatch(self.model.state_dict(), state)
        if not state or details:
            raise DataError(
                f"The weights in {path} do not fit this model ({details or 'no model.* weights'}). Point "
                "recogniser_checkpoint at the stage-2 run trained with the same configs (e.g. configs/quickstart.yaml "
                "+ configs/overlays/face_restorer.yaml, the same restorer and modalities)."
            )
        self.model.load_state_dict(state, strict=True)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Everything the recognition optimiser trains: all parameters needing a gradient but the discriminator's."""
        own = {id(p) for p in self.discriminator.parameters()} if self.discriminator is not None else set()
        return [p for p in super().trainable_parameters() if id(p) not in own]

    def configure_optimizers(self) -> Any:
        """The configured optimiser (and scheduler) for the recogniser and restorer; Adam for the discriminator.

        Returns:
            ``([recognition optimiser, discriminator optimiser], [scheduler])``, the discriminator's only when the
            adversarial or feature-matching term is on, the scheduler only when configured; the scheduler is
            stepped at each training epoch's end (manual optimisation).

        Raises:
            ValueError: a ``ReduceLROnPlateau`` scheduler (it needs a metric at a time this task does not step).
        """
        configured = super().configure_optimizers()
        if isinstance(configured, dict):
            optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]
        else:
            optimizer, scheduler = configured, None
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise ValueError(
                "Joint fine-tuning steps its scheduler once per epoch without a metric; use a per-epoch schedule "
                "such as multimodal_fer.tasks.schedules.CosineAnnealingLR instead of ReduceLROnPlateau."
            )
        optimizers = [optimizer]
        if self.discriminator is not None:
            group = {"params": list(self.discriminator.parameters()), "name": "discriminator"}
            optimizers.append(torch.optim.Adam([group], lr=self.discriminator_lr, betas=self.discriminator_betas))
        return optimizers, [scheduler] if scheduler is not None else []

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the fine-tuned restorer as stage 1 does (:data:`RESTORER_CHECKPOINT_KEY`), for ``load_restorer``."""
        checkpoint[RESTORER_CHECKPOINT_KEY] = self.face_restorer.export()

    # ------------------------------------------------------------------------------------------------- steps
    def _has_targets(self, batch: Mapping[str, Any]) -> bool:
        return all(name in batch for name in TARGET_FIELDS)

    def _check_targets(self, batch: Mapping[str, Any]) -> None:
        if self.restoration_on and not self._has_targets(batch):
            missing = [name for name in TARGET_FIELDS if name not in batch]
            weights = {name: w for name, w in self.restoration_weights.items() if w > 0.0}
            raise DataError(
                f"The restoration terms {weights} need the batch fields {missing}, which this training batch lacks. "
                "Set data.init_args.restoration_targets=true and/or data.init_args.online_occlusion_probability > 0 "
                "(SynthAffect; configs/overlays/face_restorer_joint.yaml does), or set every restoration weight "
                "(model.init_args.hole_weight, valid_weight, mask_weight, adversarial_weight, "
                "feature_matching_weight) to 0."
            )

    def restoration_terms(self, batch: Mapping[str, Any], out: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Stage 1's restorer-side terms on one restoration, and their weighted sum.

        Args:
            batch: with ``face_clean`` (B, 3, H, W) and ``occlusion_mask`` (B, 1, H, W).
            out: the restoration: ``mask_logits`` (B, 1, H, W), ``mask`` (B, 1, H, W) the mask filled,
                ``generated`` and ``restored`` (B, 3, H, W).

        Returns:
            Scalars ``mask``, ``hole_l1``, ``valid_l1``, ``adversarial`` and ``feature_matching`` (the last two
            only with a discriminator), and ``loss``: the weighted sum of those whose weight is not 0.
        """
        clean, true_mask = batch["face_clean"], batch["occlusion_mask"]
        hole, valid = masked_l1(out["generated"], clean, out["mask"])
        terms = {"mask": mask_loss(out["mask_logits"], true_mask), "hole_l1": hole, "valid_l1": valid}
        if self.discriminator is not None:
            scores, restored_features = self.discriminator.forward_with_features(out["restored"], out["mask"])
            terms["adversarial"] = hinge_generator_loss(scores)
            if self.restoration_weights["feature_matching"] > 0.0:
                with torch.no_grad():
                    _, clean_features = self.discriminator.forward_with_features(clean, out["mask"])
                terms["feature_matching"] = feature_matching_loss(restored_features, clean_features)
        weighted = [
            self.restoration_weights[name] * value
            for name, value in terms.items()
            if self.restoration_weights[name] > 0.0
        ]
        terms["loss"] = torch.stack(weighted).sum() if weighted else clean.new_zeros(())
        return terms

    def discriminator_loss(self, batch: Mapping[str, Any], out: Mapping[str, Tensor]) -> Tensor:
        """Hinge loss of the discriminator on clean faces vs the (detached) restored ones, behind the filled mask."""
        assert self.discriminator is not None
        real = self.discriminator(batch["face_clean"], out["mask"].detach())
        fake = self.discriminator(out["restored"].detach(), out["mask"].detach())
        return hinge_discriminator_loss(real, fake)

    def _record(self, stage: str, terms: Mapping[str, Tensor], size: int) -> None:
        for name, value in terms.items():
            self.restoration_means[f"{stage}_{name}"].update(value.detach().float(), weight=size)

    def _stop_or_skip(self, loss: Tensor, batch: Mapping[str, Any], batch_idx: int) -> None:
        """A non-finite loss: raise (``non_finite_loss: stop``) or count the skipped batch."""
        if self.non_finite_loss == "skip" and self.trainer.world_size == 1:
            self.skipped_non_finite_batches += 1
            self.log("train/skipped_non_finite_batches", float(self.skipped_non_finite_batches), on_step=True)
            return
        raise NonFiniteLossError(describe_non_finite_batch(loss, batch, self.modalities, self.global_step, batch_idx))

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:  # type: ignore[override]
        """The restorer's training pass, one discriminator step, then one step of the recogniser and restorer."""
        self._check_targets(batch)
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        main = optimizers[0]
        size = batch["face"].shape[0]
        out = None
        if self.restoration_on:
            face, true_mask = batch["face"], batch["occlusion_mask"]
            out = restore_for_training(self.face_restorer, face, true_mask, self.predicted_mask_probability)
        if self.discriminator is not None and out is not None:
            critic = optimizers[1]
            self.toggle_optimizer(critic)
            loss = self.discriminator_loss(batch, out)
            if torch.isfinite(loss):
                self.manual_backward(loss)
                critic.step()
                self._record("train", {"discriminator": loss}, size)
            else:
                self._stop_or_skip(loss, batch, batch_idx)
            critic.zero_grad(set_to_none=True)
            self.untoggle_optimizer(critic)

        self.toggle_optimizer(main)
        total = self._shared_step(batch, "train")
        if out is not None:
            terms = self.restoration_terms(batch, out)
            total = total + terms["loss"]
            self._record("train", terms, size)
        if torch.isfinite(total):
            self.manual_backward(total)
            main.step()
        else:
            self._stop_or_skip(total, batch, batch_idx)
        main.zero_grad(set_to_none=True)
        self.untoggle_optimizer(main)

    def _evaluate_restoration(self, batch: Mapping[str, Any], stage: str) -> None:
        """Restoration terms and quality of the blind restoration the recogniser sees (batches with targets only)."""
        if not self._has_targets(batch) or "face" not in batch:
            return
        out = self.face_restorer(batch["face"])
        terms = self.restoration_terms(batch, out)
        if self.discriminator is not None:
            terms["discriminator"] = self.discriminator_loss(batch, out)
        self._record(stage, terms, batch["face"].shape[0])
        if "face_mean" in batch and "face_std" in batch:
            mean, std = batch["face_mean"], batch["face_std"]
            self.restoration_metrics[stage].update(
                unit_range_face(out["restored"], (mean, std)),
                unit_range_face(batch["face"], (mean, std)),
                unit_range_face(batch["face_clean"], (mean, std)),
                batch["occlusion_mask"],
                out["mask"],
            )

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Recognition as :class:`MultitaskFERTask`, plus the restorer's terms and quality where targets exist."""
        super().validation_step(batch, batch_idx)
        self._evaluate_restoration(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Recognition as :class:`MultitaskFERTask`, plus the restorer's terms and quality where targets exist."""
        outputs = super().test_step(batch, batch_idx)
        self._evaluate_restoration(batch, "test")
        return outputs

    # ------------------------------------------------------------------------------------------------ epochs
    def _log_restoration(self, stage: str) -> None:
        values: dict[str, Tensor] = {}
        for key, mean in self.restoration_means.items():
            if key.startswith(f"{stage}_") and mean.update_called:
                name = key.removeprefix(f"{stage}_")
                values[f"{stage}/restoration/loss" if name == "loss" else f"{stage}/restoration/{name}_loss"] = (
                    mean.compute()
                )
            if key.startswith(f"{stage}_"):
                mean.reset()
        if stage in self.restoration_metrics:
            metrics = self.restoration_metrics[stage]
            if metrics.mask_iou.update_called:
                values.update(metrics.compute())
            metrics.reset()
        if values:
            self.log_dict(values)

    def on_train_epoch_end(self) -> None:
        """Log the epoch's metrics and restoration terms, then step the scheduler (manual optimisation)."""
        super().on_train_epoch_end()
        self._log_restoration("train")
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # type: ignore[union-attr]

    def on_validation_epoch_end(self) -> None:
        """Log validation metrics (``val/score`` as :class:`MultitaskFERTask`) and the restorer's."""
        super().on_validation_epoch_end()
        self._log_restoration("val")

    def on_test_epoch_end(self) -> None:
        """Log test metrics and the restorer's."""
        super().on_test_epoch_end()
        self._log_restoration("test")
