"""Test-time data module over an occlusion split (see :mod:`multimodal_fer.preprocessing.occlusion_split_cache`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from multimodal_fer.datamodules.cached_dataset import CachedMultimodalDataset, passthrough_collate
from multimodal_fer.datamodules.device_transforms import face_statistics, normalize_face
from multimodal_fer.datamodules.evaluation_sampler import evaluation_sampler
from multimodal_fer.errors import DataError
from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES
from multimodal_fer.preprocessing.cache import CacheReader
from multimodal_fer.types import LabelSpace

_BUILD_HINT = "build it with: mfer occlusion-split --config <the data's config> --split test --output <root>"


class OcclusionSplitDataModule(pl.LightningDataModule):
    """Faces of an occlusion split, occluded or clean, for ``validate``, ``test`` and ``predict``.

    Every split sample is one face with one kind of occluder, so metrics over this module are metrics over
    occluded faces; ``faces: clean`` gives the same faces without occluders (the reference condition).

    Args:
        root: folder written by ``mfer occlusion-split``.
        faces: ``occluded`` (default) or ``clean``.
        occlusion_types: keep only these kinds (None: all in the split).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        face_media_allowed: whether the source data's card allows logging its faces (False for real people
            unless their licence says otherwise).
    """

    def __init__(
        self,
        root: str,
        faces: str = "occluded",
        occlusion_types: list[str] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        face_media_allowed: bool = False,
    ) -> None:
        super().__init__()
        if faces not in ("occluded", "clean"):
            raise ValueError(f"faces must be 'occluded' or 'clean', got {faces!r}.")
        unknown = [k for k in occlusion_types or () if k not in OCCLUSION_TYPES]
        if unknown:
            raise ValueError(f"Unknown occlusion types {unknown}; valid: {list(OCCLUSION_TYPES)}.")
        self.root = Path(root)
        self.faces = faces
        self.occlusion_types = tuple(occlusion_types) if occlusion_types else None
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._face_media_allowed = face_media_allowed
        self.modalities: tuple[str, ...] = ("face",)
        self.reader: CacheReader | None = None

    def _open(self) -> CacheReader:
        if self.reader is None:
            reader = CacheReader(self.root, rebuild_hint=_BUILD_HINT)
            if reader.manifest.get("settings", {}).get("kind") != "occlusion_split":
                raise DataError(f"{self.root} is not an occlusion split; {_BUILD_HINT}.")
            self.reader = reader
        return self.reader

    @property
    def label_space(self) -> LabelSpace:
        """The source data's label space, as recorded in the split's manifest."""
        recorded = self._open().manifest.get("label_space")
        if recorded is None:
            raise DataError(f"The occlusion split at {self.root} records no label space; rebuild it. {_BUILD_HINT}.")
        return LabelSpace.from_dict(recorded)

    @property
    def test_condition(self) -> str:
        """``occluded`` or ``occlusion-clean`` (the same faces without occluders), plus the kinds kept, if chosen."""
        name = "occluded" if self.faces == "occluded" else "occlusion-clean"
        return name + ("-" + "-".join(self.occlusion_types) if self.occlusion_types else "")

    @property
    def cache_fingerprint(self) -> str:
        """Fingerprint of the split (recorded in results.json)."""
        return self._open().fingerprint

    @property
    def image_size(self) -> int:
        """Side of the split's faces in pixels."""
        return int(self._open().specs["face"].shape[-1])

    @property
    def face_media_allowed(self) -> bool:
        """Whether faces of this split may be logged as images."""
        return self._face_media_allowed

    def indices(self) -> np.ndarray:
        """Split rows kept by ``occlusion_types``, int64 (M,)."""
        reader = self._open()
        types = np.asarray(reader.array("occlusion_type"))
        if self.occlusion_types is None:
            return np.arange(types.size, dtype=np.int64)
        wanted = [OCCLUSION_TYPES.index(k) for k in self.occlusion_types]
        return np.flatnonzero(np.isin(types, wanted)).astype(np.int64)

    def setup(self, stage: str | None = None) -> None:
        """Open the split."""
        self._open()

    def _loader(self) -> DataLoader:
        reader = self._open()
        field = "face" if self.faces == "occluded" else "face_clean"
        extra = [n for n in ("expr", "au", "va", "subject", "occlusion_type", "occlusion_mask") if n in reader.specs]
        dataset = CachedMultimodalDataset(reader, self.indices(), {"face": field}, extra)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=evaluation_sampler(dataset, self.trainer, "occlusion"),  # under DDP: each sample once
            num_workers=self.num_workers,
            collate_fn=passthrough_collate,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        """All kept split rows."""
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        """All kept split rows."""
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        """All kept split rows."""
        return self._loader()

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Standardise faces per image on the device (as for training) and make the mask float."""
        statistics = face_statistics(batch["face"])
        batch["face"] = normalize_face(batch["face"], statistics)
        batch["face_mean"], batch["face_std"] = statistics  # to map restored faces back to [0, 1]
        if "occlusion_mask" in batch:
            batch["occlusion_mask"] = batch["occlusion_mask"].float()
        return batch
