"""What a W&B user expects of a test: a confusion matrix, a predictions table with the samples, the results files.

After each test (global rank 0, W&B loggers only; a no-op for every other logger) the callback logs

- ``<condition>/expr/confusion_matrix``: W&B's confusion-matrix plot of the labelled test samples, classes named
  from the label space (``condition`` is the test condition, ``test``, ``test-withheld-audio``, ...);
- ``<condition>/predictions``: a table of the first ``max_rows`` test samples by cache index: index, subject, true
  and predicted expression (with the predicted class's probability), true and predicted AUs, true and predicted
  affect dimensions, and the sample's media from the cache (:class:`~multimodal_fer.visualization.sample_media.
  CachedSampleMedia`: face image, voice, depth map or point cloud, physiological line plot); faces and depth only
  where the data set's card allows it (``face_media_allowed``);
- the results file the :class:`~multimodal_fer.callbacks.ResultsWriter` wrote (with its predictions file) as a W&B
  artifact, when the logger uploads checkpoints (``log_model``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from multimodal_fer._lazy import require
from multimodal_fer.callbacks.results_writer import ResultsWriter, test_condition
from multimodal_fer.callbacks.sample_gathering import as_numpy, gathered_by_index
from multimodal_fer.callbacks.wandb_artifacts import log_results_artifact, uploads_artifacts
from multimodal_fer.datamodules.base import FERDataModule
from multimodal_fer.loggers import WandbLogger as ConditionedWandbLogger
from multimodal_fer.types import LabelSpace

log = logging.getLogger(__name__)

#: Probability above which an AU counts as predicted present.
AU_THRESHOLD = 0.5


class WandbTestLogger(Callback):
    """Logs the test's confusion matrix, a predictions table with sample media, and the results files to W&B.

    Args:
        max_rows: rows of the predictions table (the first test samples by cache index); 0 logs no table.
        media: add each sample's media from the cache to the table (faces and depth only where allowed).
        confusion_matrix: log the expression confusion matrix.
        results_artifact: upload the results file as an artifact when the W&B logger has ``log_model`` set.
    """

    def __init__(
        self, max_rows: int = 64, media: bool = True, confusion_matrix: bool = True, results_artifact: bool = True
    ) -> None:
        if max_rows < 0:
            raise ValueError(f"max_rows must be 0 or more, got {max_rows}.")
        self.max_rows = max_rows
        self.media = media
        self.confusion_matrix = confusion_matrix
        self.results_artifact = results_artifact
        self._kept: list[dict[str, np.ndarray]] = []
        self._uploaded: set[Path] = set()
        #: What the last test logged: key → kind (``confusion_matrix``, ``table``), for messages and tests.
        self.last_logged: dict[str, str] = {}

    @staticmethod
    def _wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
        return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Tell this package's W&B loggers the test's condition, under which its scalar metrics are logged."""
        condition = test_condition(
            getattr(trainer, "datamodule", None), trainer.ckpt_path, Path(trainer.default_root_dir)
        )
        for logger in self._wandb_loggers(trainer):
            if isinstance(logger, ConditionedWandbLogger):
                logger.test_condition = condition

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Forget an earlier test's samples."""
        self._kept = []

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the batch's cache indices, labels and predictions on the CPU (only with a W&B logger)."""
        if not self._wandb_loggers(trainer) or not isinstance(outputs, dict) or "index" not in batch:
            return
        kept: dict[str, np.ndarray] = {"index": as_numpy(batch["index"])}
        for task in ("expr", "au", "va"):
            if task in batch and task in outputs:
                kept[f"target_{task}"] = as_numpy(batch[task])
                kept[f"output_{task}"] = as_numpy(outputs[task])
        self._kept.append(kept)

    def _gathered(self, trainer: pl.Trainer) -> dict[str, np.ndarray]:
        """Every process's samples, each cache index once, sorted by index."""
        return gathered_by_index(self._kept, trainer)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the confusion matrix and the predictions table (global rank 0); the test's condition is forgotten."""
        loggers = self._wandb_loggers(trainer)
        for logger in loggers:
            if isinstance(logger, ConditionedWandbLogger):
                logger.test_condition = None
        if not loggers:
            return
        samples = self._gathered(trainer)
        self._kept = []
        self.last_logged = {}
        if not trainer.is_global_zero or not samples or not hasattr(pl_module, "label_space"):
            return
        wandb = require("wandb", "logging test predictions to Weights & Biases")
        space: LabelSpace = pl_module.label_space
        datamodule = getattr(trainer, "datamodule", None)
        condition = test_condition(datamodule, trainer.ckpt_path, Path(trainer.default_root_dir))
        payload: dict[str, Any] = {}
        if self.confusion_matrix and "output_expr" in samples and space.expressions:
            labelled = samples["target_expr"] >= 0
            if labelled.any():
                key = f"{condition}/expr/confusion_matrix"
                payload[key] = wandb.plot.confusion_matrix(
                    y_true=samples["target_expr"][labelled].tolist(),
                    preds=samples["output_expr"][labelled].argmax(axis=1).tolist(),
                    class_names=list(space.expressions),
                    title=f"Expressions, {condition} ({int(labelled.sum())} labelled samples)",
                )
                self.last_logged[key] = "confusion_matrix"
            else:
                log.info("W&B: no confusion matrix for %s: none of its samples has an expression label.", condition)
        if self.max_rows:
            key = f"{condition}/predictions"
            payload[key] = self._table(wandb, samples, space, datamodule)
            self.last_logged[key] = "table"
        if payload:
            for logger in loggers:
                logger.experiment.log({**payload, "trainer/global_step": trainer.global_step})

    def _table(self, wandb: Any, samples: dict[str, np.ndarray], space: LabelSpace, datamodule: object) -> Any:
        """The predictions table of the first :attr:`max_rows` samples."""
        chosen = {key: value[: self.max_rows] for key, value in samples.items()}
        columns = ["index", "subject"]
        has_expr, has_au, has_va = (f"output_{task}" in chosen for task in ("expr", "au", "va"))
        if has_expr and space.expressions:
            columns += ["true expression", "predicted expression", "probability"]
        if has_au and space.action_units:
            columns += ["true AUs", "predicted AUs"]
        dimensions = list(space.dimensions) if has_va else []
        for dimension in dimensions:
            columns += [f"true {dimension}", f"predicted {dimension}"]
        media = self._media(wandb, datamodule)
        columns += media.columns if media is not None else []
        subjects = _subjects(datamodule, chosen["index"])
        table = wandb.Table(columns=columns)
        for row, index in enumerate(chosen["index"].tolist()):
            values: list[Any] = [int(index), subjects[row]]
            if has_expr and space.expressions:
                probabilities = torch.softmax(torch.from_numpy(chosen["output_expr"][row]), dim=-1).numpy()
                label = int(chosen["target_expr"][row])
                predicted = int(probabilities.argmax())
                values += [space.expressions[label] if label >= 0 else "", space.expressions[predicted]]
                values.append(round(float(probabilities[predicted]), 4))
            if has_au and space.action_units:
                present = 1.0 / (1.0 + np.exp(-chosen["output_au"][row])) > AU_THRESHOLD
                values += [_au_list(chosen["target_au"][row], space), _au_list(present.astype(np.float32), space)]
            for column, _dimension in enumerate(dimensions):
                values += [_number(chosen["target_va"][row][column]), _number(chosen["output_va"][row][column])]
            if media is not None:
                values += media.row(index)
            table.add_data(*values)
        return table

    def _media(self, wandb: Any, datamodule: object) -> Any:
        """The sample media of the table, or None (media off, or a data module without a cache to read)."""
        if not self.media:
            return None
        if not isinstance(datamodule, FERDataModule) or datamodule.reader is None:
            log.info("W&B: the predictions table has no media: %s reads no cache.", type(datamodule).__name__)
            return None
        from multimodal_fer.visualization.sample_media import CachedSampleMedia

        fields = {
            "face": "face_clip" if datamodule.face_clip else "face",
            "audio": "audio",
            "depth": "points" if datamodule.depth_input == "points" else "depth",
            "physio": "physio",
        }
        shown = {m: fields[m] for m in datamodule.modalities if m in fields and m not in datamodule.withheld_modalities}
        media = CachedSampleMedia(datamodule.reader, shown, datamodule.face_media_allowed, wandb)
        for modality, reason in media.left_out.items():
            log.info("W&B: the predictions table shows no %s: %s.", modality, reason)
        return media

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """After a test: upload its results file as an artifact where the logger uploads checkpoints."""
        if str(getattr(stage, "value", stage)) != "test" or not self.results_artifact or not trainer.is_global_zero:
            return
        writer = next((c for c in trainer.callbacks if isinstance(c, ResultsWriter)), None)  # type: ignore[attr-defined]
        path = writer.last_path if writer is not None else None
        loggers = [logger for logger in self._wandb_loggers(trainer) if uploads_artifacts(logger)]
        if path is None or path in self._uploaded or not path.is_file() or not loggers:
            return
        wandb = require("wandb", "uploading results files to Weights & Biases")
        condition = str(writer.condition or path.stem.removeprefix("results-"))
        for logger in loggers:
            log_results_artifact(logger.experiment, wandb, path, condition)
        self._uploaded.add(path)


def _number(value: float) -> float | None:
    """A finite value rounded for the table; None for an unlabelled (NaN) one."""
    return round(float(value), 4) if np.isfinite(value) else None


def _au_list(values: np.ndarray, space: LabelSpace) -> str:
    """``AU1 AU12`` for the AUs marked present (> 0.5); ``none``; empty where any AU is unlabelled (NaN)."""
    if np.isnan(values).any():
        return ""
    active = [f"AU{number}" for number, value in zip(space.action_units, values, strict=True) if value > AU_THRESHOLD]
    return " ".join(active) or "none"


def _subjects(datamodule: object, indices: np.ndarray) -> list[str]:
    """The subject of each cache index (its name where the cache keeps names), or empty strings."""
    reader = getattr(datamodule, "reader", None) if isinstance(datamodule, FERDataModule) else None
    if reader is None or "subject" not in reader.specs:
        return [""] * len(indices)
    codes = np.asarray(reader.array("subject"))[indices]
    names = reader.manifest.get("subjects") or []
    return [str(names[code]) if 0 <= code < len(names) else str(int(code)) for code in codes]
