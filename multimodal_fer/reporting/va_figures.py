"""Predicted against true affect dimensions (valence, arousal, ...) as 2-D histograms, as PNG bytes.

A scatter of a few thousand points hides where most of them lie; a 2-D histogram with a logarithmic colour scale
shows both the dense middle and the sparse extremes, so a model that shrinks its predictions towards 0 (a common
failure of CCC-trained heads) is seen at a glance: the mass lies flatter than the identity line.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from multimodal_fer.reporting.figures import new_figure, png_bytes, wrapped

#: Bins of each axis of a panel.
BINS = 40
#: The panels span at least the label range [-1, 1] and at most this far (predictions beyond are drawn at the edge).
MAX_EXTENT = 1.5


def _extent(true: np.ndarray, predicted: np.ndarray) -> float:
    """Half the side of a panel: 1.05 (labels lie in [-1, 1]), wider for predictions beyond, up to MAX_EXTENT."""
    largest = max(float(np.abs(true).max(initial=0.0)), float(np.abs(predicted).max(initial=0.0)))
    return min(MAX_EXTENT, max(1.05, largest * 1.02))


def va_density_figure(
    true: np.ndarray,
    predicted: np.ndarray,
    dimensions: Sequence[str],
    scores: Sequence[str],
    title: str,
) -> bytes:
    """One panel per affect dimension: 2-D histogram of (true, predicted), log colour scale, identity line in red.

    Samples without a label of a dimension (NaN) are left out of its panel; predictions beyond the panel are drawn
    in its edge bins.

    Args:
        true: (N, D) labels, NaN where unlabeled.
        predicted: (N, D) predictions.
        dimensions: the D dimensions' names (``valence``, ``arousal``, ...).
        scores: D lines shown under each panel's name, e.g. ``CCC 0.431 ± 0.020 (n=3)``.
        title: the figure's title.

    Returns:
        The PNG file's bytes.
    """
    from matplotlib.colors import LogNorm

    figure = new_figure(0.6 + 3.4 * len(dimensions), 3.9)
    for column, (name, score) in enumerate(zip(dimensions, scores, strict=True)):
        axes = figure.add_subplot(1, len(dimensions), column + 1)
        keep = np.isfinite(true[:, column]) & np.isfinite(predicted[:, column])
        x, y = true[keep, column], predicted[keep, column]
        extent = _extent(x, y)
        axes.set_xlim(-extent, extent)
        axes.set_ylim(-extent, extent)
        axes.set_aspect("equal")
        if x.size:
            edges = np.linspace(-extent, extent, BINS + 1)
            inside = np.nextafter(extent, 0.0)
            counts, _, _ = np.histogram2d(np.clip(x, -extent, inside), np.clip(y, -extent, inside), bins=(edges, edges))
            shown = np.ma.masked_equal(counts.T, 0.0)
            mesh = axes.pcolormesh(edges, edges, shown, norm=LogNorm(vmin=1.0, vmax=max(counts.max(), 2.0)))
            colour_bar = figure.colorbar(mesh, ax=axes, fraction=0.046, pad=0.04)
            colour_bar.set_label("samples per bin", fontsize=7)
            colour_bar.ax.tick_params(labelsize=7)
        else:
            axes.text(0.0, 0.0, "no labeled samples", ha="center", va="center", fontsize=8)
        axes.plot([-extent, extent], [-extent, extent], color="#d62728", linewidth=1.0)
        axes.axhline(0.0, color="#57606a", linewidth=0.5)
        axes.axvline(0.0, color="#57606a", linewidth=0.5)
        axes.set_xlabel(f"true {name}", fontsize=8)
        axes.set_ylabel(f"predicted {name}", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.set_title(f"{name}: {score}\n{x.size} labeled samples; red line: identity", fontsize=8)
    figure.suptitle(wrapped(title, int(13 * (0.6 + 3.4 * len(dimensions)))), fontsize=9)
    return png_bytes(figure)
