"""FER2013 (ICML 2013 representation-learning challenge): 48x48 grey faces stored as pixel strings in one CSV.

Layout as distributed (``raw_root`` is the folder holding the CSV; the first of these names found is read,
or the one named by ``csv_file``)::

    fer2013.csv            header "emotion,pixels,Usage" (the original release)
    fer2013/fer2013.csv    the same, one folder down (the original archive's folder)
    icml_face_data.csv     the same content under Kaggle's other name (header spaces stripped: "emotion, Usage, pixels")

Each row: the expression code, 2304 space-separated grey values 0-255 (row-major 48x48) and the usage.
Columns are found by name (surrounding spaces stripped), so their order does not matter.

Expression codes (FER2013's own order, kept as the label space's order):

====  ========  ========
code  FER2013   here
====  ========  ========
0     Angry     anger
1     Disgust   disgust
2     Fear      fear
3     Happy     happy
4     Sad       sad
5     Surprise  surprise
6     Neutral   neutral
====  ========  ========

Other codes, an unknown ``Usage`` and rows without three fields are rejected while listing; pixel strings that
are not 2304 integers in 0-255 fail at load (``failures.jsonl``).

Protocol: ``Usage`` gives the official splits: Training → train, PublicTest → val, PrivateTest → test
(:class:`~multimodal_fer.datasets.protocols.OfficialSplits`). People are not identified, so each image is its own
subject. The faces are pre-cropped and roughly aligned, so they are only resized (grey replicated to RGB).

There is no file per image: a sample's key is ``row<index>`` (0-based data row, header excluded, counting
rejected rows too, so keys do not move when options change), its source ``<csv>:<line>`` (1-based file line),
and its locators the row's byte offset and a digest of the row; ``load`` seeks to that row and decodes it. The
listing stays small (the ~35k pixel strings are not held in memory or sent to the worker processes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

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
from multimodal_fer.errors import DataError
from multimodal_fer.types import LabelSpace

#: FER2013's codes 0..6 in the package's vocabulary.
FER2013_EXPRESSIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: ``Usage`` value → official split.
USAGE_SPLITS: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
#: CSV names looked for, in order, when ``csv_file`` is not given.
CSV_NAMES: tuple[str, ...] = ("fer2013.csv", "fer2013/fer2013.csv", "icml_face_data.csv")
COLUMNS: tuple[str, ...] = ("emotion", "pixels", "Usage")
SIDE = 48


class FER2013(DatasetAdapter):
    """FER2013's labelled CSV.

    Args:
        csv_file: the CSV, relative to ``raw_root``; None: the first of :data:`CSV_NAMES` that exists.
    """

    name = "fer2013"
    modalities = ("face",)
    face_media_allowed = False  # real people

    def __init__(self, csv_file: str | None = None) -> None:
        if csv_file is not None and (not csv_file or Path(csv_file).is_absolute()):
            raise ValueError(f"csv_file={csv_file!r} must be a path relative to raw_root, e.g. 'fer2013.csv'.")
        self.csv_file = csv_file

    @property
    def label_space(self) -> LabelSpace:
        """Seven classes in FER2013's order."""
        return LabelSpace(expressions=FER2013_EXPRESSIONS)

    def settings(self) -> dict[str, Any]:
        """The CSV chosen by name (None: found by :data:`CSV_NAMES`)."""
        return {"csv_file": self.csv_file}

    def csv_path(self, raw_root: Path) -> Path:
        """The CSV to read, relative to ``raw_root``.

        Raises:
            DataError: no such file.
        """
        candidates = (self.csv_file,) if self.csv_file else CSV_NAMES
        for candidate in candidates:
            if (raw_root / candidate).is_file():
                return Path(candidate)
        raise DataError(
            f"No FER2013 CSV under {raw_root}: looked for {list(candidates)}. Point raw_root to the folder holding "
            "fer2013.csv (header emotion,pixels,Usage) or name the file with csv_file. Kaggle's train.csv/test.csv "
            "pair is not read: it has no Usage column (and test.csv no labels)."
        )

    def list_samples(self, raw_root: Path) -> Listing:
        """Every data row; unknown codes, unknown usages and short rows are rejected with their line number."""
        return self.list_rows(raw_root)[0]

    def list_rows(self, raw_root: Path, read_labels: bool = True) -> tuple[Listing, int]:
        """The listing of :meth:`list_samples` and the number of data rows read (blank lines not counted).

        Sample ``row<i>`` is data row ``i`` (0-based), so another file with one row per FER2013 row (FER+'s
        labels) can be joined to the listing by that index.

        Args:
            raw_root: the folder holding the CSV.
            read_labels: check and keep FER2013's expression codes; False (labels from another file) leaves every
                sample unlabelled and rejects no row for its code.
        """
        relative = self.csv_path(raw_root)
        lines = indexed_lines(raw_root / relative)
        columns = _columns(next(lines, None), relative)
        samples: list[RawSample] = []
        rejected: list[Rejection] = []
        index = -1
        for number, offset, raw in lines:
            if not raw.strip():
                continue
            index += 1
            where = f"{relative}:{number}"
            fields = csv_fields(raw)
            if fields is None:
                rejected.append(Rejection(where, "undecodable row"))
                continue
            if len(fields) != columns.count:
                rejected.append(Rejection(where, f"malformed row ({len(fields)} fields, expected {columns.count})"))
                continue
            code_text = fields[columns.emotion].strip()
            usage = fields[columns.usage].strip()
            code = -1
            if read_labels:
                if not code_text.lstrip("-").isdigit():
                    rejected.append(Rejection(where, "malformed emotion code"))
                    continue
                code = int(code_text)
                if not 0 <= code < len(FER2013_EXPRESSIONS):
                    rejected.append(Rejection(where, f"unknown expression code {code}"))
                    continue
            if usage not in USAGE_SPLITS:
                rejected.append(Rejection(where, f"unknown Usage {usage!r}"))
                continue
            key = f"row{index:05d}"
            samples.append(
                RawSample(
                    key=key,
                    subject=key,
                    source=where,
                    split=USAGE_SPLITS[usage],
                    labels=SampleLabels(expr=code),
                    locators={
                        "csv": str(relative),
                        "offset": offset,
                        "row": row_digest(raw),
                        "pixels": columns.pixels,
                        "fields": columns.count,
                    },
                )
            )
        return Listing(samples, rejected), index + 1

    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The row's 48x48 grey face (already cropped: resized only).

        Raises:
            SampleError: ``<n> pixels, expected 2304``, ``non-numeric pixels``, ``pixel values outside 0-255``, or
                the row changed since the listing.
        """
        locators = sample.locators
        raw = read_line(raw_root / locators["csv"], locators["offset"], locators["row"], "CSV")
        fields = csv_fields(raw)
        if fields is None or len(fields) != locators["fields"]:
            raise SampleError("malformed row")
        return RawMedia(image=decode_pixels(fields[locators["pixels"]]), face_aligned=True)


def decode_pixels(text: str) -> np.ndarray:
    """A FER2013 pixel string → uint8 (48, 48) grey image.

    Raises:
        SampleError: not 2304 integers in 0-255.
    """
    parts = text.split()
    if len(parts) != SIDE * SIDE:
        raise SampleError(f"{len(parts)} pixels, expected {SIDE * SIDE}")
    try:
        values = np.array(parts, dtype=np.int64)
    except ValueError as error:
        raise SampleError("non-numeric pixels") from error
    if values.min() < 0 or values.max() > 255:
        raise SampleError("pixel values outside 0-255")
    return values.astype(np.uint8).reshape(SIDE, SIDE)


# ------------------------------------------------------------------------------------------------ row access


class _Columns(NamedTuple):
    """Positions of FER2013's columns in one CSV, and how many fields a row has."""

    emotion: int
    pixels: int
    usage: int
    count: int


def _columns(first: tuple[int, int, bytes] | None, relative: Path) -> _Columns:
    """Positions of the emotion, pixels and Usage columns (names stripped of spaces).

    Raises:
        DataError: a column is missing.
    """
    fields = None if first is None else csv_fields(first[2])
    names = [f.strip() for f in fields] if fields else []
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise DataError(
            f"{relative} has columns {names}, without {missing}; FER2013's CSV has the header emotion,pixels,Usage. "
            "Check that the file is fer2013.csv (or icml_face_data.csv) and complete."
        )
    return _Columns(names.index("emotion"), names.index("pixels"), names.index("Usage"), len(names))
