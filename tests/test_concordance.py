"""The package's one CCC (multimodal_fer.metrics) against an independent formula, on arrays, tensors and weights."""

import numpy as np
import pytest
import torch

from multimodal_fer.metrics import PopulationConcordanceCorrCoef, concordance_correlation, sign_agreement


def _lin(x: np.ndarray, y: np.ndarray) -> float:
    """Lin (1989) written out with population moments, as the AVEC/ABAW evaluation code does."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x) / n
    syy = sum((b - my) ** 2 for b in y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / n
    return 2 * sxy / (sxx + syy + (mx - my) ** 2)


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.uniform(-1, 1, 40)
    return 0.6 * y + 0.2 + rng.normal(0, 0.3, 40), y


def test_arrays_and_tensors_give_lins_ccc(pair: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = pair
    expected = _lin(list(x), list(y))
    assert float(concordance_correlation(x, y)) == pytest.approx(expected, abs=1e-12)
    assert float(concordance_correlation(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(
        expected, abs=1e-12
    )
    assert float(concordance_correlation(x, x)) == pytest.approx(1.0)
    assert float(concordance_correlation(x - x.mean(), x.mean() - x)) == pytest.approx(-1.0)


def test_integer_weights_count_samples_that_often(pair: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = pair
    weights = np.random.default_rng(0).integers(0, 4, (5, len(x))).astype(np.float64)
    values = concordance_correlation(x, y, weights)
    assert values.shape == (5,)
    for row, value in zip(weights, values, strict=True):
        repeated = np.repeat(np.arange(len(x)), row.astype(int))
        assert value == pytest.approx(_lin(list(x[repeated]), list(y[repeated])), abs=1e-12)
        assert float(concordance_correlation(x, y, row)) == pytest.approx(value, abs=1e-12)  # one row: 2-pass path


def test_zero_weight_rows_and_epsilon() -> None:
    x = torch.tensor([[0.3, -0.2, 0.5], [0.0, 0.0, 0.0]])
    y = torch.tensor([[0.1, -0.4, 0.6], [0.0, 0.0, 0.0]])
    weights = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    values = concordance_correlation(x, y, weights, epsilon=1e-8)
    assert values[0].item() == pytest.approx(_lin([0.3, -0.2], [0.1, -0.4]), abs=1e-6)
    assert values[1].item() == 0.0  # nothing labeled: finite, so a loss stays finite


def test_columns_broadcast_and_gradients_flow(pair: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = pair
    both = torch.from_numpy(np.stack([x, -x])).requires_grad_(True)
    values = concordance_correlation(both, torch.from_numpy(np.stack([y, y])))
    assert values.shape == (2,)
    assert values[0].item() == pytest.approx(_lin(list(x), list(y)))
    assert values[1].item() == pytest.approx(_lin(list(-x), list(y)))
    values.sum().backward()
    assert both.grad is not None and torch.isfinite(both.grad).all()


def test_epoch_metric_uses_the_same_ccc(pair: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = pair
    metric = PopulationConcordanceCorrCoef()
    for chunk in np.array_split(np.arange(len(x)), 3):  # several updates: merged states
        metric.update(torch.from_numpy(x[chunk]).float(), torch.from_numpy(y[chunk]).float())
    assert float(metric.compute()) == pytest.approx(_lin(list(x), list(y)), abs=1e-5)


def test_sign_agreement() -> None:
    assert sign_agreement(np.array([0.5, -0.2, 0.1, 0.0]), np.array([0.9, 0.3, 0.2, 0.0])) == pytest.approx(0.75)
    assert np.isnan(sign_agreement(np.array([]), np.array([])))
