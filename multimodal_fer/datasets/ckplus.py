"""CK+ (Extended Cohn-Kanade): posed expression sequences from neutral to peak, with emotion and FACS labels.

Layout as distributed (``raw_root`` is the folder holding the four folders)::

    cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png   the frames (8-digit numbers)
    Emotion/S005/001/S005_001_00000011_emotion.txt     labelled sequences only; names the peak (last) frame
    FACS/S005/001/S005_001_00000011_facs.txt           the peak frame's AUs, one "AU intensity" line each
    Landmarks/S005/001/S005_001_00000001_landmarks.txt 68 "x y" lines per frame

An emotion file holds one float, e.g. ``   3.0000000e+00``; a FACS line two floats (AU number, intensity).

Emotion codes (CK+'s own order, kept as the label space's order):

====  ========  =========================================
code  CK+       here
====  ========  =========================================
0     neutral   neutral (rejected with num_classes 7, 6)
1     anger     anger
2     contempt  contempt (rejected with num_classes 6)
3     disgust   disgust
4     fear      fear
5     happy     happy
6     sadness   sad
7     surprise  surprise
====  ========  =========================================

Samples, per labelled sequence (the usual static protocol): the last ``peak_frames`` frames up to the peak frame
the emotion file names, labelled with the sequence's emotion and AUs, plus (``include_neutral_first_frame``,
default) the sequence's first frame labelled neutral. A sequence without an emotion file gives no expression
samples (a rejection "sequence without emotion file"); with ``au_only_sequences`` it gives its peak frames (the
frame the FACS file names) with AU labels only. An emotion code outside 0-7, or a malformed emotion or FACS file,
rejects the sequence.

AU labels are occurrences over ``action_units`` (default :data:`DEFAULT_ACTION_UNITS`, our choice: the AUs of
the basic-emotion prototypes plus other frequently coded ones; not a published CK+ list): an AU the FACS file
lists is 1 whatever its intensity (intensity 0 is read as "not coded" in public loaders, unconfirmed), one it
does not list is 0. The FACS file codes the peak frame; the ``peak_frames`` frames before it share its AUs (an
approximation the static protocol makes). A first (neutral) frame has no AU labels (NaN) unless
``neutral_frame_aus="absent"`` (all 0); a labelled sequence without a FACS file has no AU labels.

Faces are aligned by the frame's 68-point landmark file when there is one (a malformed file is a load failure);
without one the face is detected. Subjects are the ``Sxxx`` folders; the data set has no official split, so the
default protocol is subject-independent 10-fold cross-validation (:class:`SubjectKFold`); leave-one-subject-out
is :class:`~multimodal_fer.datasets.protocols.ExplicitSubjects` with one test subject.
"""

from __future__ import annotations

import math
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
from multimodal_fer.datasets.image_io import read_image
from multimodal_fer.datasets.protocols import SplitProtocol, SubjectKFold
from multimodal_fer.errors import DataError
from multimodal_fer.types import FACS_ACTION_UNITS, LabelSpace

#: CK+'s emotion codes 0..7 in the package's vocabulary.
CKPLUS_EXPRESSIONS: tuple[str, ...] = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sad", "surprise")
NEUTRAL, CONTEMPT = 0, 2
#: Codes each class setting keeps (8: all; 7: the seven emotions; 6: the six basic emotions).
KEPT_CODES: dict[int, tuple[int, ...]] = {8: tuple(range(8)), 7: tuple(range(1, 8)), 6: (1, 3, 4, 5, 6, 7)}
#: Default AU label space: the AUs of the basic-emotion prototypes and other frequently coded ones (our choice).
DEFAULT_ACTION_UNITS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26, 27)
IMAGES, EMOTION, FACS, LANDMARKS = "cohn-kanade-images", "Emotion", "FACS", "Landmarks"
LANDMARK_COUNT = 68
_SUBJECT = re.compile(r"S\d+")
_SEQUENCE = re.compile(r"\d+")


class CKPlus(DatasetAdapter):
    """CK+'s labelled sequences as still frames.

    Args:
        peak_frames: frames taken up to and including the peak (≥ 1).
        include_neutral_first_frame: also take each labelled sequence's first frame, labelled neutral (needs
            ``num_classes=8``).
        num_classes: 8 (codes 0-7), 7 (no neutral) or 6 (no neutral, no contempt); sequences of dropped codes
            are rejected.
        action_units: AU numbers of the AU label space (None: :data:`DEFAULT_ACTION_UNITS`; empty: no AU task).
        au_only_sequences: sequences with a FACS file but no emotion file give their peak frames with AU labels
            only (expression unlabelled).
        neutral_frame_aus: AU labels of the first (neutral) frame: ``"unlabelled"`` (NaN) or ``"absent"`` (0).
        use_landmarks: align by the landmark files (False: detect every face).
    """

    name = "ckplus"
    modalities = ("face",)
    face_media_allowed = False  # real people

    def __init__(
        self,
        peak_frames: int = 3,
        include_neutral_first_frame: bool = True,
        num_classes: Literal[8, 7, 6] = 8,
        action_units: list[int] | None = None,
        au_only_sequences: bool = False,
        neutral_frame_aus: Literal["unlabelled", "absent"] = "unlabelled",
        use_landmarks: bool = True,
    ) -> None:
        if peak_frames < 1:
            raise ValueError(f"peak_frames={peak_frames} must be at least 1.")
        if num_classes not in KEPT_CODES:
            raise ValueError(f"num_classes={num_classes!r}: choose 8 (with neutral), 7 (no neutral) or 6 (basic).")
        if include_neutral_first_frame and num_classes != 8:
            raise ValueError(
                f"include_neutral_first_frame labels first frames neutral, but num_classes={num_classes} has no "
                "neutral class; set include_neutral_first_frame: false or num_classes: 8."
            )
        if neutral_frame_aus not in ("unlabelled", "absent"):
            raise ValueError(f"neutral_frame_aus={neutral_frame_aus!r}: choose 'unlabelled' or 'absent'.")
        aus = tuple(DEFAULT_ACTION_UNITS if action_units is None else (int(a) for a in action_units))
        unknown = [a for a in aus if a not in FACS_ACTION_UNITS]
        if unknown or len(set(aus)) != len(aus):
            raise ValueError(
                f"action_units={list(aus)}: give distinct FACS numbers among {list(FACS_ACTION_UNITS)} "
                f"(unknown: {unknown})."
            )
        if au_only_sequences and not aus:
            raise ValueError("au_only_sequences gives AU-only samples, but action_units is empty.")
        self.peak_frames = int(peak_frames)
        self.include_neutral_first_frame = bool(include_neutral_first_frame)
        self.num_classes = int(num_classes)
        self.action_units = aus
        self.au_only_sequences = bool(au_only_sequences)
        self.neutral_frame_aus = neutral_frame_aus
        self.use_landmarks = bool(use_landmarks)

    @property
    def kept_codes(self) -> tuple[int, ...]:
        """CK+ codes in the label space, in order (class i is code ``kept_codes[i]``)."""
        return KEPT_CODES[self.num_classes]

    @property
    def label_space(self) -> LabelSpace:
        """Eight, seven or six classes in CK+'s order, and the chosen AUs."""
        return LabelSpace(
            expressions=tuple(CKPLUS_EXPRESSIONS[c] for c in self.kept_codes), action_units=self.action_units
        )

    def default_protocol(self) -> SplitProtocol:
        """Subject-independent 10-fold cross-validation (fold 0 tests)."""
        return SubjectKFold(num_folds=10)

    def settings(self) -> dict[str, Any]:
        """Every option (each changes the listing or the crops)."""
        return {
            "peak_frames": self.peak_frames,
            "include_neutral_first_frame": self.include_neutral_first_frame,
            "num_classes": self.num_classes,
            "action_units": list(self.action_units),
            "au_only_sequences": self.au_only_sequences,
            "neutral_frame_aus": self.neutral_frame_aus,
            "use_landmarks": self.use_landmarks,
        }

    def list_samples(self, raw_root: Path) -> Listing:
        """Frames of every labelled sequence; unusable sequences are rejected with the file that says why."""
        missing = [name for name in (IMAGES, EMOTION) if not (raw_root / name).is_dir()]
        if missing:
            raise DataError(
                f"No CK+ folder {missing} under {raw_root}. Point raw_root to the folder holding {IMAGES}/, "
                f"{EMOTION}/, {FACS}/ and {LANDMARKS}/ (as the CK+ archives unpack)."
            )
        samples: list[RawSample] = []
        rejected: list[Rejection] = []
        image_sequences: set[tuple[str, str]] = set()
        for subject, sequence in _sequences(raw_root / IMAGES):
            image_sequences.add((subject, sequence))
            made = self._sequence_samples(raw_root, subject, sequence)
            if isinstance(made, Rejection):
                rejected.append(made)
            else:
                samples.extend(made)
        for subject, sequence in _sequences(raw_root / EMOTION):
            if (subject, sequence) not in image_sequences and _files_ending(
                raw_root / EMOTION / subject / sequence, "_emotion.txt"
            ):
                rejected.append(Rejection(f"{EMOTION}/{subject}/{sequence}", "emotion file without image sequence"))
        return Listing(samples, rejected)

    def _sequence_samples(self, raw_root: Path, subject: str, sequence: str) -> list[RawSample] | Rejection:
        """The samples of one sequence, or why it gives none."""
        folder = f"{subject}/{sequence}"
        frames = _frame_numbers(raw_root / IMAGES / folder, f"{subject}_{sequence}_")
        emotion_files = _files_ending(raw_root / EMOTION / folder, "_emotion.txt")
        facs_files = _files_ending(raw_root / FACS / folder, "_facs.txt") if self.action_units else []
        if len(emotion_files) > 1 or len(facs_files) > 1:
            return Rejection(f"{EMOTION}/{folder}", "several emotion or FACS files")
        aus: tuple[float, ...] | None = None
        if facs_files:
            facs = facs_files[0]
            aus = self._read_aus(facs)
            if aus is None:
                return Rejection(str(facs.relative_to(raw_root)), "malformed FACS file")
        first = min(frames) if frames else 1
        if not emotion_files:
            if not (self.au_only_sequences and facs_files):
                return Rejection(f"{IMAGES}/{folder}", "sequence without emotion file")
            peak = _frame_of(facs_files[0].name)
            if peak is None:
                return Rejection(str(facs_files[0].relative_to(raw_root)), "FACS file name without a frame number")
            labels = SampleLabels(expr=-1, au=aus)
            return [self._sample(raw_root, subject, sequence, f, labels) for f in self._peak_numbers(peak, first)]
        emotion = emotion_files[0]
        where = str(emotion.relative_to(raw_root))
        code = _read_code(emotion)
        if code is None:
            return Rejection(where, "malformed emotion file")
        if not 0 <= code < len(CKPLUS_EXPRESSIONS):
            return Rejection(where, f"emotion code {code} outside 0-7")
        if code not in self.kept_codes:
            return Rejection(where, f"{CKPLUS_EXPRESSIONS[code]} excluded in CK+-{self.num_classes}")
        peak = _frame_of(emotion.name)
        if peak is None:
            return Rejection(where, "emotion file name without a frame number")
        samples: list[RawSample] = []
        if self.include_neutral_first_frame and first < peak:
            neutral_aus = (0.0,) * len(self.action_units) if self.neutral_frame_aus == "absent" else None
            labels = SampleLabels(expr=self.kept_codes.index(NEUTRAL), au=neutral_aus)
            samples.append(self._sample(raw_root, subject, sequence, first, labels))
            first += 1  # the peak frames start after the neutral one
        labels = SampleLabels(expr=self.kept_codes.index(code), au=aus)
        samples += [self._sample(raw_root, subject, sequence, f, labels) for f in self._peak_numbers(peak, first)]
        return samples

    def _peak_numbers(self, peak: int, lowest: int) -> list[int]:
        """The last ``peak_frames`` frame numbers up to ``peak``, none below ``lowest``."""
        return list(range(max(lowest, peak - self.peak_frames + 1), peak + 1))

    def _sample(self, raw_root: Path, subject: str, sequence: str, frame: int, labels: SampleLabels) -> RawSample:
        stem = f"{subject}_{sequence}_{frame:08d}"
        landmarks = Path(LANDMARKS) / subject / sequence / f"{stem}_landmarks.txt"
        has_landmarks = self.use_landmarks and (raw_root / landmarks).is_file()
        return RawSample(
            key=stem,
            subject=subject,
            source=f"{IMAGES}/{subject}/{sequence}/{stem}.png",
            labels=labels,
            sequence=f"{subject}/{sequence}",
            frame=frame,
            locators={"landmarks": str(landmarks) if has_landmarks else None},
        )

    def _read_aus(self, path: Path) -> tuple[float, ...] | None:
        """AU occurrences over ``action_units`` from a FACS file (None: malformed)."""
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return None
        listed: set[int] = set()
        for line in lines:
            if not line.strip():
                continue
            parts = line.split()
            try:
                values = [float(p) for p in parts]
            except ValueError:
                return None
            if len(values) != 2 or not all(math.isfinite(v) for v in values) or not values[0].is_integer():
                return None
            listed.add(int(values[0]))
        return tuple(1.0 if au in listed else 0.0 for au in self.action_units)

    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The frame with its 68 landmarks (or nothing: the face is detected).

        Raises:
            SampleError: ``missing image file``, ``unreadable image: ...``, ``malformed landmark file``.
        """
        image = read_image(raw_root / sample.source)
        relative = sample.locators["landmarks"]
        points = None if relative is None else _read_landmarks(raw_root / relative)
        return RawMedia(image=image, face_points=points)


def _sequences(folder: Path) -> list[tuple[str, str]]:
    """(subject, sequence) folder names under ``folder``, sorted (stray files such as .DS_Store ignored)."""
    found: list[tuple[str, str]] = []
    for subject in sorted(p for p in folder.iterdir() if p.is_dir() and _SUBJECT.fullmatch(p.name)):
        found += [
            (subject.name, s.name) for s in sorted(subject.iterdir()) if s.is_dir() and _SEQUENCE.fullmatch(s.name)
        ]
    return found


def _frame_numbers(folder: Path, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d{8})\.png")
    matches = (pattern.fullmatch(p.name) for p in folder.iterdir()) if folder.is_dir() else ()
    return sorted(int(m.group(1)) for m in matches if m)


def _files_ending(folder: Path, suffix: str) -> list[Path]:
    """The files of ``folder`` ending in ``suffix`` (hidden files ignored), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(suffix) and not p.name.startswith("."))


def _frame_of(name: str) -> int | None:
    """The frame number in ``Sxxx_yyy_zzzzzzzz_<kind>.txt``."""
    parts = name.split("_")
    return int(parts[2]) if len(parts) >= 4 and parts[2].isdigit() else None


def _read_code(path: Path) -> int | None:
    """The integral emotion code of an emotion file (None: unreadable or not one integral number)."""
    try:
        value = float(path.read_text().strip())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return int(value) if math.isfinite(value) and value.is_integer() else None


def _read_landmarks(path: Path) -> np.ndarray:
    """(68, 2) float32 points from a landmark file.

    Raises:
        SampleError: ``malformed landmark file`` (not 68 lines of two finite numbers) or ``unreadable landmark file``.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise SampleError("unreadable landmark file") from error
    rows = [line.split() for line in text.splitlines() if line.strip()]
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError as error:
        raise SampleError("malformed landmark file") from error
    if values.shape != (LANDMARK_COUNT, 2) or not np.isfinite(values).all():
        raise SampleError("malformed landmark file")
    return values.astype(np.float32)
