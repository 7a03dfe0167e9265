"""Format-faithful fake RAF-DB: the label file with its spelling, aligned 100x100 JPEGs, originals, and traps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: (image name, RAF-DB code 1-7) of the usable samples.
USABLE = [
    ("train_00001.jpg", 5),
    ("train_00002.jpg", 4),
    ("train_00003.jpg", 1),
    ("train_00004.jpg", 7),
    ("train_00005.jpg", 6),
    ("train_00006.jpg", 2),
    ("train_00007.jpg", 3),
    ("train_00008.jpg", 4),
    ("train_00009.jpg", 7),
    ("train_00010.jpg", 1),
    ("test_0001.jpg", 4),
    ("test_0002.jpg", 7),
    ("test_0003.jpg", 5),
]
MISSING = ("train_00011.jpg", 3)  # listed, no image file
TRUNCATED = ("test_0004.jpg", 6)  # image cut in half
UNKNOWN_CODE = ("train_00012.jpg", 9)
MALFORMED = "train_00013.jpg"


def _face(rng: np.random.Generator, size: int) -> Image.Image:
    """A face-like picture (skin oval, eyes, mouth) with per-image variation; aligned crops need no detection."""
    y, x = np.mgrid[0:size, 0:size] / size
    skin = np.array([200, 160, 130]) + rng.integers(-30, 30, 3)
    image = np.full((size, size, 3), rng.integers(40, 90), dtype=np.float64)
    oval = ((x - 0.5) / 0.38) ** 2 + ((y - 0.52) / 0.48) ** 2 < 1
    image[oval] = skin
    for cx in (0.34, 0.66):
        image[((x - cx) / 0.06) ** 2 + ((y - 0.40) / 0.03) ** 2 < 1] = 30
    image[((x - 0.5) / 0.14) ** 2 + ((y - 0.72) / (0.02 + 0.04 * rng.random())) ** 2 < 1] = [120, 40, 40]
    image += rng.normal(0, 6, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def write_fake_rafdb(root: Path, seed: int = 0) -> dict:
    """Write a fake RAF-DB ``basic`` folder under ``root``.

    Returns:
        The expected result of preparing it: ``samples`` {key: (split, package class name)}, ``failures``
        {source: reason prefix}, ``rejected`` (count).
    """
    rng = np.random.default_rng(seed)
    basic = root / "basic"
    (basic / "EmoLabel").mkdir(parents=True)
    (basic / "Image" / "aligned").mkdir(parents=True)
    (basic / "Image" / "original").mkdir(parents=True)
    lines = [f"{name} {code}" for name, code in [*USABLE, MISSING, TRUNCATED, UNKNOWN_CODE]]
    lines.insert(5, MALFORMED)  # a line without its label
    (basic / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for name, _ in [*USABLE, TRUNCATED]:
        stem = Path(name).stem
        _face(rng, 100).save(basic / "Image" / "aligned" / f"{stem}_aligned.jpg", quality=90)
        _face(rng, 160).save(basic / "Image" / "original" / name, quality=90)
    cut = basic / "Image" / "aligned" / f"{Path(TRUNCATED[0]).stem}_aligned.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 3])
    names = ("surprise", "fear", "disgust", "happy", "sad", "anger", "neutral")
    return {
        "samples": {Path(n).stem: ("train" if n.startswith("train") else "test", names[c - 1]) for n, c in USABLE},
        "failures": {
            f"basic/Image/aligned/{Path(MISSING[0]).stem}_aligned.jpg": "missing image file",
            f"basic/Image/aligned/{Path(TRUNCATED[0]).stem}_aligned.jpg": "unreadable image",
        },
        "rejected": 2,
    }
