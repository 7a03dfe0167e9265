"""Format-faithful fake MAHNOB-HCI: ``Sessions/<n>/session.xml``, real BDF files (edfio), a face video, audio, traps.

Each BDF has the release's 47 channels in its order (32 EEG, ``EXG1``-``EXG8``, ``GSR1``, ``GSR2``, ``Erg1``,
``Erg2``, ``Resp``, ``Temp``, ``Status``) at 256 Hz in 1-s data records, 24-bit samples. Analog channels have the
BioSemi physical range ±262,144 (µV for the electrodes; the same range for GSR, respiration and temperature is an
assumption of this fake); ``Status`` spans the whole 24-bit range with constant flag bits above bit 15 (bit 23 set
in one file, so its values are negative) and a 0.1-s trigger pulse at the clip's start (code 1) and end (code 2).
Recordings are shorter than the real ones: :data:`BEFORE` s before the clip (30 s in the release), a clip of
:data:`CLIP_SECONDS` (``cutLenSec``) and :data:`AFTER` s after, so windows of :data:`WINDOW_SECONDS` give two per
session. ``session.xml`` carries the attributes of the real files (``feltArsl``, ``feltCtrl``, ``feltEmo``,
``feltPred``, ``feltVlnc``, ``isStim``, ``mediaFile``, ``cutLenSec``, ...) and ``<subject id>``.

Traps: a session without session.xml, one without a BDF, an implicit-tagging session without self-reports, a rating
of 0, an unknown ``feltEmo`` code, a damaged XML, a cut-to-100-bytes BDF, a BDF without ``Resp``, a BDF whose name
names another participant, a header declaring 512 Hz, samples taken at 512 Hz under a 256-Hz header, a Status
channel without triggers, a clip whose trigger interval disagrees with ``cutLenSec``, a temperature flat over one
window, a GSR clipped at the ADC's range in one window, and a file cut off inside the clip (truncated). BDF samples
are integers, so a NaN cannot be written: the non-finite check has no BDF trap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.fake_av_media import face_frames, tone, write_video, write_wav

RATE = 256
BEFORE, CLIP_SECONDS, AFTER = 3.0, 10.0, 2.0
TOTAL_SECONDS = BEFORE + CLIP_SECONDS + AFTER
WINDOW_SECONDS = STRIDE_SECONDS = 5.0
PHYSICAL = (-262144.0, 262143.0)
STATUS_RANGE = (-8388608.0, 8388607.0)
#: Status flag bits (above the 16 trigger bits) of a normal file and of the file with bit 23 set.
FLAGS, NEGATIVE_FLAGS = 0x110000, 0x910000 - (1 << 24)
EEG = (
    "Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1", "Oz", "Pz",
    "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2", "P4", "P8", "PO4", "O2",
)  # fmt: skip
OTHER = ("EXG1", "EXG2", "EXG3", "EXG4", "EXG5", "EXG6", "EXG7", "EXG8", "GSR1", "GSR2", "Erg1", "Erg2", "Resp", "Temp")
LABELS = (*EEG, *OTHER, "Status")
#: Face video: frames per second, frame count, size; audio rate and tone.
FPS, VIDEO_FRAMES, WIDTH, HEIGHT = 4, int(TOTAL_SECONDS * 4), 192, 144
AUDIO_RATE, AUDIO_HZ = 16000, 440.0
VIDEO_NAME = "P1-Rec1-2009.07.09.17.53.46_C1 trigger _C_Section_{}.avi"
OTHER_CAMERA = "P1-Rec1-2009.07.09.17.53.46_C2 trigger _C_Section_{}.avi"
AUDIO_NAME = "P1-Rec1-2009.07.09.17.53.46_Section_{}.wav"


def bdf_name(session: int, subject: int) -> str:
    """``Part_<P>_S_Trial<T>_emotion.bdf`` (trial = session // 2 within the participant's block of 130)."""
    return f"Part_{subject}_S_Trial{(session % 130) // 2}_emotion.bdf"


#: Usable sessions: folder → (subject, feltVlnc, feltArsl, feltCtrl, feltEmo).
SESSIONS: dict[int, tuple[int, int, int, int, int]] = {
    2: (1, 7, 3, 5, 4),  # joy/happiness
    4: (1, 2, 8, 3, 3),  # fear (temperature flat in the first window)
    6: (1, 5, 5, 5, 0),  # neutral
    132: (2, 1, 9, 1, 1),  # anger
    134: (2, 3, 6, 4, 2),  # disgust (GSR clipped in the second window)
    136: (2, 8, 4, 7, 11),  # amusement: no expression
    262: (3, 4, 7, 6, 6),  # surprise (Status flag bit 23 set: negative values)
    264: (3, 2, 3, 2, 5),  # sadness (file cut off inside the clip)
    266: (3, 9, 1, 9, 12),  # anxiety: no expression
    392: (4, 6, 2, 8, 0),
    394: (4, 5, 8, 2, 4),
    396: (4, 3, 5, 6, 5),
}
#: Listing rejections: source (relative to the raw root) → reason.
REJECTIONS: dict[str, str] = {
    "Sessions/8": "session without session.xml",
    "Sessions/10": "session without BDF",
    f"Sessions/12/{bdf_name(12, 1)}": "sampling rate other than declared",
    f"Sessions/14/{bdf_name(14, 1)}": "sampling rate other than declared",
    f"Sessions/16/{bdf_name(16, 1)}": "missing Status events",
    "Sessions/18/session.xml": "session without emotion self-reports",
    "Sessions/138/session.xml": "rating outside 1-9",
    "Sessions/140/session.xml": "unknown feltEmo code",
    "Sessions/142/session.xml": "unreadable session.xml",
    f"Sessions/144/{bdf_name(144, 2)}": "unreadable BDF",
    f"Sessions/146/{bdf_name(146, 2)}": "BDF without a chosen channel",
    f"Sessions/148/{bdf_name(148, 3)}": "subject in session.xml disagrees with the BDF's name",
    f"Sessions/150/{bdf_name(150, 2)}": "stimulus length disagrees with session.xml",
}
#: Windows that fail when loaded: key → reason.
FAILED: dict[str, str] = {
    "4/w00": "flat signal",
    "134/w01": "clipped signal",
    "264/w01": "truncated signal",
}


def signals(seed: int, rate: int = RATE, seconds: float = TOTAL_SECONDS) -> dict[str, np.ndarray]:
    """Physical values of the 46 analog channels: float64 (seconds × rate,) each, deterministic per seed."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    data = {label: rng.normal(0.0, 20.0, n) for label in EEG}
    beat = np.sin(2 * np.pi * 1.2 * t) ** 31  # sharp peaks at 72 beats per minute
    for k, label in enumerate(("EXG1", "EXG2", "EXG3")):
        data[label] = (800.0 + 100 * k) * beat + rng.normal(0.0, 5.0, n)
    for label in ("EXG4", "EXG5", "EXG6", "EXG7", "EXG8", "Erg1", "Erg2"):
        data[label] = rng.normal(0.0, 50.0, n)
    data["GSR1"] = 5000.0 + 40.0 * t + 300.0 * np.exp(-(((t - rng.uniform(4, 11)) / 1.5) ** 2))
    data["GSR2"] = 4000.0 + 20.0 * t
    data["Resp"] = 2000.0 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, np.pi)) + rng.normal(0, 20.0, n)
    data["Temp"] = 32.0 + 0.05 * t + 0.1 * np.sin(2 * np.pi * 0.1 * t)
    return data


def status(rate: int = RATE, seconds: float = TOTAL_SECONDS, flags: int = FLAGS, triggers: bool = True) -> np.ndarray:
    """The Status channel: flag bits, and code 1 at the clip's start and 2 at its end for 0.1 s each."""
    n = round(seconds * rate)
    values = np.full(n, flags, dtype=np.int64)
    if triggers:
        pulse = round(0.1 * rate)
        start, stop = round(BEFORE * rate), round((BEFORE + CLIP_SECONDS) * rate)
        values[start : start + pulse] |= 1
        values[stop : stop + pulse] |= 2
    return values.astype(np.float64)


def write_bdf(
    path: Path,
    data: dict[str, np.ndarray],
    status_values: np.ndarray,
    rate: float = RATE,
    drop: tuple[str, ...] = (),
) -> None:
    """One BDF with the release's channels (less ``drop``), every channel declared at ``rate`` Hz."""
    import edfio

    path.parent.mkdir(parents=True, exist_ok=True)
    made = []
    for label in LABELS:
        if label in drop:
            continue
        if label == "Status":
            made.append(
                edfio.BdfSignal(
                    status_values, rate, label="Status", physical_dimension="Boolean", physical_range=STATUS_RANGE
                )
            )
        else:
            unit = "uV" if label.startswith(("EXG", "Erg")) or label in EEG else ""
            signal = edfio.BdfSignal(data[label], rate, label=label, physical_dimension=unit, physical_range=PHYSICAL)
            made.append(signal)
    edfio.Bdf(made, data_record_duration=1.0).write(path)


def session_xml(
    path: Path,
    subject: int,
    valence: object = None,
    arousal: object = None,
    control: object = None,
    emotion: object = None,
    cut_seconds: float = CLIP_SECONDS,
    media_file: str = "69.avi",
) -> None:
    """A ``session.xml`` as the release has it (self-report attributes only where given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    reports = ""
    if valence is not None:
        reports = (
            f'feltArsl="{arousal}" feltCtrl="{control}" feltEmo="{emotion}" feltPred="5" feltVlnc="{valence}" '
            'isStim="1" '
        )
    else:
        reports = 'isStim="0" '
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<session sessionId="{path.parent.name}" experimentType="emotion elicitation" {reports}'
        f'mediaFile="{media_file}" cutNum="{int(path.parent.name) % 130}" cutLenSec="{cut_seconds}" vidRate="60" '
        'audioRate="44100">\n'
        f'  <subject id="{subject}" />\n'
        "</session>\n"
    )


def window_samples(window: int, rate: int = RATE) -> slice:
    """Samples of window ``window`` (0-based) of the clip in a file at ``rate``."""
    start = round((BEFORE + window * STRIDE_SECONDS) * rate)
    return slice(start, start + round(WINDOW_SECONDS * rate))


def write_fake_mahnob(root: Path) -> dict:
    """Write the fake release under ``root/Sessions``.

    Returns:
        ``signals`` {session: physical values written}, ``listed`` (window keys), ``failed`` {key: reason},
        ``rejections`` {source: reason}, ``sessions`` (:data:`SESSIONS`), ``media`` {key: (video frame or None,
        audio or False)} for the face-and-audio listing, ``media_rejections`` [(source, reason)].
    """
    base = root / "Sessions"
    written: dict[int, dict[str, np.ndarray]] = {}
    for session, (subject, valence, arousal, control, emotion) in SESSIONS.items():
        folder = base / str(session)
        session_xml(folder / "session.xml", subject, valence, arousal, control, emotion)
        data = signals(session)
        flags = NEGATIVE_FLAGS if session == 262 else FLAGS
        if session == 4:
            data["Temp"][window_samples(0)] = 31.5  # the temperature probe detached during the first window
        if session == 134:
            t = np.arange(data["GSR1"].size) / RATE
            swing = np.clip(400000.0 * np.sin(2 * np.pi * 0.5 * t), *PHYSICAL)  # beyond the ADC's range
            data["GSR1"][window_samples(1)] = swing[window_samples(1)]
        written[session] = data
        path = folder / bdf_name(session, subject)
        write_bdf(path, data, status(flags=flags))
        if session == 264:  # cut off 10.5 s into the recording (7.5 s into the clip): the second trigger is lost
            header = 256 * (len(LABELS) + 1)
            record = len(LABELS) * RATE * 3
            path.write_bytes(path.read_bytes()[: header + 10 * record + record // 2])
    # face video and audio of participant 1 (session 6's video stops after 10 s; session 6 has no audio)
    frames = face_frames(VIDEO_FRAMES, WIDTH, HEIGHT)
    write_video(base / "2" / VIDEO_NAME.format(2), frames, FPS, "avi", "mpeg4")
    (base / "2" / OTHER_CAMERA.format(2)).write_bytes(b"not the frontal camera")
    write_wav(base / "2" / AUDIO_NAME.format(2), tone(AUDIO_HZ, TOTAL_SECONDS, AUDIO_RATE), AUDIO_RATE)
    write_video(base / "6" / VIDEO_NAME.format(6), frames[: 10 * FPS], FPS, "avi", "mpeg4")

    # listing traps
    write_bdf(base / "8" / bdf_name(8, 1), signals(8), status())  # no session.xml
    session_xml(base / "10" / "session.xml", 1, 5, 5, 5, 0)  # no BDF
    session_xml(base / "12" / "session.xml", 1, 5, 5, 5, 0)
    write_bdf(base / "12" / bdf_name(12, 1), signals(12, rate=512), status(rate=512), rate=512)
    session_xml(base / "14" / "session.xml", 1, 5, 5, 5, 0)
    write_bdf(base / "14" / bdf_name(14, 1), signals(14, rate=512), status(rate=512))  # 512-Hz samples, 256 declared
    session_xml(base / "16" / "session.xml", 1, 5, 5, 5, 0)
    write_bdf(base / "16" / bdf_name(16, 1), signals(16), status(triggers=False))
    session_xml(base / "18" / "session.xml", 1)  # implicit tagging: no self-reports
    write_bdf(base / "18" / "Part_1_S_Trial9_emotion.bdf", signals(18), status())
    session_xml(base / "138" / "session.xml", 2, 5, 0, 5, 0)
    session_xml(base / "140" / "session.xml", 2, 5, 5, 5, 9)
    (base / "142").mkdir(parents=True)
    (base / "142" / "session.xml").write_text('<?xml version="1.0"?>\n<session feltArsl="5" feltVlnc=')
    session_xml(base / "144" / "session.xml", 2, 5, 5, 5, 0)
    (base / "144" / bdf_name(144, 2)).write_bytes(b"\xffBIOSEMI" + b" " * 92)
    session_xml(base / "146" / "session.xml", 2, 5, 5, 5, 0)
    write_bdf(base / "146" / bdf_name(146, 2), signals(146), status(), drop=("Resp",))
    session_xml(base / "148" / "session.xml", 2, 5, 5, 5, 0)
    write_bdf(base / "148" / bdf_name(148, 3), signals(148), status())
    session_xml(base / "150" / "session.xml", 2, 5, 5, 5, 0, cut_seconds=13.0)
    write_bdf(base / "150" / bdf_name(150, 2), signals(150), status())
    # things the adapter must ignore
    (base / "2" / "P1-Rec1-All-Data-New_Section_2.tsv").write_text("Timestamp\tGazePointX\tEvent\n")
    (root / "README.txt").write_text("MAHNOB-HCI tagging database\n")

    listed = [f"{session}/w{window:02d}" for session in SESSIONS for window in (0, 1)]
    media = {key: (None, False) for key in listed}
    media["2/w00"] = (round(5.5 * FPS), True)
    media["2/w01"] = (round(10.5 * FPS), True)
    media["6/w00"] = (round(5.5 * FPS), False)  # its video ends at 10 s: no face for the second window
    media_rejections: list[tuple[str, str]] = []
    for session in SESSIONS:
        if session not in (2, 6):
            media_rejections.append((f"Sessions/{session}", "face video missing or unreadable (physiology kept)"))
        if session != 2:
            media_rejections.append((f"Sessions/{session}", "audio file missing (physiology kept)"))
    media_rejections.append(
        (f"Sessions/6/{VIDEO_NAME.format(6)} (1 window)", "windows past the face video's end (physiology kept)")
    )
    return {
        "signals": written,
        "listed": listed,
        "failed": dict(FAILED),
        "rejections": dict(REJECTIONS),
        "sessions": SESSIONS,
        "media": media,
        "media_rejections": sorted(media_rejections),
    }
