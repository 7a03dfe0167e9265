"""Raw recordings given to ``mfer predict --inputs``: files grouped into samples by stem, turned into raw media.

Images, videos and audio files (or folders of them, searched recursively) become samples: files in one folder
that share a stem are one sample (``clip.mp4`` + ``clip.wav``: face from the video, audio from the wav); a video
without a separate audio file gives its own audio track, if it has one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from multimodal_fer.datasets.base import RawMedia
from multimodal_fer.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".flv", ".webm", ".m4v"})
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".m4a", ".ogg", ".aac"})
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES | AUDIO_SUFFIXES


@dataclass(frozen=True)
class RawInput:
    """One sample to predict: the files sharing a stem.

    Attributes:
        name: the shared path without suffix (what the output's ``source`` column shows with the suffixes).
        image: a still image, if any.
        video: a video, if any (used when there is no image).
        audio: an audio file, if any (else the video's own track).
    """

    name: str
    image: Path | None = None
    video: Path | None = None
    audio: Path | None = None

    @property
    def files(self) -> list[Path]:
        """The files of this sample."""
        return [p for p in (self.image, self.video, self.audio) if p is not None]

    @property
    def source(self) -> str:
        """``name`` with every file's suffix, e.g. ``clips/a.mp4+wav``."""
        suffixes = "+".join(p.suffix.lstrip(".") for p in self.files)
        return f"{self.name}.{suffixes}"


def collect_inputs(paths: list[str | Path]) -> tuple[list[RawInput], list[tuple[str, str]]]:
    """Expand files and folders into samples.

    Args:
        paths: files or folders (folders are searched recursively for media files).

    Returns:
        ``(inputs, problems)``: the samples in sorted order, and ``(path, reason)`` for each given path that
        could not be used (missing, not a media file, two images with one stem).

    Raises:
        DataError: no path given.
    """
    if not paths:
        raise DataError("Give at least one input: --inputs photo.jpg clip.mp4 speech.wav folder/")
    problems: list[tuple[str, str]] = []
    files: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
            if not found:
                problems.append((str(path), "folder holds no image, video or audio file"))
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() in MEDIA_SUFFIXES:
                files.append(path)
            else:
                problems.append((str(path), f"not a media file this command reads ({path.suffix or 'no suffix'})"))
        else:
            problems.append((str(path), "no such file or folder"))
    groups: dict[Path, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for path in dict.fromkeys(files):  # keep order, drop repeats
        suffix = path.suffix.lower()
        kind = "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else "audio"
        groups[path.with_suffix("")][kind].append(path)
    inputs = []
    for stem in sorted(groups):
        kinds = groups[stem]
        repeated = [kind for kind, found in kinds.items() if len(found) > 1]
        if repeated:
            problems.append((str(stem), f"several {repeated[0]} files share this stem; give one of them"))
            continue
        inputs.append(
            RawInput(
                name=str(stem),
                image=kinds["image"][0] if kinds.get("image") else None,
                video=kinds["video"][0] if kinds.get("video") else None,
                audio=kinds["audio"][0] if kinds.get("audio") else None,
            )
        )
    return inputs, problems


def raw_media(item: RawInput, frame: int = -1, audio_centre: float | None = None, wants_audio: bool = True) -> RawMedia:
    """The raw media of one input for the media processor.

    Args:
        item: the input.
        frame: the video frame to take the face from (-1: the middle frame).
        audio_centre: centre the audio window on this time, seconds (per-frame predictions of a video).
        wants_audio: whether the model has an audio encoder (the video's track is read only then).
    """
    audio_path = None
    if wants_audio:
        if item.audio is not None:
            audio_path = str(item.audio)
        elif item.video is not None and _has_audio_track(item.video):
            audio_path = str(item.video)
    return RawMedia(
        image=_read_rgb(item.image) if item.image is not None else None,
        video=str(item.video) if item.image is None and item.video is not None else None,
        video_frame=frame,
        audio_path=audio_path,
        audio_centre=audio_centre,
    )


def _read_rgb(path: Path):  # noqa: ANN202 - numpy array
    from multimodal_fer.datasets.image_io import read_image

    return read_image(path)


def _has_audio_track(path: Path) -> bool:
    """Whether a video file has an audio stream (unreadable files: False, the face path reports them)."""
    try:
        import av

        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except Exception:  # noqa: BLE001 - any reading problem surfaces when the frames are read
        return False
