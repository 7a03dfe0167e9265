"""Bosphorus 3D face database: structured-light range scans (``.bnt``) with expression, AU and occlusion codes.

Layout as distributed (``raw_root`` holds one folder per subject; ``/work/shared/reference/datasets.md`` §9a)::

    bs000/bs000_N_N_0.bnt        neutral          bs000/bs000_E_HAPPY_0.bnt   emotion
    bs000/bs000_LFAU_12_0.bnt    lower-face AU    bs000/bs000_UFAU_2_0.bnt    upper-face AU
    bs000/bs000_CAU_A22_0.bnt    combined AUs     bs000/bs000_O_EYE_0.bnt     occlusion
    bs000/bs000_YR_R10_0.bnt     rotations (YR, PR, CR; not included by default)
    bs000/bs000_N_N_0.lm3        3-D landmarks beside each scan (``.lm2``: 2-D, on the texture image; unused)

A file stem is ``<subject>_<class>_<code>_<n>``. Labels, per class:

=========  ===============================  ==================================================================
class      expression                       AUs (over ``action_units``)
=========  ===============================  ==================================================================
N          neutral                          all 0 (``neutral_aus="absent"``) or NaN
E          ANGER/DISGUST/FEAR/HAPPY/        NaN
           SADNESS/SURPRISE → anger, ...
LFAU/UFAU  -1 (unlabelled)                  the code's AU number(s) 1; the others NaN (``other_aus``) or 0
CAU        -1                               every number in the code (``A12A15`` → 12, 15) 1; the others as above
O          -1                               NaN; flagged: ``occlusion_type`` (EYE, MOUTH → hand, GLASSES →
                                            sunglasses, HAIR → hair; see ``occlusion_kinds``)
=========  ===============================  ==================================================================

The LFAU → emotion mapping some public loaders use is their author's heuristic and is not applied. An AU scan none
of whose AUs is among ``action_units``, an unknown emotion or occlusion code, a class not in ``scan_classes`` and a
file name that does not follow the pattern are rejected while listing, with the reason.

Loading: the ``.bnt`` grid (invalid points carry the file's ``zmin`` value) is triangulated, two triangles per
2×2 cell of valid points, dropping triangles with an edge over ``max_edge`` metres (depth steps), and scaled from
millimetres to metres (``metres_per_unit``). The frontal view centres on the ``.lm3`` file's nose tip when there is
one (occluded scans may lack it: then the surface's middle). A truncated or malformed ``.bnt``, a scan with every
point invalid, a malformed ``.lm3`` and one with fewer than ``min_landmarks`` points are load failures, recorded
in ``failures.jsonl``. UNCONFIRMED (kept configurable): the grid's point order (``grid_order``), the units, and
that +z points from the face towards the sensor with +y up.

Subjects are the ``bsNNN`` folders; with no official split, the default protocol is subject-independent 10-fold
cross-validation (:class:`SubjectKFold`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

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
from multimodal_fer.geometry.range_grid import grid_mesh
from multimodal_fer.geometry.surface import FaceSurface
from multimodal_fer.media.bnt import bnt_grid, read_bnt
from multimodal_fer.media.landmark_files_3d import read_bosphorus_landmarks
from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES
from multimodal_fer.types import FACS_ACTION_UNITS, ArraySpec, LabelSpace

#: Expression classes, in this order (neutral, then the emotion codes alphabetically).
BOSPHORUS_EXPRESSIONS: tuple[str, ...] = ("neutral", "anger", "disgust", "fear", "happy", "sad", "surprise")
#: Emotion codes of ``E`` scans → class names.
EMOTION_CODES: dict[str, str] = {
    "ANGER": "anger",
    "DISGUST": "disgust",
    "FEAR": "fear",
    "HAPPY": "happy",
    "SADNESS": "sad",
    "SURPRISE": "surprise",
}
#: AUs posed in the LFAU/UFAU scans that the package's FACS list has (our choice; AU 34 is outside that list).
DEFAULT_ACTION_UNITS: tuple[int, ...] = (1, 2, 4, 9, 10, 12, 14, 15, 16, 17, 18, 20, 22, 23, 24, 25, 26, 27, 28, 43)
#: Occlusion codes of ``O`` scans → the package's occlusion kinds.
DEFAULT_OCCLUSION_KINDS: dict[str, str] = {"EYE": "hand", "MOUTH": "hand", "GLASSES": "sunglasses", "HAIR": "hair"}
KNOWN_CLASSES: tuple[str, ...] = ("N", "E", "LFAU", "UFAU", "CAU", "O", "YR", "PR", "CR")
DEFAULT_CLASSES: tuple[str, ...] = ("N", "E", "LFAU", "UFAU", "CAU", "O")
_SUBJECT = re.compile(r"bs\d{3}")
_AU_CLASSES = ("LFAU", "UFAU", "CAU")


class Bosphorus(DatasetAdapter):
    """Bosphorus range scans → depth maps and point clouds, with expressions, AUs and occlusion flags.

    Args:
        scan_classes: filename classes to include (``N``, ``E``, ``LFAU``, ``UFAU``, ``CAU``, ``O``; rotations
            ``YR``, ``PR``, ``CR`` are unlabelled).
        action_units: AU label space (None: :data:`DEFAULT_ACTION_UNITS`; [] for none).
        other_aus: AUs an AU scan does not name: ``"unlabelled"`` (NaN; posed AUs may bring others along) or
            ``"absent"`` (0).
        neutral_aus: AUs of neutral scans: ``"absent"`` (0) or ``"unlabelled"`` (NaN).
        occlusion_kinds: occlusion code → one of the package's occlusion kinds (None: the default map).
        grid_order: how a ``.bnt``'s points fill its grid: ``"row"`` or ``"column"`` (UNCONFIRMED).
        metres_per_unit: size of the files' coordinate unit in metres (millimetres: 0.001).
        max_edge: longest triangle edge in metres when the grid is triangulated.
        use_landmarks: centre the view on the ``.lm3`` nose tip (and check the file).
        min_landmarks: fewer points in a ``.lm3`` file make the scan a failure.
        centre_landmark: the ``.lm3`` landmark the view centres on.
    """

    name = "bosphorus"
    modalities = ("depth",)
    version = 1

    def __init__(
        self,
        scan_classes: list[str] | None = None,
        action_units: list[int] | None = None,
        other_aus: Literal["unlabelled", "absent"] = "unlabelled",
        neutral_aus: Literal["absent", "unlabelled"] = "absent",
        occlusion_kinds: dict[str, str] | None = None,
        grid_order: Literal["row", "column"] = "row",
        metres_per_unit: float = 0.001,
        max_edge: float = 0.01,
        use_landmarks: bool = True,
        min_landmarks: int = 3,
        centre_landmark: str = "Nose tip",
    ) -> None:
        self.scan_classes = tuple(scan_classes) if scan_classes is not None else DEFAULT_CLASSES
        unknown = [c for c in self.scan_classes if c not in KNOWN_CLASSES]
        if unknown:
            raise ValueError(f"scan_classes {unknown} are not Bosphorus classes; choose among {list(KNOWN_CLASSES)}.")
        self.action_units = tuple(action_units) if action_units is not None else DEFAULT_ACTION_UNITS
        outside = [au for au in self.action_units if au not in FACS_ACTION_UNITS]
        if outside:
            raise ValueError(f"action_units {outside} are not FACS codes the package knows: {FACS_ACTION_UNITS}.")
        if other_aus not in ("unlabelled", "absent") or neutral_aus not in ("unlabelled", "absent"):
            raise ValueError("other_aus and neutral_aus must be 'unlabelled' or 'absent'.")
        self.other_aus = other_aus
        self.neutral_aus = neutral_aus
        self.occlusion_kinds = dict(occlusion_kinds) if occlusion_kinds is not None else dict(DEFAULT_OCCLUSION_KINDS)
        bad = {code: kind for code, kind in self.occlusion_kinds.items() if kind not in OCCLUSION_TYPES}
        if bad:
            raise ValueError(f"occlusion_kinds {bad} name kinds outside {list(OCCLUSION_TYPES)}.")
        if grid_order not in ("row", "column"):
            raise ValueError(f"grid_order={grid_order!r}: choose 'row' or 'column'.")
        self.grid_order = grid_order
        if metres_per_unit <= 0 or max_edge <= 0:
            raise ValueError(f"metres_per_unit={metres_per_unit} and max_edge={max_edge} must be positive.")
        self.metres_per_unit = metres_per_unit
        self.max_edge = max_edge
        if min_landmarks < 0:
            raise ValueError(f"min_landmarks={min_landmarks} must be 0 or more.")
        self.use_landmarks = use_landmarks
        self.min_landmarks = min_landmarks
        self.centre_landmark = centre_landmark

    @property
    def label_space(self) -> LabelSpace:
        """Seven expressions (neutral + the six basic emotions) and the chosen AUs."""
        return LabelSpace(expressions=BOSPHORUS_EXPRESSIONS, action_units=self.action_units)

    def default_protocol(self) -> SplitProtocol:
        """Subject-independent 10-fold cross-validation (Bosphorus has no official split)."""
        return SubjectKFold(num_folds=10)

    def settings(self) -> dict[str, Any]:
        """Every option (they change the listing or the surfaces)."""
        return {
            "scan_classes": list(self.scan_classes),
            "action_units": list(self.action_units),
            "other_aus": self.other_aus,
            "neutral_aus": self.neutral_aus,
            "occlusion_kinds": dict(sorted(self.occlusion_kinds.items())),
            "grid_order": self.grid_order,
            "metres_per_unit": self.metres_per_unit,
            "max_edge": self.max_edge,
            "use_landmarks": self.use_landmarks,
            "min_landmarks": self.min_landmarks,
            "centre_landmark": self.centre_landmark,
        }

    def sample_fields(self) -> list[ArraySpec]:
        """``occlusion_type`` int8: index into the package's occlusion kinds, -1 for an unoccluded scan."""
        return [ArraySpec("occlusion_type", (), "int8")]

    def metadata(self) -> dict[str, Any]:
        """The occlusion kinds ``occlusion_type`` indexes."""
        return {"occlusion_types": list(OCCLUSION_TYPES)}

    # --------------------------------------------------------------------------------------------- listing
    def list_samples(self, raw_root: Path) -> Listing:
        """Every ``<subject>/<subject>_<class>_<code>_<n>.bnt`` under ``raw_root``.

        Raises:
            DataError: no subject folder with a ``.bnt`` file.
        """
        raw_root = Path(raw_root)
        folders = sorted(p for p in raw_root.iterdir() if p.is_dir()) if raw_root.is_dir() else []
        scans = [(folder, path) for folder in folders for path in sorted(folder.glob("*.bnt"))]
        if not scans:
            raise DataError(
                f"No Bosphorus scan under {raw_root}: expected subject folders such as bs000/ holding "
                "bs000_N_N_0.bnt files. Point raw_root at the folder that holds the subject folders."
            )
        samples, rejected = [], []
        for folder, path in scans:
            source = path.relative_to(raw_root).as_posix()
            try:
                sample = self._sample(folder.name, path, source)
            except _Rejected as rejection:
                rejected.append(Rejection(source, str(rejection)))
                continue
            samples.append(sample)
        return Listing(samples, rejected)

    def _sample(self, subject: str, path: Path, source: str) -> RawSample:
        parts = path.stem.split("_")
        if len(parts) < 4 or not _SUBJECT.fullmatch(parts[0]) or not parts[-1].isdigit():
            raise _Rejected("file name not <subject>_<class>_<code>_<n>.bnt")
        if parts[0] != subject:
            raise _Rejected("file name's subject differs from its folder")
        scan_class, code = parts[1], "_".join(parts[2:-1])
        if scan_class not in KNOWN_CLASSES:
            raise _Rejected("unknown scan class")
        if scan_class not in self.scan_classes:
            raise _Rejected("scan class not included")
        labels, occlusion = self._labels(scan_class, code)
        landmarks = path.with_suffix(".lm3")
        locator = landmarks.name if self.use_landmarks and landmarks.exists() else None
        return RawSample(
            key=path.stem,
            subject=subject,
            source=source,
            labels=labels,
            locators={"landmarks": locator},
            extras={"occlusion_type": occlusion},
        )

    def _labels(self, scan_class: str, code: str) -> tuple[SampleLabels, int]:
        """A scan's labels and occlusion type id from its class and code."""
        count = len(self.action_units)
        unnamed = float("nan") if self.other_aus == "unlabelled" else 0.0
        if scan_class == "N":
            aus = None if self.neutral_aus == "unlabelled" or not count else (0.0,) * count
            return SampleLabels(expr=BOSPHORUS_EXPRESSIONS.index("neutral"), au=aus), -1
        if scan_class == "E":
            if code not in EMOTION_CODES:
                raise _Rejected("unknown emotion code")
            return SampleLabels(expr=BOSPHORUS_EXPRESSIONS.index(EMOTION_CODES[code])), -1
        if scan_class in _AU_CLASSES:
            numbers = [int(n) for n in re.findall(r"\d+", code)]
            if not numbers:
                raise _Rejected("AU code without an AU number")
            named = [n for n in numbers if n in self.action_units]
            if not named:
                raise _Rejected("AU not among the chosen action units")
            aus = tuple(1.0 if au in named else unnamed for au in self.action_units)
            return SampleLabels(au=aus), -1
        if scan_class == "O":
            if code not in self.occlusion_kinds:
                raise _Rejected("unknown occlusion code")
            return SampleLabels(), OCCLUSION_TYPES.index(self.occlusion_kinds[code])
        return SampleLabels(), -1  # rotations: no labels

    # ------------------------------------------------------------------------------------------------ load
    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The scan as a triangulated surface in metres, centred on its nose tip where the ``.lm3`` has one.

        Raises:
            SampleError: ``truncated .bnt file``, ``malformed .bnt file``, ``no valid point in the scan``,
                ``no surface in the scan`` (valid points but no cell of them), ``malformed landmark file`` or
                ``too few landmarks``.
        """
        path = Path(raw_root) / sample.source
        try:
            scan = read_bnt(path)
        except DataError as error:
            reason = "truncated .bnt file" if "truncated" in str(error) else "malformed .bnt file"
            raise SampleError(reason, str(error)) from error
        points, valid = bnt_grid(scan, self.grid_order)
        if not valid.any():
            raise SampleError(
                "no valid point in the scan", f"all {valid.size} points carry the background value {scan.zmin:g}"
            )
        vertices, triangles = grid_mesh(points * self.metres_per_unit, valid, self.max_edge)
        if len(triangles) == 0:
            detail = f"{int(valid.sum())} valid points but no 2×2 cell of them; is grid_order={self.grid_order!r} right"
            raise SampleError("no surface in the scan", detail)
        landmarks = sample.locators.get("landmarks")
        centre = self._centre(path.parent / landmarks) if landmarks else None
        return RawMedia(surface=FaceSurface(vertices, triangles, centre))

    def _centre(self, path: Path) -> np.ndarray | None:
        """The centre landmark in metres, or None when the file lacks it (occluded)."""
        try:
            landmarks = read_bosphorus_landmarks(path, dims=3)
        except DataError as error:
            raise SampleError("malformed landmark file", str(error)) from error
        if len(landmarks) < self.min_landmarks:
            detail = f"{path.name}: {len(landmarks)} < min_landmarks={self.min_landmarks}"
            raise SampleError("too few landmarks", detail)
        point = landmarks.get(self.centre_landmark)
        return None if point is None else point * self.metres_per_unit


class _Rejected(Exception):
    """A listed file that cannot become a sample; its message is the reason."""
