"""Evaluation built on the files test runs write: per-sample predictions → statistics over subjects."""

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
