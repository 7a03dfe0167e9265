"""Training throughput of a config's model: Lightning fed from the cache vs a plain PyTorch loop.

Prints JSON and a Markdown table with, in one run and on one device:
  * the cache loader alone (host batches/s × batch size), and with transfer + device transform;
  * a plain PyTorch loop (forward, loss, backward, AdamW step) over batches already on the device;
  * Lightning's ``Trainer.fit`` on the same model fed by the real data module (data path included);
  * their ratio, Lightning / plain: what the framework and the data path cost.

Usage:
  python benchmarks/throughput.py --config configs/quickstart.yaml [--steps 40] [--precision auto]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from multimodal_fer.callbacks.results_writer import cpu_model
from multimodal_fer.cli import build_cli


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to_device(batch: dict, device: torch.device) -> dict:
    moved = {}
    for key, value in batch.items():
        if isinstance(value, dict):
            moved[key] = {k: v.to(device, non_blocking=True) for k, v in value.items()}
        else:
            moved[key] = value.to(device, non_blocking=True)
    return moved


def loader_throughput(datamodule, steps: int, device: torch.device) -> tuple[float, float]:
    """Samples/s of the training loader alone, and with transfer + device transform."""
    loader = datamodule.train_dataloader()

    def batches():
        while True:
            yield from loader

    stream = batches()
    next(stream)  # start workers
    count, start = 0, time.perf_counter()
    for _ in range(steps):
        count += next(stream)["expr"].shape[0]
    host = count / (time.perf_counter() - start)
    count, start = 0, time.perf_counter()
    for _ in range(steps):
        batch = datamodule.on_after_batch_transfer(_to_device(next(stream), device), 0)
        count += batch["expr"].shape[0]
    _sync(device)
    return host, count / (time.perf_counter() - start)


def plain_throughput(
    task, batches: list[dict], steps: int, warmup: int, device: torch.device, dtype: torch.dtype | None
) -> float:
    """Samples/s of a plain PyTorch training loop over batches already on the device."""
    task = task.to(device).train()
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-3)
    pos_weight = task.au_pos_weight

    def step(batch: dict) -> None:
        with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs = task(batch)
            loss = task.loss(outputs, batch, pos_weight)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(warmup):
        step(batches[i % len(batches)])
    _sync(device)
    count, start = 0, time.perf_counter()
    for i in range(steps):
        batch = batches[i % len(batches)]
        step(batch)
        count += batch["expr"].shape[0]
    _sync(device)
    return count / (time.perf_counter() - start)


class _StepTimer(pl.Callback):
    """Times training batches after a warm-up, from the first timed batch's start to the last's end."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None
        self.samples = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            _sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.start is not None:
            self.samples += batch["expr"].shape[0]
            _sync(pl_module.device)
            self.end = time.perf_counter()


def lightning_throughput(task, datamodule, steps: int, warmup: int, accelerator: str, precision: str) -> float:
    """Samples/s of ``Trainer.fit`` on the real data module (data loading, transfer, transforms included)."""
    timer = _StepTimer(warmup)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        max_steps=warmup + steps,
        # Every epoch holds at least one step, so max_steps ends the fit; a finite epoch count gives the config's
        # schedulers the fit length they are built from (a cosine's T_max).
        max_epochs=warmup + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(task, datamodule=datamodule)
    assert timer.start is not None and timer.end is not None
    return timer.samples / (timer.end - timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--precision", default="auto", help="auto: bf16-mixed on CUDA, 32-true on CPU")
    parser.add_argument("--output", default=None, help="also write the JSON here")
    parser.add_argument("overrides", nargs="*", help="extra CLI overrides, e.g. --data.init_args.batch_size=256")
    args, unknown = parser.parse_known_args()
    overrides = [*args.overrides, *unknown]

    cli = build_cli(["--config", args.config, *overrides, "--trainer.logger=false"], run=False)
    datamodule, task = cli.datamodule, cli.model
    datamodule.prepare()
    datamodule.setup("fit")
    task.au_pos_weight.copy_(datamodule.au_positive_weight())

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    precision = args.precision if args.precision != "auto" else ("bf16-mixed" if cuda else "32-true")
    dtype = torch.bfloat16 if precision.startswith("bf16") else None
    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU: {cpu_model()}, {torch.get_num_threads()} threads"

    host_rate, transformed_rate = loader_throughput(datamodule, args.steps, device)
    batches = []
    for batch in datamodule.train_dataloader():
        batches.append(datamodule.on_after_batch_transfer(_to_device(batch, device), 0))
        if len(batches) == 8:
            break
    plain_rate = plain_throughput(copy.deepcopy(task), batches, args.steps, args.warmup, device, dtype)
    lightning_rate = lightning_throughput(
        copy.deepcopy(task), datamodule, args.steps, args.warmup, "gpu" if cuda else "cpu", precision
    )
    result = {
        "config": args.config,
        "overrides": overrides,
        "device": device_name,
        "torch_threads": torch.get_num_threads(),
        "precision": precision,
        "batch_size": datamodule.batch_size,
        "num_workers": datamodule.num_workers,
        "modalities": list(task.modalities),
        "num_parameters": task.model.num_parameters(),
        "loader_samples_per_s": round(host_rate, 1),
        "loader_with_device_transform_samples_per_s": round(transformed_rate, 1),
        "plain_pytorch_train_samples_per_s": round(plain_rate, 1),
        "lightning_train_samples_per_s": round(lightning_rate, 1),
        "lightning_over_plain": round(lightning_rate / plain_rate, 3),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    print(json.dumps(result, indent=2))
    print()
    print(
        "| device | precision | batch | loader samples/s | loader+transform | plain PyTorch train | "
        "Lightning train | Lightning / plain |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {device_name} | {precision} | {result['batch_size']} | {result['loader_samples_per_s']:,.0f} | "
        f"{result['loader_with_device_transform_samples_per_s']:,.0f} | "
        f"{result['plain_pytorch_train_samples_per_s']:,.0f} | {result['lightning_train_samples_per_s']:,.0f} | "
        f"{result['lightning_over_plain']:.2f} |"
    )
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
