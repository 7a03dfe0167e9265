"""Figures of a report as PNG bytes (matplotlib's Agg canvas, no display needed).

Confusion matrices, heat maps (robustness, missing modalities, per-AU F1) and bar charts of the settings' mean ±
std; the affect-dimension density plots are in :mod:`multimodal_fer.reporting.va_figures`.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Shown in a heat-map cell or beside a bar where there is no value.
NO_VALUE = "–"


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure of ``width`` × ``height`` inches at 100 dpi on the Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure laid out tightly and saved as PNG bytes."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def wrapped(title: str, width: int) -> str:
    """A title wrapped to ``width`` characters, breaking only between words."""
    return textwrap.fill(title, width=width, break_long_words=False)


def confusion_figure(counts: np.ndarray, classes: Sequence[str], title: str) -> bytes:
    """A confusion matrix as a heat map of each label row's shares (recall on the diagonal), as PNG bytes.

    Args:
        counts: (C, C) counts, rows the labels, columns the predictions.
        classes: the C class names.
        title: the figure's title (wrapped to the figure's width).
    """
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    size = 1.6 + 0.45 * len(classes)
    figure = new_figure(size + 0.8, size)
    axes = figure.add_subplot()
    image = axes.imshow(shares, vmin=0.0, vmax=1.0, cmap="Blues")
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(classes)), classes, fontsize=8)
    axes.set_xlabel("predicted", fontsize=9)
    axes.set_ylabel("label", fontsize=9)
    axes.set_title(wrapped(title, 36), fontsize=9)
    for row in range(len(classes)):
        for column in range(len(classes)):
            value = shares[row, column]
            colour = "white" if value > 0.6 else "black"
            axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    return png_bytes(figure)


def heat_map_figure(
    values: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    title: str,
    colour_label: str,
    x_label: str,
    limits: tuple[float, float] | None = None,
    colour_map: str = "viridis",
    cell_width: float = 0.75,
    digits: int = 2,
) -> bytes:
    """A heat map with each cell's value written in it and ``–`` in cells without one, as PNG bytes.

    Args:
        values: (R, C) values, NaN where a cell has none (drawn blank).
        rows: the R row labels.
        columns: the C column labels.
        title: the figure's title (wrapped to the figure's width).
        colour_label: the colour bar's label.
        x_label: what the columns are.
        limits: the values at the ends of the colour map (default: 0, or the smallest value if negative, to the
            largest value).
        colour_map: a matplotlib colour map's name.
        cell_width: width of a column in inches.
        digits: decimals written in the cells.
    """
    finite = values[np.isfinite(values)]
    if limits is None:
        low = min(0.0, float(finite.min())) if finite.size else 0.0
        high = float(finite.max()) if finite.size else 1.0
        limits = (low, high if high > low else low + 1.0)
    low, high = limits
    width = 2.4 + 0.065 * max((len(row) for row in rows), default=0) + cell_width * len(columns)
    figure = new_figure(width, 1.5 + 0.32 * len(rows))
    axes = figure.add_subplot()
    colours = axes.imshow(np.ma.masked_invalid(values), vmin=low, vmax=high, cmap=colour_map, aspect="auto")
    axes.set_xticks(range(len(columns)), columns, fontsize=8, rotation=30 if len(columns) > 8 else 0)
    axes.set_yticks(range(len(rows)), rows, fontsize=8)
    axes.set_xlabel(x_label, fontsize=9)
    axes.set_title(wrapped(title, int(10 * width)), fontsize=9)
    middle = (low + high) / 2
    for row in range(len(rows)):
        for column in range(len(columns)):
            value = values[row, column]
            if not np.isfinite(value):
                axes.text(column, row, NO_VALUE, ha="center", va="center", fontsize=7, color="black")
                continue
            dark = colour_map == "viridis" and value < middle
            colour = "white" if dark else "black"
            axes.text(column, row, f"{value:.{digits}f}", ha="center", va="center", fontsize=7, color=colour)
    colour_bar = figure.colorbar(colours, ax=axes, fraction=0.046, pad=0.04)
    colour_bar.set_label(colour_label, fontsize=8)
    return png_bytes(figure)


def robustness_figure(
    ratios: np.ndarray, rows: Sequence[str], columns: Sequence[str], title: str, label: str = "corrupted / clean"
) -> bytes:
    """A robustness heat map: rows (modality · kind), columns (strength), each cell's value written in it.

    Args:
        ratios: (R, C) values, NaN where a cell was not tested.
        rows: the R row labels.
        columns: the C column labels.
        title: the figure's title (wrapped to the figure's width).
        label: the colour bar's label.

    Returns:
        The PNG file's bytes. Colours run from 0 to the larger of 1 and the largest value (RdYlGn: 1 = as clean).
    """
    finite = ratios[np.isfinite(ratios)]
    top = max(1.0, float(finite.max())) if finite.size else 1.0
    return heat_map_figure(ratios, rows, columns, title, label, "strength", (0.0, top), "RdYlGn")


def setting_bars_figure(
    labels: Sequence[str],
    means: Sequence[float],
    stds: Sequence[float],
    counts: Sequence[int],
    metric: str,
    title: str,
) -> bytes:
    """Horizontal bars of every setting's mean with ± std error bars, best (largest) at the top, as PNG bytes.

    Each bar is annotated with ``mean ± std (n=k)``; a setting with one run has no error bar, one without a
    value is listed at the bottom with ``–``.

    Args:
        labels: the S settings' names.
        means: (S,) means over each setting's runs (NaN: no value).
        stds: (S,) sample standard deviations (NaN for fewer than two runs).
        counts: (S,) runs behind each mean.
        metric: the metric's name (the x axis's label).
        title: the figure's title (wrapped to the figure's width).
    """
    mean = np.asarray(means, dtype=np.float64)
    std = np.asarray(stds, dtype=np.float64)
    order = sorted(
        range(len(labels)), key=lambda i: (not np.isfinite(mean[i]), -mean[i] if np.isfinite(mean[i]) else 0)
    )
    order.reverse()  # barh draws the first row at the bottom
    shown = np.where(np.isfinite(mean[order]), mean[order], 0.0)
    errors = np.where(np.isfinite(std[order]), std[order], 0.0)
    figure = new_figure(7.5, 1.3 + 0.3 * len(labels))
    axes = figure.add_subplot()
    positions = np.arange(len(order))
    axes.barh(positions, shown, xerr=errors, color="#4c78a8", ecolor="#1b1f24", capsize=3, height=0.65)
    axes.set_yticks(positions, [labels[i] for i in order], fontsize=8)
    lows, highs = shown - errors, shown + errors
    left, right = min(0.0, float(lows.min())), max(0.0, float(highs.max()))
    span = (right - left) or 1.0
    axes.set_xlim(left - (0.05 * span if left < 0 else 0.0), right + 0.45 * span)
    for position, index, high in zip(positions, order, highs, strict=True):
        if not np.isfinite(mean[index]):
            text = NO_VALUE
        else:
            text = f"{mean[index]:.3f}" + (f" ± {std[index]:.3f}" if np.isfinite(std[index]) else "")
            text += f" (n={counts[index]})"
        axes.text(max(high, 0.0) + 0.02 * span, position, text, va="center", fontsize=7)
    axes.axvline(0.0, color="#57606a", linewidth=0.8)
    axes.set_xlabel(f"{metric} (mean ± std over runs)", fontsize=9)
    axes.set_title(wrapped(title, 70), fontsize=9)
    axes.tick_params(axis="x", labelsize=8)
    return png_bytes(figure)
