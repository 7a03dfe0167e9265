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

from multimodal_fer.callbacks.sample_gathering import from_every_process
from multimodal_fer.datamodules.base import FERDataModule
from multimodal_fer.run_folder import free_path


class PredictionCSVWriter(BasePredictionWriter):
    """One CSV row per predicted sample: cache index, key, source, expression and probabilities, AUs, affect.

    Rows are sorted by cache index. Under DDP the processes' rows are gathered and global rank 0 writes the one
    ``predictions.csv``, each sample once (the package's loaders shard without repeats; a repeat of the same
    index from any other sampler is dropped).

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
        """Write every prediction of the epoch (every process's, from global rank 0)."""
        space = pl_module.label_space
        datamodule = trainer.datamodule
        records = datamodule.sample_records() if isinstance(datamodule, FERDataModule) else []
        rows = [row for batch in _flatten(predictions) for row in _rows(batch, space, records)]
        rows = from_every_process(rows, trainer)
        if not trainer.is_global_zero:
            return
        folder = Path(self.output_dir or trainer.default_root_dir or ".")
        folder.mkdir(parents=True, exist_ok=True)
        path = free_path(folder, "predictions.csv")  # an earlier prediction's file stays
        columns = ["index", "key", "source", "expression", *[f"p_{n}" for n in space.expressions]]
        columns += [f"au{n}" for n in space.action_units] + list(space.dimensions)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(_once_per_index(rows))
        self.last_path = path


def _once_per_index(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows sorted by cache index, the first of each index kept (rows without an index keep their order)."""
    if not rows or any("index" not in row for row in rows):
        return rows
    kept: dict[int, dict[str, Any]] = {}
    for row in rows:
        kept.setdefault(int(row["index"]), row)
    return [kept[index] for index in sorted(kept)]


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
