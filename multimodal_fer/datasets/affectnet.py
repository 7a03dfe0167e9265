"""AffectNet: in-the-wild web face images, manually annotated with eight expressions and valence/arousal.

Layout as distributed (``raw_root`` is the folder holding these)::

    Manually_Annotated_file_lists/training.csv        official training list
    Manually_Annotated_file_lists/validation.csv      official validation list (used as the test set)
    Manually_Annotated_Images/<subDirectory>/<file>.jpg
    Automatically_Annotated_file_lists/automatically_annotated.csv   (optional, off by default)
    Automatically_Annotated_Images/<subDirectory>/<file>.jpg

Every list has the header
``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal``:
the image path relative to the images folder, an integer face box in pixels, 68 landmarks as 136
semicolon-separated numbers ``x1;y1;x2;y2;...``, the expression code and valence/arousal in [-1, 1].

Expression codes (AffectNet's own order, kept as the label space's order):

====  =========  ==========================================================
code  AffectNet  here
====  =========  ==========================================================
0     Neutral    neutral
1     Happy      happy
2     Sad        sad
3     Surprise   surprise
4     Fear       fear
5     Disgust    disgust
6     Anger      anger
7     Contempt   contempt (rejected with ``num_classes=7``: AffectNet-7)
8     None       rejected (``keep_none_for_va=True``: kept for valence/arousal only)
9     Uncertain  rejected
10    Non-Face   rejected
====  =========  ==========================================================

Valence and arousal are stored as they are (already in [-1, 1]); the value -2 means "no valid value" and becomes
NaN (unlabelled), which is not a rejection when the expression is valid. Any other value outside [-1, 1] rejects
the row.

Faces are aligned by the row's 68 landmarks (``alignment="landmarks"``, default) or cropped by its face box
(``alignment="box"``). A row whose box has zero width or height is treated as carrying no face annotation: by
default (``zero_box="detect"``) its box and landmarks are ignored and the face is detected in the image (a
"no face found" failure if there is none); ``zero_box="reject"`` leaves such rows out at listing time. A
landmark string that is not 136 finite numbers is a load failure (``malformed facial_landmarks``), so it shows
in ``failures.jsonl``; choose ``alignment="box"`` to use such rows through their boxes.

Protocol: there is no public test set, so, as is usual in the literature, the official **validation** list is
our ``test`` split and a validation split is carved from the official training images
(:class:`~multimodal_fer.datasets.protocols.OfficialSplits`). People are not identified, so each image is its
own subject. Images of the automatically annotated list, when included, join the training split.

Annotation rows are not kept in memory: each sample records its list file, the row's byte offset and a digest
of the row, and ``load`` re-reads that one row for its landmarks (so a listing of ~420k rows stays small and
pickles quickly to the worker processes).
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np

from multimodal_fer.datasets.base import (
    DatasetAdapter,
    Listing,
    RawMedia,
    RawSample,
    Rejection,
    SampleError,
    SampleLabels,
)
from multimodal_fer.datasets.csv_lines import csv_fields, indexed_lines, read_line, row_digest
from multimodal_fer.datasets.image_io import read_image
from multimodal_fer.errors import DataError
from multimodal_fer.types import LabelSpace

#: AffectNet's expression codes 0..7 in the package's vocabulary.
AFFECTNET_EXPRESSIONS: tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
#: AffectNet's own names of every code 0..10 (used in rejection reasons).
CODE_NAMES: tuple[str, ...] = (
    "Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt", "None", "Uncertain", "Non-Face"
)  # fmt: skip
#: Codes that carry no expression class.
EXCLUDED_CODES: tuple[int, ...] = (8, 9, 10)
CONTEMPT = 7
NONE_CODE = 8
#: Valence/arousal value meaning "no valid value".
NO_VA = -2.0
#: The exact header of every AffectNet list.
HEADER: tuple[str, ...] = (
    "subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
    "expression", "valence", "arousal",
)  # fmt: skip
MANUAL_LISTS = Path("Manually_Annotated_file_lists")
MANUAL_IMAGES = Path("Manually_Annotated_Images")
AUTOMATIC_LIST = Path("Automatically_Annotated_file_lists") / "automatically_annotated.csv"
AUTOMATIC_IMAGES = Path("Automatically_Annotated_Images")
#: Official list → our split (no public test set: the official validation list is the test set).
OFFICIAL_LISTS: tuple[tuple[str, str], ...] = (("training.csv", "train"), ("validation.csv", "test"))
LANDMARK_COUNT = 68


class AffectNet(DatasetAdapter):
    """AffectNet's manually annotated images (optionally with the automatically annotated ones).

    Args:
        num_classes: 8 (AffectNet-8, with contempt) or 7 (AffectNet-7: contempt rows rejected).
        alignment: ``"landmarks"`` (align by the row's 68 points) or ``"box"`` (crop the row's face box).
        zero_box: rows whose face box has zero width or height: ``"detect"`` (ignore their box and landmarks and
            detect the face) or ``"reject"`` (leave them out while listing).
        keep_none_for_va: keep code-8 ("None") rows that have valence/arousal, with no expression label (-1), for
            valence-arousal training. Off by default, as in the usual 7/8-class protocols.
        include_automatic: also list ``Automatically_Annotated_file_lists/automatically_annotated.csv`` (training
            only; its labels are machine-made and noisier).
    """

    name = "affectnet"
    modalities = ("face",)
    face_media_allowed = False  # real people; research-only licence

    def __init__(
        self,
        num_classes: Literal[8, 7] = 8,
        alignment: Literal["landmarks", "box"] = "landmarks",
        zero_box: Literal["detect", "reject"] = "detect",
        keep_none_for_va: bool = False,
        include_automatic: bool = False,
    ) -> None:
        if num_classes not in (7, 8):
            raise ValueError(f"num_classes={num_classes!r}: choose 8 (with contempt) or 7 (AffectNet-7).")
        if alignment not in ("landmarks", "box"):
            raise ValueError(f"alignment={alignment!r}: choose 'landmarks' or 'box'.")
        if zero_box not in ("detect", "reject"):
            raise ValueError(f"zero_box={zero_box!r}: choose 'detect' or 'reject'.")
        self.num_classes = int(num_classes)
        self.alignment = alignment
        self.zero_box = zero_box
        self.keep_none_for_va = bool(keep_none_for_va)
        self.include_automatic = bool(include_automatic)

    @property
    def label_space(self) -> LabelSpace:
        """Seven or eight classes in AffectNet's order; valence and arousal."""
        return LabelSpace(expressions=AFFECTNET_EXPRESSIONS[: self.num_classes], dimensions=("valence", "arousal"))

    def settings(self) -> dict[str, Any]:
        """Every option (each changes the listing or the crops)."""
        return {
            "num_classes": self.num_classes,
            "alignment": self.alignment,
            "zero_box": self.zero_box,
            "keep_none_for_va": self.keep_none_for_va,
            "include_automatic": self.include_automatic,
        }

    def _lists(self, raw_root: Path) -> list[tuple[Path, Path, str, str]]:
        """(list file, images folder, split, key prefix) of every list to read, all relative to ``raw_root``.

        Raises:
            DataError: a list file is missing.
        """
        lists = [(MANUAL_LISTS / name, MANUAL_IMAGES, split, "") for name, split in OFFICIAL_LISTS]
        if self.include_automatic:
            lists.append((AUTOMATIC_LIST, AUTOMATIC_IMAGES, "train", "automatic/"))
        missing = [str(path) for path, *_ in lists if not (raw_root / path).is_file()]
        if missing:
            raise DataError(
                f"No AffectNet list {missing} under {raw_root}. Point raw_root to the AffectNet folder that holds "
                f"{MANUAL_LISTS}/training.csv, {MANUAL_LISTS}/validation.csv and {MANUAL_IMAGES}/"
                + (f" (and {AUTOMATIC_LIST}, or set include_automatic: false)." if self.include_automatic else ".")
            )
        return lists

    def list_samples(self, raw_root: Path) -> Listing:
        """Every row of the lists; excluded codes and malformed rows are rejected with their line number."""
        samples: list[RawSample] = []
        rejected: list[Rejection] = []
        seen: set[str] = set()
        for list_path, images, split, prefix in self._lists(raw_root):
            lines = indexed_lines(raw_root / list_path)
            _check_header(next(lines, None), list_path)
            for number, offset, raw in lines:
                where = f"{list_path}:{number}"
                if not raw.strip():
                    continue
                outcome = self._parse_row(raw)
                if isinstance(outcome, str):
                    rejected.append(Rejection(where, outcome))
                    continue
                relative, labels, box = outcome
                key = prefix + relative
                if key in seen:
                    rejected.append(Rejection(where, "duplicate image path"))
                    continue
                seen.add(key)
                samples.append(
                    RawSample(
                        key=key,
                        subject=key,
                        source=str(images / relative),
                        split=split,
                        labels=labels,
                        locators={
                            "list": str(list_path),
                            "offset": offset,
                            "row": row_digest(raw),
                            "box": None if box is None else list(box),
                            "landmarks": self.alignment == "landmarks" and box is not None,
                        },
                    )
                )
        return Listing(samples, rejected)

    def _parse_row(self, raw: bytes) -> tuple[str, SampleLabels, tuple[float, float, float, float] | None] | str:
        """The image path, labels and face box (None: detect the face) of one row, or why it is rejected."""
        fields = csv_fields(raw)
        if fields is None:
            return "undecodable row"
        if len(fields) != len(HEADER):
            return f"malformed row ({len(fields)} fields, expected {len(HEADER)})"
        path, x, y, width, height, _, code_text, valence, arousal = (f.strip() for f in fields)
        code = _integer(code_text)
        if code is None:
            return "malformed expression code"
        if not 0 <= code < len(CODE_NAMES):
            return f"unknown expression code {code}"
        if code == CONTEMPT and self.num_classes == 7:
            return "contempt excluded in AffectNet-7"
        va = _valence_arousal(valence, arousal)
        if isinstance(va, str):
            return va
        if code in EXCLUDED_CODES:
            va_usable = va is not None and not all(math.isnan(v) for v in va)
            if not (code == NONE_CODE and self.keep_none_for_va and va_usable):
                return f"expression code {code} ({CODE_NAMES[code]}) excluded"
            labels = SampleLabels(expr=-1, va=va)
        else:
            labels = SampleLabels(expr=code, va=va)
        if not _safe_relative(path):
            return "malformed image path"
        try:
            box = tuple(float(v) for v in (x, y, width, height))
        except ValueError:
            return "malformed face box"
        if not all(math.isfinite(v) for v in box):
            return "malformed face box"
        if box[2] <= 0 or box[3] <= 0:
            if self.zero_box == "reject":
                return "zero-size face box"
            return path, labels, None
        return path, labels, (box[0], box[1], box[2], box[3])

    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The image with its face box and (``alignment="landmarks"``) its 68 landmarks; nothing when detecting.

        Raises:
            SampleError: ``missing image file``, ``unreadable image: ...``, ``malformed facial_landmarks``, or the
                annotation row changed since the listing.
        """
        locators = sample.locators
        points = None
        if locators["landmarks"]:
            raw = read_line(raw_root / locators["list"], locators["offset"], locators["row"], "annotation list")
            fields = csv_fields(raw)
            points = _landmarks(fields[5] if fields is not None and len(fields) == len(HEADER) else "")
        image = read_image(raw_root / sample.source)
        box = locators["box"]
        face_box = None if box is None else (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        return RawMedia(image=image, face_box=face_box, face_points=points)


# ------------------------------------------------------------------------------------------------ row parsing


def _check_header(first: tuple[int, int, bytes] | None, list_path: Path) -> None:
    fields = None if first is None else csv_fields(first[2])
    names = tuple(f.strip() for f in fields) if fields else ()
    if names != HEADER:
        raise DataError(
            f"{list_path} does not start with AffectNet's header {','.join(HEADER)} (found {','.join(names)!r}); "
            "check that raw_root is the AffectNet folder and the list file is complete."
        )


def _integer(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value.is_integer() else None


def _valence_arousal(valence: str, arousal: str) -> tuple[float, float] | None | str:
    """(valence, arousal) with -2 as NaN; None when both are -2; a reason string when malformed."""
    values = []
    for text in (valence, arousal):
        try:
            value = float(text)
        except ValueError:
            return "malformed valence/arousal"
        if value == NO_VA:
            values.append(math.nan)
        elif math.isfinite(value) and -1.0 <= value <= 1.0:
            values.append(value)
        else:
            return "valence/arousal outside [-1, 1]"
    if all(math.isnan(v) for v in values):
        return None
    return values[0], values[1]


def _safe_relative(path: str) -> bool:
    """A non-empty relative path that stays inside its folder."""
    parts = PurePosixPath(path).parts
    return bool(path) and not path.startswith(("/", "\\")) and ".." not in parts and ":" not in path


def _landmarks(text: str) -> np.ndarray:
    """(68, 2) float32 points from ``x1;y1;...;x68;y68``.

    Raises:
        SampleError: ``malformed facial_landmarks`` (not 136 finite numbers).
    """
    parts = [p for p in text.strip().split(";") if p.strip()]
    try:
        values = np.array(parts, dtype=np.float64)
    except ValueError as error:
        raise SampleError("malformed facial_landmarks") from error
    if values.size != 2 * LANDMARK_COUNT or not np.isfinite(values).all():
        raise SampleError("malformed facial_landmarks")
    return values.reshape(LANDMARK_COUNT, 2).astype(np.float32)
