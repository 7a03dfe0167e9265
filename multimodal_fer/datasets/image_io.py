"""Reading still images of raw data sets: any format Pillow reads, as uint8 RGB, with clear reasons on failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multimodal_fer.datasets.base import SampleError


def read_image(path: Path) -> np.ndarray:
    """Read an image file fully (a truncated file is an error, not a half-grey picture).

    Args:
        path: the file.

    Returns:
        uint8 (H, W, 3) RGB (grey and palette images converted).

    Raises:
        SampleError: ``"missing image file"``, ``"empty image file"`` or ``"unreadable image: ..."``.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise SampleError("missing image file")
    if path.stat().st_size == 0:
        raise SampleError("empty image file")
    try:
        with Image.open(path) as image:
            image.load()  # decodes everything: truncated JPEG/PNG data raise here
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise SampleError(f"unreadable image: {type(error).__name__}") from error
    array = np.asarray(rgb, dtype=np.uint8)
    if array.ndim != 3 or array.shape[0] < 8 or array.shape[1] < 8:
        raise SampleError(f"image too small ({array.shape[1]}x{array.shape[0]} pixels)")
    return array
