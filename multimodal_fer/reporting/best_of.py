"""Each setting against the best of several baseline settings (``mfer report --best-of``): the strict rule.

"Does fusion beat the best single modality?" compares a fused setting not with one reference but with the best of
the single-modality settings. The best baseline is chosen per seed and per metric by the very figure compared
(the strictest baseline: it gets the benefit of a choice made on test data), and in the subject bootstrap it is
chosen again on every draw of the test subjects
(:func:`~multimodal_fer.evaluation.subject_bootstrap.paired_subject_bootstrap`). With one baseline setting this is
the comparison with ``--reference``.

Only seeds that the candidate and every baseline setting have count, so the best is always taken over the same
baselines. For RMSE and losses the best is the lowest; the subject bootstrap covers the metrics that module knows
(expression macro-F1, AU mean F1, CCC), all higher-is-better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from multimodal_fer.reporting.errors import ReportError
from multimodal_fer.reporting.grouping import ProtocolGroup, Setting, matches_reference
from multimodal_fer.reporting.prediction_scores import LoadedPredictions
from multimodal_fer.reporting.records import ResultRecord
from multimodal_fer.reporting.statistics import (
    BootstrapDifference,
    PairedTest,
    Summary,
    bootstrap_best_difference,
    paired_test,
    summarise,
)
from multimodal_fer.reporting.tables import metric_values, seeded

#: Parts of a metric's last name component that mark lower values as better.
LOWER_IS_BETTER = ("rmse", "loss")
_NOT_AVAILABLE = "not available"


def lower_is_better(metric: str) -> bool:
    """Whether lower values of a metric are better (``va/rmse_arousal``, ``loss``)."""
    return any(part in metric.rsplit("/", 1)[-1] for part in LOWER_IS_BETTER)


def find_baselines(groups: Sequence[ProtocolGroup], selector: Sequence[str]) -> dict[int, list[Setting]]:
    """The baseline settings of every group that has some (group position → settings, in group order).

    Every setting that ``selector`` matches is a baseline (see
    :func:`~multimodal_fer.reporting.grouping.matches_reference`): a suite's name selects all of its settings.

    Raises:
        ReportError: the selector matches no setting of any group.
    """
    if not selector:
        return {}
    chosen = {}
    for position, group in enumerate(groups):
        found = [setting for setting in group.settings if matches_reference(setting, selector)]
        if found:
            chosen[position] = found
    if not chosen:
        labels = sorted({setting.label for group in groups for setting in group.settings})
        raise ReportError(f"--best-of {' '.join(selector)} matches no setting. The settings are: {'; '.join(labels)}.")
    return chosen


@dataclass(frozen=True)
class BestOfComparison:
    """One setting against the best baseline on one metric.

    Attributes:
        setting: the candidate setting.
        metric: the metric compared.
        candidate: the candidate's values over the compared seeds.
        best: the best baseline's values over those seeds (chosen per seed).
        test: the paired test of candidate minus best baseline across the seeds.
        bootstrap: the subject bootstrap, or why there is none.
        best_by_seed: seed → label of the baseline that was best on the test set as it is.
    """

    setting: Setting
    metric: str
    candidate: Summary
    best: Summary
    test: PairedTest
    bootstrap: BootstrapDifference | str
    best_by_seed: dict[int, str]

    def as_row(self) -> tuple[Setting, str, Summary, Summary, PairedTest, BootstrapDifference | str]:
        """The comparison as a row of :func:`~multimodal_fer.reporting.tables.delta_table`."""
        return self.setting, self.metric, self.candidate, self.best, self.test, self.bootstrap


def compare_with_best(
    setting: Setting,
    baselines: Sequence[Setting],
    metric: str,
    values: Mapping[Path, Mapping[str, float]],
    predictions: Mapping[Path, LoadedPredictions | None],
    bootstrappable: Sequence[str],
    resamples: int,
) -> BestOfComparison | None:
    """The setting minus the best of the baselines on one metric; None where no seed has them all.

    Args:
        setting: the candidate.
        baselines: the baseline settings of its group.
        metric: the metric compared.
        values: results file → its metrics.
        predictions: results file → its loaded predictions (None where it has none).
        bootstrappable: the metrics the subject bootstrap knows for this group's label space.
        resamples: draws of the test subjects.
    """
    mine = seeded(metric_values(setting, values, metric))
    theirs = [seeded(metric_values(baseline, values, metric)) for baseline in baselines]
    seeds = sorted(set(mine).intersection(*theirs))
    if not seeds:
        return None
    pick = min if lower_is_better(metric) else max
    best_position = {seed: pick(range(len(baselines)), key=lambda i, s=seed: theirs[i][s]) for seed in seeds}
    best = {seed: theirs[best_position[seed]][seed] for seed in seeds}
    test = paired_test({seed: mine[seed] for seed in seeds}, best)
    bootstrap = _bootstrap(setting, baselines, seeds, metric, predictions, bootstrappable, resamples)
    chosen = {seed: baselines[best_position[seed]].label for seed in seeds}
    return BestOfComparison(
        setting, metric, summarise([mine[s] for s in seeds]), summarise(list(best.values())), test, bootstrap, chosen
    )


def _bootstrap(
    setting: Setting,
    baselines: Sequence[Setting],
    seeds: Sequence[int],
    metric: str,
    predictions: Mapping[Path, LoadedPredictions | None],
    bootstrappable: Sequence[str],
    resamples: int,
) -> BootstrapDifference | str:
    """The subject bootstrap over the seeds, the best baseline chosen on every draw, or why there is none."""
    if metric not in bootstrappable:
        return "–"
    candidates, baseline_sets = [], []
    for seed in seeds:
        runs = [_run_of(member, seed) for member in (setting, *baselines)]
        loaded = [predictions.get(run.path) for run in runs]
        if any(item is None for item in loaded):
            return f"{_NOT_AVAILABLE} (predictions missing)"
        if not all(item.has_subjects for item in loaded if item is not None):
            return f"{_NOT_AVAILABLE} (predictions without subjects)"
        models = [item.predictions for item in loaded if item is not None]
        candidates.append(models[0])
        baseline_sets.append(models[1:])
    try:
        return bootstrap_best_difference(candidates, baseline_sets, metric, resamples)
    except ValueError as error:  # e.g. predictions without the task's outputs, or of other test samples
        return f"{_NOT_AVAILABLE} ({error})"


def _run_of(setting: Setting, seed: int) -> ResultRecord:
    return next(record for record in setting.records if record.pair_key == seed)


def best_of_note(baselines: Sequence[Setting], comparisons: Sequence[BestOfComparison]) -> list[str]:
    """The table's notes: which settings the baseline is the best of, and which one was best per seed and metric."""
    names = "; ".join(setting.label for setting in baselines)
    notes = [
        f"Best baseline: per seed and metric the best of {len(baselines)} setting(s) ({names}) by the figure "
        "compared (the strict rule); in the bootstrap chosen again on every draw of the test subjects."
    ]
    shown: set[str] = set()
    for comparison in comparisons:
        if comparison.metric in shown:
            continue
        shown.add(comparison.metric)
        chosen = ", ".join(f"seed {seed}: {label}" for seed, label in sorted(comparison.best_by_seed.items()))
        notes.append(f"Best baseline of {comparison.metric} ({_direction(comparison.metric)}): {chosen}.")
    return notes


def _direction(metric: str) -> str:
    return "lowest" if lower_is_better(metric) else "highest"
