"""The adapter contract: one data set as it is distributed → a listing of raw samples and their modalities.

An adapter knows one data set's folder layout, file formats, label codes and official splits. It lists the
samples (subject, official split, source file, labels already expressed in its label space) and loads one
sample's raw media. It knows nothing of caches, loaders, preprocessing or Lightning: the cache builder in
:mod:`multimodal_fer.preprocessing` turns what it loads into fixed-shape arrays, and the data module in
:mod:`multimodal_fer.datamodules` splits and batches them.

Adding a data set means writing one :class:`DatasetAdapter` (its ``list_samples`` and ``load``), its label space
(named with the package's :data:`~multimodal_fer.types.EXPRESSION_VOCABULARY`; classes that are not facial
expressions, such as WESAD's study conditions, keep names of their own and so map to no expression), a config
``configs/data/<name>.yaml``, a data card and fake raw files for its tests.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from multimodal_fer.datasets.protocols import SplitProtocol
from multimodal_fer.errors import DataError
from multimodal_fer.geometry.surface import FaceSurface
from multimodal_fer.types import MODALITIES, Aggregation, ArraySpec, LabelSpace

#: Official split names a listing may use; a sample outside every official split has ``split=None``.
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


class SampleError(DataError):
    """One sample cannot be used (unreadable, corrupt, missing, no face, invalid label).

    The cache builder records it in ``failures.jsonl`` with its ``reason`` and goes on with the others.

    Args:
        reason: a short category, e.g. ``"unreadable image"`` or ``"no face found"`` (``summary.json`` counts
            samples per reason, so keep file names and numbers out of it).
        detail: the specifics (the library's message, sizes), kept beside the reason in ``failures.jsonl``.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason if detail is None else f"{reason} ({detail})")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SampleLabels:
    """Labels of one sample in its data set's label space (see :class:`~multimodal_fer.types.LabelSpace`).

    Attributes:
        expr: index into ``label_space.expressions``, -1 if unlabeled.
        au: one value per ``label_space.action_units`` (1 present, 0 absent, NaN unlabeled); None: all unlabeled.
        va: one value per ``label_space.dimensions`` in [-1, 1] (NaN unlabeled); None: all unlabeled.
    """

    expr: int = -1
    au: tuple[float, ...] | None = None
    va: tuple[float, ...] | None = None

    def check(self, label_space: LabelSpace) -> None:
        """Refuse labels that do not fit the label space.

        Raises:
            SampleError: an expression index out of range, wrong AU or VA length, AU values other than 0/1/NaN,
                VA outside [-1, 1].
        """
        if not -1 <= self.expr < label_space.num_expressions:
            raise SampleError(f"expression index {self.expr} outside [-1, {label_space.num_expressions})")
        if self.au is not None:
            if len(self.au) != label_space.num_action_units:
                raise SampleError(f"{len(self.au)} AU values for {label_space.num_action_units} AUs")
            if any(not (math.isnan(v) or v in (0.0, 1.0)) for v in self.au):
                raise SampleError(f"AU values must be 0, 1 or NaN, got {self.au}")
        if self.va is not None:
            if len(self.va) != label_space.num_dimensions:
                raise SampleError(f"{len(self.va)} affect values for dimensions {label_space.dimensions}")
            if any(not math.isnan(v) and not -1.0 <= v <= 1.0 for v in self.va):
                raise SampleError(f"affect values {self.va} outside [-1, 1]")

    @property
    def is_empty(self) -> bool:
        """True when no task is labelled."""
        au_empty = self.au is None or all(math.isnan(v) for v in self.au)
        va_empty = self.va is None or all(math.isnan(v) for v in self.va)
        return self.expr < 0 and au_empty and va_empty


@dataclass(frozen=True)
class RawSample:
    """One sample as its data set distributes it.

    Attributes:
        key: unique, stable identifier within the data set (e.g. the image's relative path, or
            ``<video>/<frame>``); the cache keeps samples in listing order and records the keys.
        subject: the person's identifier as the data set names it (each image its own subject where the data
            set does not say who is shown: subject-disjoint splits then reduce to image-disjoint ones).
        source: the primary file, relative to the raw root (what ``failures.jsonl`` names).
        split: official split (one of :data:`SPLIT_NAMES`) or None.
        labels: labels in the data set's label space; None when ``load`` produces them (generated data).
        sequence: the video or recording the sample belongs to, for per-sequence evaluation; None otherwise.
        frame: frame index within ``sequence`` (-1 if none).
        locators: the adapter's own pointers for ``load`` (other files, a face box, landmarks, a frame number).
        extras: values of the adapter's per-sample fields (:meth:`DatasetAdapter.sample_fields`), by field name:
            a Bosphorus scan's ``occlusion_type``, a BU-3DFE model's ``intensity``.
    """

    key: str
    subject: str
    source: str
    split: str | None = None
    labels: SampleLabels | None = None
    sequence: str | None = None
    frame: int = -1
    locators: Mapping[str, Any] = field(default_factory=dict)
    extras: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.split is not None and self.split not in SPLIT_NAMES:
            raise ValueError(f"split {self.split!r} of sample {self.key!r} is not one of {SPLIT_NAMES} or None.")


@dataclass(frozen=True)
class Rejection:
    """A listed item that cannot become a sample (an excluded label code, a label line without its file, ...).

    Attributes:
        source: file (relative to the raw root) the item comes from, with a line or frame where that helps.
        reason: why it was left out.
    """

    source: str
    reason: str


@dataclass
class Listing:
    """What an adapter found under its raw root.

    Attributes:
        samples: usable samples, in a deterministic order.
        rejected: items left out at listing time, each with its reason (written to ``failures.jsonl``).
    """

    samples: list[RawSample]
    rejected: list[Rejection] = field(default_factory=list)

    def digest(self) -> str:
        """SHA-256 over every sample's key, subject, split, source, labels and locators (part of the fingerprint)."""
        digest = hashlib.sha256()
        for sample in self.samples:
            record = [
                sample.key,
                sample.subject,
                sample.split,
                sample.source,
                None if sample.labels is None else [sample.labels.expr, sample.labels.au, sample.labels.va],
                sample.sequence,
                sample.frame,
                dict(sample.locators),
            ]
            if sample.extras:  # only where an adapter has per-sample fields: other listings keep their digest
                record.append(dict(sample.extras))
            digest.update(json.dumps(record, sort_keys=True, default=str).encode())
            digest.update(b"\n")
        return digest.hexdigest()


@dataclass
class RawMedia:
    """What :meth:`DatasetAdapter.load` gives for one sample, before any preprocessing.

    Attributes:
        image: uint8 (H, W, 3) RGB or (H, W) grey still image of the face (or the scene with a face in it).
        face_box: ``(x, y, width, height)`` of the face in ``image`` pixels, where the data set ships one.
        face_points: float (5, 2) or (68, 2) landmarks in ``image`` pixels (iBUG-68 order for 68; for 5:
            subject's left eye, right eye, nose, left and right mouth corners), where the data set ships them.
        face_aligned: ``image`` is already a face crop aligned by the data set (resize only).
        video: path of a video file to read frames from (absolute), for clips and for a still from a video.
        video_frame: which frame of ``video`` is this sample's still (-1: the middle frame).
        audio: float32 (C, S) or (S,) waveform in [-1, 1], already read, or None.
        audio_path: path of a file to read the audio from (absolute; a video's audio track too), or None.
        audio_rate: sampling rate of ``audio`` in Hz.
        audio_offset: where this sample's audio window starts in ``audio_path``/``audio``, seconds; None: where
            the preprocessing's ``audio_position`` puts it.
        audio_centre: centre the audio window on this time, seconds (frame-level samples of a long recording;
            the window is moved inward at the recording's ends). Takes precedence over ``audio_offset``.
        physio: the sample's window of physiological signals, channel name → float (S_c,) at that channel's own
            sampling rate (see :meth:`DatasetAdapter.physio_layout`); the cache resamples every channel to the
            model's rate and stacks them in the layout's order.
        physio_rates: sampling rate in Hz of each channel of ``physio``.
        surface: a 3-D face surface (a triangle mesh in metres) to render into the ``depth`` modality.
        fields: cache-ready fields (generated data sets, whose samples are made at the cache's shapes).
    """

    image: np.ndarray | None = None
    face_box: tuple[float, float, float, float] | None = None
    face_points: np.ndarray | None = None
    face_aligned: bool = False
    video: str | None = None
    video_frame: int = -1
    audio: np.ndarray | None = None
    audio_path: str | None = None
    audio_rate: int | None = None
    audio_offset: float | None = None
    audio_centre: float | None = None
    physio: dict[str, np.ndarray] | None = None
    physio_rates: dict[str, float] | None = None
    surface: FaceSurface | None = None
    fields: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class PhysioLayout:
    """The physiological windows an adapter's ``load`` gives (rows of the cache's ``physio`` array).

    Attributes:
        channels: channel names, in the order of the cached (C, T) array's rows. Names the feature extractor
            knows (``ecg``, ``eda`` in µS, ``rsp``) get physiological features; other names are stored alike.
        seconds: length of every window (T = seconds × the model's physiological rate).
    """

    channels: tuple[str, ...]
    seconds: float


class DatasetAdapter(ABC):
    """One data set's on-disk format, label codes and official protocol.

    Subclasses set the class attributes and implement :meth:`list_samples` and :meth:`load`. Constructor
    arguments are the data set's own options (a class subset, which annotation edition, ...); the raw root is
    given to each call, so one adapter object describes the data set wherever it lies. Adapters must pickle
    (the cache builder sends them to worker processes).

    Class attributes:
        name: config and cache name (``affectnet``, ``rafdb``, ...).
        modalities: modalities the data set can provide, among :data:`~multimodal_fer.types.MODALITIES`.
        face_media_allowed: whether its faces may be logged as images (real people: only where the licence and
            the data card allow; default no).
        version: bump when the adapter's listing or loading changes for the same files (stales old caches).
        generated: the data set is generated, not read from a raw root (SynthAffect).
        va_range: the range of the data set's own affect ratings (e.g. ``(1.0, 9.0)`` for self-assessment scales);
            :meth:`affect_to_unit` maps them linearly onto the package's [-1, 1].
        evaluation_aggregation: the unit its benchmark scores, the headline of its results files (the data card
            cites the papers' convention): ``"sample"`` (every cache sample: an image, a frame, a clip, a window) or
            ``"recording"`` (every recording, a trial or a video, from its samples' mean prediction; see
            :mod:`multimodal_fer.metrics.aggregation`). A config overrides it with ``--results.aggregation``.
    """

    name: ClassVar[str] = ""
    modalities: ClassVar[tuple[str, ...]] = ()
    face_media_allowed: ClassVar[bool] = False
    version: ClassVar[int] = 1
    generated: ClassVar[bool] = False
    va_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    evaluation_aggregation: ClassVar[Aggregation] = "sample"

    @classmethod
    def affect_to_unit(cls, value: float) -> float:
        """One of the data set's affect ratings on the package's [-1, 1] scale (NaN stays NaN).

        Raises:
            SampleError: a rating outside :attr:`va_range`.
        """
        low, high = cls.va_range
        if math.isnan(value):
            return value
        if not low <= value <= high:
            raise SampleError(f"affect rating outside the data set's range [{low}, {high}]")
        return 2.0 * (value - low) / (high - low) - 1.0

    @property
    @abstractmethod
    def label_space(self) -> LabelSpace:
        """The data set's label space, in its own class order, named with the package's vocabulary."""

    @abstractmethod
    def list_samples(self, raw_root: Path) -> Listing:
        """Find every sample under ``raw_root`` (the folder as the data set distributes it).

        Raises:
            DataError: the folder does not look like this data set at all (a missing label file, say); the
                message names what was expected where. Individual bad items are rejections, not errors.
        """

    @abstractmethod
    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        """Read one sample's raw media.

        Raises:
            SampleError: the sample cannot be used; the builder records the reason and goes on.
        """

    def default_protocol(self) -> SplitProtocol:
        """The split protocol used unless a config chooses another (the data set's usual one)."""
        from multimodal_fer.datasets.protocols import OfficialSplits

        return OfficialSplits()

    def settings(self) -> dict[str, Any]:
        """JSON-ready options that change the listing or loading (part of the cache fingerprint)."""
        return {}

    def field_specs(self) -> list[ArraySpec]:
        """Generated data sets only: the cache fields their ``load`` gives in :attr:`RawMedia.fields`."""
        raise NotImplementedError(f"{type(self).__name__} reads raw files; its fields come from the media processor.")

    def metadata(self) -> dict[str, Any]:
        """Extra facts to record in the cache manifest (channel names, sampling rates, ...)."""
        return {}

    def sample_fields(self) -> list[ArraySpec]:
        """Scalar per-sample fields the listing carries in :attr:`RawSample.extras`; the cache stores them.

        E.g. ``occlusion_type`` int8, an index into :data:`~multimodal_fer.occlusion.synthesis.OCCLUSION_TYPES`
        (-1 for none). Empty by default.
        """
        return []

    def physio_layout(self) -> PhysioLayout | None:
        """Data sets with raw physiological signals: the channels and window length ``load`` gives (else None)."""
        return None

    @property
    def provided_modalities(self) -> tuple[str, ...]:
        """The modalities this adapter, as configured, reads from the raw files (a subset of :attr:`modalities`).

        Default: all of :attr:`modalities`. An adapter with an option choosing which files are read (RECOLA's and
        MAHNOB-HCI's ``media``, Aff-Wild2's ``audio``) overrides it and :meth:`enabling_hint`; the data module
        refuses a requested modality outside it (:func:`check_modalities`), since no sample would hold it.
        """
        return tuple(self.modalities)

    def enabling_hint(self, modality: str) -> str | None:
        """How to make this adapter read ``modality`` when an option of its turns it off; None where none can.

        A modality this returns None for, and that is outside :attr:`provided_modalities`, is one the data set
        never has.
        """
        return None

    def check_raw_root(self, raw_root: str | Path | None) -> Path:
        """The raw root as a path, refusing a missing one with what to pass.

        Raises:
            DataError: no raw root given, or the folder does not exist.
        """
        if raw_root is None or str(raw_root) == "":
            raise DataError(
                f"The {self.name} data set needs its raw files: pass the folder as the data set distributes it, "
                "e.g. --data.init_args.raw_root /path/to/" + self.name + "."
            )
        path = Path(raw_root).expanduser()
        if not path.is_dir():
            raise DataError(f"raw_root {path} of the {self.name} data set is not a folder; check the path.")
        return path


def check_modalities(adapter: DatasetAdapter, modalities: Sequence[str]) -> None:
    """Refuse modalities an adapter will not produce: no sample of its cache could hold them.

    A model asked to fuse such a modality would train with it absent from every sample (the cache marks it
    missing, the fusion masks it), so the mistake is refused here, before anything is listed or built, and the
    same check guards a data module set up from an existing cache.

    Raises:
        ValueError: a modality outside :data:`~multimodal_fer.types.MODALITIES`, one the data set never has, or
            one the adapter's options turn off; the message names the modality, what the adapter provides and the
            fix (the adapter option that turns it on, or dropping it from ``modalities``).
    """
    unknown = [m for m in modalities if m not in MODALITIES]
    provided = tuple(adapter.provided_modalities)
    switched_off = {
        m: hint
        for m in modalities
        if m in MODALITIES and m not in provided and (hint := adapter.enabling_hint(m)) is not None
    }
    never = [m for m in modalities if m in MODALITIES and m not in provided and m not in switched_off]
    kept = [m for m in modalities if m in provided]
    drop = f"--data.init_args.modalities='[{','.join(kept or provided)}]'"
    if unknown or never:
        raise ValueError(f"The {adapter.name} data set provides {list(provided)}, not {unknown + never}; e.g. {drop}.")
    if switched_off:
        fixes = "; ".join(switched_off.values())
        raise ValueError(
            f"modalities asks for {list(switched_off)}, but the {adapter.name} adapter is configured to read only "
            f"{list(provided)}, so every sample would lack {' and '.join(switched_off)}. Either {fixes}; or drop "
            f"{' and '.join(switched_off)} from the modalities: {drop}."
        )
