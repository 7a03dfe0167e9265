"""Build a :class:`~multimodal_fer.reporting.document.Report` from results files: ``mfer report``'s work.

For every results file the metrics are recomputed from its predictions file where it has one
(:mod:`multimodal_fer.reporting.prediction_scores`, with the run's validation predictions for tuned AU
thresholds) and taken from the file's stored metrics otherwise. Results are grouped by protocol group and
setting (:mod:`multimodal_fer.reporting.grouping`); each group gets a summary table (mean ± std over seeds),
with a reference the differences and their tests (:mod:`multimodal_fer.reporting.statistics`), and from
predictions per-class and per-AU F1 and confusion matrices. Runs tested under test-time corruptions get a
robustness section (:mod:`multimodal_fer.reporting.robustness`): a heat map of the metric relative to the clean test.
The sections' other figures (setting bars, missing-modality and per-AU heat maps, affect density) come from
:mod:`multimodal_fer.reporting.figure_sections`, restoration grids from
:mod:`multimodal_fer.reporting.restoration_examples`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from multimodal_fer.evaluation.subject_bootstrap import metric_names
from multimodal_fer.metrics.abaw import abaw_scores
from multimodal_fer.reporting.best_of import best_of_note, compare_with_best, find_baselines
from multimodal_fer.reporting.document import Image, Report, Section
from multimodal_fer.reporting.errors import ReportError
from multimodal_fer.reporting.figure_sections import (
    au_heat_map_image,
    missing_modality_images,
    setting_bar_images,
    va_density_images,
)
from multimodal_fer.reporting.figures import confusion_figure
from multimodal_fer.reporting.grouping import ProtocolGroup, Setting, find_reference, group_records
from multimodal_fer.reporting.pooled_folds import pooled_table
from multimodal_fer.reporting.prediction_scores import LoadedPredictions, load_predictions, score_predictions
from multimodal_fer.reporting.records import ResultRecord, load_records
from multimodal_fer.reporting.restoration_examples import RestorationExamples
from multimodal_fer.reporting.robustness import method_line, robustness_metric, robustness_sections
from multimodal_fer.reporting.statistics import (
    INTERVAL_LEVEL,
    WILCOXON_MIN_PAIRS,
    BootstrapDifference,
    bootstrap_difference,
    paired_test,
    summarise,
)
from multimodal_fer.reporting.tables import Table, confusion_table, delta_table, metric_table, metric_values, seeded
from multimodal_fer.types import LabelSpace

#: Draws of the test subjects in the subject bootstrap.
DEFAULT_RESAMPLES = 2000
#: Largest difference allowed between a stored metric and the same metric recomputed from the predictions.
STORED_TOLERANCE = 1e-4
#: Affect dimensions in table order.
_DIMENSIONS = ("valence", "arousal", "dominance")
_NOT_AVAILABLE = "not available"
_WHERE_PREDICTIONS = "run `mfer test ... --results.predictions=true` to write predictions files"
_WHERE_VALIDATION = (
    "tuning needs the same run's predictions on its validation split, a results file of condition 'val' "
    "(results-val.json) with its predictions file in the run folder; thresholds are never tuned on test data"
)


@dataclass(frozen=True)
class RunScores:
    """What one results file gives the report.

    Attributes:
        values: metric → value: the stored metrics, replaced and extended by those recomputed from predictions.
        predictions: the predictions file's contents, or None.
        confusion: (C, C) expression confusion counts from the predictions, or None.
    """

    values: dict[str, float]
    predictions: LoadedPredictions | None
    confusion: np.ndarray | None


def method_lines(resamples: int, best_of: bool = False) -> list[str]:
    """How the report's figures are computed, as shown at its top (with the ``--best-of`` rule when used)."""
    lines = [
        "Metrics are recomputed from each run's per-sample predictions file where it has one (accuracy, macro-F1, "
        "per-class F1 and confusion matrix; AU F1 at threshold 0.5; CCC, Pearson r, RMSE and sign agreement (SAGR) "
        "per affect dimension) and taken from its results file otherwise (restoration PSNR/SSIM always).",
        "AU F1 with tuned thresholds: one threshold per AU (0.05 to 0.95 in steps of 0.05, the best F1 on the "
        "same run's validation predictions; ties nearest 0.5), applied to the test predictions.",
        "Rows are settings: runs that differ only in their seed. Cells: mean ± sample standard deviation over the "
        "runs; n is the number of runs, '(n=k)' marks a metric that only k of them have.",
        "Δ (paired): mean over the seeds both share of the setting minus the reference. t-test p: two-sided paired "
        f"t-test over those seeds (scipy.stats.ttest_rel). Wilcoxon p: two-sided Wilcoxon signed-rank test "
        f"(scipy.stats.wilcoxon), from {WILCOXON_MIN_PAIRS} seed pairs on.",
        f"Bootstrap: the test subjects drawn again with replacement {resamples} times, both models scored on the "
        f"same draws, the difference averaged over the seed pairs; {INTERVAL_LEVEL:.0%} percentile interval and "
        "the share of draws the setting wins (multimodal_fer.evaluation.subject_bootstrap; expression macro-F1, AU "
        "mean F1 and CCC only).",
    ]
    if best_of:
        lines.append(
            "Against the best baseline (--best-of): every other setting minus the best of the baseline settings, "
            "chosen per seed and metric by the figure compared (lowest for RMSE and losses), over the seeds that "
            "the setting and every baseline have; in the subject bootstrap the best baseline is chosen again on "
            "every draw."
        )
    return lines


def _score_records(records: Sequence[ResultRecord], notes: list[str]) -> dict[Path, RunScores]:
    """Every results file's metrics: stored, and recomputed from its predictions where it has them."""
    loaded: dict[Path, LoadedPredictions] = {
        record.path: load_predictions(record.predictions_path) for record in records if record.predictions_path
    }
    validation = {record.run_folder: record for record in records if record.is_validation and record.path in loaded}
    scored = {}
    for record in records:
        values = dict(record.metrics)
        predictions = loaded.get(record.path)
        confusion = None
        if predictions is not None:
            tuning = validation.get(record.run_folder) if not record.is_validation else None
            tuning_predictions = loaded[tuning.path].predictions if tuning is not None else None
            if tuning_predictions is not None and tuning_predictions.label_space != predictions.predictions.label_space:
                notes.append(f"{tuning.path} has another label space than {record.path}; its thresholds are not used.")
                tuning_predictions = None
            scores = score_predictions(predictions.predictions, tuning_predictions)
            for name, value in scores.metrics.items():
                stored = record.metrics.get(name)
                if stored is not None and math.isfinite(value) and abs(stored - value) > STORED_TOLERANCE:
                    notes.append(
                        f"{record.path}: {name} is {stored:.5f} in the results file but {value:.5f} from its "
                        f"predictions file; the report uses the predictions."
                    )
            values.update(scores.metrics)
            confusion = scores.confusion
        else:
            values.update(abaw_scores(values))  # from the stored metrics (no flattened AU accuracy: no abaw1/au)
        scored[record.path] = RunScores(values, predictions, confusion)
    return scored


def _tuned_names(names: set[str]) -> set[str]:
    """The tuned AU metric names that go with the AU metrics among ``names``."""
    per_au = {f"{name}_tuned" for name in names if re.fullmatch(r"au/f1_au\d+", name)}
    return per_au | ({"au/f1_mean_tuned"} if per_au or "au/f1_mean" in names else set())


def _requested_metrics(requested: Sequence[str], known: set[str]) -> list[str]:
    """The metrics asked for, without a ``test/`` prefix; refuses names no results file has."""
    names = [name.removeprefix("test/") for item in requested for name in item.split(",") if name]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ReportError(f"Unknown metric(s) {', '.join(unknown)}; the results give: {', '.join(sorted(known))}.")
    return list(dict.fromkeys(names))


def default_metrics(available: set[str]) -> list[str]:
    """The summary metrics shown when none are asked for: the headline figure of every task present."""
    ordered = ["expr/accuracy", "expr/f1_macro", "au/f1_mean", "au/f1_mean_tuned"]
    ordered += [f"va/{kind}_{dim}" for kind in ("ccc", "pcc", "rmse", "sagr") for dim in _DIMENSIONS]
    ordered += ["abaw/va", "abaw/mtl"]  # abaw/expr and abaw/au equal expr/f1_macro and au/f1_mean (shown above)
    ordered += sorted(name for name in available if name.startswith("restoration/")) + ["mask/iou"]
    return [name for name in ordered if name in available]


#: Longest table name (it names a CSV file): longer slugs keep their start and a digest of the whole text.
_MAX_SLUG = 100


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "table"
    if len(slug) <= _MAX_SLUG:
        return slug
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
    return f"{slug[: _MAX_SLUG - 11].rstrip('-')}-{digest}"


class _Names:
    """Unique table names within one report."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, text: str) -> str:
        base = name = _slug(text)
        count = 1
        while name in self.used:
            count += 1
            name = f"{base}-{count}"
        self.used.add(name)
        return name


def _scored_samples_line(
    group: ProtocolGroup, with_predictions: Sequence[ResultRecord], scored: Mapping[Path, RunScores]
) -> str:
    """How many test samples (and subjects) the group's predictions score: one test set, or one per fold.

    Every run of a group scores the same samples (per fold in a cross-validation: :func:`_check_same_samples`), so
    the first run with predictions speaks for its fold.
    """
    per_fold: dict[int | None, LoadedPredictions] = {}
    for record in with_predictions:
        loaded = scored[record.path].predictions
        assert loaded is not None
        per_fold.setdefault(record.fold if group.is_crossval else None, loaded)
    counts = [len(loaded.predictions.index) for loaded in per_fold.values()]
    subjects = "of ? subjects"
    if all(loaded.has_subjects for loaded in per_fold.values()):
        unique = len(np.unique(np.concatenate([loaded.predictions.subject for loaded in per_fold.values()])))
        subjects = f"of {unique} subjects"
        if unique == sum(counts) > 1:  # RAF-DB, AffectNet, FER2013: every image is its own subject
            subjects += " (one sample each, as where a data set names no subjects: the bootstrap draws single samples)"
    if len(per_fold) == 1:
        return f"Scored samples: {counts[0]}, {subjects}."
    listed = ", ".join(f"fold {fold} {count}" for fold, count in zip(per_fold, counts, strict=True))
    return f"Scored samples per fold: {listed} ({sum(counts)} in all), {subjects}."


def _check_same_samples(group: ProtocolGroup, scored: Mapping[Path, RunScores]) -> None:
    """Refuse a group whose predictions files hold different test samples (per fold in a cross-validation)."""
    firsts: dict[int | None, tuple[ResultRecord, LoadedPredictions]] = {}
    for record in group.records:
        loaded = scored[record.path].predictions
        if loaded is None:
            continue
        first = firsts.get(record.fold)
        if first is None:
            firsts[record.fold] = (record, loaded)
            continue
        same = np.array_equal(first[1].predictions.index, loaded.predictions.index)
        if same and first[1].has_subjects and loaded.has_subjects:
            same = np.array_equal(first[1].predictions.subject, loaded.predictions.subject)
        if not same:
            raise ReportError(
                f"Refusing to compare {record.path} and {first[0].path} on {group.title}: their predictions files "
                f"hold different test samples ({len(loaded.predictions.index)} vs {len(first[1].predictions.index)}"
                "); test every model on the same cache and split."
            )


def _bootstrap(
    setting: Setting,
    reference: Setting,
    seeds: Sequence[int],
    metric: str,
    scored: Mapping[Path, RunScores],
    bootstrappable: Sequence[str],
    resamples: int,
) -> BootstrapDifference | str:
    """The subject bootstrap of one metric over the seed pairs, or why there is none."""
    if metric not in bootstrappable or not seeds:
        return "–"
    pairs = []
    for seed in seeds:
        mine = next(record for record in setting.records if record.pair_key == seed)
        theirs = next(record for record in reference.records if record.pair_key == seed)
        loaded = (scored[mine.path].predictions, scored[theirs.path].predictions)
        if loaded[0] is None or loaded[1] is None:
            return f"{_NOT_AVAILABLE} (predictions missing)"
        if not (loaded[0].has_subjects and loaded[1].has_subjects):
            return f"{_NOT_AVAILABLE} (predictions without subjects)"
        pairs.append((loaded[0].predictions, loaded[1].predictions))
    try:
        return bootstrap_difference([p[0] for p in pairs], [p[1] for p in pairs], metric, resamples)
    except ValueError as error:  # e.g. predictions without the task's outputs
        return f"{_NOT_AVAILABLE} ({error})"


def _delta_table(
    name: str,
    group: ProtocolGroup,
    reference: Setting,
    metrics: Sequence[str],
    scored: Mapping[Path, RunScores],
    resamples: int,
) -> Table | None:
    """Every other setting against the reference, for the metrics both have; None when there is none."""
    values = {path: run.values for path, run in scored.items()}
    space = LabelSpace.from_dict(group.records[0].label_space) if group.records[0].label_space else LabelSpace()
    bootstrappable = metric_names(space)
    comparisons = []
    for setting in group.settings:
        if setting is reference:
            continue
        for metric in metrics:
            mine, theirs = metric_values(setting, values, metric), metric_values(reference, values, metric)
            if not mine or not theirs:
                continue
            test = paired_test(seeded(mine), seeded(theirs))
            bootstrap = _bootstrap(setting, reference, test.seeds, metric, scored, bootstrappable, resamples)
            summaries = summarise([v for _, v in mine]), summarise([v for _, v in theirs])
            comparisons.append((setting, metric, *summaries, test, bootstrap))
    if not comparisons:
        return None
    return delta_table(name, f"{group.title}: against the reference", reference, comparisons)


def _best_of_table(
    name: str,
    group: ProtocolGroup,
    baselines: Sequence[Setting],
    metrics: Sequence[str],
    scored: Mapping[Path, RunScores],
    resamples: int,
) -> Table | None:
    """Every setting that is no baseline against the best of the baselines; None when none shares a seed with them."""
    values = {path: run.values for path, run in scored.items()}
    predictions = {path: run.predictions for path, run in scored.items()}
    space = LabelSpace.from_dict(group.records[0].label_space) if group.records[0].label_space else LabelSpace()
    bootstrappable = metric_names(space)
    comparisons = [
        comparison
        for setting in group.settings
        if not any(setting is baseline for baseline in baselines)
        for metric in metrics
        if (comparison := compare_with_best(setting, baselines, metric, values, predictions, bootstrappable, resamples))
    ]
    if not comparisons:
        return None
    title = f"{group.title}: against the best baseline"
    notes = best_of_note(baselines, comparisons)
    table = delta_table(name, title, notes[0], [c.as_row() for c in comparisons], reference_column="best baseline")
    table.notes += notes[1:]
    return table


def _section(
    group: ProtocolGroup,
    reference: Setting | None,
    requested: Sequence[str],
    scored: Mapping[Path, RunScores],
    names: _Names,
    resamples: int,
    reference_given: bool,
    restoration: tuple[list[Image], list[str]],
    baselines: Sequence[Setting] = (),
    best_of_given: bool = False,
) -> Section:
    _check_same_samples(group, scored)
    values = {record.path: scored[record.path].values for record in group.records}
    available = {name for record in group.records for name in values[record.path]}
    with_predictions = [r for r in group.records if scored[r.path].predictions is not None]
    validation_group = group.records[0].is_validation
    if not validation_group:
        available |= _tuned_names(available)
    metrics = list(requested) or default_metrics(available)
    stem = f"{group.dataset} {group.condition}"
    section = Section(group.title)
    fingerprint = (group.cache_fingerprint or "none")[:12]
    section.details.append(
        f"Cache {fingerprint}; {len(group.records)} results file(s) in {len(group.settings)} setting(s); "
        f"{len(with_predictions)} with predictions."
    )
    if with_predictions:
        section.details.append(_scored_samples_line(group, with_predictions, scored))
    unavailable = {name: _NOT_AVAILABLE for name in available if name.endswith("_tuned")}
    if group.is_crossval:
        section.details.append(
            "Cross-validation: each setting's runs are its folds; rows are mean ± std over folds, and settings are "
            "paired by fold."
        )
    section.tables.append(
        metric_table(
            names(f"{stem} summary"), f"{group.title}: summary", group.settings, values, metrics, None, unavailable
        )
    )
    section.lead_images += setting_bar_images(group, values)
    pooled = pooled_table(names(f"{stem} pooled"), group, metrics)
    if pooled is not None:
        section.tables.append(pooled)
    deltas = _delta_table(names(f"{stem} deltas"), group, reference, metrics, scored, resamples) if reference else None
    if deltas is not None:
        section.tables.append(deltas)
    elif reference is not None:
        alone = len(group.settings) == 1
        section.notes.append(
            "The reference is this group's only setting: no differences shown."
            if alone
            else "No other setting shares a metric with the reference here: no differences shown."
        )
    elif reference_given:
        section.notes.append("The reference matches no setting of this group: no differences shown.")
    best = _best_of_table(names(f"{stem} best of"), group, baselines, metrics, scored, resamples) if baselines else None
    if best is not None:
        section.tables.append(best)
    elif baselines:
        section.notes.append(
            "No other setting shares a seed and a metric with every baseline here: no comparison with the best shown."
        )
    elif best_of_given:
        section.notes.append("--best-of matches no setting of this group: no comparison with the best shown.")
    space = LabelSpace.from_dict(group.records[0].label_space) if group.records[0].label_space else None
    # The tasks the data set labels: a combined run's model has the union's heads, but DISFA's member has no
    # expressions to tabulate (and no note that its predictions are missing).
    labelled = group.records[0].scored_labels or {}
    if space is not None:
        predictions = {record.path: scored[record.path].predictions for record in group.records}
        section.images += va_density_images(group, space, predictions, values, reference)
        au_image = au_heat_map_image(group, space, values) if labelled.get("action_units") else None
        section.images += [au_image] if au_image is not None else []
    section.images += restoration[0]
    section.notes += restoration[1]
    if space is not None and space.num_expressions and labelled.get("expressions"):
        _expression_tables(section, group, space, scored, values, names, stem)
    if space is not None and space.num_action_units and labelled.get("action_units"):
        _action_unit_tables(section, group, space, values, names, stem, validation_group)
    return section


def _expression_tables(
    section: Section,
    group: ProtocolGroup,
    space: LabelSpace,
    scored: Mapping[Path, RunScores],
    values: Mapping[Path, Mapping[str, float]],
    names: _Names,
    stem: str,
) -> None:
    per_class = [f"expr/f1_{name}" for name in space.expressions]
    if not any(per_class[0] in values[record.path] for record in group.records):
        section.notes.append(
            f"Per-class F1 and confusion matrices: {_NOT_AVAILABLE} (no predictions; {_WHERE_PREDICTIONS})."
        )
        return
    title = f"{group.title}: expression F1 per class (runs with predictions)"
    section.tables.append(
        metric_table(names(f"{stem} per class f1"), title, group.settings, values, per_class, space.expressions)
    )
    for setting in group.settings:
        matrices = [scored[r.path].confusion for r in setting.records if scored[r.path].confusion is not None]
        if not matrices:
            continue
        counts = np.sum(matrices, axis=0)
        title = f"{group.title}: confusion of {setting.label} (counts summed over {len(matrices)} run(s))"
        section.tables.append(
            confusion_table(names(f"{stem} confusion {setting.label}"), title, space.expressions, counts)
        )
        share_title = f"{setting.label}: share of each label's samples ({len(matrices)} run(s))"
        image = confusion_figure(counts, space.expressions, setting.label)
        section.images.append(Image(share_title, image))


def _action_unit_tables(
    section: Section,
    group: ProtocolGroup,
    space: LabelSpace,
    values: Mapping[Path, Mapping[str, float]],
    names: _Names,
    stem: str,
    validation_group: bool,
) -> None:
    per_au = [f"au/f1_au{number}" for number in space.action_units]
    headers = [f"AU{number}" for number in space.action_units]
    if any(name in values[record.path] for record in group.records for name in per_au):
        title = f"{group.title}: AU F1 at threshold 0.5"
        section.tables.append(metric_table(names(f"{stem} per au f1"), title, group.settings, values, per_au, headers))
    if validation_group:
        return
    tuned = [f"{name}_tuned" for name in per_au]
    runs = [record for record in group.records if "au/f1_mean_tuned" in values[record.path]]
    if runs:
        title = f"{group.title}: AU F1 with thresholds tuned on validation"
        section.tables.append(
            metric_table(names(f"{stem} per au f1 tuned"), title, group.settings, values, tuned, headers)
        )
    if len(runs) < len(group.records):
        missing = len(group.records) - len(runs)
        section.notes.append(
            f"AU F1 with thresholds tuned on validation: {_NOT_AVAILABLE} for {missing} of {len(group.records)} "
            f"run(s) ({_WHERE_VALIDATION})."
        )


def _restoration_examples(
    groups: Sequence[ProtocolGroup], scored: Mapping[Path, RunScores]
) -> list[tuple[list[Image], list[str]]]:
    """Each group's restoration grids and notes; a run's grid goes to its plain test section where it has one."""
    examples = RestorationExamples()
    found: dict[int, tuple[list[Image], list[str]]] = {}
    order = sorted(
        range(len(groups)), key=lambda i: (groups[i].condition != "test", groups[i].records[0].is_validation)
    )
    for position in order:
        group = groups[position]
        restoration = any(name.startswith("restoration/") for r in group.records for name in scored[r.path].values)
        found[position] = examples(group, restoration)
    return [found[position] for position in range(len(groups))]


def build_report(
    folders: Sequence[str | Path],
    reference: Sequence[str] = (),
    metrics: Sequence[str] = (),
    resamples: int = DEFAULT_RESAMPLES,
    title: str = "multimodal-fer results report",
    best_of: Sequence[str] = (),
) -> Report:
    """Read every results file under the folders and build the report.

    Args:
        folders: run, experiment or suite folders (searched recursively) or results files.
        reference: ``key=value`` pairs or a setting's label or run name; each group's matching setting is
            compared with every other (see :func:`~multimodal_fer.reporting.grouping.matches_reference`).
        metrics: the metrics of the summary and difference tables (default: :func:`default_metrics`).
        resamples: draws of the test subjects in the subject bootstrap.
        title: the report's title.
        best_of: ``key=value`` pairs or names that select the baseline settings (a suite's name selects all of its
            settings); every other setting of a group is compared with the best of them
            (:mod:`multimodal_fer.reporting.best_of`).

    Returns:
        The report.

    Raises:
        ReportError: no results, test sets that differ within a group, unknown metrics, a reference that matches
            nothing or several settings of one group, a ``best_of`` that matches nothing.
    """
    if resamples < 1:
        raise ReportError(f"--resamples must be at least 1, got {resamples}.")
    records = load_records(folders)
    notes = [note for record in records for note in record.notes]
    scored = _score_records(records, notes)
    known = {name for run in scored.values() for name in run.values}
    known |= _tuned_names(known)
    requested = _requested_metrics(metrics, known)
    groups = group_records(records)
    references = find_reference(groups, reference)
    baselines = find_baselines(groups, best_of)
    names = _Names()
    restoration = _restoration_examples(groups, scored)
    sections = [
        _section(
            group,
            references.get(position),
            requested,
            scored,
            names,
            resamples,
            bool(reference),
            restoration[position],
            baselines.get(position, ()),
            bool(best_of),
        )
        for position, group in enumerate(groups)
    ]
    values = {path: run.values for path, run in scored.items()}
    for position, images in missing_modality_images(groups, values).items():
        sections[position].lead_images += images
    metric = robustness_metric(requested, known)
    robustness = robustness_sections(groups, values, metric, names)
    return Report(
        title=title,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        inputs=[str(folder) for folder in folders],
        method=method_lines(resamples, bool(best_of)) + ([method_line(metric)] if robustness else []),
        sections=sections + robustness,
        notes=notes,
    )
