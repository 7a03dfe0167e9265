"""RAVDESS (Ryerson Audio-Visual Database of Emotional Speech and Song): 24 actors, speech and song, faces and voice.

Layout as distributed (Zenodo record 1188976): one folder per actor, ``Actor_01/`` … ``Actor_24/``, in every zip
(``Audio_Speech_Actors_01-24.zip``, ``Audio_Song_Actors_01-24.zip``, the per-actor video zips). ``raw_root`` is the
folder the zips were unpacked into, with or without the per-zip parent folders::

    Audio_Speech_Actors_01-24/Actor_01/03-01-01-01-01-01-01.wav    audio-only, 16-bit 48 kHz
    Video_Speech_Actor_01/Actor_01/01-01-01-01-01-01-01.mp4        audio-video: H.264 + AAC
    Video_Speech_Actor_01/Actor_01/02-01-01-01-01-01-01.mp4        video-only (no sound)

Every ``.wav`` and ``.mp4`` below ``raw_root`` is found (hidden files and ``__MACOSX`` folders are skipped). Its name
is the recording's code ``MM-VV-EE-II-SS-RR-AA``, seven two-digit fields:

====  ==============  =====================================================================================
 #     field           codes
====  ==============  =====================================================================================
 MM    modality        01 audio-video (.mp4), 02 video-only (.mp4), 03 audio-only (.wav)
 VV    vocal channel   01 speech, 02 song
 EE    emotion         01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised
 II    intensity       01 normal, 02 strong (neutral has no strong intensity)
 SS    statement       01 "Kids are talking by the door", 02 "Dogs are sitting by the door"
 RR    repetition      01 first, 02 second
 AA    actor           01-24; odd male, even female
====  ==============  =====================================================================================

The label space keeps the emotion codes' order: neutral, calm, happy, sad, anger, fear, disgust, surprise (song has
no disgust or surprised, so a song-only selection has the first six). A file whose name breaks the code table is a
listing rejection with the reason: fewer or more than seven fields, an unknown code, a strong neutral, a song with
code 07/08, a modality code that does not match the suffix, a file in another actor's folder, a code found twice.

**One sample per recording.** The files of one performance share the six fields after the modality (the key, e.g.
``01-03-01-01-01-24``). With ``pair_audio_with_video`` (the default) they become one sample: the face from the
audio-video mp4 (else the video-only one; its middle frame, or a clip with ``clip_frames``), the voice from the
audio-only wav (else the audio-video mp4's own AAC track; ``audio_source: mp4`` prefers the track). A recording with
only a wav has no face (``present[face]`` false); one with only a video-only mp4 has no audio. Without pairing every
file is its own sample, keyed by its full seven-field name. A sample's ``source`` is its video where it has one,
else its wav; a damaged file fails the whole sample with a reason that says which (``"unreadable video file"``,
``"unreadable audio file"``, ...).

**Protocol.** RAVDESS has no official split; the usual protocol is actor-independent k-fold cross-validation (the
fold count varies between papers). The default is :class:`SubjectKFold` with 6 folds of 4 actors (one tests, the
next validates, four train); the subject is the actor (``Actor_NN``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from multimodal_fer.datasets.av_files import load_audio_visual
from multimodal_fer.datasets.base import DatasetAdapter, Listing, RawMedia, RawSample, Rejection, SampleLabels
from multimodal_fer.datasets.protocols import SplitProtocol, SubjectKFold
from multimodal_fer.errors import DataError
from multimodal_fer.types import LabelSpace

#: Emotion codes 01..08, in the package's vocabulary (index = code - 1).
RAVDESS_EXPRESSIONS: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "anger", "fear", "disgust", "surprise")
#: Emotion codes sung in the song channel (01..06): song has no disgust or surprised.
SONG_EXPRESSIONS: tuple[str, ...] = RAVDESS_EXPRESSIONS[:6]
#: Modality codes and the file suffix each must have.
MODALITY_SUFFIXES: dict[int, str] = {1: ".mp4", 2: ".mp4", 3: ".wav"}
AUDIO_VIDEO, VIDEO_ONLY, AUDIO_ONLY = 1, 2, 3
#: Vocal channel codes.
CHANNELS: dict[int, str] = {1: "speech", 2: "song"}
NUM_ACTORS = 24
_SKIPPED_FOLDERS = frozenset({"__MACOSX"})


@dataclass(frozen=True)
class RecordingCode:
    """The seven fields of a RAVDESS file name (codes as integers).

    Attributes:
        modality: 1 audio-video, 2 video-only, 3 audio-only.
        channel: 1 speech, 2 song.
        emotion: 1..8 (see :data:`RAVDESS_EXPRESSIONS`).
        intensity: 1 normal, 2 strong.
        statement: 1 or 2.
        repetition: 1 or 2.
        actor: 1..24.
    """

    modality: int
    channel: int
    emotion: int
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def recording(self) -> str:
        """The six fields after the modality, ``VV-EE-II-SS-RR-AA``: one performance, whatever the file kind."""
        fields = (self.channel, self.emotion, self.intensity, self.statement, self.repetition, self.actor)
        return "-".join(f"{v:02d}" for v in fields)

    @property
    def name(self) -> str:
        """The full seven-field code ``MM-VV-EE-II-SS-RR-AA``."""
        return f"{self.modality:02d}-{self.recording}"

    @property
    def subject(self) -> str:
        """The actor, named like the distributed folders (``Actor_07``)."""
        return f"Actor_{self.actor:02d}"


def parse_recording_name(file_name: str) -> RecordingCode | str:
    """Read a RAVDESS file name, checking every field against the code table.

    Args:
        file_name: e.g. ``"03-01-06-01-02-01-12.wav"``.

    Returns:
        The code, or the reason the name is not a valid RAVDESS recording (a short phrase).
    """
    path = Path(file_name)
    fields = path.stem.split("-")
    if len(fields) != 7:
        return f"file name has {len(fields)} fields, not the 7 of MM-VV-EE-II-SS-RR-AA"
    if not all(len(f) == 2 and f.isdigit() for f in fields):
        return "file name fields are not two-digit codes"
    code = RecordingCode(*(int(f) for f in fields))
    suffix = path.suffix.lower()
    if code.modality not in MODALITY_SUFFIXES:
        return f"unknown modality code {fields[0]}"
    if MODALITY_SUFFIXES[code.modality] != suffix:
        return f"modality code {fields[0]} on a {suffix} file"
    if code.channel not in CHANNELS:
        return f"unknown vocal channel code {fields[1]}"
    if not 1 <= code.emotion <= len(RAVDESS_EXPRESSIONS):
        return f"unknown emotion code {fields[2]}"
    if code.intensity not in (1, 2):
        return f"unknown intensity code {fields[3]}"
    if code.emotion == 1 and code.intensity == 2:
        return "strong intensity (02) for neutral, which has none"
    if code.channel == 2 and code.emotion > len(SONG_EXPRESSIONS):
        return f"emotion code {fields[2]} ({RAVDESS_EXPRESSIONS[code.emotion - 1]}) in song, which has none"
    if code.statement not in (1, 2):
        return f"unknown statement code {fields[4]}"
    if code.repetition not in (1, 2):
        return f"unknown repetition code {fields[5]}"
    if not 1 <= code.actor <= NUM_ACTORS:
        return f"unknown actor code {fields[6]}"
    return code


def _actor_folder_number(relative: Path) -> int | None:
    """The number of the ``Actor_NN`` folder a file lies in, or None outside such a folder."""
    parent = relative.parent.name
    if parent.startswith("Actor_") and parent[6:].isdigit():
        return int(parent[6:])
    return None


class RAVDESS(DatasetAdapter):
    """RAVDESS speech and song recordings: faces from the videos, voice from the wavs (or the videos' tracks).

    Args:
        channels: vocal channels to keep, among ``"speech"`` and ``"song"`` (None: both). Files of the others
            are left out without a rejection. Song only: six classes (no disgust, surprise).
        pair_audio_with_video: one sample per recording, its wav and mp4s together (default); False: one sample
            per file, keyed by the full file name.
        audio_source: where a paired recording's audio comes from when it has both: ``"wav"`` (the audio-only
            file, 48 kHz PCM) or ``"mp4"`` (the audio-video file's AAC track). The other is the fallback.
    """

    name = "ravdess"
    modalities = ("face", "audio")
    face_media_allowed = False  # real actors: the package default for real people (see the data card)

    def __init__(
        self,
        channels: list[Literal["speech", "song"]] | None = None,
        pair_audio_with_video: bool = True,
        audio_source: Literal["wav", "mp4"] = "wav",
    ) -> None:
        chosen = list(channels) if channels is not None else list(CHANNELS.values())
        unknown = [c for c in chosen if c not in CHANNELS.values()]
        if unknown or not chosen:
            raise ValueError(f"channels={chosen!r}: choose one or both of {list(CHANNELS.values())}.")
        if audio_source not in ("wav", "mp4"):
            raise ValueError(f"audio_source={audio_source!r}: choose 'wav' (audio-only files) or 'mp4' (video tracks).")
        self.channels = tuple(c for c in CHANNELS.values() if c in chosen)
        self.pair_audio_with_video = bool(pair_audio_with_video)
        self.audio_source = audio_source

    @property
    def label_space(self) -> LabelSpace:
        """Eight classes in RAVDESS's emotion-code order (six for song only)."""
        return LabelSpace(expressions=SONG_EXPRESSIONS if self.channels == ("song",) else RAVDESS_EXPRESSIONS)

    def settings(self) -> dict[str, Any]:
        """Channels, pairing and audio source."""
        return {
            "channels": list(self.channels),
            "pair_audio_with_video": self.pair_audio_with_video,
            "audio_source": self.audio_source,
        }

    def default_protocol(self) -> SplitProtocol:
        """Actor-independent 6-fold cross-validation, fold 0 (RAVDESS has no official split)."""
        return SubjectKFold(num_folds=6, fold=0, seed=0)

    # ----------------------------------------------------------------------------------------------- listing
    @staticmethod
    def media_files(raw_root: Path) -> list[Path]:
        """Every ``.wav`` and ``.mp4`` below ``raw_root``, relative to it, in sorted order.

        Hidden files and folders (``._*`` copies of macOS archives) and ``__MACOSX`` folders are skipped.
        """
        found: list[Path] = []
        for folder, subfolders, files in os.walk(raw_root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d not in _SKIPPED_FOLDERS)
            for name in files:
                if not name.startswith(".") and Path(name).suffix.lower() in (".wav", ".mp4"):
                    found.append((Path(folder) / name).relative_to(raw_root))
        return sorted(found, key=lambda p: p.as_posix())

    def list_samples(self, raw_root: Path) -> Listing:
        """Every recording of the chosen channels; badly named or invalid files are rejected with the reason.

        Raises:
            DataError: no ``.wav`` or ``.mp4`` file at all under ``raw_root``.
        """
        files = self.media_files(raw_root)
        if not files:
            raise DataError(
                f"No RAVDESS recordings under {raw_root}: expected Actor_01/ ... Actor_24/ folders with files named "
                "MM-VV-EE-II-SS-RR-AA.wav/.mp4 (e.g. 03-01-06-01-02-01-12.wav). Unzip the Zenodo archives "
                "(record 1188976) into one folder and pass it as raw_root."
            )
        rejected: list[Rejection] = []
        by_name: dict[str, Path] = {}
        codes: dict[str, RecordingCode] = {}
        for relative in files:
            where = relative.as_posix()
            parsed = parse_recording_name(relative.name)
            if isinstance(parsed, str):
                rejected.append(Rejection(where, parsed))
                continue
            folder_actor = _actor_folder_number(relative)
            if folder_actor is not None and folder_actor != parsed.actor:
                rejected.append(Rejection(where, "actor folder disagrees with the file name"))
                continue
            if parsed.name in by_name:
                rejected.append(Rejection(where, "duplicate recording code"))
                continue
            if CHANNELS[parsed.channel] not in self.channels:
                continue
            by_name[parsed.name] = relative
            codes[parsed.name] = parsed
        groups = self._group(codes)
        samples = [self._sample(key, group, codes, by_name) for key, group in groups.items()]
        samples.sort(key=lambda s: (s.subject, s.key))
        return Listing(samples, rejected)

    def _group(self, codes: dict[str, RecordingCode]) -> dict[str, dict[int, str]]:
        """Sample key → {modality code: file code name}: one group per recording, or per file without pairing."""
        groups: dict[str, dict[int, str]] = {}
        for name, code in codes.items():
            key = code.recording if self.pair_audio_with_video else code.name
            groups.setdefault(key, {})[code.modality] = name
        return groups

    def _sample(
        self, key: str, group: dict[int, str], codes: dict[str, RecordingCode], by_name: dict[str, Path]
    ) -> RawSample:
        def path(modality: int) -> str | None:
            return by_name[group[modality]].as_posix() if modality in group else None

        video = path(AUDIO_VIDEO) or path(VIDEO_ONLY)
        wav, track = path(AUDIO_ONLY), path(AUDIO_VIDEO)
        audio = (wav or track) if self.audio_source == "wav" else (track or wav)
        code = codes[next(iter(group.values()))]
        source = video or audio
        assert source is not None  # every group holds at least one file
        return RawSample(
            key=key,
            subject=code.subject,
            source=source,
            labels=SampleLabels(expr=code.emotion - 1),
            locators={"video": video, "audio": audio},
        )

    # ------------------------------------------------------------------------------------------------ loading
    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """The video (its middle frame becomes the face) and the decoded audio, each where the sample has one.

        Raises:
            SampleError: a missing, empty, damaged or undecodable file, a video without pictures or an
                audio-video file without sound.
        """
        return load_audio_visual(raw_root, sample)
