"""Selective restoration's rule, chosen on validation faces: restore only what the mask network finds small enough.

A recogniser trained with occlusion augmentation reads a face under a scarf or a medical mask better as it is than
behind a generator's guess of the lower face, while thin or small occluders (strokes, hair, a block) are better
restored. :class:`~multimodal_fer.models.restoration.FaceRestorer`'s ``max_occluded_fraction`` leaves every face whose
predicted occluded share exceeds it as it is. Which share is right depends on the recogniser and the restorer, so it
is chosen on validation faces: from one ``mfer occlusion-benchmark`` evaluation of a recogniser on the ``occluded``
and ``restored`` conditions of a validation occlusion split, each candidate share's pipeline is assembled face by face
(the restored face's outputs where the predicted share is at most the candidate, the occluded face's elsewhere) and
scored. The chosen share then goes into the test spec (``max_occluded_fraction`` of the recogniser), whose
``restored_selective`` condition runs the rule for real on the test faces.

The assembly reads an unrestored face as the ``occluded`` condition does (standardised once); the restorer with the
rule standardises it a second time, which moves a face's logits by float rounding only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from multimodal_fer.evaluation.occlusion_evaluation import SavedSeed
from multimodal_fer.evaluation.subject_bootstrap import SamplePredictions, metric_value

#: Candidate largest shares (1 = restore every face the mask network finds occluded, as plain ``restored``).
DEFAULT_FRACTIONS: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 1.0)
#: The metric the share is chosen by.
SELECTION_METRIC = "expr/f1_macro"


def selective_predictions(
    occluded: SamplePredictions, restored: SamplePredictions, share: np.ndarray, max_occluded_fraction: float
) -> SamplePredictions:
    """One recogniser's outputs with only the faces of predicted occluded share ≤ ``max_occluded_fraction`` restored.

    Args:
        occluded: its predictions on the occluded faces.
        restored: its predictions on the same faces restored blindly.
        share: (N,) each face's predicted occluded share.
        max_occluded_fraction: the largest share restored.
    """
    keep = np.asarray(share) <= max_occluded_fraction
    outputs = {}
    for task, value in restored.outputs.items():
        rows = keep.reshape(-1, *([1] * (value.ndim - 1)))
        outputs[task] = np.where(rows, value, occluded.outputs[task])
    return SamplePredictions(
        restored.index,
        restored.subject,
        restored.targets,
        outputs,
        restored.label_space,
        f"{restored.source}, restored up to a share of {max_occluded_fraction:g}",
    )


def scannable(recognisers: Sequence[dict[str, Any]]) -> list[str]:
    """Labels of the recognisers read on both the occluded and the blindly restored faces (not self-restoring ones)."""
    return [
        r["label"]
        for r in recognisers
        if not r.get("restores") and "occluded" in r["conditions"] and "restored" in r["conditions"]
    ]


def selective_scan(
    saved: Sequence[SavedSeed],
    labels: Sequence[str],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    metric: str = SELECTION_METRIC,
) -> dict[str, Any]:
    """Score selective restoration at each candidate share, per recogniser, and choose the best share.

    Args:
        saved: every seed's saved evaluation, each with its predicted shares.
        labels: the recognisers to scan (each read on ``occluded`` and ``restored``).
        fractions: the candidate largest shares.
        metric: what the choice maximises (the mean over seeds).

    Returns:
        ``{"metric", "fractions", "restored_faces": [mean share of faces restored per fraction], "recognisers":
        {label: {"scores": [mean over seeds per fraction], "per_seed": [[per fraction] per seed], "best": fraction,
        "best_score": score}}}``; the best is the highest mean, the largest such share on ties. Empty when a seed's
        file holds no predicted shares.
    """
    if not saved or any(seed.evaluation.predicted_share is None for seed in saved):
        return {}
    fractions = sorted(float(f) for f in fractions)
    restored_faces = [
        float(np.mean([np.mean(seed.evaluation.predicted_share <= f) for seed in saved])) for f in fractions
    ]
    found: dict[str, Any] = {}
    for label in labels:
        per_seed = []
        for seed in saved:
            predictions = seed.evaluation.predictions
            share = seed.evaluation.predicted_share
            per_seed.append(
                [
                    metric_value(
                        selective_predictions(
                            predictions[f"{label} occluded"], predictions[f"{label} restored"], share, f
                        ),
                        metric,
                    )
                    for f in fractions
                ]
            )
        scores = np.mean(np.asarray(per_seed), axis=0)
        best = max(range(len(fractions)), key=lambda i: (round(float(scores[i]), 12), fractions[i]))
        found[label] = {
            "scores": [float(v) for v in scores],
            "per_seed": [[float(v) for v in row] for row in per_seed],
            "best": fractions[best],
            "best_score": float(scores[best]),
        }
    return {"metric": metric, "fractions": fractions, "restored_faces": restored_faces, "recognisers": found}
