"""Evaluation built on the files test runs write: per-sample predictions → statistics over subjects."""

from multimodal_fer.evaluation.subject_bootstrap import (
    PairedBootstrap,
    SamplePredictions,
    metric_value,
    paired_subject_bootstrap,
    weighted_metric,
)

__all__ = ["PairedBootstrap", "SamplePredictions", "metric_value", "paired_subject_bootstrap", "weighted_metric"]
