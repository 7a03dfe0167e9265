"""Evaluation under DDP scores every sample once: uneven shards, synced metrics, one predictions file.

A split of 7 samples cannot be divided between 2 processes; Lightning's padded ``DistributedSampler`` would score
one sample twice. The package's evaluation loaders shard it 4 + 3 instead.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from multimodal_fer.cli import main
from multimodal_fer.datamodules import SynthAffectDataModule
from multimodal_fer.datamodules.epoch_sampler import EpochShuffleSampler
from multimodal_fer.datamodules.evaluation_sampler import UnpaddedShardSampler, evaluation_shards
from multimodal_fer.errors import DataError
from multimodal_fer.metrics import FERMetrics

from conftest import CONFIGS, REPO, TINY_DATA, run_folder, tiny_data_args, tiny_trainer_args

QUICKSTART = str(CONFIGS / "quickstart.yaml")
#: 3 subjects × 7 samples: one subject validates, one tests, so the val and test splits hold 7 samples each.
SEVEN = {"num_subjects": 3, "samples_per_subject": 7, "val_subjects": 1, "test_subjects": 1}


@pytest.fixture(scope="module")
def seven_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seven") / "synthaffect"
    main(["prepare", "--config", QUICKSTART, *tiny_data_args(root, **SEVEN)])
    return root


def _datamodule(root: Path) -> SynthAffectDataModule:
    settings = {key: value for key, value in {**TINY_DATA, **SEVEN}.items()}
    return SynthAffectDataModule(root=str(root), **settings)


def _trainer(world_size: int, rank: int) -> SimpleNamespace:
    """What the data module asks of a distributed trainer."""
    return SimpleNamespace(distributed_sampler_kwargs={"num_replicas": world_size, "rank": rank})


def test_shards_hold_every_position_once_and_differ_by_at_most_one() -> None:
    split = list(range(7))
    shards = [list(UnpaddedShardSampler(split, 2, rank)) for rank in (0, 1)]
    assert shards == [[0, 2, 4, 6], [1, 3, 5]]
    assert [len(UnpaddedShardSampler(split, 2, rank)) for rank in (0, 1)] == [4, 3]
    # The padded sampler Lightning would otherwise use scores position 0 twice.
    padded = [list(DistributedSampler(split, num_replicas=2, rank=rank, shuffle=False)) for rank in (0, 1)]
    assert sorted(padded[0] + padded[1]) == [0, 0, 1, 2, 3, 4, 5, 6]
    with pytest.raises(DataError, match=r"test split has 1 samples, fewer than the 2 processes.*devices=1"):
        UnpaddedShardSampler([0], 2, 0, "test")


def test_only_evaluation_loaders_are_sharded(seven_cache: Path) -> None:
    assert evaluation_shards(None) is None and evaluation_shards(_trainer(1, 0)) is None
    datamodule = _datamodule(seven_cache)
    datamodule.trainer = _trainer(2, 1)
    seen = []
    for loader in (datamodule.val_dataloader(), datamodule.test_dataloader(), datamodule.predict_dataloader()):
        assert isinstance(loader.sampler, UnpaddedShardSampler) and len(loader.sampler) == 3
        seen.append(torch.cat([batch["index"] for batch in loader]).tolist())
    assert seen[1] == seen[2] == datamodule.splits["test"][[1, 3, 5]].tolist()
    # Training keeps the epoch shuffle (Lightning wraps it in its distributed sampler); analysis loaders see all.
    assert isinstance(datamodule.train_dataloader().sampler, EpochShuffleSampler)
    assert len(datamodule.ordered_dataloader("test").sampler) == 7


def _fixed_outputs(batch: dict, label_space) -> dict[str, torch.Tensor]:
    """A stand-in model: outputs drawn from each sample's cache index alone, so any sharding gives the same ones."""
    rows = []
    for index in batch["index"].tolist():
        generator = torch.Generator().manual_seed(int(index))
        width = label_space.num_expressions + label_space.num_action_units + label_space.num_dimensions
        rows.append(torch.randn(width, generator=generator))
    values = torch.stack(rows)
    c, k = label_space.num_expressions, label_space.num_action_units
    return {"expr": values[:, :c], "au": values[:, c : c + k], "va": values[:, c + k :].tanh()}


def _evaluate(root: Path, trainer: SimpleNamespace | None) -> tuple[dict[str, float], list[int], list[int]]:
    """Test metrics of the stand-in model, the cache indices this process scored, and the synced labeled counts."""
    datamodule = _datamodule(root)
    datamodule.trainer = trainer
    metrics = FERMetrics(datamodule.label_space, "test")
    seen: list[int] = []
    for batch in datamodule.test_dataloader():
        metrics.update(_fixed_outputs(batch, datamodule.label_space), batch)
        seen += batch["index"].tolist()
    values = {name: float(value) for name, value in metrics.compute().items()}
    counts = [int(metrics.expr_count.compute().reshape(-1)[0]), int(metrics.va_count.compute().reshape(-1)[0])]
    return values, seen, counts


def _ddp_worker(rank: int, init_file: str, root: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        values, seen, counts = _evaluate(Path(root), _trainer(2, rank))
        everyone: list[list[int] | None] = [None, None]
        dist.all_gather_object(everyone, seen)
        Path(out_dir, f"rank{rank}.json").write_text(
            json.dumps({"metrics": values, "seen": everyone, "counts": counts})
        )
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_score_each_of_seven_samples_once(tmp_path: Path, seven_cache: Path) -> None:
    import torch.multiprocessing as mp

    single, seen, counts = _evaluate(seven_cache, None)
    assert len(seen) == 7 and counts == [7, 7]
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(seven_cache), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        shards = got["seen"]
        assert [len(shard) for shard in shards] == [4, 3]
        assert sorted(shards[0] + shards[1]) == sorted(seen)  # every sample once, none twice
        assert got["counts"] == [7, 7]  # the synced labeled counts
        assert got["metrics"].keys() == single.keys() and len(single) > 20
        for name, value in single.items():
            assert got["metrics"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def _mfer(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "multimodal_fer", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.mark.slow
def test_lightning_ddp_test_and_predict_count_each_of_seven_samples_once(tmp_path: Path, seven_cache: Path) -> None:
    """``mfer test`` and ``mfer predict`` with ``strategy=ddp`` on 2 CPU processes equal one process on 7 samples.

    Batches of 3 make the shards' batch counts differ (rank 0: 3 + 1 samples, rank 1: 3), which a DDP fit's
    validation must survive without a hang.
    """
    data = tiny_data_args(seven_cache, **{**SEVEN, "batch_size": 3})
    ddp = ["--trainer.devices=2", "--trainer.strategy=ddp"]
    fitted = _mfer("fit", "--config", QUICKSTART, *data, *tiny_trainer_args(tmp_path), "--trainer.max_epochs=1", *ddp)
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    run = run_folder(tmp_path)
    # Plain "ddp" (no find_unused_parameters) with the quickstart's attention fusion; its test after the fit ran on
    # both processes, and every epoch value is a torchmetrics state reduced across them, so Lightning's advice to
    # sync it is silenced.
    assert json.loads((run / "results-test.json").read_text())["environment"]["world_size"] == 2
    assert "sync_dist=True" not in fitted.stderr
    checkpoint = next((run / "checkpoints").glob("best-*.ckpt"))
    common = ["--config", QUICKSTART, *data, "--trainer.logger=false", "--trainer.accelerator=cpu"]
    common += [f"--ckpt_path={checkpoint}"]
    # One process in this one (no start-up to pay), then two DDP processes of their own.
    main(["test", *common, "--trainer.devices=1", "--results.filename=single.json", "--results.predictions=true"])
    main(["predict", *common, "--trainer.devices=1"])
    tested = _mfer("test", *common, *ddp, "--results.filename=ddp.json", "--results.predictions=true")
    assert tested.returncode == 0, tested.stderr[-3000:]
    predicted = _mfer("predict", *common, *ddp)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    one, two = (json.loads((run / f"{name}.json").read_text()) for name in ("single", "ddp"))
    assert two["environment"]["world_size"] == 2
    # Losses are means of per-batch values (the CCC loss is not a per-sample mean), so they depend on how the
    # samples are grouped into batches; the torchmetrics values must not.
    metrics = {name: value for name, value in one["metrics"].items() if not name.endswith("loss")}
    assert len(metrics) > 20 and one["metrics"].keys() == two["metrics"].keys()
    for name, value in metrics.items():
        assert two["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    # Per-sample predictions: gathered from both processes into one file, each test sample once, every field equal.
    with np.load(run / one["predictions"]) as a, np.load(run / two["predictions"]) as b:
        assert len(a["index"]) == len(b["index"]) == 7
        assert sorted(a.files) == sorted(b.files) and {"index", "subject", "output_expr", "target_va"} <= set(a.files)
        for key in a.files:
            if key == "label_space":
                assert str(a[key]) == str(b[key])
            else:
                np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)
    # predict: one CSV per command (the second gets .2), each of the 7 samples once, the same rows.
    files = sorted(run.glob("predictions*.csv"))
    assert [path.name for path in files] == ["predictions.2.csv", "predictions.csv"]
    single_rows, ddp_rows = (list(csv.DictReader(path.open())) for path in (files[1], files[0]))
    assert [row["index"] for row in ddp_rows] == [row["index"] for row in single_rows]
    assert len({row["index"] for row in ddp_rows}) == len(ddp_rows) == 7
    for a_row, b_row in zip(single_rows, ddp_rows, strict=True):
        assert a_row["expression"] == b_row["expression"]
        assert float(a_row["valence"]) == pytest.approx(float(b_row["valence"]), abs=2e-4)


def test_a_finished_command_destroys_its_process_group(tmp_path: Path) -> None:
    """Left to interpreter shutdown, a Gloo group can abort the process after its work is done (exit -6)."""
    import torch.distributed as dist

    from multimodal_fer.cli import close_process_group

    close_process_group()  # no group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    close_process_group()
    assert not dist.is_initialized()
