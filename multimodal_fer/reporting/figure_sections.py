"""The figures of a report's sections, from the same numbers as its tables.

* **Setting bars**: per protocol group and headline metric (:data:`HEADLINE_METRICS`), every setting's mean ± std
  over its runs (:func:`~multimodal_fer.reporting.statistics.summarise` of
  :func:`~multimodal_fer.reporting.tables.metric_values`, exactly the summary table's cells), sorted by the mean;
  in a modality suite these are the modality-subset bars.
* **Missing modalities**: for a plain ``test`` group whose runs were also tested with modalities withheld
  (conditions ``test-withheld-<m>[-<m>...]``), a heat map per headline metric: rows the settings, columns
  "none" (the summary's mean) and each withheld set (the mean over the setting's runs with that test; "–" where
  the setting's model lacks the modality, so the suite did not test it).
* **AU F1 per AU**: a heat map, rows the settings, columns the AUs, cells the mean of the per-AU table at threshold
  0.5. A heat map rather than grouped bars: 15 settings × 16 AUs are 240 bars, unreadable as bars but one
  glance as a grid, where a weak AU shows as a pale column and a weak setting as a pale row.
* **Affect density**: predicted against true per affect dimension, pooled over a setting's runs with predictions,
  for the reference setting (when one is given) and the best setting by mean CCC over the dimensions only. One
  panel pair per setting would be 15 pairs in a modality suite, each too small to read; the bars already compare
  every setting's CCC, and the density plot is there to see *how* the chosen model errs (shrinkage towards 0,
  clipping, a bias).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from multimodal_fer.reporting.document import Image
from multimodal_fer.reporting.figures import heat_map_figure, setting_bars_figure
from multimodal_fer.reporting.grouping import ProtocolGroup, Setting
from multimodal_fer.reporting.prediction_scores import LoadedPredictions
from multimodal_fer.reporting.statistics import Summary, summarise
from multimodal_fer.reporting.tables import metric_values, show_number
from multimodal_fer.types import MODALITIES, LabelSpace

#: The metrics that get setting bars and missing-modality heat maps, where the results have them.
HEADLINE_METRICS = ("expr/f1_macro", "au/f1_mean", "va/ccc_arousal", "va/ccc_valence")
#: The plain test condition, against which withheld-modality tests are set.
PLAIN_TEST = "test"
#: A withheld-modality test condition: ``test-withheld-audio``, ``test-withheld-audio-depth``.
_WITHHELD = re.compile(r"^test-withheld-(?P<modalities>[a-z]+(?:-[a-z]+)*)$")

Values = Mapping[Path, Mapping[str, float]]


def _summary(setting: Setting, values: Values, metric: str) -> Summary:
    """The summary table's cell: mean ± std over the setting's runs with a finite value."""
    return summarise([value for _, value in metric_values(setting, values, metric)])


def setting_bar_images(group: ProtocolGroup, values: Values) -> list[Image]:
    """One bar chart per headline metric that at least two settings of the group have.

    Args:
        group: the protocol group.
        values: results file → metric → value (as the tables use them).

    Returns:
        The figures, in :data:`HEADLINE_METRICS` order.
    """
    images = []
    for metric in HEADLINE_METRICS:
        summaries = [_summary(setting, values, metric) for setting in group.settings]
        if sum(summary.n > 0 for summary in summaries) < 2:
            continue
        title = f"{group.title}: {metric} by setting"
        png = setting_bars_figure(
            [setting.label for setting in group.settings],
            [summary.mean for summary in summaries],
            [summary.std for summary in summaries],
            [summary.n for summary in summaries],
            metric,
            title,
        )
        images.append(Image(f"{title} (mean ± std over seeds, n runs; as the summary table)", png))
    return images


def withheld_modalities(condition: str) -> tuple[str, ...] | None:
    """The modalities a plain withheld-modality test condition withholds, None for any other condition."""
    match = _WITHHELD.match(condition)
    if match is None:
        return None
    names = tuple(match["modalities"].split("-"))
    return names if all(name in MODALITIES for name in names) else None


def _column_order(modalities: tuple[str, ...]) -> tuple[int, list[int]]:
    return len(modalities), [MODALITIES.index(name) for name in modalities]


def missing_modality_images(groups: Sequence[ProtocolGroup], values: Values) -> dict[int, list[Image]]:
    """Heat maps of the headline metrics with modalities withheld at test time, per plain test group.

    A withheld test of a run counts for the setting of the same run (same run folder) in the plain ``test`` group of
    the same data set and protocol.

    Args:
        groups: every protocol group of the report.
        values: results file → metric → value.

    Returns:
        Group position (of a plain test group whose runs have withheld tests) → its heat maps.
    """
    withheld: dict[tuple[str, str], dict[tuple[str, ...], dict[Path, Path]]] = {}
    for group in groups:
        modalities = withheld_modalities(group.condition)
        if modalities is None:
            continue
        runs = withheld.setdefault((group.dataset, group.protocol), {}).setdefault(modalities, {})
        runs.update({record.run_folder: record.path for record in group.records})
    found: dict[int, list[Image]] = {}
    for position, group in enumerate(groups):
        tests = withheld.get((group.dataset, group.protocol), {})
        if group.condition != PLAIN_TEST or not tests:
            continue
        columns = sorted(tests, key=_column_order)
        images = []
        for metric in HEADLINE_METRICS:
            grid = np.full((len(group.settings), len(columns) + 1), np.nan)
            for row, setting in enumerate(group.settings):
                grid[row, 0] = _summary(setting, values, metric).mean
                for column, modalities in enumerate(columns, start=1):
                    paths = [tests[modalities].get(record.run_folder) for record in setting.records]
                    found_values = [values[path].get(metric) for path in paths if path is not None]
                    finite = [value for value in found_values if value is not None and np.isfinite(value)]
                    grid[row, column] = float(np.mean(finite)) if finite else np.nan
            if not np.isfinite(grid[:, 1:]).any():
                continue
            title = f"{group.title}: {metric} with modalities withheld at test time"
            png = heat_map_figure(
                grid,
                [setting.label for setting in group.settings],
                ["none", *("+".join(modalities) for modalities in columns)],
                title,
                f"{metric} (mean over seeds)",
                "modality withheld at test time",
            )
            caption = f"{title} (mean over seeds; – where the setting's model lacks the modality)"
            images.append(Image(caption, png))
        if images:
            found[position] = images
    return found


def au_heat_map_image(group: ProtocolGroup, space: LabelSpace, values: Values) -> Image | None:
    """The per-AU F1 table at threshold 0.5 as a heat map (rows settings, columns AUs), None without AU values."""
    per_au = [f"au/f1_au{number}" for number in space.action_units]
    settings = [s for s in group.settings if any(metric_values(s, values, name) for name in per_au)]
    if not settings:
        return None
    grid = np.array([[_summary(setting, values, name).mean for name in per_au] for setting in settings])
    title = f"{group.title}: AU F1 at threshold 0.5 per AU"
    png = heat_map_figure(
        grid,
        [setting.label for setting in settings],
        [f"AU{number}" for number in space.action_units],
        title,
        "F1 (mean over seeds)",
        "action unit",
        limits=(0.0, 1.0),
        cell_width=0.42,
    )
    return Image(f"{title} (mean over seeds; the table gives ± std)", png)


def _mean_ccc(setting: Setting, values: Values, dimensions: Sequence[str]) -> float:
    means = [_summary(setting, values, f"va/ccc_{name}").mean for name in dimensions]
    finite = [mean for mean in means if np.isfinite(mean)]
    return float(np.mean(finite)) if len(finite) == len(dimensions) else -np.inf


def va_density_images(
    group: ProtocolGroup,
    space: LabelSpace,
    predictions: Mapping[Path, LoadedPredictions | None],
    values: Values,
    reference: Setting | None,
) -> list[Image]:
    """Predicted against true affect dimensions for the reference and the best setting (mean CCC), pooled over runs.

    Args:
        group: the protocol group.
        space: its label space (with dimensions).
        predictions: results file → its predictions, or None.
        values: results file → metric → value.
        reference: the group's reference setting, or None.

    Returns:
        Up to two figures (one where the reference is the best); none without affect predictions.
    """
    from multimodal_fer.reporting.va_figures import va_density_figure

    dimensions = list(space.dimensions)

    def pooled(setting: Setting) -> list[LoadedPredictions]:
        loaded = [predictions.get(record.path) for record in setting.records]
        return [item for item in loaded if item is not None and "va" in item.predictions.outputs]

    candidates = [setting for setting in group.settings if pooled(setting)]
    if not dimensions or not candidates:
        return []
    best = max(candidates, key=lambda setting: _mean_ccc(setting, values, dimensions))
    chosen = [(reference, "reference")] if reference is not None and reference in candidates else []
    if best is not reference:
        chosen.append((best, "best mean CCC"))
    images = []
    for setting, why in chosen:
        loaded = pooled(setting)
        true = np.concatenate([item.predictions.targets["va"] for item in loaded]).astype(np.float64)
        predicted = np.concatenate([item.predictions.outputs["va"] for item in loaded]).astype(np.float64)
        scores = []
        for name in dimensions:
            summary = _summary(setting, values, f"va/ccc_{name}")
            spread = f" ± {show_number(summary.std)}" if summary.n > 1 else ""
            scores.append(f"CCC {show_number(summary.mean)}{spread} (n={summary.n})")
        title = f"{group.title}: {setting.label} ({why}), predicted vs true, {len(loaded)} run(s) pooled"
        png = va_density_figure(true, predicted, dimensions, scores, title)
        images.append(Image(f"{title}; CCC mean ± std over runs, as the summary table", png))
    return images
