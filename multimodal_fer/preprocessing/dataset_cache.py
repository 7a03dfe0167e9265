"""A data set's cache from its adapter: listing → fingerprint → parallel resumable build → summary.

Layout of a data set's cache (besides the arrays and ``manifest.json`` of :mod:`~.cache`)::

    root/
      samples.jsonl     one line per cache index: key, subject, split, source, sequence, frame
      failures.jsonl    one line per sample that could not be used: index, key, source (relative to the raw
                        root) and reason; items rejected while listing (an excluded label code, a label line
                        without its image) come first, with index null
      summary.json      splits, expression_counts, au_positives, va_labelled, modalities, failures

The fingerprint covers the adapter (name, version, options), the processor's settings and a digest of the
listing (every sample's key, subject, split, source, labels), so a changed annotation file or setting stales
the cache.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from multimodal_fer.datasets.base import SPLIT_NAMES, DatasetAdapter, Listing, RawMedia, RawSample, SampleError
from multimodal_fer.errors import DataError
from multimodal_fer.preprocessing.builder import (
    FAILURES_NAME,
    SampleFailure,
    fill_cache,
    read_failures,
    write_failures,
)
from multimodal_fer.preprocessing.cache import ArraySpec, CacheReader, CacheWriter, fingerprint

SAMPLES_NAME = "samples.jsonl"
#: Fields that are model inputs: a NaN or infinity in one of them makes the sample a failure (labels may be NaN:
#: that means unlabelled).
INPUT_FIELDS = ("face", "face_clip", "face_clean", "audio", "depth", "points", "physio")
SUMMARY_NAME = "summary.json"


class SampleProcessor(Protocol):
    """Turns one raw sample (its listing entry and loaded media) into cache fields of fixed shapes."""

    def specs(self) -> list[ArraySpec]:
        """The cache fields this processor writes."""

    def settings(self) -> dict[str, Any]:
        """JSON-ready settings that change its output (part of the fingerprint)."""

    def __call__(self, sample: RawSample, media: RawMedia, position: int) -> dict[str, np.ndarray]:
        """Fields of one sample; ``position`` is its cache index. Raises SampleError on an unusable sample."""


@dataclass
class _AdapterProducer:
    """Loads a sample with the adapter and processes it (sent once to every worker)."""

    adapter: DatasetAdapter
    processor: SampleProcessor
    raw_root: Path | None
    samples: list[RawSample]

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        sample = self.samples[index]
        media = self.adapter.load(self.raw_root, sample)  # type: ignore[arg-type]
        fields = self.processor(sample, media, index)
        check_finite_inputs(fields)
        return fields

    def describe(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        return {"key": sample.key, "source": sample.source}


def check_finite_inputs(fields: dict[str, np.ndarray]) -> None:
    """Refuse a sample whose model inputs hold NaN or infinity (the policy of every cache: record, never store).

    Raises:
        SampleError: ``"non-finite values in <field>"``, with how many values.
    """
    for name in INPUT_FIELDS:
        value = fields.get(name)
        if value is None or not np.issubdtype(np.asarray(value).dtype, np.floating):
            continue
        bad = int(np.size(value) - np.isfinite(value).sum())
        if bad:
            raise SampleError(f"non-finite values in {name}", f"{bad} of {np.size(value)} values are NaN or infinite")


def cache_settings(adapter: DatasetAdapter, processor: SampleProcessor, listing: Listing) -> dict[str, Any]:
    """Everything a data set's cache content depends on (its fingerprint is taken over this)."""
    return {
        "dataset": adapter.name,
        "adapter_version": adapter.version,
        "adapter": adapter.settings(),
        "processor": processor.settings(),
        "listing": listing.digest(),
        "num_samples": len(listing.samples),
    }


def build_dataset_cache(
    adapter: DatasetAdapter,
    raw_root: Path | None,
    root: str | Path,
    processor: SampleProcessor,
    listing: Listing,
    settings: dict[str, Any],
    num_workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CacheReader:
    """Build (or resume building) a data set's cache.

    Args:
        adapter: the data set.
        raw_root: its raw files (None for generated data sets).
        root: cache folder.
        processor: turns loaded media into fields.
        listing: ``adapter.list_samples(raw_root)`` (listed once by the caller, which also fingerprints it).
        settings: the settings behind the fingerprint (:func:`cache_settings`, or a generated data set's own).
        num_workers: build processes (None: all CPUs up to 8; 0 or 1: in this process).
        progress: called with (samples finished, total).

    Returns:
        A reader of the complete cache.

    Raises:
        DataError: the listing is empty, keys repeat, or every sample failed (the message gives the commonest
            reasons and where ``failures.jsonl`` is).
    """
    root = Path(root)
    samples = listing.samples
    if not samples:
        reasons = Counter(r.reason for r in listing.rejected).most_common(3)
        raise DataError(
            f"No usable {adapter.name} sample under {raw_root}: {len(listing.rejected)} items were rejected "
            f"(commonest reasons: {reasons}). Check raw_root and the adapter's options."
        )
    keys = [s.key for s in samples]
    if len(set(keys)) != len(keys):
        repeated = [k for k, n in Counter(keys).items() if n > 1][:5]
        raise DataError(f"The {adapter.name} listing repeats sample keys {repeated}; keys must be unique.")
    subjects = sorted({s.subject for s in samples})
    metadata = {
        "label_space": adapter.label_space.to_dict(),
        "modalities": list(adapter.modalities),
        "subjects": subjects,
        "sequences": sorted({s.sequence for s in samples if s.sequence is not None}),
        "split_names": list(SPLIT_NAMES),
        "face_media_allowed": adapter.face_media_allowed,
        **adapter.metadata(),
        **_processor_metadata(processor),
    }
    writer = CacheWriter(root, processor.specs(), len(samples), fingerprint(settings), settings, metadata)
    producer = _AdapterProducer(adapter, processor, raw_root, samples)
    failures = fill_cache(writer, producer, num_workers=num_workers, progress=progress)
    if len(failures) == len(samples):
        reasons = Counter(f.reason for f in failures).most_common(3)
        raise DataError(
            f"Every one of the {len(samples)} {adapter.name} samples failed (commonest reasons: {reasons}); see "
            f"{root / FAILURES_NAME}. Nothing usable was cached."
        )
    rejected = [SampleFailure(None, None, r.source, r.reason) for r in listing.rejected]
    write_failures(root / FAILURES_NAME, rejected + failures)
    _write_lines(root / SAMPLES_NAME, [_sample_record(s) for s in samples])
    writer.finalize()
    reader = CacheReader(root, expected_fingerprint=fingerprint(settings))
    write_summary(reader, rejected + failures, official_splits=[s.split or "" for s in samples])
    return reader


def _processor_metadata(processor: SampleProcessor) -> dict[str, Any]:
    """What the processor records in the manifest (the physiological channels and rate), where it says anything."""
    metadata = getattr(processor, "metadata", None)
    return dict(metadata()) if callable(metadata) else {}


def _sample_record(sample: RawSample) -> dict[str, Any]:
    return {
        "key": sample.key,
        "subject": sample.subject,
        "split": sample.split,
        "source": sample.source,
        "sequence": sample.sequence,
        "frame": sample.frame,
    }


def _write_lines(path: Path, records: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    os.replace(tmp, path)


def read_sample_records(root: str | Path) -> list[dict[str, Any]]:
    """The ``samples.jsonl`` of a cache (key, subject, split, source, sequence, frame per cache index).

    Returns:
        One dict per cache index, or an empty list for caches without the file (generated data sets).
    """
    path = Path(root) / SAMPLES_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_summary(
    reader: CacheReader, failures: Sequence[SampleFailure], official_splits: Sequence[str] | None = None
) -> dict[str, Any]:
    """Count what a complete cache holds and write ``summary.json`` beside it.

    Args:
        reader: the cache.
        failures: its failures (listing rejections and sample failures).
        official_splits: each cache index's official split ("" for none); None: read the ``split`` field or
            count every sample as unassigned.

    Returns:
        ``splits`` (usable samples per official split), ``expression_counts`` (per class name, labelled usable
        samples), ``au_positives`` (per AU number), ``va_labelled`` (usable samples with any affect value),
        ``modalities`` (usable samples holding each modality), ``failures`` (count per reason), ``usable`` and
        ``failed``.
    """
    from multimodal_fer.types import LabelSpace

    usable = reader.usable
    manifest = reader.manifest
    space = LabelSpace.from_dict(manifest["label_space"])
    if official_splits is not None:
        names = np.asarray(list(official_splits), dtype=object)[usable]
    else:
        names = np.full(usable.size, "", dtype=object)
    splits = Counter(str(n) if n else "unassigned" for n in names)
    summary: dict[str, Any] = {
        "usable": int(usable.size),
        "failed": int(reader.num_samples - usable.size),
        "rejected_while_listing": sum(1 for f in failures if f.index is None),
        "splits": {name: int(splits[name]) for name in sorted(splits)},
    }
    if "expr" in reader.specs and space.num_expressions:
        expr = np.asarray(reader.array("expr")[usable], dtype=np.int64)
        counts = np.bincount(expr[expr >= 0], minlength=space.num_expressions)
        summary["expression_counts"] = {name: int(counts[i]) for i, name in enumerate(space.expressions)}
    else:
        summary["expression_counts"] = {}
    if "au" in reader.specs and space.num_action_units:
        au = np.asarray(reader.array("au")[usable], dtype=np.float32)
        summary["au_positives"] = {f"AU{n}": int(np.nansum(au[:, j] == 1)) for j, n in enumerate(space.action_units)}
    else:
        summary["au_positives"] = {}
    if "va" in reader.specs and space.num_dimensions:
        va = np.asarray(reader.array("va")[usable], dtype=np.float32)
        summary["va_labelled"] = int(np.any(np.isfinite(va), axis=1).sum())
    else:
        summary["va_labelled"] = 0
    modalities = manifest.get("modalities", [])
    if "present" in reader.specs:
        present = np.asarray(reader.array("present")[usable], dtype=bool)
        summary["modalities"] = {m: int(present[:, j].sum()) for j, m in enumerate(modalities)}
    else:
        summary["modalities"] = {m: int(usable.size) for m in modalities}
    summary["failures"] = dict(sorted(Counter(f.reason for f in failures).items()))
    _write_json(reader.root / SUMMARY_NAME, summary)
    return summary


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def read_failure_log(root: str | Path) -> list[SampleFailure]:
    """The failures of a complete cache (empty if it has none)."""
    return read_failures(Path(root) / FAILURES_NAME)
