"""Format-faithful fake CREMA-D: ``AudioWAV/``, ``AudioMP3/``, ``VideoFlash/`` with ``AAAA_SSS_EEE_LL`` names and traps.

WAV files are 16-bit 16 kHz mono (a 440 Hz tone); the FLV videos hold Sorenson H.263 video (FFmpeg's ``flv``
codec, the FLV format's own) and an MP3 track (a 220 Hz tone), written by PyAV; one clip is a converted MP4 (H.264
+ AAC) of the same stem. Frames are 4:3 and show a real face (``skimage.data.astronaut``).
"""

from __future__ import annotations

from pathlib import Path

from data.fake_av_media import face_frames, tone, write_video, write_wav

WAV_HZ, TRACK_HZ = 440.0, 220.0
WAV_RATE, TRACK_RATE = 16000, 44100
FRAMES, WIDTH, HEIGHT, FPS = 10, 160, 120, 30
NAMES = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}

#: Usable clip stems and their files (suffixes in VideoFlash/ and AudioWAV/).
CLIPS: dict[str, tuple[str, ...]] = {
    "1001_DFA_ANG_XX": ("wav", "flv"),
    "1001_IEO_HAP_HI": ("wav", "flv"),
    "1001_ITS_NEU_XX": ("wav", "flv"),
    "1002_IOM_SAD_XX": ("wav",),  # no video: no face
    "1002_IEO_FEA_LO": ("wav", "flv"),
    "1003_TIE_NEU_XX": ("wav", "mp4"),  # the user converted this clip's video to mp4
    "1003_IWW_DIS_XX": ("flv",),  # no wav: the voice from the flv's own MP3 track
    "1003_MTI_SAD_XX": ("wav", "flv", "mp4"),  # flv and its mp4 conversion: the flv is read
    "1004_TAI_ANG_MD": ("wav", "flv"),
    "1004_MTI_HAP_XX": ("wav", "flv"),
    "1005_IWL_SAD_XX": ("wav", "flv"),
    "1005_ITH_FEA_XX": ("wav", "flv"),
}
#: Badly named files (relative path → listing rejection reason).
REJECTED: dict[str, str] = {
    "AudioWAV/1002_DFA_BOR_XX.wav": "unknown emotion code BOR",
    "AudioWAV/1003_DFA_ANG.wav": "file name has 3 fields, not the 4 of AAAA_SSS_EEE_LL",
    "AudioWAV/1005_XYZ_ANG_XX.wav": "unknown sentence code XYZ",
    "AudioWAV/1001_WSI_SAD_ZZ.wav": "unknown level code ZZ",
    "VideoFlash/1092_DFA_ANG_XX.flv": "unknown actor id 1092",
}
#: A corrupt wav beside a good flv (the sample's source is its video) and an empty flv beside a good wav.
CORRUPT_WAV = "1004_WSI_SAD_XX"
EMPTY_FLV = "1005_TSI_HAP_XX"
#: Clips that also have an MP3 in AudioMP3/.
MP3_CLIPS = ("1001_DFA_ANG_XX", "1002_IOM_SAD_XX")


def _write(root: Path, folder: str, stem: str, suffix: str, frames: list) -> None:
    path = root / folder / f"{stem}.{suffix}"
    if suffix == "wav":
        write_wav(path, tone(WAV_HZ, 1.0, WAV_RATE), WAV_RATE)
    elif suffix == "mp3":
        write_mp3(path)
    elif suffix == "flv":
        track = tone(TRACK_HZ, 1.0, TRACK_RATE)
        write_video(path, frames, FPS, "flv", "flv", audio=track, audio_rate=TRACK_RATE, audio_codec="mp3")
    else:
        track = tone(TRACK_HZ, 1.0, 48000)
        write_video(path, frames, FPS, "mp4", "h264", audio=track, audio_rate=48000)


def write_mp3(path: Path) -> None:
    """An MP3 file (an audio-only container) of the wav's tone."""
    import av
    import numpy as np

    from data.fake_av_media import audio_frame

    path.parent.mkdir(parents=True, exist_ok=True)
    samples = tone(WAV_HZ, 1.0, TRACK_RATE)
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("mp3", rate=TRACK_RATE)
        stream.layout = "mono"
        size = stream.codec_context.frame_size or 1152
        sample_format = stream.codec_context.format.name
        for start in range(0, samples.shape[0], size):
            block = np.pad(samples[start : start + size], (0, max(0, start + size - samples.shape[0])))
            container.mux(stream.encode(audio_frame(av, block, sample_format, TRACK_RATE, start)))
        container.mux(stream.encode())


def write_fake_cremad(root: Path) -> dict:
    """Write a fake CREMA-D repository folder at ``root`` (five actors, twelve usable clips and the traps).

    Returns:
        The expected result of preparing it with the default options: ``samples`` {key: (None, class name)},
        ``present`` {key: (face, audio)}, ``audio_hz`` {key: tone of the cached audio}, ``failures`` {source:
        reason}, ``rejections`` {source: reason}.
    """
    frames = face_frames(FRAMES, WIDTH, HEIGHT)
    for stem, kinds in CLIPS.items():
        for suffix in kinds:
            _write(root, "AudioWAV" if suffix == "wav" else "VideoFlash", stem, suffix, frames)
    for relative in REJECTED:
        folder, name = relative.split("/")
        _write(root, folder, Path(name).stem, Path(name).suffix[1:], frames)
    for stem in MP3_CLIPS:
        _write(root, "AudioMP3", stem, "mp3", frames)
    _write(root, "AudioWAV", CORRUPT_WAV, "wav", frames)
    _write(root, "VideoFlash", CORRUPT_WAV, "flv", frames)
    corrupt = root / "AudioWAV" / f"{CORRUPT_WAV}.wav"
    corrupt.write_bytes(b"\x00" * 44 + corrupt.read_bytes()[44:])  # the RIFF header overwritten
    _write(root, "AudioWAV", EMPTY_FLV, "wav", frames)
    (root / "VideoFlash" / f"{EMPTY_FLV}.flv").write_bytes(b"")
    # Files the adapter must ignore: the repository's tables, hidden files, notes.
    (root / "VideoDemographics.csv").write_text(
        '"ActorID","Age","Sex","Race","Ethnicity"\n1001,30,"Male","Unknown","Not Hispanic"\n'
    )
    (root / "AudioWAV" / ".DS_Store").write_bytes(b"\0")
    (root / "VideoFlash" / "notes.txt").write_text("converted two clips to mp4\n")
    return {
        "samples": {stem: (None, NAMES[stem.split("_")[2]]) for stem in CLIPS},
        "present": {stem: ("flv" in kinds or "mp4" in kinds, True) for stem, kinds in CLIPS.items()},
        "audio_hz": {stem: WAV_HZ if "wav" in kinds else TRACK_HZ for stem, kinds in CLIPS.items()},
        "failures": {
            f"VideoFlash/{CORRUPT_WAV}.flv": "unreadable audio file",
            f"VideoFlash/{EMPTY_FLV}.flv": "empty video file",
        },
        "rejections": dict(REJECTED),
    }
