"""Format-faithful fake Aff-Wild2 (ABAW3 or ABAW6 folder names): frames, per-track annotation files, media, traps.

Traps: VA rows with -5 (both and one value), EXPR -1, AU rows with a -1, labelled lines without a frame image, a
truncated JPEG frame, a malformed AU line, an unknown expression code, a ``_left``/``_right`` pair sharing one
mp4 audio track, a WAV track (needs ``fps``), a video in Train_Set of one track and Validation_Set of another, an
annotation file without a frame folder and one with ABAW1's 7-class header.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

EDITIONS = {
    "abaw3": ("3rd ABAW Annotations/Third ABAW Annotations", "EXPR_Classification_Challenge"),
    "abaw6": ("6th ABAW Annotations", "EXPR_Recognition_Challenge"),
}
HEADERS = {
    "VA_Estimation_Challenge": "valence,arousal",
    "EXPR": "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other",
    "AU_Detection_Challenge": "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26",
}
EXPRESSIONS = ("neutral", "anger", "disgust", "fear", "happy", "sad", "surprise", "other")

A, BL, BR, C, D = "1-30-640x360", "2-24-640x360_left", "2-24-640x360_right", "3-30-640x360", "4-25-480x360"
CONFLICT, NO_FRAMES, OLD_HEADER = "5-30-640x360", "6-30-640x360", "7-30-640x360"

AU_A1 = "0,0,0,1,0,0,1,0,0,0,1,0"
AU_ZERO = ",".join(["0"] * 12)
AU_ONE = ",".join(["1"] * 12)
AU_BR = ["1,1,0,0,0,0,0,0,0,0,1,1", "0,0,1,0,1,0,0,1,0,0,0,0", "0,0,0,0,0,1,1,0,1,1,0,0"]
AU_C = ["0,1,0,1,0,1,0,1,0,1,0,1", "1,0,1,0,1,0,1,0,1,0,1,0"]

#: (track folder or "EXPR", split folder, video, lines after the header)
ANNOTATIONS: list[tuple[str, str, str, list[str]]] = [
    # A: frame 2 invalid everywhere (no sample); frame 3 VA half -5 and AU with a -1; frame 5 has no image
    ("VA_Estimation_Challenge", "Train_Set", A, ["0.5,0.25", "-5,-5", "0.1,-5", "-0.3,0.7", "0.2,0.2"]),
    ("EXPR", "Train_Set", A, ["4", "-1", "7", "0", "1"]),
    (
        "AU_Detection_Challenge",
        "Train_Set",
        A,
        [AU_A1, ",".join(["-1"] * 12), "1,0,0,0,0,0,0,0,0,0,0,-1", AU_ZERO, AU_ONE],
    ),
    # the two people of one video: left has VA+EXPR, right EXPR+AU; left frame 2 is a truncated JPEG
    ("VA_Estimation_Challenge", "Train_Set", BL, ["0.1,0.2", "0.3,0.4", "-0.5,-0.6"]),
    ("EXPR", "Train_Set", BL, ["2", "-1", "5"]),
    ("EXPR", "Train_Set", BR, ["6", "3", "-1"]),
    ("AU_Detection_Challenge", "Train_Set", BR, AU_BR),
    # validation video: AU line 3 malformed (11 values)
    ("VA_Estimation_Challenge", "Validation_Set", C, ["0.0,0.1", "0.2,-0.3", "1,-1"]),
    ("EXPR", "Validation_Set", C, ["0", "4", "1"]),
    ("AU_Detection_Challenge", "Validation_Set", C, [*AU_C, ",".join(["0"] * 11)]),
    # EXPR-only validation video with an unknown code
    ("EXPR", "Validation_Set", D, ["6", "-1", "9", "2"]),
    # one video in VA Train_Set and EXPR Validation_Set
    ("VA_Estimation_Challenge", "Train_Set", CONFLICT, ["0.1,0.1", "0.2,0.2"]),
    ("EXPR", "Validation_Set", CONFLICT, ["1", "2"]),
    # labels for a video whose frames are not there
    ("EXPR", "Train_Set", NO_FRAMES, ["1", "2"]),
]
#: frames (1-based) written per video; A's frame 5 is missing, frame 6 has no label line
FRAMES = {A: [1, 2, 3, 4, 6], BL: [1, 2, 3], BR: [1, 2, 3], C: [1, 2, 3], D: [1, 2, 3, 4], CONFLICT: [1, 2]}
TRUNCATED = (BL, 2)
AUDIO_RATE = 16000
WAV_SECONDS = 0.5


def _face(rng: np.random.Generator, size: int = 48) -> Image.Image:
    """A face-like aligned crop: an oval of skin, two eyes and a mouth, with per-frame variation."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.full((size, size, 3), rng.integers(30, 80), dtype=np.float64)
    image[((x - 0.5) / 0.4) ** 2 + ((y - 0.5) / 0.47) ** 2 < 1] = np.array([205, 165, 135]) + rng.integers(-25, 25, 3)
    for cx in (0.35, 0.65):
        image[((x - cx) / 0.07) ** 2 + ((y - 0.4) / 0.035) ** 2 < 1] = 25
    image[((x - 0.5) / 0.15) ** 2 + ((y - 0.72) / (0.02 + 0.05 * rng.random())) ** 2 < 1] = [130, 40, 40]
    image += rng.normal(0, 5, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def write_mp4(path: Path, fps: int, seconds: float, frequency: float) -> None:
    """A tiny mp4: 16x16 MPEG-4 video at ``fps`` and a mono AAC 16 kHz sine of ``frequency`` Hz."""
    import av

    samples = round(seconds * AUDIO_RATE)
    signal = (0.3 * np.sin(2 * np.pi * frequency * np.arange(samples) / AUDIO_RATE)).astype(np.float32)
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 16, 16, "yuv420p"
        audio = container.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), (i * 9) % 256, np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for start in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(signal[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = AUDIO_RATE, start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)


def wav_signal() -> np.ndarray:
    """The WAV track of video C: a ramp, so that every window's position can be checked exactly."""
    return np.linspace(-0.9, 0.9, round(WAV_SECONDS * AUDIO_RATE), dtype=np.float32)


def write_fake_affwild2(root: Path, edition: str = "abaw6", seed: int = 0) -> dict:
    """Write a fake Aff-Wild2 under ``root`` with one edition's annotation folder names.

    Returns:
        What preparing it with all tasks, frame_step 1, must give: ``samples`` {key: (split, class name or
        None)}, ``va`` and ``au`` {key: values or None (unlabelled)}, ``failures`` {source: reason prefix},
        ``rejections`` sorted [(source, reason)], ``annotations`` (the annotation folder, relative), ``shared``
        (keys pairs sharing an audio track), ``no_audio`` (keys without an audio track).
    """
    import soundfile

    rng = np.random.default_rng(seed)
    annotations, expr_folder = EDITIONS[edition]
    sources: dict[tuple[str, str], str] = {}
    for track, split, video, lines in ANNOTATIONS:
        folder_name = expr_folder if track == "EXPR" else track
        folder = root / annotations / folder_name / split
        folder.mkdir(parents=True, exist_ok=True)
        header = HEADERS["EXPR" if track == "EXPR" else track]
        (folder / f"{video}.txt").write_text("\n".join([header, *lines]) + "\n")
        sources[(track, video)] = f"{annotations}/{folder_name}/{split}/{video}.txt"
    old = root / annotations / expr_folder / "Train_Set" / f"{OLD_HEADER}.txt"
    old.write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n1\n2\n")
    # MTL files and a test-set list are distributed too; the adapter must ignore them
    (root / annotations / "MTL_Challenge").mkdir(parents=True)
    (root / annotations / "MTL_Challenge" / "train_set.txt").write_text("image,valence,arousal,expression,aus\n")
    for video, frames in FRAMES.items():
        folder = root / "cropped_aligned" / video
        folder.mkdir(parents=True)
        for k in frames:
            _face(rng).save(folder / f"{k:05d}.jpg", quality=90)
    cut = root / "cropped_aligned" / TRUNCATED[0] / f"{TRUNCATED[1]:05d}.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 3])
    (root / "videos").mkdir()
    write_mp4(root / "videos" / f"{A}.mp4", fps=30, seconds=1.0, frequency=440.0)
    write_mp4(root / "videos" / "2-24-640x360.mp4", fps=24, seconds=1.0, frequency=220.0)
    soundfile.write(root / "videos" / f"{C}.wav", wav_signal(), AUDIO_RATE, subtype="FLOAT")

    va_src, expr_src, au_src = "VA_Estimation_Challenge", "EXPR", "AU_Detection_Challenge"
    samples = {
        f"{A}/00001": ("train", "happy"),
        f"{A}/00003": ("train", "other"),
        f"{A}/00004": ("train", "neutral"),
        f"{BL}/00001": ("train", "disgust"),
        f"{BL}/00003": ("train", "sad"),
        f"{BR}/00001": ("train", "surprise"),
        f"{BR}/00002": ("train", "fear"),
        f"{BR}/00003": ("train", None),
        f"{C}/00001": ("test", "neutral"),
        f"{C}/00002": ("test", "happy"),
        f"{C}/00003": ("test", "anger"),
        f"{D}/00001": ("test", "surprise"),
        f"{D}/00004": ("test", "disgust"),
    }
    au = {key: None for key in samples}
    au.update(
        {
            f"{A}/00001": tuple(float(v) for v in AU_A1.split(",")),
            f"{A}/00004": (0.0,) * 12,
            **{f"{BR}/{k:05d}": tuple(float(v) for v in AU_BR[k - 1].split(",")) for k in (1, 2, 3)},
            **{f"{C}/{k:05d}": tuple(float(v) for v in AU_C[k - 1].split(",")) for k in (1, 2)},
        }
    )
    va = {key: None for key in samples}
    va.update(
        {
            f"{A}/00001": (0.5, 0.25),
            f"{A}/00004": (-0.3, 0.7),
            f"{BL}/00001": (0.1, 0.2),
            f"{BL}/00003": (-0.5, -0.6),
            f"{C}/00001": (0.0, 0.1),
            f"{C}/00002": (0.2, -0.3),
            f"{C}/00003": (1.0, -1.0),
        }
    )
    rejections = [
        *[(f"{sources[(t, A)]}:6", "label line without a frame image") for t in (va_src, expr_src, au_src)],
        (f"{sources[(au_src, C)]}:4", "malformed annotation line"),
        (f"{sources[(expr_src, D)]}:4", "unknown expression code 9"),
        (sources[(va_src, CONFLICT)], "video in both Train_Set and Validation_Set"),
        (sources[(expr_src, CONFLICT)], "video in both Train_Set and Validation_Set"),
        (sources[(expr_src, NO_FRAMES)], "no frame folder for the video"),
        (f"{annotations}/{expr_folder}/Train_Set/{OLD_HEADER}.txt:1", "unexpected header line"),
    ]
    return {
        "samples": samples,
        "va": va,
        "au": au,
        "failures": {f"cropped_aligned/{TRUNCATED[0]}/{TRUNCATED[1]:05d}.jpg": "unreadable image"},
        "rejections": sorted(rejections),
        "annotations": annotations,
        "shared": [(f"{BL}/00001", f"{BR}/00001"), (f"{BL}/00003", f"{BR}/00003")],
        "no_audio": [f"{D}/00001", f"{D}/00004"],
    }
