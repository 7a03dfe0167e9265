"""Occlusion test splits: every face of a split drawn once with each occlusion kind, as a cache.

Given any face cache (SynthAffect or a real benchmark's), this builds occluded / clean / mask triples
deterministically: sample ``(i, kind)`` uses the random stream ``(seed, source index, kind id)``, so the same
command always gives the same split, and one face's occluders do not depend on which other faces or kinds
are included. Occluders are placed by the cache's ``landmarks`` field where it has one, else by
:func:`~multimodal_fer.occlusion.canonical_landmarks` (aligned crops). This module writes the split; the data module
that serves it to ``mfer validate|test|predict`` is :class:`~multimodal_fer.datamodules.OcclusionSplitDataModule`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from multimodal_fer.errors import DataError
from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES, FaceLandmarks, canonical_landmarks, occlude
from multimodal_fer.preprocessing.cache import ArraySpec, CacheReader, CacheWriter, fingerprint

#: Bump when the occluders drawn for the same settings change; older splits are then stale.
OCCLUSION_SPLIT_VERSION = 1
#: Label and bookkeeping fields copied from the source cache when it has them.
COPIED_FIELDS: tuple[str, ...] = ("expr", "au", "va", "subject")


def occlusion_split_settings(
    source: CacheReader, indices: np.ndarray, kinds: Sequence[str], seed: int
) -> dict[str, object]:
    """The settings that determine an occlusion split (its fingerprint is taken over these)."""
    digest = hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()
    return {
        "kind": "occlusion_split",
        "version": OCCLUSION_SPLIT_VERSION,
        "source_fingerprint": source.fingerprint,
        "source_indices_sha256": digest,
        "num_source_samples": int(indices.size),
        "occlusion_types": list(kinds),
        "seed": int(seed),
    }


def build_occlusion_split(
    source: CacheReader,
    indices: np.ndarray,
    root: str | Path,
    kinds: Sequence[str] = OCCLUSION_TYPES,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> CacheReader:
    """Write the occlusion split of some samples of a face cache (resuming an interrupted build).

    Sample ``j = position * len(kinds) + k`` is source sample ``indices[position]`` with occluder ``kinds[k]``.

    Args:
        source: a cache with a ``face`` field (uint8 (3, H, W)); its ``face_clean`` field is used instead where
            present (SynthAffect stores the unoccluded render there).
        indices: int (M,) source indices (e.g. the test split's).
        root: output folder.
        kinds: occlusion kinds, each of :data:`~multimodal_fer.occlusion.OCCLUSION_TYPES`.
        seed: seed of the occluders.
        progress: called with (samples done, total).

    Returns:
        A reader of the split: ``face`` (occluded), ``face_clean``, ``occlusion_mask`` (1, H, W) uint8,
        ``occlusion_type`` (index into ``OCCLUSION_TYPES``), ``source_index`` and the source's label fields.

    Raises:
        DataError: unknown kinds, no indices, or a source without faces.
    """
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in OCCLUSION_TYPES]
    if unknown or not kinds:
        raise DataError(f"Occlusion kinds {unknown or '[]'} are not valid; choose from {list(OCCLUSION_TYPES)}.")
    indices = np.sort(np.asarray(indices, dtype=np.int64))
    if indices.size == 0:
        raise DataError("The occlusion split needs at least one source sample; the chosen split is empty.")
    clean_field = "face_clean" if "face_clean" in source.specs else "face"
    if clean_field not in source.specs:
        raise DataError(f"Cache {source.root} has no face field; an occlusion split needs faces (uint8 (3, H, W)).")
    face_spec = source.specs[clean_field]
    if face_spec.dtype != "uint8" or len(face_spec.shape) != 3 or face_spec.shape[0] != 3:
        raise DataError(f"Cache field {clean_field!r} is {face_spec.dtype} {face_spec.shape}; need uint8 (3, H, W).")
    _, height, width = face_spec.shape
    copied = [name for name in COPIED_FIELDS if name in source.specs]
    specs = [
        ArraySpec("face", (3, height, width), "uint8"),
        ArraySpec("face_clean", (3, height, width), "uint8"),
        ArraySpec("occlusion_mask", (1, height, width), "uint8"),
        ArraySpec("occlusion_type", (), "int8"),
        ArraySpec("source_index", (), "int64"),
        *(source.specs[name] for name in copied),
    ]
    settings = occlusion_split_settings(source, indices, kinds, seed)
    metadata = {k: source.manifest[k] for k in ("label_space",) if k in source.manifest}
    metadata["source_root"] = str(source.root)
    total = indices.size * len(kinds)
    writer = CacheWriter(root, specs, total, fingerprint(settings), settings, metadata=metadata)
    arrays = {spec.name: np.load(Path(root) / f"{spec.name}.npy", mmap_mode="r+") for spec in specs}
    has_landmarks = "landmarks" in source.specs
    pending_positions = np.unique(writer.pending // len(kinds))
    done = total - writer.pending.size
    for position in pending_positions:
        source_index = int(indices[position])
        clean = np.ascontiguousarray(np.asarray(source.array(clean_field)[source_index]).transpose(1, 2, 0))
        landmarks = (
            FaceLandmarks.from_array(np.asarray(source.array("landmarks")[source_index]))
            if has_landmarks
            else canonical_landmarks(min(height, width))
        )
        rows = np.arange(position * len(kinds), (position + 1) * len(kinds))
        for row, kind in zip(rows, kinds, strict=True):
            type_id = OCCLUSION_TYPES.index(kind)
            occluded, mask = occlude(clean, kind, np.random.default_rng([seed, source_index, type_id]), landmarks)
            arrays["face"][row] = occluded.transpose(2, 0, 1)
            arrays["face_clean"][row] = clean.transpose(2, 0, 1)
            arrays["occlusion_mask"][row] = mask[None]
            arrays["occlusion_type"][row] = type_id
            arrays["source_index"][row] = source_index
            for name in copied:
                arrays[name][row] = source.array(name)[source_index]
        for array in arrays.values():
            array.flush()  # before marking done, so a resumed build never trusts unwritten rows
        writer.mark_done(rows)
        done += rows.size
        if progress:
            progress(done, total)
    del arrays
    writer.finalize()
    return CacheReader(root, expected_fingerprint=fingerprint(settings))
