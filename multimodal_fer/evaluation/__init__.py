"""Evaluation built on what runs leave in their folders.

- :mod:`~multimodal_fer.evaluation.subject_bootstrap`: per-sample predictions → statistics over subjects.
- :mod:`~multimodal_fer.evaluation.feature_probes`, :mod:`~multimodal_fer.evaluation.probe_features`,
  :mod:`~multimodal_fer.evaluation.probe_report`: linear probes on the fixed features of single-modality runs
  (``mfer probe``; imported on use, as they rebuild models and need scikit-learn).
"""

from multimodal_fer.evaluation.subject_bootstrap import (
    PairedBootstrap,
    SamplePredictions,
    metric_value,
    paired_loss_bootstrap,
    paired_subject_bootstrap,
    scores_on_draws,
    weighted_metric,
)

__all__ = [
    "PairedBootstrap",
    "SamplePredictions",
    "metric_value",
    "paired_loss_bootstrap",
    "paired_subject_bootstrap",
    "scores_on_draws",
    "weighted_metric",
]
