"""Statistics of a report: mean ± std over seeds, paired tests across seeds, the paired subject bootstrap.

* **Summary**: the mean and the sample standard deviation (N - 1) of a metric over a setting's runs, with their
  number n; the deviation needs n ≥ 2.
* **Paired test across seeds**: a setting and the reference are paired by seed (only seeds both have count);
  on the differences, the two-sided paired t-test (:func:`scipy.stats.ttest_rel`, n ≥ 2) and the two-sided
  Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`, exact distribution for small n; only from
  :data:`WILCOXON_MIN_PAIRS` pairs on, the fewest with which a two-sided p below 0.05 is possible).
* **Subject bootstrap**: :func:`multimodal_fer.evaluation.subject_bootstrap.paired_subject_bootstrap`, the test
  subjects drawn again with replacement and both models scored on the same draws, one comparison per seed pair;
  the interval is the percentile interval of the difference averaged over the seeds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from multimodal_fer.evaluation.subject_bootstrap import SamplePredictions, paired_subject_bootstrap

#: Fewest seed pairs for the Wilcoxon signed-rank test: with 5 its two-sided exact p is at least 0.0625.
WILCOXON_MIN_PAIRS = 6
#: Level of the bootstrap intervals.
INTERVAL_LEVEL = 0.95


@dataclass(frozen=True)
class Summary:
    """A metric over a setting's runs.

    Attributes:
        mean: the mean (NaN for no value).
        std: the sample standard deviation (NaN for fewer than two values).
        n: the number of values.
    """

    mean: float
    std: float
    n: int


def summarise(values: Sequence[float]) -> Summary:
    """Mean, sample standard deviation and count of some values."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return Summary(math.nan, math.nan, 0)
    std = float(array.std(ddof=1)) if array.size > 1 else math.nan
    return Summary(float(array.mean()), std, int(array.size))


@dataclass(frozen=True)
class PairedTest:
    """A setting against the reference, paired by seed.

    Attributes:
        seeds: the seeds both have, sorted.
        difference: mean over those seeds of setting minus reference (NaN without pairs).
        t_p: two-sided p of the paired t-test; None below two pairs or when every difference is equal.
        wilcoxon_p: two-sided p of the Wilcoxon signed-rank test; None below :data:`WILCOXON_MIN_PAIRS` pairs or
            when every difference is 0.
    """

    seeds: tuple[int, ...]
    difference: float
    t_p: float | None
    wilcoxon_p: float | None

    @property
    def n(self) -> int:
        """The number of seed pairs."""
        return len(self.seeds)


def paired_test(candidate: Mapping[int, float], reference: Mapping[int, float]) -> PairedTest:
    """Compare two settings' values of one metric, paired by seed.

    Args:
        candidate: seed → the setting's value.
        reference: seed → the reference's value.

    Returns:
        The mean paired difference and the tests' p-values.
    """
    seeds = tuple(sorted(set(candidate) & set(reference)))
    if not seeds:
        return PairedTest((), math.nan, None, None)
    a = np.array([candidate[seed] for seed in seeds], dtype=np.float64)
    b = np.array([reference[seed] for seed in seeds], dtype=np.float64)
    differences = a - b
    t_p = wilcoxon_p = None
    if len(seeds) >= 2 and np.ptp(differences) > 0:
        t_p = float(stats.ttest_rel(a, b).pvalue)
    if len(seeds) >= WILCOXON_MIN_PAIRS and np.any(differences != 0):
        with warnings.catch_warnings():  # ties and zeros make scipy fall back to the normal approximation
            warnings.simplefilter("ignore", UserWarning)
            wilcoxon_p = float(stats.wilcoxon(differences).pvalue)
    return PairedTest(seeds, float(differences.mean()), t_p, wilcoxon_p)


@dataclass(frozen=True)
class BootstrapDifference:
    """The subject bootstrap of a setting against the reference (see the module's description).

    Attributes:
        observed: mean over the seed pairs of the difference on the test set as it is.
        low: lower end of the interval of the mean difference.
        high: upper end.
        win_fraction: share of draws in which the setting beats the reference on average over the seeds.
        subjects: number of test subjects drawn from.
        pairs: number of seed pairs.
    """

    observed: float
    low: float
    high: float
    win_fraction: float
    subjects: int
    pairs: int


def bootstrap_difference(
    candidate: Sequence[SamplePredictions],
    reference: Sequence[SamplePredictions],
    metric: str,
    resamples: int,
    seed: int = 0,
) -> BootstrapDifference:
    """The paired subject bootstrap of one metric, one comparison per seed pair.

    Args:
        candidate: the setting's predictions, one per seed pair.
        reference: the reference's predictions on the same seeds, in the same order.
        metric: a metric :func:`~multimodal_fer.evaluation.subject_bootstrap.weighted_metric` knows.
        resamples: number of draws of the test subjects.
        seed: seed of the draws.

    Returns:
        The observed mean difference, its interval and the share of draws won.
    """
    return bootstrap_best_difference(candidate, [[theirs] for theirs in reference], metric, resamples, seed)


def bootstrap_best_difference(
    candidate: Sequence[SamplePredictions],
    baselines: Sequence[Sequence[SamplePredictions]],
    metric: str,
    resamples: int,
    seed: int = 0,
) -> BootstrapDifference:
    """The paired subject bootstrap of a setting against the best of several baselines, chosen again on every draw.

    Args:
        candidate: the setting's predictions, one per seed.
        baselines: for each of those seeds, the baseline settings' predictions of that seed.
        metric: a metric :func:`~multimodal_fer.evaluation.subject_bootstrap.weighted_metric` knows (higher is
            better).
        resamples: number of draws of the test subjects.
        seed: seed of the draws.

    Returns:
        The observed mean difference to the best baseline, its interval and the share of draws won.
    """
    comparisons = [(mine, list(theirs)) for mine, theirs in zip(candidate, baselines, strict=True)]
    result = paired_subject_bootstrap(comparisons, metric, resamples, seed)
    low, high = result.mean_interval(INTERVAL_LEVEL)
    return BootstrapDifference(
        float(result.observed.mean()), low, high, result.mean_win_fraction(), result.subjects, len(candidate)
    )
