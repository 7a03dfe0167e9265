"""The ABAW challenges' per-track performance measures, derived from the package's metrics.

The Affective Behavior Analysis in-the-wild challenges (Aff-Wild2) score each track by one number
(``/work/shared/reference/datasets.md``, "Official metrics"):

* from ABAW3 (CVPR 2022) on: expressions ``P_EXPR`` = macro-F1 over the classes; action units ``P_AU`` = the mean of
  the per-AU binary F1 (threshold 0.5); valence–arousal ``P_VA = 0.5 · (CCC_valence + CCC_arousal)``; the multi-task
  track ``P_MTL = P_VA + P_EXPR + P_AU`` (the sum of the three, in [−1, 3]);
* ABAW1 (FG 2020): expressions ``0.67 · macro-F1 + 0.33 · accuracy``; AUs ``0.5 · mean F1 + 0.5 · accuracy``, the
  accuracy over every labeled (sample, AU) decision flattened into one list.

Here they are computed over the label space of the data set scored: they are ABAW's own figures only on Aff-Wild2's
8 expressions and 12 AUs (``configs/data/affwild2.yaml``); on another label space (SynthAffect's 16 AUs) they are
the same formulas, for comparing runs with one another. Names: ``abaw/expr``, ``abaw/au``, ``abaw/va``,
``abaw/mtl``, ``abaw1/expr``, ``abaw1/au``; a score whose inputs are missing is left out.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: ABAW1's weights of macro-F1 and accuracy in the expression score.
ABAW1_EXPR_WEIGHTS = (0.67, 0.33)
#: ABAW1's weights of mean F1 and flattened accuracy in the AU score.
ABAW1_AU_WEIGHTS = (0.5, 0.5)


def au_decision_accuracy(probabilities: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> float:
    """The accuracy of every labeled (sample, AU) decision, flattened into one list (ABAW1's AU accuracy).

    Args:
        probabilities: float (N, A) AU probabilities (the sigmoid of the logits).
        targets: float (N, A) AU labels, 0 or 1, NaN where unlabeled.
        threshold: an AU is predicted present where its probability is at least this.

    Returns:
        The share of labeled decisions predicted right; NaN when no decision is labeled.
    """
    labeled = ~np.isnan(targets)
    if not labeled.any():
        return float("nan")
    predicted = probabilities[labeled] >= threshold
    return float(np.mean(predicted == (targets[labeled] > 0.5)))


def abaw_scores(metrics: Mapping[str, float], au_accuracy: float | None = None) -> dict[str, float]:
    """The ABAW per-track scores that the given metrics allow.

    Args:
        metrics: metric name (no stage prefix) → value; reads ``expr/f1_macro``, ``expr/accuracy``,
            ``au/f1_mean``, ``va/ccc_valence`` and ``va/ccc_arousal``.
        au_accuracy: :func:`au_decision_accuracy` of the same predictions, for ABAW1's AU score (None: left out).

    Returns:
        ``abaw/expr``, ``abaw/au``, ``abaw/va`` and, with all three, ``abaw/mtl``; ``abaw1/expr`` and
        ``abaw1/au`` where their inputs are there. Scores with a non-finite input are left out.
    """

    def finite(*names: str) -> bool:
        return all(name in metrics and np.isfinite(metrics[name]) for name in names)

    scores: dict[str, float] = {}
    if finite("expr/f1_macro"):
        scores["abaw/expr"] = float(metrics["expr/f1_macro"])
        if finite("expr/accuracy"):
            f1_weight, accuracy_weight = ABAW1_EXPR_WEIGHTS
            scores["abaw1/expr"] = f1_weight * metrics["expr/f1_macro"] + accuracy_weight * metrics["expr/accuracy"]
    if finite("au/f1_mean"):
        scores["abaw/au"] = float(metrics["au/f1_mean"])
        if au_accuracy is not None and np.isfinite(au_accuracy):
            f1_weight, accuracy_weight = ABAW1_AU_WEIGHTS
            scores["abaw1/au"] = f1_weight * metrics["au/f1_mean"] + accuracy_weight * au_accuracy
    if finite("va/ccc_valence", "va/ccc_arousal"):
        scores["abaw/va"] = 0.5 * (metrics["va/ccc_valence"] + metrics["va/ccc_arousal"])
    if all(name in scores for name in ("abaw/expr", "abaw/au", "abaw/va")):
        scores["abaw/mtl"] = scores["abaw/va"] + scores["abaw/expr"] + scores["abaw/au"]
    return scores
