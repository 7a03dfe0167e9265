"""``mfer report``: fake results and predictions files with known numbers in, tables checked against scipy/sklearn."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import confusion_matrix, f1_score

from multimodal_fer.cli import main
from multimodal_fer.evaluation import SamplePredictions, metric_value, paired_subject_bootstrap
from multimodal_fer.metrics.abaw import abaw_scores, au_decision_accuracy
from multimodal_fer.reporting import ReportError, build_report, write_report
from multimodal_fer.reporting.prediction_scores import THRESHOLD_GRID, tune_au_thresholds
from multimodal_fer.types import LabelSpace

SPACE = LabelSpace(
    expressions=("neutral", "happy", "sad", "angry"), action_units=(1, 2, 4), dimensions=("valence", "arousal")
)
SUBJECTS, PER_SUBJECT = 6, 12


def _config(seed: int, modalities: list[str], name: str, lr: float = 1e-3) -> dict:
    return {
        "seed_everything": seed,
        "data": {
            "class_path": "multimodal_fer.datamodules.FERDataModule",
            "init_args": {"modalities": modalities, "root": f"/tmp/{name}", "num_workers": 2},
        },
        "model": {"init_args": {"modalities": modalities, "lr": lr}},
        "trainer": {"default_root_dir": f"runs/{name}", "max_epochs": 3},
    }


def _predictions(seed: int, noise: float = 1.0) -> dict[str, np.ndarray]:
    """Fixed labels (class 'angry' never predicted right, some unlabeled) and outputs that vary with the seed."""
    rng = np.random.default_rng(0)
    n = SUBJECTS * PER_SUBJECT
    expr = rng.integers(0, 4, n)
    expr[::11] = -1
    au = (rng.random((n, 3)) > 0.6).astype(np.float32)
    au[::7, 2] = np.nan
    va = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    va[::5, 1] = np.nan
    out = np.random.default_rng(100 + seed)
    logits = out.normal(0, noise, (n, 4)).astype(np.float32)
    logits[np.arange(n), np.clip(expr, 0, 3)] += 1.2
    au_logits = (np.nan_to_num(au) * 2 - 1.3 + out.normal(0, noise, (n, 3))).astype(np.float32)
    va_out = (0.7 * np.nan_to_num(va) + out.normal(0, 0.4, (n, 2))).astype(np.float32)
    return {
        "index": np.arange(n),
        "subject": np.repeat(np.arange(SUBJECTS), PER_SUBJECT),
        "target_expr": expr,
        "target_au": au,
        "target_va": va,
        "output_expr": logits,
        "output_au": au_logits,
        "output_va": va_out,
    }


def write_results(
    folder: Path,
    seed: int,
    metrics: dict[str, float] | None = None,
    condition: str = "test",
    modalities: tuple[str, ...] = ("face",),
    predictions: dict[str, np.ndarray] | None = None,
    fingerprint: str = "f" * 64,
    cell: dict | None = None,
    dataset: str = "synthaffect",
    old_layout: bool = False,
) -> Path:
    """A run folder as the contract describes it (run.json, results-<condition>.json, optional npz and cell.json).

    With ``old_layout`` as runs before run folders: ``checkpoints/results.json``, no run.json, condition or run.
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = folder.name
    if not old_layout:
        (folder / "run.json").write_text(json.dumps({"experiment": folder.parent.name, "name": name}))
    if cell is not None:
        (folder / "cell.json").write_text(json.dumps({"suite": folder.parent.name, "cell": cell, "index": 0}))
    if old_layout:
        (folder / "checkpoints").mkdir(exist_ok=True)
    path = folder / ("checkpoints/results.json" if old_layout else f"results-{condition}.json")
    results = {
        "schema_version": 1,
        "condition": condition,
        "metrics": {f"test/{k}": v for k, v in (metrics or {}).items()},
        "seed": seed,
        "config": _config(seed, list(modalities), name),
        "cache_fingerprint": fingerprint,
        "data": {
            "dataset": dataset,
            "root": "/data/x",
            "protocol": "SubjectHoldout(val_subjects=2, test_subjects=6, seed=0)",
            "modalities": list(modalities),
            "withheld_modalities": ["audio"] if "withheld-audio" in condition else [],
        },
        "modalities": list(modalities),
        "label_space": SPACE.to_dict(),
        "run": {"experiment": folder.parent.name, "name": name, "folder": str(folder)},
    }
    if predictions is not None:
        npz = path.with_name(f"{path.stem}.predictions.npz")
        np.savez(npz, **predictions, label_space=np.asarray(json.dumps(SPACE.to_dict())))
        results["predictions"] = npz.name
    if old_layout:
        del results["condition"], results["run"]
    path.write_text(json.dumps(results))
    return path


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _table(report, suffix: str):
    found = [table for table in report.tables if table.name.endswith(suffix)]
    assert len(found) == 1, [table.name for table in report.tables]
    return found[0]


F1_FACE = [0.40, 0.45, 0.47]
F1_FUSED = [0.50, 0.52, 0.57]


@pytest.fixture
def ablation(tmp_path: Path) -> Path:
    """Two settings × three seeds, stored metrics only; the fused one also has an AU figure."""
    root = tmp_path / "runs" / "ablation"
    for seed, (face, fused) in enumerate(zip(F1_FACE, F1_FUSED, strict=True)):
        write_results(root / f"face-seed{seed}", seed, {"expr/f1_macro": face, "expr/accuracy": face + 0.1})
        metrics = {"expr/f1_macro": fused, "expr/accuracy": fused + 0.1, "au/f1_mean": 0.3 + 0.01 * seed}
        write_results(root / f"fused-seed{seed}", seed, metrics, modalities=("face", "audio"))
    return root


def test_summary_mean_std_and_counts(ablation: Path) -> None:
    report = build_report([ablation])
    assert len(report.sections) == 1
    summary = _table(report, "summary")
    rows = {row[0]: row for row in summary.csv_rows}
    assert set(rows) == {"data.modalities=[face]", "data.modalities=[face,audio]"}  # linked model key folded
    columns = summary.csv_columns
    face = dict(zip(columns, rows["data.modalities=[face]"], strict=True))
    assert face["runs"] == 3 and face["seeds"] == "0, 1, 2"
    assert face["expr/f1_macro mean"] == pytest.approx(np.mean(F1_FACE))
    assert face["expr/f1_macro std"] == pytest.approx(np.std(F1_FACE, ddof=1))
    assert face["expr/f1_macro n"] == 3
    assert face["au/f1_mean n"] == 0 and face["au/f1_mean mean"] is None
    shown = dict(zip(summary.columns, summary.rows[0], strict=True))
    assert shown["expr/f1_macro"] == f"{np.mean(F1_FACE):.3f} ± {np.std(F1_FACE, ddof=1):.3f}"


def test_missing_seed_shows_its_count(ablation: Path) -> None:
    (ablation / "fused-seed2" / "results-test.json").unlink()
    write_results(ablation / "fused-seed2", 2, {"expr/accuracy": 0.6}, modalities=("face", "audio"))
    summary = _table(build_report([ablation]), "summary")
    fused = [row for row in summary.rows if row[0].endswith("[face,audio]")][0]
    shown = dict(zip(summary.columns, fused, strict=True))
    assert shown["n"] == "3" and shown["expr/f1_macro"].endswith("(n=2)")


def test_paired_tests_equal_scipy(ablation: Path) -> None:
    report = build_report([ablation], reference=["data.init_args.modalities=[face]"])
    deltas = _table(report, "deltas")
    row = [dict(zip(deltas.csv_columns, r, strict=True)) for r in deltas.csv_rows if r[1] == "expr/f1_macro"][0]
    assert row["setting"] == "data.modalities=[face,audio]" and row["pairs"] == 3
    assert row["paired difference"] == pytest.approx(np.mean(np.subtract(F1_FUSED, F1_FACE)))
    assert row["paired t-test p"] == pytest.approx(stats.ttest_rel(F1_FUSED, F1_FACE).pvalue, rel=1e-12)
    assert row["Wilcoxon p"] is None  # three pairs: too few
    shown = {r[1]: dict(zip(deltas.columns, r, strict=True)) for r in deltas.rows}
    assert shown["expr/f1_macro"]["Wilcoxon p"] == "n<6"
    assert shown["expr/f1_macro"]["bootstrap Δ [95 % CI]"] == "not available (predictions missing)"
    assert shown["expr/accuracy"]["bootstrap Δ [95 % CI]"] == "–"  # not a metric the subject bootstrap knows


def test_wilcoxon_from_six_pairs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.4, 0.6, 7), rng.uniform(0.4, 0.6, 7)
    for seed in range(7):
        write_results(tmp_path / f"a-seed{seed}", seed, {"expr/f1_macro": float(a[seed])})
        write_results(tmp_path / f"b-seed{seed}", seed, {"expr/f1_macro": float(b[seed])}, modalities=("audio",))
    report = build_report([tmp_path], reference=["modalities=[audio]"], metrics=["test/expr/f1_macro"])
    row = dict(zip(_table(report, "deltas").csv_columns, _table(report, "deltas").csv_rows[0], strict=True))
    assert row["Wilcoxon p"] == pytest.approx(stats.wilcoxon(a - b).pvalue, rel=1e-12)
    assert row["paired t-test p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)


def test_reference_by_run_name_and_refusals(ablation: Path) -> None:
    by_name = build_report([ablation], reference=["face"])  # run names without their seed
    assert _table(by_name, "deltas").notes[0].startswith("Reference: data.modalities=[face] ")
    with pytest.raises(ReportError, match="matches no setting"):
        build_report([ablation], reference=["modalities=[depth]"])
    with pytest.raises(ReportError, match="matches 2 settings"):
        build_report([ablation], reference=["trainer.max_epochs=3"])
    with pytest.raises(ReportError, match=r"Unknown metric\(s\) expr/f1_micro"):
        build_report([ablation], metrics=["expr/f1_micro"])


def test_refuses_different_test_sets(ablation: Path) -> None:
    write_results(ablation / "face-seed3", 3, {"expr/f1_macro": 0.5}, fingerprint="0" * 64)
    with pytest.raises(ReportError, match="test sets differ"):
        build_report([ablation])


def test_refuses_no_results_and_two_files_of_one_seed(tmp_path: Path, ablation: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="No results files"):
        build_report([tmp_path / "empty"])
    write_results(ablation / "face-again", 0, {"expr/f1_macro": 0.1})
    with pytest.raises(ReportError, match="two results of one setting and seed"):
        build_report([ablation])


def test_conditions_and_data_sets_are_separate_groups(ablation: Path) -> None:
    write_results(ablation / "fused-seed0", 0, {"expr/f1_macro": 0.3}, "test-withheld-audio", ("face", "audio"))
    write_results(ablation / "face-seed0", 0, {"expr/f1_macro": 0.3}, dataset="rafdb", fingerprint="1" * 64)
    titles = [section.title for section in build_report([ablation]).sections]
    assert sorted(title.split(" · ")[-1] for title in titles) == ["test", "test", "test-withheld-audio"]
    assert {title.split(" · ")[0] for title in titles} == {"synthaffect", "rafdb"}


def test_old_layout_and_suite_cells(tmp_path: Path) -> None:
    write_results(tmp_path / "old" / "run1", 0, {"expr/f1_macro": 0.2}, old_layout=True)
    suite = tmp_path / "suite"
    for seed in (0, 1):
        for index, modalities in enumerate((["face"], ["face", "audio"])):
            cell = {"data.init_args.modalities": modalities, "seed_everything": seed}
            metrics = {"expr/f1_macro": 0.4 + 0.1 * index + 0.01 * seed}
            write_results(suite / f"cell{index}-{seed}", seed, metrics, modalities=tuple(modalities), cell=cell)
    with pytest.raises(ReportError, match="matches 2 settings"):  # the old run was trained on faces alone too
        build_report([tmp_path / "old", suite], reference=["data.init_args.modalities=[face]"])
    report = build_report([tmp_path / "old", suite], reference=["suite", "data.init_args.modalities=[face]"])
    assert [section.title.split(" · ")[-1] for section in report.sections] == ["test"]
    runs = {row[0]: row[1] for row in _table(report, "summary").rows}
    assert runs == {"run1": "1", "suite: data.modalities=[face]": "2", "suite: data.modalities=[face,audio]": "2"}
    deltas = _table(report, "deltas")
    assert deltas.notes[0] == "Reference: suite: data.modalities=[face] (seeds 0, 1)."
    assert {row[0] for row in deltas.rows} == {"run1", "suite: data.modalities=[face,audio]"}


def test_named_override_sets_are_labelled_by_their_name(tmp_path: Path) -> None:
    suite = tmp_path / "singles"
    for seed in (0, 1):
        for index, (name, epochs) in enumerate((("face", 80), ("audio", 10))):
            overrides = {"name": name, "data.init_args.modalities": [name], "trainer.max_epochs": epochs}
            cell = {"overrides": overrides, "seed_everything": seed}
            metrics = {"expr/f1_macro": 0.4 + 0.1 * index + 0.01 * seed}
            write_results(suite / f"{index:03d}-{name}-seed={seed}", seed, metrics, modalities=(name,), cell=cell)
    report = build_report([suite], reference=["face"])
    runs = {row[0]: row[1] for row in _table(report, "summary").rows}
    assert runs == {"face": "2", "audio": "2"}  # not the whole override set as JSON


@pytest.fixture
def with_predictions(tmp_path: Path) -> Path:
    root = tmp_path / "exp"
    for seed in range(3):
        write_results(root / f"a-seed{seed}", seed, predictions=_predictions(seed, noise=1.4))
        write_results(
            root / f"b-seed{seed}", seed, predictions=_predictions(10 + seed, noise=0.8), modalities=("audio",)
        )
    return root


def test_metrics_from_predictions_equal_sklearn_and_scipy(with_predictions: Path) -> None:
    report = build_report([with_predictions / "a-seed0"])
    arrays = _predictions(0, noise=1.4)
    expr, predicted = arrays["target_expr"], arrays["output_expr"].argmax(1)
    labeled = expr >= 0
    expected = f1_score(expr[labeled], predicted[labeled], labels=range(4), average=None, zero_division=0)
    per_class = _table(report, "per-class-f1")
    assert per_class.columns[3:] == list(SPACE.expressions)
    row = dict(zip(per_class.csv_columns, per_class.csv_rows[0], strict=True))
    for name, value in zip(SPACE.expressions, expected, strict=True):
        assert row[f"expr/f1_{name} mean"] == pytest.approx(value, abs=1e-6)
    confusion = _table(report, "confusion-a")
    assert np.array_equal(
        np.array([r[1:] for r in confusion.csv_rows]),
        confusion_matrix(expr[labeled], predicted[labeled], labels=range(4)),
    )
    summary = dict(zip(_table(report, "summary").csv_columns, _table(report, "summary").csv_rows[0], strict=True))
    assert summary["expr/accuracy mean"] == pytest.approx(np.mean(predicted[labeled] == expr[labeled]), abs=1e-6)
    assert summary["expr/f1_macro mean"] == pytest.approx(
        f1_score(expr[labeled], predicted[labeled], average="macro"), abs=1e-6
    )
    for column, dim in enumerate(SPACE.dimensions):
        keep = ~np.isnan(arrays["target_va"][:, column])
        x = arrays["output_va"][keep, column].astype(np.float64)
        y = arrays["target_va"][keep, column].astype(np.float64)
        lin = 2 * np.mean((x - x.mean()) * (y - y.mean())) / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
        assert summary[f"va/ccc_{dim} mean"] == pytest.approx(lin, abs=1e-5)
        assert summary[f"va/pcc_{dim} mean"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-6)
        assert summary[f"va/rmse_{dim} mean"] == pytest.approx(np.sqrt(np.mean((x - y) ** 2)), abs=1e-5)
        assert summary[f"va/sagr_{dim} mean"] == pytest.approx(np.mean(np.sign(x) == np.sign(y)))
    au = arrays["target_au"]
    for column, number in enumerate(SPACE.action_units):
        keep = ~np.isnan(au[:, column])
        expected_f1 = f1_score(au[keep, column], arrays["output_au"][keep, column] > 0, zero_division=0)
        assert summary["au/f1_mean mean"] is not None
        per_au = dict(
            zip(_table(report, "per-au-f1").csv_columns, _table(report, "per-au-f1").csv_rows[0], strict=True)
        )
        assert per_au[f"au/f1_au{number} mean"] == pytest.approx(expected_f1, abs=1e-6)
    shown = dict(zip(_table(report, "summary").columns, _table(report, "summary").rows[0], strict=True))
    assert shown["au/f1_mean_tuned"] == "not available"
    assert any("tuned on validation: not available" in note for note in report.sections[0].notes)


def test_abaw_scores_equal_the_challenges_formulas_on_sklearn_figures(with_predictions: Path) -> None:
    report = build_report(
        [with_predictions / "a-seed0"],
        metrics=["abaw/expr", "abaw/au", "abaw/va", "abaw/mtl", "abaw1/expr", "abaw1/au"],
    )
    arrays = _predictions(0, noise=1.4)
    expr, predicted = arrays["target_expr"], arrays["output_expr"].argmax(1)
    labeled = expr >= 0
    f1_expr = f1_score(expr[labeled], predicted[labeled], average="macro")
    accuracy_expr = np.mean(expr[labeled] == predicted[labeled])
    au, au_predicted = arrays["target_au"], arrays["output_au"] > 0  # logit 0 = probability 0.5
    per_au = [
        f1_score(au[~np.isnan(au[:, c]), c], au_predicted[~np.isnan(au[:, c]), c], zero_division=0) for c in range(3)
    ]
    decisions = ~np.isnan(au)
    au_accuracy = np.mean(au_predicted[decisions] == (au[decisions] > 0.5))
    ccc = []
    for column in range(2):
        keep = ~np.isnan(arrays["target_va"][:, column])
        x = arrays["output_va"][keep, column].astype(np.float64)
        y = arrays["target_va"][keep, column].astype(np.float64)
        ccc.append(2 * np.mean((x - x.mean()) * (y - y.mean())) / (x.var() + y.var() + (x.mean() - y.mean()) ** 2))
    va = 0.5 * (ccc[0] + ccc[1])  # ABAW3+: P_VA = 0.5 (CCC_valence + CCC_arousal)
    row = dict(zip(_table(report, "summary").csv_columns, _table(report, "summary").csv_rows[0], strict=True))
    assert row["abaw/expr mean"] == pytest.approx(f1_expr, abs=1e-6)
    assert row["abaw/au mean"] == pytest.approx(np.mean(per_au), abs=1e-6)
    assert row["abaw/va mean"] == pytest.approx(va, abs=1e-5)
    assert row["abaw/mtl mean"] == pytest.approx(va + f1_expr + np.mean(per_au), abs=1e-5)
    assert row["abaw1/expr mean"] == pytest.approx(0.67 * f1_expr + 0.33 * accuracy_expr, abs=1e-6)
    assert row["abaw1/au mean"] == pytest.approx(0.5 * np.mean(per_au) + 0.5 * au_accuracy, abs=1e-6)


def test_abaw_scores_leave_out_what_their_inputs_lack() -> None:
    assert abaw_scores({"expr/f1_macro": 0.4}) == {"abaw/expr": 0.4}
    only_va = abaw_scores({"va/ccc_valence": 0.2, "va/ccc_arousal": float("nan")})
    assert only_va == {}  # a NaN CCC gives no P_VA, and no P_MTL
    full = abaw_scores(
        {"expr/f1_macro": 0.5, "expr/accuracy": 0.6, "au/f1_mean": 0.3, "va/ccc_valence": 0.2, "va/ccc_arousal": 0.6},
        au_accuracy=0.9,
    )
    assert full["abaw/mtl"] == pytest.approx(0.4 + 0.5 + 0.3)
    assert full["abaw1/au"] == pytest.approx(0.6) and full["abaw1/expr"] == pytest.approx(0.67 * 0.5 + 0.33 * 0.6)
    assert np.isnan(au_decision_accuracy(np.array([[0.7]]), np.array([[np.nan]])))


def test_stored_metrics_that_predictions_contradict_are_flagged(tmp_path: Path) -> None:
    write_results(tmp_path / "a-seed0", 0, {"expr/f1_macro": 0.99}, predictions=_predictions(0))
    report = build_report([tmp_path])
    assert any("expr/f1_macro is 0.99000 in the results file" in note for note in report.notes)


def test_au_thresholds_are_tuned_on_validation_only(tmp_path: Path) -> None:
    test = _predictions(0)
    validation = _predictions(1)
    validation["output_au"] = validation["output_au"] + 2.0  # on validation, high thresholds win
    run = tmp_path / "a-seed0"
    write_results(run, 0, predictions=test)
    write_results(run, 0, condition="val", predictions=validation)
    report = build_report([tmp_path])
    test_section = [s for s in report.sections if s.title.endswith("· test")][0]
    tuned_table = [t for t in test_section.tables if t.name.endswith("per-au-f1-tuned")][0]
    row = dict(zip(tuned_table.csv_columns, tuned_table.csv_rows[0], strict=True))
    val_space = SamplePredictions.load(run / "results-val.predictions.npz")
    thresholds = tune_au_thresholds(val_space)
    assert set(thresholds.values()) <= set(THRESHOLD_GRID) and max(thresholds.values()) > 0.5
    probabilities = 1 / (1 + np.exp(-test["output_au"].astype(np.float64)))
    expected = []
    for column, number in enumerate(SPACE.action_units):
        keep = ~np.isnan(test["target_au"][:, column])
        predicted = probabilities[keep, column] > thresholds[number]
        expected.append(f1_score(test["target_au"][keep, column], predicted, zero_division=0))
        assert row[f"au/f1_au{number}_tuned mean"] == pytest.approx(expected[-1], abs=1e-6)
        best_on_test = max(
            f1_score(test["target_au"][keep, column], probabilities[keep, column] > t, zero_division=0)
            for t in THRESHOLD_GRID
        )
        assert best_on_test >= expected[-1]
    summary = dict(
        zip(_table(report, "test-summary").csv_columns, _table(report, "test-summary").csv_rows[0], strict=True)
    )
    assert summary["au/f1_mean_tuned mean"] == pytest.approx(np.mean(expected), abs=1e-6)
    val_section = [s for s in report.sections if s.title.endswith("· val")][0]
    assert not any(t.name.endswith("tuned") for t in val_section.tables)  # never tuned on the data it scores


def test_subject_bootstrap_equals_the_evaluation_module(with_predictions: Path) -> None:
    report = build_report(
        [with_predictions], reference=["a"], metrics=["va/ccc_arousal", "expr/accuracy"], resamples=300
    )
    deltas = _table(report, "deltas")
    rows = {r[1]: dict(zip(deltas.csv_columns, r, strict=True)) for r in deltas.csv_rows}
    mine = [SamplePredictions.load(with_predictions / f"b-seed{s}" / "results-test.predictions.npz") for s in range(3)]
    theirs = [
        SamplePredictions.load(with_predictions / f"a-seed{s}" / "results-test.predictions.npz") for s in range(3)
    ]
    direct = paired_subject_bootstrap([(m, [t]) for m, t in zip(mine, theirs, strict=True)], "va/ccc_arousal", 300, 0)
    low, high = direct.mean_interval()
    ccc = rows["va/ccc_arousal"]
    assert ccc["bootstrap low"] == pytest.approx(low) and ccc["bootstrap high"] == pytest.approx(high)
    assert ccc["bootstrap draws won"] == pytest.approx(direct.mean_win_fraction())
    assert ccc["bootstrap subjects"] == SUBJECTS
    assert ccc["bootstrap difference"] == pytest.approx(ccc["paired difference"], abs=1e-5)
    assert rows["expr/accuracy"]["bootstrap low"] is None  # not a metric the subject bootstrap knows


def test_refuses_predictions_of_other_samples(with_predictions: Path) -> None:
    other = _predictions(5)
    other["index"] = other["index"] + 1000
    write_results(with_predictions / "a-seed9", 9, predictions=other)
    with pytest.raises(ReportError, match="different test samples"):
        build_report([with_predictions])


def test_written_files_are_self_contained(with_predictions: Path, tmp_path: Path) -> None:
    report = build_report([with_predictions], reference=["a"], resamples=50)
    written = write_report(report, tmp_path / "out" / "report.html")
    page = written.html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "http" not in page and "<script" not in page and "<link" not in page
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)
    assert written.markdown.name == "report.md" and "| setting | n | seeds |" in written.markdown.read_text()
    latex = written.latex.read_text()
    assert latex.count(r"\begin{table}") == len(report.tables) and r"\toprule" in latex
    assert {path.name for path in written.csv} >= {"report-synthaffect-test-summary.csv"}
    rows = _csv(tmp_path / "out" / "report-synthaffect-test-summary.csv")
    assert len(rows) == 2 and float(rows[0]["expr/f1_macro n"]) == 3
    with pytest.raises(ReportError, match=r"\.html"):
        write_report(report, tmp_path / "report.pdf")


def test_wandb_flag_logs_the_figures_and_tables_beside_the_runs(
    with_predictions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "wb" / "report.html"
    with pytest.raises(ReportError, match="none of these runs was logged to W&B"):
        main(["report", str(with_predictions), "--output", str(output), "--wandb"])
    logger = {"class_path": "multimodal_fer.loggers.WandbLogger", "init_args": {"project": "p", "group": "exp"}}
    for path in with_predictions.glob("*/results-*.json"):
        results = json.loads(path.read_text())
        results["config"]["trainer"]["logger"] = logger
        path.write_text(json.dumps(results))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    main(["report", str(with_predictions), "--output", str(output), "--wandb"])
    (run,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    report = build_report([with_predictions])
    figures = sum(len(section.lead_images) + len(section.images) for section in report.sections)
    tables = sum(len(section.tables) for section in report.sections)
    assert figures > 0 and len(list((run / "files" / "media" / "images").glob("**/*.png"))) == figures
    assert len(list((run / "files" / "media" / "table").glob("**/*.table.json"))) == tables + 1  # + "sections"


def test_cli_writes_the_report(ablation: Path, tmp_path: Path) -> None:
    output = tmp_path / "cli" / "ablation.html"
    main(
        [
            "report",
            str(ablation),
            "--output",
            str(output),
            "--reference",
            "modalities=[face]",
            "--metrics",
            "expr/f1_macro",
        ]
    )
    assert output.exists() and (tmp_path / "cli" / "ablation-synthaffect-test-deltas.csv").exists()
    with pytest.raises(ReportError, match="Unknown metric"):
        main(["report", str(ablation), "--output", str(output), "--metrics", "expr/nonsense"])


@pytest.fixture
def singles_and_fused(tmp_path: Path) -> Path:
    """Two single-modality settings (suite ``singles``) and a fused one (suite ``fused``) × three seeds."""
    root = tmp_path / "suites"
    for seed in range(3):
        for modality, offset in (("face", 0), ("audio", 20)):
            cell = {"data.init_args.modalities": [modality], "seed_everything": seed}
            predictions = _predictions(offset + seed, noise=1.2)
            write_results(root / "singles" / f"{modality}-{seed}", seed, cell=cell, predictions=predictions)
        cell = {"data.init_args.modalities": ["face", "audio"], "seed_everything": seed}
        fused = _predictions(40 + seed, noise=0.9)
        write_results(root / "fused" / f"both-{seed}", seed, cell=cell, predictions=fused, modalities=("face", "audio"))
    return root


def test_best_of_compares_with_the_best_baseline_per_seed_and_draw(singles_and_fused: Path) -> None:
    metrics = ["expr/f1_macro", "va/ccc_arousal", "va/rmse_arousal"]
    report = build_report([singles_and_fused], metrics=metrics, resamples=300, best_of=["singles"])
    table = _table(report, "best-of")
    assert table.columns[2] == "best baseline" and {row[0] for row in table.rows} == {"fused"}
    rows = {r[1]: dict(zip(table.csv_columns, r, strict=True)) for r in table.csv_rows}

    def load(folder: str, seed: int) -> SamplePredictions:
        return SamplePredictions.load(singles_and_fused / f"{folder}-{seed}" / "results-test.predictions.npz")

    fused = [load("fused/both", seed) for seed in range(3)]
    singles = [[load("singles/face", seed), load("singles/audio", seed)] for seed in range(3)]
    for metric in ("expr/f1_macro", "va/ccc_arousal"):
        direct = paired_subject_bootstrap(list(zip(fused, singles, strict=True)), metric, 300, 0)
        low, high = direct.mean_interval()
        row = rows[metric]
        assert row["bootstrap low"] == pytest.approx(low) and row["bootstrap high"] == pytest.approx(high)
        assert row["bootstrap draws won"] == pytest.approx(direct.mean_win_fraction())
        assert row["paired difference"] == pytest.approx(direct.observed.mean(), abs=1e-5)
        best = [max(metric_value(m, metric) for m in seed_models) for seed_models in singles]
        mine = [metric_value(m, metric) for m in fused]
        assert row["reference mean"] == pytest.approx(np.mean(best), abs=1e-5)
        assert row["paired t-test p"] == pytest.approx(stats.ttest_rel(mine, best).pvalue, rel=1e-3)
    # RMSE: the best baseline is the lowest (stored figures recomputed from the predictions; no bootstrap).
    rmse = {
        folder: [
            np.sqrt(np.nanmean((load(folder, s).outputs["va"][:, 1] - load(folder, s).targets["va"][:, 1]) ** 2))
            for s in range(3)
        ]
        for folder in ("singles/face", "singles/audio", "fused/both")
    }
    lowest = np.minimum(rmse["singles/face"], rmse["singles/audio"])
    assert rows["va/rmse_arousal"]["paired difference"] == pytest.approx(np.mean(rmse["fused/both"] - lowest), abs=1e-5)
    assert rows["va/rmse_arousal"]["bootstrap low"] is None
    assert any(note.startswith("Best baseline of va/rmse_arousal (lowest): seed 0:") for note in table.notes)
    assert "best of 2 setting(s)" in table.notes[0]
    assert any("--best-of" in line for line in report.method)


def test_best_of_with_one_baseline_is_the_reference_comparison(singles_and_fused: Path) -> None:
    face = "data.init_args.modalities=[face]"
    both = build_report([singles_and_fused], metrics=["va/ccc_arousal"], resamples=200, best_of=[face])
    one = build_report([singles_and_fused], metrics=["va/ccc_arousal"], resamples=200, reference=[face])
    assert _table(both, "best-of").csv_rows == _table(one, "deltas").csv_rows
    with pytest.raises(ReportError, match="--best-of nothing matches no setting"):
        build_report([singles_and_fused], best_of=["nothing"])


def _fold_predictions(fold: int, folds: int, seed: int) -> dict[str, np.ndarray]:
    """The samples of one fold's test subjects (subjects ``fold``, ``fold + folds``, ...), outputs varying with seed."""
    whole = _predictions(seed, noise=1.0)
    keep = np.isin(whole["subject"], np.arange(fold, SUBJECTS, folds))
    return {key: value[keep] for key, value in whole.items()}


def write_crossval(root: Path, name: str, modalities: tuple[str, ...], seed: int, folds: int = 3) -> list[Path]:
    """A `mfer crossval` output folder: one run folder per fold, as the runner and the results writer leave them."""
    paths = []
    for fold in range(folds):
        split = {
            "class_path": "multimodal_fer.datasets.protocols.SubjectKFold",
            "init_args": {"num_folds": folds, "fold": fold, "seed": 0},
        }
        cell = {"overrides": {"name": f"fold={fold}", "data.init_args.split": split}}
        predictions = _fold_predictions(fold, folds, seed)
        path = write_results(
            root / name / f"{fold:03d}-fold={fold}", 0, cell=cell, predictions=predictions, modalities=modalities
        )
        results = json.loads(path.read_text())
        results["data"]["protocol"] = f"SubjectKFold(num_folds={folds}, fold={fold}, seed=0)"
        results["config"]["data"]["init_args"]["split"] = split
        path.write_text(json.dumps(results))
        paths.append(path)
    return paths


def test_a_crossvals_folds_are_one_protocol_group_with_mean_std_and_pooled_figures(tmp_path: Path) -> None:
    from multimodal_fer.benchmarking.fold_aggregate import FoldRun, aggregate_folds, write_aggregate

    root = tmp_path / "runs"
    face = write_crossval(root, "face-3fold", ("face",), seed=1)
    both = write_crossval(root, "both-3fold", ("face", "audio"), seed=7)
    runs = [FoldRun(fold, path.parent) for fold, path in enumerate(face)]
    aggregate = aggregate_folds(runs, "face-3fold", "SubjectKFold(num_folds=3, seed=0)")
    write_aggregate(aggregate, root / "face-3fold")  # the other cross-validation has no aggregate yet

    metrics = ["expr/f1_macro", "va/ccc_arousal"]
    report = build_report([root], metrics=metrics, reference=["face-3fold"], resamples=50)
    assert [section.title for section in report.sections] == ["synthaffect · SubjectKFold(num_folds=3, seed=0) · test"]
    summary = _table(report, "summary")
    rows = {row[0]: row for row in summary.rows}
    assert set(rows) == {"face-3fold", "both-3fold"} and rows["face-3fold"][1:3] == ["3", "folds 0-2 (seed 0)"]
    csv_rows = {row[0]: dict(zip(summary.csv_columns, row, strict=True)) for row in summary.csv_rows}
    for name, paths in (("face-3fold", face), ("both-3fold", both)):
        per_fold = [SamplePredictions.load(p.with_name("results-test.predictions.npz")) for p in paths]
        values = [metric_value(fold, "expr/f1_macro") for fold in per_fold]
        assert csv_rows[name]["expr/f1_macro mean"] == pytest.approx(np.mean(values), abs=1e-5)
        assert csv_rows[name]["expr/f1_macro std"] == pytest.approx(np.std(values, ddof=1), abs=1e-5)
        assert csv_rows[name]["expr/f1_macro n"] == 3
    pooled = _table(report, "pooled")
    assert [row[0] for row in pooled.csv_rows] == ["face-3fold"]  # only it has an aggregate
    pooled_row = dict(zip(pooled.csv_columns, pooled.csv_rows[0], strict=True))
    assert pooled_row["expr/f1_macro"] == pytest.approx(aggregate["metrics"]["test/expr/f1_macro"]["pooled"])
    assert pooled_row["folds"] == 3 and pooled_row["pooled samples"] == SUBJECTS * PER_SUBJECT
    # The scored samples are told per fold: each fold tests other subjects.
    per_fold_counts = [len(_fold_predictions(fold, 3, 1)["subject"]) for fold in range(3)]
    listed = ", ".join(f"fold {fold} {count}" for fold, count in enumerate(per_fold_counts))
    assert f"Scored samples per fold: {listed} ({SUBJECTS * PER_SUBJECT} in all), of {SUBJECTS} subjects." in (
        report.sections[0].details
    )
    # Two cross-validations are paired by fold.
    deltas = _table(report, "deltas")
    f1 = next(dict(zip(deltas.csv_columns, r, strict=True)) for r in deltas.csv_rows if r[1] == "expr/f1_macro")
    assert f1["pairs"] == 3
    # Two results of one fold are refused.
    extra = write_results(tmp_path / "again" / "face-3fold" / "000-fold=0-again", 0, predictions=None)
    results = json.loads(extra.read_text())
    results["data"]["protocol"] = "SubjectKFold(num_folds=3, fold=0, seed=0)"
    results["config"] = json.loads(face[0].read_text())["config"]
    extra.write_text(json.dumps(results))
    (extra.parent / "cell.json").write_text((face[0].parent / "cell.json").read_text())
    with pytest.raises(ReportError, match=r"one setting and fold \(0\)"):
        build_report([root / "face-3fold", extra])


def test_runs_whose_configs_differ_only_in_their_own_folders_are_seeds_of_one_setting(tmp_path: Path) -> None:
    """A ModelCheckpoint's dirpath (inside the trainer.callbacks list) names each run's folder: not a setting."""
    root = tmp_path / "runs"
    for seed in range(2):
        for name, lr in (("small", 1e-3), ("large", 1e-2)):
            folder = root / name / f"2026-12-06_17-3{seed}-00_seed{seed}"
            path = write_results(folder, seed, {"expr/f1_macro": 0.4 + 0.1 * seed + lr})
            results = json.loads(path.read_text())
            results["config"]["model"]["init_args"]["lr"] = lr
            checkpoint = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint"}
            checkpoint["init_args"] = {"dirpath": f"{folder}/checkpoints", "monitor": "val/score"}
            results["config"]["trainer"]["callbacks"] = [checkpoint]
            results["config"]["data"]["init_args"]["test_subset"] = f"/lists/{name}/occlusion.txt"
            path.write_text(json.dumps(results))
    report = build_report([root])
    rows = {row[0]: row for row in _table(report, "summary").csv_rows}
    assert set(rows) == {"model.lr=0.001", "model.lr=0.01"}
    columns = _table(report, "summary").csv_columns
    assert dict(zip(columns, rows["model.lr=0.01"], strict=True))["seeds"] == "0, 1"


def test_table_names_stay_short_enough_for_a_file_name() -> None:
    from multimodal_fer.reporting.builder import _slug

    long = "confusion of " + "trainer.callbacks=[{...}] " * 40
    slug = _slug(long)
    assert len(slug) <= 100 and slug.startswith("confusion-of-trainer-callbacks")
    assert _slug(long + "x") != slug and _slug("rafdb · test") == "rafdb-test"


@pytest.mark.parametrize(("per_sample_subjects", "told"), [(False, "of 6 subjects."), (True, "one sample each")])
def test_the_scored_samples_line_says_when_every_sample_is_its_own_subject(
    tmp_path: Path, per_sample_subjects: bool, told: str
) -> None:
    predictions = _predictions(0)
    if per_sample_subjects:  # RAF-DB, AffectNet: the subject is the image
        predictions["subject"] = np.arange(SUBJECTS * PER_SUBJECT)
    write_results(tmp_path / "runs" / "one" / "run-seed0", 0, predictions=predictions)
    (line,) = [d for d in build_report([tmp_path / "runs"]).sections[0].details if d.startswith("Scored samples")]
    assert line.startswith(f"Scored samples: {SUBJECTS * PER_SUBJECT}, of ") and told in line
    assert ("bootstrap draws single samples" in line) == per_sample_subjects
