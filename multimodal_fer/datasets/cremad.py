"""CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset): 91 actors, 12 sentences, 6 emotions, face and voice.

Layout as distributed (the CheyneyComputerScience/CREMA-D repository, its media in git-LFS); ``raw_root`` is that
folder, or the folder holding it under the name ``CREMA-D``::

    AudioWAV/1001_DFA_ANG_XX.wav      processed WAV (16 kHz, UNCONFIRMED)
    AudioMP3/1001_DFA_ANG_XX.mp3      the same clips as MP3 (used with audio_folder="AudioMP3")
    VideoFlash/1001_DFA_ANG_XX.flv    the video clips (480x360 at 30 fps, UNCONFIRMED); a converted
                                      VideoFlash/<stem>.mp4 is accepted too (the .flv wins when both are there)

File names are ``AAAA_SSS_EEE_LL``:

======  ==========  ===========================================================================================
 field   meaning     codes
======  ==========  ===========================================================================================
 AAAA    actor       1001-1091
 SSS     sentence    IEO, TIE, IOM, IWW, TAI, MTI, IWL, ITH, DFA, ITS, TSI, WSI (see :data:`SENTENCES`)
 EEE     emotion     ANG anger, DIS disgust, FEA fear, HAP happy, NEU neutral, SAD sad
 LL      level       LO low, MD medium, HI high, XX unspecified
======  ==========  ===========================================================================================

The label space keeps that emotion order: anger, disgust, fear, happy, neutral, sad (the acted emotion; the
crowd-sourced perception votes of ``processedResults/`` are not read). A file whose name breaks the table (another
field count, an unknown actor, sentence, emotion or level code) is a listing rejection with the reason.

**One sample per clip stem**: the voice from the audio folder's file, the face from the video (its middle frame, or
a clip with ``clip_frames``). A stem with audio but no video has no face (``present[face]`` false); one with a video
but no audio file takes the voice from the video's own audio track. A sample's ``source`` is its video where it has
one, else its audio file; a damaged file fails the whole sample with a reason that says which (``"unreadable audio
file"``, ``"unreadable video file"``, ...). FLV is decoded through PyAV/FFmpeg like every other container.

**Protocol.** CREMA-D has no official split; papers use speaker-independent splits. The default is
:class:`SubjectKFold` with 5 folds over the actors (one tests, the next validates, three train); the subject is the
actor id (``"1001"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from multimodal_fer.datasets.av_files import load_audio_visual
from multimodal_fer.datasets.base import DatasetAdapter, Listing, RawMedia, RawSample, Rejection, SampleLabels
from multimodal_fer.datasets.protocols import SplitProtocol, SubjectKFold
from multimodal_fer.errors import DataError
from multimodal_fer.types import LabelSpace

#: Emotion codes in CREMA-D's order, with their names in the package's vocabulary.
EMOTION_CODES: dict[str, str] = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMAD_EXPRESSIONS: tuple[str, ...] = tuple(EMOTION_CODES.values())
#: Sentence codes and what the actors say.
SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
#: Emotion level codes.
LEVELS: dict[str, str] = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
FIRST_ACTOR, LAST_ACTOR = 1001, 1091
VIDEO_FOLDER = "VideoFlash"
#: Video suffixes accepted in ``VideoFlash/``, the preferred first.
VIDEO_SUFFIXES: tuple[str, ...] = (".flv", ".mp4")
AUDIO_SUFFIXES: dict[str, str] = {"AudioWAV": ".wav", "AudioMP3": ".mp3"}


def parse_clip_name(stem: str) -> tuple[str, str] | str:
    """Read a CREMA-D clip name ``AAAA_SSS_EEE_LL``, checking every field.

    Args:
        stem: the file name without its suffix, e.g. ``"1001_DFA_ANG_XX"``.

    Returns:
        ``(actor, emotion code)``, or the reason the name is not a valid CREMA-D clip (a short phrase).
    """
    fields = stem.split("_")
    if len(fields) != 4:
        return f"file name has {len(fields)} fields, not the 4 of AAAA_SSS_EEE_LL"
    actor, sentence, emotion, level = fields
    if not (len(actor) == 4 and actor.isdigit() and FIRST_ACTOR <= int(actor) <= LAST_ACTOR):
        return f"unknown actor id {actor}"
    if sentence not in SENTENCES:
        return f"unknown sentence code {sentence}"
    if emotion not in EMOTION_CODES:
        return f"unknown emotion code {emotion}"
    if level not in LEVELS:
        return f"unknown level code {level}"
    return actor, emotion


class CREMAD(DatasetAdapter):
    """CREMA-D clips: faces from ``VideoFlash/``, voice from ``AudioWAV/`` (or ``AudioMP3/``).

    Args:
        audio_folder: ``"AudioWAV"`` (the processed WAV files) or ``"AudioMP3"``.
    """

    name = "cremad"
    modalities = ("face", "audio")
    face_media_allowed = False  # real actors: the package default for real people (see the data card)

    def __init__(self, audio_folder: Literal["AudioWAV", "AudioMP3"] = "AudioWAV") -> None:
        if audio_folder not in AUDIO_SUFFIXES:
            raise ValueError(f"audio_folder={audio_folder!r}: choose one of {list(AUDIO_SUFFIXES)}.")
        self.audio_folder = audio_folder

    @property
    def label_space(self) -> LabelSpace:
        """Six classes in CREMA-D's emotion-code order."""
        return LabelSpace(expressions=CREMAD_EXPRESSIONS)

    def settings(self) -> dict[str, Any]:
        """The audio folder."""
        return {"audio_folder": self.audio_folder}

    def default_protocol(self) -> SplitProtocol:
        """Speaker-independent 5-fold cross-validation, fold 0 (CREMA-D has no official split)."""
        return SubjectKFold(num_folds=5, fold=0, seed=0)

    @staticmethod
    def dataset_folder(raw_root: Path) -> Path:
        """The folder holding ``AudioWAV/``, ``AudioMP3/`` or ``VideoFlash/``: ``raw_root`` or its ``CREMA-D``.

        Raises:
            DataError: none of those folders in either place.
        """
        for candidate in (raw_root, raw_root / "CREMA-D"):
            if any((candidate / folder).is_dir() for folder in (*AUDIO_SUFFIXES, VIDEO_FOLDER)):
                return candidate
        raise DataError(
            f"No CREMA-D media under {raw_root}: expected AudioWAV/, AudioMP3/ or VideoFlash/ in it or in its "
            "'CREMA-D' folder. Point raw_root to the CREMA-D repository folder (with its git-LFS files pulled)."
        )

    @staticmethod
    def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
        """Visible files of ``folder`` with one of ``suffixes``, by name and then by the suffixes' preference."""
        if not folder.is_dir():
            return []
        found = [
            p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
        ]
        return sorted(found, key=lambda p: (p.stem, suffixes.index(p.suffix.lower()), p.name))

    def list_samples(self, raw_root: Path) -> Listing:
        """One sample per valid clip stem found in the audio or video folder; bad names are rejected.

        Raises:
            DataError: neither the audio folder nor ``VideoFlash/`` is there.
        """
        base = self.dataset_folder(raw_root)
        prefix = base.relative_to(raw_root)
        audio_dir, video_dir = base / self.audio_folder, base / VIDEO_FOLDER
        if not audio_dir.is_dir() and not video_dir.is_dir():
            raise DataError(
                f"Neither {audio_dir} nor {video_dir} exists; with audio_folder={self.audio_folder!r} CREMA-D needs "
                f"one of them (or choose the audio folder you have: {list(AUDIO_SUFFIXES)})."
            )
        rejected: list[Rejection] = []
        stems: dict[str, dict[str, str]] = {}
        actors: dict[str, tuple[str, str]] = {}
        found = [("audio", p) for p in self._files(audio_dir, (AUDIO_SUFFIXES[self.audio_folder],))]
        found += [("video", p) for p in self._files(video_dir, VIDEO_SUFFIXES)]
        for kind, path in found:
            relative = (prefix / path.relative_to(base)).as_posix()
            parsed = parse_clip_name(path.stem)
            if isinstance(parsed, str):
                rejected.append(Rejection(relative, parsed))
                continue
            entry = stems.setdefault(path.stem, {})
            if kind == "video" and "video" in entry:
                continue  # a converted .mp4 beside the .flv of the same stem: the .flv (listed first) is kept
            entry[kind] = relative
            actors[path.stem] = parsed
        samples: list[RawSample] = []
        for stem in sorted(stems):
            entry = stems[stem]
            actor, emotion = actors[stem]
            video, audio = entry.get("video"), entry.get("audio")
            samples.append(
                RawSample(
                    key=stem,
                    subject=actor,
                    source=video or audio or "",
                    labels=SampleLabels(expr=CREMAD_EXPRESSIONS.index(EMOTION_CODES[emotion])),
                    locators={"video": video, "audio": audio or video},
                )
            )
        return Listing(samples, rejected)

    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The video (its middle frame becomes the face) and the decoded audio, each where the sample has one.

        Raises:
            SampleError: a missing, empty, damaged or undecodable file, a video without pictures, or (audio
                taken from the video) a video without sound.
        """
        return load_audio_visual(raw_root, sample)
