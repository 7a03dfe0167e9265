"""BP4D-Spontaneous: per-frame FACS occurrence codes of 41 subjects × 8 tasks, faces from the 2D video frames.

Layout read (``raw_root`` is the BP4D folder; both sub-folders are options, the image folder's place is
**UNCONFIRMED** in the reference, so it defaults to raw_root itself)::

    AUCoding/AU_OCC/F001_T1.csv        one occurrence file per subject and task (au_dir)
    F001/T1/2440.jpg                   the 2D frames, named by the original video frame number (images_dir)

**AU_OCC CSV.** Comma-separated with a header row whose first cell is ``0`` and whose other cells are AU numbers
(``0,1,2,3,...``); each following row is one frame: the frame number, then one code per AU column: ``0`` absent,
``1`` present, ``9`` unknown / not codable. Columns are found by their header name (ME-GraphAU reads them with
``usecols``), so a file whose header lacks one of the chosen AUs is rejected whole (``AU columns missing: ...``).
With ``occlusion_flag`` the file's **last** column is read as the FERA-2015 occlusion flag (1 = occluded: every AU
of that frame unlabelled); by default it is ignored, as ME-GraphAU ignores it.

**Invalid codes never become labels.** ``9`` becomes NaN for that AU only (the metric and the loss skip it; the
frame's other AUs stay labels). A frame whose chosen AUs are all ``9`` (or occluded) is labelled nowhere: a listing
rejection (``no codable AU``). Any other code in a chosen column (``5``, an empty cell) rejects the frame
(``unknown AU code ...``), as do malformed rows (wrong field count, a frame number that is not a whole number) and a
frame number given twice.

**Frames.** Images are looked up by the number in their name, so ``2440.jpg`` and zero-padded ``02440.jpg`` both
match frame 2440 (``.jpg``, ``.jpeg`` or ``.png``). A labelled frame without its image is a listing rejection
(``label line without a frame image``), a task without a frame folder rejects its file (``no frame folder for the
sequence``), and a corrupt image fails that sample when the cache is built (``unreadable image``). Faces are
detected and aligned by the preprocessing (BP4D ships full frames, no boxes). ``frame_step`` keeps every n-th
labelled row of each file (the frame sampling rate: BP4D's video is 25 fps, so 5 gives 5 frames per second).

**Protocol.** The default split is the published 3-fold subject-exclusive protocol (JAA-Net / ME-GraphAU parts,
:data:`BP4D_PARTS`): fold 1 tests part 3, fold 2 part 2, fold 3 part 1, and validation subjects are carved from the
training parts (the published folds have none). The subject is the file name's first field (``F001``).
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import Any

from multimodal_fer.datasets.au_benchmarks import FOLD_TEST_PART, check_action_units, inside_raw_root
from multimodal_fer.datasets.base import (
    DatasetAdapter,
    Listing,
    RawMedia,
    RawSample,
    Rejection,
    SampleLabels,
)
from multimodal_fer.datasets.image_io import read_image
from multimodal_fer.datasets.protocols import SplitProtocol, SubjectPartitions
from multimodal_fer.errors import DataError
from multimodal_fer.types import LabelSpace

#: The 12 AUs BP4D results are usually reported on (ME-GraphAU ``BP4D_infolist``).
BP4D_ACTION_UNITS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
#: The 11 AUs of the FERA 2015 occurrence sub-challenge (``action_units`` option).
FERA2015_ACTION_UNITS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23)
#: The published 3-fold partition (repo:CVI-SZU/ME-GraphAU/tool/BP4D_image_label_process.py).
BP4D_PARTS: tuple[tuple[str, ...], ...] = (
    ("F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012", "M001", "F016", "M014", "F023", "M008"),
    ("M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013", "M016", "F020", "F011", "M013", "M005"),
    ("F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004", "F021", "F017", "M015", "F014"),
)
#: Occurrence codes: 0 absent, 1 present, 9 unknown (→ NaN).
ABSENT, PRESENT, UNKNOWN = 0, 1, 9
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")

_LABEL_NAME = re.compile(r"^(?P<subject>[^_]+)_(?P<task>[^_]+)\.csv$")


class BP4D(DatasetAdapter):
    """BP4D-Spontaneous AU occurrence, one sample per coded frame.

    Args:
        action_units: AU numbers to read, in label-space order (default :data:`BP4D_ACTION_UNITS`).
        au_dir: folder of the ``<subject>_<task>.csv`` occurrence files, relative to raw_root.
        images_dir: folder holding ``<subject>/<task>/<frame>.jpg``, relative to raw_root ("" = raw_root).
        occlusion_flag: read each file's last column as the occlusion flag (1 → the frame's AUs unlabelled).
        frame_step: keep every ``frame_step``-th coded row of each file (1 = every frame).
    """

    name = "bp4d"
    modalities = ("face",)
    face_media_allowed = False  # real people; research-only licence agreement with Binghamton University

    def __init__(
        self,
        action_units: list[int] | None = None,
        au_dir: str = "AUCoding/AU_OCC",
        images_dir: str = "",
        occlusion_flag: bool = False,
        frame_step: int = 1,
    ) -> None:
        chosen = list(BP4D_ACTION_UNITS if action_units is None else action_units)
        check_action_units(chosen)
        if isinstance(frame_step, bool) or not isinstance(frame_step, int) or frame_step < 1:
            raise ValueError(f"frame_step={frame_step!r} must be a whole number of frames, at least 1.")
        self.action_units = tuple(chosen)
        self.au_dir = au_dir
        self.images_dir = images_dir
        self.occlusion_flag = bool(occlusion_flag)
        self.frame_step = frame_step

    @property
    def label_space(self) -> LabelSpace:
        """The chosen AUs (no expressions, no dimensions)."""
        return LabelSpace(action_units=self.action_units)

    def default_protocol(self) -> SplitProtocol:
        """The published 3-fold partition, fold 1 (tests part 3)."""
        return SubjectPartitions(BP4D_PARTS, test_part=FOLD_TEST_PART[1])

    def settings(self) -> dict[str, Any]:
        """Every option (all change the listing)."""
        return {
            "action_units": list(self.action_units),
            "au_dir": self.au_dir,
            "images_dir": self.images_dir,
            "occlusion_flag": self.occlusion_flag,
            "frame_step": self.frame_step,
        }

    def metadata(self) -> dict[str, Any]:
        """How the cache's frames are scored."""
        return {"evaluation": "per-AU F1 at 0.5 and their mean, pooled over the test frames of a fold"}

    # ----------------------------------------------------------------------------------------------- listing
    def list_samples(self, raw_root: Path) -> Listing:
        """Every coded frame with an image and at least one codable AU, in file and row order.

        Raises:
            DataError: no occurrence folder, or no occurrence file in it.
        """
        labels_root = inside_raw_root(raw_root, self.au_dir, "au_dir")
        if not labels_root.is_dir():
            raise DataError(
                f"No AU occurrence folder {labels_root}; point raw_root to the BP4D folder holding {self.au_dir} "
                "(or set --data.init_args.dataset.init_args.au_dir)."
            )
        files = sorted(p for p in labels_root.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
        if not files:
            raise DataError(f"{labels_root} holds no <subject>_<task>.csv occurrence files; is it the AU_OCC folder?")
        images_root = inside_raw_root(raw_root, self.images_dir, "images_dir")
        samples: list[RawSample] = []
        rejected: list[Rejection] = []
        for path in files:
            source = str(path.relative_to(raw_root))
            match = _LABEL_NAME.match(path.name)
            if match is None:
                rejected.append(Rejection(source, "label file name is not <subject>_<task>.csv"))
                continue
            subject, task = match["subject"], match["task"]
            rows, rejection = self._read_codes(path, source)
            if rejection is not None:
                rejected.append(rejection)
                continue
            kept = rows[:: self.frame_step]
            folder = images_root / subject / task
            if not folder.is_dir():
                if kept:
                    rejected.append(Rejection(source, "no frame folder for the sequence"))
                continue
            images = _frame_images(folder)
            for line, frame, value in kept:
                if isinstance(value, str):
                    rejected.append(Rejection(f"{source}:{line}", value))
                    continue
                if frame not in images:
                    rejected.append(Rejection(f"{source}:{line}", "label line without a frame image"))
                    continue
                samples.append(
                    RawSample(
                        key=f"{subject}/{task}/{frame}",
                        subject=subject,
                        source=str((folder / images[frame]).relative_to(raw_root)),
                        labels=SampleLabels(au=value),
                        sequence=f"{subject}_{task}",
                        frame=frame,
                    )
                )
        return Listing(samples, rejected)

    def _read_codes(
        self, path: Path, source: str
    ) -> tuple[list[tuple[int, int, tuple[float, ...] | str]], Rejection | None]:
        """Rows of one occurrence file as (file line, frame number, AU values or a rejection reason)."""
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return [], Rejection(source, "unreadable label file")
        table = [row for row in csv.reader(text.splitlines())]
        while table and not any(cell.strip() for cell in table[-1]):
            table.pop()
        if not table:
            return [], Rejection(source, "empty label file")
        header = [cell.strip() for cell in table[0]]
        if header[0] != "0" or not all(_is_whole(cell) for cell in header):
            return [], Rejection(f"{source}:1", "unexpected header line (expected 0,1,2,... AU numbers)")
        positions = {int(cell): j for j, cell in enumerate(header) if j > 0}
        missing = [au for au in self.action_units if au not in positions]
        if missing:
            return [], Rejection(source, "AU columns missing: " + ", ".join(str(a) for a in missing))
        columns = [positions[au] for au in self.action_units]
        if self.occlusion_flag and len(header) - 1 in columns:
            return [], Rejection(source, "occlusion column is one of the chosen AUs")
        rows: list[tuple[int, int, tuple[float, ...] | str]] = []
        seen: set[int] = set()
        for number, row in enumerate(table[1:], start=2):
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if len(cells) != len(header) or not _is_whole(cells[0]):
                rows.append((number, -1, "malformed label line"))
                continue
            frame = int(cells[0])
            if frame in seen:
                rows.append((number, frame, "frame number given twice"))
                continue
            seen.add(frame)
            rows.append((number, frame, self._codes(cells, columns)))
        return rows, None

    def _codes(self, cells: list[str], columns: list[int]) -> tuple[float, ...] | str:
        """One row's chosen AUs as 0/1/NaN, or the reason the row cannot be used."""
        if self.occlusion_flag:
            flag = cells[-1]
            if flag not in ("0", "1"):
                return f"unknown occlusion code {flag or 'empty'}"
            if flag == "1":
                return "no codable AU (occluded)"
        values: list[float] = []
        for j in columns:
            cell = cells[j]
            code = int(cell) if _is_whole(cell) else None
            if code == UNKNOWN:
                values.append(math.nan)
            elif code in (ABSENT, PRESENT):
                values.append(float(code))
            else:
                return f"unknown AU code {cell or 'empty'}"
        if all(math.isnan(v) for v in values):
            return "no codable AU (all 9)"
        return tuple(values)

    # -------------------------------------------------------------------------------------------------- load
    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The full 2D frame; the preprocessing detects and aligns the face."""
        return RawMedia(image=read_image(raw_root / sample.source), face_aligned=False)


def _is_whole(cell: str) -> bool:
    return cell.isdigit()


def _frame_images(folder: Path) -> dict[int, str]:
    """Frame number → image file name in a frame folder (names are the number, zero-padded or not)."""
    found: dict[int, str] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        stem, suffix = os.path.splitext(entry.name)
        if suffix.lower() in IMAGE_SUFFIXES and stem.isdigit() and entry.is_file():
            found.setdefault(int(stem), entry.name)
    return found
