"""The report's tables: one :class:`Table` holds the shown cells and the plain numbers of its CSV file.

Shown cells: a summary is ``mean ± std`` (std over at least two runs), followed by ``(n=k)`` where a metric has
fewer values than the setting has runs; p-values with three significant digits; ``–`` where there is nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from multimodal_fer.reporting.grouping import Setting
from multimodal_fer.reporting.statistics import (
    WILCOXON_MIN_PAIRS,
    BootstrapDifference,
    PairedTest,
    Summary,
    summarise,
)

#: Shown where a value does not exist.
MISSING = "–"


@dataclass
class Table:
    """A table, as shown (HTML, Markdown, LaTeX) and as plain numbers (CSV).

    Attributes:
        name: file-name part, unique in a report (``<output stem>-<name>.csv``).
        title: caption.
        columns: shown column titles.
        rows: shown cells, one list per row.
        csv_columns: CSV column titles.
        csv_rows: CSV values (numbers unrounded; None for an empty cell).
        notes: lines shown under the table.
    """

    name: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    csv_columns: list[str]
    csv_rows: list[list[object]]
    notes: list[str] = field(default_factory=list)


def show_number(value: float | None, digits: int = 3) -> str:
    """A value with ``digits`` decimals, or ``–``."""
    return MISSING if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def show_p(value: float | None) -> str:
    """A p-value with three significant digits, or ``–``."""
    return MISSING if value is None else f"{value:.3g}"


def show_summary(summary: Summary, runs: int) -> str:
    """``mean ± std``, the mean alone for one value, with ``(n=k)`` when k differs from the setting's runs."""
    if summary.n == 0:
        return MISSING
    text = show_number(summary.mean) + (f" ± {show_number(summary.std)}" if summary.n > 1 else "")
    return text + (f" (n={summary.n})" if summary.n != runs else "")


def metric_values(
    setting: Setting, values: Mapping[Path, Mapping[str, float]], metric: str
) -> list[tuple[int | None, float]]:
    """A metric's (pairing key, value) of each of the setting's runs that has a finite value of it.

    The pairing key is the run's seed, or its fold for a cross-validation's runs
    (:attr:`~multimodal_fer.reporting.records.ResultRecord.pair_key`).
    """
    found = []
    for record in setting.records:
        value = values[record.path].get(metric)
        if value is not None and math.isfinite(value):
            found.append((record.pair_key, value))
    return found


def seeded(pairs: Sequence[tuple[int | None, float]]) -> dict[int, float]:
    """The values of runs with a known seed (fold), by seed (fold), for pairing."""
    return {seed: value for seed, value in pairs if seed is not None}


def seeds_text(setting: Setting) -> str:
    """The setting's seeds, ``?`` for runs without one; a cross-validation's folds as ``folds 0-4 (seed 0)``."""
    folds = setting.folds
    if folds and all(fold is not None for fold in folds):
        seeds = ", ".join(sorted({"?" if seed is None else str(seed) for seed in setting.seeds}))
        shown = sorted(fold for fold in folds if fold is not None)
        consecutive = shown == list(range(shown[0], shown[0] + len(shown)))
        listed = f"{shown[0]}-{shown[-1]}" if consecutive and len(shown) > 2 else ", ".join(map(str, shown))
        return f"folds {listed} (seed {seeds})"
    return ", ".join("?" if seed is None else str(seed) for seed in setting.seeds)


def metric_table(
    name: str,
    title: str,
    settings: Sequence[Setting],
    values: Mapping[Path, Mapping[str, float]],
    metrics: Sequence[str],
    headers: Sequence[str] | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> Table:
    """Mean ± std over the runs of every setting for every metric, with the number of runs and their seeds.

    Args:
        name: the table's file-name part.
        title: its caption.
        settings: one row each.
        values: results file → metric → value.
        metrics: one column each.
        headers: the metrics' column titles (default: their names).
        unavailable: metric → text shown instead of ``–`` where a setting has no value of it.
    """
    headers = list(headers or metrics)
    unavailable = unavailable or {}
    rows, csv_rows = [], []
    for setting in settings:
        runs = len(setting.records)
        row = [setting.label, str(runs), seeds_text(setting)]
        csv_row: list[object] = [setting.label, runs, seeds_text(setting)]
        for metric in metrics:
            summary = summarise([value for _, value in metric_values(setting, values, metric)])
            row.append(show_summary(summary, runs) if summary.n else unavailable.get(metric, MISSING))
            csv_row += [
                summary.mean if summary.n else None,
                summary.std if summary.n > 1 else None,
                summary.n,
            ]
        rows.append(row)
        csv_rows.append(csv_row)
    csv_columns = ["setting", "runs", "seeds"] + [f"{m} {part}" for m in metrics for part in ("mean", "std", "n")]
    return Table(name, title, ["setting", "n", "seeds", *headers], rows, csv_columns, csv_rows)


def delta_table(
    name: str,
    title: str,
    reference: Setting | str,
    comparisons: Sequence[tuple[Setting, str, Summary, Summary, PairedTest, BootstrapDifference | str]],
    reference_column: str = "reference",
) -> Table:
    """Each setting against the reference: paired difference over seeds, tests and the subject bootstrap.

    Args:
        name: the table's file-name part.
        title: its caption.
        reference: the reference setting, or the note that says what the reference is (e.g. the best of several).
        comparisons: (setting, metric, its summary, the reference's summary, paired test, bootstrap result or the
            reason there is none).
        reference_column: the shown title of the reference's column (the CSV keeps ``reference mean``).
    """
    columns = [
        "setting",
        "metric",
        reference_column,
        "setting mean",
        "Δ (paired)",
        "pairs",
        "t-test p",
        "Wilcoxon p",
        "bootstrap Δ [95 % CI]",
        "draws won",
    ]
    csv_columns = [
        "setting",
        "metric",
        "reference mean",
        "setting mean",
        "paired difference",
        "pairs",
        "paired t-test p",
        "Wilcoxon p",
        "bootstrap difference",
        "bootstrap low",
        "bootstrap high",
        "bootstrap draws won",
        "bootstrap subjects",
    ]
    rows, csv_rows = [], []
    for setting, metric, mine, theirs, test, bootstrap in comparisons:
        wilcoxon = show_p(test.wilcoxon_p)
        if test.wilcoxon_p is None and 0 < test.n < WILCOXON_MIN_PAIRS:
            wilcoxon = f"n<{WILCOXON_MIN_PAIRS}"
        if isinstance(bootstrap, BootstrapDifference):
            interval = f"{bootstrap.observed:+.3f} [{bootstrap.low:+.3f}, {bootstrap.high:+.3f}]"
            won = f"{bootstrap.win_fraction:.1%}"
            numbers: list[object] = [
                bootstrap.observed,
                bootstrap.low,
                bootstrap.high,
                bootstrap.win_fraction,
                bootstrap.subjects,
            ]
        else:
            interval, won, numbers = bootstrap, MISSING, [None] * 5
        difference = MISSING if test.n == 0 else f"{test.difference:+.3f}"
        rows.append(
            [
                setting.label,
                metric,
                show_number(theirs.mean),
                show_number(mine.mean),
                difference,
                str(test.n),
                show_p(test.t_p),
                wilcoxon,
                interval,
                won,
            ]
        )
        csv_rows.append(
            [
                setting.label,
                metric,
                theirs.mean if theirs.n else None,
                mine.mean if mine.n else None,
                test.difference if test.n else None,
                test.n,
                test.t_p,
                test.wilcoxon_p,
                *numbers,
            ]
        )
    table = Table(name, title, columns, rows, csv_columns, csv_rows)
    if isinstance(reference, str):
        table.notes.append(reference)
    else:
        table.notes.append(f"Reference: {reference.label} (seeds {seeds_text(reference)}).")
    return table


def confusion_table(name: str, title: str, classes: Sequence[str], counts: np.ndarray) -> Table:
    """A confusion matrix of counts: rows the labels, columns the predictions."""
    rows = [[label, *(str(int(v)) for v in row)] for label, row in zip(classes, counts, strict=True)]
    csv_rows: list[list[object]] = [[label, *(int(v) for v in row)] for label, row in zip(classes, counts, strict=True)]
    columns = ["label \\ predicted", *classes]
    return Table(name, title, columns, rows, columns, csv_rows)
