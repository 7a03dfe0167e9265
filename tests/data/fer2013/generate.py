"""Format-faithful fake FER2013: ``fer2013.csv`` (emotion,pixels,Usage) with 48x48 grey pixel strings, and traps.

``variant="icml"`` writes the same rows as Kaggle's ``icml_face_data.csv`` (header with spaces, other column order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.affectnet.generate import drawn_face

NAMES = ("anger", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}

#: (emotion code, Usage) of the usable rows, in file order.
USABLE = [
    (0, "Training"), (3, "Training"), (6, "Training"), (2, "Training"), (4, "Training"), (5, "Training"),
    (1, "Training"), (3, "Training"), (3, "PublicTest"), (6, "PublicTest"), (0, "PublicTest"),
    (4, "PrivateTest"), (5, "PrivateTest"), (3, "PrivateTest"),
]  # fmt: skip


def _pixels(rng: np.random.Generator) -> list[int]:
    grey = drawn_face(rng, 48, 48, (4, 2, 40, 44)).mean(axis=2).round().astype(int)
    return grey.reshape(-1).tolist()


def write_fake_fer2013(root: Path, seed: int = 0, variant: str = "fer2013") -> dict:
    """Write a fake FER2013 CSV under ``root``.

    Returns:
        The expected result of preparing it: ``samples`` {key: (split, class name)}, ``failures`` {source: reason},
        ``rejections`` {source: reason}, ``csv`` (its name) and ``pixels`` {key: (48, 48) uint8}.
    """
    rng = np.random.default_rng(seed)
    name = "fer2013.csv" if variant == "fer2013" else "icml_face_data.csv"
    rows: list[tuple[str, str, str]] = []  # (emotion, pixels, Usage)
    expected: dict = {"samples": {}, "failures": {}, "rejections": {}, "csv": name, "pixels": {}}

    def add(code: str, pixels: str, usage: str, outcome: str = "sample") -> None:
        rows.append((code, pixels, usage))
        index = len(rows) - 1
        source = f"{name}:{index + 2}"  # line 1 is the header
        if outcome == "sample":
            key = f"row{index:05d}"
            expected["samples"][key] = (SPLITS[usage], NAMES[int(code)])
            expected["pixels"][key] = np.array(pixels.split(), dtype=np.uint8).reshape(48, 48)
        elif outcome.startswith("failure:"):
            expected["failures"][source] = outcome.removeprefix("failure:")
        else:
            expected["rejections"][source] = outcome

    for code, usage in USABLE[:9]:
        add(str(code), " ".join(map(str, _pixels(rng))), usage)
    add("7", " ".join(map(str, _pixels(rng))), "Training", "unknown expression code 7")
    add("2", " ".join(map(str, _pixels(rng)[:-1])), "Training", "failure:2303 pixels, expected 2304")
    broken = _pixels(rng)
    add("5", " ".join(map(str, broken[:100])) + " x1 " + " ".join(map(str, broken[101:])), "PublicTest",
        "failure:non-numeric pixels")  # fmt: skip
    add("1", " ".join(map(str, _pixels(rng))), "Validation", "unknown Usage 'Validation'")
    add("3", " ".join(map(str, [300] + _pixels(rng)[1:])), "PrivateTest", "failure:pixel values outside 0-255")
    for code, usage in USABLE[9:]:
        add(str(code), " ".join(map(str, _pixels(rng))), usage)
    if variant == "fer2013":
        lines = ["emotion,pixels,Usage", *(",".join(row) for row in rows)]
    else:
        lines = ["emotion, Usage, pixels", *(f"{c},{u},{p}" for c, p, u in rows)]
    # a last row cut short, as a truncated download leaves it
    lines.append("4," + " ".join(map(str, _pixels(rng)[:500])))
    expected["rejections"][f"{name}:{len(lines)}"] = "malformed row (2 fields, expected 3)"
    (root / name).write_text("\n".join(lines) + "\n")
    return expected
