import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from multimodal_fer.metrics import concordance_correlation
from multimodal_fer.models.losses import (
    MultitaskLoss,
    masked_bce_with_logits,
    masked_ccc_loss,
    masked_cross_entropy,
)

NAN = float("nan")


def _np_ccc(x: np.ndarray, y: np.ndarray) -> float:
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    return float(2 * cov / (x.var() + y.var() + (mx - my) ** 2))


def test_cross_entropy_matches_hand_computation() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([0, -1, 1, 2])
    log_p = logits.log_softmax(-1)
    expected = -(log_p[0, 0] + log_p[2, 1] + log_p[3, 2]) / 3
    torch.testing.assert_close(masked_cross_entropy(logits, target), expected)
    weight = torch.tensor([1.0, 2.0, 0.5])
    expected_w = -(1.0 * log_p[0, 0] + 2.0 * log_p[2, 1] + 0.5 * log_p[3, 2]) / 3.5
    torch.testing.assert_close(masked_cross_entropy(logits, target, weight), expected_w)
    keep = target >= 0
    torch.testing.assert_close(
        masked_cross_entropy(logits, target, weight),
        F.cross_entropy(logits[keep], target[keep], weight=weight),
    )


def _loss_and_grad(fn, logits: torch.Tensor, *args) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = logits.clone().requires_grad_(True)
    loss = fn(leaf, *args)
    loss.backward()
    return loss.detach(), leaf.grad


def test_cross_entropy_ignores_unlabeled_samples() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    target = torch.tensor([1, -1, 3, -1, 0])
    loss, grad = _loss_and_grad(masked_cross_entropy, logits, target)
    changed = logits.clone()
    changed[1] = torch.tensor([50.0, -20.0, 3.0, 7.0])
    changed[3, 2] = -100.0
    loss2, grad2 = _loss_and_grad(masked_cross_entropy, changed, target)
    assert torch.equal(loss, loss2)
    assert torch.equal(grad[[0, 2, 4]], grad2[[0, 2, 4]])
    assert torch.all(grad2[[1, 3]] == 0)


def test_all_unlabeled_gives_zero_with_graph() -> None:
    logits = torch.randn(3, 4)
    loss, grad = _loss_and_grad(masked_cross_entropy, logits, torch.full((3,), -1))
    assert loss.item() == 0.0 and torch.all(grad == 0)
    loss, grad = _loss_and_grad(masked_bce_with_logits, torch.randn(3, 5), torch.full((3, 5), NAN))
    assert loss.item() == 0.0 and torch.all(grad == 0)
    target = torch.full((3, 2), NAN)
    target[0, 0] = 0.5  # one labeled row is not enough for a CCC
    loss, grad = _loss_and_grad(masked_ccc_loss, torch.randn(3, 2), target)
    assert loss.item() == 0.0 and torch.all(grad == 0) and torch.isfinite(grad).all()


def test_bce_matches_hand_computation_and_skips_nan() -> None:
    logits = torch.tensor([[0.3, -1.2, 2.0], [1.0, 0.0, -0.5]])
    target = torch.tensor([[1.0, NAN, 0.0], [NAN, 1.0, 1.0]])
    pos_weight = torch.tensor([2.0, 3.0, 0.5])

    def term(x: float, y: float, pw: float) -> float:
        s = 1 / (1 + math.exp(-x))
        return -(pw * y * math.log(s) + (1 - y) * math.log(1 - s))

    entries = [(0, 0), (0, 2), (1, 1), (1, 2)]
    expected = sum(term(logits[i, j].item(), target[i, j].item(), 1.0) for i, j in entries) / 4
    assert masked_bce_with_logits(logits, target).item() == pytest.approx(expected, rel=1e-6)
    expected_pw = sum(term(logits[i, j].item(), target[i, j].item(), pos_weight[j].item()) for i, j in entries) / 4
    assert masked_bce_with_logits(logits, target, pos_weight).item() == pytest.approx(expected_pw, rel=1e-6)
    loss, grad = _loss_and_grad(masked_bce_with_logits, logits, target)
    assert grad[0, 1] == 0 and grad[1, 0] == 0
    changed = logits.clone()
    changed[0, 1] = 100.0
    loss2, grad2 = _loss_and_grad(masked_bce_with_logits, changed, target)
    assert torch.equal(loss, loss2) and torch.equal(grad, grad2)


def test_ccc_matches_numpy() -> None:
    x = np.array([0.1, -0.4, 0.8, 0.3, -0.9, 0.05], dtype=np.float32)
    y = np.array([0.2, -0.1, 0.6, 0.5, -0.7, -0.2], dtype=np.float32)
    value = concordance_correlation(torch.from_numpy(x), torch.from_numpy(y))
    assert value.item() == pytest.approx(_np_ccc(x, y), abs=1e-5)
    assert concordance_correlation(torch.from_numpy(x), torch.from_numpy(x)).item() == pytest.approx(1.0, abs=1e-5)
    centred = torch.from_numpy(x - x.mean())
    assert concordance_correlation(centred, -centred).item() == pytest.approx(-1.0, abs=1e-5)


def test_masked_ccc_loss_per_dimension() -> None:
    rng = np.random.default_rng(0)
    pred = rng.uniform(-1, 1, (8, 3)).astype(np.float32)
    target = rng.uniform(-1, 1, (8, 3)).astype(np.float32)
    target[[1, 4], 0] = np.nan
    target[:, 1] = np.nan
    target[0, 1] = 0.3  # a single labeled row: dimension 1 is left out
    target[[2, 3, 7], 2] = np.nan
    expected = np.mean(
        [1 - _np_ccc(pred[~np.isnan(target[:, d]), d], target[~np.isnan(target[:, d]), d]) for d in (0, 2)]
    )
    pred_t = torch.from_numpy(pred).requires_grad_(True)
    loss = masked_ccc_loss(pred_t, torch.from_numpy(target))
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    loss.backward()
    assert torch.all(pred_t.grad[np.isnan(target)] == 0)
    assert torch.all(pred_t.grad[:, 1] == 0)


def test_multitask_loss() -> None:
    torch.manual_seed(0)
    outputs = {"expr": torch.randn(4, 3), "au": torch.randn(4, 2), "va": torch.randn(4, 2).tanh()}
    batch = {
        "expr": torch.tensor([0, -1, 2, 1]),
        "au": torch.tensor([[1.0, NAN], [0.0, 1.0], [NAN, NAN], [1.0, 0.0]]),
        "va": torch.tensor([[0.1, 0.2], [NAN, -0.3], [0.5, 0.4], [-0.2, NAN]]),
    }
    pos_weight = torch.tensor([1.5, 0.5])
    loss_fn = MultitaskLoss(expr_weight=2.0, au_weight=0.5, va_weight=1.0)
    out = loss_fn(outputs, batch, pos_weight)
    expected = {
        "expr": masked_cross_entropy(outputs["expr"], batch["expr"]),
        "au": masked_bce_with_logits(outputs["au"], batch["au"], pos_weight),
        "va": masked_ccc_loss(outputs["va"], batch["va"]),
    }
    for task, value in expected.items():
        torch.testing.assert_close(out[task], value)
    torch.testing.assert_close(out["loss"], 2.0 * expected["expr"] + 0.5 * expected["au"] + expected["va"])
    only_expr = loss_fn({"expr": outputs["expr"]}, batch)
    assert set(only_expr) == {"loss", "expr"}
    no_label = loss_fn({"va": outputs["va"].requires_grad_(True)}, {})
    assert no_label["loss"].item() == 0.0 and no_label["loss"].requires_grad
