"""Batch transforms that run on the device after transfer: dtype conversion, normalisation, augmentation.

Inputs arrive in storage dtypes to keep host→device traffic small: faces uint8 (B, 3, H, W) (or face clips
(B, T, 3, H, W)), depth float16 (B, 1, H, W) in metres (0 = no reading) or depth point clouds float16 (B, N, 6)
(xyz in metres, unit normals), audio int16 (B, S), physiology float16 (B, C, T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from multimodal_fer.errors import DataError
from multimodal_fer.standardization import FACE_STD_EPS, face_statistics, normalize_face, restandardize  # noqa: F401 - the device transform's face steps


def normalize_depth(depth: Tensor, scale_m: float = 0.03) -> Tensor:
    """Depth in metres (B, 1, H, W), 0 = no reading → relief relative to each face's mean depth.

    Returns:
        float32 (B, 2, H, W): channel 0 is ``(mean − depth) / scale_m`` on valid pixels (larger = nearer the
        camera) and 0 elsewhere; channel 1 is the validity mask.
    """
    depth = depth.float()
    valid = depth > 0
    count = valid.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    mean = (depth * valid).sum(dim=(1, 2, 3), keepdim=True) / count
    relief = torch.where(valid, (mean - depth) / scale_m, torch.zeros_like(depth))
    return torch.cat([relief, valid.float()], dim=1)


def normalize_points(points: Tensor, sample_ids: Tensor | None = None) -> Tensor:
    """Point clouds of xyz + normals (B, N, 6) → float32 clouds centred on their centroid, in the unit sphere.

    xyz is centred on each cloud's centroid and divided by its largest distance from it (so every cloud
    reaches the unit sphere, whatever the face's size or distance); normals are rescaled to unit length (a zero
    normal stays zero). Axes stay the camera's (OpenCV: x right, y down, z away from the camera), so y is the
    vertical axis and x the one a horizontal image flip mirrors.

    Args:
        points: (B, N, 6) xyz then normals, any float dtype (the cache stores float16, metres).
        sample_ids: long (B,) ids that name the samples in errors (e.g. the batch's cache ``index``); None:
            positions in the batch.

    Returns:
        float32 (B, N, 6).

    Raises:
        DataError: some clouds hold NaN or inf (named by ``sample_ids``); they are refused, not dropped, since
            the cache writer only stores finite points: a non-finite one means a damaged cache or adapter.
    """
    points = points.float()
    finite = torch.isfinite(points).flatten(1).all(dim=1)  # (B,)
    if not bool(finite.all()):
        bad = (~finite).nonzero(as_tuple=True)[0]
        names = (sample_ids[bad] if sample_ids is not None else bad).tolist()
        kind = "sample ids" if sample_ids is not None else "batch positions"
        raise DataError(
            f"Depth point clouds with NaN or inf values at {kind} {names}; the cache or the adapter that wrote "
            "them is damaged: rebuild the cache."
        )
    xyz, normals = points[..., :3], points[..., 3:]
    xyz = xyz - xyz.mean(dim=1, keepdim=True)
    radius = xyz.norm(dim=-1).amax(dim=1).clamp_min(1e-8)  # (B,)
    xyz = xyz / radius.view(-1, 1, 1)
    normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return torch.cat([xyz, normals], dim=-1)


def augment_points(
    points: Tensor,
    generator: torch.Generator | None = None,
    flip: Tensor | None = None,
    roll: Tensor | None = None,
    scale: Tensor | None = None,
    max_yaw_degrees: float = 10.0,
    jitter_std: float = 0.01,
    jitter_clip: float = 0.03,
) -> Tensor:
    """Training augmentation of normalised point clouds (B, N, 6), the 3-D counterpart of the face warp.

    :func:`augment_face_and_depth` passes its own ``flip``, ``roll`` and ``scale`` so that the face image and
    the cloud of a sample move together: the image's horizontal flip mirrors x (the camera's horizontal axis)
    and its in-plane rotation is a rotation about the camera's optical axis z, both exactly as they act on the
    rendered image (square pixels, principal point at the centre); the zoom scales xyz. The image's
    translation has no counterpart (clouds are centred). Not given, they are drawn as the face warp draws
    them (flip p = 0.5, ±8°, 0.92–1.08). Then, with no image counterpart: a rotation about the vertical axis
    y (a small head turn) of up to ``max_yaw_degrees`` (applied before the image-plane transform), and
    Gaussian jitter of xyz (clipped). Normals get the rotations and the mirror only, so they stay unit length.

    Args:
        points: float (B, N, 6), xyz (camera axes) then normals, e.g. from :func:`normalize_points`.
        generator: random generator on the batch's device (None: the global one).
        flip: (B,) −1 to mirror x, 1 to keep it.
        roll: (B,) angle in radians of the face warp's rotation (the ``angle`` of its affine matrix).
        scale: (B,) zoom of the face warp.
        max_yaw_degrees: largest rotation about the vertical axis.
        jitter_std: standard deviation of the xyz jitter (unit-sphere units).
        jitter_clip: largest jitter per coordinate.

    Returns:
        float (B, N, 6).
    """
    size, device = points.shape[0], points.device

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(size, device=device, generator=generator)

    if flip is None:
        flip = torch.where(torch.rand(size, device=device, generator=generator) < 0.5, -1.0, 1.0)
    if roll is None:
        roll = uniform(-8.0, 8.0) * torch.pi / 180.0
    if scale is None:
        scale = uniform(0.92, 1.08)
    yaw = uniform(-max_yaw_degrees, max_yaw_degrees) * torch.pi / 180.0
    zero, one = torch.zeros(size, device=device), torch.ones(size, device=device)
    cos_y, sin_y = torch.cos(yaw), torch.sin(yaw)
    turn = torch.stack(
        [
            torch.stack([cos_y, zero, sin_y], dim=1),
            torch.stack([zero, one, zero], dim=1),
            torch.stack([-sin_y, zero, cos_y], dim=1),
        ],
        dim=1,
    )  # (B, 3, 3): rotation about the vertical axis y
    # The image warp maps an image point p to scale · mirror · R(−roll) · p (x right, y down, like the camera).
    cos_r, sin_r = torch.cos(roll).to(cos_y), torch.sin(roll).to(cos_y)
    flip = flip.to(cos_y)
    in_plane = torch.stack(
        [
            torch.stack([flip * cos_r, flip * sin_r, zero], dim=1),
            torch.stack([-sin_r, cos_r, zero], dim=1),
            torch.stack([zero, zero, one], dim=1),
        ],
        dim=1,
    )  # (B, 3, 3): mirror · rotation about the optical axis z
    rotation = (in_plane @ turn).to(points.dtype)  # (B, 3, 3), orthogonal
    xyz = points[..., :3] @ rotation.transpose(1, 2) * scale.to(points.dtype).view(-1, 1, 1)
    noise = torch.randn(xyz.shape, device=device, generator=generator, dtype=points.dtype) * jitter_std
    xyz = xyz + noise.clamp(-jitter_clip, jitter_clip)
    normals = points[..., 3:6] @ rotation.transpose(1, 2)
    return torch.cat([xyz, normals, points[..., 6:]], dim=-1)


def normalize_audio(audio: Tensor) -> Tensor:
    """int16 (B, S) → float32 in [-1, 1]."""
    return audio.float() / 32768.0


def standardize_signals(signals: Tensor, eps: float = 1e-4) -> Tensor:
    """(B, C, T) → float32 with zero mean and unit variance per sample and channel."""
    signals = signals.float()
    mean = signals.mean(dim=-1, keepdim=True)
    std = signals.std(dim=-1, keepdim=True)
    return (signals - mean) / (std + eps)


#: The largest face augmentation strength: contrast then still ranges over 0.2–1.8 and scale over 0.68–1.32.
MAX_AUGMENT_STRENGTH = 4.0


def check_augment_strength(strength: float) -> float:
    """``strength`` as a float, refused unless it lies in [0, :data:`MAX_AUGMENT_STRENGTH`].

    Raises:
        ValueError: outside that range (or NaN).
    """
    value = float(strength)
    if not 0.0 <= value <= MAX_AUGMENT_STRENGTH:
        raise ValueError(
            f"augment_strength={strength} must lie in [0, {MAX_AUGMENT_STRENGTH}]: it multiplies the face warp's "
            "rotation, scale and translation ranges and the brightness and contrast jitter (1 = the default ranges; "
            "to switch augmentation off, set augment=false)."
        )
    return value


def augment_face_and_depth(
    face: Tensor,
    depth: Tensor | None,
    generator: torch.Generator | None = None,
    aligned: dict[str, Tensor] | None = None,
    strength: float = 1.0,
) -> tuple[Tensor, Tensor | None]:
    """Training augmentation on the device: one random affine warp per sample, shared by face and depth.

    The warp combines a horizontal flip (p = 0.5), rotation (±8°), scale (0.92–1.08) and translation (±6% of
    the side); the face also gets brightness (±0.3) and contrast (0.8–1.2) jitter. ``strength`` s multiplies every
    range but the flip's: rotation ±8s°, scale 1 ± 0.08s, translation ±6s %, brightness ±0.3s, contrast 1 ± 0.2s
    (s = 1: the ranges above, drawn exactly as before the option existed; s = 0: flips only). Pixels warped in
    from outside the image are 0 (the mean colour after standardisation; "no reading" for depth).

    Face clips (B, T, 3, H, W) are augmented consistently: one draw per clip (the same random numbers, in the
    same order, as for a batch of B still faces), applied to every frame, so the clip moves and changes
    exposure as a whole and frame t gets exactly the augmentation its frame alone would get with those draws.
    The contrast jitter pivots about each frame's own mean, as for a still face.

    Args:
        face: float (B, 3, H, W) standardised faces, or standardised face clips (B, T, 3, H, W).
        depth: float (B, C, H, W) normalised depth of the same samples, or their normalised point clouds
            (B, N, 6), which get the same flip, rotation and zoom in 3-D (see :func:`augment_points`), or None.
        generator: random generator on the batch's device (None: the global one).
        aligned: other images of the same samples that must move with the face, changed in place:
            ``face_clean`` (B, 3, H, W) gets the face's warp and photometric jitter, ``occlusion_mask``
            (B, 1, H, W) the warp only (nearest neighbour).
        strength: multiplier of the rotation, scale, translation, brightness and contrast ranges, in
            [0, :data:`MAX_AUGMENT_STRENGTH`] (see above).

    Returns:
        The augmented face (B, 3, H, W) (or clips (B, T, 3, H, W)) and depth (B, C, H, W) or (B, N, 6), or None.

    Raises:
        DataError: a face batch that is neither (B, 3, H, W) nor (B, T, 3, H, W), or clips with ``aligned``
            images (restoration targets of clips do not exist).
        ValueError: ``strength`` outside [0, :data:`MAX_AUGMENT_STRENGTH`].
    """
    check_augment_strength(strength)
    if face.ndim not in (4, 5):
        raise DataError(f"Faces must be (B, 3, H, W) or clips (B, T, 3, H, W), got shape {tuple(face.shape)}.")
    if face.ndim == 5 and aligned:
        raise DataError(f"Face clips cannot carry aligned images {sorted(aligned)}; they exist for still faces only.")
    size = face.shape[0]
    device = face.device
    clip_shape = face.shape if face.ndim == 5 else None
    if clip_shape is not None:  # frames of a clip share their clip's draws
        face = face.flatten(0, 1)

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(size, device=device, generator=generator)

    flip = torch.where(torch.rand(size, device=device, generator=generator) < 0.5, -1.0, 1.0)
    angle = uniform(-8.0 * strength, 8.0 * strength) * torch.pi / 180.0
    scale = uniform(1.0 - 0.08 * strength, 1.0 + 0.08 * strength)  # 0.92 and 1.08 exactly at strength 1
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-0.12 * strength, 0.12 * strength)], dim=1),
            torch.stack([sin * flip, cos, uniform(-0.12 * strength, 0.12 * strength)], dim=1),
        ],
        dim=1,
    )  # (B, 2, 3)
    frames = 1 if clip_shape is None else clip_shape[1]
    frame_theta = theta if clip_shape is None else theta.repeat_interleave(frames, dim=0)  # (B·T, 2, 3)
    frame_grid = F.affine_grid(frame_theta.to(face.dtype), list(face.shape), align_corners=False)
    face = F.grid_sample(face, frame_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    grid = frame_grid if clip_shape is None else frame_grid[::frames]  # (B, H, W, 2): one per sample
    if depth is not None and depth.ndim == 3 and depth.shape[0] == size:  # point clouds (B, N, 6)
        depth = augment_points(depth, generator, flip=flip, roll=angle, scale=scale)
    elif depth is not None and depth.shape[0] == size:
        # Nearest neighbour keeps depth readings unmixed with "no reading" pixels.
        depth = F.grid_sample(depth, grid.to(depth.dtype), mode="nearest", padding_mode="zeros", align_corners=False)
    aligned = aligned if aligned is not None else {}
    for name, image in aligned.items():
        mode = "nearest" if name == "occlusion_mask" else "bilinear"
        aligned[name] = F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode="zeros", align_corners=False)
    brightness = (torch.rand(size, 1, 1, 1, device=device, generator=generator) - 0.5) * 0.6 * strength
    contrast = 1.0 + (torch.rand(size, 1, 1, 1, device=device, generator=generator) - 0.5) * 0.4 * strength
    mean = face.mean(dim=(1, 2, 3), keepdim=True)
    if clip_shape is not None:
        brightness = brightness.repeat_interleave(frames, dim=0)
        contrast = contrast.repeat_interleave(frames, dim=0)
    face = (face - mean) * contrast + mean + brightness
    if clip_shape is not None:
        face = face.view(clip_shape)
    if "face_clean" in aligned:  # the same intensity map, so clean and occluded still agree off the occluder
        aligned["face_clean"] = (aligned["face_clean"] - mean) * contrast + mean + brightness
    return face, depth
