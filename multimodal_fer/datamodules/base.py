"""One data module for every data set: cache → splits → loaders → class statistics → device transforms.

:class:`FERDataModule` takes a data set adapter (:class:`~multimodal_fer.datasets.base.DatasetAdapter`), the
folder of its raw files as distributed (``raw_root``) and the cache folder (``root``). ``prepare`` lists the raw
files, fingerprints the listing and every preprocessing setting, and builds the cache in worker processes
(resumable; unusable samples go to ``failures.jsonl``); ``setup`` opens the cache, drops the failed samples and
splits the rest by the data set's protocol (or the one the config chooses), never putting a subject in two
splits. Online occlusion, withheld modalities, clips, point clouds and physiological features work for every data
set that has the fields they need.

Training needs only the cache: the raw files, and the libraries that read them, are needed to prepare it.

Other code asks a data module only what :class:`FERData` declares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from multimodal_fer.corruption_conditions import Corruption
from multimodal_fer.datamodules.cached_dataset import CachedMultimodalDataset, passthrough_collate
from multimodal_fer.datamodules.corruption import FaceOcclusionDataset, corrupt_batch
from multimodal_fer.datamodules.device_transforms import (
    augment_face_and_depth,
    augment_points,
    check_augment_strength,
    face_statistics,
    normalize_audio,
    normalize_depth,
    normalize_face,
    normalize_points,
    standardize_signals,
)
from multimodal_fer.datamodules.epoch_sampler import EpochShuffleSampler, next_training_epoch, run_seed
from multimodal_fer.datamodules.evaluation_sampler import evaluation_sampler
from multimodal_fer.datamodules.evaluation_subset import EvaluationSubset, select_subset, subset_name
from multimodal_fer.datamodules.label_mapping import LabelMappedDataset, LabelMapper, resolve_label_space
from multimodal_fer.datamodules.modality_presence import check_presence, describe_presence, presence_counts
from multimodal_fer.datamodules.online_occlusion import OnlineOcclusionDataset
from multimodal_fer.datamodules.physio_feature_batches import PhysioFeatureDataset, PhysioFeatureStandardizer
from multimodal_fer.datamodules.subject_normalisation import (
    PHYSIO_NORMALISATIONS,
    PhysioNormalisation,
    SubjectSignalNormaliser,
    subject_statistics,
)
from multimodal_fer.datasets.base import SPLIT_NAMES, DatasetAdapter, Listing, check_modalities
from multimodal_fer.datasets.protocols import SplitProtocol
from multimodal_fer.errors import CorruptCacheError, DataError, StaleCacheError
from multimodal_fer.fingerprints import fingerprint
from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES
from multimodal_fer.preprocessing.cache import MANIFEST_NAME, CacheReader, describe_settings_change
from multimodal_fer.preprocessing.dataset_cache import build_dataset_cache, cache_settings, read_sample_records
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing, MediaProcessor, PassThroughProcessor
from multimodal_fer.preprocessing.physio_feature_cache import open_physio_feature_cache
from multimodal_fer.types import EXPR_UNLABELED, LabelSpace, validate_modalities

#: Label and bookkeeping fields a batch carries when the cache has them.
_LABEL_FIELDS = ("expr", "au", "va", "subject", "occlusion_type", "sequence", "frame")
#: Fields added for restoration training and online occlusion.
_RESTORATION_FIELDS = ("face_clean", "occlusion_mask", "landmarks")
#: Seed of the occluders drawn on a real data set's validation and test faces for restoration targets: fixed, so
#: every run is scored on the same occluded faces.
EVALUATION_OCCLUSION_SEED = 0
#: Settings that depend on the raw files (checked only when they are there, in ``prepare``).
_LISTING_SETTINGS = ("listing", "num_samples")


@runtime_checkable
class FERData(Protocol):
    """What tasks, callbacks and results files may ask of any data module of the package.

    :class:`FERDataModule` (every data set) and :class:`~multimodal_fer.datamodules.OcclusionSplitDataModule`
    (test-time occlusion splits) have it; :class:`FERDataModule` adds preparation (``prepare``), ``splits`` and
    the training statistics (``au_positive_weight``, ``expression_class_counts``).
    """

    @property
    def label_space(self) -> LabelSpace:
        """Expression classes, AU numbers and affect dimensions of the data."""

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities the model gets encoders for."""

    @property
    def cache_fingerprint(self) -> str:
        """Fingerprint of the cache the data come from."""

    @property
    def face_media_allowed(self) -> bool:
        """Whether images of the data set's faces may be logged."""

    @property
    def image_size(self) -> int:
        """Side of the face crops in pixels."""


class FERDataModule(pl.LightningDataModule):
    """Any data set through its adapter: prepared into a cache, split by subject, batched, transformed on the device.

    Args:
        dataset: the data set's adapter, e.g. ``{class_path: multimodal_fer.datasets.RAFDB}``.
        root: cache folder (built by ``mfer prepare`` or on first use).
        raw_root: the data set's folder as it is distributed (not needed for generated data sets, nor to train
            from a complete cache).
        modalities: modalities to load (default: all the data set has).
        split: split protocol (default: the data set's usual one, e.g. its official splits).
        preprocessing: face detection and alignment, audio and physiology resampling and clip settings for raw files
            (ignored by generated data sets, which are made at their own settings).
        batch_size: samples per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        augment: flip and photometric jitter of training faces (on the device).
        augment_strength: multiplier of that augmentation's rotation, scale, translation, brightness and contrast
            ranges, in [0, 4] (1: ±8°, 0.92–1.08, ±6 %, ±0.3, 0.8–1.2; 2 doubles each; flips stay p = 0.5); see
            :func:`~multimodal_fer.datamodules.device_transforms.augment_face_and_depth`.
        preparation_workers: processes that build the cache (None: all available CPUs, at most 8).
        restoration_targets: also load ``face_clean`` (B, 3, H, W) and ``occlusion_mask`` (B, 1, H, W), for the
            restoration task; the clean face is standardised with its occluded face's statistics. A real data
            set's cache has no such pairs: with ``online_occlusion_probability`` > 0 its faces are the clean ones,
            and that share of them gets a synthetic occluder, fresh on every read in training and fixed per face
            (seed :data:`EVALUATION_OCCLUSION_SEED` and the cache index) in validation and test, so a restorer
            trains on the faces it will restore.
        online_occlusion_probability: share of training faces that get a fresh random occluder each time they
            are read (0 = off), placed by the cache's landmarks (detected or shipped, else canonical positions).
        online_occlusion_types: kinds drawn by the online occlusion.
        clean_faces: feed the cache's unoccluded face (``face_clean``, generated data only) as the face modality.
            With ``online_occlusion_probability`` the online occluders are drawn on these clean faces and the other
            training faces stay clean (their ``occlusion_mask`` is empty and ``occlusion_type`` -1).
        withheld_modalities: modalities to hide in every split: they stay in ``modalities`` (so the model keeps
            their encoders), are not read, and are marked absent. ``--data.init_args.withheld_modalities=[audio]``.
        depth_input: ``"map"`` (depth images (B, 2, H, W)) or ``"points"`` (point clouds (B, N, 6)).
        physio_features: also load neurokit2 features from the side cache ``<root>/physio_features`` (build it with
            ``mfer physio-features --config ...``).
        face_clip: the face modality is the cache's clip, uint8 (B, T, 3, H, W), for ``FaceClipEncoder``.
        test_corruption: degrade one modality of the test (and predict) batches, never training or validation:
            ``{modality: audio, kind: noise, strength: 0.5}`` (kinds ``noise``, ``drop``, ``occlusion``; strength in
            [0, 1]; see :mod:`multimodal_fer.corruption_conditions`). Draws depend on its seed and each sample's
            cache index only, so every run and every model gets the same corrupted test set; results go to
            ``results-test-<kind>-<modality>-<strength>.json``.
        evaluate_split: the split ``mfer test`` evaluates: ``test`` (held-out subjects), or ``val`` to score the
            validation subjects (``results-val.json``; with ``--results.predictions=true`` its predictions let
            ``mfer report`` tune AU thresholds on validation data, never on test data).
        physio_normalisation: how physiological signals are scaled on the device: ``window`` (each window and
            channel z-scored with its own statistics) or ``subject`` (each channel z-scored with the statistics of
            all of its subject's windows, every split, labels never used: a test subject's unlabelled signals
            are used, as usual; computed once per cache into ``<root>/physio_subject_statistics.json``; with
            ``physio_features`` the features are standardised per subject too). See
            :mod:`multimodal_fer.datamodules.subject_normalisation`.
        test_subset: a list file naming samples of the ``evaluate_split`` split, one per line (RAN's
            Occlusion-RAF-DB list, for instance): ``mfer test`` scores only those and writes
            ``results-test-subset-<list name>.json``, which records the list's digest, its entry count and the
            named samples that failed preparation. Training, validation and ``predict`` are unchanged. Matching
            rules and errors: :mod:`multimodal_fer.datamodules.evaluation_subset`.
        label_space: the label space batches carry (default: the data set's own): ``union`` (every class, AU and
            dimension the package names), a run folder or checkpoint (the space its model was trained in, to test
            it on this data set), or ``{expressions: [...], action_units: [...], dimensions: [...]}``. Labels are
            mapped by name; what this data set does not label is unlabelled, and skipped by losses and metrics
            (:mod:`multimodal_fer.datamodules.label_mapping`). The heads are sized from it.
    """

    def __init__(
        self,
        dataset: DatasetAdapter,
        root: str,
        raw_root: str | None = None,
        modalities: list[str] | None = None,
        split: SplitProtocol | None = None,
        preprocessing: MediaPreprocessing | None = None,
        batch_size: int = 64,
        num_workers: int = 2,
        augment: bool = True,
        augment_strength: float = 1.0,
        preparation_workers: int | None = None,
        restoration_targets: bool = False,
        online_occlusion_probability: float = 0.0,
        online_occlusion_types: list[str] | None = None,
        clean_faces: bool = False,
        withheld_modalities: list[str] | None = None,
        depth_input: Literal["map", "points"] = "map",
        physio_features: bool = False,
        face_clip: bool = False,
        test_corruption: Corruption | None = None,
        evaluate_split: Literal["test", "val"] = "test",
        physio_normalisation: PhysioNormalisation = "window",
        test_subset: str | None = None,
        label_space: dict[str, list] | str | None = None,
    ) -> None:
        super().__init__()
        self.adapter = dataset
        self._label_space = resolve_label_space(label_space, dataset.label_space)
        mapped = self._label_space != dataset.label_space
        self.label_mapper = LabelMapper(dataset.label_space, self._label_space) if mapped else None
        #: Its name in a :class:`~multimodal_fer.datamodules.CombinedDataModule` (results: ``results-test-<name>``).
        self.member_name: str | None = None
        self.root = Path(root)
        self.raw_root = Path(raw_root).expanduser() if raw_root else None
        self._modalities = validate_modalities(
            modalities if modalities is not None else list(dataset.provided_modalities)
        )
        check_modalities(dataset, self._modalities)
        self.protocol = split if split is not None else dataset.default_protocol()
        self.preprocessing = preprocessing if preprocessing is not None else MediaPreprocessing()
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1.")
        if num_workers < 0:
            raise ValueError(f"num_workers={num_workers} must be 0 or more.")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.augment_strength = check_augment_strength(augment_strength)
        self.preparation_workers = preparation_workers
        self.restoration_targets = restoration_targets
        if not 0.0 <= online_occlusion_probability <= 1.0:
            raise ValueError(f"online_occlusion_probability={online_occlusion_probability} must lie in [0, 1].")
        if online_occlusion_probability > 0 and "face" not in self._modalities:
            raise ValueError("online_occlusion_probability > 0 occludes faces, but the face modality is not loaded.")
        self.online_occlusion_probability = online_occlusion_probability
        self.online_occlusion_types = tuple(online_occlusion_types or OCCLUSION_TYPES)
        if clean_faces and restoration_targets:
            raise ValueError("clean_faces cannot be combined with restoration_targets.")
        self.clean_faces = clean_faces
        if depth_input not in ("map", "points"):
            raise ValueError(
                f"depth_input must be 'map' (depth images) or 'points' (point clouds), got {depth_input!r}."
            )
        self.depth_input = depth_input
        withheld = validate_modalities(withheld_modalities) if withheld_modalities else ()
        outside = [m for m in withheld if m not in self._modalities]
        if outside:
            raise ValueError(
                f"withheld_modalities {outside} are not among the modalities {list(self._modalities)}; a withheld "
                "modality is one the model has an encoder for but the data hides."
            )
        if withheld and len(withheld) == len(self._modalities):
            raise ValueError(f"Withholding every modality {list(withheld)} leaves nothing to predict from.")
        if "face" in withheld and (restoration_targets or online_occlusion_probability > 0 or clean_faces):
            raise ValueError(
                "The face modality is withheld, so restoration targets, online occlusion and clean faces "
                "have no faces to work on; drop one of the two settings."
            )
        self.withheld_modalities = withheld
        if face_clip:
            if "face" not in self._modalities:
                raise ValueError("face_clip=True makes the face modality a clip, but the face modality is not loaded.")
            if restoration_targets or online_occlusion_probability > 0 or clean_faces:
                raise ValueError(
                    "face_clip=True cannot be combined with restoration_targets, online occlusion or clean_faces: "
                    "those exist for still faces only. Drop one of the settings."
                )
        self.face_clip = face_clip
        self.physio_features = physio_features
        self.test_corruption = self._checked_corruption(test_corruption)
        if evaluate_split not in ("test", "val"):
            raise ValueError(f"evaluate_split={evaluate_split!r}: choose 'test' or 'val'.")
        self.evaluate_split = evaluate_split
        if physio_normalisation not in PHYSIO_NORMALISATIONS:
            raise ValueError(
                f"physio_normalisation={physio_normalisation!r}: choose 'window' (each window z-scored on its own) or "
                "'subject' (z-scored with its subject's statistics)."
            )
        if physio_normalisation == "subject" and "physio" not in self._modalities:
            raise ValueError(
                "physio_normalisation='subject' normalises physiological signals, but the physio modality is not "
                f"loaded ({list(self._modalities)}); drop the setting or load physio."
            )
        self.physio_normalisation = physio_normalisation
        if test_subset is not None and not Path(test_subset).is_file():
            raise DataError(f"test_subset {test_subset!r} is not a file; give the path of a list of sample names.")
        self.test_subset = test_subset
        self.subset: EvaluationSubset | None = None
        self.physio_normaliser: SubjectSignalNormaliser | None = None
        self.reader: CacheReader | None = None
        self.splits: dict[str, np.ndarray] = {}
        self.physio_feature_cache: CacheReader | None = None
        self.physio_feature_standardizer: PhysioFeatureStandardizer | None = None

    def _checked_corruption(self, corruption: Corruption | None) -> Corruption | None:
        """The test corruption, refused where it cannot apply (with the setting to change)."""
        if corruption is None:
            return None
        if isinstance(corruption, dict):  # built in code from a mapping
            corruption = Corruption(**corruption)
        name = corruption.modality
        if name not in self._modalities or name in self.withheld_modalities:
            raise ValueError(
                f"test_corruption degrades {name!r}, which this data module "
                + ("withholds" if name in self.withheld_modalities else f"does not load ({list(self._modalities)})")
                + "; corrupt a modality the model reads, or drop the setting."
            )
        if name == "physio" and self.physio_features:
            raise ValueError(
                "test_corruption of physio degrades the signals, but physio_features=True also feeds features "
                "computed offline from the clean signals; test without physio_features or corrupt another modality."
            )
        if name == "depth" and corruption.kind == "occlusion" and self.depth_input == "points":
            raise ValueError(
                "test_corruption occlusion of depth cuts a patch from depth maps; with depth_input=points there is "
                "none. Use kind noise or drop, or depth_input=map."
            )
        return corruption

    # ----------------------------------------------------------------------------------------------- metadata
    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities loaded (withheld ones included: the model keeps their encoders)."""
        return self._modalities

    @property
    def label_space(self) -> LabelSpace:
        """The batches' label space: the data set's own, or the ``label_space`` asked for (heads are sized from it)."""
        return self._label_space

    @property
    def face_media_allowed(self) -> bool:
        """Whether the data set's card allows logging its faces (generated faces: yes; real people: no by default)."""
        return self.adapter.face_media_allowed

    @property
    def image_size(self) -> int:
        """Side of the cached face crops in pixels."""
        if self.adapter.generated:
            face = next((s for s in self.adapter.field_specs() if s.name == "face"), None)
            return int(face.shape[-1]) if face is not None else 0
        return self.preprocessing.image_size

    @property
    def rebuild_command(self) -> str:
        """The command that rebuilds this cache, quoted in errors."""
        raw = "" if self.adapter.generated else " --data.init_args.raw_root <the raw files>"
        return f"mfer prepare --config <your config>{raw} --overwrite  (or delete {self.root})"

    @property
    def test_condition(self) -> str:
        """Name of the condition its test split is tested under: ``test``, ``test-noise-audio-0.50``, ...

        Parts follow ``test`` in this order: the member's name in a combined data module, ``subset-<list name>``,
        ``withheld-<modalities>``, ``clean-faces``, the test corruption.

        Results files are named after it (``results-<condition>.json``), so tests under several conditions of
        one run sit side by side.
        """
        parts = [self.evaluate_split, *([self.member_name] if self.member_name else [])]
        if self.test_subset is not None:
            parts.append("subset-" + (self.subset.name if self.subset is not None else subset_name(self.test_subset)))
        if self.withheld_modalities:
            parts.append("withheld-" + "-".join(sorted(self.withheld_modalities)))
        if self.clean_faces:
            parts.append("clean-faces")
        if self.test_corruption is not None:
            parts.append(self.test_corruption.suffix)
        return "-".join(parts)

    @property
    def audio_sample_rate(self) -> int:
        """Sampling rate in Hz of the cache's audio waveforms (the generator's, or the preparation's)."""
        generation = getattr(self.adapter, "generation", None)
        if self.adapter.generated and generation is not None:
            return int(generation.audio_sample_rate)
        return int(self.preprocessing.audio_sample_rate)

    @property
    def physio_channels(self) -> int | None:
        """Channels C of the cache's physiological signals (C, T); None without them or before set-up."""
        spec = self.reader.specs.get("physio") if self.reader is not None and "physio" in self.modalities else None
        return int(spec.shape[0]) if spec is not None else None

    @property
    def cache_fingerprint(self) -> str:
        """Fingerprint of the cache (the generated data's settings, or the built cache's manifest)."""
        if self.adapter.generated:
            return fingerprint(self.adapter.settings())
        return self._open_cache().fingerprint

    # ------------------------------------------------------------------------------------------------- cache
    def _processor(self, listing: Listing | None = None) -> MediaProcessor | PassThroughProcessor:
        if self.adapter.generated:
            return PassThroughProcessor(self.adapter.field_specs())
        samples = listing.samples if listing is not None else []
        subjects = sorted({s.subject for s in samples})
        sequences = sorted({s.sequence for s in samples if s.sequence is not None})
        return MediaProcessor(
            self.preprocessing,
            self.adapter.label_space,
            self.adapter.modalities,
            subjects,
            sequences,
            physio=self.adapter.physio_layout(),
            sample_fields=self.adapter.sample_fields(),
        )

    def _expected_settings(self, listing: Listing | None) -> dict[str, Any]:
        """The settings a cache must have; without a listing, those that do not depend on the raw files."""
        if self.adapter.generated:
            return self.adapter.settings()
        if listing is not None:
            return cache_settings(self.adapter, self._processor(listing), listing)
        return {
            "dataset": self.adapter.name,
            "adapter_version": self.adapter.version,
            "adapter": self.adapter.settings(),
            "processor": self._processor().settings(),
        }

    def _open_cache(self, listing: Listing | None = None) -> CacheReader:
        """Open the complete cache, refusing a stale or damaged one with the command that rebuilds it."""
        if self.reader is not None and listing is None:
            return self.reader
        expected = self._expected_settings(listing)
        if self.adapter.generated or listing is not None:
            return CacheReader(
                self.root,
                expected_fingerprint=fingerprint(expected),
                expected_settings=expected,
                rebuild_hint=self.rebuild_command,
            )
        reader = CacheReader(self.root, rebuild_hint=self.rebuild_command)
        built = {k: v for k, v in reader.manifest.get("settings", {}).items() if k not in _LISTING_SETTINGS}
        if built != expected:
            raise StaleCacheError(
                f"Cache at {self.root} was built with other settings ({describe_settings_change(built, expected)}). "
                f"Rebuild it: {self.rebuild_command}; or point the data root to another folder."
            )
        return reader

    def prepare(self, overwrite: bool = False, check_raw_files: bool = True) -> CacheReader:
        """Build the cache if it is missing, resume an interrupted build, refuse a stale or damaged one.

        Args:
            overwrite: rebuild even if a complete cache is there.
            check_raw_files: list the raw files again to refuse a cache built from other files (``mfer prepare``
                does; a fit that finds a complete cache checks only the settings, so it need not list a large
                data set at every start).

        Returns:
            A reader of the complete cache.

        Raises:
            StaleCacheError: a complete cache built from other settings or other raw files (without overwrite).
            CorruptCacheError: a complete cache whose files are damaged (without overwrite); never rebuilt
                silently.
            DataError: ``root`` is a non-empty folder that is not a cache (it is never deleted).
        """
        from multimodal_fer.progress import generation_progress

        listing = None
        raw_root = None
        if not self.adapter.generated:
            complete = (self.root / MANIFEST_NAME).exists()
            if complete and not overwrite and (self.raw_root is None or not check_raw_files):
                return self._open_cache()  # training from a prepared cache: the raw files need not be here
            raw_root = self.adapter.check_raw_root(self.raw_root)
            listing = self.adapter.list_samples(raw_root)
        complete = (self.root / MANIFEST_NAME).exists()
        if complete and not overwrite:
            return self._open_cache(listing)
        is_cache = complete or (self.root / "build.json").exists()
        if self.root.exists() and any(self.root.iterdir()) and not is_cache:
            raise DataError(
                f"{self.root} is a folder with other files in it, not a cache (no manifest.json or build.json); choose "
                "an empty or new folder for --data.init_args.root, or delete it yourself (nothing was deleted)."
            )
        if overwrite and self.root.exists():
            import shutil

            shutil.rmtree(self.root)
        if listing is None:
            listing = self.adapter.list_samples(None)
        processor = self._processor(listing)
        settings = self._expected_settings(listing)
        verb = "Generating" if self.adapter.generated else "Preparing"
        label = "SynthAffect" if self.adapter.name == "synthaffect" else self.adapter.name
        with generation_progress(f"{verb} {label} ({len(listing.samples)} samples)") as update:
            reader = build_dataset_cache(
                self.adapter,
                raw_root,
                self.root,
                processor,
                listing,
                settings,
                num_workers=self.preparation_workers,
                progress=update,
            )
        self.reader = None
        return reader

    def prepare_data(self) -> None:
        """Build the cache on first use (rank 0 only); refuse a stale or damaged cache with the rebuild command.

        A complete cache is checked against the settings only; ``mfer prepare`` also checks it against the raw files.
        """
        self.prepare(overwrite=False, check_raw_files=False)

    def setup(self, stage: str | None = None) -> None:
        """Open the cache, drop failed samples and split the rest by the protocol."""
        if self.reader is not None:
            return
        reader = self._open_cache()
        if self.face_clip and "face_clip" not in reader.specs:
            raise CorruptCacheError(
                f"Cache at {self.root} has no face clips ('face_clip'); build one with clips (clip_frames > 0) in "
                f"its own folder: {self.rebuild_command}."
            )
        usable = reader.usable
        subjects = self._usable_subjects(reader)
        official = self._official_splits(reader)[usable]
        positions = self.protocol.split_recordings(subjects, official, self._recordings(reader, usable))
        self.splits = {name: usable[positions[name]] for name in ("train", "val", "test")}
        empty = [name for name, idx in self.splits.items() if idx.size == 0]
        if empty:
            raise DataError(
                f"The {self.protocol.describe()} split of {self.root} leaves {empty} empty; choose another protocol "
                "(--data.init_args.split ...) or check the data set's summary.json."
            )
        self._check_presence(reader)
        if self.test_subset is not None:
            self.subset = select_subset(
                self.test_subset, read_sample_records(self.root), usable, self.splits, self.evaluate_split
            )
            described = self.subset.describe()
            rank_zero_info(
                f"Testing {described['evaluated']} samples of the {self.evaluate_split} split listed in "
                f"{self.test_subset} ({described['entries']} entries, {described['repeated']} repeated, "
                f"{len(described['failed_preparation'])} failed preparation)."
            )
        self.reader = reader
        reads_physio = "physio" in self._modalities and "physio" not in self.withheld_modalities
        if self.physio_normalisation == "subject" and reads_physio:
            self.physio_normaliser = SubjectSignalNormaliser(subject_statistics(reader))
        if self.physio_features and reads_physio:
            self._open_physio_features()

    def _check_presence(self, reader: CacheReader) -> None:
        """Log how many samples of each split hold each modality; refuse one that no sample of a split holds.

        Raises:
            DataError: a loaded (not withheld) modality present in 0 samples of a split, with the counts and the
                cache's ``failures.jsonl`` (:func:`~multimodal_fer.datamodules.modality_presence.check_presence`).
        """
        read = [m for m in self._modalities if m not in self.withheld_modalities]
        counts = presence_counts(reader, self.splits, read)
        sizes = {name: int(indices.size) for name, indices in self.splits.items()}
        rank_zero_info(
            f"{self.adapter.name} cache {self.root} ({self.protocol.describe()}): samples holding each modality: "
            + describe_presence(counts, sizes, self.withheld_modalities)
        )
        check_presence(counts, sizes, self.root, self.summary(), self.adapter.name, self.rebuild_command)

    def subjects(self) -> tuple[str, ...]:
        """The distinct subjects of the cache's usable samples, sorted: what subject protocols split.

        Leave-one-subject-out is ``SubjectKFold`` with ``num_folds=len(subjects())`` (``mfer crossval --folds loso``).
        """
        return tuple(sorted({str(subject) for subject in self._usable_subjects(self._open_cache())}))

    @staticmethod
    def _usable_subjects(reader: CacheReader) -> np.ndarray:
        """(U,) subject of each usable sample: the data set's subject names where the manifest lists them."""
        subjects = np.asarray(reader.array("subject"))[reader.usable]
        names = reader.manifest.get("subjects")
        if names:  # protocols see the data set's subject names (ExplicitSubjects lists them); same order as indices
            subjects = np.asarray(names, dtype=object)[subjects]
        return subjects

    @staticmethod
    def _recordings(reader: CacheReader, usable: np.ndarray) -> np.ndarray | None:
        """(U,) recording (sequence) name of each usable sample ("" for none), or None for caches without them."""
        names = reader.manifest.get("sequences")
        if "sequence" not in reader.specs or not names:
            return None
        codes = np.asarray(reader.array("sequence"), dtype=np.int64)[usable]
        return np.asarray(["", *names], dtype=object)[codes + 1]

    @staticmethod
    def _official_splits(reader: CacheReader) -> np.ndarray:
        """(N,) official split names ("" for none) from the cache's ``split`` field, if it has one."""
        if "split" not in reader.specs:
            return np.full(reader.num_samples, "", dtype=object)
        codes = np.asarray(reader.array("split"), dtype=np.int64)
        names = np.array(["", *SPLIT_NAMES], dtype=object)
        return names[codes + 1]

    def _open_physio_features(self) -> None:
        """Open the physiological feature side cache and fit the standardisation on the training split."""
        assert self.reader is not None
        hint = "mfer physio-features --config <your config>  (add --overwrite to replace a stale one)"
        self.physio_feature_cache = open_physio_feature_cache(self.reader, rebuild_hint=hint)
        train = np.sort(self.splits["train"])
        features, valid = self.physio_feature_cache.array("features"), self.physio_feature_cache.array("valid")
        if self.physio_normalisation == "subject":
            usable = self.reader.usable
            codes = np.asarray(self.reader.array("subject"), dtype=np.int64)
            self.physio_feature_standardizer = PhysioFeatureStandardizer.fit_per_subject(
                features[usable], valid[usable], codes[usable], np.isin(usable, train), int(codes.max()) + 1
            )
        else:
            self.physio_feature_standardizer = PhysioFeatureStandardizer.fit(features[train], valid[train])

    def _built_settings(self) -> dict[str, Any] | None:
        """The settings recorded in the manifest of a complete cache at ``root``, or None if there is none to read."""
        try:
            settings = json.loads((self.root / MANIFEST_NAME).read_text()).get("settings")
        except (OSError, json.JSONDecodeError):
            return None
        return settings if isinstance(settings, dict) else None

    def sample_records(self) -> list[dict[str, Any]]:
        """Per cache index: key, subject, split, source, sequence and frame (empty for generated data)."""
        return read_sample_records(self.root)

    def summary(self) -> dict[str, Any]:
        """The cache's ``summary.json`` (empty if it has none)."""
        path = self.root / "summary.json"
        return json.loads(path.read_text()) if path.exists() else {}

    # ------------------------------------------------------------------------------------- class statistics
    def au_positive_weight(self) -> torch.Tensor:
        """Per-AU BCE positive weight from the training split: negatives / positives, clipped to [1, 50].

        Returns:
            float32 (K,), K = ``label_space.num_action_units``.
        """
        self.setup()
        return au_positive_weight_of(self.training_labels()[1])

    def expression_class_counts(self) -> torch.Tensor:
        """Number of training-split samples of each expression class (unlabeled ``-1`` entries ignored).

        Returns:
            int64 (C,), C = ``label_space.num_expressions``.
        """
        return expression_counts_of(self.training_labels()[0], self.label_space.num_expressions)

    def training_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Expression codes int64 (N,) and AU labels float32 (N, K) of the training split, in :attr:`label_space`.

        Raises:
            CorruptCacheError: an expression code outside the data set's classes (a damaged cache).
        """
        self.setup()
        assert self.reader is not None
        train = self.splits["train"]
        expr = np.asarray(self.reader.array("expr")[train], dtype=np.int64)
        own = self.adapter.label_space
        labelled = expr[expr != EXPR_UNLABELED]
        if labelled.size and (labelled.min() < 0 or labelled.max() >= own.num_expressions):
            raise CorruptCacheError(
                f"Expression labels outside [0, {own.num_expressions}) in {self.root}; rebuild it: "
                f"{self.rebuild_command}"
            )
        if "au" in self.reader.specs:
            au = np.asarray(self.reader.array("au")[train], dtype=np.float32).reshape(train.size, -1)
        else:
            au = np.full((train.size, own.num_action_units), np.nan, np.float32)
        if self.label_mapper is None:
            return expr, au
        return self.label_mapper.training_labels(expr, au)

    def express_labels_in(self, space: LabelSpace) -> None:
        """Hand out labels in ``space`` from now on (what a combined data module asks of its members).

        Raises:
            DataError: this data module was configured with another ``label_space``, or ``space`` keeps none of
                its labels.
        """
        own = self.adapter.label_space
        if self._label_space not in (own, space):
            raise DataError(
                f"The {self.adapter.name} data module was given label_space {self._label_space.to_dict()}, but it "
                f"is asked for {space.to_dict()}; leave label_space unset in the members of a combined data module."
            )
        self._label_space = resolve_label_space(space, own)
        self.label_mapper = LabelMapper(own, space) if space != own else None

    # ----------------------------------------------------------------------------------------------- loaders
    def dataset(self, split: str, corrupted: bool = False, listed: bool = False) -> Dataset:
        """The dataset of one split (``train``, ``val`` or ``test``); training faces get online occlusion if set.

        Its batches carry their labels in :attr:`label_space` (mapped when ``label_space`` was asked for).

        Args:
            split: the split.
            corrupted: draw the test corruption's face occluders (the test and predict loaders set it); the other
                corruptions are applied on the device (:meth:`on_after_batch_transfer`).
            listed: only the samples of ``test_subset`` (the test loader sets it; they lie in ``evaluate_split``).
        """
        self.setup()
        assert self.reader is not None
        specs = self.reader.specs
        online = split == "train" and self.online_occlusion_probability > 0
        wanted = _LABEL_FIELDS + (_RESTORATION_FIELDS if self.restoration_targets or online else ())
        corruption = self.test_corruption if corrupted else None
        occluding = corruption is not None and (corruption.modality, corruption.kind) == ("face", "occlusion")
        if occluding:
            wanted += ("landmarks",)
        if "audio" in self._modalities and "audio" not in self.withheld_modalities:
            wanted += ("audio_lengths",)
        extra = tuple(name for name in wanted if name in specs)
        if online and self.clean_faces:  # the cache's masks and kinds describe the occluded render, not these faces
            extra = tuple(name for name in extra if name not in ("occlusion_mask", "occlusion_type"))
        # a real data set's faces: the pairs a restorer learns from are drawn online on every split
        drawn_pairs = self.restoration_targets and "face_clean" not in specs
        if drawn_pairs and self.online_occlusion_probability == 0:
            raise DataError(
                f"Restoration targets need occluded faces with their clean originals and masks, which {self.root} "
                "lacks (only generated faces have them). Draw occluders on this data set's faces with "
                "--data.init_args.online_occlusion_probability=0.7 (fixed per face outside training), or train "
                "restoration on SynthAffect."
            )
        if self.clean_faces and "face_clean" not in specs:
            raise DataError(f"clean_faces needs the cache field 'face_clean', which {self.root} lacks.")
        fields = {
            m: ("face_clean" if m == "face" and self.clean_faces else self._field(m))
            for m in self._modalities
            if m not in self.withheld_modalities
        }
        indices = self.subset.indices if listed and self.subset is not None else self.splits[split]
        dataset = CachedMultimodalDataset(self.reader, indices, fields, extra, self.withheld_modalities)
        source: CachedMultimodalDataset | OnlineOcclusionDataset = dataset
        if online or drawn_pairs:
            source = OnlineOcclusionDataset(
                dataset,
                self.online_occlusion_probability,
                self.online_occlusion_types,
                seed=None if online else EVALUATION_OCCLUSION_SEED,
                keep_clean=drawn_pairs,
                per_sample=not online,
            )
        if self.physio_feature_cache is not None:
            source = PhysioFeatureDataset(source, self.physio_feature_cache)
        if occluding:
            assert self.test_corruption is not None
            source = FaceOcclusionDataset(source, self.test_corruption)
        return LabelMappedDataset(source, self.label_mapper) if self.label_mapper is not None else source

    def _field(self, modality: str) -> str:
        """The cache field a modality is read from (``points`` for depth as point clouds, ``face_clip`` for clips)."""
        if modality == "face" and self.face_clip:
            return "face_clip"
        return "points" if modality == "depth" and self.depth_input == "points" else modality

    def _loader(
        self, split: str, shuffle: bool, shard: bool = False, corrupted: bool = False, listed: bool = False
    ) -> DataLoader:
        """Batches of one split; shuffled ones in an order fixed by the run's seed and the epoch alone.

        The loader draws its worker seeds from its own generator, so creating it consumes nothing of the global
        random state; together with :class:`EpochShuffleSampler` this lets a resumed fit repeat an uninterrupted
        one exactly. With ``shard`` (evaluation loaders) under DDP each process gets its uneven share of the split
        (:class:`~multimodal_fer.datamodules.evaluation_sampler.UnpaddedShardSampler`), so every sample is scored
        once; training loaders get Lightning's distributed sampler around the epoch shuffle instead.
        """
        dataset = self.dataset(split, corrupted, listed)
        seed = run_seed()
        if shuffle:
            sampler = EpochShuffleSampler(len(dataset), seed, self._current_epoch)
        else:
            sampler = evaluation_sampler(dataset, self.trainer, split) if shard else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=passthrough_collate,
            pin_memory=torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(seed),
        )

    def _current_epoch(self) -> int:
        """The epoch the next training batches belong to (:func:`next_training_epoch`)."""
        return next_training_epoch(self.trainer)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (the last incomplete batch is dropped)."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches on held-out subjects (under DDP: this process's share, every sample once)."""
        return self._loader("val", shuffle=False, shard=True)

    def test_dataloader(self) -> DataLoader:
        """Test batches of ``evaluate_split`` (only ``test_subset`` if set), test corruption if set (DDP: once each)."""
        return self._loader(self.evaluate_split, shuffle=False, shard=True, corrupted=True, listed=True)

    def predict_dataloader(self) -> DataLoader:
        """Prediction batches of the test split, with the test corruption if set (DDP: each sample once)."""
        return self._loader("test", shuffle=False, shard=True, corrupted=True)

    def ordered_dataloader(self, split: str) -> DataLoader:
        """Every sample of one split in cache order, nothing dropped, for feature extraction and analysis."""
        return self._loader(split, shuffle=False)

    # -------------------------------------------------------------------------------------- device transform
    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Convert storage dtypes to model inputs on the device; augment training faces; corrupt test batches.

        Args:
            batch: as produced by :class:`CachedMultimodalDataset`.
            dataloader_idx: unused.

        Returns:
            The batch with ``face`` float (B, 3, H, W) (clips: (B, T, 3, H, W)), ``depth`` float (B, 2, H, W) or
            (B, N, 6) points, ``audio`` float (B, S) (with ``audio_lengths`` long (B,) where the cache has it)
            and ``physio`` float (B, C, T) (z-scored per window, or per subject with ``physio_normalisation``), as
            present; restoration targets standardised with the occluded
            face's statistics (``face_mean``, ``face_std`` (B, 1, 1, 1)); physiological features standardised;
            while testing or predicting, the test corruption applied (:func:`corrupt_batch`).
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
            if "audio_lengths" in batch:  # samples without audio hold 0; they are masked by ``present``
                batch["audio_lengths"] = batch["audio_lengths"].long().clamp_min(1)
        if "physio" in batch and self.physio_normaliser is not None:
            if "subject" not in batch:
                raise CorruptCacheError(
                    f"physio_normalisation='subject' needs each sample's subject, but {self.root} has no 'subject' "
                    f"field; rebuild it: {self.rebuild_command}"
                )
            batch["physio"] = self.physio_normaliser(batch["physio"], batch["subject"])
        elif "physio" in batch:
            batch["physio"] = standardize_signals(batch["physio"])
        if "physio_features" in batch and self.physio_feature_standardizer is not None:
            batch["physio_features"], batch["physio_features_valid"] = self.physio_feature_standardizer(
                batch["physio_features"], batch["physio_features_valid"], batch.get("subject")
            )
        training = self.trainer is not None and self.trainer.training
        if training and self.augment and "face" in batch:
            aligned = {name: batch[name] for name in ("face_clean", "occlusion_mask") if name in batch}
            batch["face"], depth = augment_face_and_depth(
                batch["face"], batch.get("depth"), aligned=aligned, strength=self.augment_strength
            )
            batch.update(aligned)
            if depth is not None:
                batch["depth"] = depth
        elif training and self.augment and "depth" in batch and self.depth_input == "points":
            batch["depth"] = augment_points(batch["depth"])
        evaluating = bool(getattr(self.trainer, "testing", False) or getattr(self.trainer, "predicting", False))
        if evaluating and self.test_corruption is not None:
            batch = corrupt_batch(batch, self.test_corruption, self.depth_input)
        return batch


def au_positive_weight_of(au: np.ndarray) -> torch.Tensor:
    """Per-AU BCE positive weight: negatives / positives over the labelled entries, clipped to [1, 50].

    Args:
        au: float (N, K) AU labels, NaN unlabelled.

    Returns:
        float32 (K,); 1 for an AU with no labelled entry.
    """
    au = np.asarray(au, dtype=np.float64)
    positives = np.nansum(au, axis=0)
    labelled = np.sum(~np.isnan(au), axis=0)
    weight = (labelled - positives) / np.maximum(positives, 1.0)
    return torch.from_numpy(np.clip(weight, 1.0, 50.0).astype(np.float32))


def expression_counts_of(expr: np.ndarray, num_classes: int) -> torch.Tensor:
    """Samples per expression class, unlabelled (-1) entries ignored.

    Args:
        expr: int (N,) class indices in [0, C), -1 unlabelled.
        num_classes: C.

    Returns:
        int64 (C,).
    """
    labeled = np.asarray(expr, dtype=np.int64)
    labeled = labeled[labeled != EXPR_UNLABELED]
    return torch.from_numpy(np.bincount(labeled, minlength=num_classes).astype(np.int64))
