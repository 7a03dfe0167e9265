"""Linear probes on fixed features: what a set of encoders' features hold about expressions and affect.

A probe is fitted on the training split's features, its regularisation is chosen by its score on the validation
split, and the chosen probe is scored on the test split:

- every affect dimension of the label space (valence, arousal, dominance): ridge regression
  (``sklearn.linear_model.Ridge``), scored by the package's one CCC
  (:func:`multimodal_fer.metrics.concordance_correlation`);
- expressions: multinomial logistic regression (``sklearn.linear_model.LogisticRegression``), scored by macro-F1
  over the label space's classes.

Features of several modalities are concatenated, then standardised with the training split's statistics. Unlabeled
entries (expression −1, dimension NaN) are left out of every fit and score, as the package's losses and metrics
do. scikit-learn is a development dependency of the package (``pip install 'multimodal-fer[dev]'``); it is imported
only when a probe is fitted.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from multimodal_fer._lazy import require
from multimodal_fer.errors import MferError
from multimodal_fer.metrics import concordance_correlation

#: Ridge penalties tried for every affect dimension (the best on validation is scored on test).
RIDGE_ALPHAS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
#: Inverse penalties tried for the expression probe.
LOGISTIC_CS: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
#: Score key of the expression probe; the affect probes' keys are ``ccc_<dimension>``.
EXPRESSION_SCORE = "expr_f1"
#: The three splits a probe needs, in the order they are used.
SPLITS: tuple[str, ...] = ("train", "val", "test")


class ProbeError(MferError, ValueError):
    """Features or run folders that linear probes cannot be fitted on (the message says what to change)."""


@dataclass(frozen=True)
class SplitFeatures:
    """Fixed features and labels of one split, one row per sample in the same order everywhere.

    Attributes:
        features: modality → float (N, D_m) features of the samples (zeros where the modality is absent).
        expr: long (N,) expression labels, −1 = unlabeled.
        va: float (N, len(dimensions)) affect labels, NaN = unlabeled.
        index: long (N,) the samples' cache indices (to check that several runs read the same samples).
        dimensions: names of ``va``'s columns, e.g. ``("valence", "arousal")``.
        num_expressions: number of expression classes of the label space (0: no expression probe).
    """

    features: dict[str, np.ndarray]
    expr: np.ndarray
    va: np.ndarray
    index: np.ndarray
    dimensions: tuple[str, ...] = ("valence", "arousal")
    num_expressions: int = 0

    def __post_init__(self) -> None:
        """Refuse arrays of different lengths, and affect labels without one column per dimension (ProbeError)."""
        rows = len(self.index)
        for name, values in (("expr", self.expr), ("va", self.va), *self.features.items()):
            if len(values) != rows:
                raise ProbeError(f"{name} has {len(values)} rows but index has {rows}: give one row per sample.")
        if self.va.ndim != 2 or self.va.shape[1] != len(self.dimensions):
            expected = f"(N, {len(self.dimensions)})"
            raise ProbeError(f"va has shape {self.va.shape}; expected {expected} for the dimensions {self.dimensions}.")


def subset_name(subset: Sequence[str]) -> str:
    """``face+audio``: the name of a modality subset in tables."""
    return "+".join(subset)


def score_keys(dimensions: Sequence[str], num_expressions: int) -> list[str]:
    """The score keys a probe of these labels gives: ``expr_f1`` (with classes), then ``ccc_<dimension>``."""
    return ([EXPRESSION_SCORE] if num_expressions else []) + [f"ccc_{name}" for name in dimensions]


def _inputs(splits: Mapping[str, SplitFeatures], subset: Sequence[str]) -> dict[str, np.ndarray]:
    """Concatenated (N, sum D_m) features of ``subset`` per split, standardised with the training statistics."""
    missing = [m for m in subset if m not in splits["train"].features]
    if missing:
        held = sorted(splits["train"].features)
        raise ProbeError(f"No features of {missing} to probe (features of {held}); choose subsets of those.")
    stacked = {
        split: np.concatenate([splits[split].features[m] for m in subset], axis=1).astype(np.float64)
        for split in SPLITS
    }
    mean = stacked["train"].mean(axis=0)
    std = stacked["train"].std(axis=0) + 1e-6
    return {split: (x - mean) / std for split, x in stacked.items()}


def _sklearn(submodule: str) -> ModuleType:
    """``sklearn.<submodule>``, or an error that says how to install scikit-learn."""
    require("sklearn", "linear probes (mfer probe)")
    return importlib.import_module(f"sklearn.{submodule}")


def _ccc(prediction: np.ndarray, target: np.ndarray) -> float:
    """CCC of (N,) predictions, NaN when it is undefined (fewer than two samples, or both constant)."""
    if len(target) < 2:
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(concordance_correlation(prediction.astype(np.float64), target.astype(np.float64)))


def _best(candidates: Sequence[object], scores: Sequence[float]) -> object:
    """The candidate with the highest finite validation score (the first on ties; the first if none is finite)."""
    finite = [s if np.isfinite(s) else -np.inf for s in scores]
    return candidates[int(np.argmax(finite))]


def ridge_ccc(
    inputs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], alphas: Sequence[float] = RIDGE_ALPHAS
) -> float:
    """Test CCC of the ridge regression whose penalty scores the highest validation CCC.

    Args:
        inputs: split → float (N_split, D) standardised features.
        targets: split → float (N_split,) labels, NaN = unlabeled (left out).
        alphas: the penalties tried.

    Returns:
        The test CCC (NaN when the training or test split has fewer than two labeled samples).
    """
    linear_model = _sklearn("linear_model")
    labeled = {split: np.isfinite(targets[split]) for split in SPLITS}
    if labeled["train"].sum() < 2 or labeled["test"].sum() < 2:
        return float("nan")
    x = {split: inputs[split][labeled[split]] for split in SPLITS}
    y = {split: targets[split][labeled[split]] for split in SPLITS}
    fitted = [linear_model.Ridge(alpha=alpha).fit(x["train"], y["train"]) for alpha in alphas]
    chosen = _best(fitted, [_ccc(model.predict(x["val"]), y["val"]) for model in fitted])
    return _ccc(chosen.predict(x["test"]), y["test"])


def logistic_f1(
    inputs: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    num_classes: int,
    cs: Sequence[float] = LOGISTIC_CS,
) -> float:
    """Test macro-F1 of the logistic regression whose inverse penalty scores the highest validation macro-F1.

    Args:
        inputs: split → float (N_split, D) standardised features.
        labels: split → long (N_split,) classes in ``[0, num_classes)``, −1 = unlabeled (left out).
        num_classes: the label space's classes; macro-F1 averages over all of them (a class neither labeled nor
            predicted counts 0).
        cs: the inverse penalties tried.

    Returns:
        The test macro-F1 (NaN when the test split has no labeled sample or training has fewer than two classes).
    """
    linear_model, metrics = _sklearn("linear_model"), _sklearn("metrics")
    labeled = {split: labels[split] >= 0 for split in SPLITS}
    x = {split: inputs[split][labeled[split]] for split in SPLITS}
    y = {split: labels[split][labeled[split]] for split in SPLITS}
    if len(np.unique(y["train"])) < 2 or not len(y["test"]):
        return float("nan")

    def f1(model: object, split: str) -> float:
        if not len(y[split]):
            return float("nan")
        predicted = model.predict(x[split])  # type: ignore[attr-defined]
        return float(
            metrics.f1_score(y[split], predicted, labels=np.arange(num_classes), average="macro", zero_division=0)
        )

    fitted = [linear_model.LogisticRegression(C=c, max_iter=2000).fit(x["train"], y["train"]) for c in cs]
    return f1(_best(fitted, [f1(model, "val") for model in fitted]), "test")


def probe_subset(
    splits: Mapping[str, SplitFeatures],
    subset: Sequence[str],
    ridge_alphas: Sequence[float] = RIDGE_ALPHAS,
    logistic_cs: Sequence[float] = LOGISTIC_CS,
) -> dict[str, float]:
    """Test scores of the probes on the concatenated features of ``subset``.

    Args:
        splits: ``train``, ``val`` and ``test`` features of the same modalities and labels.
        subset: the modalities whose features are concatenated (in this order).
        ridge_alphas: penalties tried for the affect probes.
        logistic_cs: inverse penalties tried for the expression probe.

    Returns:
        :func:`score_keys` → test score: ``expr_f1`` (macro-F1), ``ccc_valence``, ``ccc_arousal``, ...

    Raises:
        ProbeError: a split is missing, the subset is empty or names a modality without features.
    """
    absent = [split for split in SPLITS if split not in splits]
    if absent:
        raise ProbeError(f"Probes need features of the train, val and test splits; {absent} are missing.")
    if not subset:
        raise ProbeError("An empty modality subset cannot be probed; give at least one modality.")
    train = splits["train"]
    inputs = _inputs(splits, subset)
    scores: dict[str, float] = {}
    if train.num_expressions:
        labels = {split: splits[split].expr for split in SPLITS}
        scores[EXPRESSION_SCORE] = logistic_f1(inputs, labels, train.num_expressions, logistic_cs)
    for column, name in enumerate(train.dimensions):
        targets = {split: splits[split].va[:, column] for split in SPLITS}
        scores[f"ccc_{name}"] = ridge_ccc(inputs, targets, ridge_alphas)
    return scores


def default_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Each modality alone, the arousal pair (audio + physio), the expressive three (face + audio + depth), all.

    Pairs and triples are kept only when their modalities are all in ``modalities``; a subset that equals another
    (e.g. "all" of two modalities that are also the pair) is listed once.
    """
    chosen: list[tuple[str, ...]] = [(m,) for m in modalities]
    for extra in (("audio", "physio"), ("face", "audio", "depth"), tuple(modalities)):
        if len(extra) > 1 and set(extra) <= set(modalities) and extra not in chosen:
            chosen.append(extra)
    return chosen
