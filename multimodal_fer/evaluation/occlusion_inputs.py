"""An occlusion split opened for evaluation, and the faces of every condition a recogniser is evaluated on.

The split is any cache written by ``mfer occlusion-split`` (:mod:`multimodal_fer.preprocessing.occlusion_split_cache`):
``face`` (occluded), ``face_clean``, ``occlusion_mask``, ``occlusion_type``, ``source_index`` and the source's label
fields. The bootstrap resamples *units* (:attr:`OcclusionSplit.units`): the source's subjects where it records them,
so every face of a drawn subject, with all its occluded versions, enters a draw together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from multimodal_fer.errors import DataError
from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES
from multimodal_fer.preprocessing.cache import CacheReader
from multimodal_fer.standardization import face_statistics, normalize_face, restandardize
from multimodal_fer.types import EXPR_UNLABELED, LabelSpace

#: Fields every occlusion split holds.
SPLIT_FIELDS: tuple[str, ...] = ("face", "face_clean", "occlusion_mask", "occlusion_type", "source_index")
_SPLIT_HINT = "build one with `mfer occlusion-split --config <the data set's config> --split test`"


@dataclass(frozen=True)
class OcclusionSplit:
    """An occlusion split read for evaluation.

    Attributes:
        root: the split's folder.
        reader: its cache reader.
        label_space: the source data set's label space.
        image_size: side of its faces in pixels.
        kinds: (N,) occlusion kind of each face (index into ``OCCLUSION_TYPES``).
        units: (N,) the bootstrap's resampling unit of each face.
        unit_note: how the units were chosen (written into the summary).
        targets: labels by task present in both the label space and the split: ``expr`` (N,) with -1 unlabeled,
            ``au`` (N, K) and ``va`` (N, D) with NaN unlabeled.
    """

    root: Path
    reader: CacheReader
    label_space: LabelSpace
    image_size: int
    kinds: np.ndarray
    units: np.ndarray
    unit_note: str
    targets: dict[str, np.ndarray]

    @property
    def num_faces(self) -> int:
        """Number of faces N."""
        return int(self.kinds.size)

    def groups(self) -> dict[str, np.ndarray]:
        """``all`` and each occlusion kind present → int64 row indices."""
        found = {"all": np.arange(self.num_faces)}
        for index, kind in enumerate(OCCLUSION_TYPES):
            rows = np.flatnonzero(self.kinds == index)
            if rows.size:
                found[kind] = rows
        return found

    def faces(self, rows: slice) -> tuple[Tensor, Tensor, Tensor]:
        """Occluded and clean faces, uint8 (B, 3, H, W), and the true masks, float (B, 1, H, W) in {0, 1}."""
        array = self.reader.array
        occluded = torch.from_numpy(np.array(array("face")[rows]))
        clean = torch.from_numpy(np.array(array("face_clean")[rows]))
        mask = torch.from_numpy(np.array(array("occlusion_mask")[rows])).float()
        return occluded, clean, mask


def bootstrap_units(reader: CacheReader) -> tuple[np.ndarray, str]:
    """The resampling unit of each face of a split, and a note saying what it is.

    The source's subject where the split records one; where the source gives every image its own subject (RAF-DB,
    FER2013, AffectNet: people are not identified), the unit is one image with all its occluded versions, which is
    said; without a subject field the source image (``source_index``) is the unit.
    """
    source = np.asarray(reader.array("source_index"))
    if "subject" not in reader.specs:
        return source.copy(), (
            "The split records no subject: the bootstrap draws source images (each with all its occluded versions) "
            "as independent units; faces of one person in several images are then treated as independent."
        )
    subject = np.asarray(reader.array("subject"))
    subjects, images = np.unique(subject).size, np.unique(source).size
    if subjects == images:
        return subject.copy(), (
            f"Every source image is its own subject ({images} images; the data set identifies no people): the "
            "bootstrap draws images, each with all its occluded versions, as independent units."
        )
    return subject.copy(), f"The bootstrap draws the split's {subjects} test subjects (all their faces together)."


def _targets(reader: CacheReader, label_space: LabelSpace, count: int) -> dict[str, np.ndarray]:
    targets: dict[str, np.ndarray] = {}
    if label_space.num_expressions:
        targets["expr"] = (
            np.asarray(reader.array("expr")).astype(np.int64)
            if "expr" in reader.specs
            else np.full(count, EXPR_UNLABELED, np.int64)
        )
    for task, size in (("au", label_space.num_action_units), ("va", label_space.num_dimensions)):
        if size:
            targets[task] = (
                np.asarray(reader.array(task)).astype(np.float64).reshape(count, size)
                if task in reader.specs
                else np.full((count, size), np.nan)
            )
    return targets


def open_occlusion_split(root: str | Path) -> OcclusionSplit:
    """Open an occlusion split for evaluation.

    Raises:
        CorruptCacheError: no complete cache at ``root``.
        DataError: a cache that is not an occlusion split (no occlusion fields), or one without a label space.
    """
    root = Path(root)
    reader = CacheReader(root, rebuild_hint=_SPLIT_HINT)
    missing = [name for name in SPLIT_FIELDS if name not in reader.specs]
    if missing:
        raise DataError(
            f"{root} is a cache without the occlusion fields {missing}: it is not an occlusion split. Point the "
            f"benchmark at one instead: {_SPLIT_HINT} (it writes <cache root>_occluded_test)."
        )
    recorded = reader.manifest.get("label_space")
    if recorded is None:
        raise DataError(f"The occlusion split {root} records no label space; rebuild it: {_SPLIT_HINT}.")
    label_space = LabelSpace.from_dict(recorded)
    units, note = bootstrap_units(reader)
    kinds = np.asarray(reader.array("occlusion_type")).astype(np.int64)
    return OcclusionSplit(
        root=root,
        reader=reader,
        label_space=label_space,
        image_size=int(reader.specs["face"].shape[-1]),
        kinds=kinds,
        units=units,
        unit_note=note,
        targets=_targets(reader, label_space, kinds.size),
    )


@dataclass(frozen=True)
class ConditionFaces:
    """The faces of one batch under every condition asked for.

    Attributes:
        inputs: condition → standardised faces (B, 3, H, W), as the recognisers read them.
        blind: fill (``generator`` or a trivial fill) → blindly restored faces (B, 3, H, W), standardised with the
            occluded faces' statistics (before re-standardisation), for restoration quality.
        predicted_mask: (B, 1, H, W) the mask the restorer used blindly; None without a restorer.
        occluded: (B, 3, H, W) the occluded faces, standardised per image.
        statistics: the occluded faces' per-image (mean, std), each (B, 1, 1, 1).
        predicted_share: (B,) the share of each face's pixels the restorer's mask network marks (what its area rules
            compare); None without a restorer.
    """

    inputs: dict[str, Tensor]
    blind: dict[str, Tensor]
    predicted_mask: Tensor | None
    occluded: Tensor
    statistics: tuple[Tensor, Tensor]
    predicted_share: Tensor | None = None

    def selective(self, max_occluded_fraction: float) -> Tensor:
        """The occluded faces restored only where the predicted occluded share is at most ``max_occluded_fraction``.

        Exactly what a recogniser behind the restorer reads when the restorer's ``max_occluded_fraction`` is set
        (its other faces pass unchanged and are standardised again, as the face encoder does): (B, 3, H, W).

        Raises:
            DataError: the batch was built without a restorer or without the ``restored`` condition.
        """
        if self.predicted_share is None or "restored" not in self.inputs:
            raise DataError("Selective restoration needs the blind restoration of the batch (a restorer).")
        keep = (self.predicted_share <= max_occluded_fraction).view(-1, 1, 1, 1)
        return torch.where(keep, self.inputs["restored"], restandardize(self.occluded))


def condition_faces(
    occluded_u8: Tensor,
    clean_u8: Tensor,
    true_mask: Tensor,
    restorer: nn.Module | None,
    fills: Sequence[str],
    wanted: set[str],
) -> ConditionFaces:
    """Build the input of every wanted condition for one batch.

    ``restored`` / ``restored_true_mask`` are the restorer's generator behind its predicted / the true masks;
    ``clean_restored`` the clean faces through the blind restorer (nothing to restore: its false alarms);
    ``restored_<fill>`` / ``restored_<fill>_true_mask`` the same mask network, thresholds and compositing with a
    trivial fill. Restored faces are standardised again per image, as the data modules standardise faces.

    Args:
        occluded_u8: uint8 (B, 3, H, W) occluded faces.
        clean_u8: uint8 (B, 3, H, W) the same faces without occluders.
        true_mask: float (B, 1, H, W) the occluders' masks.
        restorer: a :class:`~multimodal_fer.models.restoration.FaceRestorer` (its ``fill`` is set here and put back),
            or None when no restored condition is wanted.
        fills: the trivial fills to evaluate.
        wanted: the conditions asked for.

    Raises:
        DataError: a restored condition is wanted but no restorer is given.
    """
    statistics = face_statistics(occluded_u8)
    occluded = normalize_face(occluded_u8, statistics)
    inputs = {"clean": normalize_face(clean_u8), "occluded": occluded}
    restored_wanted = any(c.startswith("restored") or c == "clean_restored" for c in wanted)
    if not restored_wanted:
        return ConditionFaces({k: v for k, v in inputs.items() if k in wanted}, {}, None, occluded, statistics)
    if restorer is None:
        raise DataError("Restored conditions need a restorer: give each seed's restorer run folder (restorer: ...).")
    original = restorer.fill
    blind: dict[str, Tensor] = {}
    predicted_mask = predicted_share = None
    try:
        for fill, suffix in (("generator", ""), *((f, f"_{f}") for f in fills)):
            restorer.fill = fill
            out = restorer(occluded)
            blind[fill] = out["restored"]
            if predicted_mask is None:
                predicted_mask, predicted_share = out["mask"], restorer.occluded_share(out["mask_logits"])
            inputs[f"restored{suffix}"] = restandardize(out["restored"])
            if f"restored{suffix}_true_mask" in wanted:
                inputs[f"restored{suffix}_true_mask"] = restandardize(restorer(occluded, true_mask)["restored"])
        if "clean_restored" in wanted:  # the blind restorer's false alarms on faces with nothing to restore
            restorer.fill = "generator"
            clean = normalize_face(clean_u8, face_statistics(clean_u8))
            inputs["clean_restored"] = restandardize(restorer(clean)["restored"])
    finally:
        restorer.fill = original
    return ConditionFaces(
        {k: v for k, v in inputs.items() if k in wanted}, blind, predicted_mask, occluded, statistics, predicted_share
    )
