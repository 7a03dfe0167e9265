"""Memory-mapped, fixed-shape array caches with a fingerprinted manifest, atomic completion and resume.

Layout of a cache folder::

    root/
      manifest.json        written last and atomically: the cache is complete iff it exists
      <array>.npy          one fixed-shape array per field, (N, *shape), memory-mappable
      build.json           only while building: fingerprint and specs of the build in progress
      done.npy             only while building: uint8 (N,), 0 pending, 1 written, 2 failed (unusable)

An interrupted build resumes where it stopped when it is started again with the same fingerprint; a build
with another fingerprint starts over. A complete cache whose fingerprint differs from the expected one is
refused with :class:`~multimodal_fer.errors.StaleCacheError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from multimodal_fer.errors import CorruptCacheError, StaleCacheError
from multimodal_fer.fingerprints import CACHE_FORMAT_VERSION, fingerprint, settings_dict  # noqa: F401 - re-exported
from multimodal_fer.types import ArraySpec

MANIFEST_NAME = "manifest.json"
_BUILD_NAME = "build.json"
_DONE_NAME = "done.npy"
#: Sample states while building.
PENDING, WRITTEN, FAILED = 0, 1, 2


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_settings_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Human-readable list of the settings that differ between two manifests.

    Args:
        old: settings recorded in the cache.
        new: settings asked for now.

    Returns:
        e.g. ``"image_size: 64 → 112; seed: 0 → 1"``, or ``"format or generator version"`` if equal.
    """
    keys = sorted(set(old) | set(new))
    changes = [f"{k}: {old.get(k, '<absent>')} → {new.get(k, '<absent>')}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(changes) if changes else "format or generator version"


class CacheWriter:
    """Creates (or resumes) a cache and writes samples into it.

    Workers in other processes may write disjoint samples at once through :func:`open_for_writing`; the
    owning process records progress with :meth:`mark_done` and completes the cache with :meth:`finalize`.

    Args:
        root: cache folder.
        specs: the fields.
        num_samples: N.
        cache_fingerprint: from :func:`fingerprint`.
        settings: the settings behind the fingerprint, recorded in the manifest.
        metadata: anything else to record (label space, split policy, ...).
    """

    def __init__(
        self,
        root: str | Path,
        specs: Sequence[ArraySpec],
        num_samples: int,
        cache_fingerprint: str,
        settings: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.specs = tuple(specs)
        self.num_samples = int(num_samples)
        self.fingerprint = cache_fingerprint
        self.settings = dict(settings)
        self.metadata = dict(metadata or {})
        self._done = self._open_build()

    def _build_record(self) -> dict[str, Any]:
        return {
            "status_format": 2,
            "fingerprint": self.fingerprint,
            "num_samples": self.num_samples,
            "specs": [spec.to_json() for spec in self.specs],
        }

    def _open_build(self) -> np.ndarray:
        build_path = self.root / _BUILD_NAME
        if build_path.exists():
            try:
                previous = json.loads(build_path.read_text())
            except json.JSONDecodeError:
                previous = {}
            if previous == self._build_record() and (self.root / _DONE_NAME).exists():
                return np.load(self.root / _DONE_NAME, mmap_mode="r+")
        # A fresh build: clear any other build or complete cache in the folder.
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        for spec in self.specs:
            array = np.lib.format.open_memmap(
                self.root / f"{spec.name}.npy",
                mode="w+",
                dtype=np.dtype(spec.dtype),
                shape=(self.num_samples, *spec.shape),
            )
            del array
        done = np.lib.format.open_memmap(self.root / _DONE_NAME, mode="w+", dtype=np.uint8, shape=(self.num_samples,))
        done.flush()
        _write_json_atomic(build_path, self._build_record())
        return done

    @property
    def pending(self) -> np.ndarray:
        """Indices (int64) of the samples neither written nor failed yet."""
        return np.flatnonzero(np.asarray(self._done) == PENDING)

    @property
    def failed(self) -> np.ndarray:
        """Indices (int64) of the samples that could not be made (their rows hold zeros)."""
        return np.flatnonzero(np.asarray(self._done) == FAILED)

    def mark_done(self, indices: Sequence[int] | np.ndarray) -> None:
        """Record that samples are written (call after their data were flushed)."""
        self._done[np.asarray(indices, dtype=np.int64)] = WRITTEN
        self._done.flush()

    def mark_failed(self, indices: Sequence[int] | np.ndarray) -> None:
        """Record that samples cannot be made; they stay in the arrays as zeros and are listed in the manifest."""
        self._done[np.asarray(indices, dtype=np.int64)] = FAILED
        self._done.flush()

    def finalize(self) -> dict[str, Any]:
        """Check every sample is written, checksum the arrays and write the manifest atomically.

        Returns:
            The manifest.

        Raises:
            CorruptCacheError: samples are missing.
        """
        missing = self.pending
        if missing.size:
            raise CorruptCacheError(f"Cannot finalise cache {self.root}: {missing.size} samples were never written.")
        failed = self.failed
        manifest = {
            "format_version": CACHE_FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "num_samples": self.num_samples,
            "settings": self.settings,
            "arrays": [spec.to_json() for spec in self.specs],
            "sha256": {spec.name: _file_sha256(self.root / f"{spec.name}.npy") for spec in self.specs},
            **self.metadata,
        }
        if failed.size:
            manifest["failed_indices"] = failed.tolist()
        del self._done
        _write_json_atomic(self.root / MANIFEST_NAME, manifest)
        (self.root / _DONE_NAME).unlink()
        (self.root / _BUILD_NAME).unlink()
        return manifest


def open_for_writing(root: str | Path, names: Sequence[str]) -> dict[str, np.memmap]:
    """Open fields of a cache under construction for writing (in any process).

    Args:
        root: cache folder created by :class:`CacheWriter`.
        names: fields to open.

    Returns:
        Memory maps (N, *shape) opened read-write.
    """
    root = Path(root)
    return {name: np.load(root / f"{name}.npy", mmap_mode="r+") for name in names}


class CacheReader:
    """Read-only access to a complete cache.

    Arrays are opened lazily and memory-mapped, so a reader is cheap to create and to send to DataLoader
    workers (each worker opens its own maps).

    Args:
        root: cache folder.
        expected_fingerprint: if given, refuse a cache built from other settings.
        expected_settings: the settings behind ``expected_fingerprint``, to say what differs.
        rebuild_hint: the command that rebuilds the cache, quoted in errors.

    Raises:
        CorruptCacheError: no manifest (incomplete build) or a file of the wrong size.
        StaleCacheError: the cache was built from other settings or in another format version.
    """

    def __init__(
        self,
        root: str | Path,
        expected_fingerprint: str | None = None,
        expected_settings: Mapping[str, Any] | None = None,
        rebuild_hint: str = "delete the folder and prepare it again",
    ) -> None:
        self.root = Path(root)
        manifest_path = self.root / MANIFEST_NAME
        if not manifest_path.exists():
            state = "an interrupted build" if (self.root / _BUILD_NAME).exists() else "no cache"
            raise CorruptCacheError(f"No complete cache at {self.root} ({state}). Build it first: {rebuild_hint}.")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        if self.manifest.get("format_version") != CACHE_FORMAT_VERSION:
            raise StaleCacheError(
                f"Cache at {self.root} has format version {self.manifest.get('format_version')}, this package "
                f"reads version {CACHE_FORMAT_VERSION}. Rebuild it: {rebuild_hint}."
            )
        if expected_fingerprint is not None and self.manifest["fingerprint"] != expected_fingerprint:
            change = describe_settings_change(self.manifest.get("settings", {}), expected_settings or {})
            raise StaleCacheError(
                f"Cache at {self.root} was built with other settings ({change}). "
                f"Rebuild it: {rebuild_hint}; or point the data root to another folder."
            )
        self.specs = {spec["name"]: ArraySpec.from_json(spec) for spec in self.manifest["arrays"]}
        self.num_samples = int(self.manifest["num_samples"])
        for spec in self.specs.values():
            self._check_size(spec)
        self._arrays: dict[str, np.ndarray] = {}

    def _check_size(self, spec: ArraySpec) -> None:
        path = self.root / f"{spec.name}.npy"
        expected = self.num_samples * int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
        if path.exists():
            with path.open("rb") as handle:
                major, _ = np.lib.format.read_magic(handle)
                if major == 1:
                    np.lib.format.read_array_header_1_0(handle)
                else:
                    np.lib.format.read_array_header_2_0(handle)
                expected += handle.tell()
        if not path.exists() or path.stat().st_size < expected:
            raise CorruptCacheError(
                f"Cache file {path} is missing or truncated (expected ≥ {expected} bytes). "
                "Delete the cache folder and prepare it again."
            )

    @property
    def fingerprint(self) -> str:
        """The cache's fingerprint."""
        return str(self.manifest["fingerprint"])

    @property
    def usable(self) -> np.ndarray:
        """int64 indices of the samples that were made (all but those that failed during the build)."""
        failed = np.asarray(self.manifest.get("failed_indices", []), dtype=np.int64)
        return np.setdiff1d(np.arange(self.num_samples, dtype=np.int64), failed)

    def array(self, name: str) -> np.ndarray:
        """Memory map of one field, (N, *shape), read-only.

        Raises:
            KeyError: the cache has no such field (the message lists the fields).
        """
        if name not in self.specs:
            raise KeyError(f"Cache {self.root} has no field {name!r}; fields: {sorted(self.specs)}")
        if name not in self._arrays:
            self._arrays[name] = np.load(self.root / f"{name}.npy", mmap_mode="r")
        return self._arrays[name]

    def verify_checksums(self) -> None:
        """Recompute every array's SHA-256 and compare with the manifest.

        Raises:
            CorruptCacheError: a file changed since the cache was built.
        """
        for name, expected in self.manifest.get("sha256", {}).items():
            actual = _file_sha256(self.root / f"{name}.npy")
            if actual != expected:
                raise CorruptCacheError(
                    f"Cache file {self.root / (name + '.npy')} changed since it was built (checksum mismatch). "
                    "Delete the cache folder and prepare it again."
                )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state
