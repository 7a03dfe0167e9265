"""FER+ (FERPlus): FER2013's faces relabelled by ten taggers each, eight classes, FER+'s majority vote.

Layout as distributed (``raw_root`` holds both files; FER2013's CSV is found as :class:`FER2013` finds it)::

    fer2013.csv       FER2013's pixels (header emotion,pixels,Usage), as FER2013 distributes it
    fer2013new.csv    FER+'s votes: header Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,
                      contempt,unknown,NF; one row per fer2013.csv data row, in the same order

Labels follow FER+'s majority protocol (Barsoum et al., ICMI 2016, and its reference reader): a count of one vote is
dropped as an outlier; the label is the column holding more than half of the remaining votes (``unknown`` and
``NF`` counted). Rows without such a majority, whose majority is ``unknown`` or ``NF`` (not a face), or without an
image name (FER+'s mark of a row it leaves out) are rejected while listing, with the reason and the line of
``fer2013new.csv``. The classes keep FER+'s column order:

====  ==========  ========
code  FER+        here
====  ==========  ========
0     neutral     neutral
1     happiness   happy
2     surprise    surprise
3     sadness     sad
4     anger       anger
5     disgust     disgust
6     fear        fear
7     contempt    contempt
====  ==========  ========

FER2013's own ``emotion`` codes play no part (:meth:`FER2013.list_rows` with ``read_labels=False``).

Protocol: FER2013's ``Usage`` (Training → train, PublicTest → val, PrivateTest → test), which FER+ repeats; each image
is its own subject. A sample's key is FER+'s image name without its extension (``fer0000000``), so lists that name
FER+'s images (``fer0034656.png``) find it (``test_subset``); its source is the pixel row (``fer2013.csv:<line>``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from multimodal_fer.datasets.base import Listing, RawSample, Rejection, SampleLabels
from multimodal_fer.datasets.csv_lines import csv_fields, indexed_lines
from multimodal_fer.datasets.fer2013 import FER2013, USAGE_SPLITS
from multimodal_fer.errors import DataError
from multimodal_fer.types import LabelSpace

#: FER+'s eight emotion columns, in the package's vocabulary and FER+'s order.
FERPLUS_EXPRESSIONS: tuple[str, ...] = ("neutral", "happy", "surprise", "sad", "anger", "disgust", "fear", "contempt")
#: The vote columns of ``fer2013new.csv``: the eight emotions, then unknown and not-a-face.
VOTE_COLUMNS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
LABEL_FILE = "fer2013new.csv"
MALFORMED_ROW = "malformed vote row"
#: FER2013's ``Usage`` of each official split (FER+ repeats it row for row).
_USAGE_OF_SPLIT: dict[str, str] = {split: usage for usage, split in USAGE_SPLITS.items()}


def majority_label(votes: tuple[int, ...]) -> int | str:
    """FER+'s majority label of one image's ten vote counts.

    Args:
        votes: counts for :data:`VOTE_COLUMNS` (eight emotions, unknown, not a face).

    Returns:
        The emotion's index into :data:`FERPLUS_EXPRESSIONS`, or the reason the row has no label.
    """
    kept = [count if count > 1 else 0 for count in votes]  # single votes are outliers
    total = sum(kept)
    if total == 0:
        return "no label: no column has two votes or more"
    top = max(range(len(kept)), key=kept.__getitem__)
    if 2 * kept[top] <= total:
        return "no label: no column has more than half of the votes"
    if top == len(FERPLUS_EXPRESSIONS):
        return "no label: the majority says unknown"
    if top == len(FERPLUS_EXPRESSIONS) + 1:
        return "no label: the majority says not a face"
    return top


class FERPlus(FER2013):
    """FER2013's faces with FER+'s labels (eight classes).

    Args:
        csv_file: FER2013's CSV, relative to ``raw_root`` (None: as :class:`FER2013` finds it).
        label_file: FER+'s vote file, relative to ``raw_root``.
    """

    name = "ferplus"

    def __init__(self, csv_file: str | None = None, label_file: str = LABEL_FILE) -> None:
        super().__init__(csv_file)
        if not label_file or Path(label_file).is_absolute():
            raise ValueError(f"label_file={label_file!r} must be a path relative to raw_root, e.g. {LABEL_FILE!r}.")
        self.label_file = label_file

    @property
    def label_space(self) -> LabelSpace:
        """Eight classes in FER+'s column order."""
        return LabelSpace(expressions=FERPLUS_EXPRESSIONS)

    def settings(self) -> dict[str, Any]:
        """FER2013's CSV and FER+'s vote file."""
        return {**super().settings(), "label_file": self.label_file}

    def list_samples(self, raw_root: Path) -> Listing:
        """FER2013's rows labelled by FER+'s votes; rows without a majority emotion are rejected with their line.

        Raises:
            DataError: the vote file is missing, lacks a column, or does not match FER2013's CSV row for row (a
                different row count, or another ``Usage`` on some row).
        """
        pixels, rows = self.list_rows(raw_root, read_labels=False)  # FER2013's own codes play no part
        votes = self._vote_rows(raw_root)
        csv_name = self.csv_path(raw_root)
        if len(votes) != rows:
            raise DataError(
                f"{self.label_file} has {len(votes)} data rows and {csv_name} {rows}: FER+'s vote file has one row per "
                "FER2013 row, in the same order. Check that both files are complete and belong together."
            )
        samples: list[RawSample] = []
        rejected: list[Rejection] = list(pixels.rejected)
        for sample in pixels.samples:
            number, usage, image, outcome = votes[int(sample.key.removeprefix("row"))]
            where = f"{self.label_file}:{number}"
            if outcome == MALFORMED_ROW:
                rejected.append(Rejection(where, outcome))
                continue
            if usage != _USAGE_OF_SPLIT.get(sample.split or ""):
                raise DataError(
                    f"{where} says Usage {usage!r} but {sample.source} is in {sample.split}: the two files are not in "
                    "the same row order. Use FER+'s fer2013new.csv with the original fer2013.csv."
                )
            if not image:
                rejected.append(Rejection(where, "no image name (left out by FER+)"))
                continue
            if isinstance(outcome, str):
                rejected.append(Rejection(where, outcome))
                continue
            key = PurePosixPath(image).stem
            samples.append(replace(sample, key=key, subject=key, labels=SampleLabels(expr=outcome)))
        return Listing(samples, rejected)

    def _vote_rows(self, raw_root: Path) -> list[tuple[int, str, str, int | str]]:
        """Per data row of the vote file: (line number, Usage, image name, label or the reason there is none)."""
        path = raw_root / self.label_file
        if not path.is_file():
            raise DataError(
                f"No FER+ vote file at {path}: put FER+'s {LABEL_FILE} beside fer2013.csv, or name it with label_file."
            )
        lines = indexed_lines(path)
        first = next(lines, None)
        header = [name.strip() for name in (csv_fields(first[2]) or [])] if first is not None else []
        wanted = ("Usage", "Image name", *VOTE_COLUMNS)
        missing = [name for name in wanted if name not in header]
        if missing:
            raise DataError(
                f"{self.label_file} has columns {header}, without {missing}; FER+'s vote file has the header "
                f"{','.join(wanted)}."
            )
        usage_at, image_at = header.index("Usage"), header.index("Image name")
        vote_at = [header.index(name) for name in VOTE_COLUMNS]
        rows: list[tuple[int, str, str, int | str]] = []
        for number, _, raw in lines:
            if not raw.strip():
                continue
            fields = csv_fields(raw)
            if fields is None or len(fields) != len(header):
                rows.append((number, "", "", MALFORMED_ROW))
                continue
            texts = [fields[i].strip() for i in vote_at]
            outcome: int | str
            if all(text.isdigit() for text in texts):
                outcome = majority_label(tuple(int(text) for text in texts))
            else:
                outcome = "malformed vote counts"
            rows.append((number, fields[usage_at].strip(), fields[image_at].strip(), outcome))
        return rows
