"""Choose a finished restorer's mask operating point on validation faces, by what a recogniser reads there.

A blind restorer turns its mask network's probabilities into the region it fills with two numbers fixed before
training: the threshold on the probability and the dilation that grows the thresholded mask (it covered the edges
of masks predicted at half resolution). Neither was chosen for recognition. Filling more than the occluder erases
visible evidence; filling less leaves occluder pixels in the face. :func:`calibrate_restorer` scores every
(threshold, dilation) of a grid by one recogniser's expression macro-F1 on the blindly restored faces of an
occlusion split of the **validation** subjects (``mfer occlusion-split --split val``) and writes a copy of the
restorer with the best one as a run folder of its own, so everything that loads a restorer from a run folder or a
checkpoint (the face encoder's ``restorer``, ``mfer occlusion-benchmark``) uses it unchanged. The weights are not
touched. Given several checkpoints (a fine-tuning's best by its in-training score and its last, say), every
setting of each is scored and the best pair wins: the checkpoint is chosen by the same judge, faces and operating
point as the setting, not by a score measured during training at the setting the restorer was trained with. The
recogniser should be the restorer's own judge (its ``recogniser_critic``): then nothing that is evaluated on the test
subjects takes part in the choice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.functional.classification import multiclass_f1_score

from multimodal_fer.benchmarking.run_lookup import best_checkpoint
from multimodal_fer.errors import DataError
from multimodal_fer.evaluation.occlusion_evaluation import check_recogniser, check_restorer
from multimodal_fer.evaluation.occlusion_inputs import OcclusionSplit, open_occlusion_split
from multimodal_fer.run_folder import CHECKPOINTS, RUN_RECORD, RunFolder
from multimodal_fer.standardization import face_statistics, normalize_face, restandardize

#: What the calibration writes beside the calibrated restorer in its run folder.
CALIBRATION_JSON = "calibration.json"
#: The calibrated restorer's file in the run folder's checkpoints.
CALIBRATED_CHECKPOINT = "restorer.ckpt"
#: The default grid: thresholds on the mask probability and dilations in pixels.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9)
DEFAULT_DILATIONS: tuple[int, ...] = (0, 1)


@dataclass(frozen=True)
class OperatingPoint:
    """One mask setting and the recogniser's expression macro-F1 on the faces restored with it.

    Attributes:
        threshold: probability above which a pixel counts as occluded.
        dilation: pixels by which the thresholded mask grows.
        f1_macro: expression macro-F1 of the recogniser on the blindly restored faces.
    """

    threshold: float
    dilation: int
    f1_macro: float


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate_restorer` measured and chose.

    Attributes:
        chosen: the best operating point (ties go to the restorer's own setting, then to the earlier grid entry).
        trained: the restorer's own setting, scored the same way.
        grid: every operating point scored (the restorer's own setting too), by threshold, then dilation.
        occluded_f1: the recogniser's macro-F1 on the occluded faces (nothing restored), for scale.
        faces: faces of the split scored.
        restorer: the checkpoint calibrated (the chosen one of ``candidates``).
        recogniser: the judging recogniser's checkpoint.
        split: the occlusion split's folder.
        candidates: every checkpoint offered, in the order given, each with its own best and trained setting
            (``{"restorer": path, "chosen": point, "trained": point}``); one entry when one was given.
    """

    chosen: OperatingPoint
    trained: OperatingPoint
    grid: list[OperatingPoint]
    occluded_f1: float
    faces: int
    restorer: str
    recogniser: str
    split: str
    candidates: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


def _checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a run folder's best checkpoint."""
    path = Path(path)
    return path if path.is_file() else best_checkpoint(path)


def _macro_f1(predicted: Tensor, target: Tensor, classes: int) -> float:
    keep = target >= 0
    return float(multiclass_f1_score(predicted[keep], target[keep], num_classes=classes, average="macro"))


@torch.no_grad()
def score_operating_points(
    restorer: nn.Module,
    recogniser: nn.Module,
    split: OcclusionSplit,
    points: Sequence[tuple[float, int]],
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[OperatingPoint], float]:
    """The recogniser's expression macro-F1 on the split's faces restored blindly at each operating point.

    Args:
        restorer: a :class:`~multimodal_fer.models.restoration.FaceRestorer` in eval mode; its threshold and dilation
            are set for each point and put back afterwards.
        recogniser: a face-capable FER model in eval mode.
        split: the occlusion split (with expression labels).
        points: (threshold, dilation) pairs.
        batch_size: faces per forward pass.
        progress: called with (faces done, total).

    Returns:
        ``(scores in the order of points, macro-F1 on the occluded faces)``.

    Raises:
        DataError: the split has no expression labels.
    """
    if "expr" not in split.targets:
        raise DataError(
            f"The occlusion split {split.root} has no expression labels: the mask setting is chosen by expression "
            "macro-F1; build the split from a data set with expression labels."
        )
    classes = len(split.label_space.expressions)
    original = (restorer.mask_threshold, restorer.mask_dilation)
    decisions: list[list[Tensor]] = [[] for _ in points]
    occluded_decisions: list[Tensor] = []
    try:
        for start in range(0, split.num_faces, batch_size):
            rows = slice(start, min(start + batch_size, split.num_faces))
            occluded_u8, _, _ = split.faces(rows)
            occluded = normalize_face(occluded_u8, face_statistics(occluded_u8))
            present = {"face": torch.ones(occluded.shape[0], dtype=torch.bool)}
            occluded_decisions.append(recogniser({"face": occluded}, present).heads["expr"].argmax(-1))
            for index, (threshold, dilation) in enumerate(points):
                restorer.mask_threshold, restorer.mask_dilation = float(threshold), int(dilation)
                restored = restandardize(restorer(occluded)["restored"])
                decisions[index].append(recogniser({"face": restored}, present).heads["expr"].argmax(-1))
            if progress:
                progress(rows.stop, split.num_faces)
    finally:
        restorer.mask_threshold, restorer.mask_dilation = original
    target = torch.from_numpy(np.asarray(split.targets["expr"])).long()
    scores = [
        OperatingPoint(float(t), int(d), _macro_f1(torch.cat(chunks), target, classes))
        for (t, d), chunks in zip(points, decisions, strict=True)
    ]
    return scores, _macro_f1(torch.cat(occluded_decisions), target, classes)


def _check_grid(thresholds: Sequence[float], dilations: Sequence[int]) -> None:
    if not thresholds or not dilations:
        raise ValueError("Give at least one threshold and one dilation to choose from.")
    for threshold in thresholds:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"Mask thresholds must lie in (0, 1), got {threshold}.")
    for dilation in dilations:
        if dilation < 0:
            raise ValueError(f"Mask dilations must be >= 0 pixels, got {dilation}.")


def calibrate_restorer(
    restorer_path: str | Path | Sequence[str | Path],
    recogniser_path: str | Path,
    split_root: str | Path,
    output: str | Path,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    dilations: Sequence[int] = DEFAULT_DILATIONS,
    overwrite: bool = False,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> Calibration:
    """Choose a restorer's mask setting (and, given several, its checkpoint) on an occlusion split; write the copy.

    The output is a run folder: ``checkpoints/restorer.ckpt`` (the same weights with the chosen setting, and the
    restoration fit's discriminator when its checkpoint has one, for the joint fine-tuning; readable by
    :func:`~multimodal_fer.models.restoration.load_restorer`), ``calibration.json`` (every point scored) and
    ``run.json`` naming the checkpoint as the best one, so a run-folder path works wherever a restoration run does.

    Args:
        restorer_path: a restoration run folder or checkpoint, or several: every setting of each is scored and the
            best (checkpoint, setting) is written (a tie goes to the earlier checkpoint).
        recogniser_path: the judging recogniser's run folder or checkpoint (best: the restorer's own critic).
        split_root: an occlusion split of subjects the test does not use (``mfer occlusion-split --split val``).
        output: the calibrated restorer's run folder.
        thresholds: mask probability thresholds to try, each in (0, 1).
        dilations: dilations to try, in pixels (>= 0).
        overwrite: replace an existing calibration in ``output``.
        batch_size: faces per forward pass.
        progress: called with (faces done, total).

    Raises:
        FileExistsError: ``output`` holds a run and ``overwrite`` is False.
        DataError: a model that does not fit the split, or a split without expression labels.
        ValueError: an empty grid or a value outside its range, or no restorer.
    """
    from multimodal_fer.models.restoration import load_restorer
    from multimodal_fer.models.restoration.discriminator_loading import DISCRIMINATOR_PREFIX, discriminator_weights
    from multimodal_fer.models.restoration.restorer import RESTORER_CHECKPOINT_KEY
    from multimodal_fer.tasks.recogniser_loading import load_fer_model

    _check_grid(thresholds, dilations)
    output = Path(output)
    if (output / RUN_RECORD).exists() and not overwrite:
        raise FileExistsError(
            f"{output} already holds a calibrated restorer ({output / CALIBRATION_JSON}); pass --overwrite to "
            "calibrate again, or give another --output."
        )
    paths = [restorer_path] if isinstance(restorer_path, str | Path) else list(restorer_path)
    if not paths:
        raise ValueError("Give at least one restorer (a restoration run folder or checkpoint) to calibrate.")
    split = open_occlusion_split(split_root)
    recogniser_checkpoint = _checkpoint(recogniser_path)
    recogniser, image_size = load_fer_model(recogniser_checkpoint)
    check_recogniser("judge", recogniser_checkpoint, recogniser, image_size, split)
    recogniser.eval()
    best: tuple[OperatingPoint, Path, Any, list[OperatingPoint]] | None = None
    candidates: list[dict[str, Any]] = []
    for path in paths:
        checkpoint = _checkpoint(path)
        candidate = load_restorer(checkpoint)
        check_restorer(candidate, checkpoint, split)
        trained = (candidate.mask_threshold, candidate.mask_dilation)
        points = [trained] + [(float(t), int(d)) for t in thresholds for d in dilations if (t, d) != trained]
        scored, occluded_f1 = score_operating_points(candidate, recogniser, split, points, batch_size, progress)
        top = max(scored, key=lambda p: p.f1_macro)  # the first maximum: the trained setting wins a tie
        candidates.append({"restorer": str(checkpoint.resolve()), "chosen": asdict(top), "trained": asdict(scored[0])})
        if best is None or top.f1_macro > best[0].f1_macro:  # a tie keeps the earlier checkpoint
            best = (top, checkpoint, candidate, scored)
    assert best is not None
    chosen, restorer_checkpoint, restorer, scored = best
    calibration = Calibration(
        chosen=chosen,
        trained=scored[0],
        grid=sorted(scored, key=lambda p: (p.threshold, p.dilation)),
        occluded_f1=occluded_f1,
        faces=split.num_faces,
        restorer=str(restorer_checkpoint.resolve()),
        recogniser=str(recogniser_checkpoint.resolve()),
        split=str(Path(split_root).resolve()),
        candidates=candidates,
    )
    restorer.mask_threshold, restorer.mask_dilation = chosen.threshold, chosen.dilation
    folder = RunFolder(output.parent.parent, output.parent.name, output.name)
    folder.checkpoints.mkdir(parents=True, exist_ok=True)
    record = calibration.to_dict()
    content: dict[str, Any] = {RESTORER_CHECKPOINT_KEY: restorer.export(), "calibration": record}
    discriminator = discriminator_weights(restorer_checkpoint)
    if discriminator:  # the joint fine-tuning (face_restorer_joint.yaml) starts from the trained discriminator
        content["state_dict"] = {DISCRIMINATOR_PREFIX + key: value for key, value in discriminator.items()}
    torch.save(content, folder.checkpoints / CALIBRATED_CHECKPOINT)
    (output / CALIBRATION_JSON).write_text(json.dumps(record, indent=2))
    folder.write_record(
        {
            "experiment": output.parent.name,
            "name": output.name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "calibrated_from": str(restorer_checkpoint.resolve()),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "best_checkpoint": f"{CHECKPOINTS}/{CALIBRATED_CHECKPOINT}",
            "best_score": chosen.f1_macro,
            "monitor": "calibration/f1_macro",
        }
    )
    return calibration
