"""Multitask FER: encoders → fusion → expression, AU and valence/arousal heads, one step for every stage."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics import MeanMetric

from multimodal_fer.metrics import FERMetrics
from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.models.fusion.attention import AttentionFusion
from multimodal_fer.models.fusion.base import Fusion
from multimodal_fer.models.losses import MultitaskLoss
from multimodal_fer.models.multimodal import MultimodalFERModel
from multimodal_fer.models.restoration.restorer import PretrainedRestorer
from multimodal_fer.types import PRESENT_KEY, LabelSpace, validate_modalities

_STAGES = ("train", "val", "test")


def _default_optimizer(parameters: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=1e-3, weight_decay=1e-4)


class MultitaskFERTask(pl.LightningModule):
    """Train, validate and test a multimodal multitask FER model.

    Args:
        encoders: one encoder per modality (each knows its ``modality``); encoders of modalities the data
            module does not load are dropped, so a modality ablation is a data-config change only.
        label_space: expression classes, AUs and dimensions (linked from the data module).
        modalities: modalities the data module loads (linked from the data module).
        fusion: builds the fusion from ``{modality: out_dim}`` (default :class:`AttentionFusion`).
        head_hidden_dim: hidden width of each task head.
        head_dropout: dropout in the heads.
        expr_weight: weight of the expression loss.
        au_weight: weight of the AU loss.
        va_weight: weight of the valence/arousal loss.
        optimizer: builds the optimiser from the parameters (default AdamW, lr 1e-3, weight decay 1e-4).
        lr_scheduler: builds an LR scheduler from the optimiser (default none).
    """

    def __init__(
        self,
        encoders: list[Encoder],
        label_space: LabelSpace,
        modalities: list[str] | tuple[str, ...] | None = None,
        fusion: Callable[[Mapping[str, int]], Fusion] | None = None,
        head_hidden_dim: int = 128,
        head_dropout: float = 0.1,
        expr_weight: float = 1.0,
        au_weight: float = 1.0,
        va_weight: float = 1.0,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoders", "fusion", "optimizer", "lr_scheduler"])
        by_modality: dict[str, Encoder] = {}
        for encoder in encoders:
            if encoder.modality in by_modality:
                raise ValueError(f"Two encoders are configured for modality {encoder.modality!r}; keep one.")
            by_modality[encoder.modality] = encoder
        wanted = validate_modalities(list(modalities) if modalities is not None else list(by_modality))
        missing = [m for m in wanted if m not in by_modality]
        if missing:
            raise ValueError(
                f"The data loads modalities {list(wanted)} but no encoder is configured for {missing}; "
                f"add one to model.init_args.encoders (configured: {sorted(by_modality)})."
            )
        self.modalities = wanted
        self.label_space = label_space
        self.model = MultimodalFERModel(
            {m: by_modality[m] for m in wanted},
            fusion if fusion is not None else AttentionFusion,
            label_space,
            head_hidden_dim=head_hidden_dim,
            head_dropout=head_dropout,
        )
        self.loss = MultitaskLoss(expr_weight=expr_weight, au_weight=au_weight, va_weight=va_weight)
        # Keys carry a suffix: "train" alone would clash with nn.Module.train in a ModuleDict.
        self.metrics = torch.nn.ModuleDict({f"{stage}_metrics": FERMetrics(label_space, stage) for stage in _STAGES})
        # Epoch losses are torchmetrics means, synced in the epoch-end hook together with the other metrics:
        # Lightning's sync_dist would reduce inside the progress bar on rank 0 only and deadlock against them.
        loss_names = ("loss", *label_space.tasks)
        self.loss_means = torch.nn.ModuleDict(
            {f"{stage}_{name}": MeanMetric() for stage in _STAGES for name in loss_names}
        )
        self.optimizer_factory = optimizer or _default_optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.register_buffer("au_pos_weight", torch.ones(label_space.num_action_units), persistent=True)

    # ------------------------------------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        """Take per-AU positive weights from the training labels when the data module offers them."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and datamodule is not None and hasattr(datamodule, "au_positive_weight"):
            self.au_pos_weight.copy_(datamodule.au_positive_weight())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Let a checkpoint trained without a restorer be tested with one.

        Weights of a frozen :class:`~multimodal_fer.models.restoration.PretrainedRestorer` come from its own
        restoration checkpoint; when the FER checkpoint lacks them they are taken from there (the rest of the
        model still loads strictly).
        """
        state = checkpoint.get("state_dict", {})
        for name, module in self.named_modules():
            if isinstance(module, PretrainedRestorer) and not module.finetune:
                for key, value in module.state_dict(prefix=f"{name}.").items():
                    state.setdefault(key, value)

    def on_fit_start(self) -> None:
        """Record the parameter counts with the logger."""
        counts = {"params/total": self.model.num_parameters()}
        for name, encoder in self.model.encoders.items():
            counts[f"params/encoder_{name}"] = sum(p.numel() for p in encoder.parameters())
        for logger in self.loggers:
            logger.log_hyperparams(counts)

    def configure_optimizers(self) -> Any:
        """The configured optimiser, and scheduler if one is given (stepped per epoch)."""
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_factory(optimizer)}

    # ------------------------------------------------------------------------------------------------- steps
    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Predict from a batch.

        Args:
            batch: model inputs keyed by modality plus ``present``.

        Returns:
            ``expr`` logits (B, C), ``au`` logits (B, K), ``va`` (B, D) in [-1, 1], as the label space has.
        """
        inputs = {m: batch[m] for m in self.modalities if m in batch}
        return self.model(inputs, batch[PRESENT_KEY])

    def _shared_step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        outputs = self(batch)
        losses = self.loss(outputs, batch, self.au_pos_weight)
        size = next(iter(outputs.values())).shape[0]
        if stage == "train":
            self.log("train/loss_step", losses["loss"], on_step=True, on_epoch=False, batch_size=size, prog_bar=True)
        for name, value in losses.items():
            self.loss_means[f"{stage}_{name}"].update(value.detach(), weight=size)
        self.metrics[f"{stage}_metrics"].update({k: v.detach() for k, v in outputs.items()}, batch)
        return losses["loss"]

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """One training step."""
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """One validation step (same computation as training, no gradient)."""
        self._shared_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """One test step (same computation as training, no gradient)."""
        self._shared_step(batch, "test")

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
                values[f"{stage}/loss" if name == "loss" else f"{stage}/{name}/loss"] = mean.compute()
                mean.reset()
        score = values.pop(f"{stage}/score", None)
        self.log_dict(values, sync_dist=False)
        if score is not None:
            self.log(f"{stage}/score", score, prog_bar=True)
        self.metrics[f"{stage}_metrics"].reset()

    def on_train_epoch_end(self) -> None:
        """Log training metrics and the learning rate of the epoch."""
        self._log_epoch_metrics("train")
        optimizer = self.optimizers()
        optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer
        self.log("train/lr", optimizer.param_groups[0]["lr"])

    def on_validation_epoch_end(self) -> None:
        """Log validation metrics (``val/score`` is what checkpoints monitor)."""
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Log test metrics."""
        self._log_epoch_metrics("test")
