import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from multimodal_fer.metrics import FERMetrics
from multimodal_fer.types import LabelSpace

NAN = float("nan")
SPACE = LabelSpace(
    expressions=("neutral", "happy", "sad", "anger"),
    action_units=(1, 4, 12),
    dimensions=("valence", "arousal"),
)


def _np_ccc(x: np.ndarray, y: np.ndarray) -> float:
    mx, my = x.mean(), y.mean()
    return float(2 * ((x - mx) * (y - my)).mean() / (x.var() + y.var() + (mx - my) ** 2))


def _batches() -> list[tuple[dict, dict]]:
    rng = np.random.default_rng(0)
    batches = []
    for n in (7, 5):
        expr = rng.integers(0, 4, n)
        expr[rng.random(n) < 0.3] = -1
        au = (rng.random((n, 3)) < 0.5).astype(np.float32)
        au[rng.random((n, 3)) < 0.3] = np.nan
        va = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        va[rng.random((n, 2)) < 0.3] = np.nan
        outputs = {
            "expr": torch.from_numpy(rng.normal(size=(n, 4)).astype(np.float32)),
            "au": torch.from_numpy(rng.normal(size=(n, 3)).astype(np.float32)),
            "va": torch.from_numpy(rng.uniform(-1, 1, (n, 2)).astype(np.float32)),
        }
        batch = {"expr": torch.from_numpy(expr), "au": torch.from_numpy(au), "va": torch.from_numpy(va)}
        batches.append((outputs, batch))
    return batches


def test_values_match_sklearn_and_numpy() -> None:
    batches = _batches()
    metrics = FERMetrics(SPACE, "val")
    for outputs, batch in batches:
        metrics.update(outputs, batch)
    values = metrics.compute()

    cat = {k: torch.cat([o[k] for o, _ in batches]).numpy() for k in ("expr", "au", "va")}
    lab = {k: torch.cat([b[k] for _, b in batches]).numpy() for k in ("expr", "au", "va")}
    keep = lab["expr"] >= 0
    y_true, y_pred = lab["expr"][keep], cat["expr"][keep].argmax(1)
    assert values["val/expr/accuracy"].item() == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-6)
    assert values["val/expr/f1_macro"].item() == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-6)

    f1s = []
    for j, au in enumerate(SPACE.action_units):
        rows = ~np.isnan(lab["au"][:, j])
        probs = 1 / (1 + np.exp(-cat["au"][rows, j]))
        expected = f1_score(lab["au"][rows, j].astype(int), (probs > 0.5).astype(int), zero_division=0)
        assert values[f"val/au/f1_au{au}"].item() == pytest.approx(expected, abs=1e-6)
        f1s.append(expected)
    assert values["val/au/f1_mean"].item() == pytest.approx(np.mean(f1s), abs=1e-6)

    cccs = []
    for d, dim in enumerate(SPACE.dimensions):
        rows = ~np.isnan(lab["va"][:, d])
        x, y = cat["va"][rows, d], lab["va"][rows, d]
        assert values[f"val/va/ccc_{dim}"].item() == pytest.approx(_np_ccc(x, y), abs=1e-5)
        assert values[f"val/va/rmse_{dim}"].item() == pytest.approx(np.sqrt(np.mean((x - y) ** 2)), abs=1e-6)
        cccs.append(_np_ccc(x, y))
    expected_score = np.mean([values["val/expr/f1_macro"].item(), np.mean(f1s), np.mean(cccs)])
    assert values["val/score"].item() == pytest.approx(expected_score, abs=1e-5)
    assert all(name.startswith("val/") for name in values)

    metrics.reset()
    assert metrics.compute() == {}


def test_unlabeled_metrics_are_omitted() -> None:
    metrics = FERMetrics(SPACE, "test")
    outputs, batch = _batches()[0]
    batch = dict(batch)
    batch["expr"] = torch.full_like(batch["expr"], -1)
    au = batch["au"].clone()
    au[:, 1] = NAN
    batch["au"] = au
    va = batch["va"].clone()
    va[:, 0] = NAN
    batch["va"] = va
    metrics.update(outputs, batch)
    values = metrics.compute()
    assert not any(name.startswith("test/expr/") for name in values)
    assert "test/au/f1_au4" not in values and "test/au/f1_au1" in values
    assert "test/va/ccc_valence" not in values and "test/va/rmse_valence" not in values
    assert "test/va/ccc_arousal" in values
    assert values["test/au/f1_mean"].item() == pytest.approx(
        (values["test/au/f1_au1"].item() + values["test/au/f1_au12"].item()) / 2
    )
    assert values["test/score"].item() == pytest.approx(
        (values["test/au/f1_mean"].item() + values["test/va/ccc_arousal"].item()) / 2, abs=1e-6
    )


def test_label_space_subset() -> None:
    metrics = FERMetrics(LabelSpace(expressions=("a", "b")), "train")
    metrics.update({"expr": torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])}, {"expr": torch.tensor([0, 0, -1])})
    values = metrics.compute()
    assert set(values) == {"train/expr/accuracy", "train/expr/f1_macro", "train/score"}
    assert values["train/expr/accuracy"].item() == pytest.approx(0.5)


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        metrics = FERMetrics(SPACE, "val")
        outputs, batch = _ddp_batches()[rank]
        metrics.update(outputs, batch)
        torch.save(metrics.compute(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _ddp_batches() -> list[tuple[dict, dict]]:
    batches = _batches()
    # Rank 1 has no expression labels and no label for AU 4: the synced metrics must still be exact.
    outputs, batch = batches[1]
    batch = dict(batch, expr=torch.full_like(batch["expr"], -1))
    au = batch["au"].clone()
    au[:, 1] = NAN
    batch["au"] = au
    batches[1] = (outputs, batch)
    return batches


@pytest.mark.slow
def test_ddp_two_processes_match_single_process(tmp_path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = FERMetrics(SPACE, "val")
    for outputs, batch in _ddp_batches():
        single.update(outputs, batch)
    expected = single.compute()
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert set(got) == set(expected)
        for name, value in expected.items():
            torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6, msg=name)
