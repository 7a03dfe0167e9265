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
