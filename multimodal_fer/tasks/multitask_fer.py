"""Multitask FER: encoders → fusion → expression, AU and valence/arousal heads, one step for every stage."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchmetrics import MeanMetric

from multimodal_fer.datamodules.base import FERDataModule
from multimodal_fer.datamodules.combined import CombinedDataModule
from multimodal_fer.errors import CheckpointMismatchError, CorruptCheckpointError, DataError, NonFiniteLossError
from multimodal_fer.metrics import FERMetrics
from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.models.encoders.by_modality import ModalityEncoders
from multimodal_fer.models.fusion.attention import AttentionFusion
from multimodal_fer.models.fusion.base import Fusion
from multimodal_fer.models.losses import MultitaskLoss, UnimodalLoss, class_balance_weights
from multimodal_fer.models.multimodal import MultimodalFERModel, MultimodalOutput
from multimodal_fer.models.restoration.restorer import PretrainedRestorer
from multimodal_fer.models.task_balancing import TaskBalancing
from multimodal_fer.tasks.encoder_initialisation import PretrainedEncoderPolicy
from multimodal_fer.tasks.schedules import check_warmup_epochs, fit_length, with_linear_warmup
from multimodal_fer.types import PRESENT_KEY, LabelSpace, validate_modalities

_STAGES = ("train", "val", "test")
#: Terms added to the heads' losses: task balancing and the fusion's regulariser (training), unimodal heads (all).
_EXTRA_LOSSES = ("task_balancing_loss", "aux_loss", "unimodal_loss")


def _default_optimizer(parameters: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=1e-3, weight_decay=1e-4)


class MultitaskFERTask(pl.LightningModule):
    """Train, validate and test a multimodal multitask FER model.

    The task wires the pieces and delegates: the model (:class:`~multimodal_fer.models.multimodal.MultimodalFERModel`)
    returns a typed output, the losses (:mod:`~multimodal_fer.models.losses`) mask what does not count, and
    :class:`~multimodal_fer.tasks.encoder_initialisation.PretrainedEncoderPolicy` starts, freezes and holds encoders.

    Args:
        encoders: one encoder per modality, keyed by the modality it serves
            (:class:`~multimodal_fer.models.encoders.ModalityEncoders`; in a config ``encoders: {face: {class_path:
            ...}, audio: ...}``, so a later config or flag changes one modality's encoder and keeps the others).
            Each key must match the input its encoder reads. Encoders of modalities the data module does not load
            are left out, so a modality ablation is a data-config change only. A list (each encoder placed by the
            modality it reads) is still accepted, for configs saved before encoders were keyed.
        label_space: expression classes, AUs and dimensions (linked from the data module).
        modalities: modalities the data module loads (linked from the data module).
        fusion: builds the fusion from ``{modality: out_dim}`` (default :class:`AttentionFusion`).
        head_hidden_dim: hidden width of each task head.
        head_dropout: dropout in the heads.
        modality_dropout: probability of hiding each present modality of a training sample (one number, or one
            per modality, e.g. ``{face: 0.3, audio: 0.3}``); a sample always keeps one of its modalities. Trains
            one model for any subset of modalities at test time.
        missing_tokens: give absent (or dropped) modalities a learned per-modality "missing" vector instead of
            masking them in the fusion.
        expr_weight: weight of the expression loss (default fixed weighting only).
        au_weight: weight of the AU loss (default fixed weighting only).
        va_weight: weight of the valence/arousal loss (default fixed weighting only).
        task_balancing: how the task losses combine, e.g.
            :class:`~multimodal_fer.models.task_balancing.UncertaintyWeighting` or
            :class:`~multimodal_fer.models.task_balancing.GradNorm` (None: fixed weights ``expr_weight``,
            ``au_weight``, ``va_weight``; setting both is refused). Learned weights join the optimiser in their
            own parameter group without weight decay; they are logged each epoch as ``train/{task}/task_weight``.
            GradNorm reads the fused features z (B, D) of the step from the model's output (``fused``).
        expr_class_balance: expression cross-entropy class weights from the training labels (the data module's
            ``expression_class_counts()``): ``none``, ``inverse_frequency`` or ``effective_number`` (Cui et al.,
            CVPR 2019); see :func:`~multimodal_fer.models.losses.class_balance_weights`.
        class_balance_beta: the effective-number beta, in [0, 1).
        expr_label_smoothing: label smoothing ε of the expression cross-entropy, in [0, 1): each target becomes
            ``(1 - ε) · onehot(y) + ε / C`` (Szegedy et al., CVPR 2016), in every stage and in the per-modality
            heads' loss alike; at uniform predictions the loss is still ``ln C``. Default 0 (plain cross-entropy).
        au_class_balance: ``pos_weight``: per-AU BCE positive weights from the training labels (the data
            module's ``au_positive_weight()``); ``none``: unweighted BCE.
        auxiliary_loss_weight: weight of the encoders' own regularisers
            (:meth:`~multimodal_fer.models.encoders.Encoder.auxiliary_loss`, e.g. PointNet's T-Net orthogonality
            term ``||I − T Tᵀ||²``), one number for every modality or one per modality (unlisted: 0). The weighted
            sum, computed over the samples each encoder ran on (its present samples), is added to the training
            loss and logged as ``train/aux_loss``; nothing changes for encoders without a regulariser. The default
            0.001 is PointNet's.
        unimodal_loss_weight: weight of the per-modality heads' losses (deep supervision of every encoder on its
            own; see :class:`~multimodal_fer.models.multimodal.MultimodalFERModel`); 0 (default) builds no such
            heads. The term is the mean over encoded modalities of their fixed-weight task losses, computed on each
            modality's present samples only, and is logged as ``{stage}/unimodal_loss``. Metrics stay those of
            the fused heads.
        pretrained_encoders: modality → a local checkpoint whose weights start that modality's encoder, e.g.
            ``{audio: runs/audio_only/checkpoints/best-epoch=09.ckpt}``: a checkpoint of a run that trained the
            modality with the same encoder configuration (its feature norm comes along; a mask-aware ``FaceCNN``
            also takes a plain one's, see ``Encoder.adapt_pretrained``), or a state dict of the encoder alone.
            Loaded when fitting starts (a resumed fit then restores its own checkpoint over
            them); mismatched weights are refused. Default none. See
            :mod:`~multimodal_fer.tasks.encoder_initialisation`.
        freeze_pretrained_encoders: keep the encoders named in ``pretrained_encoders`` (and feature norms loaded
            with them) fixed: no gradient, always in eval mode (BatchNorm statistics stay those of the
            single-modality run). The fusion and heads then learn on features the single-modality models
            already compute. ``true`` freezes every started encoder; a list of modalities (e.g. ``[audio,
            depth, physio]``) freezes those and fine-tunes the other started encoders, e.g. to keep a modality
            that over-fits when trained longer (audio) where its single-modality run stopped while a
            slow-learning one (the face) goes on learning.
        pretrained_encoder_lr_scale: learning-rate factor of the encoders (and feature norms) loaded from
            ``pretrained_encoders`` and not frozen, e.g. 0.1 to fine-tune them gently while the fusion and heads
            learn at the full rate; the scheduler anneals their group from that smaller start. Default 1.
        pretrained_encoder_warmup_epochs: hold the encoders loaded from ``pretrained_encoders`` (and their
            feature norms) fixed for this many epochs at the start of fitting, then fine-tune them with
            everything else: the fusion and heads first learn on the features the single-modality runs compute,
            so their random start sends no large gradients into those encoders (linear probing then fine-tuning,
            Kumar et al., ICLR 2022). While held, the modules stay in eval mode and their gradients are dropped
            before every optimiser step (no update, no weight decay, no optimiser state); they still take part in
            the backward pass, so DDP needs no ``find_unused_parameters``. Default 0 (fine-tune from the start).
        optimizer: builds the optimiser from the trainable parameters (default AdamW, lr 1e-3, weight decay
            1e-4).
        lr_scheduler: builds an LR scheduler from the optimiser (default none), stepped once per epoch. Built with
            the fit's length known: :class:`~multimodal_fer.tasks.schedules.CosineAnnealingLR` without ``T_max``
            anneals over ``trainer.max_epochs``, so ``--trainer.max_epochs 40`` lengthens the schedule with it; an
            explicit ``T_max`` wins.
        lr_warmup_epochs: a linear learning-rate warm-up of this many epochs before ``lr_scheduler`` (or before
            the constant rate when there is none): epoch ``e < N`` trains at ``(e + 1) / (N + 1)`` of the
            configured rate, epoch N at the full rate, where the scheduler starts; a scheduler whose length
            follows the fit then spans ``trainer.max_epochs - N`` epochs, so it still ends with the fit. Every
            parameter group warms up alike. Resumed fits continue it exactly (both schedules' positions are in
            the checkpoint). Default 0 (off). See
            :func:`~multimodal_fer.tasks.schedules.with_linear_warmup`.
        non_finite_loss: what a NaN or infinite training loss does: ``"stop"`` (default) ends the run with an
            error naming the step, the batch's cache indices and the inputs that were not finite; ``"skip"``
            skips the batch (no update) and counts it in ``train/skipped_non_finite_batches`` (single process
            only: under DDP every process must step together).
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoders", "fusion", "optimizer", "lr_scheduler", "task_balancing"])
        configured = ModalityEncoders.of(encoders).as_dict()
        wanted = validate_modalities(list(modalities) if modalities is not None else list(configured))
        missing = [m for m in wanted if m not in configured]
        if missing:
            raise ValueError(
                f"The data loads modalities {list(wanted)} but no encoder is configured for {missing}; add one "
                f"under model.init_args.encoders.{missing[0]} (configured: {list(configured)})."
            )
        unused = [m for m in configured if m not in wanted]
        if unused:
            rank_zero_info(f"The data does not load {unused}: their configured encoders are left out of the model.")
        self.modalities = wanted
        self.label_space = label_space
        self.model = MultimodalFERModel(
            {m: configured[m] for m in wanted},
            fusion if fusion is not None else AttentionFusion,
            label_space,
            head_hidden_dim=head_hidden_dim,
            head_dropout=head_dropout,
            modality_dropout=modality_dropout,
            missing_tokens=missing_tokens,
            unimodal_heads=unimodal_loss_weight > 0,
        )
        if not (math.isfinite(unimodal_loss_weight) and unimodal_loss_weight >= 0.0):
            raise ValueError(f"unimodal_loss_weight must be finite and non-negative, got {unimodal_loss_weight}.")
        self.unimodal_loss_weight = float(unimodal_loss_weight)
        # Only when used: checkpoints without unimodal heads keep exactly their keys.
        self.unimodal_loss = (
            UnimodalLoss(tasks=label_space.tasks, expr_label_smoothing=expr_label_smoothing)
            if unimodal_loss_weight > 0
            else None
        )
        self.loss = MultitaskLoss(
            expr_weight,
            au_weight,
            va_weight,
            task_balancing,
            tasks=label_space.tasks,
            expr_label_smoothing=expr_label_smoothing,
        )
        self.auxiliary_loss_weight = self._auxiliary_weights(auxiliary_loss_weight, wanted)
        self._step_outputs: dict[str, Tensor] | None = None
        if self.loss.balancing.needs_shared_features and self.model.late:
            raise ValueError(
                f"{type(self.loss.balancing).__name__} needs one shared representation feeding every head; "
                "this model has no shared heads (late fusion?). Use another fusion or task balancing."
            )
        class_balance_weights(torch.ones(1), expr_class_balance, class_balance_beta)  # refuses bad settings now
        if au_class_balance not in ("none", "pos_weight"):
            raise ValueError(f"au_class_balance={au_class_balance!r}: use none or pos_weight.")
        self.expr_class_balance = expr_class_balance
        self.class_balance_beta = class_balance_beta
        self.au_class_balance = au_class_balance
        # Keys carry a suffix: "train" alone would clash with nn.Module.train in a ModuleDict.
        self.metrics = torch.nn.ModuleDict({f"{stage}_metrics": FERMetrics(label_space, stage) for stage in _STAGES})
        # Epoch losses are torchmetrics means, synced in the epoch-end hook together with the other metrics:
        # Lightning's sync_dist would reduce inside the progress bar on rank 0 only and deadlock against them.
        # The extra terms of the objective (_EXTRA_LOSSES) are logged only when the configuration has them.
        loss_names = ("loss", *label_space.tasks, *_EXTRA_LOSSES)
        self.loss_means = torch.nn.ModuleDict(
            {f"{stage}_{name}": MeanMetric() for stage in _STAGES for name in loss_names}
        )
        #: Starting encoders from single-modality runs: loading, freezing, warm-up, learning-rate scale.
        self.encoder_policy = PretrainedEncoderPolicy(
            pretrained_encoders,
            wanted,
            freeze=freeze_pretrained_encoders,
            lr_scale=pretrained_encoder_lr_scale,
            warmup_epochs=pretrained_encoder_warmup_epochs,
        )
        self.encoder_policy.freeze_configured(self.model)
        if non_finite_loss not in ("stop", "skip"):
            raise ValueError(f"non_finite_loss={non_finite_loss!r}: choose stop or skip.")
        self.non_finite_loss = non_finite_loss
        self.skipped_non_finite_batches = 0
        self.optimizer_factory = optimizer or _default_optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.lr_warmup_epochs = check_warmup_epochs(lr_warmup_epochs)
        self.register_buffer("au_pos_weight", torch.ones(label_space.num_action_units), persistent=True)
        self.register_buffer("expr_class_weight", torch.ones(label_space.num_expressions), persistent=True)

    @staticmethod
    def _auxiliary_weights(weight: float | Mapping[str, float], modalities: tuple[str, ...]) -> dict[str, float]:
        """``auxiliary_loss_weight`` as one weight per modality, checked."""
        if isinstance(weight, Mapping):
            unknown = sorted(set(weight) - set(modalities))
            if unknown:
                raise ValueError(
                    f"auxiliary_loss_weight names modalities {unknown} that have no encoder (encoders: "
                    f"{list(modalities)})."
                )
            chosen = {m: float(weight.get(m, 0.0)) for m in modalities}
        else:
            chosen = {m: float(weight) for m in modalities}
        bad = {m: w for m, w in chosen.items() if not (math.isfinite(w) and w >= 0.0)}
        if bad:
            raise ValueError(f"auxiliary_loss_weight must be finite and non-negative, got {bad}.")
        return chosen

    # ------------------------------------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        """Take class-balancing weights from the training labels, as configured, when fitting.

        Per-AU positive weights come from the data module's ``au_positive_weight()`` when it has one; expression
        class weights from its ``expression_class_counts()``, which ``expr_class_balance`` requires.
        """
        if stage == "fit":
            self.load_pretrained_encoders()
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        trained_data = (FERDataModule, CombinedDataModule)
        if isinstance(datamodule, trained_data):  # stand-ins without a data set (tests) lack rate and channels
            audio_rate = getattr(datamodule, "audio_sample_rate", None)
            if audio_rate is not None:
                self._refuse_other_audio_rate(audio_rate)
            self._refuse_other_physio_channels(getattr(datamodule, "physio_channels", None))
        if stage != "fit" or datamodule is None:
            return
        statistics = isinstance(datamodule, trained_data)
        if self.au_class_balance == "pos_weight" and statistics:
            self.au_pos_weight.copy_(datamodule.au_positive_weight())
        if self.expr_class_balance != "none":
            if not statistics:
                raise ValueError(
                    f"expr_class_balance={self.expr_class_balance!r} needs the training-label counts, but "
                    f"{type(datamodule).__name__} is not a FERDataModule with training statistics; set it to none."
                )
            counts = datamodule.expression_class_counts()
            weights = class_balance_weights(counts, self.expr_class_balance, self.class_balance_beta)
            self.expr_class_weight.copy_(weights)

    def load_pretrained_encoders(self) -> None:
        """Copy the weights named in ``pretrained_encoders`` into the encoders (and freeze them if configured)."""
        self.encoder_policy.load(self.model)

    def train(self, mode: bool = True) -> MultitaskFERTask:
        """Switch train/eval mode, except that frozen (or, in the warm-up, held) pretrained modules stay in eval."""
        super().train(mode)
        policy = getattr(self, "encoder_policy", None)
        if policy is not None:
            policy.keep_fixed_modules_in_eval()
        return self

    def on_train_epoch_start(self) -> None:
        """Hold the pretrained encoders fixed during the warm-up epochs and release them afterwards."""
        self.encoder_policy.start_epoch(self.current_epoch)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """During the warm-up, drop the held encoders' gradients so the optimiser leaves them untouched."""
        self.encoder_policy.drop_held_gradients()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Let a checkpoint trained without a restorer be tested with one.

        Weights of a frozen :class:`~multimodal_fer.models.restoration.PretrainedRestorer` come from its own
        restoration checkpoint; when the FER checkpoint lacks them they are taken from there (the rest of the
        model still loads strictly).
        """
        state = checkpoint.get("state_dict", {})
        damaged = [
            name
            for name, value in state.items()
            if isinstance(value, Tensor) and value.is_floating_point() and not torch.isfinite(value).all()
        ]
        if damaged:
            raise CorruptCheckpointError(
                f"The checkpoint holds NaN or infinite weights in {len(damaged)} tensors (first: {damaged[:3]}): it is "
                "damaged, or was saved after training diverged. Use another checkpoint (e.g. last.ckpt of an earlier "
                "epoch) or train again."
            )
        self._refuse_other_modalities(state)
        # Checkpoints from before class-balanced expression losses have no class weights: keep the current ones.
        state.setdefault("expr_class_weight", self.expr_class_weight.detach().clone())
        for name, module in self.named_modules():
            if isinstance(module, PretrainedRestorer) and not module.finetune:
                for key, value in module.state_dict(prefix=f"{name}.").items():
                    state.setdefault(key, value)

    def _refuse_other_audio_rate(self, data_rate: int) -> None:
        """Refuse an audio encoder built for another sampling rate than the cache's waveforms."""
        encoder = self.model.encoders["audio"] if "audio" in self.model.encoders else None
        encoder_rate = getattr(encoder, "sample_rate", None)
        if encoder_rate is not None and int(encoder_rate) != int(data_rate):
            raise DataError(
                f"The audio encoder ({type(encoder).__name__}) expects {encoder_rate} Hz waveforms, but the data's "
                f"audio is at {data_rate} Hz: its features would be computed on a wrongly scaled time axis. Set "
                f"--model.init_args.encoders.audio.init_args.sample_rate={data_rate} (for a pretrained speech model, "
                f"keep its rate and rebuild the cache with audio_sample_rate={encoder_rate})."
            )

    def _refuse_other_physio_channels(self, data_channels: int | None) -> None:
        """Refuse a physiology encoder built for another number of signal channels than the cache holds."""
        encoder = self.model.encoders["physio"] if "physio" in self.model.encoders else None
        encoder_channels = getattr(encoder, "in_channels", None)
        if data_channels is not None and encoder_channels is not None and int(encoder_channels) != data_channels:
            raise DataError(
                f"The physiology encoder ({type(encoder).__name__}) takes {encoder_channels} signal channels, but "
                f"the data has {data_channels}. Set --model.init_args.encoders.physio.init_args.in_channels="
                f"{data_channels} (the data set's config usually does; put it after the model's config)."
            )

    def _refuse_other_modalities(self, state: dict[str, Any]) -> None:
        """Refuse, with what to do, a checkpoint whose encoders are for other modalities than this model's."""
        prefix = "model.encoders."
        trained = sorted({key[len(prefix) :].split(".")[0] for key in state if key.startswith(prefix)})
        built = sorted(self.model.encoders.keys())
        if trained and trained != built:
            raise CheckpointMismatchError(
                f"The checkpoint was trained on the modalities {trained}, but this model is built for {built} (from "
                "the data's modalities). Test it on data with the same modalities; to test without some of them, "
                "keep them in data.init_args.modalities and list them in --data.init_args.withheld_modalities. "
                "An occlusion split holds faces only: test a face-only model on it."
            )

    def on_fit_start(self) -> None:
        """Record the parameter counts with the logger."""
        counts = {"params/total": self.model.num_parameters()}
        for name, encoder in self.model.encoders.items():
            counts[f"params/encoder_{name}"] = sum(p.numel() for p in encoder.parameters())
        for logger in self.loggers:
            logger.log_hyperparams(counts)

    def configure_optimizers(self) -> Any:
        """The configured optimiser, and scheduler if one is given (stepped per epoch).

        Parameter groups: the model's (``param_groups[0]``, whose learning rate is logged as ``train/lr``); the
        encoders loaded from ``pretrained_encoders`` (with their feature norms) when ``pretrained_encoder_lr_scale``
        is not 1, at that multiple of the learning rate; the task-balancing weights, if learned. With more than one
        group each is named (``model``, ``pretrained_encoders``, ``task_balancing``), which is how
        :class:`~lightning.pytorch.callbacks.LearningRateMonitor` labels them (``lr-AdamW/model``, ...). Frozen
        parameters are left out.

        The scheduler is built inside :func:`~multimodal_fer.tasks.schedules.fit_length` with
        ``trainer.max_epochs`` (less ``lr_warmup_epochs``): a schedule whose length is left unset (e.g.
        :class:`~multimodal_fer.tasks.schedules.CosineAnnealingLR` without ``T_max``) spans the whole fit, or what
        the warm-up leaves of it. With ``lr_warmup_epochs`` the returned scheduler is the warm-up followed by it
        (:func:`~multimodal_fer.tasks.schedules.with_linear_warmup`).
        """
        balancing = self.loss.balancing.parameter_group()
        own = {id(p) for p in balancing["params"]} if balancing is not None else set()
        trainable = [p for p in self.trainable_parameters() if id(p) not in own]
        others, started = self.encoder_policy.split_parameters(self.model, trainable)
        groups: list[dict[str, Any]] = [{"params": others, "name": "model"}]
        if started:
            groups.append({"params": started, "name": "pretrained_encoders"})
        if balancing is not None:
            groups.append({**balancing, "name": "task_balancing"})
        optimizer = self.optimizer_factory(groups if len(groups) > 1 else others)
        for group in optimizer.param_groups:
            if group.get("name") == "pretrained_encoders":
                group["lr"] *= self.encoder_policy.lr_scale
        warmup = self.lr_warmup_epochs
        if self.lr_scheduler_factory is None and not warmup:
            return optimizer
        scheduler = None
        if self.lr_scheduler_factory is not None:
            epochs = self._scheduled_epochs()
            with fit_length(epochs):
                scheduler = self.lr_scheduler_factory(optimizer)
            if getattr(scheduler, "follows_fit", False):
                after = f" after the {warmup}-epoch warm-up" if warmup else ""
                rank_zero_info(f"{type(scheduler).__name__} spans {epochs} epochs{after} (trainer.max_epochs).")
        if warmup:
            scheduler = with_linear_warmup(optimizer, warmup, scheduler)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters :meth:`configure_optimizers` gives the configured optimiser: all that need a gradient.

        Subclasses that train some modules with an optimiser of their own leave those out here.
        """
        return [p for p in self.parameters() if p.requires_grad]

    def _scheduled_epochs(self) -> int | None:
        """The epochs the configured scheduler spans: ``trainer.max_epochs`` less the warm-up (None: unknown).

        Raises:
            ValueError: the warm-up takes the whole fit (allowed under ``fast_dev_run``, whose one epoch is a
                check, not a fit: the scheduler then spans 1 epoch).
        """
        epochs = self._trainer.max_epochs if self._trainer is not None else None
        if epochs is None or epochs < 1 or not self.lr_warmup_epochs:
            return epochs
        remaining = epochs - self.lr_warmup_epochs
        if remaining >= 1:
            return remaining
        if self._trainer is not None and self._trainer.fast_dev_run:
            return 1
        raise ValueError(
            f"lr_warmup_epochs={self.lr_warmup_epochs} leaves no epoch of the fit (trainer.max_epochs={epochs}) for "
            "the learning-rate scheduler; lower --model.init_args.lr_warmup_epochs or raise --trainer.max_epochs."
        )

    # ------------------------------------------------------------------------------------------------- steps
    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Predict from a batch.

        Args:
            batch: model inputs keyed by modality plus ``present``.

        Returns:
            ``expr`` logits (B, C), ``au`` logits (B, K), ``va`` (B, D) in [-1, 1], as the label space has.
        """
        return self.model_output(batch).heads

    def model_output(self, batch: Mapping[str, Any]) -> MultimodalOutput:
        """Everything the model computes for a batch: predictions, fused and per-modality features, auxiliary losses.

        Args:
            batch: model inputs keyed by modality (and the encoders' side inputs) plus ``present``.

        Returns:
            The model's :class:`~multimodal_fer.models.multimodal.MultimodalOutput`.
        """
        keys = (*self.modalities, *self.model.side_inputs())
        inputs = {key: batch[key] for key in keys if key in batch}
        return self.model(inputs, batch[PRESENT_KEY])

    def auxiliary_loss(self, losses: Mapping[str, Tensor]) -> Tensor | None:
        """The weighted sum (float32) of the encoders' regularisers, or None if none counts.

        Args:
            losses: the model output's ``auxiliary_losses``, one unweighted scalar per modality.
        """
        terms = [
            self.auxiliary_loss_weight[m] * loss.float()
            for m, loss in losses.items()
            if self.auxiliary_loss_weight.get(m, 0.0) > 0.0
        ]
        return torch.stack(terms).sum() if terms else None

    def _class_weights(self) -> tuple[Tensor | None, Tensor | None]:
        """The AU positive weights (K,) and expression class weights (C,) the losses use, each None when off."""
        au_weight = self.au_pos_weight if self.au_class_balance == "pos_weight" else None
        expr_weight = self.expr_class_weight if self.expr_class_balance != "none" else None
        return au_weight, expr_weight

    def _shared_step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        output = self.model_output(batch)
        outputs = output.heads
        auxiliary = self.auxiliary_loss(output.auxiliary_losses)
        au_weight, expr_weight = self._class_weights()
        unimodal = (
            self.unimodal_loss(output.unimodal, output.present, batch, au_weight, expr_weight)
            if self.unimodal_loss is not None
            else None
        )
        # Balancers that read the shared features (GradNorm) differentiate through them: only while training.
        shared = output.fused if torch.is_grad_enabled() else None
        losses = self.loss(outputs, batch, au_weight, expr_weight, shared=shared)
        balancing_loss = losses.pop("balancing_loss", None)
        size = next(iter(outputs.values())).shape[0]
        if stage == "train":
            self.log("train/loss_step", losses["loss"], on_step=True, on_epoch=False, batch_size=size, prog_bar=True)
        extras = {"task_balancing_loss": balancing_loss, "aux_loss": auxiliary, "unimodal_loss": unimodal}
        if stage != "train":  # balancing and the regulariser are training terms
            extras = {"unimodal_loss": unimodal}
        for name, value in {**losses, **extras}.items():
            if value is not None:
                self.loss_means[f"{stage}_{name}"].update(value.detach(), weight=size)
        detached = {k: v.detach() for k, v in outputs.items()}
        self.metrics[f"{stage}_metrics"].update(detached, batch)
        if stage == "test":  # handed to test-batch callbacks by test_step
            self._step_outputs = detached
        total = losses["loss"]
        if unimodal is not None:
            total = total + self.unimodal_loss_weight * unimodal
        for extra in (balancing_loss, auxiliary):
            if extra is not None:
                total = total + extra
        return total

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor | None:
        """One training step; a non-finite loss stops the run or skips the batch (``non_finite_loss``)."""
        loss = self._shared_step(batch, "train")
        if torch.isfinite(loss):
            return loss
        if self.non_finite_loss == "skip" and self.trainer.world_size == 1:
            self.skipped_non_finite_batches += 1
            self.log("train/skipped_non_finite_batches", float(self.skipped_non_finite_batches), on_step=True)
            return None
        raise NonFiniteLossError(describe_non_finite_batch(loss, batch, self.modalities, self.global_step, batch_idx))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Project learned task weights back to their feasible set after the optimiser step (GradNorm)."""
        self.loss.balancing.after_optimizer_step()

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """One validation step (same computation as training, no gradient)."""
        self._shared_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """One test step (same computation as training, no gradient).

        Returns:
            The batch's detached head outputs, for callbacks that keep per-sample predictions
            (:class:`~multimodal_fer.callbacks.results_writer.ResultsWriter` with ``predictions=True``):
            ``"expr"`` logits (B, C), ``"au"`` logits (B, K), ``"va"`` values (B, D), as the task has them.
        """
        self._shared_step(batch, "test")
        outputs, self._step_outputs = self._step_outputs, None
        return outputs

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Predictions with probabilities: expression softmax, AU sigmoid, VA values, and cache indices."""
        outputs = self(batch)
        predictions: dict[str, Tensor] = {}
        if "expr" in outputs:
            predictions["expr_probs"] = outputs["expr"].softmax(dim=-1)
        if "au" in outputs:
            predictions["au_probs"] = outputs["au"].sigmoid()
        if "va" in outputs:
            predictions["va"] = outputs["va"]
        if "index" in batch:
            predictions["index"] = batch["index"]
        return predictions

    def _log_epoch_metrics(self, stage: str) -> None:
        values = self.metrics[f"{stage}_metrics"].compute()
        for key, mean in self.loss_means.items():
            if key.startswith(f"{stage}_"):
                name = key.removeprefix(f"{stage}_")
                if name not in _EXTRA_LOSSES:
                    values[f"{stage}/loss" if name == "loss" else f"{stage}/{name}/loss"] = mean.compute()
                elif mean.update_called:
                    values[f"{stage}/{name}"] = mean.compute()
                mean.reset()
        score = values.pop(f"{stage}/score", None)
        self.log_dict(values, sync_dist=False)
        if score is not None:
            self.log(f"{stage}/score", score, prog_bar=True)
        self.metrics[f"{stage}_metrics"].reset()

    def on_train_epoch_end(self) -> None:
        """Log training metrics, the task weights and the learning rate of the epoch."""
        self._log_epoch_metrics("train")
        for task, weight in self.loss.balancing.task_weights().items():
            self.log(f"train/{task}/task_weight", weight.to(self.device, torch.float32))
        optimizer = self.optimizers()
        optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer
        self.log("train/lr", optimizer.param_groups[0]["lr"])

    def on_validation_epoch_end(self) -> None:
        """Log validation metrics (``val/score`` is what checkpoints monitor)."""
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Log test metrics."""
        self._log_epoch_metrics("test")


def describe_non_finite_batch(
    loss: Tensor, batch: Mapping[str, Any], modalities: Sequence[str], step: int, batch_idx: int
) -> str:
    """The message of a non-finite training loss: where, which samples, which inputs, and what to do."""
    indices = batch.get("index")
    samples = indices.tolist()[:32] if isinstance(indices, Tensor) else "unknown"
    bad = [m for m in modalities if isinstance(batch.get(m), Tensor) and not torch.isfinite(batch[m].float()).all()]
    cause = (
        f"non-finite values in the inputs {bad}: check those samples in the cache (mfer prepare --verify)"
        if bad
        else "the inputs are finite, so the model diverged: lower the learning rate or use gradient clipping"
    )
    return (
        f"The training loss is {loss.detach().item()} at step {step} (batch {batch_idx}); the batch's cache indices "
        f"are {samples}. Cause: {cause}. To skip such batches instead of stopping, set "
        "--model.init_args.non_finite_loss=skip."
    )
