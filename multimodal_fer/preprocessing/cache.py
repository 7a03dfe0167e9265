"""Memory-mapped, fixed-shape array caches with a fingerprinted manifest, atomic completion and resume.

Layout of a cache folder::

    root/
      manifest.json        written last and atomically: the cache is complete iff it exists
      <array>.npy          one fixed-shape array per field, (N, *shape), memory-mappable
      verified.json        the arrays' sizes and modification times when their checksums last matched the manifest
      build.json           only while building: fingerprint and specs of the build in progress
      done.npy             only while building: uint8 (N,), 0 pending, 1 written, 2 failed (unusable)

An interrupted build resumes where it stopped when it is started again with the same fingerprint; a build
with another fingerprint starts over. A complete cache whose fingerprint differs from the expected one is
refused with :class:`~multimodal_fer.errors.StaleCacheError`.

Integrity is checked whenever a cache is opened: the manifest must parse, and every array file must exist with
exactly the header (shape, dtype) and size the manifest implies. The SHA-256 of every array is recomputed when the
files changed since their checksums last matched (their size or modification time differs from
``verified.json``: the first use after a copy, an edit or a disk error) and whenever asked
(``mfer prepare --verify``). Every corruption is refused with the file, what is wrong and the command that
rebuilds the cache; nothing is rebuilt unless asked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from multimodal_fer.errors import CorruptCacheError, StaleCacheError
from multimodal_fer.fingerprints import CACHE_FORMAT_VERSION, fingerprint, settings_dict  # noqa: F401 - re-exported
from multimodal_fer.types import ArraySpec

MANIFEST_NAME = "manifest.json"
_BUILD_NAME = "build.json"
VERIFIED_NAME = "verified.json"
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
        _record_verified(self.root, manifest)
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
    """Read-only access to a complete cache, checked when opened.

    Arrays are opened lazily and memory-mapped, so a reader is cheap to create and to send to DataLoader
    workers (each worker opens its own maps).

    Args:
        root: cache folder.
        expected_fingerprint: if given, refuse a cache built from other settings.
        expected_settings: the settings behind ``expected_fingerprint``, to say what differs.
        rebuild_hint: the command that rebuilds the cache, quoted in errors.
        verify: ``"auto"`` (default): recompute the checksums when the files changed since they last matched;
            ``"full"``: always recompute them; ``"sizes"``: headers and sizes only (for tools that inspect a
            cache they will not train from).

    Raises:
        CorruptCacheError: no manifest (incomplete build), a damaged manifest, a missing file, a file whose
            header or size does not match the manifest, or a checksum mismatch.
        StaleCacheError: the cache was built from other settings or in another format version.
    """

    def __init__(
        self,
        root: str | Path,
        expected_fingerprint: str | None = None,
        expected_settings: Mapping[str, Any] | None = None,
        rebuild_hint: str = "delete the folder and prepare it again",
        verify: Literal["auto", "full", "sizes"] = "auto",
    ) -> None:
        if verify not in ("auto", "full", "sizes"):
            raise ValueError(f"verify={verify!r}: choose auto, full or sizes.")
        self.root = Path(root)
        self.rebuild_hint = rebuild_hint
        manifest_path = self.root / MANIFEST_NAME
        if not manifest_path.exists():
            if (self.root / _BUILD_NAME).exists():
                state = "an interrupted build: run the same preparation again to resume it"
            elif self.root.is_dir() and any(self.root.glob("*.npy")):
                state = "its manifest.json is missing, so the arrays cannot be trusted"
            else:
                state = "no cache"
            raise CorruptCacheError(f"No complete cache at {self.root} ({state}). Build it: {rebuild_hint}.")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
            self.specs = {spec["name"]: ArraySpec.from_json(spec) for spec in self.manifest["arrays"]}
            self.num_samples = int(self.manifest["num_samples"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise CorruptCacheError(
                f"The manifest {manifest_path} is damaged ({type(error).__name__}: {error}). Rebuild the cache: "
                f"{rebuild_hint}."
            ) from error
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
        for spec in self.specs.values():
            self._check_file(spec)
        self._arrays: dict[str, np.ndarray] = {}
        if verify == "full" or (verify == "auto" and not _still_verified(self.root, self.manifest)):
            self.verify_checksums()

    def _check_file(self, spec: ArraySpec) -> None:
        """The array file exists with the header (shape, dtype) and exact size the manifest implies."""
        path = self.root / f"{spec.name}.npy"
        shape = (self.num_samples, *spec.shape)
        if not path.is_file():
            raise CorruptCacheError(f"Cache file {path} is missing. Rebuild the cache: {self.rebuild_hint}.")
        try:
            with path.open("rb") as handle:
                major, _ = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                found_shape, _, found_dtype = read_header(handle)
                header = handle.tell()
        except (ValueError, OSError) as error:
            raise CorruptCacheError(
                f"Cache file {path} has no readable .npy header ({error}). Rebuild the cache: {self.rebuild_hint}."
            ) from error
        if tuple(found_shape) != shape or np.dtype(found_dtype) != np.dtype(spec.dtype):
            raise CorruptCacheError(
                f"Cache file {path} holds {found_dtype} {tuple(found_shape)} but the manifest says {spec.dtype} "
                f"{shape}. Rebuild the cache: {self.rebuild_hint}."
            )
        expected = header + int(np.prod(shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
        size = path.stat().st_size
        if size != expected:
            state = "truncated" if size < expected else "longer than its header says"
            raise CorruptCacheError(
                f"Cache file {path} is {state} ({size} bytes, expected {expected}). Rebuild the cache: "
                f"{self.rebuild_hint}."
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
        """Recompute every array's SHA-256, compare with the manifest, and record the match (``verified.json``).

        Raises:
            CorruptCacheError: a file changed since the cache was built; the message names it.
        """
        for name, expected in self.manifest.get("sha256", {}).items():
            path = self.root / f"{name}.npy"
            if _file_sha256(path) != expected:
                raise CorruptCacheError(
                    f"Cache file {path} changed since the cache was built (its SHA-256 no longer matches the "
                    f"manifest: a disk error, an edit or a bad copy). Rebuild the cache: {self.rebuild_hint}."
                )
        _record_verified(self.root, self.manifest)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state


def _file_states(root: Path, manifest: Mapping[str, Any]) -> dict[str, list[int]]:
    """Size and modification time (ns) of every array file of a manifest."""
    states = {}
    for name in manifest.get("sha256", {}):
        stat = (root / f"{name}.npy").stat()
        states[name] = [int(stat.st_size), int(stat.st_mtime_ns)]
    return states


def _record_verified(root: Path, manifest: Mapping[str, Any]) -> None:
    """Note that the arrays match their checksums as they are now (skipped where the folder is read-only)."""
    record = {"fingerprint": manifest["fingerprint"], "sha256": manifest.get("sha256", {})}
    try:
        record["files"] = _file_states(root, manifest)
        _write_json_atomic(root / VERIFIED_NAME, record)
    except OSError:
        pass  # a read-only cache is verified again at its next use


def _still_verified(root: Path, manifest: Mapping[str, Any]) -> bool:
    """Whether the arrays are unchanged (size, modification time) since their checksums last matched."""
    try:
        record = json.loads((root / VERIFIED_NAME).read_text())
        return (
            record.get("fingerprint") == manifest["fingerprint"]
            and record.get("sha256") == manifest.get("sha256", {})
            and record.get("files") == _file_states(root, manifest)
        )
    except (OSError, json.JSONDecodeError, KeyError):
        return False
