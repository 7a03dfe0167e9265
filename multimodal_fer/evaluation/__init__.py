"""Evaluation built on what runs leave in their folders.

- :mod:`~multimodal_fer.evaluation.subject_bootstrap`: per-sample predictions → statistics over subjects.
- :mod:`~multimodal_fer.evaluation.feature_probes`, :mod:`~multimodal_fer.evaluation.probe_features`,
  :mod:`~multimodal_fer.evaluation.probe_report`: linear probes on the fixed features of single-modality runs
  (``mfer probe``; imported on use, as they rebuild models and need scikit-learn).
- :mod:`~multimodal_fer.evaluation.occlusion_benchmark` (``mfer occlusion-benchmark``): face recognisers and a restorer
  on an occlusion split, with subject-bootstrap intervals; its spec (:mod:`~.occlusion_spec`), inputs
  (:mod:`~.occlusion_inputs`), per-seed evaluation (:mod:`~.occlusion_evaluation`), statistics
  (:mod:`~.occlusion_statistics`) and tables (:mod:`~.occlusion_tables`); imported on use, as they rebuild models.
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
