"""Figures of a report as PNG bytes (matplotlib's Agg canvas, no display needed)."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

import numpy as np


def confusion_figure(counts: np.ndarray, classes: Sequence[str], title: str) -> bytes:
    """A confusion matrix as a heat map of each label row's shares (recall on the diagonal), as PNG bytes.

    Args:
        counts: (C, C) counts, rows the labels, columns the predictions.
        classes: the C class names.
        title: the figure's title (wrapped to the figure's width).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    size = 1.6 + 0.45 * len(classes)
    figure = Figure(figsize=(size + 0.8, size), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(shares, vmin=0.0, vmax=1.0, cmap="Blues")
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(classes)), classes, fontsize=8)
    axes.set_xlabel("predicted", fontsize=9)
    axes.set_ylabel("label", fontsize=9)
    axes.set_title(textwrap.fill(title, width=36, break_long_words=False), fontsize=9)
    for row in range(len(classes)):
        for column in range(len(classes)):
            value = shares[row, column]
            colour = "white" if value > 0.6 else "black"
            axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    finite = ratios[np.isfinite(ratios)]
    top = max(1.0, float(finite.max())) if finite.size else 1.0
    figure = Figure(figsize=(2.6 + 0.75 * len(columns), 1.4 + 0.4 * len(rows)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(np.ma.masked_invalid(ratios), vmin=0.0, vmax=top, cmap="RdYlGn", aspect="auto")
    axes.set_xticks(range(len(columns)), columns, fontsize=8)
    axes.set_yticks(range(len(rows)), rows, fontsize=8)
    axes.set_xlabel("strength", fontsize=9)
    axes.set_title(textwrap.fill(title, width=48, break_long_words=False), fontsize=9)
    for row in range(len(rows)):
        for column in range(len(columns)):
            value = ratios[row, column]
            text = f"{value:.2f}" if np.isfinite(value) else "–"
            axes.text(column, row, text, ha="center", va="center", fontsize=7, color="black")
    colour_bar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colour_bar.set_label(label, fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
