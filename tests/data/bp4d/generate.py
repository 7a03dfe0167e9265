"""Format-faithful fake BP4D-Spontaneous: AU_OCC CSVs (header ``0,1,2,...``, 0/1/9 codes) and 2D frame JPEGs.

Subjects carry real BP4D identifiers, so the published 3-fold partition applies: F001, M007 (part 1), M011, F003
(part 2), F007, F015 (part 3). Frames show a real face (the astronaut photo of scikit-image) so that the
preprocessing's detector finds it.

Traps: a 9 in a chosen AU (that AU NaN, the others kept), a row of only 9s, an unknown code 5 in a chosen AU and
codes 5/9 in an unused column (no effect), a coded frame without its image, a truncated JPEG, a zero-padded frame
name, a file whose header lacks AU 24, a malformed row, a frame number given twice, a task without a frame folder
and a CSV whose name is not ``<subject>_<task>.csv``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from data.fake_av_media import face_frames, truncate

ACTION_UNITS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
#: Header AU columns of the fake files: 1..27 (real files list more; AU k is column k).
COLUMNS = tuple(range(1, 28))
WIDTH, HEIGHT, FACE = 160, 120, 110

#: (subject, task) → first frame number and the rows' chosen-AU codes (12 values, AU order above)
CODES: dict[tuple[str, str], tuple[int, list[list[int]]]] = {
    ("F001", "T1"): (
        10,
        [
            [1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 0],  # 10
            [0, 1, 0, 0, 1, 1, 0, 0, 1, 0, 0, 1],  # 11: truncated JPEG
            [1, 1, 9, 0, 0, 0, 1, 1, 0, 0, 1, 0],  # 12: AU4 unknown → NaN, the rest kept
            [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],  # 13: no image
            [0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0],  # 14: unknown code 5 in AU12
            [9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9],  # 15: nothing codable
            [0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1],  # 16: image named 00016.jpg
        ],
    ),
    ("F001", "T2"): (100, [[0] * 12, [1] * 12]),
    ("M007", "T2"): (5, [[1, 0] * 6, [0, 1] * 6, [1, 1, 0] * 4]),
    ("M011", "T1"): (1, [[0, 0, 1] * 4, [1] * 12, [0] * 12]),  # row 2 written malformed
    ("F003", "T1"): (40, [[1, 0, 0, 0] * 3, [0, 0, 0, 1] * 3]),  # first frame repeated after these
    ("F007", "T1"): (7, [[0, 1, 1] * 4, [1, 0, 1] * 4, [0] * 12]),
    ("F015", "T3"): (3, [[1] * 12, [0, 1] * 6]),
}
NO_IMAGE = ("F001", "T1", 13)
TRUNCATED = ("F001", "T1", 11)
PADDED = ("F001", "T1", 16)
MALFORMED = ("M011", "T1", 2)  # 0-based row index within the file
REPEATED = ("F003", "T1")
MISSING_AU24 = ("M007", "T1")
NO_FOLDER = ("F015", "T1")
OCC_DIR = "AUCoding/AU_OCC"


def _row(frame: int, codes: list[int], rng: np.random.Generator) -> list[str]:
    """One CSV row: frame number, then codes for AU columns 1..27 (unused ones 0, 1 or 9)."""
    values = {au: int(rng.choice([0, 1, 9])) for au in COLUMNS}
    values.update(dict(zip(ACTION_UNITS, codes, strict=True)))
    return [str(frame), *(str(values[au]) for au in COLUMNS)]


def _label(codes: list[int]) -> tuple[float, ...]:
    return tuple(math.nan if c == 9 else float(c) for c in codes)


def write_fake_bp4d(root: Path, seed: int = 0) -> dict:
    """Write a fake BP4D under ``root`` (AU_OCC files and frames of the subjects above).

    Returns:
        What listing and preparing it (default options) must give: ``samples`` {key: AU values with NaN},
        ``rejections`` sorted [(source, reason)], ``failures`` {source: reason}.
    """
    rng = np.random.default_rng(seed)
    occ = root / OCC_DIR
    occ.mkdir(parents=True)
    header = ",".join(["0", *(str(au) for au in COLUMNS)])
    samples: dict[str, tuple[float, ...]] = {}
    rejections: list[tuple[str, str]] = []
    failures: dict[str, str] = {}
    picture = face_frames(3, WIDTH, HEIGHT, FACE)
    for (subject, task), (start, rows) in CODES.items():
        source = f"{OCC_DIR}/{subject}_{task}.csv"
        lines = [header]
        folder = root / subject / task
        folder.mkdir(parents=True)
        for offset, codes in enumerate(rows):
            frame = start + offset
            line = 2 + offset
            row = _row(frame, codes, rng)
            if (subject, task, offset) == MALFORMED:
                lines.append(",".join(row[:-3]))
                rejections.append((f"{source}:{line}", "malformed label line"))
                continue
            if (subject, task) == ("F001", "T1") and frame == 14:
                row[3] = "5"  # AU 3, unused: no effect
            lines.append(",".join(row))
            name = f"{frame:05d}.jpg" if (subject, task, frame) == PADDED else f"{frame}.jpg"
            if (subject, task, frame) != NO_IMAGE:
                Image.fromarray(picture[offset % 3]).save(folder / name, quality=92)
            if 5 in codes:
                rejections.append((f"{source}:{line}", "unknown AU code 5"))
            elif all(c == 9 for c in codes):
                rejections.append((f"{source}:{line}", "no codable AU (all 9)"))
            elif (subject, task, frame) == NO_IMAGE:
                rejections.append((f"{source}:{line}", "label line without a frame image"))
            else:
                samples[f"{subject}/{task}/{frame}"] = _label(codes)
                if (subject, task, frame) == TRUNCATED:
                    failures[f"{subject}/{task}/{frame}.jpg"] = "unreadable image"
        if (subject, task) == REPEATED:
            lines.append(",".join(_row(start, rows[1], rng)))
            rejections.append((f"{source}:{len(lines)}", "frame number given twice"))
        (occ / f"{subject}_{task}.csv").write_text("\r\n".join(lines) + "\r\n")
    truncate(root / TRUNCATED[0] / TRUNCATED[1] / f"{TRUNCATED[2]}.jpg", 0.4)
    # a file whose header lacks AU 24 (and its frames, which must not become samples)
    subject, task = MISSING_AU24
    short = [c for c in COLUMNS if c != 24]
    body = [",".join(["0", *map(str, short)])] + [",".join(["1", *(["0"] * len(short))])]
    (occ / f"{subject}_{task}.csv").write_text("\n".join(body) + "\n")
    (root / subject / task).mkdir(parents=True)
    Image.fromarray(picture[0]).save(root / subject / task / "1.jpg")
    rejections.append((f"{OCC_DIR}/{subject}_{task}.csv", "AU columns missing: 24"))
    # codes for a task whose frames were never extracted
    subject, task = NO_FOLDER
    (occ / f"{subject}_{task}.csv").write_text(header + "\n" + ",".join(_row(1, [0] * 12, rng)) + "\n")
    rejections.append((f"{OCC_DIR}/{subject}_{task}.csv", "no frame folder for the sequence"))
    (occ / "F001_T1_notes.csv").write_text("checked by the coder\n")
    rejections.append((f"{OCC_DIR}/F001_T1_notes.csv", "label file name is not <subject>_<task>.csv"))
    return {"samples": samples, "rejections": sorted(rejections), "failures": failures}
