"""Clip mode of SynthAffect: a short video of each sample's expression, onset → apex → offset.

A clip shows the sample's subject, head pose, light and background of its still face while the action units
follow a temporal profile ``p(t)`` in [0, 1] that scales the sample's apex AU intensities (every AU together,
with the sample's asymmetry), frame by frame.

**Temporal profile.** Time runs in frames, ``t = 0 .. T-1``. Per sample (its own random stream):

- the *apex frame* ``k`` is a uniform integer in ``[max(1, round(0.25 (T-1))), min(T-2, round(0.75 (T-1)))]``
  (where the apex sits);
- the *apex hold* is ``[k - a, k + b]`` with ``a ~ U(0, min(0.15 (T-1), k / 2))`` and
  ``b ~ U(0, min(0.15 (T-1), (T-1-k) / 2))``: at least the apex frame, at most about ±15 % of the clip;
- the *onset* starts at ``s = u · (k - a)``, ``u ~ U(0, 0.5)`` (a neutral lead-in of random length) and rises
  to the hold: ``p = smoothstep((t - s) / (k - a - s))``, so frame 0 is always exactly neutral (``p = 0``);
- the *offset* runs from ``k + b`` to ``e = k + b + v · (T-1-k-b)``, ``v ~ U(0.5, 1)``, falling back towards
  neutral: ``p = 1 - (1 - r) · smoothstep((t - k - b) / (e - k - b))``, and stays at the residual ``r ~ U(0,
  0.2)`` after ``e``; the last frame is ``r`` (neutral-ish, as real offsets rarely return fully within a clip).

``smoothstep(x) = 3x² − 2x³`` eases muscle activation in and out. Frames inside the hold have ``p = 1``.

**Rendering.** Every frame is rendered from a copy of the random state the still face was rendered with, so it
shares its background, light tint, blur and noise level; the per-pixel sensor noise is fresh for every frame
(the clip's own stream), except on the *apex frame* — the first frame of the hold, ``argmax(p)`` — which
reuses the still render's noise: that frame is byte for byte the still face's clean render.

**Occlusion.** When the still face is occluded, the same occluder covers every frame: its pixels (``mask``) are
pasted unchanged from the occluded still face, like a static occluder in front of a head that holds its pose;
``occlusion_mask`` is valid for every frame. An unoccluded still face gives an unoccluded clip.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from multimodal_fer.datasets.synthaffect.face_model import FaceIdentity, FaceMesh, build_face_mesh
from multimodal_fer.datasets.synthaffect.render import render_face
from multimodal_fer.errors import DataError

#: Fewest frames of a clip: a neutral first frame, an apex frame and an offset frame.
MIN_CLIP_FRAMES = 3


@dataclass(frozen=True)
class ClipTiming:
    """When the phases of one clip's expression happen, in frames (``0 .. frames-1``).

    Attributes:
        frames: T.
        onset_start: ``s``, end of the neutral lead-in.
        apex_start: first time of the apex hold (``k - a``).
        apex_end: last time of the apex hold (``k + b``).
        offset_end: ``e``, when the offset reaches the residual.
        residual: ``r``, the profile after the offset, in [0, 0.2].
    """

    frames: int
    onset_start: float
    apex_start: float
    apex_end: float
    offset_end: float
    residual: float


def sample_clip_timing(rng: np.random.Generator, frames: int) -> ClipTiming:
    """Draw the per-sample timing of a clip (see the module docstring for the distributions).

    Args:
        rng: the clip's random stream (consumed deterministically).
        frames: T, at least :data:`MIN_CLIP_FRAMES`.

    Returns:
        The timing; the apex hold always contains an integer frame in ``[1, T-2]``.

    Raises:
        DataError: fewer than :data:`MIN_CLIP_FRAMES` frames.
    """
    if frames < MIN_CLIP_FRAMES:
        raise DataError(
            f"A clip needs at least {MIN_CLIP_FRAMES} frames (neutral start, apex, offset), got {frames}; "
            "set clip_frames to 0 (no clips) or at least 3."
        )
    last = frames - 1
    low, high = max(1, round(0.25 * last)), min(last - 1, round(0.75 * last))
    apex = int(rng.integers(low, high + 1))
    before = rng.uniform(0.0, min(0.15 * last, apex / 2.0))
    after = rng.uniform(0.0, min(0.15 * last, (last - apex) / 2.0))
    apex_start, apex_end = apex - before, apex + after
    onset_start = rng.uniform(0.0, 0.5) * apex_start
    offset_end = apex_end + rng.uniform(0.5, 1.0) * (last - apex_end)
    residual = rng.uniform(0.0, 0.2)
    return ClipTiming(frames, float(onset_start), float(apex_start), float(apex_end), float(offset_end), residual)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def clip_profile(timing: ClipTiming) -> np.ndarray:
    """The expression's intensity at every frame.

    Args:
        timing: from :func:`sample_clip_timing`.

    Returns:
        float32 (T,) in [0, 1]: 0 at frame 0, 1 inside the apex hold, ``residual`` after the offset.
    """
    t = np.arange(timing.frames, dtype=np.float64)
    onset = _smoothstep((t - timing.onset_start) / max(timing.apex_start - timing.onset_start, 1e-9))
    offset = 1.0 - (1.0 - timing.residual) * _smoothstep(
        (t - timing.apex_end) / max(timing.offset_end - timing.apex_end, 1e-9)
    )
    profile = np.where(t < timing.apex_start, onset, np.where(t > timing.apex_end, offset, 1.0))
    return profile.astype(np.float32)


def render_face_clip(
    identity: FaceIdentity,
    au_intensity: np.ndarray,
    asymmetry: float,
    profile: np.ndarray,
    *,
    image_size: int,
    yaw: float,
    pitch: float,
    roll: float,
    light_direction: np.ndarray,
    ambient: float,
    render_state: dict[str, Any],
    noise_rng: np.random.Generator,
    apex_mesh: FaceMesh | None = None,
    occluded_face: np.ndarray | None = None,
    occlusion_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Render the frames of one clip (see the module docstring).

    Args:
        identity: the subject's face traits.
        au_intensity: float32 (K,) apex AU intensities as the mesh receives them (deformation gain applied).
        asymmetry: the sample's expression asymmetry in [-1, 1].
        profile: float32 (T,) from :func:`clip_profile`; frame t is posed with ``profile[t] * au_intensity``.
        image_size: side of the frames in pixels.
        yaw: head yaw of the still face, radians.
        pitch: head pitch of the still face, radians.
        roll: head roll of the still face, radians.
        light_direction: float (3,) light direction of the still face.
        ambient: ambient light fraction of the still face.
        render_state: ``bit_generator.state`` of the sample's generator just before its still face was rendered;
            every frame's render starts from a copy of it.
        noise_rng: draws the sensor noise of every frame but the apex frame (``argmax(profile)``).
        apex_mesh: the still face's mesh (posed with ``au_intensity``), reused for frames at profile 1; None:
            built here.
        occluded_face: uint8 (H, W, 3) the occluded still face, or None when it is not occluded.
        occlusion_mask: bool (H, W) where the still face's occluder is; needed with ``occluded_face``.

    Returns:
        uint8 (T, 3, H, W).

    Raises:
        DataError: an occluded face without its mask, or a profile outside [0, 1].
    """
    profile = np.asarray(profile, dtype=np.float32)
    if profile.ndim != 1 or profile.size < 1 or profile.min() < 0.0 or profile.max() > 1.0:
        raise DataError(f"profile must be a non-empty float array (T,) in [0, 1], got shape {profile.shape}.")
    if (occluded_face is None) != (occlusion_mask is None):
        raise DataError("occluded_face and occlusion_mask go together: give both (occluded still face) or neither.")
    au_intensity = np.asarray(au_intensity, dtype=np.float32)
    meshes: dict[float, FaceMesh] = {} if apex_mesh is None else {1.0: apex_mesh}
    bit_generator = getattr(np.random, render_state["bit_generator"])
    apex_frame = int(np.argmax(profile))
    frames = []
    for index, level in enumerate(profile.tolist()):
        if level not in meshes:
            meshes[level] = build_face_mesh(identity, au_intensity * np.float32(level), asymmetry)
        frame_rng = np.random.Generator(bit_generator())
        frame_rng.bit_generator.state = copy.deepcopy(render_state)
        rgb = render_face(
            meshes[level],
            identity,
            image_size,
            yaw,
            pitch,
            roll,
            light_direction,
            ambient,
            frame_rng,
            noise_rng=None if index == apex_frame else noise_rng,
        ).rgb
        if occluded_face is not None and occlusion_mask is not None:
            rgb = np.where(occlusion_mask[..., None], occluded_face, rgb)
        frames.append(rgb.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(frames))
