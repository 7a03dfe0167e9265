"""Raw media → fixed-shape cache fields: aligned face crops, 16 kHz mono audio, clips, physiology, labels, presence.

The same steps serve ``mfer prepare`` and ``mfer predict`` on raw recordings, so a model sees at prediction time
exactly what it saw in training: faces detected (or taken from the data set's boxes, landmarks or aligned crops)
and aligned by five points to the crop size; audio mixed to mono, resampled with torchaudio and cut to a fixed
window whose real length is kept (``audio_lengths``), so the audio encoders mask the padding.

Physiological windows (data sets whose adapter declares a :class:`~multimodal_fer.datasets.base.PhysioLayout`)
arrive per channel at each channel's own rate, already checked by the adapter (NaN, flat, clipped, wrong rate,
truncated: :mod:`multimodal_fer.media.signals`). Each channel is resampled to the model's rate
(``physio_sample_rate``, SynthAffect's 128 Hz by default) and they are stacked in the layout's order into ``physio``
float32 (C, T). float32, not the float16 of SynthAffect's generated signals: real recordings come in their devices'
units, which the feature extractor needs, and float16 neither covers every unit (its largest value is 65,504; the
units of DEAP's channels are not documented) nor resolves a skin temperature's hundredths of a degree at 30 °C
(its step there is 0.03). The manifest records ``physio_channels`` and
``physio_sample_rate`` for ``mfer physio-features``.

3-D faces (data sets whose ``load`` gives a :class:`~multimodal_fer.geometry.surface.FaceSurface`: Bosphorus,
BU-3DFE) are ray-cast from the front with Open3D into a depth map of the face crop's size, ``depth`` float16
(1, S, S) in metres (0 where no surface), and turned into a point cloud with normals, ``points`` float16 (N, 6),
by the same Open3D steps as SynthAffect's (:func:`~multimodal_fer.geometry.pointcloud.depth_to_points`: voxel
down-sampling, normal estimation, a fixed number of points drawn with a generator seeded by the sample's key).
The fields and their dtypes are SynthAffect's, so the depth and point-cloud encoders read both alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from multimodal_fer.datasets.base import SPLIT_NAMES, PhysioLayout, RawMedia, RawSample, SampleError
from multimodal_fer.errors import DataError
from multimodal_fer.media.signals import NON_FINITE, resample_signal, whole_samples
from multimodal_fer.occlusion.synthesis import LANDMARK_NAMES
from multimodal_fer.types import ArraySpec, LabelSpace

#: Bump when the processor's output changes for the same settings (stales every real data set's cache).
PROCESSOR_VERSION = 1


@dataclass(frozen=True)
class MediaPreprocessing:
    """How raw faces, audio and video become cache fields.

    Attributes:
        image_size: side of the aligned face crop in pixels.
        face_detector: ``"auto"`` (MTCNN from the facenet-pytorch wheel, else OpenCV's Haar cascade), ``"mtcnn"``,
            ``"haar"`` or ``"yunet"`` (with ``yunet_model``). Used only where the data set ships no box,
            landmarks or aligned crop.
        yunet_model: path of a YuNet ONNX file (``cv2.FaceDetectorYN``), for ``face_detector="yunet"``.
        face_margin: context around a face box, as a share of its side, for box crops.
        min_face_score: detections below this confidence are ignored.
        audio_sample_rate: the model's audio rate in Hz (audio is resampled to it).
        audio_seconds: audio window per sample; shorter audio is zero-padded and its real length recorded.
        audio_position: where a longer recording's window lies: ``"start"`` or ``"centre"``.
        clip_frames: 0 (still faces only) or T ≥ 2: also store T evenly spaced aligned frames of each video
            (``face_clip`` (T, 3, S, S)), aligned with the transform of the still frame.
        physio_sample_rate: the model's physiological rate in Hz (every channel is resampled to it).
        num_points: points per 3-D face's point cloud (SynthAffect's count by default).
        voxel_size: Open3D voxel edge in metres before the point cloud is sampled (0: every depth pixel).
        depth_field_width: width in metres of a 3-D face's frontal view at its nearest point (the depth map is
            ``image_size`` pixels square; 0.18 m frames a face like SynthAffect's renders).
        depth_distance: metres from the virtual camera to a 3-D face's nearest point.
    """

    image_size: int = 112
    face_detector: Literal["auto", "mtcnn", "haar", "yunet"] = "auto"
    yunet_model: str | None = None
    face_margin: float = 0.2
    min_face_score: float = 0.9
    audio_sample_rate: int = 16000
    audio_seconds: float = 4.0
    audio_position: Literal["start", "centre"] = "centre"
    clip_frames: int = 0
    physio_sample_rate: int = 128
    num_points: int = 1024
    voxel_size: float = 0.004
    depth_field_width: float = 0.18
    depth_distance: float = 0.46

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size={self.image_size} is too small; use at least 16 pixels.")
        if self.face_detector not in ("auto", "mtcnn", "haar", "yunet"):
            raise ValueError(f"face_detector={self.face_detector!r}: choose auto, mtcnn, haar or yunet.")
        if self.face_detector == "yunet" and not self.yunet_model:
            raise ValueError("face_detector='yunet' needs yunet_model: the path of a YuNet ONNX file.")
        if self.face_margin < 0:
            raise ValueError(f"face_margin={self.face_margin} must be 0 or more.")
        if not 0.0 <= self.min_face_score <= 1.0:
            raise ValueError(f"min_face_score={self.min_face_score} must lie in [0, 1].")
        if self.audio_sample_rate < 1000:
            raise ValueError(f"audio_sample_rate={self.audio_sample_rate} Hz is too low.")
        if self.audio_seconds <= 0:
            raise ValueError(f"audio_seconds={self.audio_seconds} must be positive.")
        if self.audio_position not in ("start", "centre"):
            raise ValueError(f"audio_position={self.audio_position!r}: choose start or centre.")
        if self.clip_frames < 0 or self.clip_frames == 1:
            raise ValueError(f"clip_frames={self.clip_frames}: use 0 (no clips) or at least 2 frames.")
        if self.physio_sample_rate < 1:
            raise ValueError(f"physio_sample_rate={self.physio_sample_rate} Hz must be at least 1.")
        if self.num_points < 1:
            raise ValueError(f"num_points={self.num_points} must be at least 1.")
        if self.voxel_size < 0:
            raise ValueError(f"voxel_size={self.voxel_size} m must be 0 or more.")
        if self.depth_field_width <= 0 or self.depth_distance <= 0:
            raise ValueError(
                f"depth_field_width={self.depth_field_width} and depth_distance={self.depth_distance} must be "
                "positive metres."
            )

    @property
    def audio_length(self) -> int:
        """Samples per audio window."""
        return round(self.audio_seconds * self.audio_sample_rate)


class PassThroughProcessor:
    """For generated data sets: their ``load`` already gives the cache fields.

    Args:
        specs: the fields a generated sample has.
    """

    def __init__(self, specs: list[ArraySpec]) -> None:
        self._specs = list(specs)

    def specs(self) -> list[ArraySpec]:
        """The generated fields."""
        return list(self._specs)

    def settings(self) -> dict[str, Any]:
        """Nothing: generated data sets fingerprint their own settings."""
        return {}

    def __call__(self, sample: RawSample, media: RawMedia, position: int) -> dict[str, np.ndarray]:
        """The generated fields as they are."""
        if media.fields is None:
            raise DataError(f"Sample {sample.key} of a generated data set came without fields.")
        return media.fields


class MediaProcessor:
    """Aligned faces, resampled audio, labels and presence flags from raw media.

    Args:
        settings: preprocessing settings.
        label_space: the data set's label space (sizes of ``au`` and ``va``).
        modalities: the modalities the data set has (columns of ``present``).
        subjects: sorted subject names; the ``subject`` field indexes them.
        sequences: sorted sequence (video, recording) names; the ``sequence`` field indexes them (-1 for none).
        physio: the adapter's physiological channels and window length (needed with the ``physio`` modality).
        sample_fields: the adapter's scalar per-sample fields (:meth:`DatasetAdapter.sample_fields`), copied from
            each sample's ``extras``.
    """

    def __init__(
        self,
        settings: MediaPreprocessing,
        label_space: LabelSpace,
        modalities: tuple[str, ...],
        subjects: list[str],
        sequences: list[str] | None = None,
        physio: PhysioLayout | None = None,
        sample_fields: list[ArraySpec] | None = None,
    ) -> None:
        unsupported = [m for m in modalities if m not in ("face", "audio", "depth", "physio")]
        if unsupported:
            raise DataError(
                f"The media processor reads faces, audio, 3-D surfaces and physiology; {unsupported} need their own "
                "preprocessing."
            )
        self.sample_fields = list(sample_fields or [])
        bad = [spec.name for spec in self.sample_fields if spec.shape != ()]
        if bad:
            raise DataError(f"Per-sample fields must be scalars; {bad} are not.")
        if "physio" in modalities:
            if physio is None or not physio.channels:
                raise DataError("The physio modality needs the adapter's physio_layout(): its channels and window.")
            self.physio_length = whole_samples(physio.seconds, settings.physio_sample_rate, "A physiological window")
        self.physio = physio if "physio" in modalities else None
        self.preprocessing = settings
        self.label_space = label_space
        self.modalities = tuple(modalities)
        self._subject_index = {name: i for i, name in enumerate(subjects)}
        self._sequence_index = {name: i for i, name in enumerate(sequences or [])}
        self._aligner: Any = None

    def settings(self) -> dict[str, Any]:
        """Everything that changes the fields of the data set's modalities.

        Audio settings do not stale a face-only cache, nor face settings an audio-only one.
        """
        relevant = {"processor_version", "modalities"}
        if "face" in self.modalities:
            relevant |= {"image_size", "face_detector", "yunet_model", "face_margin", "min_face_score", "clip_frames"}
        if "audio" in self.modalities:
            relevant |= {"audio_sample_rate", "audio_seconds", "audio_position"}
        if "depth" in self.modalities:
            relevant |= {"image_size", "num_points", "voxel_size", "depth_field_width", "depth_distance"}
        everything = {"processor_version": PROCESSOR_VERSION, "modalities": list(self.modalities)}
        everything.update(asdict(self.preprocessing))
        if self.physio is not None:
            relevant |= {"physio_sample_rate", "physio_channels", "physio_seconds"}
            everything.update(physio_channels=list(self.physio.channels), physio_seconds=self.physio.seconds)
        if self.sample_fields:  # only for adapters that have them: other caches keep their fingerprint
            relevant.add("sample_fields")
            everything["sample_fields"] = [spec.to_json() for spec in self.sample_fields]
        return {key: value for key, value in everything.items() if key in relevant}

    def metadata(self) -> dict[str, Any]:
        """Manifest entries: the physiological channels and rate where the cache has ``physio`` (else nothing)."""
        if self.physio is None:
            return {}
        return {
            "physio_channels": list(self.physio.channels),
            "physio_sample_rate": self.preprocessing.physio_sample_rate,
        }

    def specs(self) -> list[ArraySpec]:
        """Fields: face, landmarks, face_clip, audio, audio_lengths, depth, points, physio (as modalities need), ...

        ... then present, the labels and the adapter's per-sample fields.
        """
        size = self.preprocessing.image_size
        specs: list[ArraySpec] = []
        if "face" in self.modalities:
            specs += [
                ArraySpec("face", (3, size, size), "uint8"),
                ArraySpec("landmarks", (len(LANDMARK_NAMES), 2), "float32"),
            ]
            if self.preprocessing.clip_frames:
                specs.append(ArraySpec("face_clip", (self.preprocessing.clip_frames, 3, size, size), "uint8"))
        if "audio" in self.modalities:
            specs += [
                ArraySpec("audio", (self.preprocessing.audio_length,), "int16"),
                ArraySpec("audio_lengths", (), "int32"),
            ]
        if "depth" in self.modalities:
            specs += [
                ArraySpec("depth", (1, size, size), "float16"),
                ArraySpec("points", (self.preprocessing.num_points, 6), "float16"),
            ]
        if self.physio is not None:
            specs.append(ArraySpec("physio", (len(self.physio.channels), self.physio_length), "float32"))
        space = self.label_space
        return [
            *specs,
            ArraySpec("present", (len(self.modalities),), "bool"),
            ArraySpec("expr", (), "int64"),
            ArraySpec("au", (space.num_action_units,), "float32"),
            ArraySpec("va", (space.num_dimensions,), "float32"),
            ArraySpec("subject", (), "int32"),
            ArraySpec("split", (), "int8"),
            ArraySpec("sequence", (), "int32"),
            ArraySpec("frame", (), "int32"),
            *self.sample_fields,
        ]

    def aligner(self) -> Any:
        """The face aligner (built on first use, in the process that uses it)."""
        if self._aligner is None:
            from multimodal_fer.preprocessing.faces import FaceAligner

            p = self.preprocessing
            self._aligner = FaceAligner(
                detector=p.face_detector,
                size=p.image_size,
                margin=p.face_margin,
                yunet_model=p.yunet_model,
                min_score=p.min_face_score,
            )
        return self._aligner

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_aligner"] = None
        return state

    def __call__(self, sample: RawSample, media: RawMedia, position: int) -> dict[str, np.ndarray]:
        """The fields of one sample.

        Raises:
            SampleError: no face found, unreadable media, non-finite audio, physiological channels missing or of
                the wrong length, labels that do not fit.
        """
        fields: dict[str, np.ndarray] = {}
        present = np.zeros(len(self.modalities), dtype=bool)
        if "face" in self.modalities:
            face = self.face_fields(media)
            if face is not None:
                fields.update(face)
                present[self.modalities.index("face")] = True
        if "audio" in self.modalities:
            audio = self.audio_fields(media)
            if audio is not None:
                fields.update(audio)
                present[self.modalities.index("audio")] = True
        if "depth" in self.modalities:
            depth = self.depth_fields(media, sample.key)
            if depth is not None:
                fields.update(depth)
                present[self.modalities.index("depth")] = True
        if "physio" in self.modalities:
            physio = self.physio_fields(media)
            if physio is not None:
                fields.update(physio)
                present[self.modalities.index("physio")] = True
        if not present.any():
            raise SampleError("no modality could be read (no image, video, audio, 3-D surface or physiological signal)")
        fields["present"] = present
        fields.update(self.label_fields(sample))
        return fields

    def face_fields(self, media: RawMedia) -> dict[str, np.ndarray] | None:
        """``face`` uint8 (3, S, S), ``landmarks`` float32 (5, 2) and, in clip mode, ``face_clip``; None: no face."""
        clip_frames = self.preprocessing.clip_frames
        frames: dict[int, np.ndarray] = {}
        clip_indices = np.zeros(0, dtype=np.int64)
        image = media.image
        if image is None and media.video is not None:
            frames, still, clip_indices = self._video(media.video, media.video_frame, clip_frames)
            image = frames[still]
        if image is None:
            return None
        try:
            aligned = self.aligner()(image, box=media.face_box, points=media.face_points, aligned=media.face_aligned)
        except DataError as error:
            message = str(error)
            # a category, so summary.json counts reasons; the file is in the failure's source
            if message.startswith("no face found"):
                raise SampleError("no face found", message) from error
            raise SampleError("unusable face image", message) from error
        fields = {
            "face": np.ascontiguousarray(aligned.image.transpose(2, 0, 1)),
            "landmarks": np.asarray(aligned.landmarks, dtype=np.float32),
        }
        clip_frames = self.preprocessing.clip_frames
        if clip_frames:
            clip = np.zeros((clip_frames, 3, *aligned.image.shape[:2]), dtype=np.uint8)
            if frames:
                from multimodal_fer.preprocessing.faces import apply_alignment

                size = self.preprocessing.image_size
                for t, index in enumerate(clip_indices.tolist()):
                    clip[t] = apply_alignment(frames[index], aligned.transform, size).transpose(2, 0, 1)
            else:
                clip[:] = fields["face"][None]  # a still image: every frame is the still
            fields["face_clip"] = clip
        return fields

    @staticmethod
    def _video(path: str, still: int, clip_frames: int) -> tuple[dict[int, np.ndarray], int, np.ndarray]:
        """Decode only the frames needed: the still (-1: the middle one) and, in clip mode, the clip's frames.

        Returns:
            ``(frames by index, the still's index, the clip's frame indices)``.

        Raises:
            SampleError: unreadable video, or a still frame past its end.
        """
        from multimodal_fer.media.video import read_video_frames, sample_clip

        try:
            count = _frame_count(path)
            if count is None:  # no frame count in the container: decode every frame once
                video = read_video_frames(path)
                count = len(video.frames)
                decoded = dict(enumerate(video.frames))
            else:
                decoded = {}
            index = still if still >= 0 else count // 2
            if index >= count:
                raise SampleError(f"frame {index} is past the video's end ({count} frames)")
            clip = sample_clip(count, clip_frames) if clip_frames else np.zeros(0, dtype=np.int64)
            wanted = sorted({index, *clip.tolist()} - set(decoded))
            if wanted:
                video = read_video_frames(path, frame_indices=wanted)
                decoded.update(zip(video.indices.tolist(), video.frames, strict=True))
        except DataError as error:
            if isinstance(error, SampleError):
                raise
            raise SampleError("unreadable video", str(error)) from error
        return decoded, index, clip

    def audio_fields(self, media: RawMedia) -> dict[str, np.ndarray] | None:
        """``audio`` int16 (L,) at the model's rate and ``audio_lengths`` int32 (); None: no audio."""
        from multimodal_fer.preprocessing.audio import to_mono_clip

        p = self.preprocessing
        if media.audio is not None:
            if media.audio_rate is None:
                raise SampleError("audio given without its sampling rate")
            waveform = np.atleast_2d(np.asarray(media.audio, dtype=np.float32))
            rate = int(media.audio_rate)
        elif media.audio_path is not None:
            try:
                waveform, rate = _mono_track(media.audio_path, p.audio_sample_rate)
            except SampleError:
                raise
            except DataError as error:
                raise SampleError("unreadable audio", str(error)) from error
        else:
            return None
        bad = int(waveform.size - np.isfinite(waveform).sum())
        if bad:
            raise SampleError("non-finite audio", f"{bad} of {waveform.size} samples are NaN or infinite")
        length = waveform.shape[-1]
        window = round(p.audio_seconds * rate)
        start = None
        if media.audio_centre is not None:
            start = min(max(0, round(media.audio_centre * rate) - window // 2), max(0, length - window))
        elif media.audio_offset is not None:
            start = round(media.audio_offset * rate)
        if start is not None:
            if start >= length:
                raise SampleError("audio window starts past the recording's end")
            waveform = waveform[..., start:]
            position = "start"
        else:
            position = p.audio_position
        try:
            clip, valid = to_mono_clip(waveform, rate, p.audio_sample_rate, p.audio_seconds, position=position)
        except DataError as error:
            raise SampleError("bad audio", str(error)) from error
        return {"audio": clip, "audio_lengths": np.int32(valid)}

    def depth_fields(self, media: RawMedia, key: str) -> dict[str, np.ndarray] | None:
        """``depth`` float16 (1, S, S) metres and ``points`` float16 (N, 6) from the sample's 3-D surface.

        Args:
            media: the loaded sample (its ``surface``).
            key: the sample's key; seeds the point sampling, so a sample's points do not depend on which process
                or chunk makes it.

        Returns:
            The fields, or None when the sample has no surface.

        Raises:
            SampleError: the surface lies outside the view, or its depth map has no foreground.
        """
        if media.surface is None:
            return None
        from multimodal_fer.geometry.frontal_view import render_frontal_view
        from multimodal_fer.geometry.pointcloud import depth_to_points

        p = self.preprocessing
        try:
            view = render_frontal_view(media.surface, p.image_size, p.depth_field_width, p.depth_distance)
            seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
            rng = np.random.default_rng(seed)
            points = depth_to_points(view.depth, view.intrinsics, p.num_points, p.voxel_size, rng)
        except DataError as error:
            raise SampleError("unusable 3-D surface", str(error)) from error
        return {"depth": view.depth[None].astype(np.float16), "points": points.astype(np.float16)}

    def physio_fields(self, media: RawMedia) -> dict[str, np.ndarray] | None:
        """``physio`` float32 (C, T): each channel resampled to the model's rate, rows in the layout's order.

        Returns:
            The field, or None when the sample has no physiological signals.

        Raises:
            SampleError: a channel of the layout missing or without its rate, non-finite, or of a length that does
                not give exactly T samples at the model's rate.
        """
        if media.physio is None or self.physio is None:
            return None
        rates = media.physio_rates or {}
        target = self.preprocessing.physio_sample_rate
        rows = []
        for channel in self.physio.channels:
            if channel not in media.physio:
                raise SampleError("missing physiological channel", channel)
            if channel not in rates:
                raise SampleError("physiological channel without its sampling rate", channel)
            window = np.asarray(media.physio[channel], dtype=np.float64).reshape(-1)
            bad = int(window.size - np.count_nonzero(np.isfinite(window)))
            if bad:
                raise SampleError(NON_FINITE, f"{channel}: {bad} of {window.size} samples are NaN or infinite")
            rate = float(rates[channel])
            if abs(window.size - self.physio.seconds * rate) > 1e-6 * window.size:
                raise SampleError(
                    "physiological window of the wrong length",
                    f"{channel}: {window.size} samples at {rate:g} Hz, not {self.physio.seconds:g} s",
                )
            try:
                resampled = resample_signal(window, rate, target)
            except DataError as error:
                raise SampleError("physiological channel at an unusable sampling rate", str(error)) from error
            if resampled.size != self.physio_length:
                raise SampleError(
                    "physiological window of the wrong length",
                    f"{channel}: {window.size} samples at {rate:g} Hz give {resampled.size} at {target} Hz, "
                    f"not {self.physio_length} ({self.physio.seconds:g} s)",
                )
            rows.append(resampled)
        return {"physio": np.stack(rows).astype(np.float32)}

    def label_fields(self, sample: RawSample) -> dict[str, np.ndarray]:
        """Labels in the data set's label space and the subject, split, sequence and frame indices."""
        space = self.label_space
        labels = sample.labels
        au = np.full(space.num_action_units, np.nan, dtype=np.float32)
        va = np.full(space.num_dimensions, np.nan, dtype=np.float32)
        expr = -1
        if labels is not None:
            labels.check(space)
            expr = labels.expr
            if labels.au is not None:
                au[:] = labels.au
            if labels.va is not None:
                va[:] = labels.va
        if sample.subject not in self._subject_index:
            raise SampleError(f"subject {sample.subject!r} is not in the listing's subjects")
        extras = {}
        for spec in self.sample_fields:
            if spec.name not in sample.extras:
                raise SampleError("per-sample field missing from the listing", spec.name)
            extras[spec.name] = np.asarray(sample.extras[spec.name], dtype=spec.dtype)
        return {
            **extras,
            "expr": np.int64(expr),
            "au": au,
            "va": va,
            "subject": np.int32(self._subject_index[sample.subject]),
            "split": np.int8(SPLIT_NAMES.index(sample.split) if sample.split else -1),
            "sequence": np.int32(self._sequence_index.get(sample.sequence, -1) if sample.sequence else -1),
            "frame": np.int32(sample.frame),
        }


@lru_cache(maxsize=2)
def _mono_track(path: str, target_rate: int) -> tuple[np.ndarray, int]:
    """A whole audio track read once per process and kept (frame-level samples of one video share it).

    Returns:
        float32 (1, S) mono at ``target_rate`` and the rate.
    """
    import torch
    import torchaudio.functional as audio_functional

    from multimodal_fer.media.audio import read_audio

    waveform, rate = read_audio(Path(path))
    mono = np.asarray(waveform, dtype=np.float32).mean(axis=0, keepdims=True)
    bad = int(mono.size - np.isfinite(mono).sum())
    if bad:
        raise SampleError("non-finite audio", f"{bad} of {mono.size} samples are NaN or infinite")
    if rate != target_rate:
        mono = audio_functional.resample(torch.from_numpy(mono), rate, target_rate).numpy()
    return mono, target_rate


def _frame_count(path: str) -> int | None:
    """Frames of a video's first video stream as its container records them (None if it does not say)."""
    from multimodal_fer._lazy import require

    av = require("av", "reading video files")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise DataError(f"{path} has no video stream")
            frames = int(container.streams.video[0].frames or 0)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - PyAV raises many kinds; the reason is kept
        raise DataError(f"cannot open {path}: {error}") from error
    return frames if frames > 0 else None
