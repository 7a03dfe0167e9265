"""Format-faithful fake DEAP (preprocessed Python release): ``data_preprocessed_python/sNN.dat`` and its traps.

Each file is a Python-2 protocol-2 pickle (``tests/data/python2_pickle.py``: Python-2 ``str`` keys and array
buffers, ``numpy.core.multiarray._reconstruct``) of ``{'data': float64 (trials, 40, samples), 'labels': float64
(trials, 4)}``, as the release has it, with fewer trials (4) and shorter trials: :data:`TRIAL_SECONDS` = the 3-s
baseline + 10 s at 128 Hz (1,664 samples instead of 8,064), which the adapter's ``trial_seconds`` option allows.
The signals are plausible shapes (noise for EEG, EOG and EMG; a drifting skin response; a 0.25-Hz breath of
amplitude 0.5; a 1.2-Hz pulse; a slowly warming skin temperature), deterministic per file.

Traps: a NaN skin response in one window, a flat temperature over a trial, a respiration clipped at ±1 in one
window, a rating of 0, a file whose trials stop after 10 s (truncated), a file at 256 Hz, a file with 39
channels, a file whose labels have 3 columns, a cut-off file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.python2_pickle import write_python2_pickle

RATE = 128
BASELINE_SECONDS, TRIAL_SECONDS = 3.0, 13.0
WINDOW_SECONDS = STRIDE_SECONDS = 5.0
SAMPLES = int(TRIAL_SECONDS * RATE)
TRIALS = 4
#: Peripheral channel indices in the file, in the adapter's default order.
GSR, RSP, TEMP = 36, 37, 39
#: Respiration clip limits the tests configure (the fake's breathing stays within ±0.5 elsewhere).
RSP_LIMITS = (-1.0, 1.0)
FOLDER = "data_preprocessed_python"

#: Ratings (valence, arousal, dominance, liking) of every trial of the readable files.
RATINGS: dict[str, list[tuple[float, float, float, float]]] = {
    "s01": [(7.0, 2.0, 5.0, 9.0), (1.0, 9.0, 3.0, 1.0), (5.0, 5.0, 5.0, 5.0), (8.5, 6.2, 1.0, 4.9)],
    "s02": [(3.0, 7.0, 6.0, 2.0), (6.0, 4.0, 8.0, 7.5), (2.5, 3.5, 4.5, 5.5), (9.0, 1.0, 9.0, 8.0)],
    "s03": [(4.0, 6.0, 2.0, 3.0), (0.0, 5.0, 5.0, 5.0), (7.5, 8.0, 6.5, 6.0), (5.5, 2.5, 3.0, 4.0)],
    "s04": [(6.5, 7.5, 5.5, 6.5), (3.5, 2.0, 4.0, 2.5), (8.0, 5.5, 7.0, 9.0), (1.5, 4.5, 2.0, 1.0)],
    "s05": [(5.0, 6.0, 5.0, 5.0), (4.0, 3.0, 6.0, 5.0), (6.0, 7.0, 4.0, 5.0), (5.0, 5.0, 5.0, 5.0)],
}
#: Trials (1-based) rejected while listing, and why.
REJECTED_TRIALS = {("s03", 2): "valence rating outside 1-9"}
#: Whole files rejected while listing.
REJECTED_FILES = {
    "s06": "data array of shape (4, 39, 1664), not (trials, 40, samples)",
    "s07": "unreadable pickle",
    "s08": "labels array of shape (4, 3), not (trials, 4)",
}
#: Windows that fail when loaded (key → reason), with the clip limit on ``rsp`` configured.
FAILED_WINDOWS: dict[str, str] = {
    "s02/t02/w01": "non-finite signal",
    "s02/t03/w00": "flat signal",
    "s02/t03/w01": "flat signal",
    "s03/t01/w00": "clipped signal",
    **{f"s04/t{t:02d}/w01": "truncated signal" for t in range(1, TRIALS + 1)},
    **{f"s05/t{t:02d}/w{w:02d}": "sampling rate other than declared" for t in range(1, TRIALS + 1) for w in (0, 1)},
}


def _signals(rng: np.random.Generator, rate: int, samples: int) -> np.ndarray:
    """float64 (40, samples) of one trial."""
    t = np.arange(samples) / rate
    data = rng.normal(0.0, 10.0, size=(40, samples))  # EEG (µV-like)
    data[32:34] = rng.normal(0.0, 20.0, size=(2, samples))  # hEOG, vEOG
    data[34:36] = rng.normal(0.0, 5.0, size=(2, samples))  # zEMG, tEMG
    data[GSR] = 2000.0 + 15.0 * t + 40.0 * np.exp(-(((t - rng.uniform(4, 10)) / 1.5) ** 2))
    data[RSP] = 0.5 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, np.pi)) + rng.normal(0, 0.01, samples)
    data[38] = 100.0 * np.sin(2 * np.pi * 1.2 * t) + rng.normal(0, 1.0, samples)  # plethysmograph
    data[TEMP] = 32.0 + 0.01 * t + rng.normal(0, 0.002, samples)
    return data


def deap_file(subject: str, rate: int = RATE, samples: int = SAMPLES) -> dict[str, np.ndarray]:
    """The content of one file before its traps: ``data`` float64 (4, 40, samples), ``labels`` (4, 4)."""
    number = int(subject[1:])
    rng = np.random.default_rng(number)
    data = np.stack([_signals(rng, rate, samples) for _ in range(TRIALS)])
    ratings = RATINGS.get(subject, RATINGS["s01"])
    return {"data": data, "labels": np.asarray(ratings, dtype=np.float64)}


def window_bounds(window: int) -> slice:
    """Samples of window ``window`` (0-based) within a trial at 128 Hz."""
    start = int((BASELINE_SECONDS + window * STRIDE_SECONDS) * RATE)
    return slice(start, start + int(WINDOW_SECONDS * RATE))


def write_fake_deap(root: Path) -> dict:
    """Write the fake release under ``root/data_preprocessed_python``.

    Returns:
        ``arrays`` {subject: the written ``data`` array} of the readable files, ``ratings``, ``listed`` (every
        listed window key), ``failed`` {key: reason}, ``rejections`` {source: reason}.
    """
    folder = root / FOLDER
    arrays = {}
    for subject in ("s01", "s02", "s03", "s04"):
        content = deap_file(subject)
        data = content["data"]
        if subject == "s02":
            data[1, GSR, window_bounds(1)] = np.nan  # trial 2, second window
            data[2, TEMP, :] = 31.5  # trial 3: a detached temperature sensor
        if subject == "s03":
            t = np.arange(SAMPLES) / RATE
            clipped = np.clip(1.5 * np.sin(2 * np.pi * 0.25 * t), *RSP_LIMITS)
            data[0, RSP, window_bounds(0)] = clipped[window_bounds(0)]  # trial 1, first window
        if subject == "s04":
            content["data"] = data = np.ascontiguousarray(data[:, :, : 10 * RATE])  # every trial stops after 10 s
        arrays[subject] = data
        write_python2_pickle(folder / f"{subject}.dat", content)
    arrays["s05"] = deap_file("s05", rate=2 * RATE, samples=2 * SAMPLES)["data"]  # recorded at 256 Hz
    write_python2_pickle(folder / "s05.dat", {"data": arrays["s05"], "labels": np.asarray(RATINGS["s05"])})
    wrong = deap_file("s06")
    write_python2_pickle(
        folder / "s06.dat", {"data": np.ascontiguousarray(wrong["data"][:, :39]), "labels": wrong["labels"]}
    )
    cut = folder / "s07.dat"
    write_python2_pickle(cut, deap_file("s07"))
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 3])
    narrow = deap_file("s08")
    write_python2_pickle(folder / "s08.dat", {"data": narrow["data"], "labels": narrow["labels"][:, :3].copy()})
    # things the adapter must ignore
    (folder / "README.txt").write_text("DEAP preprocessed data (Python)\n")
    (root / "participant_ratings.csv").write_text("Participant_id,Trial,Experiment_id,Valence\n")

    listed = [
        f"{subject}/t{trial:02d}/w{window:02d}"
        for subject in ("s01", "s02", "s03", "s04", "s05")
        for trial in range(1, TRIALS + 1)
        if (subject, trial) not in REJECTED_TRIALS
        for window in (0, 1)
    ]
    rejections = {f"{FOLDER}/{subject}.dat": reason for subject, reason in REJECTED_FILES.items()}
    rejections.update({f"{FOLDER}/{s}.dat:{t}": reason for (s, t), reason in REJECTED_TRIALS.items()})
    return {
        "arrays": arrays,
        "ratings": RATINGS,
        "listed": listed,
        "failed": dict(FAILED_WINDOWS),
        "rejections": rejections,
    }
