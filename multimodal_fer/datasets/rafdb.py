"""RAF-DB (Real-world Affective Faces, basic-emotion subset): 15,339 web images, seven classes, train/test.

Layout as distributed (``raw_root`` may be the ``basic`` folder or the folder that holds it)::

    basic/EmoLabel/list_patition_label.txt     "<image name> <label>" per line, e.g. "train_00001.jpg 5"
    basic/Image/aligned/train_00001_aligned.jpg ...   aligned 100x100 faces
    basic/Image/original/train_00001.jpg ...          the original pictures

Labels 1-7 are Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral (RAF-DB's own order, kept as the
label space's order). The split is the file name's prefix. People are not identified, so each image is its own
subject; the validation split is carved from the training images (:class:`OfficialSplits`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from multimodal_fer.datasets.base import DatasetAdapter, Listing, RawMedia, RawSample, Rejection, SampleLabels
from multimodal_fer.datasets.image_io import read_image
from multimodal_fer.errors import DataError
from multimodal_fer.types import LabelSpace

#: RAF-DB's label codes 1..7, in the package's vocabulary.
RAFDB_EXPRESSIONS: tuple[str, ...] = ("surprise", "fear", "disgust", "happy", "sad", "anger", "neutral")
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"  # sic: "patition" is the distributed spelling


class RAFDB(DatasetAdapter):
    """RAF-DB's basic-emotion subset.

    Args:
        images: ``"aligned"`` (the distributed 100x100 aligned faces, resized) or ``"original"`` (the full
            pictures, faces detected and aligned by the preprocessing).
    """

    name = "rafdb"
    modalities = ("face",)
    face_media_allowed = False  # real people; RAF-DB's terms forbid redistribution

    def __init__(self, images: Literal["aligned", "original"] = "aligned") -> None:
        if images not in ("aligned", "original"):
            raise ValueError(f"images={images!r}: choose 'aligned' or 'original'.")
        self.images = images

    @property
    def label_space(self) -> LabelSpace:
        """Seven classes in RAF-DB's order."""
        return LabelSpace(expressions=RAFDB_EXPRESSIONS)

    def settings(self) -> dict[str, Any]:
        """The image kind."""
        return {"images": self.images}

    @staticmethod
    def basic_folder(raw_root: Path) -> Path:
        """The ``basic`` folder, whether ``raw_root`` is it or holds it.

        Raises:
            DataError: no label file in either place.
        """
        for candidate in (raw_root, raw_root / "basic"):
            if (candidate / LABEL_FILE).is_file():
                return candidate
        raise DataError(
            f"No RAF-DB label file under {raw_root}: expected {LABEL_FILE} in it or in its 'basic' folder. Point "
            "raw_root to RAF-DB's basic folder (or the folder holding it)."
        )

    def list_samples(self, raw_root: Path) -> Listing:
        """Every line of the label file; malformed lines and unknown codes are rejected with their line number."""
        basic = self.basic_folder(raw_root)
        prefix = basic.relative_to(raw_root)
        samples: list[RawSample] = []
        rejected: list[Rejection] = []
        label_path = prefix / LABEL_FILE
        for number, line in enumerate((basic / LABEL_FILE).read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            where = f"{label_path}:{number}"
            if len(parts) != 2 or not parts[1].isdigit():
                rejected.append(Rejection(where, "malformed label line"))
                continue
            name, code = parts[0], int(parts[1])
            if not 1 <= code <= len(RAFDB_EXPRESSIONS):
                rejected.append(Rejection(where, f"unknown expression code {code}"))
                continue
            split = "train" if name.startswith("train") else "test" if name.startswith("test") else None
            if split is None:
                rejected.append(Rejection(where, "image name outside the train/test naming"))
                continue
            stem = Path(name).stem
            relative = (
                Path("Image") / "aligned" / f"{stem}_aligned.jpg"
                if self.images == "aligned"
                else Path("Image") / "original" / name
            )
            samples.append(
                RawSample(
                    key=stem,
                    subject=stem,
                    source=str(prefix / relative),
                    split=split,
                    labels=SampleLabels(expr=code - 1),
                )
            )
        return Listing(samples, rejected)

    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The aligned face (resized only) or the original picture (face to be detected)."""
        image = read_image(raw_root / sample.source)
        return RawMedia(image=image, face_aligned=self.images == "aligned")
