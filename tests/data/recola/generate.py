"""Format-faithful fake RECOLA in both layouts: AVEC 2016 gold-standard ARFFs and the original release's CSVs,
WAV audio, ``;``-separated biosignal files, one video, and the traps.

Recordings last :data:`SECONDS` = 6 s (150 frames of 40 ms) instead of 5 minutes; audio is a 16-kHz tone (a
frequency per recording) and physiology is at :data:`PHYSIO_RATE` = 250 Hz (the tests declare both rates; the real
ones are 44.1 kHz and 1 kHz, UNCONFIRMED). The gold standard is a slow sine (valence) and cosine (arousal) of
amplitude 0.5 / 0.4, written with six decimals like AVEC's files.

AVEC 2016 (``write_fake_avec``): ``train_1`` … ``train_4``, ``dev_1``, ``dev_2`` with gold standards, and
``test_1`` with media only. Traps (windows of 25 frames every 5, labelled at the centre frame: 26 per recording):

- ``train_2``: frames 60-79 missing from both ARFFs → its windows labelled at frames 62, 67, 72, 77 are rejected;
- ``dev_2``: two rows of the valence ARFF swapped (frame times out of order) → that file is rejected, ``dev_2`` keeps
  arousal only;
- ``train_3``: its WAV at 8 kHz (declared 16 kHz) → the audio is rejected, its samples keep physiology;
- ``train_4``: ECG NaN over 2.0-2.5 s → 7 windows fail (``non-finite signal``);
- ``dev_1``: EDA constant from 3.5 s → 8 windows fail (``flat signal``);
- ``test_1``: no gold standard (AVEC test labels are not public) → rejected.

RECOLA (``write_fake_recola``): ``P16``, ``P17``, ``P19``, ``P21`` annotated (CSV header ``time;FM1 ;FM2 ;FM3 ;FF1
;FF2 ;FF3``, the raters' values scattered around the gold standard so that their mean is it), and ``P23`` with
media only (rejected).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.fake_av_media import face_frames, tone, write_video, write_wav

SECONDS = 6.0
FRAME_SECONDS = 0.04
FRAMES = round(SECONDS / FRAME_SECONDS)
AUDIO_RATE = 16000
PHYSIO_RATE = 250
WINDOW_FRAMES, HOP_FRAMES = 25, 5
#: Centre-labelled frames of every full-length recording: 12, 17, ..., 137.
LABELLED_FRAMES = list(range(WINDOW_FRAMES // 2, FRAMES - WINDOW_FRAMES + WINDOW_FRAMES // 2 + 1, HOP_FRAMES))
AVEC_LABELLED = ["train_1", "train_2", "train_3", "train_4", "dev_1", "dev_2"]
AVEC_UNLABELLED = ["test_1"]
MISSING_FRAMES = range(60, 80)  # train_2
NAN_SPAN = (2.0, 2.5)  # train_4 ECG
FLAT_FROM = 3.5  # dev_1 EDA
RECOLA_LABELLED = ["P16", "P17", "P19", "P21"]
RECOLA_UNLABELLED = ["P23"]
RATERS = ("FM1", "FM2", "FM3", "FF1", "FF2", "FF3")
RATER_OFFSETS = (0.03, -0.02, 0.01, -0.01, 0.02, -0.03)  # sum 0: the raters' mean is the gold standard


def gold(name: str, dimension: str) -> np.ndarray:
    """float64 (FRAMES,) gold standard of a recording (six decimals, as written)."""
    t = np.arange(FRAMES) * FRAME_SECONDS
    phase = sum(map(ord, name)) % 7
    if dimension == "valence":
        return np.round(0.5 * np.sin(2 * np.pi * t / SECONDS + phase), 6)
    return np.round(0.4 * np.cos(2 * np.pi * t / SECONDS + phase), 6)


def tone_hz(name: str) -> float:
    """The frequency of a recording's audio tone."""
    return 200.0 + 40.0 * (sum(map(ord, name)) % 11)


def ecg(t: np.ndarray) -> np.ndarray:
    """A 1.2-Hz train of narrow pulses on a small wander (mV)."""
    phase = (t * 1.2) % 1.0
    return np.exp(-(((phase - 0.5) / 0.015) ** 2)) + 0.05 * np.sin(t)


def eda(t: np.ndarray, seed: int) -> np.ndarray:
    """Skin conductance in µS: a ramp with sensor noise."""
    return 2.0 + 0.05 * t + np.random.default_rng(seed).normal(0.0, 0.002, t.size)


def _arff(name: str, times: np.ndarray, values: np.ndarray) -> str:
    rows = "".join(f"{name},{time:g},{value:f}\n" for time, value in zip(times, values, strict=True))
    header = "@relation GOLDSTANDARD\n\n@attribute Instance_name string\n@attribute frameTime numeric\n"
    return header + "@attribute GoldStandard numeric\n\n@data\n\n" + rows


def _physio_csv(path: Path, name: str) -> None:
    t = np.arange(round(SECONDS * PHYSIO_RATE)) / PHYSIO_RATE
    ecg_values, eda_values = ecg(t), eda(t, sum(map(ord, name)))
    if name == "train_4":
        ecg_values[(t >= NAN_SPAN[0]) & (t < NAN_SPAN[1])] = np.nan
    if name == "dev_1":
        eda_values[t >= FLAT_FROM] = eda_values[t >= FLAT_FROM][0]
    lines = ["time;EDA;ECG"] + [f"{a:.3f};{b:.6f};{c:.6f}" for a, b, c in zip(t, eda_values, ecg_values, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _audio(path: Path, name: str, rate: int = AUDIO_RATE) -> None:
    write_wav(path, tone(tone_hz(name), SECONDS, rate), rate)


def write_fake_avec(raw: Path, video: bool = True) -> Path:
    """The AVEC 2016 layout under ``raw/AVEC2016`` (see the module docstring); returns ``raw``."""
    base = raw / "AVEC2016"
    times = np.arange(FRAMES) * FRAME_SECONDS
    for name in AVEC_LABELLED:
        for dimension in ("arousal", "valence"):
            values, keep = gold(name, dimension), np.ones(FRAMES, dtype=bool)
            if name == "train_2":
                keep[list(MISSING_FRAMES)] = False
            order = np.flatnonzero(keep)
            if name == "dev_2" and dimension == "valence":
                order[[30, 31]] = order[[31, 30]]
            folder = base / "ratings_gold_standard" / dimension
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.arff").write_text(_arff(name, times[order], values[order]))
    for name in AVEC_LABELLED + AVEC_UNLABELLED:
        _audio(base / "recordings_audio" / f"{name}.wav", name, 8000 if name == "train_3" else AUDIO_RATE)
        _physio_csv(base / "recordings_physio" / f"{name}.csv", name)
    if video:
        write_video(base / "recordings_video" / "train_1.mp4", face_frames(FRAMES, 64, 64, 48), 25, "mp4", "mpeg4")
    return raw


def write_fake_recola(raw: Path) -> Path:
    """The original RECOLA layout under ``raw`` (see the module docstring); returns ``raw``."""
    times = np.arange(FRAMES) * FRAME_SECONDS
    for name in RECOLA_LABELLED:
        for dimension in ("arousal", "valence"):
            values = gold(name, dimension)
            folder = raw / "RECOLA-Annotation" / "emotional_behaviour" / dimension
            folder.mkdir(parents=True, exist_ok=True)
            lines = ["time;" + ";".join(f"{rater} " for rater in RATERS)]
            lines += [
                f"{time:.2f};" + ";".join(f"{value + offset:.6f}" for offset in RATER_OFFSETS)
                for time, value in zip(times, values, strict=True)
            ]
            (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
    for name in RECOLA_LABELLED + RECOLA_UNLABELLED:
        _audio(raw / "RECOLA-Audio-recordings" / f"{name}.wav", name)
        _physio_csv(raw / "RECOLA-Biosignals-recordings" / f"{name}.csv", name)
    return raw
