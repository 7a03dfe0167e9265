"""Side cache of physiological features, computed offline beside a data cache without changing it.

Layout, inside the data cache's folder (the data cache's own files and fingerprint are untouched)::

    <cache root>/physio_features/
      manifest.json        written last and atomically: the side cache is complete iff it exists
      features.npy         float32 (N, F), feature values in PHYSIO_FEATURE_NAMES order, 0 where invalid
      valid.npy            bool (N, F), True where the value is valid
      invalid_reason.npy   int8 (N, F), InvalidReason codes (0 = valid), for diagnosis

The side cache's fingerprint covers the data cache's fingerprint, the extractor version, the feature list,
the extraction settings, the sampling rate and the channels. A side cache whose fingerprint differs (the data
cache was rebuilt, or the extractor changed) is refused as stale with the command that rebuilds it. The
build reuses :class:`~multimodal_fer.preprocessing.cache.CacheWriter`, so it is atomic and an interrupted
build resumes where it stopped. Reading needs neither neurokit2 nor the extractor to run: only the settings.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from multimodal_fer.errors import CorruptCacheError, DataError, StaleCacheError
from multimodal_fer.preprocessing.builder import default_workers, fill_cache
from multimodal_fer.preprocessing.cache import (
    MANIFEST_NAME,
    ArraySpec,
    CacheReader,
    CacheWriter,
    fingerprint,
)
from multimodal_fer.preprocessing.physio_feature_extraction import (
    EXTRACTOR_VERSION,
    NUM_PHYSIO_FEATURES,
    PHYSIO_FEATURE_NAMES,
    PHYSIO_FEATURES,
    InvalidReason,
    PhysioFeatureExtractor,
    PhysioFeatureSettings,
)

#: Folder of the side cache inside the data cache's folder.
PHYSIO_FEATURES_DIRNAME = "physio_features"
#: Array names of the side cache.
FEATURES_FIELD, VALID_FIELD, REASON_FIELD = "features", "valid", "invalid_reason"
#: The data cache's field holding the signals.
_SIGNAL_FIELD = "physio"


def physio_feature_root(cache_root: str | Path) -> Path:
    """The side cache folder of a data cache."""
    return Path(cache_root) / PHYSIO_FEATURES_DIRNAME


def physio_signal_layout(source: CacheReader) -> tuple[float, tuple[str, ...]]:
    """Sampling rate and channel names of a data cache's ``physio`` field, from its manifest.

    Args:
        source: the data cache; its manifest must name ``physio_channels`` and give ``physio_sample_rate``
            (top level or under ``settings``).

    Returns:
        ``(sampling_rate, channels)``.

    Raises:
        DataError: the cache has no ``physio`` field, or its manifest lacks the rate or channel names.
    """
    if _SIGNAL_FIELD not in source.specs:
        raise DataError(f"Cache {source.root} has no {_SIGNAL_FIELD!r} field; physiological features need signals.")
    manifest = source.manifest
    rate = manifest.get("physio_sample_rate", manifest.get("settings", {}).get("physio_sample_rate"))
    channels = manifest.get("physio_channels")
    if rate is None or channels is None:
        raise DataError(
            f"The manifest of {source.root} does not record the physiological sampling rate "
            "(physio_sample_rate) and channel names (physio_channels); the cache's adapter must write both."
        )
    spec = source.specs[_SIGNAL_FIELD]
    if len(spec.shape) != 2 or spec.shape[0] != len(channels):
        raise DataError(
            f"Cache field {_SIGNAL_FIELD!r} has shape {spec.shape} but the manifest names channels {channels}."
        )
    return float(rate), tuple(str(c) for c in channels)


def physio_feature_settings(source: CacheReader, settings: PhysioFeatureSettings | None = None) -> dict[str, Any]:
    """Everything that determines a side cache's content (its fingerprint is taken over this).

    Args:
        source: the data cache.
        settings: extraction settings (None: the defaults).
    """
    rate, channels = physio_signal_layout(source)
    return {
        "kind": "physio_features",
        "extractor_version": EXTRACTOR_VERSION,
        "source_fingerprint": source.fingerprint,
        "num_samples": source.num_samples,
        "sampling_rate": rate,
        "channels": list(channels),
        "feature_names": list(PHYSIO_FEATURE_NAMES),
        "feature_minimums": {
            f.name: {"seconds": f.min_seconds, "events": f.min_events, "sampling_rate": f.min_sampling_rate}
            for f in PHYSIO_FEATURES
        },
        "extractor_settings": (settings or PhysioFeatureSettings()).to_json(),
    }


def _side_specs() -> list[ArraySpec]:
    return [
        ArraySpec(FEATURES_FIELD, (NUM_PHYSIO_FEATURES,), "float32"),
        ArraySpec(VALID_FIELD, (NUM_PHYSIO_FEATURES,), "bool"),
        ArraySpec(REASON_FIELD, (NUM_PHYSIO_FEATURES,), "int8"),
    ]


def open_physio_feature_cache(
    source: CacheReader,
    rebuild_hint: str,
    root: str | Path | None = None,
    settings: PhysioFeatureSettings | None = None,
) -> CacheReader:
    """Open the side cache of a data cache, refusing a missing, incomplete or stale one.

    Args:
        source: the (already validated) data cache.
        rebuild_hint: the command that builds the side cache, quoted in errors.
        root: side cache folder (None: :func:`physio_feature_root` of the data cache).
        settings: extraction settings the side cache must have been built with.

    Returns:
        A reader with fields ``features``, ``valid`` and ``invalid_reason``.

    Raises:
        CorruptCacheError: no side cache, or an interrupted build.
        StaleCacheError: built for another data cache, extractor version or settings.
    """
    root = Path(root) if root is not None else physio_feature_root(source.root)
    expected = physio_feature_settings(source, settings)
    if not (root / MANIFEST_NAME).exists():
        state = "an interrupted build" if root.exists() else "none was built"
        raise CorruptCacheError(
            f"No complete physiological feature cache at {root} ({state}). Compute it once with: {rebuild_hint}"
        )
    return CacheReader(
        root, expected_fingerprint=fingerprint(expected), expected_settings=expected, rebuild_hint=rebuild_hint
    )


class _FeatureProducer:
    """Computes one window's features from the data cache (sent once to every worker process)."""

    def __init__(self, source: CacheReader, extractor: PhysioFeatureExtractor) -> None:
        self.source = source
        self.extractor = extractor

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        signals = np.asarray(self.source.array(_SIGNAL_FIELD)[index : index + 1], dtype=np.float32)
        values, reasons = self.extractor.extract_many(signals)
        return {FEATURES_FIELD: values[0], VALID_FIELD: reasons[0] == InvalidReason.VALID, REASON_FIELD: reasons[0]}

    def describe(self, index: int) -> dict[str, Any]:
        return {"key": str(index), "source": f"{self.source.root}[{index}]"}


def summarize(reasons: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per feature: the number of valid samples and the count of each invalidity reason.

    Args:
        reasons: int8 (N, F) :class:`InvalidReason` codes.
    """
    summary = {}
    for j, name in enumerate(PHYSIO_FEATURE_NAMES):
        codes, counts = np.unique(np.asarray(reasons[:, j]), return_counts=True)
        by_reason = {InvalidReason(int(c)).name.lower(): int(n) for c, n in zip(codes, counts, strict=True)}
        summary[name] = {"valid": by_reason.pop("valid", 0), "invalid": by_reason}
    return summary


def describe_summary(summary: dict[str, dict[str, Any]]) -> str:
    """One line of :func:`summarize`'s counts: each feature's valid samples and why the others are not.

    E.g. ``rsp_rate 17 (channel_flat 97), heart_rate_mean 0 (channel_missing 114)``; most frequent reason first.
    """
    parts = []
    for name, entry in summary.items():
        reasons = sorted((entry.get("invalid") or {}).items(), key=lambda item: (-item[1], item[0]))
        why = f" ({', '.join(f'{reason} {count}' for reason, count in reasons)})" if reasons else ""
        parts.append(f"{name} {entry['valid']}{why}")
    return ", ".join(parts)


def build_physio_feature_cache(
    source: CacheReader,
    root: str | Path | None = None,
    overwrite: bool = False,
    num_workers: int | None = None,
    chunk_size: int = 64,
    settings: PhysioFeatureSettings | None = None,
    rebuild_hint: str = "build it again with overwrite=True",
    progress: Callable[[int, int], None] | None = None,
) -> CacheReader:
    """Compute the features of every sample of a data cache into its side cache (resuming an interrupted build).

    A complete side cache with the same fingerprint is returned as it is; a stale one is refused unless
    ``overwrite``. The data cache is only read.

    Args:
        source: the data cache (with a ``physio`` field and its sampling rate and channels in the manifest).
        root: side cache folder (None: :func:`physio_feature_root` of the data cache); never the data cache's.
        overwrite: rebuild even a complete side cache.
        num_workers: extraction processes (None: the CPUs this process may use, at most 8; 0 or 1: in this
            process).
        chunk_size: samples per work item (and per progress step).
        settings: extraction settings (None: the defaults).
        rebuild_hint: the command that rebuilds a stale side cache, quoted in the error.
        progress: called with (samples done, total).

    Returns:
        A reader of the complete side cache.

    Raises:
        StaleCacheError: a complete side cache built for other settings is there and ``overwrite`` is False.
        DataError: the data cache lacks signals, rate or channel names; ``root`` is the data cache's folder;
            a sampling rate the extractor refuses.
    """
    root = Path(root) if root is not None else physio_feature_root(source.root)
    if root.resolve() in (source.root.resolve(), *source.root.resolve().parents):
        raise DataError(f"The feature cache folder {root} would contain the data cache {source.root}; choose another.")
    side_settings = physio_feature_settings(source, settings)
    side_fingerprint = fingerprint(side_settings)
    rate, channels = physio_signal_layout(source)
    extractor = PhysioFeatureExtractor(rate, channels, settings)  # refuses bad rates before anything is written
    if (root / MANIFEST_NAME).exists():
        if not overwrite:
            try:
                return CacheReader(
                    root,
                    expected_fingerprint=side_fingerprint,
                    expected_settings=side_settings,
                    rebuild_hint=rebuild_hint,
                )
            except StaleCacheError as error:
                raise StaleCacheError(f"{error} (Rebuilding replaces the existing feature cache.)") from error
            except CorruptCacheError:
                pass  # damaged files: compute again below
        shutil.rmtree(root)
    elif overwrite and root.exists():
        shutil.rmtree(root)  # an interrupted build: start over as asked
    if num_workers is None:
        num_workers = default_workers()
    started = time.perf_counter()
    writer = CacheWriter(root, _side_specs(), source.num_samples, side_fingerprint, side_settings)
    failures = fill_cache(
        writer, _FeatureProducer(source, extractor), num_workers=num_workers, chunk_size=chunk_size, progress=progress
    )
    if failures:
        raise DataError(
            f"Physiological features could not be computed for {len(failures)} windows (first: {failures[0].reason}); "
            f"see {root / 'failures.jsonl'}."
        )
    reasons = np.load(root / f"{REASON_FIELD}.npy", mmap_mode="r")
    writer.metadata.update(
        {
            "features": [
                {"name": f.name, "unit": f.unit, "channel": f.channel, "log_scale": f.log_scale}
                for f in PHYSIO_FEATURES
            ],
            "summary": summarize(reasons),
            "neurokit2_version": _neurokit_version(),
            "last_build_seconds": round(time.perf_counter() - started, 2),
            "num_workers": int(num_workers),
        }
    )
    del reasons
    writer.finalize()
    return CacheReader(root, expected_fingerprint=side_fingerprint)


def _neurokit_version() -> str:
    try:
        from importlib.metadata import version

        return version("neurokit2")
    except Exception:  # noqa: BLE001 - informative only
        return "unknown"
