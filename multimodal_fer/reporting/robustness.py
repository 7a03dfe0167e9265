"""The report's robustness sections: how a model's metric holds up under test-time corruptions, as a heat map.

A corrupted test of a run (condition ``test-noise-audio-0.50``, read by
:func:`~multimodal_fer.corruption_conditions.parse_condition`) is compared with the same run's clean test (condition
``test``; a corruption added to ``test-withheld-face`` is compared with ``test-withheld-face``). Each cell of the
heat map is ``metric(corrupted) / metric(clean)`` for one modality · kind (row) and strength (column), averaged
over the setting's runs that have both files; 1 means unaffected. For a metric where lower is better (RMSE), a
value above 1 is worse.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from multimodal_fer.corruption_conditions import CORRUPTIBLE_MODALITIES, CORRUPTION_KINDS, parse_condition
from multimodal_fer.reporting.document import Image, Section
from multimodal_fer.reporting.figures import robustness_figure
from multimodal_fer.reporting.grouping import ProtocolGroup, Setting
from multimodal_fer.reporting.records import ResultRecord
from multimodal_fer.reporting.tables import MISSING, Table, show_number

#: Metrics tried in order for the heat maps when none is asked for.
PREFERRED_METRICS = ("expr/f1_macro", "au/f1_mean", "va/ccc_arousal", "va/ccc_valence", "expr/accuracy")

#: A row of a heat map: (modality, kind, seed).
_Row = tuple[str, str, int]


def method_line(metric: str | None) -> str:
    """How the robustness sections are computed, for the report's method list."""
    chosen = f" ({metric})" if metric else ""
    return (
        f"Robustness: each test-time corruption's metric{chosen} divided by the same run's clean test, averaged over "
        "the setting's runs with both; rows modality · kind, columns strength (docs/runs.md, 'Test-time "
        "corruptions'). 1 = unaffected; for RMSE a value above 1 is worse."
    )


def robustness_metric(requested: Sequence[str], available: set[str]) -> str | None:
    """The metric of the heat maps: the first one asked for, else the first of :data:`PREFERRED_METRICS` there."""
    if requested:
        return requested[0]
    return next((name for name in PREFERRED_METRICS if name in available), None)


def _row_label(row: _Row) -> str:
    modality, kind, seed = row
    return f"{modality} · {kind}" + (f" (seed {seed})" if seed else "")


def _row_order(row: _Row) -> tuple[int, int, int]:
    modality, kind, seed = row
    return CORRUPTIBLE_MODALITIES.index(modality), CORRUPTION_KINDS.index(kind), seed


def _ratios(
    setting: Setting,
    corrupted: Mapping[Path, list[ResultRecord]],
    values: Mapping[Path, Mapping[str, float]],
    metric: str,
) -> tuple[dict[tuple[_Row, float], list[float]], list[float]]:
    """Per (row, strength), the ratios of the setting's runs; and the runs' clean values."""
    ratios: dict[tuple[_Row, float], list[float]] = {}
    clean_values = []
    for clean in setting.records:
        reference = values[clean.path].get(metric)
        if reference is None or not math.isfinite(reference):
            continue
        clean_values.append(reference)
        for record in corrupted.get(clean.path, []):
            parsed = parse_condition(record.condition)
            assert parsed is not None
            value = values[record.path].get(metric)
            if value is None or not math.isfinite(value) or reference == 0:
                continue
            key = ((parsed.modality, parsed.kind, parsed.seed), parsed.strength)
            ratios.setdefault(key, []).append(value / reference)
    return ratios, clean_values


def robustness_sections(
    groups: Sequence[ProtocolGroup],
    values: Mapping[Path, Mapping[str, float]],
    metric: str | None,
    names: Callable[[str], str],
) -> list[Section]:
    """One section per clean protocol group whose runs have corrupted tests: a heat map and table per setting.

    Args:
        groups: every protocol group of the report.
        values: metrics of every results file (stored, or recomputed from predictions).
        metric: the metric compared (None: no section).
        names: gives unique table names.

    Returns:
        The sections, in group order (none where no run has a corrupted test).
    """
    if metric is None:
        return []
    by_clean: dict[tuple[Path, str], list[ResultRecord]] = {}
    for group in groups:
        parsed = parse_condition(group.condition)
        if parsed is None:
            continue
        for record in group.records:
            by_clean.setdefault((record.run_folder, parsed.clean), []).append(record)
    sections = []
    for group in groups:
        if parse_condition(group.condition) is not None:
            continue
        corrupted = {
            record.path: by_clean[(record.run_folder, group.condition)]
            for record in group.records
            if (record.run_folder, group.condition) in by_clean
        }
        if not corrupted:
            continue
        section = Section(f"Robustness · {group.title}")
        section.details.append(
            f"{metric} under test-time corruptions divided by the same run's {group.condition!r} result; "
            "1 = unaffected."
        )
        for setting in group.settings:
            ratios, clean_values = _ratios(setting, corrupted, values, metric)
            if not ratios:
                continue
            rows = sorted({row for row, _ in ratios}, key=_row_order)
            strengths = sorted({strength for _, strength in ratios})
            grid = np.full((len(rows), len(strengths)), np.nan)
            counts = np.zeros(grid.shape, dtype=int)
            for (row, strength), found in ratios.items():
                grid[rows.index(row), strengths.index(strength)] = float(np.mean(found))
                counts[rows.index(row), strengths.index(strength)] = len(found)
            columns = [f"{strength:.2f}" for strength in strengths]
            title = f"{group.title}: {setting.label}: {metric}, corrupted / clean"
            table = Table(
                name=names(f"robustness {group.dataset} {group.condition} {setting.label}"),
                title=title,
                columns=["modality · kind", *columns],
                rows=[
                    [_row_label(row)] + [show_number(value) if np.isfinite(value) else MISSING for value in grid[i]]
                    for i, row in enumerate(rows)
                ],
                csv_columns=[
                    "modality",
                    "kind",
                    "seed",
                    *(f"{c} ratio" for c in columns),
                    *(f"{c} n" for c in columns),
                ],
                csv_rows=[
                    [*row, *(float(v) if np.isfinite(v) else None for v in grid[i]), *counts[i].tolist()]
                    for i, row in enumerate(rows)
                ],
                notes=[
                    f"Clean {metric}: {np.mean(clean_values):.3f} (mean of {len(clean_values)} run(s)); "
                    f"each cell averages the ratios of up to {len(setting.records)} run(s) (CSV: n)."
                ],
            )
            section.tables.append(table)
            section.images.append(Image(title, robustness_figure(grid, [_row_label(r) for r in rows], columns, title)))
        if section.tables:
            sections.append(section)
    return sections
