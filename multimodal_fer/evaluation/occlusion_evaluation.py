"""Evaluate one seed's recognisers (and restorer) on an occlusion split; keep every per-sample output.

For each recogniser and each of its conditions (:mod:`~multimodal_fer.evaluation.occlusion_spec`) the expression
logits, AU logits and affect dimensions of every face are kept as a
:class:`~multimodal_fer.evaluation.subject_bootstrap.SamplePredictions` (the subject being the bootstrap unit of
:func:`~multimodal_fer.evaluation.occlusion_inputs.bootstrap_units`), and the restorer's quality (PSNR of the occluded
region, whole-face PSNR and SSIM, mask IoU; blind, per fill and per occlusion kind) is measured on the way.
:func:`save_seed` writes it all to one npz, so every table can be rebuilt without the models.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from multimodal_fer.benchmarking.run_lookup import best_checkpoint
from multimodal_fer.errors import DataError
from multimodal_fer.evaluation.occlusion_inputs import OcclusionSplit, condition_faces
from multimodal_fer.evaluation.occlusion_spec import SELECTIVE_CONDITION, BenchmarkSpec, SeedRuns
from multimodal_fer.evaluation.subject_bootstrap import SamplePredictions
from multimodal_fer.metrics import RestorationMetrics
from multimodal_fer.standardization import unit_range_face
from multimodal_fer.types import LabelSpace

#: Per-sample outputs of one seed: pipeline (``"<label> <condition>"``) → predictions.
SeedPredictions = dict[str, SamplePredictions]
#: Restoration quality of one seed: group → metric (``restoration/psnr_occluded``, ``fill/telea/...``) → value.
RestorationQuality = dict[str, dict[str, float]]
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SeedEvaluation:
    """Everything one seed's evaluation measured.

    Attributes:
        seed: the seed.
        predictions: pipeline → per-sample outputs.
        restoration: restoration quality per group (empty without a restorer).
        checkpoints: model label (``restorer`` for the restorer) → the checkpoint evaluated.
        predicted_share: (N,) the share of each occluded face's pixels the restorer's mask network marks (what its
            area rules, and the selective-restoration scan, compare); None without a restorer (or from a file
            written before it was kept).
    """

    seed: int
    predictions: SeedPredictions
    restoration: RestorationQuality
    checkpoints: dict[str, str]
    predicted_share: np.ndarray | None = None


def check_recogniser(label: str, checkpoint: Path, model: nn.Module, image_size: int, split: OcclusionSplit) -> None:
    """Refuse a recogniser that cannot read the split's faces or predicts another label space.

    Raises:
        DataError: no face encoder, another image size, or another label space.
    """
    if "face" not in getattr(model, "encoders", {}):
        raise DataError(f"Recogniser {label} ({checkpoint}) has no face encoder; give a face-capable FER run.")
    if image_size and image_size != split.image_size:
        raise DataError(
            f"Recogniser {label} ({checkpoint}) was trained on {image_size}-pixel faces but the occlusion split "
            f"{split.root} holds {split.image_size}-pixel faces: build the split from the cache the recogniser was "
            f"trained on (mfer occlusion-split --config <its config>), or refit the recogniser at {split.image_size} "
            "pixels."
        )
    space: LabelSpace = model.label_space
    if space.to_dict() != split.label_space.to_dict():
        raise DataError(
            f"Recogniser {label} ({checkpoint}) predicts the label space {space.to_dict()} but the occlusion split "
            f"{split.root} is labelled in {split.label_space.to_dict()}: evaluate it on an occlusion split of the "
            "data set it was trained on (mfer occlusion-split --config <its config>)."
        )


def check_restorer(restorer: nn.Module, checkpoint: Path, split: OcclusionSplit) -> None:
    """Refuse a restorer trained at another image size than the split's faces.

    Raises:
        DataError: the sizes differ.
    """
    trained = int(restorer.image_size)
    if trained and trained != split.image_size:
        raise DataError(
            f"The restorer {checkpoint} was trained on {trained}-pixel faces but the occlusion split {split.root} "
            f"holds {split.image_size}-pixel faces: train a restorer at {split.image_size} pixels (mfer fit --config "
            f"configs/restoration/synthaffect.yaml --data.init_args.image_size={split.image_size}) or use a split of "
            f"{trained}-pixel faces."
        )


def load_seed_models(
    spec: BenchmarkSpec, seed: SeedRuns, split: OcclusionSplit
) -> tuple[dict[str, nn.Module], nn.Module | None, dict[str, str]]:
    """Load and check one seed's recognisers and restorer.

    Returns:
        ``(recognisers by label, restorer or None, checkpoints by label)``.

    Raises:
        RunLookupError: a run folder without a finished best checkpoint (the message says how to finish it).
        DataError: a model that does not fit the split, or no restorer where restored conditions are asked for.
    """
    from multimodal_fer.models.restoration import load_restorer
    from multimodal_fer.tasks.recogniser_loading import load_fer_model

    checkpoints: dict[str, str] = {}
    restorer = None
    if spec.needs_restorer():
        if seed.restorer is None:
            raise DataError(
                f"Seed {seed.seed} names no restorer, but restored conditions or fills are asked for: add "
                "'restorer: <restoration run folder>' to the seed, or drop the restored conditions and fills."
            )
        restorer_checkpoint = best_checkpoint(seed.restorer)
        restorer = load_restorer(restorer_checkpoint)
        check_restorer(restorer, restorer_checkpoint, split)
        checkpoints["restorer"] = str(restorer_checkpoint)
    recognisers: dict[str, nn.Module] = {}
    for entry in spec.recognisers:
        checkpoint = best_checkpoint(seed.runs[entry.label])
        model, image_size = load_fer_model(checkpoint)
        check_recogniser(entry.label, checkpoint, model, image_size, split)
        recognisers[entry.label] = model.eval()
        checkpoints[entry.label] = str(checkpoint)
    return recognisers, restorer, checkpoints


@torch.no_grad()
def evaluate_seed(
    spec: BenchmarkSpec,
    seed: int,
    split: OcclusionSplit,
    recognisers: Mapping[str, nn.Module],
    restorer: nn.Module | None,
    checkpoints: Mapping[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SeedEvaluation:
    """Run every recogniser on its conditions over the whole split, and measure the restorer.

    Args:
        spec: what to evaluate (recognisers, conditions, fills, batch size).
        seed: the seed's number (recorded).
        split: the occlusion split.
        recognisers: label → model in eval mode (:func:`load_seed_models`).
        restorer: the seed's restorer, or None.
        checkpoints: label → checkpoint path (recorded).
        progress: called with (faces done, total).
    """
    wanted = {c for r in spec.recognisers for c in r.expanded_conditions(spec.fills)}
    if restorer is not None:
        wanted |= {"restored"}
    groups = split.groups()
    fills = ("generator", *spec.fills)
    quality = {(g, f): RestorationMetrics("test") for g in groups for f in fills} if restorer is not None else {}
    outputs: dict[str, dict[str, list[np.ndarray]]] = {p: {} for p in spec.pipelines()}
    shares: list[np.ndarray] = []
    total = split.num_faces
    for start in range(0, total, spec.batch_size):
        rows = slice(start, min(start + spec.batch_size, total))
        occluded_u8, clean_u8, true_mask = split.faces(rows)
        faces = condition_faces(occluded_u8, clean_u8, true_mask, restorer, spec.fills, wanted)
        present = {"face": torch.ones(occluded_u8.shape[0], dtype=torch.bool)}
        for entry in spec.recognisers:
            model = recognisers[entry.label]
            for condition in entry.expanded_conditions(spec.fills):
                if condition == SELECTIVE_CONDITION:
                    face_input = faces.selective(float(entry.max_occluded_fraction or 1.0))
                else:
                    face_input = faces.inputs[condition]
                heads = model({"face": face_input}, present).heads
                stored = outputs[f"{entry.label} {condition}"]
                for task, value in heads.items():
                    stored.setdefault(task, []).append(value.float().cpu().numpy())
        if faces.predicted_share is not None:
            shares.append(faces.predicted_share.float().cpu().numpy())
        if restorer is not None and faces.predicted_mask is not None:
            unit_occluded = unit_range_face(faces.occluded, faces.statistics)
            unit_clean = clean_u8.float() / 255.0
            batch_rows = np.arange(rows.start, rows.stop)
            for fill in fills:
                unit_restored = unit_range_face(faces.blind[fill], faces.statistics)
                for group, index in groups.items():
                    keep = torch.from_numpy(np.isin(batch_rows, index))
                    if keep.any():
                        quality[group, fill].update(
                            unit_restored[keep],
                            unit_occluded[keep],
                            unit_clean[keep],
                            true_mask[keep],
                            faces.predicted_mask[keep],
                        )
        if progress:
            progress(rows.stop, total)
    predictions = {
        pipeline: SamplePredictions(
            index=np.arange(total),
            subject=split.units,
            targets=split.targets,
            outputs={task: np.concatenate(chunks) for task, chunks in by_task.items()},
            label_space=split.label_space,
            source=f"seed {seed}, {pipeline}",
        )
        for pipeline, by_task in outputs.items()
    }
    restoration: RestorationQuality = {}
    for (group, fill), metrics in quality.items():
        prefix = "" if fill == "generator" else f"fill/{fill}/"
        entry = restoration.setdefault(group, {"faces": float(groups[group].size)})
        for key, value in metrics.compute().items():
            if fill == "generator" or key.startswith("test/restoration/"):
                entry[prefix + key.removeprefix("test/")] = float(value)
    predicted_share = np.concatenate(shares) if shares else None
    return SeedEvaluation(seed, predictions, restoration, dict(checkpoints or {}), predicted_share)


def save_seed(
    evaluation: SeedEvaluation,
    path: str | Path,
    unit_note: str,
    kinds: np.ndarray,
    provenance: dict[str, Any] | None = None,
    decisions_only: bool = False,
) -> Path:
    """Write one seed's predictions, restoration quality and checkpoints to an npz (atomically).

    Args:
        evaluation: what :func:`evaluate_seed` returned.
        path: the npz to write.
        unit_note: how the bootstrap units were chosen.
        kinds: (N,) occlusion kind of each face.
        provenance: how and where it was evaluated (command, commit, machine, time), kept for the summary.
        decisions_only: keep, instead of the logits, what the benchmark's metrics read of them: the expression class
            (argmax, (N,) uint8) and each AU's decision (logit > 0, (N, K) bool), compressed. Affect dimensions stay
            as they are. Every table is the same to the last digit (macro-F1 reads the argmax, AU F1 the sign of
            the logit); the file is about a tenth of the size, small enough to publish beside the tables, but holds
            no scores for other metrics (calibration, AUC).
    """
    path = Path(path)
    pipelines = list(evaluation.predictions)
    first = evaluation.predictions[pipelines[0]]
    catalogue = {
        "format_version": _FORMAT_VERSION,
        "seed": evaluation.seed,
        "pipelines": pipelines,
        "label_space": first.label_space.to_dict(),
        "unit_note": unit_note,
        "restoration": evaluation.restoration,
        "checkpoints": evaluation.checkpoints,
        "provenance": provenance or {},
        "outputs": "decisions" if decisions_only else "logits",
    }
    if decisions_only and "expr" in first.outputs:
        catalogue["expression_classes"] = int(first.outputs["expr"].shape[1])
    arrays: dict[str, np.ndarray] = {
        "catalogue": np.array(json.dumps(catalogue)),
        "index": first.index,
        "subject": first.subject,
        "occlusion_type": np.asarray(kinds),
        **{f"target_{task}": value for task, value in first.targets.items()},
    }
    if evaluation.predicted_share is not None:
        arrays["predicted_share"] = evaluation.predicted_share.astype(np.float32)
    for number, pipeline in enumerate(pipelines):
        for task, value in evaluation.predictions[pipeline].outputs.items():
            if decisions_only and task == "expr":
                arrays[f"p{number}_class_{task}"] = value.argmax(axis=1).astype(np.uint8)
            elif decisions_only and task == "au":
                arrays[f"p{number}_on_{task}"] = value > 0.0
            else:
                arrays[f"p{number}_output_{task}"] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    (np.savez_compressed if decisions_only else np.savez)(partial, **arrays)  # type: ignore[operator]
    partial.replace(path)
    return path


def compact_seed(source: str | Path, destination: str | Path) -> Path:
    """Rewrite a seed's predictions file with decisions only (:func:`save_seed`'s ``decisions_only``).

    Args:
        source: an npz written by :func:`save_seed`.
        destination: the compact npz to write (may be ``source``).

    Returns:
        ``destination``.
    """
    saved = load_seed(source)
    return save_seed(saved.evaluation, destination, saved.unit_note, saved.kinds, saved.provenance, decisions_only=True)


def _outputs_from_decisions(arrays: Mapping[str, np.ndarray], prefix: str, classes: int) -> dict[str, np.ndarray]:
    """Logits that give back the stored decisions: a one-hot expression (argmax = the class), AU logits of ±1."""
    outputs: dict[str, np.ndarray] = {}
    if f"{prefix}class_expr" in arrays:
        predicted = arrays[f"{prefix}class_expr"].astype(np.int64)
        outputs["expr"] = np.eye(classes, dtype=np.float32)[predicted]
    if f"{prefix}on_au" in arrays:
        outputs["au"] = np.where(arrays[f"{prefix}on_au"], 1.0, -1.0).astype(np.float32)
    return outputs


@dataclass(frozen=True)
class SavedSeed:
    """One seed read back from :func:`save_seed`'s npz.

    Attributes:
        evaluation: predictions, restoration quality and checkpoints.
        kinds: (N,) occlusion kind of each face.
        unit_note: how the bootstrap units were chosen.
        provenance: how and where it was evaluated (empty for files written without it).
    """

    evaluation: SeedEvaluation
    kinds: np.ndarray
    unit_note: str
    provenance: dict[str, Any] = field(default_factory=dict)


def load_seed(path: str | Path) -> SavedSeed:
    """Read an npz written by :func:`save_seed`.

    Raises:
        FileNotFoundError: no such file.
        DataError: a file of another format version, or not written by :func:`save_seed`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: evaluate that seed first (mfer occlusion-benchmark SPEC without --report-only)."
        )
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    if "catalogue" not in arrays:
        raise DataError(f"{path} is not an occlusion-benchmark predictions file (no catalogue); evaluate again.")
    catalogue = json.loads(str(arrays["catalogue"]))
    if catalogue.get("format_version") != _FORMAT_VERSION:
        raise DataError(
            f"{path} is of format version {catalogue.get('format_version')}, not {_FORMAT_VERSION}; evaluate again "
            "(mfer occlusion-benchmark SPEC without --report-only)."
        )
    label_space = LabelSpace.from_dict(catalogue["label_space"])
    targets = {k.removeprefix("target_"): v for k, v in arrays.items() if k.startswith("target_")}
    predictions: SeedPredictions = {}
    for number, pipeline in enumerate(catalogue["pipelines"]):
        prefix = f"p{number}_output_"
        outputs = {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
        if catalogue.get("outputs") == "decisions":
            outputs.update(_outputs_from_decisions(arrays, f"p{number}_", int(catalogue.get("expression_classes", 0))))
        predictions[pipeline] = SamplePredictions(
            arrays["index"], arrays["subject"], targets, outputs, label_space, f"{path} ({pipeline})"
        )
    evaluation = SeedEvaluation(
        int(catalogue["seed"]),
        predictions,
        catalogue["restoration"],
        dict(catalogue["checkpoints"]),
        arrays.get("predicted_share"),
    )
    provenance = catalogue.get("provenance") or {}
    return SavedSeed(evaluation, arrays["occlusion_type"], str(catalogue["unit_note"]), provenance)
