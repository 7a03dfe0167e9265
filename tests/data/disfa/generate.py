"""Format-faithful fake DISFA: per-subject, per-AU ``frameIdx,intensity`` files, left-camera AVI videos and (for
``frames="images"``) extracted PNG frames ``<subject>/<frame>.png``.

Subjects carry real DISFA identifiers, so the published 3-fold partition applies: SN002, SN010 (part 1), SN013,
SN018 (part 2), SN003, SN023, SN029 (part 3). Videos are MPEG-4 in AVI at 20 fps showing a real face (the
scikit-image astronaut). Every label file has one line more than its video has frames, as the real ones do
(4,845 lines, 4,844 frames).

Traps: intensity 7 in a chosen AU (the frame rejected) and 9 in an unused AU (no effect), a chosen AU's label file
missing, a frame missing from one AU file, a malformed line, a subject without a video, a truncated (unopenable)
video, and in the extracted frames a truncated PNG and a missing PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from data.fake_av_media import face_frames, truncate, write_video

CODED = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
CHOSEN = (1, 2, 4, 6, 9, 12, 25, 26)
SUBJECTS = ("SN002", "SN010", "SN013", "SN018", "SN003", "SN023", "SN029")
FRAMES, FPS, WIDTH, HEIGHT, FACE = 6, 20, 160, 120, 110
LABELS, VIDEOS = "ActionUnit_Labels", "Videos_LeftCamera"

UNKNOWN = ("SN002", 1, 3)  # subject, AU, frameIdx: intensity 7
UNUSED_CODE = ("SN002", 5, 2)  # AU 5 is not chosen: intensity 9 there changes nothing
MISSING_FILE = ("SN010", 9)
GAP = ("SN013", 26, 4)  # frame 4 has no line in SN013_au26.txt
MALFORMED = ("SN018", 2, 5)  # the line of frame 5 in SN018_au2.txt is "5;3"
NO_VIDEO = "SN003"
BROKEN_VIDEO = "SN029"
#: extracted frames (frames="images") are written for these subjects; SN002 misses 3.png, SN023's 1.png
#: is truncated (frame 2, frameIdx 3, of SN002 is rejected for its unknown intensity anyway)
IMAGE_SUBJECTS = ("SN002", "SN013", "SN023")
MISSING_PNG, TRUNCATED_PNG = ("SN002", 3), ("SN023", 1)


def stamp(frame: int) -> int:
    """Grey level of the 16x16 top-left block of video frame ``frame`` (tells frames apart after decoding)."""
    return 20 + 40 * frame


def _pictures() -> list[np.ndarray]:
    pictures = face_frames(FRAMES, WIDTH, HEIGHT, FACE)
    for frame, picture in enumerate(pictures):
        picture[:16, :16] = stamp(frame)
    return pictures


def _au_file(subject: str, au: int) -> str:
    return f"{LABELS}/{subject}/{subject}_au{au}.txt"


def write_fake_disfa(root: Path, seed: int = 0) -> dict:
    """Write a fake DISFA under ``root``.

    Returns:
        What listing and preparing it must give with the default options (``frames="video"``): ``samples``
        {key: occurrence tuple (8 AUs)}, ``intensities`` {key: 8 intensities}, ``rejections`` sorted
        [(source, reason)], and for ``frames="images"`` ``image_samples`` and ``image_rejections`` likewise,
        ``image_failures`` {source: reason}.
    """
    rng = np.random.default_rng(seed)
    pictures = _pictures()
    intensities: dict[str, tuple[int, ...]] = {}
    rejections: list[tuple[str, str]] = []
    frames_of: dict[str, list[int]] = {}
    for subject in SUBJECTS:
        folder = root / LABELS / subject
        folder.mkdir(parents=True)
        table = rng.integers(0, 6, size=(FRAMES + 1, len(CODED)))
        for column, au in enumerate(CODED):
            if (subject, au) == MISSING_FILE:
                continue
            lines = []
            for index in range(1, FRAMES + 2):  # frameIdx 1..FRAMES+1: one line more than frames
                value = int(table[index - 1, column])
                if (subject, au, index) == UNKNOWN or (subject, au, index) == UNUSED_CODE:
                    value = 7 if (subject, au, index) == UNKNOWN else 9
                if (subject, au, index) == GAP:
                    continue
                if (subject, au, index) == MALFORMED:
                    lines.append(f"{index};{value}")
                    continue
                lines.append(f"{index},{value}")
            (folder / f"{subject}_au{au}.txt").write_text("\n".join(lines) + "\n")
        if subject == MISSING_FILE[0]:
            rejections.append((_au_file(subject, MISSING_FILE[1]), "AU label file missing"))
            continue
        if subject != NO_VIDEO:
            write_video(root / VIDEOS / f"LeftVideo{subject}_comp.avi", pictures, FPS, "avi", "mpeg4")
        if subject in IMAGE_SUBJECTS:
            (root / subject).mkdir()
            for frame, picture in enumerate(pictures):
                if (subject, frame) != MISSING_PNG:
                    Image.fromarray(picture).save(root / subject / f"{frame}.png")
        chosen = [CODED.index(au) for au in CHOSEN]
        frames_of[subject] = []
        for index in range(1, FRAMES + 2):
            key = f"{subject}/{index - 1:05d}"
            if (subject, 1, index) == UNKNOWN:
                rejections.append((f"{_au_file(subject, 1)}:{index}", "unknown AU intensity 7"))
            elif GAP[0] == subject and GAP[2] == index:
                rejections.append(
                    (f"{_au_file(subject, GAP[1])} (frame {index})", "frame missing from an AU label file")
                )
            elif MALFORMED[0] == subject and MALFORMED[2] == index:
                rejections.append(
                    (f"{_au_file(subject, MALFORMED[1])} (frame {index})", "frame missing from an AU label file")
                )
            elif index == FRAMES + 1:
                rejections.append((f"{_au_file(subject, 1)}:{index}", "label line without a frame image"))
            else:
                intensities[key] = tuple(int(table[index - 1, c]) for c in chosen)
                frames_of[subject].append(index - 1)
        if MALFORMED[0] == subject:
            rejections.append((f"{_au_file(subject, MALFORMED[1])}:{MALFORMED[2]}", "malformed label line"))
    truncate(root / VIDEOS / f"LeftVideo{BROKEN_VIDEO}_comp.avi", 0.5)
    truncate(root / TRUNCATED_PNG[0] / f"{TRUNCATED_PNG[1]}.png", 0.5)
    video_rejections = [(f"{VIDEOS}/LeftVideo{NO_VIDEO}_comp.avi", "no video for the subject")]
    video_rejections.append((f"{VIDEOS}/LeftVideo{BROKEN_VIDEO}_comp.avi", "unreadable video"))
    image_rejections = [(s, "no frame folder for the subject") for s in SUBJECTS if s not in IMAGE_SUBJECTS]
    image_rejections = [r for r in image_rejections if r[0] != MISSING_FILE[0]]
    image_rejections.append(
        (f"{_au_file(*MISSING_PNG[:1], 1)}:{MISSING_PNG[1] + 1}", "label line without a frame image")
    )

    def keep(subjects: tuple[str, ...] | None, rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Label rejections of the subjects whose media are there (others are rejected by their media)."""
        kept = []
        for source, reason in rows:
            subject = source.split("/")[1]
            if reason in ("AU label file missing", "malformed label line") or subject in (subjects or ()):
                kept.append((source, reason))
        return kept

    video_subjects = tuple(s for s in SUBJECTS if s not in (NO_VIDEO, BROKEN_VIDEO))
    samples = {k: _occurrence(v) for k, v in intensities.items() if k.split("/")[0] in video_subjects}
    image_samples = {
        k: _occurrence(v)
        for k, v in intensities.items()
        if k.split("/")[0] in IMAGE_SUBJECTS and (k.split("/")[0], int(k.split("/")[1])) != MISSING_PNG
    }
    return {
        "samples": samples,
        "intensities": intensities,
        "rejections": sorted(keep(video_subjects, rejections) + video_rejections),
        "image_samples": image_samples,
        "image_rejections": sorted(keep(IMAGE_SUBJECTS, rejections) + image_rejections),
        "image_failures": {f"{TRUNCATED_PNG[0]}/{TRUNCATED_PNG[1]}.png": "unreadable image"},
    }


def _occurrence(intensities: tuple[int, ...]) -> tuple[float, ...]:
    return tuple(1.0 if v >= 2 else 0.0 for v in intensities)
