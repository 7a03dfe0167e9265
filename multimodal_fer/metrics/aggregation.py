"""Evaluation aggregation levels: score every sample, or every recording from its samples' mean prediction.

Benchmarks do not all score the unit a cache stores. A cache sample may be a 10-s window of a DEAP trial, while
DEAP papers report one prediction per trial; Aff-Wild2 and RECOLA score frames, RAVDESS and CREMA-D clips (a
cache sample there is already the clip). Two levels are offered, each data set declaring its benchmark's usual one
(:attr:`~multimodal_fer.datasets.base.DatasetAdapter.evaluation_aggregation`):

- ``"sample"``: every cache sample is scored on its own (the epoch metrics, ``test/...``).
- ``"recording"``: the samples of one recording (the cache's ``sequence``: a DEAP or MAHNOB-HCI trial, a video) are
  first merged into one prediction, the **mean of their class probabilities** (softmax of the expression logits),
  **AU probabilities** (sigmoid of the AU logits) and **affect values**; the recording's label is the label its
  samples share. The metrics of :class:`~multimodal_fer.metrics.recognition.FERMetrics` are then computed over the
  recordings (``test/recording/...``): the predicted class is the arg-max of the mean probabilities, an AU is
  active where its mean probability exceeds 0.5.

A sample outside any recording (sequence code -1) is a recording of its own. Recording-level scores need one label
per recording: a recording whose labelled samples disagree (WESAD's session holds several conditions, RECOLA
labels every frame) is refused with the recording's name, since averaging over it would score something no
benchmark reports. Unlabelled samples (expression -1, NaN AUs or affect) still contribute their predictions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics import Metric

from multimodal_fer.metrics.recognition import FERMetrics
from multimodal_fer.types import AGGREGATION_LEVELS, EXPR_UNLABELED, Aggregation, LabelSpace

#: Labels of one recording that differ by more than this are different labels (float32 storage, exact copies).
LABEL_TOLERANCE = 1e-6


def check_aggregation(level: str) -> Aggregation:
    """The level itself, or a clear error.

    Raises:
        ValueError: a level other than ``"sample"`` or ``"recording"``.
    """
    if level not in AGGREGATION_LEVELS:
        raise ValueError(f"evaluation aggregation {level!r}: choose one of {list(AGGREGATION_LEVELS)}.")
    return level  # type: ignore[return-value]


@dataclass(frozen=True)
class RecordingAggregate:
    """Predictions and labels merged per recording.

    Attributes:
        recordings: (R,) recording code of each row (the cache's sequence code; samples outside any recording
            keep -1, one row each).
        sizes: (R,) number of samples merged into each row.
        outputs: ``"expr"`` (R, C) mean class probabilities, ``"au"`` (R, K) mean AU probabilities, ``"va"``
            (R, D) mean affect values; only the tasks given.
        targets: ``"expr"`` (R,) long, -1 where no sample is labelled; ``"au"`` (R, K) and ``"va"`` (R, D), NaN where
            no sample is labelled.
    """

    recordings: np.ndarray
    sizes: np.ndarray
    outputs: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * logits))  # stable for large |logits|


def _groups(recordings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R,) recording code of each group and (N,) group of each sample.

    Groups are sorted by recording code; samples outside any recording (code -1) follow, one group each, in sample
    order.
    """
    recordings = np.asarray(recordings, dtype=np.int64)
    beyond = int(recordings.max(initial=-1)) + 1
    keys = np.where(recordings >= 0, recordings, beyond + np.arange(recordings.size))
    unique, group = np.unique(keys, return_inverse=True)
    return np.where(unique < beyond, unique, -1), group.reshape(-1)


def _shared_labels(
    values: np.ndarray, group: np.ndarray, count: int, unlabelled: np.ndarray, name: str, names: Sequence[str]
) -> np.ndarray:
    """(R, ...) the label each group's labelled samples share; refuses a group whose labels differ."""
    flat = values.reshape(values.shape[0], -1).astype(np.float64)
    missing = unlabelled.reshape(flat.shape)
    shared = np.full((count, flat.shape[1]), np.nan)
    for g in range(count):
        rows = group == g
        for column in range(flat.shape[1]):
            labelled = flat[rows, column][~missing[rows, column]]
            if labelled.size == 0:
                continue
            if np.ptp(labelled) > LABEL_TOLERANCE:
                raise ValueError(
                    f"Recording {names[g]!r} holds samples with different {name} labels "
                    f"({sorted(set(np.round(labelled, 6).tolist()))[:5]}); recording-level scores need one label per "
                    "recording. Score this data set per sample (--results.aggregation sample; frame-labelled "
                    "recordings: --results.sequence_pooling)."
                )
            shared[g, column] = labelled[0]
    return shared.reshape((count, *values.shape[1:]))


def aggregate_recordings(
    recordings: np.ndarray,
    outputs: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    recording_names: Sequence[str] | None = None,
) -> RecordingAggregate:
    """Merge per-sample predictions into one per recording (see the module docstring).

    Args:
        recordings: (N,) integer recording code of each sample (-1: outside any recording).
        outputs: per-sample head outputs: ``"expr"`` (N, C) logits, ``"au"`` (N, K) logits, ``"va"`` (N, D).
        targets: per-sample labels: ``"expr"`` (N,) with -1 unlabelled, ``"au"`` (N, K), ``"va"`` (N, D) with NaN.
        recording_names: names of the recording codes, for error messages (None: the codes).

    Returns:
        The merged predictions and labels, rows sorted by recording code (singletons last, in sample order).

    Raises:
        ValueError: mismatched lengths, or a recording whose labelled samples disagree.
    """
    recordings = np.asarray(recordings, dtype=np.int64).reshape(-1)
    for key, value in (*outputs.items(), *targets.items()):
        if np.asarray(value).shape[0] != recordings.size:
            raise ValueError(f"{key}: {np.asarray(value).shape[0]} rows for {recordings.size} samples.")
    codes, group = _groups(recordings)
    count = codes.size
    sizes = np.bincount(group, minlength=count)
    names = [
        (recording_names[c] if recording_names is not None and 0 <= c < len(recording_names) else str(c))
        if c >= 0
        else "(a sample outside any recording)"
        for c in codes
    ]
    merged: dict[str, np.ndarray] = {}
    for key, value in outputs.items():
        value = np.asarray(value, dtype=np.float64)
        scores = _softmax(value) if key == "expr" else _sigmoid(value) if key == "au" else value
        sums = np.zeros((count, *scores.shape[1:]))
        np.add.at(sums, group, scores)
        merged[key] = sums / sizes.reshape(-1, *([1] * (scores.ndim - 1)))
    labels: dict[str, np.ndarray] = {}
    for key, value in targets.items():
        value = np.asarray(value)
        if key == "expr":
            shared = _shared_labels(value, group, count, value == EXPR_UNLABELED, "expression", names)
            labels[key] = np.where(np.isnan(shared), EXPR_UNLABELED, np.nan_to_num(shared)).astype(np.int64)
        else:
            what = "AU" if key == "au" else "affect"
            labels[key] = _shared_labels(value, group, count, np.isnan(value.astype(np.float64)), what, names)
    return RecordingAggregate(codes, sizes, merged, labels)


def _unsynced(metrics: FERMetrics) -> FERMetrics:
    """The metrics without DDP syncing: every process computes them on the same, already gathered rows."""
    for module in metrics.modules():
        if isinstance(module, Metric):
            module.sync_on_compute = False
            module._to_sync = False
    return metrics


def aggregate_metrics(aggregate: RecordingAggregate, label_space: LabelSpace, prefix: str) -> dict[str, float]:
    """:class:`FERMetrics` over the merged rows, named ``{prefix}/{task}/{metric}`` and ``{prefix}/score``.

    Args:
        aggregate: predictions and labels per recording.
        label_space: the label space the outputs are in.
        prefix: the metric names' stage, e.g. ``"test/recording"``.

    Returns:
        Metric name → value; metrics without a labelled recording are omitted, as :class:`FERMetrics` does.
    """
    metrics = _unsynced(FERMetrics(label_space, prefix))
    outputs: dict[str, torch.Tensor] = {}
    for key, value in aggregate.outputs.items():
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        # FERMetrics takes AU logits (it applies the sigmoid): the logit of the mean probability.
        outputs[key] = torch.logit(tensor.clamp(1e-12, 1 - 1e-12)) if key == "au" else tensor
    batch = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in aggregate.targets.items()}
    metrics.update(outputs, batch)
    return {name: float(value) for name, value in metrics.compute().items()}
