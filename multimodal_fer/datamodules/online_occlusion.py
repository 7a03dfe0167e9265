"""Training-time occlusion augmentation: draw a fresh synthetic occluder on clean faces as batches are read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from multimodal_fer.datamodules.cached_dataset import CachedMultimodalDataset
from multimodal_fer.datamodules.epoch_sampler import run_seed
from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES, FaceLandmarks, canonical_landmarks, occlude

#: Fields a batch must carry for online occlusion (``face_clean``, ``occlusion_mask``, ``occlusion_type`` and
#: ``landmarks`` are used where the cache has them: real data sets' faces count as clean, unoccluded).
REQUIRED_FIELDS: tuple[str, ...] = ("face",)


class OnlineOcclusionDataset(Dataset):
    """Wraps a cached dataset; each read re-occludes a share of the faces with a random kind.

    A chosen sample's ``face``, ``occlusion_mask`` and ``occlusion_type`` are replaced by a new occluder drawn
    on its ``face_clean`` (its ``face`` where the cache has no clean face: a real data set's), placed by its
    ``landmarks`` (detected, shipped or generated) when the batch has them. Batches without ``occlusion_mask`` and
    ``occlusion_type`` get them (zeros and -1 for the samples left alone). Other samples keep the
    cache's face (occluded or not), so the cache's occlusion rate still shows through. Draws come from the run's
    seed and the batch's sample positions alone, not from the reading process's random state, so runs with one
    seed repeat and a resumed fit draws what an uninterrupted one would (batches differ from epoch to epoch, and
    so do their draws).

    Args:
        dataset: a dataset whose batches hold :data:`REQUIRED_FIELDS` (uint8 faces (B, 3, H, W)).
        probability: share of samples that get a new occluder.
        kinds: occlusion kinds to draw from, uniformly.
        seed: seed of the draws (None: the run's seed, from ``seed_everything``).
        keep_clean: put the face before its new occluder into ``face_clean`` where the batch has none (a real
            data set's faces), so that the batch holds the pairs a restorer learns from.
        per_sample: draw each sample's occluder (whether it gets one, its kind and its shape) from the seed and
            its cache ``index`` alone, so a face gets the same occluder in every batch, epoch and run: the
            fixed occluded faces of a validation or test split. False (training): from the batch's positions.
    """

    def __init__(
        self,
        dataset: CachedMultimodalDataset,
        probability: float,
        kinds: Sequence[str] = OCCLUSION_TYPES,
        seed: int | None = None,
        keep_clean: bool = False,
        per_sample: bool = False,
    ) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"Online occlusion probability must lie in [0, 1], got {probability}.")
        unknown = [k for k in kinds if k not in OCCLUSION_TYPES]
        if unknown or not kinds:
            raise ValueError(f"Unknown occlusion kinds {unknown or '[]'}; choose from {list(OCCLUSION_TYPES)}.")
        self.dataset = dataset
        self.probability = float(probability)
        self.kinds = tuple(kinds)
        self.seed = run_seed() if seed is None else int(seed)
        self.keep_clean = keep_clean
        self.per_sample = per_sample

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int) -> dict[str, Any]:
        return self.__getitems__([position])

    def __getitems__(self, positions: Sequence[int]) -> dict[str, Any]:
        """Read a batch and re-occlude a random share of it (see the class docstring)."""
        batch = self.dataset.__getitems__(positions)
        missing = [name for name in REQUIRED_FIELDS if name not in batch]
        if missing:
            raise KeyError(f"Online occlusion needs the batch fields {missing}; load them from the cache.")
        if self.keep_clean and "face_clean" not in batch:
            batch["face_clean"] = batch["face"].clone()
        if self.per_sample:
            if "index" not in batch:
                raise KeyError("Per-sample occlusion draws need the batch field 'index' (cache indices).")
            rngs = [
                np.random.default_rng(np.random.SeedSequence([self.seed % 2**63, int(index)]))
                for index in batch["index"].tolist()
            ]
            chosen = np.asarray([i for i, one in enumerate(rngs) if one.random() < self.probability], dtype=np.int64)
        else:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed % 2**63, *map(int, positions)]))
            rngs = [rng] * batch["face"].shape[0]
            chosen = np.flatnonzero(rng.random(batch["face"].shape[0]) < self.probability)
        if chosen.size == 0 and "occlusion_mask" in batch and "occlusion_type" in batch:
            return batch
        faces = batch["face"].numpy().copy()
        size = faces.shape[0]
        if "occlusion_mask" in batch:
            masks = batch["occlusion_mask"].numpy().copy()
        else:
            masks = np.zeros((size, 1, *faces.shape[2:]), dtype=np.uint8)
        types = batch["occlusion_type"].numpy().copy() if "occlusion_type" in batch else np.full(size, -1, np.int8)
        clean = batch["face_clean"].numpy() if "face_clean" in batch else batch["face"].numpy()
        for i in chosen:
            rng = rngs[i]
            kind = self.kinds[int(rng.integers(len(self.kinds)))]
            image = np.ascontiguousarray(clean[i].transpose(1, 2, 0))
            landmarks = (
                FaceLandmarks.from_array(batch["landmarks"][i].numpy())
                if "landmarks" in batch
                else canonical_landmarks(min(image.shape[:2]))
            )
            occluded, mask = occlude(image, kind, rng, landmarks)
            faces[i] = occluded.transpose(2, 0, 1)
            masks[i] = mask[None]
            types[i] = OCCLUSION_TYPES.index(kind)
        batch["face"] = torch.from_numpy(faces)
        batch["occlusion_mask"] = torch.from_numpy(masks)
        batch["occlusion_type"] = torch.from_numpy(types)
        return batch
