"""Restore occluded faces in one's own images with a trained restorer (``mfer restore``).

Each image (or a video's middle frame) becomes the aligned face crop the restorer works on: found and aligned by
the same face preprocessing a data set's cache uses (the detector, margin and score threshold given), or only
resized where the images are aligned crops already. The crop is standardised per image and restored blindly: the
restorer's mask network finds the occluder, its generator (or trivial fill) paints the masked pixels, and faces
whose detected occluder is below the restorer's ``min_occluded_fraction`` (or above its ``max_occluded_fraction``) are
left as they are. Three PNGs per input go to the output folder, mirroring the inputs' folders:

- ``<name>.face.png``: the aligned crop the restorer saw;
- ``<name>.mask.png``: the pixels it filled (white), black where nothing was filled;
- ``<name>.restored.png``: the crop with those pixels filled; every other pixel is the crop's own, byte for byte.

``restorations.csv`` has one row per input: ``status`` ``ok`` or ``error`` with the ``reason`` (no face found, an
unreadable file, an audio file), the three files, ``filled`` (whether any pixel was filled), ``filled_percent``
(the share of the crop filled) and ``detected_percent`` (the share the mask network marked, after the restorer's
opening of thin specks: what its minimum-area rule measures, before that rule and the dilation). One bad file never
stops the others. Files inside the output folder are not inputs (an output folder inside an input folder holds this
command's own PNGs).

With ``masks`` (aligned crops only) the occluders are known: each input's mask is the image of the same relative
name in that folder (white = occluded; resized to the crop by nearest neighbour), the generator fills exactly it,
and the mask network's reading is still reported as ``detected_percent``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from multimodal_fer.datasets.base import SampleError
from multimodal_fer.errors import DataError
from multimodal_fer.inference.raw_inputs import IMAGE_SUFFIXES, RawInput, collect_inputs, raw_media
from multimodal_fer.models.restoration.restorer import FaceRestorer
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing, MediaProcessor
from multimodal_fer.standardization import face_statistics, normalize_face, unit_range_face
from multimodal_fer.types import LabelSpace

#: The table written beside the images.
RESTORATIONS_CSV = "restorations.csv"
#: Its columns, in order.
COLUMNS = (
    "source",
    "status",
    "reason",
    "face",
    "mask",
    "restored",
    "filled",
    "filled_percent",
    "detected_percent",
)


@dataclass(frozen=True)
class RestorationCounts:
    """What ``mfer restore`` did: inputs seen, faces restored (written), inputs that failed."""

    inputs: int
    written: int
    errors: int


@dataclass(frozen=True)
class _Crop:
    """One input's aligned crop, waiting for its batch."""

    item: RawInput
    relative: Path
    face: np.ndarray  # uint8 (3, S, S)
    mask: np.ndarray | None  # bool (S, S) a known occluder, or None: the mask network finds it


def restore_faces(
    restorer: FaceRestorer,
    inputs: list[str | Path],
    output: Path,
    face_settings: MediaPreprocessing | None = None,
    aligned: bool = False,
    batch_size: int = 16,
    device: str = "cpu",
    overwrite: bool = False,
    masks: Path | None = None,
) -> RestorationCounts:
    """Restore the faces of image and video files and write the PNGs and ``restorations.csv`` into ``output``.

    Args:
        restorer: a trained restorer (:func:`~multimodal_fer.models.restoration.load_restorer`).
        inputs: files or folders (searched recursively); a video gives its middle frame.
        output: the folder to write into (created).
        face_settings: face detection and alignment (the crop size is always the restorer's); None: the defaults
            of :class:`MediaPreprocessing`.
        aligned: the images are aligned face crops already: resize them, find no face.
        batch_size: faces restored at once.
        device: where the restorer runs (``cpu``, ``cuda``, ``cuda:1``, ...).
        overwrite: replace the results of an earlier run in ``output``.
        masks: a folder of known occlusion masks, one image per input under the input's name relative to the
            inputs' common folder (any image suffix; white = occluded); only with ``aligned``. An input without
            its mask is an error row.

    Returns:
        The counts of inputs, faces written and inputs that failed (each failure is a row of the CSV).

    Raises:
        DataError: ``output`` holds an earlier run's results and ``overwrite`` is not set, the restorer knows
            no face size, the batch size is below 1, or masks are given without ``aligned`` or do not exist.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}.")
    if masks is not None and not aligned:
        raise DataError(
            "Known masks are drawn on aligned crops, but without --aligned each face is found and cropped anew, so "
            "a mask would not line up with it: give aligned crops with --aligned, or leave the masks out."
        )
    if masks is not None and not masks.is_dir():
        raise DataError(f"The masks folder {masks} does not exist.")
    size = int(restorer.image_size)
    if size <= 0:
        raise DataError(
            "The restorer does not record the face size it was trained on; load it from a restoration checkpoint "
            "(load_restorer) rather than building it by hand."
        )
    table = output / RESTORATIONS_CSV
    if table.exists() and not overwrite:
        raise DataError(
            f"{output} already holds restored faces ({RESTORATIONS_CSV}); choose another --output or add --overwrite "
            "to replace them."
        )
    settings = _settings_at(face_settings or MediaPreprocessing(image_size=size), size)
    processor = MediaProcessor(settings, LabelSpace(), ("face",), ["input"])
    items, problems = collect_inputs(list(inputs))
    items = [item for item in items if not _inside(item, output)]  # this command's own PNGs from an earlier run
    rows: list[dict[str, Any]] = [_error_row(path, reason) for path, reason in problems]
    root = _common_folder(items)
    crops: list[_Crop] = []
    for item in items:
        try:
            relative = Path(os.path.abspath(item.name)).relative_to(root)
            face = _aligned_face(item, processor, aligned)
            known = _known_mask(masks, relative, face.shape[-1]) if masks is not None else None
            crops.append(_Crop(item, relative, face, known))
        except Exception as error:  # noqa: BLE001 - one bad file (a damaged video, a bad mask) never stops the others
            rows.append(_error_row(item.source, getattr(error, "reason", None) or str(error)))
    restorer = restorer.to(device).eval()
    output.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(crops), batch_size):
        chunk = crops[start : start + batch_size]
        faces = torch.from_numpy(np.stack([crop.face for crop in chunk]))
        known = torch.from_numpy(np.stack([crop.mask for crop in chunk])) if masks is not None else None
        restored, filled, detected = _restore_batch(restorer, faces, device, known)
        for k, crop in enumerate(chunk):
            rows.append(_write_face(output, crop, faces[k], restored[k], filled[k], detected[k]))
    rows.sort(key=lambda row: row["source"])
    _write_table(table, rows)
    written = sum(1 for row in rows if row["status"] == "ok")
    return RestorationCounts(inputs=len(rows), written=written, errors=len(rows) - written)


def _settings_at(settings: MediaPreprocessing, size: int) -> MediaPreprocessing:
    """The face settings at the restorer's crop size (the size is the restorer's, whatever was given)."""
    return settings if settings.image_size == size else replace(settings, image_size=size)


def _inside(item: RawInput, folder: Path) -> bool:
    """Whether an input lies in ``folder`` (the output folder, when it is inside an input folder)."""
    return Path(os.path.abspath(item.name)).is_relative_to(Path(os.path.abspath(folder)))


def _common_folder(items: list[RawInput]) -> Path:
    """The deepest folder holding every input, so that output names mirror the inputs' folders below it."""
    if not items:
        return Path(".")
    return Path(os.path.commonpath([os.path.dirname(os.path.abspath(item.name)) for item in items]))


def _aligned_face(item: RawInput, processor: MediaProcessor, aligned: bool) -> np.ndarray:
    """The input's aligned uint8 (3, S, S) face crop.

    Raises:
        SampleError: no image or video, an unreadable file, or no face found.
    """
    if item.image is None and item.video is None:
        raise SampleError("no image or video to restore (an audio file)")
    media = raw_media(item, wants_audio=False)
    media.face_aligned = aligned
    fields = processor.face_fields(media)
    if fields is None:
        raise SampleError("no image or video frame could be read")
    return fields["face"]


def _known_mask(folder: Path, relative: Path, size: int) -> np.ndarray:
    """The known occluder of one input: bool (S, S), from the image of its relative name in ``folder``.

    Raises:
        SampleError: no mask image for the input, several, or one that cannot be read.
    """
    from PIL import Image

    parent = (folder / relative).parent
    found = sorted(parent.iterdir()) if parent.is_dir() else []
    candidates = [path for path in found if path.stem == relative.name and path.suffix.lower() in IMAGE_SUFFIXES]
    if len(candidates) != 1:
        problem = "no mask image" if not candidates else f"{len(candidates)} mask images"
        raise SampleError(f"{problem} for this input in {folder} (expected {relative}.png)")
    try:
        with Image.open(candidates[0]) as image:
            grey = image.convert("L").resize((size, size), Image.Resampling.NEAREST)
    except (OSError, ValueError) as error:
        raise SampleError(f"unreadable mask image {candidates[0].name}: {type(error).__name__}") from error
    return np.asarray(grey) > 127


@torch.no_grad()
def _restore_batch(
    restorer: FaceRestorer, faces: Tensor, device: str, known: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Restore uint8 (B, 3, S, S) crops, blindly or behind known bool (B, S, S) masks.

    Returns:
        ``(restored, filled, detected)``: uint8 (B, 3, S, S) crops with the filled pixels painted and every other
        pixel the crop's own; bool (B, S, S) the filled pixels; float (B,) the share of each crop the mask network
        marked (after the restorer's opening), which the minimum-area rule measures, before the dilation.
    """
    statistics = face_statistics(faces)
    standardised = normalize_face(faces, statistics).to(device)
    mask = known[:, None].float().to(device) if known is not None else None
    out = restorer(standardised, mask)
    on_device = tuple(value.to(device) for value in statistics)
    painted = (unit_range_face(out["restored"], on_device) * 255.0).round().to(torch.uint8).cpu()
    filled = (out["mask"] > 0.5).squeeze(1).cpu()
    restored = torch.where(filled[:, None], painted, faces)
    detected = restorer.occluded_pixels(out["mask_logits"]).flatten(1).mean(dim=1).cpu()
    return restored, filled, detected


def _write_face(
    output: Path, crop: _Crop, face: Tensor, restored: Tensor, filled: Tensor, detected: Tensor
) -> dict[str, Any]:
    """Write one input's three PNGs and return its CSV row."""
    from PIL import Image

    base = output / crop.relative
    base.parent.mkdir(parents=True, exist_ok=True)
    names = {kind: base.with_name(f"{base.name}.{kind}.png") for kind in ("face", "mask", "restored")}
    Image.fromarray(face.permute(1, 2, 0).numpy()).save(names["face"])
    Image.fromarray(filled.numpy().astype(np.uint8) * 255).save(names["mask"])
    Image.fromarray(restored.permute(1, 2, 0).numpy()).save(names["restored"])
    share = float(filled.float().mean())
    return {
        "source": crop.item.source,
        "status": "ok",
        "reason": "",
        **{kind: str(path.relative_to(output)) for kind, path in names.items()},
        "filled": "yes" if share > 0.0 else "no",
        "filled_percent": round(100.0 * share, 2),
        "detected_percent": round(100.0 * float(detected), 2),
    }


def _error_row(source: str, reason: str) -> dict[str, Any]:
    return {column: "" for column in COLUMNS} | {"source": source, "status": "error", "reason": reason}


def _write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
