"""Generate SynthAffect into a cache: subjects, affect latents, and every modality of every sample.

Each sample is generated from its own random stream ``(seed, 1, index)``, its face clip (clip mode only) from
``(seed, 2, index)``, and each subject's traits from ``(seed, 0, subject)``, so the result does not depend on
how the work is split across processes: the same settings give byte-identical caches. Clip mode adds fields
and never changes the others: a cache with clips holds, besides them, exactly the arrays of the same settings
without clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from multimodal_fer.datasets.synthaffect.clip import MIN_CLIP_FRAMES
from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_AUS
from multimodal_fer.datasets.synthaffect.latent import AffectSettings, sample_affect
from multimodal_fer.fingerprints import fingerprint, settings_dict
from multimodal_fer.occlusion.synthesis import LANDMARK_NAMES, OCCLUSION_TYPES
from multimodal_fer.types import ArraySpec

#: Bump when the generator's output changes for the same settings; older caches are then stale.
GENERATOR_VERSION = 3

#: Physiological channels stored in the ``physio`` array, in order.
PHYSIO_CHANNEL_NAMES: tuple[str, ...] = ("ecg", "eda", "rsp")


@dataclass(frozen=True)
class SynthAffectSettings:
    """Everything that decides the content of a SynthAffect cache.

    Attributes:
        num_subjects: number of subjects (identities).
        samples_per_subject: samples per subject.
        image_size: side of the face image and depth map in pixels.
        audio_seconds: length of each audio clip.
        audio_sample_rate: audio sampling rate in Hz.
        physio_seconds: length of each physiological window.
        physio_sample_rate: physiological sampling rate in Hz.
        num_points: points per point cloud.
        voxel_size: Open3D voxel size (metres) before sampling the point cloud.
        occlusion_probability: probability that a face is occluded.
        occlusion_types: occlusion kinds drawn uniformly for occluded faces.
        depth_noise_mm: standard deviation of the depth sensor noise in millimetres.
        depth_block: the depth sensor resolves blocks of this many pixels per side (consumer depth cameras
            resolve far less than their RGB companion); the map keeps the image size.
        depth_dropout: share of foreground depth pixels lost (set to 0) like a real sensor's holes.
        au_deformation_gain: how far AUs move the face mesh, relative to the face model's base amplitudes
            (jaw drop and lip parting, already large, are not amplified).
        max_yaw_degrees: head yaw is uniform in ±this.
        max_pitch_degrees: head pitch is uniform in ±this.
        max_roll_degrees: head roll is uniform in ±this.
        clip_frames: clip mode: 0 (the default) stores still faces only; T ≥ 3 also stores each sample's
            expression as a clip of T frames, onset → apex → offset (``face_clip`` uint8 (T, 3, H, W) and its
            intensity profile ``face_clip_profile`` float32 (T,); see
            :mod:`~multimodal_fer.datasets.synthaffect.clip`). The still ``face`` stays the apex render. Recorded
            in the fingerprint only when positive, so caches without clips keep their fingerprint.
        affect: how the affect latent varies.
        seed: generation seed.
    """

    num_subjects: int = 40
    samples_per_subject: int = 48
    image_size: int = 64
    audio_seconds: float = 2.0
    audio_sample_rate: int = 16000
    physio_seconds: float = 8.0
    physio_sample_rate: int = 128
    num_points: int = 1024
    voxel_size: float = 0.004
    occlusion_probability: float = 0.3
    occlusion_types: tuple[str, ...] = OCCLUSION_TYPES
    depth_noise_mm: float = 2.0
    depth_block: int = 8
    depth_dropout: float = 0.02
    au_deformation_gain: float = 1.5
    max_yaw_degrees: float = 15.0
    max_pitch_degrees: float = 8.0
    max_roll_degrees: float = 6.0
    clip_frames: int = 0
    affect: AffectSettings = field(default_factory=AffectSettings)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_subjects < 3:
            raise ValueError(f"num_subjects={self.num_subjects}: at least 3 subjects are needed for train/val/test.")
        if self.samples_per_subject < 1:
            raise ValueError(f"samples_per_subject={self.samples_per_subject} must be at least 1.")
        if self.image_size < 32:
            raise ValueError(f"image_size={self.image_size} is too small; use at least 32 pixels.")
        if self.depth_block < 1 or self.image_size % self.depth_block:
            raise ValueError(
                f"depth_block={self.depth_block} must be a positive divisor of image_size={self.image_size}."
            )
        if not 0.0 <= self.occlusion_probability <= 1.0:
            raise ValueError(f"occlusion_probability={self.occlusion_probability} must lie in [0, 1].")
        if self.clip_frames != 0 and self.clip_frames < MIN_CLIP_FRAMES:
            raise ValueError(
                f"clip_frames={self.clip_frames}: use 0 (no clips) or at least {MIN_CLIP_FRAMES} frames (neutral "
                "start, apex, offset)."
            )
        unknown = [kind for kind in self.occlusion_types if kind not in OCCLUSION_TYPES]
        if unknown:
            raise ValueError(f"Unknown occlusion types {unknown}; valid: {list(OCCLUSION_TYPES)}.")

    @property
    def num_samples(self) -> int:
        """Total number of samples."""
        return self.num_subjects * self.samples_per_subject

    @property
    def audio_length(self) -> int:
        """Samples per audio clip."""
        return round(self.audio_seconds * self.audio_sample_rate)

    @property
    def physio_length(self) -> int:
        """Samples per physiological channel."""
        return round(self.physio_seconds * self.physio_sample_rate)

    def fingerprint_settings(self) -> dict[str, Any]:
        """The settings as recorded in the cache manifest (with the generator version).

        ``clip_frames`` is left out when 0, so that still-face caches keep the fingerprint they had before clip
        mode existed.
        """
        settings = settings_dict(self)
        if self.clip_frames == 0:
            del settings["clip_frames"]
        return {"dataset": "synthaffect", "generator_version": GENERATOR_VERSION, **settings}

    def fingerprint(self) -> str:
        """Fingerprint of these settings."""
        return fingerprint(self.fingerprint_settings())


def array_specs(settings: SynthAffectSettings) -> list[ArraySpec]:
    """The cache fields of SynthAffect and their per-sample shapes and dtypes (clip fields in clip mode only)."""
    size = settings.image_size
    num_aus = len(SYNTHAFFECT_AUS)
    clips = (
        [
            ArraySpec("face_clip", (settings.clip_frames, 3, size, size), "uint8"),
            ArraySpec("face_clip_profile", (settings.clip_frames,), "float32"),
        ]
        if settings.clip_frames
        else []
    )
    return [
        ArraySpec("face", (3, size, size), "uint8"),
        ArraySpec("face_clean", (3, size, size), "uint8"),
        ArraySpec("occlusion_mask", (1, size, size), "uint8"),
        ArraySpec("occlusion_type", (), "int8"),
        ArraySpec("landmarks", (len(LANDMARK_NAMES), 2), "float32"),
        ArraySpec("depth", (1, size, size), "float16"),
        ArraySpec("points", (settings.num_points, 6), "float16"),
        ArraySpec("audio", (settings.audio_length,), "int16"),
        ArraySpec("physio", (len(PHYSIO_CHANNEL_NAMES), settings.physio_length), "float16"),
        ArraySpec("expr", (), "int64"),
        ArraySpec("intensity", (), "float32"),
        ArraySpec("au", (num_aus,), "float32"),
        ArraySpec("au_intensity", (num_aus,), "float32"),
        ArraySpec("va", (2,), "float32"),
        ArraySpec("subject", (), "int32"),
        ArraySpec("pose", (3,), "float32"),
        *clips,
    ]


@dataclass(frozen=True)
class SubjectTraits:
    """Stable traits of one subject across all of its samples."""

    face: Any
    voice: Any
    physio: Any


@lru_cache(maxsize=4096)
def subject_traits(seed: int, subject: int) -> SubjectTraits:
    """Draw (deterministically) the traits of one subject.

    Args:
        seed: generation seed.
        subject: subject index.
    """
    from multimodal_fer.datasets.synthaffect.audio import sample_voice_identity
    from multimodal_fer.datasets.synthaffect.face_model import sample_face_identity
    from multimodal_fer.datasets.synthaffect.physio import sample_physio_baseline

    rng = np.random.default_rng([seed, 0, subject])
    return SubjectTraits(
        face=sample_face_identity(rng), voice=sample_voice_identity(rng), physio=sample_physio_baseline(rng)
    )


def _depth_sensor(depth: np.ndarray, settings: SynthAffectSettings, rng: np.random.Generator) -> np.ndarray:
    """Consumer depth sensor model: coarse resolution, Gaussian noise, 1 mm quantisation and dropped pixels.

    Each ``depth_block`` × ``depth_block`` block reads the mean depth of its foreground pixels (a block with
    no foreground reads nothing); the map is then expanded back to the image size.

    Args:
        depth: float32 (H, W) metres, 0 on the background.
        settings: noise level and dropout rate.
        rng: the sample's random generator.

    Returns:
        float32 (H, W) metres, 0 on the background and where pixels dropped out.
    """
    block = settings.depth_block
    height, width = depth.shape
    if block > 1 and height % block == 0 and width % block == 0:
        tiles = depth.reshape(height // block, block, width // block, block)
        valid = (tiles > 0).sum(axis=(1, 3))
        coarse = np.where(valid > 0, tiles.sum(axis=(1, 3)) / np.maximum(valid, 1), 0.0)
        depth = np.repeat(np.repeat(coarse, block, axis=0), block, axis=1).astype(np.float32)
    foreground = depth > 0
    noisy = depth + rng.normal(0.0, settings.depth_noise_mm * 1e-3, depth.shape)
    noisy = np.round(noisy * 1000.0) / 1000.0
    dropped = rng.random(depth.shape) < settings.depth_dropout
    return np.where(foreground & ~dropped, noisy, 0.0).astype(np.float32)


#: How far (metres) in front of the face surface a physical occluder sits, as the depth sensor sees it.
#: Image-domain occlusions (random blocks, strokes) are not in front of the sensor and leave depth alone.
OCCLUDER_STANDOFF_M: dict[str, float] = {
    "sunglasses": 0.012,
    "medical_mask": 0.006,
    "hand": 0.025,
    "scarf": 0.015,
    "hair": 0.004,
}


def _occlude_depth(depth: np.ndarray, mask: np.ndarray, occlusion_type: int) -> np.ndarray:
    """What the depth sensor sees when a physical occluder is in front of the face.

    The occluded pixels read a flat surface just in front of the nearest face point under the occluder, so the
    geometry it hides (the mouth under a mask, the eyes behind sunglasses) is gone from depth too.

    Args:
        depth: float32 (H, W) metres, 0 on the background.
        mask: bool (H, W), True where the RGB face is occluded.
        occlusion_type: index into ``OCCLUSION_TYPES``, -1 for none.

    Returns:
        float32 (H, W) metres.
    """
    if occlusion_type < 0:
        return depth
    standoff = OCCLUDER_STANDOFF_M.get(OCCLUSION_TYPES[occlusion_type])
    covered = mask & (depth > 0)
    if standoff is None or not covered.any():
        return depth
    surface = float(depth[covered].min()) - standoff
    return np.where(mask, np.float32(surface), depth).astype(np.float32)


def generate_sample(settings: SynthAffectSettings, index: int) -> dict[str, np.ndarray]:
    """Generate every field of one sample.

    Args:
        settings: generation settings.
        index: sample index in [0, N).

    Returns:
        A dict with one array per field of :func:`array_specs` (per-sample shapes). In clip mode the clip is
        drawn from its own stream, so every other field equals the one generated without clips.
    """
    from multimodal_fer.datasets.synthaffect.audio import synthesize_voice
    from multimodal_fer.datasets.synthaffect.clip import clip_profile, render_face_clip, sample_clip_timing
    from multimodal_fer.datasets.synthaffect.face_model import build_face_mesh
    from multimodal_fer.datasets.synthaffect.physio import simulate_physio
    from multimodal_fer.datasets.synthaffect.render import render_face
    from multimodal_fer.geometry.pointcloud import depth_to_points
    from multimodal_fer.occlusion.synthesis import FaceLandmarks, occlude

    subject = index // settings.samples_per_subject
    traits = subject_traits(settings.seed, subject)
    rng = np.random.default_rng([settings.seed, 1, index])
    affect = sample_affect(rng, settings.affect)

    yaw, pitch, roll = (
        math.radians(rng.uniform(-limit, limit))
        for limit in (settings.max_yaw_degrees, settings.max_pitch_degrees, settings.max_roll_degrees)
    )
    light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.2, 0.9), 1.0])
    light /= np.linalg.norm(light)
    gain = np.where(np.isin(SYNTHAFFECT_AUS, (25, 26)), 1.0, settings.au_deformation_gain)
    apex_au = (affect.au_intensity * gain).astype(np.float32)
    mesh = build_face_mesh(traits.face, apex_au, affect.asymmetry)
    ambient = float(rng.uniform(0.25, 0.5))
    render_state = rng.bit_generator.state  # a clip's frames are rendered from copies of this state
    rendered = render_face(mesh, traits.face, settings.image_size, yaw, pitch, roll, light, ambient, rng)
    clean = rendered.rgb
    face = clean
    mask = np.zeros(clean.shape[:2], dtype=bool)
    occlusion_type = -1
    if rng.random() < settings.occlusion_probability:
        kind = settings.occlusion_types[int(rng.integers(len(settings.occlusion_types)))]
        face, mask = occlude(clean, kind, rng, FaceLandmarks.from_dict(rendered.landmarks))
        occlusion_type = OCCLUSION_TYPES.index(kind)

    depth = _depth_sensor(_occlude_depth(rendered.depth, mask, occlusion_type), settings, rng)
    points = depth_to_points(depth, rendered.intrinsics, settings.num_points, settings.voxel_size, rng)

    audio = synthesize_voice(
        traits.voice,
        affect.expression,
        affect.intensity,
        affect.valence,
        affect.arousal,
        settings.audio_seconds,
        settings.audio_sample_rate,
        rng,
    )
    physio = simulate_physio(
        traits.physio, affect.arousal, affect.valence, settings.physio_seconds, settings.physio_sample_rate, rng
    )
    sample = {
        "face": np.ascontiguousarray(face.transpose(2, 0, 1)),
        "face_clean": np.ascontiguousarray(clean.transpose(2, 0, 1)),
        "occlusion_mask": mask[None].astype(np.uint8),
        "occlusion_type": np.int8(occlusion_type),
        "landmarks": FaceLandmarks.from_dict(rendered.landmarks).as_array().astype(np.float32),
        "depth": depth[None].astype(np.float16),
        "points": points.astype(np.float16),
        "audio": np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16),
        "physio": physio.astype(np.float16),
        "expr": np.int64(affect.expression),
        "intensity": np.float32(affect.intensity),
        "au": affect.au_active,
        "au_intensity": affect.au_intensity,
        "va": np.array([affect.valence, affect.arousal], dtype=np.float32),
        "subject": np.int32(subject),
        "pose": np.array([yaw, pitch, roll], dtype=np.float32),
    }
    if settings.clip_frames:
        clip_rng = np.random.default_rng([settings.seed, 2, index])
        profile = clip_profile(sample_clip_timing(clip_rng, settings.clip_frames))
        occluded = occlusion_type >= 0
        sample["face_clip"] = render_face_clip(
            traits.face,
            apex_au,
            affect.asymmetry,
            profile,
            image_size=settings.image_size,
            yaw=yaw,
            pitch=pitch,
            roll=roll,
            light_direction=light,
            ambient=ambient,
            render_state=render_state,
            noise_rng=clip_rng,
            apex_mesh=mesh,
            occluded_face=face if occluded else None,
            occlusion_mask=mask if occluded else None,
        )
        sample["face_clip_profile"] = profile
    return sample
