"""Evaluation aggregation levels: recording-level scores from merged predictions, DDP gathering, results files."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import f1_score

from multimodal_fer.callbacks.results_writer import ResultsWriter, dataset_aggregation
from multimodal_fer.datasets import DEAP, WESAD
from multimodal_fer.metrics.aggregation import aggregate_metrics, aggregate_recordings, check_aggregation
from multimodal_fer.types import LabelSpace

from adapter_checks import fit_through_config
from data.deap.generate import STRIDE_SECONDS, TRIAL_SECONDS, WINDOW_SECONDS, write_fake_deap

SPACE = LabelSpace(expressions=("anger", "happy", "sad"), action_units=(1, 12), dimensions=("valence", "arousal"))


def _lin_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's CCC written out, population moments (the reference, independent of the package's)."""
    covariance = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * covariance / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def _hand_made(seed: int = 0) -> dict[str, np.ndarray]:
    """Five recordings of 1-4 samples each and two samples outside any recording; one label per recording."""
    rng = np.random.default_rng(seed)
    recordings = np.array([3, 0, 0, 1, 1, 1, -1, 2, 2, 4, 4, 4, 4, -1, 3])
    per_recording = {
        0: (0, (1.0, 0.0), (0.5, -0.2)),
        1: (1, (0.0, 1.0), (-0.3, 0.4)),
        2: (2, (1.0, 1.0), (0.9, 0.1)),
        3: (1, (0.0, 0.0), (-0.8, -0.6)),
        4: (2, (1.0, 0.0), (0.2, 0.7)),
        -1: (0, (0.0, 1.0), (0.1, 0.3)),
    }
    expr = np.array([per_recording[r][0] for r in recordings])
    au = np.array([per_recording[r][1] for r in recordings], dtype=np.float64)
    va = np.array([per_recording[r][2] for r in recordings], dtype=np.float64)
    expr[2] = -1  # an unlabelled sample of recording 0: its prediction still counts
    au[5, 1] = np.nan
    va[11] = np.nan
    return {
        "sequence": recordings,
        "target_expr": expr,
        "target_au": au,
        "target_va": va,
        "output_expr": rng.normal(0, 2, size=(recordings.size, 3)),
        "output_au": rng.normal(0, 2, size=(recordings.size, 2)),
        "output_va": rng.uniform(-1, 1, size=(recordings.size, 2)),
    }


def _reference(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Recording-level metrics computed the long way: per-recording loops, sklearn F1, Lin's CCC written out."""
    sequence = data["sequence"]
    groups = [np.flatnonzero(sequence == code) for code in sorted(set(sequence[sequence >= 0].tolist()))]
    groups += [np.array([i]) for i in np.flatnonzero(sequence < 0)]
    softmax = np.exp(data["output_expr"]) / np.exp(data["output_expr"]).sum(1, keepdims=True)
    sigmoid = 1 / (1 + np.exp(-data["output_au"]))
    pred_expr = np.array([softmax[g].mean(0).argmax() for g in groups])
    true_expr = np.array([max(data["target_expr"][g]) for g in groups])  # -1 only where every sample is unlabelled
    pred_au = np.array([sigmoid[g].mean(0) > 0.5 for g in groups]).astype(int)
    true_au = np.array([np.nanmax(data["target_au"][g], axis=0) for g in groups])
    pred_va = np.array([data["output_va"][g].mean(0) for g in groups])
    true_va = np.array([np.nanmax(data["target_va"][g], axis=0) for g in groups])
    out = {
        "accuracy": float(np.mean(pred_expr == true_expr)),
        "f1_macro": f1_score(true_expr, pred_expr, average="macro"),
        "f1_au1": f1_score(true_au[:, 0], pred_au[:, 0]),
        "f1_au12": f1_score(true_au[:, 1], pred_au[:, 1]),
        "ccc_valence": _lin_ccc(pred_va[:, 0], true_va[:, 0]),
        "ccc_arousal": _lin_ccc(pred_va[:, 1], true_va[:, 1]),
        "rmse_valence": float(np.sqrt(np.mean((pred_va[:, 0] - true_va[:, 0]) ** 2))),
    }
    out["score"] = np.mean(
        [out["f1_macro"], (out["f1_au1"] + out["f1_au12"]) / 2, (out["ccc_valence"] + out["ccc_arousal"]) / 2]
    )
    return out


def _merge(data: dict[str, np.ndarray]):
    outputs = {k: data[f"output_{k}"] for k in ("expr", "au", "va")}
    targets = {k: data[f"target_{k}"] for k in ("expr", "au", "va")}
    return aggregate_recordings(data["sequence"], outputs, targets, [f"rec{k}" for k in range(5)])


def test_recording_metrics_equal_a_reference_on_hand_made_predictions():
    data = _hand_made()
    merged = _merge(data)
    assert merged.recordings.tolist() == [0, 1, 2, 3, 4, -1, -1] and merged.sizes.tolist() == [2, 3, 2, 2, 4, 1, 1]
    assert merged.targets["expr"].tolist() == [0, 1, 2, 1, 2, 0, 0]
    assert merged.outputs["va"][4] == pytest.approx(data["output_va"][9:13].mean(0))  # the unlabelled sample counts
    scores = aggregate_metrics(merged, SPACE, "test/recording")
    want = _reference(data)
    for name, value in want.items():
        key = next(k for k in scores if k.endswith(f"/{name}"))
        assert scores[key] == pytest.approx(value, abs=1e-5), name
    assert set(scores) >= {"test/recording/expr/f1_macro", "test/recording/au/f1_mean", "test/recording/score"}
    # merging by recording is not the per-sample score
    sample_f1 = f1_score(
        data["target_expr"][data["target_expr"] >= 0],
        data["output_expr"].argmax(1)[data["target_expr"] >= 0],
        average="macro",
    )
    assert scores["test/recording/expr/f1_macro"] != pytest.approx(sample_f1)


def test_sample_order_does_not_change_the_recording_scores():
    data = _hand_made(seed=1)
    order = np.random.default_rng(5).permutation(data["sequence"].size)
    shuffled = {k: v[order] for k, v in data.items()}
    first = aggregate_metrics(_merge(data), SPACE, "test/recording")
    second = aggregate_metrics(_merge(shuffled), SPACE, "test/recording")
    assert first == pytest.approx(second)


def test_a_recording_whose_labels_differ_is_refused_by_name():
    data = _hand_made()
    data["target_va"][4, 0] = 0.9  # recording 1's second sample: another valence
    with pytest.raises(
        ValueError, match=r"Recording 'rec1' holds samples with different affect labels.*aggregation sample"
    ):
        _merge(data)
    data = _hand_made()
    data["target_expr"][0] = 2  # recording 3 now holds happy and sad
    with pytest.raises(ValueError, match="'rec3' holds samples with different expression"):
        _merge(data)
    with pytest.raises(ValueError, match="choose one of"):
        check_aggregation("trial")
    with pytest.raises(ValueError, match="choose one of"):
        ResultsWriter(aggregation="per_trial")


def test_each_data_set_declares_its_benchmark_level_and_the_config_overrides_it():
    assert DEAP.evaluation_aggregation == "recording" and WESAD.evaluation_aggregation == "sample"
    deap_module = SimpleNamespace(adapter=DEAP())
    assert dataset_aggregation(deap_module) == "recording" and dataset_aggregation(object()) == "sample"
    for configured, level in ((None, "recording"), ("sample", "sample")):
        writer = ResultsWriter(aggregation=configured)
        writer.on_test_epoch_start(SimpleNamespace(datamodule=deap_module), None)
        assert writer._level == level
    writer = ResultsWriter()
    with pytest.raises(RuntimeError, match="belong to recordings"):
        writer._recording_scores({"sequence": np.full(3, -1)}, SimpleNamespace(label_space=SPACE), None)


def _shards(data: dict[str, np.ndarray]) -> list[list[dict[str, np.ndarray]]]:
    """Two processes' kept batches: every other sample each (so every recording is split between them), rank 1
    padded with a repeat of sample 0 as a distributed sampler pads."""
    index = np.arange(data["sequence"].size)
    kept = {"index": index, **data}
    rank0 = [{k: v[index % 2 == 0][:4] for k, v in kept.items()}, {k: v[index % 2 == 0][4:] for k, v in kept.items()}]
    rank1 = [{k: np.concatenate([v[index % 2 == 1], v[:1]]) for k, v in kept.items()}]
    return [rank0, rank1]


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        writer = ResultsWriter(aggregation="recording")
        writer._kept = _shards(_hand_made())[rank]
        gathered = writer._gathered_predictions(SimpleNamespace(world_size=2))
        scores, record = writer._recording_scores(gathered, SimpleNamespace(label_space=SPACE), None)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"scores": scores, "record": record}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned gloo processes importing torch: ~20 s on 2 shared cores
def test_two_gloo_processes_gather_before_merging_recordings(tmp_path):
    import torch.multiprocessing as mp

    data = _hand_made()
    single = aggregate_metrics(_merge(data), SPACE, "test/recording")
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["record"]["samples"] == 15 and got["record"]["recordings"] == 5  # padding repeat dropped
        assert got["record"]["samples_outside_recordings"] == 2
        assert got["scores"] == pytest.approx(single)  # each recording merged whole, though its samples were split


def test_deap_test_writes_recording_level_metrics_as_its_headline(tmp_path):
    raw = tmp_path / "raw"
    write_fake_deap(raw)
    fit_through_config(
        "deap.yaml",
        raw,
        tmp_path / "cache",
        tmp_path,
        [
            "--data.init_args.modalities=[physio]",
            f"--data.init_args.dataset.init_args.trial_seconds={TRIAL_SECONDS}",
            f"--data.init_args.dataset.init_args.window_seconds={WINDOW_SECONDS}",
            f"--data.init_args.dataset.init_args.stride_seconds={STRIDE_SECONDS}",
            "--data.init_args.dataset.init_args.binary_target=arousal",
            "--data.init_args.split.init_args.num_folds=4",
            "--data.init_args.split.init_args.fold=1",  # s01 tests: two windows in every trial
            "--results.predictions=true",
            "--test_after_fit=true",
        ],
    )
    (path,) = (tmp_path / "runs").rglob("results-test*.json")
    results = json.loads(path.read_text())
    aggregation = results["aggregation"]
    assert aggregation["headline"] == "recording" and aggregation["chosen_by"] == "data set"
    assert aggregation["headline_prefix"] == "test/recording"
    metrics = results["metrics"]
    assert {"test/va/ccc_valence", "test/recording/va/ccc_valence", "test/recording/expr/f1_macro"} <= set(metrics)
    assert aggregation["headline_score"] == metrics["test/recording/score"]
    # the reference: the predictions file, merged by the trials the cache records for each index
    with np.load(path.with_name(results["predictions"])) as saved:
        predictions = {key: saved[key] for key in saved.files}
    from multimodal_fer.datamodules import FERDataModule

    records = FERDataModule(dataset=DEAP(), root=str(tmp_path / "cache")).sample_records()
    trials = np.array([records[i]["sequence"] for i in predictions["index"]])
    names = sorted(set(trials.tolist()))
    assert aggregation["recording"]["recordings"] == len(names) and aggregation["recording"]["samples"] == trials.size
    assert len(names) < trials.size  # some trial holds more than one window: merging changes something
    codes = np.array([names.index(t) for t in trials])
    data = {"sequence": codes, **{k: predictions[k] for k in predictions if k.startswith(("output_", "target_"))}}
    space = LabelSpace.from_dict(results["label_space"])
    want = aggregate_metrics(
        aggregate_recordings(
            codes, {k: data[f"output_{k}"] for k in ("expr", "va")}, {k: data[f"target_{k}"] for k in ("expr", "va")}
        ),
        space,
        "test/recording",
    )
    manual_ccc = _lin_ccc(
        np.array([predictions["output_va"][codes == c, 0].mean() for c in range(len(names))]),
        np.array([predictions["target_va"][codes == c, 0][0] for c in range(len(names))]),
    )
    assert metrics["test/recording/va/ccc_valence"] == pytest.approx(manual_ccc, abs=1e-4)
    for name, value in want.items():
        assert metrics[name] == pytest.approx(value, abs=1e-5), name
