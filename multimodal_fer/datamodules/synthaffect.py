"""SynthAffect's data module: the generic :class:`FERDataModule` with SynthAffect's generation settings as arguments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from multimodal_fer.corruption_conditions import Corruption
from multimodal_fer.datamodules.base import FERDataModule
from multimodal_fer.datasets.protocols import SplitProtocol
from multimodal_fer.datasets.synthaffect.adapter import SynthAffect
from multimodal_fer.datasets.synthaffect.generator import SynthAffectSettings
from multimodal_fer.errors import StaleCacheError
from multimodal_fer.preprocessing.cache import CacheReader
from multimodal_fer.preprocessing.dataset_cache import build_dataset_cache
from multimodal_fer.preprocessing.media_processor import PassThroughProcessor


def build_synthaffect_cache(
    settings: SynthAffectSettings,
    root: str | Path,
    num_workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CacheReader:
    """Generate SynthAffect into ``root`` through the generic cache builder (resuming an interrupted build).

    Args:
        settings: generation settings.
        root: cache folder.
        num_workers: generator processes (None: all CPUs up to 8; 0 or 1: in this process).
        progress: called with (samples done, total).

    Returns:
        A reader of the complete cache.
    """
    adapter = SynthAffect(settings)
    listing = adapter.list_samples(None)
    processor = PassThroughProcessor(adapter.field_specs())
    return build_dataset_cache(
        adapter, None, root, processor, listing, adapter.settings(), num_workers=num_workers, progress=progress
    )


class SynthAffectDataModule(FERDataModule):
    """The embedded default data set: generated on first use, cached, split by subject.

    Everything but the generation settings is :class:`FERDataModule`'s (see it for the loader, occlusion,
    withheld-modality, point-cloud, physiological-feature and clip options).

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
        augment_strength: multiplier of that augmentation's ranges, in [0, 4] (see
            :class:`~multimodal_fer.datamodules.base.FERDataModule`).
        generation_workers: processes that generate the cache (None: all available CPUs, at most 8).
        seed: generation seed (also fixes the subject split; the training seed is ``seed_everything``).
        restoration_targets: also load ``face_clean`` and ``occlusion_mask`` for the restoration task.
        online_occlusion_probability: share of training faces that get a fresh random occluder (0 = off).
        online_occlusion_types: kinds drawn by the online occlusion.
        clean_faces: feed the unoccluded render (``face_clean``) as the face modality in every split.
        withheld_modalities: modalities hidden in every split (kept in ``modalities``; marked absent).
        depth_input: ``"map"`` (depth images) or ``"points"`` (Open3D point clouds with normals).
        physio_features: also load the neurokit2 features side cache (``mfer physio-features --config ...``).
        clip_frames: clip mode of the generator (part of the cache settings): 0 builds still faces only; T ≥ 3
            also renders each expression as a clip of T frames, onset → apex → offset. A clip cache has another
            fingerprint: give it its own ``root`` (e.g. ``data/synthaffect_clips``).
        face_clip: the face modality is the clip (B, T, 3, H, W); needs ``clip_frames`` > 0.
        split: split protocol (None: ``SubjectHoldout`` with ``val_subjects`` and ``test_subjects``); e.g.
            ``SubjectKFold`` for the folds of ``mfer crossval``.
        evaluate_split: ``test`` or ``val``: the split ``mfer test`` scores (see :class:`FERDataModule`).
        test_corruption: degrade one modality of the test batches, e.g. ``{modality: audio, kind: noise,
            strength: 0.5}`` (see :class:`FERDataModule`).
        physio_normalisation: ``window`` or ``subject``: physiological signals z-scored per window, or with each
            subject's own statistics (see :class:`FERDataModule`).
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
        augment_strength: float = 1.0,
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
        split: SplitProtocol | None = None,
        test_corruption: Corruption | None = None,
        evaluate_split: Literal["test", "val"] = "test",
        physio_normalisation: Literal["window", "subject"] = "window",
    ) -> None:
        settings = SynthAffectSettings(
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
        if face_clip and clip_frames == 0:
            raise ValueError(
                "face_clip=True reads face clips, but clip_frames=0 builds a cache without them. Set "
                "data.init_args.clip_frames (e.g. 8) with a separate data.init_args.root (e.g. data/synthaffect_clips) "
                "and build it with `mfer prepare --config <your config>`, or use configs/encoders/face_clip_tcn.yaml."
            )
        super().__init__(
            dataset=SynthAffect(settings, val_subjects=val_subjects, test_subjects=test_subjects),
            root=root,
            modalities=modalities,
            split=split,
            batch_size=batch_size,
            num_workers=num_workers,
            augment=augment,
            augment_strength=augment_strength,
            preparation_workers=generation_workers,
            restoration_targets=restoration_targets,
            online_occlusion_probability=online_occlusion_probability,
            online_occlusion_types=online_occlusion_types,
            clean_faces=clean_faces,
            withheld_modalities=withheld_modalities,
            depth_input=depth_input,
            physio_features=physio_features,
            face_clip=face_clip,
            test_corruption=test_corruption,
            evaluate_split=evaluate_split,
            physio_normalisation=physio_normalisation,
        )
        self.settings = settings
        self.val_subjects = val_subjects
        self.test_subjects = test_subjects

    def _open_cache(self, listing=None) -> CacheReader:  # noqa: ANN001 - same signature as the base
        """Open the cache; a still-face cache asked for clips gets a message about giving clips their own folder."""
        try:
            return super()._open_cache(listing)
        except StaleCacheError as error:
            built = self._built_settings()
            if self.settings.clip_frames and built is not None and not built.get("clip_frames"):
                raise StaleCacheError(
                    f"Cache at {self.root} has no face clips (it was built with clip_frames=0), but "
                    f"clip_frames={self.settings.clip_frames} asks for them. Give clips their own folder, e.g. "
                    "--data.init_args.root=data/synthaffect_clips, and build it with `mfer prepare --config <your "
                    "config>` (fit also builds it on first use); do not overwrite a still-face cache that other runs "
                    f"use. ({error})"
                ) from error
            raise
