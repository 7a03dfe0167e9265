"""Checks every data set adapter's tests share: prepare fake raw files, compare with what was expected,
interrupt a build with SIGKILL and resume it, and fit through the data set's config."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from multimodal_fer.datamodules.base import FERDataModule
from multimodal_fer.datasets.base import DatasetAdapter
from multimodal_fer.preprocessing.dataset_cache import build_dataset_cache, cache_settings

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

#: Files of a finished cache that must be byte-identical between an interrupted-then-resumed and a straight build.
_COMPARED = ("failures.jsonl", "samples.jsonl", "summary.json")


def tiny_datamodule(
    adapter: DatasetAdapter,
    raw: Path,
    root: Path,
    split: Any = None,
    preprocessing: Any = None,
    **datamodule_options: Any,
) -> FERDataModule:
    """A data module over fake raw files, sized for tests: 32-px faces, everything in this process, batches of 4.

    Args:
        adapter: the data set.
        raw: its fake raw files.
        root: the cache folder.
        split: split protocol (None: the data set's default).
        preprocessing: media settings (None: 32-px faces, 1-s audio).
        **datamodule_options: other :class:`FERDataModule` arguments.
    """
    from multimodal_fer.preprocessing.media_processor import MediaPreprocessing

    return FERDataModule(
        dataset=adapter,
        raw_root=str(raw),
        root=str(root),
        split=split,
        preprocessing=preprocessing or MediaPreprocessing(image_size=32, audio_seconds=1.0),
        preparation_workers=0,
        num_workers=0,
        batch_size=4,
        **datamodule_options,
    )


def dominant_hz(audio: np.ndarray, rate: int) -> float:
    """The strongest frequency of a signal (Hann-windowed FFT), to tell which file a cached audio came from."""
    signal = np.asarray(audio, dtype=np.float64).reshape(-1)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    return float(np.fft.rfftfreq(signal.size, 1.0 / rate)[int(np.argmax(spectrum))])


def cache_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every array, of the failure, sample and summary files, and the manifest's fingerprint."""
    manifest = json.loads((root / "manifest.json").read_text())
    digest = dict(manifest["sha256"])
    for name in _COMPARED:
        digest[name] = hashlib.sha256((root / name).read_bytes()).hexdigest()
    digest["fingerprint"] = manifest["fingerprint"]
    digest["failed_indices"] = json.dumps(manifest.get("failed_indices", []))
    return digest


def prepared(datamodule: FERDataModule) -> dict[str, Any]:
    """Prepare and set up a data module; return what a test compares with its fake data's expectations.

    Returns:
        ``samples`` {key: (official split or None, class name or None)}, ``failures`` {source: reason},
        ``rejected`` (count of listing rejections), ``summary``, ``splits`` {protocol split: keys} and the
        usable ``au``/``va`` by key.
    """
    reader = datamodule.prepare()
    datamodule.setup()
    records = datamodule.sample_records()
    usable = set(reader.usable.tolist())
    expr = np.asarray(reader.array("expr"))
    names = datamodule.label_space.expressions
    samples = {
        records[i]["key"]: (records[i]["split"], names[expr[i]] if expr[i] >= 0 else None)
        for i in range(len(records))
        if i in usable
    }
    failures_path = reader.root / "failures.jsonl"
    failures = [json.loads(line) for line in failures_path.read_text().splitlines() if line.strip()]
    by_key = {records[i]["key"]: i for i in range(len(records))}
    result = {
        "samples": samples,
        "failures": {f["source"]: f["reason"] for f in failures if f["index"] is not None},
        "rejected": sum(1 for f in failures if f["index"] is None),
        "rejections": [f for f in failures if f["index"] is None],
        "summary": json.loads((reader.root / "summary.json").read_text()),
        "splits": {name: sorted(records[i]["key"] for i in idx) for name, idx in datamodule.splits.items()},
        "subjects": {name: {records[i]["subject"] for i in idx} for name, idx in datamodule.splits.items()},
        "au": {k: np.asarray(reader.array("au")[i]) for k, i in by_key.items() if i in usable and "au" in reader.specs},
        "va": {k: np.asarray(reader.array("va")[i]) for k, i in by_key.items() if i in usable and "va" in reader.specs},
        "present": {
            k: np.asarray(reader.array("present")[i])
            for k, i in by_key.items()
            if i in usable and "present" in reader.specs
        },
        "reader": reader,
    }
    return result


def assert_subject_disjoint(result: dict[str, Any]) -> None:
    """No subject in two protocol splits, and no split empty."""
    subjects = result["subjects"]
    assert all(subjects[name] for name in ("train", "val", "test")), subjects
    assert not subjects["train"] & subjects["val"]
    assert not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]


class _KillAfter:
    """Wraps a processor; the process that runs it kills itself with SIGKILL after ``count`` samples."""

    def __init__(self, processor: Any, count: int) -> None:
        self.processor = processor
        self.count = count
        self.calls = 0

    def specs(self):  # noqa: ANN201
        return self.processor.specs()

    def settings(self):  # noqa: ANN201
        return self.processor.settings()

    def __call__(self, sample, media, position):  # noqa: ANN001, ANN204
        if self.calls >= self.count:
            os.kill(os.getpid(), signal.SIGKILL)
        self.calls += 1
        return self.processor(sample, media, position)


def _killed_build(job_path: str) -> None:
    """Subprocess entry: build a cache in-process and die by SIGKILL after some samples."""
    job = pickle.loads(Path(job_path).read_bytes())
    datamodule: FERDataModule = job["datamodule"]
    raw_root = Path(datamodule.raw_root) if datamodule.raw_root else None
    listing = datamodule.adapter.list_samples(raw_root)
    processor = datamodule._processor(listing)
    settings = cache_settings(datamodule.adapter, processor, listing)
    build_dataset_cache(
        datamodule.adapter,
        raw_root,
        datamodule.root,
        _KillAfter(processor, job["count"]),
        listing,
        settings,
        num_workers=0,
    )


def kill_midway_then_resume(make_datamodule: Any, tmp_path: Path, count: int) -> tuple[dict[str, str], dict[str, str]]:
    """Build one cache straight, another killed with SIGKILL after ``count`` samples and then resumed.

    Args:
        make_datamodule: ``root -> FERDataModule`` (same raw files and settings for both).
        tmp_path: where the caches go.
        count: samples made before the kill.

    Returns:
        The digests (:func:`cache_digest`) of the straight and the resumed cache.
    """
    straight = make_datamodule(tmp_path / "straight")
    straight.preparation_workers = 0
    straight.prepare()
    interrupted = make_datamodule(tmp_path / "interrupted")
    job = tmp_path / "job.pkl"
    job.write_bytes(pickle.dumps({"datamodule": interrupted, "count": count}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")])}
    code = f"import adapter_checks; adapter_checks._killed_build({str(job)!r})"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, (run.returncode, run.stderr[-2000:])
    assert (tmp_path / "interrupted" / "build.json").exists() and not (
        tmp_path / "interrupted" / "manifest.json"
    ).exists()
    resumed = make_datamodule(tmp_path / "interrupted")
    resumed.preparation_workers = 0
    resumed.prepare()
    return cache_digest(tmp_path / "straight"), cache_digest(tmp_path / "interrupted")


def fit_through_config(
    config: str, raw_root: Path, cache_root: Path, tmp_path: Path, extra: list[str] | None = None
) -> None:
    """``mfer fit`` with the quickstart model and a data set's config on fake raw files (one CPU step of each stage)."""
    from multimodal_fer.cli import main

    main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "quickstart.yaml"),
            "--config",
            str(REPO / "configs" / "data" / config),
            f"--data.init_args.raw_root={raw_root}",
            f"--data.init_args.root={cache_root}",
            "--data.init_args.num_workers=0",
            "--data.init_args.preparation_workers=0",
            "--data.init_args.batch_size=4",
            "--trainer.fast_dev_run=1",
            "--trainer.logger=false",
            f"--run.root={tmp_path / 'runs'}",
            "--test_after_fit=false",
            *(extra or []),
        ]
    )


def prepared_fake_rafdb(raw: Path, cache: Path) -> tuple[Path, Path]:
    """Fake RAF-DB raw files in ``raw`` and their 32-px cache in ``cache`` (validation: 20 % of the training images).

    ``test_0004`` is a truncated image: it fails preparation.
    """
    from multimodal_fer.datasets import RAFDB, OfficialSplits

    from data.rafdb.generate import write_fake_rafdb

    write_fake_rafdb(raw)
    tiny_datamodule(RAFDB(), raw, cache, split=OfficialSplits(val_fraction=0.2)).prepare()
    return raw, cache


def fake_rafdb_data_args(raw: Path, cache: Path) -> list[str]:
    """Command-line settings that point ``configs/data/rafdb.yaml`` at :func:`prepared_fake_rafdb`'s files."""
    return [
        f"--data.init_args.raw_root={raw}",
        f"--data.init_args.root={cache}",
        "--data.init_args.preprocessing.image_size=32",
        "--data.init_args.split.init_args.val_fraction=0.2",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=4",
    ]
