"""``mfer crossval``: fold expansion, the aggregate against a hand computation, and a real 3-fold run on SynthAffect."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from multimodal_fer.benchmarking.crossval import fold_of, fold_suite, parse_folds, parse_overrides
from multimodal_fer.benchmarking.fold_aggregate import FoldRun, aggregate_folds, missing_folds, write_aggregate
from multimodal_fer.benchmarking.suite import SuiteError
from multimodal_fer.cli import main
from multimodal_fer.datasets.protocols import SubjectKFold
from multimodal_fer.types import LabelSpace

from conftest import CONFIGS, tiny_data_args

QUICKSTART = str(CONFIGS / "quickstart.yaml")


def test_folds_expand_into_one_cell_per_fold_with_disjoint_test_subjects() -> None:
    suite = fold_suite(
        "cv", [Path(QUICKSTART)], parse_overrides(["--trainer.max_epochs=1", "--seed_everything", "4"]), 3, seed=2
    )
    assert [cell.name for cell in suite.cells] == ["000-fold=0", "001-fold=1", "002-fold=2"]
    assert [fold_of(cell.values) for cell in suite.cells] == [0, 1, 2]
    assert suite.base_arguments() == [
        "--config",
        QUICKSTART,
        "--trainer.max_epochs=1",
        "--seed_everything=4",
        "--results.predictions=true",
    ]
    split = json.loads(suite.cells[1].arguments()[0].split("=", 1)[1])
    assert suite.cells[1].arguments()[0].startswith("--data.init_args.split=")
    assert split == {
        "class_path": "multimodal_fer.datasets.protocols.SubjectKFold",
        "init_args": {"num_folds": 3, "fold": 1, "seed": 2},
    }
    # The cells' protocols test every subject exactly once.
    subjects = np.repeat(np.arange(7), 2)
    tested = []
    for cell in suite.cells:
        arguments = json.loads(cell.arguments()[0].split("=", 1)[1])["init_args"]
        parts = SubjectKFold(**arguments).split(subjects, np.full(subjects.size, ""))
        test, val, train = (set(subjects[parts[name]].tolist()) for name in ("test", "val", "train"))
        assert not test & (val | train) and not val & train
        tested += sorted(test)
    assert sorted(tested) == list(range(7))


def test_fold_options_are_checked_by_name() -> None:
    assert parse_folds("5") == 5 and parse_folds("LOSO") is None
    for bad in ("2", "x", "-3"):
        with pytest.raises(SuiteError, match="--folds"):
            parse_folds(bad)
    with pytest.raises(SuiteError, match="what the folds set"):
        parse_overrides(["--data.init_args.split=SubjectHoldout"])
    with pytest.raises(SuiteError, match="has no value"):
        parse_overrides(["--trainer.max_epochs"])
    with pytest.raises(SuiteError, match="Unexpected argument 'fit'"):
        parse_overrides(["fit"])
    with pytest.raises(SuiteError, match="at least 3"):
        fold_suite("cv", [Path(QUICKSTART)], {}, 2)


SPACE = LabelSpace(expressions=("happy", "sad"), dimensions=("valence",))


def _fake_fold(
    folder: Path,
    index: list[int],
    truth: list[int],
    guess: list[int],
    va: list[float],
    metrics: dict,
    va_truth: list[float] | None = None,
) -> None:
    """A fold's results file and predictions file, as ResultsWriter(predictions=True) writes them."""
    folder.mkdir(parents=True)
    logits = np.eye(2, dtype=np.float32)[guess] * 3.0
    np.savez(
        folder / "results-test.predictions.npz",
        index=np.asarray(index),
        subject=np.asarray(index) // 2,
        target_expr=np.asarray(truth),
        output_expr=logits,
        target_va=np.asarray(va_truth or [0.0] * len(index), dtype=np.float32)[:, None],
        output_va=np.asarray(va, dtype=np.float32)[:, None],
        label_space=np.asarray(json.dumps(SPACE.to_dict())),
    )
    results = {"metrics": metrics, "predictions": "results-test.predictions.npz"}
    (folder / "results-test.json").write_text(json.dumps(results))


def test_aggregate_matches_a_hand_computation(tmp_path: Path) -> None:
    runs = [FoldRun(k, tmp_path / f"00{k}-fold={k}") for k in range(3)]
    assert missing_folds(runs) == [0, 1, 2]
    # Fold accuracies 2/4, 3/4, 2/2; the per-fold values in the results files are what the folds' tests logged.
    _fake_fold(
        runs[0].folder,
        [0, 1, 2, 3],
        [0, 1, 0, 1],
        [0, 0, 1, 1],
        [0.3, -0.3, 0.3, -0.3],
        {"test/expr/accuracy": 0.5, "test/loss": 1.0},
    )
    _fake_fold(
        runs[1].folder,
        [4, 5, 6, 7],
        [0, 0, 1, 1],
        [0, 0, 1, 0],
        [0.6, 0.6, 0.6, 0.6],
        {"test/expr/accuracy": 0.75, "test/loss": 2.0},
    )
    _fake_fold(
        runs[2].folder, [8, 9], [1, 0], [1, 0], [0.0, 0.0], {"test/expr/accuracy": 1.0, "test/loss": None}, [0.5, -0.5]
    )
    aggregate = aggregate_folds(runs, "cv", "SubjectKFold(num_folds=3, seed=0)", base=tmp_path)
    accuracy = aggregate["metrics"]["test/expr/accuracy"]
    assert accuracy["mean"] == pytest.approx(0.75)
    assert accuracy["std"] == pytest.approx(0.25)  # sqrt((0.25² + 0 + 0.25²) / (3 - 1))
    assert accuracy["n"] == 3 and accuracy["per_fold"] == [0.5, 0.75, 1.0]
    assert accuracy["pooled"] == pytest.approx(7 / 10)  # 2 + 3 + 2 right of 10 samples
    rmse = aggregate["metrics"]["test/va/rmse_valence"]
    assert rmse["pooled"] == pytest.approx(math.sqrt((4 * 0.09 + 4 * 0.36 + 2 * 0.25) / 10))
    assert rmse["n"] == 0 and rmse["mean"] is None  # not in the folds' results files: pooled only
    loss = aggregate["metrics"]["test/loss"]
    assert loss == {"mean": 1.5, "std": pytest.approx(math.sqrt(0.5)), "n": 2, "per_fold": [1.0, 2.0, None]}
    assert aggregate["num_folds"] == 3 and aggregate["pooled_samples"] == 10
    assert aggregate["folds"][2] == {"fold": 2, "results": "002-fold=2/results-test.json", "test_samples": 2}
    path = write_aggregate(aggregate, tmp_path)
    assert json.loads(path.read_text())["metrics"]["test/expr/accuracy"]["pooled"] == pytest.approx(0.7)


def test_overlapping_folds_are_refused(tmp_path: Path) -> None:
    runs = [FoldRun(k, tmp_path / str(k)) for k in range(3)]
    for k, run in enumerate(runs):
        _fake_fold(run.folder, [0, k + 1], [0, 1], [0, 1], [0.0, 0.0], {"test/expr/accuracy": 1.0})
    with pytest.raises(ValueError, match=r"Samples \[0\] are in the test split of more than one fold"):
        aggregate_folds(runs, "cv", "SubjectKFold")


def _crossval(cache: Path, out: Path, *extra: str) -> None:
    trainer = ["--trainer.max_epochs=1", "--trainer.logger=false", "--trainer.accelerator=cpu"]
    main(["crossval", "--config", QUICKSTART, *tiny_data_args(cache), *trainer, "--out", str(out), *extra])


@pytest.mark.slow
def test_three_folds_on_synthaffect_end_to_end(tmp_path: Path, tiny_cache: Path, capsys) -> None:
    out = tmp_path / "runs"
    _crossval(tiny_cache, out, "--folds", "3", "--name", "cv")
    folder = out / "cv"
    results = [json.loads((folder / f"00{k}-fold={k}" / "results-test.json").read_text()) for k in range(3)]
    protocols = [r["data"]["protocol"] for r in results]
    assert protocols == [f"SubjectKFold(num_folds=3, fold={k}, seed=0)" for k in range(3)]
    aggregate = json.loads((folder / "aggregate.json").read_text())
    assert aggregate["num_folds"] == 3 and aggregate["pooled_samples"] == 24  # 6 subjects × 4 samples, each once
    assert [fold["test_samples"] for fold in aggregate["folds"]] == [8, 8, 8]
    f1 = aggregate["metrics"]["test/expr/f1_macro"]
    values = [r["metrics"]["test/expr/f1_macro"] for r in results]
    assert f1["per_fold"] == values and f1["mean"] == pytest.approx(float(np.mean(values)))
    assert f1["std"] == pytest.approx(float(np.std(values, ddof=1))) and 0.0 <= f1["pooled"] <= 1.0
    # Run again: every fold is skipped and the aggregate is written again from the same files.
    capsys.readouterr()
    _crossval(tiny_cache, out, "--folds", "3", "--name", "cv")
    printed = capsys.readouterr()
    assert (printed.out + printed.err).count("done before, skipped") == 3
    assert json.loads((folder / "aggregate.json").read_text())["metrics"]["test/expr/f1_macro"] == f1
    # Leave-one-subject-out: one fold per subject of the data.
    _crossval(tiny_cache, out, "--folds", "loso", "--dry-run")
    listing = capsys.readouterr().out
    assert "suite quickstart-loso: 6 cells" in listing and "005-fold=5" in listing
    assert '"num_folds": 6, "fold": 5' in listing
