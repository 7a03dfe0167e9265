"""Format-faithful fake CK+: frame PNGs, emotion/FACS/landmark text files in CK+'s folders and notation, and traps.

Frames are 160x122 grey PNGs (CK+'s 640x490 scaled down to keep tests fast); the frame whose landmark file is
missing holds a real photo (scikit-image's astronaut) at 256x196 so that the face detector finds a face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from multimodal_fer.datasets.ckplus import DEFAULT_ACTION_UNITS

from data.affectnet.generate import astronaut_face, drawn_face, landmarks68

NAMES = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sad", "surprise")
WIDTH, HEIGHT = 160, 122

#: (subject, sequence, frames, emotion code or None (no file), FACS AUs or None (no file)).
SEQUENCES = [
    ("S005", "001", 5, 3, [9, 15, 17]),
    ("S010", "002", 5, 1, [4, 5, 7, 23]),
    ("S011", "001", 5, 5, [6, 12, 25]),
    ("S014", "003", 5, 7, [1, 2, 5, 25, 27]),
    ("S022", "001", 5, 6, None),  # labelled, no FACS file: no AU labels
    ("S026", "001", 4, 2, [12, 14]),  # contempt
    ("S026", "002", 6, 4, [1, 2, 4, 5, 20, 25, 43]),  # AU43 is outside the default AU list: ignored
    ("S032", "001", 5, None, [1, 2, 5]),  # no emotion file
    ("S032", "002", 5, 9, [4]),  # emotion code outside 0-7
]
NO_LANDMARKS = ("S010", "002", 4)  # landmark file missing: the face is detected
CORRUPT = ("S011", "001", 5)  # PNG cut short
MISSING = ("S014", "003", 4)  # frame image missing


def _sci(value: float) -> str:
    return f"   {value:.7e}"


def _aus(listed: list[int] | None) -> np.ndarray:
    if listed is None:
        return np.full(len(DEFAULT_ACTION_UNITS), np.nan, dtype=np.float32)
    return np.array([1.0 if au in listed else 0.0 for au in DEFAULT_ACTION_UNITS], dtype=np.float32)


def write_fake_ckplus(root: Path, seed: int = 0) -> dict:
    """Write a fake CK+ folder (``cohn-kanade-images``, ``Emotion``, ``FACS``, ``Landmarks``) under ``root``.

    Returns:
        The expected result of preparing it with default options: ``samples`` {key: (None, class name)}, ``au``
        {key: AU occurrences over the default AU list, NaN unlabelled}, ``failures`` {source: reason prefix},
        ``rejections`` {source: reason}, ``au_only`` {key: AUs} (peak frames of the unlabelled sequence),
        ``subjects`` (of the usable samples).
    """
    rng = np.random.default_rng(seed)
    expected: dict = {"samples": {}, "au": {}, "failures": {}, "rejections": {}, "au_only": {}, "subjects": set()}
    for subject, sequence, count, code, facs in SEQUENCES:
        folder = Path(subject) / sequence
        for kind in ("cohn-kanade-images", "Landmarks"):
            (root / kind / folder).mkdir(parents=True, exist_ok=True)
        for frame in range(1, count + 1):
            stem = f"{subject}_{sequence}_{frame:08d}"
            png = root / "cohn-kanade-images" / folder / f"{stem}.png"
            if (subject, sequence, frame) == MISSING:
                continue
            if (subject, sequence, frame) == NO_LANDMARKS:
                Image.fromarray(astronaut_face(256, 196, grey=True)).save(png)
                continue
            box = (50 + int(rng.integers(-5, 5)), 15 + int(rng.integers(-5, 5)), 60, 80)
            Image.fromarray(drawn_face(rng, WIDTH, HEIGHT, box).mean(axis=2).astype(np.uint8)).save(png)
            points = landmarks68(box) + rng.normal(0, 0.3, (68, 2))
            text = "".join(f"{_sci(x)}{_sci(y)}\n" for x, y in points)
            (root / "Landmarks" / folder / f"{stem}_landmarks.txt").write_text(text)
            if (subject, sequence, frame) == CORRUPT:
                png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
        peak = f"{subject}_{sequence}_{count:08d}"
        if facs is not None:
            (root / "FACS" / folder).mkdir(parents=True, exist_ok=True)
            lines = "".join(f"{_sci(au)}{_sci(float(rng.integers(0, 6)))}\n" for au in facs)
            (root / "FACS" / folder / f"{peak}_facs.txt").write_text(lines)
        if code is not None:
            (root / "Emotion" / folder).mkdir(parents=True, exist_ok=True)
            (root / "Emotion" / folder / f"{peak}_emotion.txt").write_text(f"{_sci(float(code))}\n")
        if code is None:
            expected["rejections"][f"cohn-kanade-images/{folder}"] = "sequence without emotion file"
            for frame in range(count - 2, count + 1):
                expected["au_only"][f"{subject}_{sequence}_{frame:08d}"] = _aus(facs)
            continue
        if not 0 <= code < 8:
            expected["rejections"][f"Emotion/{folder}/{peak}_emotion.txt"] = f"emotion code {code} outside 0-7"
            continue
        for frame in (1, *range(max(2, count - 2), count + 1)):
            key = f"{subject}_{sequence}_{frame:08d}"
            source = f"cohn-kanade-images/{folder}/{key}.png"
            if (subject, sequence, frame) == CORRUPT:
                expected["failures"][source] = "unreadable image"
            elif (subject, sequence, frame) == MISSING:
                expected["failures"][source] = "missing image file"
            else:
                expected["samples"][key] = (None, NAMES[0 if frame == 1 else code])
                expected["au"][key] = _aus(None if frame == 1 else facs)
                expected["subjects"].add(subject)
    (root / "cohn-kanade-images" / "S005" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # stray file, ignored
    return expected
