"""Write ``mfer predict`` outputs on a prepared cache to a CSV instead of discarding them."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from multimodal_fer.datamodules.base import FERDataModule
from multimodal_fer.run_folder import free_path


class PredictionCSVWriter(BasePredictionWriter):
    """One CSV row per predicted sample: cache index, key, source, expression and probabilities, AUs, affect.

    Under DDP each process writes ``predictions-rank<k>.csv``; a single process writes ``predictions.csv``.

    Args:
        output_dir: folder of the CSV (None: the run folder); an existing file is kept and the new one gets ``.2``,
            ``.3`` ... before ``.csv``.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = output_dir
        self.last_path: Path | None = None

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any] | None,
    ) -> None:
        """Write every prediction of the epoch."""
        folder = Path(self.output_dir or trainer.default_root_dir or ".")
        folder.mkdir(parents=True, exist_ok=True)
        stem = "predictions" if trainer.world_size == 1 else f"predictions-rank{trainer.global_rank}"
        path = free_path(folder, f"{stem}.csv")  # an earlier prediction's file stays
        space = pl_module.label_space
        datamodule = trainer.datamodule
        records = datamodule.sample_records() if isinstance(datamodule, FERDataModule) else []
        columns = ["index", "key", "source", "expression", *[f"p_{n}" for n in space.expressions]]
        columns += [f"au{n}" for n in space.action_units] + list(space.dimensions)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for batch in _flatten(predictions):
                for row in _rows(batch, space, records):
                    writer.writerow(row)
        self.last_path = path


def _flatten(predictions: Sequence[Any]) -> list[dict[str, torch.Tensor]]:
    """Lightning gives a list of batches, or a list per dataloader of lists of batches."""
    flat: list[dict[str, torch.Tensor]] = []
    for item in predictions:
        if isinstance(item, dict):
            flat.append(item)
        else:
            flat.extend(_flatten(item))
    return flat


def _rows(batch: dict[str, torch.Tensor], space: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    size = next(iter(batch.values())).shape[0]
    rows = []
    for k in range(size):
        row: dict[str, Any] = {}
        if "index" in batch:
            index = int(batch["index"][k])
            row["index"] = index
            if index < len(records):
                row["key"], row["source"] = records[index]["key"], records[index]["source"]
        if "expr_probs" in batch:
            probs = batch["expr_probs"][k].float().tolist()
            row["expression"] = space.expressions[max(range(len(probs)), key=probs.__getitem__)]
            row.update({f"p_{n}": round(p, 4) for n, p in zip(space.expressions, probs, strict=True)})
        if "au_probs" in batch:
            row.update(
                {f"au{n}": round(p, 4) for n, p in zip(space.action_units, batch["au_probs"][k].tolist(), strict=True)}
            )
        if "va" in batch:
            row.update({n: round(v, 4) for n, v in zip(space.dimensions, batch["va"][k].float().tolist(), strict=True)})
        rows.append({key: ("" if isinstance(v, float) and not math.isfinite(v) else v) for key, v in row.items()})
    return rows
