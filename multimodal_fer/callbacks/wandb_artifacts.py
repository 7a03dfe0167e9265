"""Results files (``results-<condition>.json`` and their predictions) as W&B artifacts.

Checkpoints reach W&B through Lightning's own ``WandbLogger(log_model=...)``; this module adds the results files a
test writes, under the same switch, so a run's figures can be fetched from W&B beside the weights they came from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from multimodal_fer.callbacks.results_writer import predictions_path

#: W&B artifact type of results files.
RESULTS_ARTIFACT_TYPE = "results"


def uploads_artifacts(logger: Any) -> bool:
    """Whether a W&B logger was asked to upload checkpoints (``log_model`` true or ``"all"``, online only)."""
    return bool(getattr(logger, "_log_model", False))


def results_artifact_name(run_id: str) -> str:
    """The artifact that collects a W&B run's results files: ``results-<run id>`` (W&B's allowed characters)."""
    return "results-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def log_results_artifact(experiment: Any, wandb: Any, results: Path, condition: str) -> Any:
    """Upload a results file, and its predictions file where there is one, as a new version of the run's artifact.

    Args:
        experiment: the W&B run (``WandbLogger.experiment``).
        wandb: the imported ``wandb`` module.
        results: the results file the test wrote.
        condition: its test condition, added to the version's aliases (``test``, ``test-withheld-audio``, ...).

    Returns:
        The logged ``wandb.Artifact``.
    """
    artifact = wandb.Artifact(
        results_artifact_name(str(experiment.id)),
        type=RESULTS_ARTIFACT_TYPE,
        description="multimodal-fer results files: metrics, config, cache fingerprint, versions, seed",
        metadata={"condition": condition, "file": results.name},
    )
    artifact.add_file(str(results), name=results.name)
    predictions = predictions_path(results)
    if predictions.is_file():
        artifact.add_file(str(predictions), name=predictions.name)
    alias = re.sub(r"[^A-Za-z0-9_.-]+", "_", condition)
    return experiment.log_artifact(artifact, aliases=["latest", alias])
