"""Format-faithful fake AffectNet: both manual lists with the exact header, JPEGs in sub-folders, and traps.

Also home of :func:`drawn_face` (a face-like picture with its box and iBUG-68 landmarks), which the FER2013 and
CK+ generators reuse.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
from PIL import Image

HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
NAMES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")


def _ellipse(cx: float, cy: float, rx: float, ry: float, count: int) -> list:
    """``count`` points around an ellipse, clockwise on screen from its image-left end."""
    angles = np.linspace(math.pi, 3 * math.pi, count, endpoint=False)
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


def landmarks68(box: tuple[float, float, float, float]) -> np.ndarray:
    """iBUG-68 points of the face :func:`drawn_face` draws in ``box`` (x, y, w, h); (68, 2) float."""
    x, y, w, h = box

    def at(u: float, v: float) -> tuple[float, float]:
        return x + u * w, y + v * h

    points = [at(0.5 - 0.46 * math.cos(a), 0.52 + 0.46 * math.sin(a)) for a in np.linspace(0.1, math.pi - 0.1, 17)]
    points += [at(u, 0.31) for u in np.linspace(0.22, 0.44, 5)]  # image-left brow (subject's right)
    points += [at(u, 0.31) for u in np.linspace(0.56, 0.78, 5)]
    points += [at(0.5, v) for v in np.linspace(0.42, 0.57, 4)]  # bridge, 30 = nose tip
    points += [at(u, 0.61) for u in np.linspace(0.42, 0.58, 5)]
    for cx in (0.34, 0.66):  # 36-41 image-left eye, 42-47 image-right eye
        points += [at(u, v) for u, v in _ellipse(cx, 0.40, 0.06, 0.03, 6)]
    points += [at(u, v) for u, v in _ellipse(0.5, 0.72, 0.14, 0.04, 12)]  # 48 / 54 corners
    points += [at(u, v) for u, v in _ellipse(0.5, 0.72, 0.10, 0.02, 8)]
    return np.asarray(points, dtype=np.float64)


def drawn_face(rng: np.random.Generator, width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A face-like uint8 (height, width, 3) picture: skin oval in ``box``, eyes, mouth, per-image variation."""
    bx, by, bw, bh = box
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = (xx - bx) / bw, (yy - by) / bh
    image = np.full((height, width, 3), rng.integers(40, 90), dtype=np.float64)
    image[((u - 0.5) / 0.46) ** 2 + ((v - 0.52) / 0.48) ** 2 < 1] = np.array([200, 160, 130]) + rng.integers(-30, 30, 3)
    for cx in (0.34, 0.66):
        image[((u - cx) / 0.06) ** 2 + ((v - 0.40) / 0.03) ** 2 < 1] = 30
        image[((u - cx) / 0.11) ** 2 + ((v - 0.31) / 0.015) ** 2 < 1] = 60
    image[((u - 0.5) / 0.14) ** 2 + ((v - 0.72) / (0.02 + 0.04 * rng.random())) ** 2 < 1] = [120, 40, 40]
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def astronaut_face(width: int, height: int, grey: bool = False) -> np.ndarray:
    """A real photo (scikit-image's astronaut, a public-domain NASA portrait) resized, for face detection."""
    import cv2
    from skimage import data

    image = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if grey else image


def _name(index: int) -> str:
    """An AffectNet-like file name: 56 hex characters and .jpg (the exact naming is unconfirmed)."""
    return hashlib.sha224(f"affectnet-{index}".encode()).hexdigest() + ".jpg"


def _landmark_text(points: np.ndarray) -> str:
    return ";".join(f"{v:.2f}" for v in points.reshape(-1))


def write_fake_affectnet(root: Path, seed: int = 0) -> dict:
    """Write a fake AffectNet folder under ``root``.

    Returns:
        The expected result of preparing it with default options: ``samples`` {key: (split, class name or None)},
        ``va`` {key: (valence, arousal) with NaN for -2}, ``failures`` {source: reason prefix}, ``rejections``
        {reason: count}, and ``keys`` of the special rows (``contempt``, ``none_with_va``, ``zero_box``).
    """
    rng = np.random.default_rng(seed)
    lists = root / "Manually_Annotated_file_lists"
    images = root / "Manually_Annotated_Images"
    lists.mkdir(parents=True)
    rows: dict[str, list[str]] = {"training.csv": [HEADER], "validation.csv": [HEADER]}
    expected: dict = {"samples": {}, "va": {}, "failures": {}, "rejections": {}, "keys": {}}
    counter = iter(range(1000))

    def add(
        listing: str,
        code: int,
        va: tuple[float, float],
        *,
        write: str = "face",
        landmarks: str | None = None,
        box: tuple[int, int, int, int] | None = None,
        outcome: str = "sample",
    ) -> str:
        index = next(counter)
        relative = f"{100 + index % 3}/{_name(index)}"
        width, height = int(rng.integers(90, 140)), int(rng.integers(90, 140))
        face_box = (int(width * 0.2), int(height * 0.15), int(width * 0.6), int(height * 0.7))
        (images / relative).parent.mkdir(parents=True, exist_ok=True)
        if write in ("face", "truncated"):
            Image.fromarray(drawn_face(rng, width, height, face_box)).save(images / relative, quality=90)
        elif write == "astronaut":
            Image.fromarray(astronaut_face(160, 160)).save(images / relative, quality=92)
        if write == "truncated":
            path = images / relative
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        text = landmarks if landmarks is not None else _landmark_text(landmarks68(face_box))
        x, y, w, h = box if box is not None else face_box
        rows[listing].append(f"{relative},{x},{y},{w},{h},{text},{code},{va[0]},{va[1]}")
        split = "train" if listing == "training.csv" else "test"
        if outcome == "sample":
            expected["samples"][relative] = (split, NAMES[code] if code < 8 else None)
            expected["va"][relative] = tuple(math.nan if v == -2 else v for v in va)
        elif outcome.startswith("failure:"):
            expected["failures"][f"Manually_Annotated_Images/{relative}"] = outcome.removeprefix("failure:")
        else:
            expected["rejections"][outcome] = expected["rejections"].get(outcome, 0) + 1
        return relative

    for code in range(8):  # one of every class, with valence/arousal
        key = add("training.csv", code, (round(float(rng.uniform(-1, 1)), 6), round(float(rng.uniform(-1, 1)), 6)))
        if code == 7:
            expected["keys"]["contempt"] = [key]
    add("training.csv", 1, (-2, -2))  # valid expression without valence/arousal: kept, VA NaN
    add("training.csv", 3, (0.25, 1))  # VA on the edge of the range
    expected["keys"]["none_with_va"] = add("training.csv", 8, (0.1, -0.3), outcome="expression code 8 (None) excluded")
    add("training.csv", 9, (-2, -2), outcome="expression code 9 (Uncertain) excluded")
    add("training.csv", 10, (-2, -2), outcome="expression code 10 (Non-Face) excluded")
    add("training.csv", 11, (0.0, 0.0), outcome="unknown expression code 11")
    add("training.csv", 2, (0.3, 1.7), outcome="valence/arousal outside [-1, 1]")
    add("training.csv", 4, (0.1, 0.2), landmarks="12.5;30.1;abc", outcome="failure:malformed facial_landmarks")
    add("training.csv", 5, (-0.4, 0.6), write="truncated", outcome="failure:unreadable image")
    add("training.csv", 6, (-0.6, 0.7), write="none", outcome="failure:missing image file")
    expected["keys"]["zero_box"] = add(
        "training.csv", 0, (0.0, -0.1), write="astronaut", landmarks=";".join(["0"] * 136), box=(0, 0, 0, 0)
    )
    for code in (0, 1, 2, 6, 7):
        key = add("validation.csv", code, (round(float(rng.uniform(-1, 1)), 6), round(float(rng.uniform(-1, 1)), 6)))
        if code == 7:
            expected["keys"]["contempt"].append(key)
    add("validation.csv", 9, (-2, -2), outcome="expression code 9 (Uncertain) excluded")
    rows["training.csv"].insert(7, "100/short_row.jpg,1,2,3")  # a row cut short
    expected["rejections"]["malformed row (4 fields, expected 9)"] = 1
    for name, lines in rows.items():
        (lists / name).write_text("\n".join(lines) + "\n")
    return expected
