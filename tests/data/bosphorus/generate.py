"""Format-faithful fake Bosphorus: ``.bnt`` range scans of a synthetic face, ``.lm3``/``.lm2`` files, and traps.

A scan is a height field of a face-like surface (an ellipsoidal head front with a nose, brows, cheeks and a mouth
that the expression moves) sampled on a pixel grid at ``spacing`` mm, in millimetres, +z towards the sensor and +y
up; grid pixels off the face hold the file's background value ``zmin``, like the real files. The ``.bnt`` bytes are
packed here with ``struct`` from the layout in the reference (not with the package's reader), column-major N×5.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

ZMIN = -1.0e9
#: 22 standard landmark names (datasets.md §9a), in the files' order.
LANDMARK_NAMES = (
    "Outer left eyebrow", "Middle left eyebrow", "Inner left eyebrow", "Inner right eyebrow", "Middle right eyebrow",
    "Outer right eyebrow", "Outer left eye corner", "Inner left eye corner", "Inner right eye corner",
    "Outer right eye corner", "Nose saddle left", "Nose saddle right", "Left nose peak", "Nose tip",
    "Right nose peak", "Left mouth corner", "Upper lip outer middle", "Right mouth corner", "Upper lip inner middle",
    "Lower lip inner middle", "Lower lip outer middle", "Chin middle",
)  # fmt: skip
#: Face-frame x, y (mm) of each standard landmark on the fake face.
LANDMARK_XY = np.array(
    [[-45, 38], [-30, 42], [-14, 38], [14, 38], [30, 42], [45, 38], [-44, 25], [-16, 25], [16, 25], [44, 25],
     [-8, 20], [8, 20], [-12, -12], [0, -6], [12, -12], [-24, -38], [0, -28], [24, -38], [0, -34], [0, -38],
     [0, -44], [0, -72]],
    dtype=np.float64,
)  # fmt: skip
#: How each expression moves the mouth: (corner lift mm, mouth opening mm, brow lift mm).
EXPRESSION_SHAPES = {
    "N": (0.0, 0.0, 0.0),
    "HAPPY": (6.0, 2.0, 0.0),
    "SADNESS": (-5.0, 0.0, 2.0),
    "SURPRISE": (0.0, 12.0, 8.0),
    "ANGER": (-2.0, 0.0, -5.0),
    "DISGUST": (-3.0, 3.0, -3.0),
    "FEAR": (-1.0, 6.0, 6.0),
}


def face_height(x: np.ndarray, y: np.ndarray, shape: str = "N", width: float = 75.0) -> np.ndarray:
    """z (mm, +z towards the viewer) of the fake face at x, y (mm); NaN off the face.

    Args:
        x: face-frame x (mm, to the image right).
        y: face-frame y (mm, up).
        shape: an :data:`EXPRESSION_SHAPES` key.
        width: half-width of the face (mm); the height is 1.35 times it.
    """
    lift, opening, brow = EXPRESSION_SHAPES.get(shape, (0.0, 0.0, 0.0))
    height = 1.35 * width
    r = (x / width) ** 2 + (y / height) ** 2
    z = 60.0 * np.sqrt(np.clip(1.0 - r, 0.0, None))
    z += 22.0 * np.exp(-((x / 12.0) ** 2) - ((y + 5.0) / 22.0) ** 2)  # nose
    z += (4.0 + 0.3 * brow) * np.exp(-(((np.abs(x) - 30.0) / 14.0) ** 2) - ((y - 38.0 - brow) / 5.0) ** 2)  # brows
    z -= 6.0 * np.exp(-(((np.abs(x) - 30.0) / 12.0) ** 2) - ((y - 25.0) / 7.0) ** 2)  # eye sockets
    mouth_y = -38.0 + lift * (np.abs(x) / 24.0) ** 2
    z -= opening * np.exp(-((x / 18.0) ** 2) - ((y - mouth_y) / 4.0) ** 2)  # open mouth
    z += 3.0 * np.exp(-((x / 22.0) ** 2) - ((y - mouth_y) / 7.0) ** 2)  # lips
    return np.where(r < 1.0, z, np.nan)


def bnt_bytes(points: np.ndarray, zmin: float = ZMIN, image_name: str = "scan.png") -> bytes:
    """A ``.bnt`` file: header, image name, count, then the N×5 values column-major (row-major grid order).

    Args:
        points: float (R, C, 3) mm; NaN marks background (written as ``zmin``).
        zmin: background value.
        image_name: the texture image the header names.
    """
    rows, cols, _ = points.shape
    xyz = np.where(np.isfinite(points), points, zmin).reshape(-1, 3)
    v, u = np.mgrid[0:rows, 0:cols]
    uv = np.stack([u.ravel() / (cols - 1), v.ravel() / (rows - 1)], axis=1)
    data = np.concatenate([xyz, uv], axis=1)  # (N, 5)
    name = image_name.encode()
    header = struct.pack("<HHd", rows, cols, zmin) + struct.pack("<H", len(name)) + name
    return header + struct.pack("<I", data.size) + data.T.astype("<f8").tobytes()


def scan_points(shape: str, width: float, rows: int, cols: int, spacing: float, hand: bool = False) -> np.ndarray:
    """(R, C, 3) mm grid of the fake face (NaN off the face); ``hand`` puts a slab 25 mm in front of the eyes."""
    y = (rows - 1) / 2.0 * spacing - np.arange(rows) * spacing  # rows top to bottom: y decreases
    x = np.arange(cols) * spacing - (cols - 1) / 2.0 * spacing
    xx, yy = np.meshgrid(x, y)
    z = face_height(xx, yy, shape, width)
    if hand:
        slab = (np.abs(yy - 25.0) < 14.0) & (xx < 10.0) & np.isfinite(z)
        z = np.where(slab, 85.0, z)
    return np.stack([xx, yy, z], axis=-1)


def lm3_text(names: list[str], points: np.ndarray, declared: int | None = None) -> str:
    """A ``.lm3`` (``points`` (K, 3)) or ``.lm2`` (``(K, 2)``) file: header lines, ``<N> landmarks:``, pairs."""
    lines = ["# Bosphorus database landmark file", "# generated for tests", "", f"{declared or len(names)} landmarks:"]
    for name, point in zip(names, points, strict=True):
        lines += [name, " ".join(f"{v:.6f}" for v in point)]
    return "\n".join(lines) + "\n"


def write_scan(folder: Path, stem: str, shape: str, width: float, grid: tuple[int, int, float], **kind: bool) -> None:
    """One scan's ``.bnt``, ``.lm3`` and ``.lm2``; ``kind``: ``hand``, ``no_nose``, ``empty``, ``truncate``,
    ``few_landmarks``."""
    rows, cols, spacing = grid
    points = scan_points(shape, width, rows, cols, spacing, hand=kind.get("hand", False))
    if kind.get("empty"):
        points[...] = np.nan
    data = bnt_bytes(points, image_name=f"{stem}.png")
    if kind.get("truncate"):
        data = data[: len(data) // 2]
    (folder / f"{stem}.bnt").write_bytes(data)
    xy = LANDMARK_XY * np.array([width / 75.0, 1.0])
    z = np.nan_to_num(face_height(xy[:, 0], xy[:, 1], shape, width), nan=0.0)
    xyz = np.column_stack([xy, z])
    names = list(LANDMARK_NAMES)
    if kind.get("no_nose"):  # an occluded scan's file leaves the nose tip out
        keep = [i for i, n in enumerate(names) if n != "Nose tip"]
        names, xyz = [names[i] for i in keep], xyz[keep]
    if kind.get("few_landmarks"):
        names, xyz = names[:2], xyz[:2]
    (folder / f"{stem}.lm3").write_text(lm3_text(names, xyz))
    (folder / f"{stem}.lm2").write_text(lm3_text(names, xyz[:, :2] * 4.0 + 300.0))


#: (subject, stem suffix, expression shape for the surface, trap kinds) of every fake scan.
SCANS = [
    *[(s, "N_N_0", "N", {}) for s in ("bs000", "bs001", "bs002", "bs003", "bs004", "bs005")],
    *[(s, "E_HAPPY_0", "HAPPY", {}) for s in ("bs000", "bs001", "bs002", "bs003", "bs004", "bs005")],
    *[(s, "E_SURPRISE_0", "SURPRISE", {}) for s in ("bs000", "bs002", "bs004")],
    ("bs000", "E_SADNESS_0", "SADNESS", {}),
    ("bs003", "E_ANGER_0", "ANGER", {}),
    ("bs000", "LFAU_12_0", "HAPPY", {}),
    ("bs001", "UFAU_2_0", "SURPRISE", {}),
    ("bs002", "CAU_A12A25_0", "HAPPY", {}),
    ("bs003", "O_EYE_0", "N", {"hand": True, "no_nose": True}),
    ("bs004", "O_HAIR_0", "N", {}),
    ("bs005", "YR_R10_0", "N", {}),  # rotations: not included by default
    ("bs001", "E_FEAR_0", "FEAR", {"truncate": True}),
    ("bs002", "E_ANGER_0", "ANGER", {"empty": True}),
    ("bs003", "E_DISGUST_0", "DISGUST", {"few_landmarks": True}),
    ("bs004", "E_BORED_0", "N", {}),
    ("bs005", "LFAU_34_0", "N", {}),  # AU 34 is outside the default AU list
]


def write_fake_bosphorus(root: Path, grid: tuple[int, int, float] = (48, 40, 4.0)) -> dict:
    """Write the fake data set under ``root``; return what preparing it must give.

    Args:
        root: the raw root (subject folders are made in it).
        grid: rows, columns and spacing (mm) of each scan's grid.

    Returns:
        ``samples`` {key: (None, class name or None)}, ``failures`` {source: reason}, ``rejections`` {source:
        reason}, ``occluded`` {key: occlusion kind}, ``au`` {key: {AU number: value}} and ``subjects``.
    """
    widths = {"bs000": 72.0, "bs001": 76.0, "bs002": 70.0, "bs003": 78.0, "bs004": 74.0, "bs005": 73.0}
    for subject, suffix, shape, kind in SCANS:
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        write_scan(folder, f"{subject}_{suffix}", shape, widths[subject], grid, **kind)
    emotions = {"N": "neutral", "HAPPY": "happy", "SURPRISE": "surprise", "SADNESS": "sad", "ANGER": "anger"}
    samples: dict = {}
    for subject, suffix, _, kind in SCANS:
        key = f"{subject}_{suffix}"
        parts = suffix.split("_")
        if kind or parts[0] in ("YR",) or parts[1] in ("BORED", "34"):
            continue
        samples[key] = (None, emotions.get(parts[1]) if parts[0] in ("N", "E") else None)
    samples["bs003_O_EYE_0"] = (None, None)
    return {
        "samples": samples,
        "failures": {
            "bs001/bs001_E_FEAR_0.bnt": "truncated .bnt file",
            "bs002/bs002_E_ANGER_0.bnt": "no valid point in the scan",
            "bs003/bs003_E_DISGUST_0.bnt": "too few landmarks",
        },
        "rejections": {
            "bs005/bs005_YR_R10_0.bnt": "scan class not included",
            "bs004/bs004_E_BORED_0.bnt": "unknown emotion code",
            "bs005/bs005_LFAU_34_0.bnt": "AU not among the chosen action units",
        },
        "occluded": {"bs003_O_EYE_0": "hand", "bs004_O_HAIR_0": "hair"},
        "au": {"bs000_LFAU_12_0": {12: 1.0}, "bs001_UFAU_2_0": {2: 1.0}, "bs002_CAU_A12A25_0": {12: 1.0, 25: 1.0}},
        "subjects": set(widths),
    }
