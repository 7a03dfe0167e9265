"""Format-faithful fake RAVDESS: per-zip parent folders, ``Actor_NN/`` folders, 7-field names, real media, traps.

Audio-only files are 16-bit 48 kHz mono WAV (a 440 Hz tone); audio-video files are MP4 with H.264 video and a
48 kHz AAC track (a 220 Hz tone, so a test can tell which file a cached clip came from); video-only files are MP4
without an audio stream. Frames are 16:9 and show a real face (``skimage.data.astronaut``).
"""

from __future__ import annotations

from pathlib import Path

from data.fake_av_media import face_frames, tone, truncate, write_video, write_wav

WAV_HZ, TRACK_HZ = 440.0, 220.0
RATE = 48000
FRAMES, WIDTH, HEIGHT, FPS = 10, 256, 144, 30
NAMES = ("neutral", "calm", "happy", "sad", "anger", "fear", "disgust", "surprise")

#: Usable recordings ``VV-EE-II-SS-RR-AA`` and the modality codes of their files (1 AV mp4, 2 video-only, 3 wav).
RECORDINGS: dict[str, tuple[int, ...]] = {
    "01-01-01-01-01-01": (1, 3),  # neutral: wav + audio-video
    "01-03-02-01-02-01": (1,),  # audio-video only: the voice from its AAC track
    "01-05-01-02-01-02": (3,),  # wav only: no face
    "02-02-01-01-01-02": (1, 3),  # song, calm
    "01-04-02-01-01-03": (2, 3),  # video-only mp4 (no audio stream) paired with its wav
    "01-07-01-02-02-03": (2,),  # video-only alone: no audio (VIDEO_ONLY_ALONE)
    "01-08-02-02-01-04": (1, 3),  # surprised, strong
    "02-06-01-01-02-04": (3,),  # song, fearful, wav only
    "01-06-01-01-01-05": (1, 3),
    "01-02-02-01-01-05": (1, 2),  # audio-video + video-only: face and voice from the audio-video file
    "01-03-01-01-01-06": (1, 2, 3),
    "02-03-02-02-02-06": (1, 3),  # song, happy
}
VIDEO_ONLY_ALONE = "01-07-01-02-02-03"
#: Badly named or invalid files (relative path → listing rejection reason).
REJECTED: dict[str, str] = {
    "Audio_Speech_Actors_01-24/Actor_01/03-01-05-01-01-01.wav": (
        "file name has 6 fields, not the 7 of MM-VV-EE-II-SS-RR-AA"
    ),
    "Audio_Speech_Actors_01-24/Actor_02/03-01-09-01-01-01-02.wav": "unknown emotion code 09",
    "Audio_Speech_Actors_01-24/Actor_03/03-01-01-02-01-01-03.wav": "strong intensity (02) for neutral, which has none",
    "Audio_Song_Actors_01-24/Actor_04/03-02-07-01-01-01-04.wav": "emotion code 07 (disgust) in song, which has none",
    "Video_Song_Actor_06/Actor_06/01-02-08-01-01-01-06.mp4": "emotion code 08 (surprise) in song, which has none",
    "Audio_Speech_Actors_01-24/Actor_05/03-01-03-01-01-01-06.wav": "actor folder disagrees with the file name",
    "copies/Actor_01/03-01-01-01-01-01-01.wav": "duplicate recording code",  # a second unzip of the same file
}
#: Files that list fine but cannot be read: (relative path, the sample key, reason).
TRUNCATED_WAV = ("Audio_Speech_Actors_01-24/Actor_05/03-01-04-01-02-02-05.wav", "01-04-01-02-02-05")
CORRUPT_VIDEO = ("Video_Speech_Actor_06/Actor_06/01-01-05-02-02-01-06.mp4", "01-05-02-02-01-06")
CORRUPT_VIDEO_WAV = "Audio_Speech_Actors_01-24/Actor_06/03-01-05-02-02-01-06.wav"


def relative_path(modality: int, recording: str) -> str:
    """Where the distributed zips put a file: ``Audio_*_Actors_01-24/`` or ``Video_*_Actor_NN/``, then ``Actor_NN/``."""
    channel = "Speech" if recording.startswith("01") else "Song"
    actor = recording[-2:]
    parent = f"Audio_{channel}_Actors_01-24" if modality == 3 else f"Video_{channel}_Actor_{actor}"
    suffix = "wav" if modality == 3 else "mp4"
    return f"{parent}/Actor_{actor}/{modality:02d}-{recording}.{suffix}"


def _write(root: Path, relative: str, frames: list) -> None:
    path = root / relative
    modality = int(path.name[:2])
    if path.suffix == ".wav":
        write_wav(path, tone(WAV_HZ, 1.0, RATE), RATE)
    elif modality == 1:
        write_video(path, frames, FPS, "mp4", "h264", audio=tone(TRACK_HZ, 1.0, RATE), audio_rate=RATE)
    else:
        write_video(path, frames, FPS, "mp4", "h264")


def write_fake_ravdess(root: Path) -> dict:
    """Write a fake RAVDESS under ``root`` (six actors, twelve usable recordings and the traps).

    Returns:
        The expected result of preparing it with the default options: ``samples`` {key: (None, class name)},
        ``present`` {key: (face, audio)}, ``audio_hz`` {key: tone of the cached audio}, ``failures`` {source:
        reason}, ``rejections`` {source: reason}, ``files`` (every valid file's relative path).
    """
    frames = face_frames(FRAMES, WIDTH, HEIGHT)
    files: list[str] = []
    for recording, modalities in RECORDINGS.items():
        for modality in modalities:
            relative = relative_path(modality, recording)
            _write(root, relative, frames)
            files.append(relative)
    for relative in REJECTED:
        _write(root, relative, frames)
    for relative in (TRUNCATED_WAV[0], CORRUPT_VIDEO[0], CORRUPT_VIDEO_WAV):
        _write(root, relative, frames)
        files.append(relative)
    truncate(root / TRUNCATED_WAV[0])
    truncate(root / CORRUPT_VIDEO[0])  # the mp4's index (moov atom, written last) is lost
    # Things the adapter must ignore: notes, macOS archive debris, hidden files.
    (root / "README.txt").write_text("RAVDESS, Zenodo record 1188976\n")
    (root / "__MACOSX" / "Audio_Speech_Actors_01-24" / "Actor_01").mkdir(parents=True)
    (root / "__MACOSX" / "Audio_Speech_Actors_01-24" / "Actor_01" / "._03-01-01-01-01-01-01.wav").write_bytes(b"x")
    (root / "Audio_Speech_Actors_01-24" / ".DS_Store").write_bytes(b"\0")

    def audio_hz(modalities: tuple[int, ...]) -> float | None:
        return WAV_HZ if 3 in modalities else TRACK_HZ if 1 in modalities else None

    return {
        "samples": {key: (None, NAMES[int(key[3:5]) - 1]) for key in RECORDINGS},
        "present": {key: (1 in m or 2 in m, 3 in m or 1 in m) for key, m in RECORDINGS.items()},
        "audio_hz": {key: audio_hz(m) for key, m in RECORDINGS.items() if audio_hz(m)},
        "failures": {TRUNCATED_WAV[0]: "unreadable audio file", CORRUPT_VIDEO[0]: "unreadable video file"},
        "rejections": dict(REJECTED),
        "files": sorted(files),
    }
