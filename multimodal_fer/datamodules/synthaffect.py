"""SynthAffect data module: generates the cache on first use, splits by subject, batches, device transforms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from multimodal_fer.datamodules.cached_dataset import CachedMultimodalDataset, passthrough_collate
from multimodal_fer.datamodules.device_transforms import (
    augment_face_and_depth,
    augment_points,
    face_statistics,
    normalize_audio,
    normalize_depth,
    normalize_face,
    normalize_points,
    standardize_signals,
)
from multimodal_fer.datamodules.online_occlusion import OnlineOcclusionDataset
from multimodal_fer.datamodules.physio_features import PhysioFeatureDataset, PhysioFeatureStandardizer
from multimodal_fer.datamodules.splits import subject_split
from multimodal_fer.datasets.synthaffect.generator import SynthAffectSettings
from multimodal_fer.errors import CorruptCacheError, DataError, StaleCacheError
from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES
from multimodal_fer.preprocessing.cache import MANIFEST_NAME, CacheReader
from multimodal_fer.preprocessing.physio_feature_cache import open_physio_feature_cache
from multimodal_fer.types import EXPR_UNLABELED, MODALITIES, SYNTHAFFECT_LABEL_SPACE, LabelSpace, validate_modalities

#: Label fields every batch carries.
_LABEL_FIELDS = ("expr", "au", "va", "subject", "occlusion_type")
#: Fields added for restoration training and online occlusion.
_RESTORATION_FIELDS = ("face_clean", "occlusion_mask", "landmarks")


class SynthAffectDataModule(pl.LightningDataModule):
    """The embedded default data set: generated on first use, cached, split by subject.

    Args:
        root: cache folder (created by ``prepare_data``).
        modalities: modalities to load, any subset of ``face, audio, depth, physio``.
        num_subjects: subjects to generate.
        samples_per_subject: samples per subject.
        image_size: face and depth side in pixels.
        audio_seconds: audio clip length.
        physio_seconds: physiological window length.
        occlusion_probability: share of occluded faces.
        val_subjects: subjects held out for validation.
        test_subjects: subjects held out for testing.
        batch_size: samples per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        augment: flip and photometric jitter of training faces (on the device).
        generation_workers: processes that generate the cache (None: all available CPUs, at most 8).
        seed: generation seed (also fixes the subject split; the training seed is ``seed_everything``).
        restoration_targets: also load ``face_clean`` (B, 3, H, W) and ``occlusion_mask`` (B, 1, H, W), for the
            restoration task; the clean face is standardised with its occluded face's statistics.
        online_occlusion_probability: share of training faces that get a fresh random occluder drawn on their
            clean face each time they are read (0 = off); needs no regeneration of the cache.
        online_occlusion_types: kinds drawn by the online occlusion.
        withheld_modalities: modalities to hide in every split: they stay in ``modalities`` (so the model keeps
            their encoders and loads its checkpoint), are not read, and are marked absent in every batch. Test a
            model with a modality removed: ``mfer test ... --data.init_args.withheld_modalities=[audio]``.
        clean_faces: feed the unoccluded render (cache field ``face_clean``) as the face modality in every split,
            for recognisers trained and validated without occluders (the usual protocol of occlusion studies);
            test them on occluders with an occlusion split.
        depth_input: what the ``depth`` modality holds: ``"map"``, the depth image (B, 2, H, W) after
            normalisation, or ``"points"``, the cache's point cloud (B, N, 6) of xyz + normals (Open3D, camera
            axes) centred and scaled to the unit sphere (:func:`normalize_points`; non-finite clouds are refused
            with their sample ids), for point-cloud encoders such as ``PointNetEncoder``. Training augmentation
            gives a cloud its face's flip, in-plane rotation and zoom in 3-D, plus a small turn about the
            vertical axis and jitter (:func:`augment_points`); without a face modality its own random draws.
        physio_features: also load the neurokit2 features of each physiological window and their validity flags
            from the side cache ``<root>/physio_features`` (compute it once with ``mfer physio-features --config
            ...``): batches gain ``physio_features`` float32 (B, F), standardised with statistics of valid
            training values (0 where invalid), and ``physio_features_valid`` bool (B, F); see
            :mod:`multimodal_fer.datamodules.physio_features`. Ignored when physio is not loaded.
        clip_frames: clip mode of the generator (part of the cache settings): 0 (the default) builds still faces
            only; T ≥ 3 also builds each sample's expression as a clip of T frames, onset → apex → offset (see
            :mod:`multimodal_fer.datasets.synthaffect.clip`). A clip cache has another fingerprint: give it its own
            ``root`` (e.g. ``data/synthaffect_clips``) so the still-face cache stays valid.
        face_clip: the face modality is the clip, uint8 (B, T, 3, H, W) in the cache, for ``FaceClipEncoder``
            (which reads the ``face`` key); needs ``clip_frames`` > 0. Frames are standardised one by one like still
            faces and augmented consistently within a clip (one warp and jitter per clip; depth gets the same
            warp). Without it a clip cache still serves still faces (the apex render), so static and dynamic
            models train on the same samples. Not combinable with restoration targets, online occlusion or clean
            faces (which exist for still faces only).
    """

    def __init__(
        self,
        root: str = "data/synthaffect",
        modalities: list[str] | None = None,
        num_subjects: int = 60,
        samples_per_subject: int = 48,
        image_size: int = 64,
        audio_seconds: float = 2.0,
        physio_seconds: float = 8.0,
        occlusion_probability: float = 0.3,
        val_subjects: int = 8,
        test_subjects: int = 12,
        batch_size: int = 64,
        num_workers: int = 2,
        augment: bool = True,
        generation_workers: int | None = None,
        seed: int = 0,
        restoration_targets: bool = False,
        online_occlusion_probability: float = 0.0,
        online_occlusion_types: list[str] | None = None,
        clean_faces: bool = False,
        withheld_modalities: list[str] | None = None,
        depth_input: Literal["map", "points"] = "map",
        physio_features: bool = False,
        clip_frames: int = 0,
        face_clip: bool = False,
    ) -> None:
        super().__init__()
        self.modalities = validate_modalities(modalities if modalities is not None else list(MODALITIES))
        self.root = Path(root)
        self.settings = SynthAffectSettings(
            num_subjects=num_subjects,
            samples_per_subject=samples_per_subject,
            image_size=image_size,
            audio_seconds=audio_seconds,
            physio_seconds=physio_seconds,
            occlusion_probability=occlusion_probability,
            clip_frames=clip_frames,
            seed=seed,
        )
        if val_subjects + test_subjects >= num_subjects:
            raise ValueError(
                f"val_subjects={val_subjects} + test_subjects={test_subjects} leaves no training subject out of "
                f"num_subjects={num_subjects}."
            )
        self.val_subjects = val_subjects
        self.test_subjects = test_subjects
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.generation_workers = generation_workers
        self.restoration_targets = restoration_targets
        if not 0.0 <= online_occlusion_probability <= 1.0:
            raise ValueError(f"online_occlusion_probability={online_occlusion_probability} must lie in [0, 1].")
        if online_occlusion_probability > 0 and "face" not in self.modalities:
            raise ValueError("online_occlusion_probability > 0 occludes faces, but the face modality is not loaded.")
        self.online_occlusion_probability = online_occlusion_probability
        self.online_occlusion_types = tuple(online_occlusion_types or OCCLUSION_TYPES)
        if clean_faces and (restoration_targets or online_occlusion_probability > 0):
            raise ValueError("clean_faces cannot be combined with restoration_targets or online occlusion.")
        self.clean_faces = clean_faces
        if depth_input not in ("map", "points"):
            raise ValueError(
                f"depth_input must be 'map' (depth images) or 'points' (point clouds), got {depth_input!r}."
            )
        self.depth_input = depth_input
        withheld = validate_modalities(withheld_modalities) if withheld_modalities else ()
        outside = [m for m in withheld if m not in self.modalities]
        if outside:
            raise ValueError(
                f"withheld_modalities {outside} are not among the modalities {list(self.modalities)}; a withheld "
                "modality is one the model has an encoder for but the data hides."
            )
        if withheld and len(withheld) == len(self.modalities):
            raise ValueError(f"Withholding every modality {list(withheld)} leaves nothing to predict from.")
        if "face" in withheld and (restoration_targets or online_occlusion_probability > 0 or clean_faces):
            raise ValueError(
                "The face modality is withheld, so restoration targets, online occlusion and clean faces "
                "have no faces to work on; drop one of the two settings."
            )
        self.withheld_modalities = withheld
        if face_clip:
            self._check_face_clip(clip_frames, restoration_targets, online_occlusion_probability, clean_faces)
        self.face_clip = face_clip
        self.reader: CacheReader | None = None
        self.splits: dict[str, np.ndarray] = {}
        self.physio_features = physio_features
        self.physio_feature_cache: CacheReader | None = None
        self.physio_feature_standardizer: PhysioFeatureStandardizer | None = None

    def _check_face_clip(
        self, clip_frames: int, restoration_targets: bool, online_occlusion_probability: float, clean_faces: bool
    ) -> None:
        """Refuse ``face_clip=True`` with settings that cannot give clips."""
        if clip_frames == 0:
            raise ValueError(
                "face_clip=True reads face clips, but clip_frames=0 builds a cache without them. Set "
                "data.init_args.clip_frames (e.g. 8) with a separate data.init_args.root (e.g. data/synthaffect_clips) "
                "and build it with `mfer prepare --config <your config>`, or use configs/encoders/face_clip_tcn.yaml."
            )
        if "face" not in self.modalities:
            raise ValueError("face_clip=True makes the face modality a clip, but the face modality is not loaded.")
        if restoration_targets or online_occlusion_probability > 0 or clean_faces:
            raise ValueError(
                "face_clip=True cannot be combined with restoration_targets, online occlusion or clean_faces: "
                "those exist for still faces only. Drop one of the settings."
            )

    # ----------------------------------------------------------------------------------------------- metadata
    @property
    def label_space(self) -> LabelSpace:
        """Expression classes, AU numbers and affect dimensions of SynthAffect."""
        return SYNTHAFFECT_LABEL_SPACE

    @property
    def face_media_allowed(self) -> bool:
        """Whether images of this data set's faces may be logged (SynthAffect's faces are generated: yes)."""
        return True

    @property
    def rebuild_command(self) -> str:
        """The command that rebuilds this cache, quoted in errors."""
        return f"mfer prepare --config <your config> --overwrite  (or delete {self.root})"

    @property
    def cache_fingerprint(self) -> str:
        """Fingerprint of the settings of this cache."""
        return self.settings.fingerprint()

    # ------------------------------------------------------------------------------------------------- cache
    def prepare(self, overwrite: bool = False) -> CacheReader:
        """Generate the cache if it is missing or incomplete (resuming), refuse or rebuild a stale one.

        Args:
            overwrite: rebuild even if a cache with other settings (or the same) is there.

        Returns:
            A reader of the complete cache.
        """
        from multimodal_fer.datasets.synthaffect.generator import build_cache
        from multimodal_fer.progress import generation_progress

        if not overwrite:
            try:
                return self._open_cache()
            except CorruptCacheError:
                pass  # missing or interrupted: (re)build below, resuming where possible
        elif self.root.exists():
            import shutil

            shutil.rmtree(self.root)
        with generation_progress(f"Generating SynthAffect ({self.settings.num_samples} samples)") as update:
            return build_cache(self.settings, self.root, num_workers=self.generation_workers, progress=update)

    def _open_cache(self) -> CacheReader:
        try:
            reader = CacheReader(
                self.root,
                expected_fingerprint=self.settings.fingerprint(),
                expected_settings=self.settings.fingerprint_settings(),
                rebuild_hint=self.rebuild_command,
            )
        except StaleCacheError as error:
            built = _manifest_settings(self.root)
            if self.settings.clip_frames and built is not None and not built.get("clip_frames"):
                raise StaleCacheError(
                    f"Cache at {self.root} has no face clips (it was built with clip_frames=0), but "
                    f"clip_frames={self.settings.clip_frames} asks for them. Give clips their own folder, e.g. "
                    "--data.init_args.root=data/synthaffect_clips, and build it with `mfer prepare --config <your "
                    "config>` (fit also builds it on first use); do not overwrite a still-face cache that other runs "
                    f"use. ({error})"
                ) from error
            raise
        if self.face_clip and "face_clip" not in reader.specs:
            raise CorruptCacheError(
                f"Cache at {self.root} has no field 'face_clip' although its settings ask for clips; it is damaged. "
                f"Rebuild it: {self.rebuild_command}."
            )
        return reader

    def prepare_data(self) -> None:
        """Generate the cache on first use (rank 0 only); refuse a stale cache with the rebuild command."""
        self.prepare(overwrite=False)

    def setup(self, stage: str | None = None) -> None:
        """Open the cache and split it by subject."""
        if self.reader is None:
            self.reader = self._open_cache()
            subjects = np.asarray(self.reader.array("subject"))
            self.splits = subject_split(subjects, self.val_subjects, self.test_subjects, self.settings.seed)
            if self.physio_features and "physio" in self.modalities and "physio" not in self.withheld_modalities:
                self._open_physio_features()

    def _open_physio_features(self) -> None:
        """Open the physiological feature side cache and fit the standardisation on the training split."""
        assert self.reader is not None
        hint = "mfer physio-features --config <your config>  (add --overwrite to replace a stale one)"
        self.physio_feature_cache = open_physio_feature_cache(self.reader, rebuild_hint=hint)
        train = np.sort(self.splits["train"])
        self.physio_feature_standardizer = PhysioFeatureStandardizer.fit(
            self.physio_feature_cache.array("features")[train], self.physio_feature_cache.array("valid")[train]
        )

    def au_positive_weight(self) -> torch.Tensor:
        """Per-AU BCE positive weight from the training split: negatives / positives, clipped to [1, 50].

        Returns:
            float32 (K,).
        """
        self.setup()
        assert self.reader is not None
        au = np.asarray(self.reader.array("au")[self.splits["train"]], dtype=np.float64)
        positives = np.nansum(au, axis=0)
        labelled = np.sum(~np.isnan(au), axis=0)
        weight = (labelled - positives) / np.maximum(positives, 1.0)
        return torch.from_numpy(np.clip(weight, 1.0, 50.0).astype(np.float32))

    def expression_class_counts(self) -> torch.Tensor:
        """Number of training-split samples of each expression class (unlabeled ``-1`` entries ignored).

        Returns:
            int64 (C,), C = ``label_space.num_expressions``.
        """
        self.setup()
        assert self.reader is not None
        expr = np.asarray(self.reader.array("expr")[self.splits["train"]], dtype=np.int64)
        num_classes = self.label_space.num_expressions
        labeled = expr[expr != EXPR_UNLABELED]
        if labeled.size and (labeled.min() < 0 or labeled.max() >= num_classes):
            raise CorruptCacheError(
                f"Expression labels outside [0, {num_classes}) in {self.root}; rebuild it: {self.rebuild_command}"
            )
        return torch.from_numpy(np.bincount(labeled, minlength=num_classes).astype(np.int64))

    # ----------------------------------------------------------------------------------------------- loaders
    def dataset(self, split: str) -> CachedMultimodalDataset | OnlineOcclusionDataset | PhysioFeatureDataset:
        """The dataset of one split (``train``, ``val`` or ``test``); training faces get online occlusion if set."""
        self.setup()
        assert self.reader is not None
        online = split == "train" and self.online_occlusion_probability > 0
        extra = _LABEL_FIELDS + (_RESTORATION_FIELDS if self.restoration_targets or online else ())
        fields = {
            m: ("face_clean" if m == "face" and self.clean_faces else self._field(m))
            for m in self.modalities
            if m not in self.withheld_modalities
        }
        dataset = CachedMultimodalDataset(self.reader, self.splits[split], fields, extra, self.withheld_modalities)
        source: CachedMultimodalDataset | OnlineOcclusionDataset = (
            OnlineOcclusionDataset(dataset, self.online_occlusion_probability, self.online_occlusion_types)
            if online
            else dataset
        )
        if self.physio_feature_cache is not None:
            return PhysioFeatureDataset(source, self.physio_feature_cache)
        return source

    def _field(self, modality: str) -> str:
        """The cache field a modality is read from (``points`` for depth as point clouds, ``face_clip`` for clips)."""
        if modality == "face" and self.face_clip:
            return "face_clip"
        return "points" if modality == "depth" and self.depth_input == "points" else modality

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=passthrough_collate,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (the last incomplete batch is dropped)."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches on held-out subjects."""
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches on held-out subjects."""
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Prediction batches (the test subjects)."""
        return self._loader("test", shuffle=False)

    def ordered_dataloader(self, split: str) -> DataLoader:
        """Every sample of one split in cache order, nothing dropped, for feature extraction and analysis.

        Batches still need :meth:`on_after_batch_transfer`, which augments nothing outside a training loop.

        Args:
            split: ``train``, ``val`` or ``test``.

        Returns:
            An unshuffled loader over the split.
        """
        return self._loader(split, shuffle=False)

    # -------------------------------------------------------------------------------------- device transform
    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Convert storage dtypes to model inputs on the device; augment training faces.

        Args:
            batch: as produced by :class:`CachedMultimodalDataset`.
            dataloader_idx: unused.

        Returns:
            The batch with ``face`` float (B, 3, H, W) (with ``face_clip``: float (B, T, 3, H, W), every frame
            standardised like a still face, training clips augmented as a whole), ``depth`` float (B, 2, H, W)
            (or (B, N, 6) points with ``depth_input="points"``), ``audio`` float (B, S) and ``physio`` float
            (B, C, T), as present; with restoration targets also ``face_clean`` float
            (B, 3, H, W) standardised with the occluded face's statistics, ``occlusion_mask`` float (B, 1, H, W)
            and those statistics as ``face_mean`` and ``face_std`` (B, 1, 1, 1); with ``physio_features`` also
            ``physio_features`` float32 (B, F) standardised (0 where invalid) and ``physio_features_valid`` bool (B, F).
        """
        if "face" in batch:
            statistics = face_statistics(batch["face"])
            batch["face"] = normalize_face(batch["face"], statistics)
            if "face_clean" in batch:
                batch["face_clean"] = normalize_face(batch["face_clean"], statistics)
                batch["face_mean"], batch["face_std"] = statistics  # to map restored faces back to [0, 1]
            if "occlusion_mask" in batch:
                batch["occlusion_mask"] = batch["occlusion_mask"].float()
        if "depth" in batch and self.depth_input == "points":
            try:
                batch["depth"] = normalize_points(batch["depth"], batch.get("index"))
            except DataError as error:
                raise CorruptCacheError(f"{error} In {self.root}: {self.rebuild_command}") from error
        elif "depth" in batch:
            batch["depth"] = normalize_depth(batch["depth"])
        if "audio" in batch:
            batch["audio"] = normalize_audio(batch["audio"])
        if "physio" in batch:
            batch["physio"] = standardize_signals(batch["physio"])
        if "physio_features" in batch and self.physio_feature_standardizer is not None:
            batch["physio_features"], batch["physio_features_valid"] = self.physio_feature_standardizer(
                batch["physio_features"], batch["physio_features_valid"]
            )
        training = self.trainer is not None and self.trainer.training
        if training and self.augment and "face" in batch:
            aligned = {name: batch[name] for name in ("face_clean", "occlusion_mask") if name in batch}
            batch["face"], depth = augment_face_and_depth(batch["face"], batch.get("depth"), aligned=aligned)
            batch.update(aligned)
            if depth is not None:
                batch["depth"] = depth
        elif training and self.augment and "depth" in batch and self.depth_input == "points":
            batch["depth"] = augment_points(batch["depth"])
        return batch


def _manifest_settings(root: Path) -> dict[str, Any] | None:
    """The settings recorded in the manifest of a complete cache at ``root``, or None if there is none to read."""
    try:
        settings = json.loads((root / MANIFEST_NAME).read_text()).get("settings")
    except (OSError, json.JSONDecodeError):
        return None
    return settings if isinstance(settings, dict) else None
