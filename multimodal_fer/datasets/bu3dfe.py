"""BU-3DFE: 3-D face models (VRML meshes) of 100 subjects, six expressions at four intensities plus neutral.

Layout as distributed (``raw_root`` holds one folder per subject; ``/work/shared/reference/datasets.md`` §9b)::

    F0001/F0001_AN01WH_F3D.wrl   cropped face mesh (VRML 2.0 IndexedFaceSet)
    F0001/F0001_AN01WH_F3D.bnd   its 83 landmarks: "<vertex index> <x> <y> <z>" per line
    F0001/F0001_NE00WH_F3D.wrl   neutral (intensity 00)
    F0001/F0001_AN01WH_RAW.wrl   the uncropped scan, F0001_AN01WH_F2D.bmp the texture (unused)

A name is ``<ID>_<EX><II><RR>_F3D.wrl``: ``ID`` F0001-F0056 / M0001-M0044, expression ``EX`` (AN, DI, FE, HA, NE,
SA, SU → anger, disgust, fear, happy, neutral, sad, surprise), intensity ``II`` (01-04; 00 for neutral only) and
ethnicity ``RR`` (WH, AE, BL, AM, IN, LA). The intensity is kept as metadata, in the cache field ``intensity``
(int8, 0 for neutral), never as a label. ``intensities`` chooses which levels are listed (the common protocol uses
3 and 4); models at other levels are rejected while listing, as are names that break the pattern.

Loading: the ``F3D`` mesh is read (Open3D 0.20 reads no VRML: :mod:`multimodal_fer.media.vrml`), scaled to metres
(``metres_per_unit``; millimetres, UNCONFIRMED) and centred on its landmarks' mean where the ``.bnd`` file is
there. A malformed ``.wrl``, a mesh without faces, a malformed ``.bnd`` and one with fewer than ``num_landmarks``
points are load failures, recorded in ``failures.jsonl``. UNCONFIRMED: +z points from the face towards the viewer,
+y up.

Subjects are the ID folders; with no official split, the default protocol is subject-independent 10-fold
cross-validation (:class:`SubjectKFold`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from multimodal_fer.datasets.base import (
    DatasetAdapter,
    Listing,
    RawMedia,
    RawSample,
    Rejection,
    SampleError,
    SampleLabels,
)
from multimodal_fer.datasets.protocols import SplitProtocol, SubjectKFold
from multimodal_fer.errors import DataError
from multimodal_fer.geometry.surface import FaceSurface
from multimodal_fer.media.landmark_files_3d import read_bnd
from multimodal_fer.media.vrml import read_vrml_mesh
from multimodal_fer.types import ArraySpec, LabelSpace

#: Expression codes → class names, in the label space's order (neutral first, then alphabetical by code).
EXPRESSION_CODES: dict[str, str] = {
    "NE": "neutral",
    "AN": "anger",
    "DI": "disgust",
    "FE": "fear",
    "HA": "happy",
    "SA": "sad",
    "SU": "surprise",
}
ETHNICITY_CODES: tuple[str, ...] = ("WH", "AE", "BL", "AM", "IN", "LA")
_SUBJECT = re.compile(r"[FM]\d{4}")
_NAME = re.compile(r"(?P<subject>[FM]\d{4})_(?P<ex>[A-Z]{2})(?P<ii>\d{2})(?P<rr>[A-Z]{2})_F3D")


class BU3DFE(DatasetAdapter):
    """BU-3DFE face meshes → depth maps and point clouds, with expressions (intensity kept as metadata).

    Args:
        intensities: expression intensity levels to list, among 1-4 (the common protocol: [3, 4]).
        include_neutral: list the neutral models (the label space then has ``neutral`` first; without it, six
            classes).
        use_landmarks: centre the view on the ``.bnd`` landmarks (and check the file).
        num_landmarks: a ``.bnd`` file with fewer points makes the model a failure (83 in the distribution).
        metres_per_unit: size of the files' coordinate unit in metres (millimetres: 0.001).
    """

    name = "bu3dfe"
    modalities = ("depth",)
    version = 1

    def __init__(
        self,
        intensities: list[int] | None = None,
        include_neutral: bool = True,
        use_landmarks: bool = True,
        num_landmarks: int = 83,
        metres_per_unit: float = 0.001,
    ) -> None:
        self.intensities = tuple(sorted(intensities)) if intensities is not None else (1, 2, 3, 4)
        if not self.intensities or any(level not in (1, 2, 3, 4) for level in self.intensities):
            raise ValueError(f"intensities={list(self.intensities)}: choose levels among 1, 2, 3 and 4.")
        if metres_per_unit <= 0 or num_landmarks < 0:
            raise ValueError(f"metres_per_unit={metres_per_unit} must be positive, num_landmarks={num_landmarks} >= 0.")
        self.include_neutral = include_neutral
        self.use_landmarks = use_landmarks
        self.num_landmarks = num_landmarks
        self.metres_per_unit = metres_per_unit

    @property
    def label_space(self) -> LabelSpace:
        """Neutral (if included) and the six basic emotions; no AUs."""
        names = [name for name in EXPRESSION_CODES.values() if self.include_neutral or name != "neutral"]
        return LabelSpace(expressions=tuple(names))

    def default_protocol(self) -> SplitProtocol:
        """Subject-independent 10-fold cross-validation (BU-3DFE has no official split)."""
        return SubjectKFold(num_folds=10)

    def settings(self) -> dict[str, Any]:
        """Every option."""
        return {
            "intensities": list(self.intensities),
            "include_neutral": self.include_neutral,
            "use_landmarks": self.use_landmarks,
            "num_landmarks": self.num_landmarks,
            "metres_per_unit": self.metres_per_unit,
        }

    def sample_fields(self) -> list[ArraySpec]:
        """``intensity`` int8: the model's expression intensity level, 1-4 (0 for neutral)."""
        return [ArraySpec("intensity", (), "int8")]

    def list_samples(self, raw_root: Path) -> Listing:
        """Every ``<ID>/<ID>_<EX><II><RR>_F3D.wrl`` under ``raw_root`` (``RAW`` scans are not listed).

        Raises:
            DataError: no subject folder with an ``_F3D.wrl`` file.
        """
        raw_root = Path(raw_root)
        folders = sorted(p for p in raw_root.iterdir() if p.is_dir()) if raw_root.is_dir() else []
        models = [(folder, path) for folder in folders for path in sorted(folder.glob("*_F3D.wrl"))]
        if not models:
            raise DataError(
                f"No BU-3DFE model under {raw_root}: expected subject folders such as F0001/ holding "
                "F0001_AN01WH_F3D.wrl files. Point raw_root at the folder that holds the subject folders."
            )
        space = self.label_space.expressions
        samples, rejected = [], []
        for folder, path in models:
            source = path.relative_to(raw_root).as_posix()
            match = _NAME.fullmatch(path.stem)
            reason = None
            if match is None or match["rr"] not in ETHNICITY_CODES or match["ex"] not in EXPRESSION_CODES:
                reason = "file name not <ID>_<EX><II><RR>_F3D.wrl"
            elif match["subject"] != folder.name or not _SUBJECT.fullmatch(folder.name):
                reason = "file name's subject differs from its folder"
            else:
                level = int(match["ii"])
                neutral = match["ex"] == "NE"
                if (neutral and level != 0) or (not neutral and not 1 <= level <= 4):
                    reason = "intensity code outside 01-04 (00 for neutral)"
                elif neutral and not self.include_neutral:
                    reason = "neutral not included"
                elif not neutral and level not in self.intensities:
                    reason = "intensity not included"
            if reason is not None:
                rejected.append(Rejection(source, reason))
                continue
            assert match is not None
            landmarks = path.with_suffix(".bnd")
            samples.append(
                RawSample(
                    key=path.stem,
                    subject=folder.name,
                    source=source,
                    labels=SampleLabels(expr=space.index(EXPRESSION_CODES[match["ex"]])),
                    locators={"landmarks": landmarks.name if self.use_landmarks and landmarks.exists() else None},
                    extras={"intensity": level},
                )
            )
        return Listing(samples, rejected)

    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The face mesh in metres, centred on its landmarks' mean where the ``.bnd`` file is there.

        Raises:
            SampleError: ``VRML mesh without faces``, ``malformed VRML file``, ``malformed landmark file`` or
                ``too few landmarks``.
        """
        path = Path(raw_root) / sample.source
        try:
            vertices, triangles = read_vrml_mesh(path)
        except DataError as error:
            reason = "VRML mesh without faces" if "faces" in str(error) else "malformed VRML file"
            raise SampleError(reason, str(error)) from error
        centre = None
        if sample.locators.get("landmarks"):
            bnd = path.parent / sample.locators["landmarks"]
            try:
                indices, points = read_bnd(bnd)
            except DataError as error:
                raise SampleError("malformed landmark file", str(error)) from error
            if len(points) < self.num_landmarks:
                detail = f"{bnd.name}: {len(points)} < num_landmarks={self.num_landmarks}"
                raise SampleError("too few landmarks", detail)
            if indices.size and indices.max() >= len(vertices):
                raise SampleError(
                    "malformed landmark file", f"{bnd.name} names vertex {indices.max()} of {len(vertices)}"
                )
            centre = points.mean(axis=0) * self.metres_per_unit
        try:
            surface = FaceSurface(vertices * self.metres_per_unit, triangles, centre)
        except DataError as error:
            raise SampleError("malformed VRML file", str(error)) from error
        return RawMedia(surface=surface)
