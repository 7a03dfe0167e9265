"""Physiology preparation throughput in signal-minutes per second: DEAP-format files of the release's real size through
``FERDataModule.prepare`` (what ``mfer prepare`` runs), then the neurokit2 feature side cache
(``build_physio_feature_cache``, what ``mfer physio-features`` runs), with N worker processes.

Each participant's file is written as the release has it (``data_preprocessed_python/sNN.dat``: a Python-2
protocol-2 pickle, read with latin-1 decoding, of ``data`` float64 (40 trials, 40 channels, 8,064 samples at 128 Hz)
and ``labels`` float64 (40, 4); 103 MB each) with plausible signals: EEG as 1/f-like noise with an alpha rhythm,
eye movements and blinks on the EOG, EMG bursts, a skin conductance level in µS with skin conductance responses,
a breathing belt whose rate drifts between 12 and 20 breaths a minute, a pulse wave at 60-85 beats a minute and a
slowly drifting skin temperature. Writing them is not timed.

    python benchmarks/preparation_physio_throughput.py --subjects 2 --workers 0 1 2

**Signal-minutes** are minutes of recording covered by the prepared windows (windows × window length, whatever the
channel count; the DEAP config's 10-s windows every 10 s give 6 a trial, 240 a participant, 40 signal-minutes).
The preparation's time covers everything ``prepare`` does: listing (unpickling every file once), loading every
window (each process unpickles each file it touches once), checking, resampling and writing the cache. Conditions:
the DEAP config's eight peripheral channels, and all 40 channels (``include_eeg``). Features: the side cache of the
peripheral cache, once with DEAP's channel names (only ``rsp`` is a channel the extractor knows: ``gsr`` is not named
``eda`` because DEAP's unit is not confirmed) and once with the GSR (channel 37, index 36) named ``eda`` (the
written signal is in µS), so that the EDA features are computed too.

``--workers``: 0 and 1 run in this process (the package's builders treat both so); more start worker processes,
whose start-up (importing torch, seconds on two cores) is inside the figure, as it is for users. Every run reads its
own copy of the raw files, so no in-process cache of an earlier run helps it (the copies are in the OS page cache,
as freshly written files are). neurokit2 is imported before the runs, so in-process feature runs show the steady
rate (worker processes import it themselves, inside their figure). Prints one JSON object per run and a Markdown
table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the Python-2 pickle writer of the fakes

from multimodal_fer.datamodules import FERDataModule  # noqa: E402
from multimodal_fer.datasets import DEAP  # noqa: E402
from multimodal_fer.datasets.deap import DEAP_CHANNEL_TABLE, DEAP_PERIPHERAL_CHANNELS  # noqa: E402
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing  # noqa: E402
from multimodal_fer.preprocessing.physio_feature_cache import build_physio_feature_cache  # noqa: E402

from data.python2_pickle import write_python2_pickle  # noqa: E402

RATE = 128
TRIALS, CHANNELS, SAMPLES = 40, 40, 8064
WINDOW_SECONDS = 10.0
HEOG, VEOG, EMG_Z, EMG_T, GSR, RSP, PPG, TEMP = range(32, 40)


def _trial(rng: np.random.Generator) -> np.ndarray:
    """float64 (40, 8064): one 63-s trial's channels."""
    t = np.arange(SAMPLES) / RATE
    data = np.empty((CHANNELS, SAMPLES))
    white = rng.normal(0.0, 1.0, size=(32, SAMPLES))
    alpha = np.sin(2 * np.pi * rng.uniform(8.5, 11.5, size=(32, 1)) * t + rng.uniform(0, 2 * np.pi, size=(32, 1)))
    data[:32] = 6.0 * lfilter([1.0], [1.0, -0.9], white, axis=1) + rng.uniform(2, 8, size=(32, 1)) * alpha  # µV
    drift = np.cumsum(rng.normal(0.0, 1.0, size=(2, SAMPLES)), axis=1)
    data[HEOG : VEOG + 1] = 40.0 * (drift - drift.mean(axis=1, keepdims=True)) / np.sqrt(SAMPLES)
    for onset in rng.uniform(0, 63, size=int(rng.integers(8, 20))):  # blinks on the vertical EOG
        data[VEOG] += 150.0 * np.exp(-(((t - onset) / 0.08) ** 2))
    bursts = 1.0 + 4.0 * (np.sin(2 * np.pi * rng.uniform(0.05, 0.2, size=(2, 1)) * t) > 0.6)
    data[EMG_Z : EMG_T + 1] = rng.normal(0.0, 3.0, size=(2, SAMPLES)) * bursts
    conductance = rng.uniform(2.0, 8.0) + rng.uniform(-0.5, 0.5) * t / 63.0  # µS, tonic
    for onset in rng.uniform(0, 60, size=int(rng.integers(3, 9))):  # phasic responses: 1-2 s rise, slower decay
        lag = np.clip(t - onset, 0.0, None)
        conductance = conductance + rng.uniform(0.1, 0.6) * (1 - np.exp(-lag / 0.75)) * np.exp(-lag / 4.0)
    data[GSR] = conductance + rng.normal(0.0, 0.005, SAMPLES)
    breath_rate = rng.uniform(0.2, 0.33) + 0.03 * np.sin(2 * np.pi * t / rng.uniform(20, 40))  # Hz
    data[RSP] = rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * np.cumsum(breath_rate) / RATE) + rng.normal(0, 0.02, SAMPLES)
    phase = 2 * np.pi * np.cumsum(rng.uniform(1.0, 1.4) + 0.05 * np.sin(2 * np.pi * 0.1 * t)) / RATE
    data[PPG] = 80.0 * (np.sin(phase) + 0.4 * np.sin(2 * phase + 1.0)) + rng.normal(0, 1.0, SAMPLES)
    data[TEMP] = rng.uniform(30.5, 34.0) + 0.3 * t / 63.0 + rng.normal(0, 0.003, SAMPLES)
    return data


def write_deap(root: Path, subjects: int, seed: int = 0) -> float:
    """``subjects`` files of the release's size under ``root/data_preprocessed_python``; returns the MB written."""
    rng = np.random.default_rng(seed)
    folder = root / "data_preprocessed_python"
    total = 0
    for number in range(1, subjects + 1):
        data = np.stack([_trial(rng) for _ in range(TRIALS)])
        labels = np.round(rng.uniform(1.0, 9.0, size=(TRIALS, 4)), 2)
        path = folder / f"s{number:02d}.dat"
        write_python2_pickle(path, {"labels": labels, "data": data})
        total += path.stat().st_size
    return total / 1e6


def _datamodule(adapter: DEAP, raw: Path, root: Path, workers: int) -> FERDataModule:
    return FERDataModule(
        dataset=adapter,
        raw_root=str(raw),
        root=str(root),
        modalities=["physio"],
        preprocessing=MediaPreprocessing(physio_sample_rate=RATE),
        preparation_workers=workers,
        num_workers=0,
    )


def measure_prepare(name: str, adapter: DEAP, raw: Path, root: Path, workers: int) -> tuple[dict, FERDataModule]:
    """Prepare a cache from scratch; signal-minutes per second."""
    datamodule = _datamodule(adapter, raw, root, workers)
    started = time.perf_counter()
    reader = datamodule.prepare()
    seconds = time.perf_counter() - started
    summary = datamodule.summary()
    usable = int(summary.get("usable", reader.usable.size))
    minutes = usable * adapter.window_seconds / 60.0
    result = {
        "stage": "prepare",
        "condition": name,
        "channels": len(adapter.physio_layout().channels),
        "workers": workers,
        "windows": reader.num_samples,
        "usable": usable,
        "failures": summary.get("failures"),
        "signal_minutes": round(minutes, 1),
        "seconds": round(seconds, 2),
        "signal_minutes_per_second": round(minutes / seconds, 1),
    }
    return result, datamodule


def measure_features(name: str, datamodule: FERDataModule, workers: int) -> dict:
    """Build the feature side cache of a prepared cache from scratch; signal-minutes per second."""
    reader = datamodule.prepare(check_raw_files=False)
    started = time.perf_counter()
    side = build_physio_feature_cache(reader, overwrite=True, num_workers=workers)
    seconds = time.perf_counter() - started
    minutes = reader.num_samples * datamodule.adapter.window_seconds / 60.0
    valid = {feature: entry["valid"] for feature, entry in side.manifest["summary"].items()}
    return {
        "stage": "features",
        "condition": name,
        "channels": len(datamodule.adapter.physio_layout().channels),
        "workers": workers,
        "windows": reader.num_samples,
        "valid": valid,
        "signal_minutes": round(minutes, 1),
        "seconds": round(seconds, 2),
        "signal_minutes_per_second": round(minutes / seconds, 1),
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=2, help="participant files of 40 trials each")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts (0, 1: in-process)")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mfer_physio_bench_"))
    results = []
    try:
        started = time.perf_counter()
        megabytes = write_deap(work / "raw", options.subjects)
        print(f"Wrote {options.subjects} DEAP files ({megabytes:.0f} MB) in {time.perf_counter() - started:.0f} s")
        peripheral = DEAP(window_seconds=WINDOW_SECONDS, stride_seconds=WINDOW_SECONDS)
        everything = DEAP(window_seconds=WINDOW_SECONDS, stride_seconds=WINDOW_SECONDS, include_eeg=True)
        table = {name: index for name, index in DEAP_CHANNEL_TABLE.items() if name != "gsr"} | {"eda": GSR}
        named_eda = DEAP(
            channels=[("eda" if name == "gsr" else name) for name in DEAP_PERIPHERAL_CHANNELS],
            channel_table=table,
            window_seconds=WINDOW_SECONDS,
            stride_seconds=WINDOW_SECONDS,
        )
        eda_cache = _datamodule(named_eda, work / "raw", work / "eda_cache", 0)
        eda_cache.prepare()  # not timed: the cache the EDA-named features are computed on
        import neurokit2  # noqa: F401  (not timed: in-process runs then show the steady rate, not a one-off import)

        for workers in options.workers:
            run = len(results)
            raw = work / f"raw-{run}"
            shutil.copytree(work / "raw", raw)  # fresh paths: no in-process file cache of an earlier run helps
            conditions = (("DEAP config: 8 peripheral channels", peripheral), ("all 40 channels (EEG too)", everything))
            prepared = {}
            for index, (name, adapter) in enumerate(conditions):
                result, prepared[index] = measure_prepare(name, adapter, raw, work / f"cache-{run}-{index}", workers)
                results.append(result)
                print(json.dumps(result), flush=True)
            for name, datamodule in (
                ("peripheral, DEAP names (rsp featurised)", prepared[0]),
                ("peripheral, GSR named eda (eda + rsp featurised)", eda_cache),
            ):
                result = measure_features(name, datamodule, workers)
                results.append(result)
                print(json.dumps(result), flush=True)
            shutil.rmtree(raw, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    print(f"\nCommit {_commit()}; machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; ")
    print(f"load average at the end {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}\n")
    print("| stage | condition | channels | workers | windows | signal-minutes | seconds | signal-minutes/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        workers = f"{r['workers']} (in-process)" if r["workers"] <= 1 else str(r["workers"])
        print(
            f"| {r['stage']} | {r['condition']} | {r['channels']} | {workers} | {r['windows']} | {r['signal_minutes']} "
            f"| {r['seconds']} | {r['signal_minutes_per_second']} |"
        )


if __name__ == "__main__":
    main()
