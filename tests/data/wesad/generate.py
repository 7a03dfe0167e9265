"""Format-faithful fake WESAD: ``WESAD/SX/SX.pkl`` per subject, shorter recordings, and the traps.

Each file is a Python-2 protocol-2 pickle (``tests/data/python2_pickle.py``) of the distributed dict:
``subject`` ``"SX"``, ``label`` int32 (N,) at 700 Hz, ``signal`` → ``chest`` (``ACC`` (N, 3), ``ECG``, ``EDA``,
``EMG``, ``Resp``, ``Temp`` (N, 1), float64 at 700 Hz) and ``wrist`` (``ACC`` (·, 3) at 32 Hz, ``BVP`` at 64 Hz,
``EDA`` and ``TEMP`` at 4 Hz). Recordings last :data:`SECONDS` = 110 s instead of about 100 minutes, with the
study's conditions in a short :data:`TIMELINE`. The ECG is a 1.2-Hz train of narrow pulses (72 beats/min), the
chest respiration a 0.3-Hz sine, skin conductance and temperature slow ramps, the wrist conductance a ramp.

Windows of 10 s every 5 s (the tests' settings) give 21 windows per recording; with ``min_label_share`` 1 the
labelled ones are w03-w06 (baseline), w09-w12 (stress) and w17-w18 (amusement).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.python2_pickle import write_python2_pickle

LABEL_RATE = 700
SECONDS = 110.0
WINDOW_SECONDS, STRIDE_SECONDS = 10.0, 5.0
#: (start s, end s, code) of the label track.
TIMELINE: tuple[tuple[float, float, int], ...] = (
    (0, 12, 0),
    (12, 41, 1),
    (41, 44, 0),
    (44, 71, 2),
    (71, 84, 6),
    (84, 101, 3),
    (101, 110, 4),
)
WRIST_RATES = {"ACC": 32, "BVP": 64, "EDA": 4, "TEMP": 4}
HEART_HZ = 1.2
RSP_HZ = 0.3
#: ECG clip limits the tests configure (the fake's pulses reach 1.0 elsewhere).
ECG_LIMITS = (-1.5, 1.5)
#: Channels the tests store: four chest signals and two wrist ones (resampled from 4 and 64 Hz).
CHANNELS = ["ecg", "eda", "rsp", "temp", "wrist_eda", "wrist_bvp"]

#: Windows labelled with min_label_share 1 (index → class), the same in every usable recording.
LABELLED = {3: "baseline", 4: "baseline", 5: "baseline", 6: "baseline", 9: "stress", 10: "stress", 11: "stress"}
LABELLED |= {12: "stress", 17: "amusement", 18: "amusement"}
#: Runs of windows rejected while listing in every usable recording: (first, last, reason).
REJECTED_RUNS = [
    (0, 1, "transient (code 0)"),
    (2, 2, "no condition covers the required share"),
    (7, 8, "no condition covers the required share"),
    (13, 13, "no condition covers the required share"),
    (14, 15, "code to ignore (5, 6 or 7)"),
    (16, 16, "no condition covers the required share"),
    (19, 19, "no condition covers the required share"),
    (20, 20, "condition not used: meditation"),
]


def _timeline_codes() -> np.ndarray:
    codes = np.zeros(int(SECONDS * LABEL_RATE), dtype=np.int32)
    for start, end, code in TIMELINE:
        codes[int(start * LABEL_RATE) : int(end * LABEL_RATE)] = code
    return codes


def ecg(t: np.ndarray) -> np.ndarray:
    """A pulse train at 1.2 Hz: narrow positive peaks of 1.0 on a small baseline wander."""
    phase = (t * HEART_HZ) % 1.0
    return np.exp(-(((phase - 0.5) / 0.012) ** 2)) - 0.1 * np.exp(-(((phase - 0.53) / 0.02) ** 2)) + 0.05 * np.sin(t)


def respiration(t: np.ndarray) -> np.ndarray:
    """Chest respiration in % (a 0.3-Hz sine of amplitude 5)."""
    return 5.0 * np.sin(2 * np.pi * RSP_HZ * t)


def wrist_eda(t: np.ndarray) -> np.ndarray:
    """Wrist skin conductance in µS (a ramp from 1.0)."""
    return 1.0 + 0.01 * t


def _recording(subject: str) -> dict:
    rng = np.random.default_rng(int(subject[1:]))
    t = np.arange(int(SECONDS * LABEL_RATE)) / LABEL_RATE
    chest = {
        "ACC": rng.normal(0.0, 0.02, size=(t.size, 3)) + [0.9, 0.0, -0.3],
        "ECG": ecg(t)[:, None],
        "EDA": (5.0 + 0.02 * t + rng.normal(0, 0.001, t.size))[:, None],
        "EMG": rng.normal(0.0, 0.01, size=(t.size, 1)),
        "Resp": respiration(t)[:, None],
        "Temp": (33.0 + 0.005 * t + rng.normal(0, 0.002, t.size))[:, None],
    }
    wrist = {}
    for key, rate in WRIST_RATES.items():
        w = np.arange(int(SECONDS * rate)) / rate
        if key == "ACC":
            wrist[key] = rng.normal(0.0, 2.0, size=(w.size, 3)) + [60.0, 10.0, 5.0]
        elif key == "BVP":
            wrist[key] = (40.0 * np.sin(2 * np.pi * HEART_HZ * w))[:, None]
        elif key == "EDA":
            wrist[key] = wrist_eda(w)[:, None]
        else:
            wrist[key] = (32.0 + 0.01 * w)[:, None]
    return {"signal": {"chest": chest, "wrist": wrist}, "label": _timeline_codes(), "subject": subject}


def _span(first: int, last: int) -> str:
    start, end = first * STRIDE_SECONDS, last * STRIDE_SECONDS + WINDOW_SECONDS
    count = last - first + 1
    return f"{start:.2f}-{end:.2f}s ({count} window{'s' if count > 1 else ''})"


def write_fake_wesad(root: Path) -> dict:
    """Write the fake data set under ``root/WESAD``.

    Returns:
        ``labels`` {key: class name} of every labelled (listed) window, ``failed`` {key: reason} of listed windows
        that fail when loaded (with the ECG clip limits configured), ``rejections`` {source: reason}.
    """
    base = root / "WESAD"
    labels: dict[str, str] = {}
    rejections: dict[str, str] = {}
    failed: dict[str, str] = {}
    for subject in ("S2", "S3", "S4", "S5", "S6"):
        content = _recording(subject)
        chest = content["signal"]["chest"]
        runs = list(REJECTED_RUNS)
        listed = dict(LABELLED)
        if subject == "S3":
            content["label"][50 * LABEL_RATE : 52 * LABEL_RATE] = 9  # a code the readme does not define
            runs.insert(3, (9, 10, "unknown label code"))
            del listed[9], listed[10]
            chest["EDA"][20 * LABEL_RATE : 22 * LABEL_RATE] = np.nan  # electrode contact lost
            failed.update({"S3/w00003": "non-finite signal", "S3/w00004": "non-finite signal"})
        if subject == "S4":
            t = np.arange(46 * LABEL_RATE, 49 * LABEL_RATE) / LABEL_RATE
            chest["ECG"][46 * LABEL_RATE : 49 * LABEL_RATE, 0] = np.clip(
                3.0 * np.sin(2 * np.pi * HEART_HZ * t), *ECG_LIMITS
            )
            chest["Temp"][84 * LABEL_RATE : 101 * LABEL_RATE] = 33.2  # sensor off the skin: constant
            failed.update({"S4/w00009": "clipped signal", "S4/w00017": "flat signal", "S4/w00018": "flat signal"})
        if subject == "S5":
            chest["Resp"] = np.ascontiguousarray(chest["Resp"][: 62 * LABEL_RATE])  # the belt stopped after 62 s
            failed.update({f"S5/w{i:05d}": "truncated signal" for i in (11, 12, 17, 18)})
        if subject == "S6":
            w = np.arange(int(SECONDS * 128)) / 128
            content["signal"]["wrist"]["BVP"] = (40.0 * np.sin(2 * np.pi * HEART_HZ * w))[:, None]  # 128 Hz, not 64
            failed.update({f"S6/w{i:05d}": "sampling rate other than declared" for i in LABELLED})
        source = f"WESAD/{subject}/{subject}.pkl"
        write_python2_pickle(base / subject / f"{subject}.pkl", content)
        (base / subject / f"{subject}_readme.txt").write_text("Age: 27\n")
        labels.update({f"{subject}/w{index:05d}": name for index, name in listed.items()})
        rejections.update({f"{source}:{_span(first, last)}": reason for first, last, reason in runs})
    # whole files rejected while listing
    shaped = _recording("S7")
    shaped["signal"]["chest"]["ECG"] = np.ascontiguousarray(shaped["signal"]["chest"]["ECG"].T)  # (1, N)
    write_python2_pickle(base / "S7" / "S7.pkl", shaped)
    rejections["WESAD/S7/S7.pkl"] = "chest/ECG array of shape (1, 77000), not (samples, 1)"
    cut = base / "S8" / "S8.pkl"
    write_python2_pickle(cut, _recording("S8"))
    cut.write_bytes(cut.read_bytes()[:5000])
    rejections["WESAD/S8/S8.pkl"] = "unreadable pickle"
    write_python2_pickle(base / "S9" / "S9.pkl", {"signal": {}, "label": np.zeros(700, np.int32), "subject": "S10"})
    rejections["WESAD/S9/S9.pkl"] = "subject in the file disagrees with its folder"
    (base / "S11").mkdir()
    (base / "S11" / "S11_readme.txt").write_text("no pickle here\n")
    rejections["WESAD/S11"] = "subject folder without its pickle"
    (base / "wesad_readme.pdf").write_bytes(b"%PDF-1.4\n")
    return {"labels": labels, "failed": failed, "rejections": rejections}
