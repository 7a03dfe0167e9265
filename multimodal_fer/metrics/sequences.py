"""Frame-level affect predictions as sequences: smoothing over a sliding window, CCC pooled or per sequence.

Continuous-affect benchmarks (RECOLA/AVEC, Aff-Wild2) label every frame of a recording, and a model scoring frames
one by one gives a jittery trace. Two evaluation choices follow, both made explicit here:

- **Smoothing** (:func:`smooth_sequences`): each prediction is replaced by the weighted mean of the predictions of
  the same sequence within ``±(width - 1) / 2`` frames (``box``: equal weights; ``gaussian``: weights
  ``exp(-Δ² / 2σ²)`` with ``σ = width / 4`` frames, so the window spans about ±2σ). Distances are frame numbers, not
  positions in the list: a gap (frames without a sample) is not bridged as if it were not there, and samples every
  ``k`` frames are smoothed over the same time span as samples every frame. At a sequence's ends and beside gaps
  the weights of the frames present are renormalised (no padding, no frame invented).
- **Pooling** (:func:`sequence_concordance`): Lin's CCC over all frames of all sequences concatenated
  (``"concat"``, the ABAW practice) or per sequence and then averaged (``"per_sequence_mean"``, AVEC 2018 GES);
  every CCC is :func:`~multimodal_fer.metrics.recognition.concordance_correlation`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from multimodal_fer.metrics.recognition import concordance_correlation

SmoothingKernel = Literal["box", "gaussian"]
Pooling = Literal["concat", "per_sequence_mean"]
SMOOTHING_KERNELS: tuple[str, ...] = ("box", "gaussian")
POOLINGS: tuple[str, ...] = ("concat", "per_sequence_mean")


def smoothing_kernel(kernel: SmoothingKernel, width: int) -> np.ndarray:
    """The unnormalised weights of frame offsets ``-r … r``, ``r = (width - 1) / 2``.

    Args:
        kernel: ``"box"`` or ``"gaussian"`` (σ = width / 4 frames).
        width: window width in frames, odd and ≥ 1 (1 leaves predictions unchanged).

    Returns:
        float64 (width,).

    Raises:
        ValueError: an unknown kernel, or a width that is not an odd positive integer.
    """
    if kernel not in SMOOTHING_KERNELS:
        raise ValueError(f"smoothing kernel {kernel!r}: choose one of {list(SMOOTHING_KERNELS)}.")
    if int(width) != width or width < 1 or width % 2 == 0:
        raise ValueError(f"smoothing width {width}: give an odd number of frames ≥ 1 (the window is centred).")
    radius = (int(width) - 1) // 2
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    if kernel == "box":
        return np.ones_like(offsets)
    sigma = width / 4.0
    return np.exp(-(offsets**2) / (2.0 * sigma**2))


def smooth_sequences(
    values: np.ndarray, sequences: np.ndarray, frames: np.ndarray, kernel: SmoothingKernel, width: int
) -> np.ndarray:
    """Smooth predictions along each sequence's frames (see the module docstring).

    Args:
        values: (N,) or (N, D) predictions, finite.
        sequences: (N,) sequence of each sample (any comparable values).
        frames: (N,) integer frame number of each sample within its sequence.
        kernel: ``"box"`` or ``"gaussian"``.
        width: window width in frames (odd).

    Returns:
        Smoothed values, the shape and sample order of ``values`` (float64).

    Raises:
        ValueError: mismatched lengths, non-finite values, or one frame of one sequence given twice.
    """
    weights = smoothing_kernel(kernel, width)
    array = np.asarray(values, dtype=np.float64)
    flat = array.reshape(array.shape[0], -1)
    sequences, frames = np.asarray(sequences), np.asarray(frames, dtype=np.int64)
    if sequences.shape != (flat.shape[0],) or frames.shape != (flat.shape[0],):
        raise ValueError(f"{flat.shape[0]} values but {sequences.shape} sequences and {frames.shape} frames.")
    if not np.all(np.isfinite(flat)):
        raise ValueError("Predictions to smooth must be finite.")
    out = np.empty_like(flat)
    for name in np.unique(sequences):
        members = np.flatnonzero(sequences == name)
        offsets = frames[members] - frames[members].min()
        if np.unique(offsets).size != offsets.size:
            raise ValueError(f"Sequence {name!r} holds one frame twice; smoothing needs one sample per frame.")
        grid = np.zeros((int(offsets.max()) + 1, flat.shape[1]))
        present = np.zeros(grid.shape[0])
        grid[offsets], present[offsets] = flat[members], 1.0
        total = np.convolve(present, weights, mode="same")
        for column in range(flat.shape[1]):
            out[members, column] = np.convolve(grid[:, column], weights, mode="same")[offsets] / total[offsets]
    return out.reshape(array.shape)


def sequence_concordance(
    prediction: np.ndarray, target: np.ndarray, sequences: np.ndarray, pooling: Pooling
) -> np.ndarray:
    """CCC per column, over all frames concatenated or per sequence then averaged.

    Args:
        prediction: (N, D) predictions.
        target: (N, D) labels; NaN entries (unlabelled) are skipped.
        sequences: (N,) sequence of each sample.
        pooling: ``"concat"`` or ``"per_sequence_mean"`` (sequences whose CCC is undefined, e.g. a constant label
            and prediction, or with no label of the column, are left out of the mean).

    Returns:
        float64 (D,); NaN where no CCC is defined.

    Raises:
        ValueError: an unknown pooling or mismatched shapes.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"CCC pooling {pooling!r}: choose one of {list(POOLINGS)}.")
    prediction, target = np.asarray(prediction, dtype=np.float64), np.asarray(target, dtype=np.float64)
    sequences = np.asarray(sequences)
    if prediction.shape != target.shape or prediction.ndim != 2 or sequences.shape != (prediction.shape[0],):
        raise ValueError(f"prediction {prediction.shape}, target {target.shape}, sequences {sequences.shape}.")
    groups = [np.arange(prediction.shape[0])] if pooling == "concat" else [
        np.flatnonzero(sequences == name) for name in np.unique(sequences)
    ]  # fmt: skip
    scores = np.full(prediction.shape[1], np.nan)
    for column in range(prediction.shape[1]):
        per_group = []
        for members in groups:
            labelled = members[np.isfinite(target[members, column])]
            if labelled.size:
                with np.errstate(invalid="ignore", divide="ignore"):
                    per_group.append(
                        float(concordance_correlation(prediction[labelled, column], target[labelled, column]))
                    )
        finite = [value for value in per_group if np.isfinite(value)]
        if finite:
            scores[column] = float(np.mean(finite))
    return scores
