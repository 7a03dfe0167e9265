"""DISFA: per-frame AU intensities (0-5) of 27 adults watching a 4-minute video, faces from the stereo videos.

Layout read (``raw_root`` is the DISFA folder; the video names are **UNCONFIRMED** in the reference and so are
options)::

    ActionUnit_Labels/SN001/SN001_au1.txt, SN001_au2.txt, ... SN001_au26.txt     one file per subject and AU
    Videos_LeftCamera/LeftVideoSN001_comp.avi                                   frames="video" (the default)
    <images_dir>/SN001/0.png, 1.png, ...                                         frames="images": frames already
                                                                                 extracted (ME-GraphAU's layout)

**Label files.** One line per frame, ``frameIdx,intensity`` (no header), intensity a whole number 0-5. A frame's
**occurrence** is ``intensity >= threshold`` (2 by default, as ME-GraphAU binarises). DISFA codes 12 AUs
(:data:`DISFA_CODED_ACTION_UNITS`); results are usually reported on 8 (:data:`DISFA_ACTION_UNITS`, the default).
``frameIdx`` counts video frames from ``label_frame_base`` (1 in the original files: **UNCONFIRMED**), so line
``frameIdx`` labels the 0-based video frame ``frameIdx - label_frame_base`` (the sample's ``frame``), which is
also the extracted image's number.

**What is rejected while listing** (``failures.jsonl``, with the file and line): a chosen AU's label file missing
(the whole subject: ``AU label file missing``; an AU is never silently left unlabelled), a malformed line, an
intensity outside 0-5 (``unknown AU intensity ...``), a frame given twice in one file, a frame some chosen AU file
does not label (``frame missing from an AU label file``), a labelled frame the video does not have or without an
extracted image (``label line without a frame image``: the videos are ~4,844 frames long and the label files
~4,845 lines, public loader code), a subject without its video (``no video for the subject``) or whose video
cannot be opened (``unreadable video``). A video that breaks while decoding, or a corrupt frame image, fails those
samples while the cache is built (``unreadable video``, ``unreadable image``).

**Frames.** ``frame_step`` keeps every n-th labelled frame of each subject (the frame sampling rate: DISFA's videos
are 20 fps, so 4 gives 5 frames per second). Videos are decoded in order with one decoder per worker
(:mod:`~multimodal_fer.datasets.video_stills`), so a 4,845-frame video costs one pass, not one pass per frame. Faces
are detected and aligned by the preprocessing (the full 1024×768 frame is given).

**Protocol.** The default split is the published 3-fold subject-exclusive partition (ME-GraphAU,
:data:`DISFA_PARTS`): fold 1 tests part 3, fold 2 part 2, fold 3 part 1; validation subjects are carved from the
training parts. The subject is the label folder's name (``SN001``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from multimodal_fer.datasets.au_benchmarks import FOLD_TEST_PART, check_action_units, inside_raw_root
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
from multimodal_fer.datasets.protocols import SplitProtocol, SubjectPartitions
from multimodal_fer.datasets.video_stills import video_frame_count, video_still
from multimodal_fer.errors import DataError
from multimodal_fer.types import LabelSpace

#: The 12 AUs DISFA codes (intensity 0-5).
DISFA_CODED_ACTION_UNITS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
#: The 8 AUs DISFA results are usually reported on (ME-GraphAU ``DISFA_infolist``).
DISFA_ACTION_UNITS: tuple[int, ...] = (1, 2, 4, 6, 9, 12, 25, 26)
#: The published 3-fold partition (repo:CVI-SZU/ME-GraphAU/tool/DISFA_image_label_process.py).
DISFA_PARTS: tuple[tuple[str, ...], ...] = (
    ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
)
MAX_INTENSITY = 5


class DISFA(DatasetAdapter):
    """DISFA AU occurrence (intensity ≥ threshold), one sample per labelled video frame.

    Args:
        action_units: AU numbers to read, in label-space order (default :data:`DISFA_ACTION_UNITS`), among
            :data:`DISFA_CODED_ACTION_UNITS`.
        threshold: intensity from which an AU counts as present (2: ME-GraphAU's binarisation).
        labels_dir: folder of the per-subject label folders, relative to raw_root.
        frames: ``"video"`` (decode the distributed videos) or ``"images"`` (frames extracted beforehand).
        camera: ``"left"`` or ``"right"``: which camera's video (``{Camera}`` in the names below).
        videos_dir: folder of the videos, relative to raw_root (``{Camera}`` is replaced: ``Videos_LeftCamera``).
        video_name: file name of a subject's video (``{Camera}``, ``{subject}`` are replaced).
        images_dir: folder holding ``<subject>/<image>`` extracted frames, relative to raw_root ("" = raw_root).
        image_name: name of an extracted frame (``{frame}`` = 0-based video frame, e.g. ``"{frame:05d}.jpg"``).
        label_frame_base: the ``frameIdx`` of the video's first frame in the label files.
        frame_step: keep every ``frame_step``-th labelled frame (1 = every frame).
    """

    name = "disfa"
    modalities = ("face",)
    face_media_allowed = False  # real people; released on request for research only

    def __init__(
        self,
        action_units: list[int] | None = None,
        threshold: int = 2,
        labels_dir: str = "ActionUnit_Labels",
        frames: Literal["video", "images"] = "video",
        camera: Literal["left", "right"] = "left",
        videos_dir: str = "Videos_{Camera}Camera",
        video_name: str = "{Camera}Video{subject}_comp.avi",
        images_dir: str = "",
        image_name: str = "{frame}.png",
        label_frame_base: int = 1,
        frame_step: int = 1,
    ) -> None:
        chosen = list(DISFA_ACTION_UNITS if action_units is None else action_units)
        check_action_units(chosen, DISFA_CODED_ACTION_UNITS)
        if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= MAX_INTENSITY:
            raise ValueError(f"threshold={threshold!r} must be a whole intensity in [1, {MAX_INTENSITY}].")
        if frames not in ("video", "images"):
            raise ValueError(f"frames={frames!r}: choose 'video' (the distributed videos) or 'images'.")
        if camera not in ("left", "right"):
            raise ValueError(f"camera={camera!r}: choose 'left' or 'right'.")
        if isinstance(frame_step, bool) or not isinstance(frame_step, int) or frame_step < 1:
            raise ValueError(f"frame_step={frame_step!r} must be a whole number of frames, at least 1.")
        if isinstance(label_frame_base, bool) or not isinstance(label_frame_base, int) or label_frame_base < 0:
            raise ValueError(f"label_frame_base={label_frame_base!r} must be 0 or 1 (a whole number, 0 or more).")
        try:
            image_name.format(frame=0)
            video_name.format(Camera="Left", subject="SN001")
            videos_dir.format(Camera="Left")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"Name patterns may use {{frame}} (image_name), {{Camera}} and {{subject}} only: {error}"
            ) from error
        self.action_units = tuple(chosen)
        self.threshold = threshold
        self.labels_dir = labels_dir
        self.frames = frames
        self.camera = camera
        self.videos_dir = videos_dir
        self.video_name = video_name
        self.images_dir = images_dir
        self.image_name = image_name
        self.label_frame_base = label_frame_base
        self.frame_step = frame_step

    @property
    def label_space(self) -> LabelSpace:
        """The chosen AUs (no expressions, no dimensions)."""
        return LabelSpace(action_units=self.action_units)

    def default_protocol(self) -> SplitProtocol:
        """The published 3-fold partition, fold 1 (tests part 3)."""
        return SubjectPartitions(DISFA_PARTS, test_part=FOLD_TEST_PART[1])

    def settings(self) -> dict[str, Any]:
        """Every option (all change the listing or the loading)."""
        return {
            "action_units": list(self.action_units),
            "threshold": self.threshold,
            "labels_dir": self.labels_dir,
            "frames": self.frames,
            "camera": self.camera,
            "videos_dir": self.videos_dir,
            "video_name": self.video_name,
            "images_dir": self.images_dir,
            "image_name": self.image_name,
            "label_frame_base": self.label_frame_base,
            "frame_step": self.frame_step,
        }

    def metadata(self) -> dict[str, Any]:
        """How the cache's labels were made and are scored."""
        return {
            "occurrence": f"intensity >= {self.threshold}",
            "evaluation": "per-AU F1 at 0.5 and their mean, pooled over the test frames of a fold",
        }

    # ----------------------------------------------------------------------------------------------- listing
    def list_samples(self, raw_root: Path) -> Listing:
        """Every frame labelled for all chosen AUs that has an image, in subject and frame order.

        Raises:
            DataError: no label folder, no subject folder in it, or (video frames) no video folder.
        """
        labels_root = inside_raw_root(raw_root, self.labels_dir, "labels_dir")
        if not labels_root.is_dir():
            raise DataError(
                f"No DISFA label folder {labels_root}; point raw_root to the folder holding {self.labels_dir} "
                "(or set --data.init_args.dataset.init_args.labels_dir)."
            )
        subjects = sorted(p.name for p in labels_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not subjects:
            raise DataError(f"{labels_root} holds no subject folders (SN001, ...); is it ActionUnit_Labels?")
        camera = self.camera.capitalize()
        if self.frames == "video":
            media_root = inside_raw_root(raw_root, self.videos_dir.format(Camera=camera), "videos_dir")
            if not media_root.is_dir():
                raise DataError(
                    f"No video folder {media_root}; set --data.init_args.dataset.init_args.videos_dir, or "
                    "frames=images for frames extracted beforehand."
                )
        else:
            media_root = inside_raw_root(raw_root, self.images_dir, "images_dir")
        samples: list[RawSample] = []
        rejected: list[Rejection] = []
        for subject in subjects:
            samples += self._list_subject(raw_root, labels_root / subject, media_root, camera, rejected)
        return Listing(samples, rejected)

    def _list_subject(
        self, raw_root: Path, folder: Path, media_root: Path, camera: str, rejected: list[Rejection]
    ) -> list[RawSample]:
        """One subject's samples; its rejections are appended to ``rejected``."""
        subject = folder.name
        files: dict[int, str] = {}
        per_au: dict[int, dict[int, tuple[int, int | str]]] = {}
        for au in self.action_units:
            path = folder / f"{subject}_au{au}.txt"
            source = str(path.relative_to(raw_root))
            files[au] = source
            if not path.is_file():
                rejected.append(Rejection(source, "AU label file missing"))
                return []
            lines, malformed, problem = _read_intensities(path)
            if problem is not None:
                rejected.append(Rejection(source, problem))
                return []
            rejected += [Rejection(f"{source}:{number}", "malformed label line") for number in malformed]
            per_au[au] = lines
        frames = sorted({frame for lines in per_au.values() for frame in lines})
        kept = frames[:: self.frame_step]
        available = self._available_frames(raw_root, media_root, subject, camera, files, kept, rejected)
        if available is None:
            return []
        source_of, count = available
        samples: list[RawSample] = []
        first = self.action_units[0]
        for frame_idx in kept:
            lacking = [au for au in self.action_units if frame_idx not in per_au[au]]
            if lacking:
                where = f"{files[lacking[0]]} (frame {frame_idx})"
                rejected.append(Rejection(where, "frame missing from an AU label file"))
                continue
            entries = {au: per_au[au][frame_idx] for au in self.action_units}
            bad = next(((au, e) for au, e in entries.items() if isinstance(e[1], str)), None)
            if bad is not None:
                au, (line, reason) = bad
                rejected.append(Rejection(f"{files[au]}:{line}", str(reason)))
                continue
            video_frame = frame_idx - self.label_frame_base
            line = entries[first][0]
            if video_frame < 0:
                rejected.append(Rejection(f"{files[first]}:{line}", "frame number before the video's first frame"))
                continue
            image = source_of(video_frame)
            if image is None or (count is not None and video_frame >= count):
                rejected.append(Rejection(f"{files[first]}:{line}", "label line without a frame image"))
                continue
            occurrence = tuple(1.0 if int(e[1]) >= self.threshold else 0.0 for e in entries.values())
            samples.append(
                RawSample(
                    key=f"{subject}/{video_frame:05d}",
                    subject=subject,
                    source=image,
                    labels=SampleLabels(au=occurrence),
                    sequence=subject,
                    frame=video_frame,
                )
            )
        return samples

    def _available_frames(
        self,
        raw_root: Path,
        media_root: Path,
        subject: str,
        camera: str,
        files: dict[int, str],
        kept: list[int],
        rejected: list[Rejection],
    ) -> tuple[Any, int | None] | None:
        """``(frame → source or None, frame count or None)`` of a subject's media; None (rejected) if unusable."""
        if self.frames == "video":
            video = media_root / self.video_name.format(Camera=camera, subject=subject)
            relative = str(video.relative_to(raw_root))
            if not video.is_file():
                rejected.append(Rejection(relative, "no video for the subject"))
                return None
            try:
                count = video_frame_count(video)
            except SampleError as error:
                rejected.append(Rejection(relative, error.reason))
                return None
            return (lambda frame: relative), count
        folder = media_root / subject
        if not folder.is_dir():
            if kept:
                rejected.append(Rejection(str(folder.relative_to(raw_root)), "no frame folder for the subject"))
            return None
        names = {entry.name for entry in os.scandir(folder)}

        def image_source(frame: int) -> str | None:
            name = self.image_name.format(frame=frame)
            return str((folder / name).relative_to(raw_root)) if name in names else None

        return image_source, None

    # -------------------------------------------------------------------------------------------------- load
    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The full frame (decoded from the video, or the extracted image); the preprocessing finds the face."""
        path = raw_root / sample.source
        image = video_still(path, sample.frame) if self.frames == "video" else read_image(path)
        return RawMedia(image=image, face_aligned=False)


def _read_intensities(path: Path) -> tuple[dict[int, tuple[int, int | str]], list[int], str | None]:
    """One AU file's lines, the lines that could not be parsed, and why the whole file is unusable.

    Returns:
        ``{frameIdx: (file line, intensity or rejection reason)}``, the file lines that could not be parsed (their
        frame is unknown), and the reason the file is unusable (None if it is usable).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return {}, [], "unreadable label file"
    lines: dict[int, tuple[int, int | str]] = {}
    malformed: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        parts = [p.strip() for p in raw.split(",")]
        if not any(parts):
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            malformed.append(number)
            continue
        frame = int(parts[0])
        if frame in lines:
            lines[frame] = (number, "frame number given twice")
            continue
        value = parts[1]
        if value.isdigit() and int(value) <= MAX_INTENSITY:
            lines[frame] = (number, int(value))
        else:
            lines[frame] = (number, f"unknown AU intensity {value or 'empty'}")
    if not lines:
        return {}, [], "no label lines"
    return lines, malformed, None
