"""The one parallel, resumable loop that fills a cache: worker processes, progress, failures kept, nothing lost.

Every cache of the package (a data set's, the physiological feature side cache) is filled by :func:`fill_cache`:
the pending samples are cut into small chunks, worker processes make each chunk's samples and write them
straight into the cache's memory maps, and the owning process records each finished chunk in the cache's
status file. A killed build (Ctrl-C, ``kill -9``) therefore loses at most the chunks in flight; started again,
it redoes only those. Workers die with their parent (Linux ``PR_SET_PDEATHSIG``), so no orphan keeps writing
into a half-built cache.

A sample that cannot be made never stops the build: its rows are zeroed, it is marked failed, and its reason is
appended to ``<root>/failures.jsonl`` (one JSON object per line: ``index``, ``key``, ``source``, ``reason`` and,
where there is more to say, ``detail``).
"""

from __future__ import annotations

import ctypes
import json
import math
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from multimodal_fer.errors import DataError, MissingDependencyError
from multimodal_fer.preprocessing.cache import CacheWriter, open_for_writing

#: Failure log of a cache (complete after the build; appended to while building).
FAILURES_NAME = "failures.jsonl"

#: Builds with fewer pending samples run in the calling process unless a number of workers is given.
SMALL_BUILD = 256

#: What making one sample came to: (index, None, None) or (index, reason, detail).
Outcome = tuple[int, str | None, str | None]


class SampleProducer(Protocol):
    """Makes one sample's cache fields; must pickle (it is sent once to every worker process)."""

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        """Fields of sample ``index`` at their per-sample shapes; raises on a sample that cannot be made."""

    def describe(self, index: int) -> dict[str, Any]:
        """``{"key": ..., "source": ...}`` naming sample ``index`` in failure records."""


@dataclass(frozen=True)
class SampleFailure:
    """A sample that could not be made.

    Attributes:
        index: cache index (None for items rejected before the build, when listing the data set).
        key: the sample's key (None if it never became a sample).
        source: the file it comes from, relative to the raw root.
        reason: why, as a short category (counted per reason in ``summary.json``).
        detail: the specifics (a library's message), or None.
    """

    index: int | None
    key: str | None
    source: str
    reason: str
    detail: str | None = None

    def to_json(self) -> str:
        """One line of ``failures.jsonl``."""
        return json.dumps(asdict(self), sort_keys=True)


def default_workers() -> int:
    """Processes used for building: the CPUs this process may use, at most 8."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        available = os.cpu_count() or 1
    return max(1, min(8, available))


_WORKER_PRODUCER: SampleProducer | None = None
_PR_SET_PDEATHSIG = 1


def _init_worker(producer: SampleProducer) -> None:
    """Worker start-up: die with the parent process, ignore Ctrl-C (the parent handles it), keep the producer."""
    global _WORKER_PRODUCER
    _WORKER_PRODUCER = producer
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch  # noqa: PLC0415 - only in workers

    torch.set_num_threads(1)  # the workers share the cores; a detector's own threads would oversubscribe them
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # pragma: no cover - not Linux
        pass


def _make_chunk(root: str, names: Sequence[str], indices: Sequence[int]) -> list[Outcome]:
    """Worker: make and write the samples of one chunk; return each index with None or its failure reason."""
    assert _WORKER_PRODUCER is not None
    return write_samples(_WORKER_PRODUCER, root, names, indices)


def write_samples(producer: SampleProducer, root: str, names: Sequence[str], indices: Sequence[int]) -> list[Outcome]:
    """Make samples and write them into the cache's memory maps (flushed before returning).

    Args:
        producer: makes one sample's fields.
        root: cache folder under construction.
        names: every field of the cache (a failed sample's rows are zeroed in all of them).
        indices: samples to make.

    Returns:
        ``(index, None, None)`` for a written sample, ``(index, reason, detail)`` for one that could not be made.
    """
    arrays = open_for_writing(root, names)
    outcomes: list[Outcome] = []
    for index in indices:
        try:
            fields = producer(int(index))
            unknown = set(fields) - set(arrays)
            if unknown:
                raise DataError(f"produced fields {sorted(unknown)} the cache does not have")
            for name, value in fields.items():
                arrays[name][index] = value
            outcomes.append((int(index), None, None))
        except MissingDependencyError:  # the environment lacks a package (the message names the extra): stop the build
            raise
        except Exception as error:  # noqa: BLE001 - any sample-level problem is recorded, never fatal
            for array in arrays.values():
                array[index] = 0
            reason = getattr(error, "reason", None)
            if reason is None:  # not a SampleError: an unexpected problem, named by its type
                outcomes.append((int(index), f"unexpected {type(error).__name__}", str(error)))
            else:
                outcomes.append((int(index), str(reason), getattr(error, "detail", None)))
    for array in arrays.values():
        array.flush()  # before the owner marks them done, so a resumed build never trusts unwritten rows
    return outcomes


def _chunks(pending: np.ndarray, chunk_size: int, workers: int) -> list[list[int]]:
    """Small chunks: at most ``chunk_size``, and at least four per worker, so a kill loses little."""
    if pending.size == 0:
        return []
    size = max(1, min(chunk_size, math.ceil(pending.size / (4 * max(1, workers)))))
    return [pending[i : i + size].tolist() for i in range(0, pending.size, size)]


def fill_cache(
    writer: CacheWriter,
    producer: SampleProducer,
    num_workers: int | None = None,
    chunk_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> list[SampleFailure]:
    """Make every pending sample of a cache under construction (resuming), in worker processes.

    Args:
        writer: the cache being built (:class:`CacheWriter`, fresh or resumed).
        producer: makes one sample's fields.
        num_workers: processes (None: :func:`default_workers`, or this process for fewer than
            :data:`SMALL_BUILD` pending samples; 0 or 1: in this process).
        chunk_size: at most this many samples per work item.
        progress: called with (samples done or failed, total).

    Returns:
        Every failure of the build, including those of an interrupted earlier run, sorted by index.
    """
    root = writer.root
    names = [spec.name for spec in writer.specs]
    failures_path = root / FAILURES_NAME
    total = writer.num_samples
    pending = writer.pending
    finished = total - pending.size
    if progress:
        progress(finished, total)
    if num_workers is None:
        # Starting a worker costs seconds of imports (torch, detectors): a small build is faster in this process.
        workers = default_workers() if pending.size >= SMALL_BUILD else 1
    else:
        workers = num_workers
    chunks = _chunks(pending, chunk_size, workers)

    def record(outcomes: list[Outcome]) -> None:
        nonlocal finished
        failed = [outcome for outcome in outcomes if outcome[1] is not None]
        if failed:
            with failures_path.open("a") as handle:
                for index, reason, detail in failed:
                    described = producer.describe(index)
                    source = str(described.get("source", ""))
                    failure = SampleFailure(index, described.get("key"), source, str(reason), detail)
                    handle.write(failure.to_json() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            writer.mark_failed([outcome[0] for outcome in failed])
        writer.mark_done([index for index, reason, _ in outcomes if reason is None])
        finished += len(outcomes)
        if progress:
            progress(finished, total)

    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            record(write_samples(producer, str(root), names, chunk))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(workers, len(chunks)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(producer,),
        ) as pool:
            remaining = {pool.submit(_make_chunk, str(root), names, chunk) for chunk in chunks}
            try:
                while remaining:
                    done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                    for future in done:
                        record(future.result())
            except BaseException:
                for future in remaining:
                    future.cancel()
                raise
    return read_failures(failures_path, set(writer.failed.tolist()))


def read_failures(path: Path, failed: set[int] | None = None) -> list[SampleFailure]:
    """Failures recorded in a ``failures.jsonl``, one per index (the last record wins), sorted.

    Args:
        path: the file (missing: no failures).
        failed: keep only sample failures whose index is in this set (records of samples that a resumed build
            redid successfully are dropped); listing rejections (index None) are always kept.
    """
    if not path.exists():
        return []
    by_index: dict[int, SampleFailure] = {}
    rejected: list[SampleFailure] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill; the sample is still pending or failed and is redone
        failure = SampleFailure(
            record.get("index"), record.get("key"), record.get("source", ""), record["reason"], record.get("detail")
        )
        if failure.index is None:
            rejected.append(failure)
        elif failed is None or failure.index in failed:
            by_index[failure.index] = failure
    return rejected + [by_index[i] for i in sorted(by_index)]


def write_failures(path: Path, failures: Sequence[SampleFailure]) -> None:
    """Write ``failures.jsonl`` atomically (rejections first, then sample failures by index)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(failure.to_json() + "\n" for failure in failures))
    os.replace(tmp, path)
