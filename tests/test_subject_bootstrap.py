import json
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal_fer.callbacks.results_writer import predictions_path
from multimodal_fer.cli import main
from multimodal_fer.evaluation import (
    SamplePredictions,
    metric_value,
    paired_loss_bootstrap,
    paired_subject_bootstrap,
    scores_on_draws,
    weighted_metric,
)
from multimodal_fer.evaluation.subject_bootstrap import metric_names, subject_weights
from multimodal_fer.metrics import FERMetrics
from multimodal_fer.types import LabelSpace

from conftest import CONFIGS, run_folder, tiny_data_args, tiny_trainer_args

SPACE = LabelSpace(expressions=("a", "b", "c", "d"), action_units=(1, 2, 4), dimensions=("valence", "arousal"))


def _predictions(seed: int, subjects: int = 6, per_subject: int = 10, noise: float = 1.0) -> SamplePredictions:
    """Random labels (some unlabeled, class "d" never labeled) and outputs that track them with ``noise``."""
    rng = np.random.default_rng(seed)
    n = subjects * per_subject
    expr = rng.integers(0, 3, n)
    expr[::7] = -1
    au = (rng.random((n, 3)) > 0.5).astype(np.float32)
    au[::5, 1] = np.nan
    va = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    va[::9, 0] = np.nan
    label_rng = np.random.default_rng(1000 + seed)  # outputs differ between seeds, labels do not
    expr_logits = label_rng.normal(0, noise, (n, 4)).astype(np.float32)
    expr_logits[np.arange(n), np.clip(expr, 0, 3)] += 1.0
    au_logits = (np.nan_to_num(au, nan=0.0) * 2 - 1 + label_rng.normal(0, noise, (n, 3))).astype(np.float32)
    va_out = (np.nan_to_num(va) + label_rng.normal(0, 0.5 * noise, (n, 2))).astype(np.float32)
    return SamplePredictions(
        index=np.arange(n),
        subject=np.repeat(np.arange(subjects), per_subject),
        targets={"expr": expr, "au": au, "va": va},
        outputs={"expr": expr_logits, "au": au_logits, "va": va_out},
        label_space=SPACE,
    )


def _fer_metrics(predictions: SamplePredictions, rows: np.ndarray) -> dict[str, float]:
    metrics = FERMetrics(predictions.label_space, "test")
    metrics.update(
        {k: torch.from_numpy(v[rows]) for k, v in predictions.outputs.items()},
        {k: torch.from_numpy(v[rows]) for k, v in predictions.targets.items()},
    )
    return {k.removeprefix("test/"): float(v) for k, v in metrics.compute().items()}


def test_metrics_equal_the_training_metrics() -> None:
    predictions = _predictions(0)
    reference = _fer_metrics(predictions, np.arange(len(predictions.index)))
    assert metric_names(SPACE) == ("expr/f1_macro", "au/f1_mean", "va/ccc_valence", "va/ccc_arousal")
    for metric in metric_names(SPACE):
        assert metric_value(predictions, metric) == pytest.approx(reference[metric], abs=1e-6), metric


def test_subject_weights_score_the_drawn_data_set() -> None:
    """Weighting samples by their subject's draw count equals scoring the data set with those subjects repeated."""
    predictions = _predictions(1)
    weights = subject_weights(predictions.subject, resamples=5, seed=3)
    assert weights.shape == (5, 60)
    assert np.all(weights.sum(axis=1) == 60)  # six subjects drawn, ten samples each
    for row in weights:
        rows = np.repeat(np.arange(60), row.astype(int))
        reference = _fer_metrics(predictions, rows)
        for metric in metric_names(SPACE):
            value = weighted_metric(predictions, metric, row[None])[0]
            assert value == pytest.approx(reference[metric], abs=1e-6), metric


def test_bootstrap_of_a_model_against_itself_is_exactly_zero() -> None:
    predictions = _predictions(2)
    result = paired_subject_bootstrap([(predictions, [predictions])], "va/ccc_arousal", resamples=50)
    assert result.subjects == 6
    assert np.all(result.observed == 0) and np.all(result.resampled == 0)
    assert result.win_fraction()[0] == 0.0


def test_bootstrap_compares_with_the_best_baseline_of_each_draw() -> None:
    good, bad, worse = _predictions(3, noise=0.2), _predictions(4, noise=1.5), _predictions(5, noise=3.0)
    metric = "expr/f1_macro"
    result = paired_subject_bootstrap([(good, [bad, worse]), (bad, [good])], metric, resamples=200, seed=1)
    weights = np.concatenate([np.ones((1, 60)), subject_weights(good.subject, 200, 1)])
    best = np.maximum(weighted_metric(bad, metric, weights), weighted_metric(worse, metric, weights))
    expected = weighted_metric(good, metric, weights) - best
    np.testing.assert_allclose(result.observed[0], expected[0])
    np.testing.assert_allclose(result.resampled[:, 0], expected[1:])
    np.testing.assert_allclose(
        result.resampled[:, 1], -result.resampled[:, 0] - (best - weighted_metric(bad, metric, weights))[1:]
    )
    assert result.win_fraction()[0] == 1.0 and result.win_fraction()[1] == 0.0
    low, high = result.interval()[0]
    assert 0 < low <= result.observed[0] <= high
    assert result.mean_win_fraction() == float((result.resampled.mean(axis=1) > 0).mean())


def test_loss_bootstrap_measures_how_much_more_the_plain_model_loses() -> None:
    """(plain − plain_without) − (robust − robust_without), on the same draws for all four models."""
    plain, plain_without = _predictions(8, noise=0.3), _predictions(9, noise=2.0)
    robust, robust_without = _predictions(10, noise=0.4), _predictions(11, noise=0.6)
    metric = "va/ccc_arousal"
    result = paired_loss_bootstrap([(plain, plain_without, robust, robust_without)], metric, resamples=100, seed=2)
    scores = scores_on_draws([plain, plain_without, robust, robust_without], metric, resamples=100, seed=2)
    expected = (scores[:, 0] - scores[:, 1]) - (scores[:, 2] - scores[:, 3])
    np.testing.assert_allclose(result.observed, expected[:1])
    np.testing.assert_allclose(result.resampled[:, 0], expected[1:])
    assert result.observed[0] > 0 and result.win_fraction()[0] > 0.95  # the plain model falls much further
    # A model compared with itself loses exactly as much.
    same = paired_loss_bootstrap([(plain, plain_without, plain, plain_without)], metric, resamples=20)
    assert np.all(same.resampled == 0)


def test_bootstrap_refuses_predictions_of_different_test_sets() -> None:
    one, other = _predictions(6), _predictions(7, subjects=5)
    with pytest.raises(ValueError, match="different test samples"):
        paired_subject_bootstrap([(one, [other])], "expr/f1_macro", resamples=10)
    with pytest.raises(ValueError, match="Unknown metric"):
        metric_value(one, "va/ccc_dominance")


def test_test_run_writes_predictions_that_reproduce_its_metrics(tmp_path: Path, tiny_cache: Path) -> None:
    quickstart = str(CONFIGS / "quickstart.yaml")
    data = tiny_data_args(tiny_cache)
    main(["fit", "--config", quickstart, *data, *tiny_trainer_args(tmp_path), "--trainer.max_epochs=1"])
    run = run_folder(tmp_path)
    checkpoint = next((run / "checkpoints").glob("best-*.ckpt"))
    main(
        [
            "test",
            "--config",
            quickstart,
            *data,
            *tiny_trainer_args(tmp_path),
            f"--ckpt_path={checkpoint}",
            "--results.filename=with_predictions.json",
            "--results.predictions=true",
        ]
    )
    results = json.loads((run / "with_predictions.json").read_text())
    path = predictions_path(run / "with_predictions.json")
    assert results["predictions"] == path.name == "with_predictions.predictions.npz"
    predictions = SamplePredictions.load(path)
    assert len(predictions.index) == 8 and np.all(np.diff(predictions.index) > 0)  # 2 test subjects × 4 samples
    assert len(np.unique(predictions.subject)) == 2
    assert predictions.outputs["expr"].shape == (8, predictions.label_space.num_expressions)
    for metric in ("expr/f1_macro", "au/f1_mean", "va/ccc_valence", "va/ccc_arousal"):
        assert metric_value(predictions, metric) == pytest.approx(results["metrics"][f"test/{metric}"], abs=1e-5)
    # Without the flag no predictions file is written.
    assert not predictions_path(run / "results-test.json").exists()
    # The test wrote its own config file; config.yaml still holds the training run's (one epoch, no ckpt_path).
    assert (run / "config-test.yaml").exists()
    assert "ckpt_path: null" in (run / "config.yaml").read_text()
    assert f"ckpt_path: {checkpoint}" in (run / "config-test.yaml").read_text()


def test_predictions_keep_each_sample_once_sorted_by_index() -> None:
    """A distributed sampler pads the last batch with repeats; the writer keeps every cache index once."""
    from types import SimpleNamespace

    from multimodal_fer.callbacks.results_writer import ResultsWriter

    writer = ResultsWriter(predictions=True)
    writer._kept = [
        {"index": np.array([5, 1, 3]), "output_va": np.array([[0.5], [0.1], [0.3]])},
        {"index": np.array([2, 5]), "output_va": np.array([[0.2], [0.5]])},
    ]
    kept = writer._gathered_predictions(SimpleNamespace(world_size=1))
    np.testing.assert_array_equal(kept["index"], [1, 2, 3, 5])
    np.testing.assert_allclose(kept["output_va"][:, 0], [0.1, 0.2, 0.3, 0.5])
