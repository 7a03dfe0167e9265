"""Apply a test-time :class:`~multimodal_fer.corruption_conditions.Corruption` to batches, the same way every run.

Every random draw of a sample comes from the corruption's ``seed`` and the sample's cache index (``batch["index"]``)
alone: not from the run's seed, the batch it falls in, the loader's workers or the device's random state. Every
model tested under one corruption therefore sees the same corrupted test set, and a draw never changes with the
batch size. On the device the draws are a counter-based integer hash (:func:`counter_uniform`), vectorised over the
batch; face occluders are the package's NumPy rasterisers (:func:`~multimodal_fer.occlusion.synthesis.occlude`)
and are drawn in the loader (:class:`FaceOcclusionDataset`), before the faces are standardised.

:func:`corrupt_batch` works on the device batch *after* the data module's normalisation, so ``noise`` is measured
against the model's actual input and zeroed frames hold the neutral value of each input (silence, the
standardised mean, the mean colour). Only the corrupted modality's tensor (and, for ``drop`` of a single image or
depth map, its ``present`` mask) changes; every other field is left as it is, tensor for tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from multimodal_fer.corruption_conditions import Corruption
from multimodal_fer.errors import DataError
from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES, FaceLandmarks, canonical_landmarks, occlude
from multimodal_fer.types import PRESENT_KEY

#: Sequences (audio, physiology) are cut into at most this many equal time frames for ``drop``.
SEQUENCE_FRAMES = 100
#: Most occluders drawn on one face for ``occlusion`` (a strength they do not reach is covered as far as they go).
MAX_FACE_OCCLUDERS = 48
_MASK32 = 0xFFFFFFFF
#: Stream numbers keep the draws of different uses of one sample independent.
_STREAMS = {"noise_a": 1, "noise_b": 2, "frames": 3, "samples": 4, "span": 5, "patch_x": 6, "patch_y": 7, "face": 8}


def _multiply32(x: Tensor, factor: int) -> Tensor:
    """``x · factor mod 2³²`` for int64 ``x`` in [0, 2³²), without overflowing int64."""
    low, high = factor & 0xFFFF, factor >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (xor-shift-multiply) of int64 values in [0, 2³²); same result on every device."""
    x = x ^ (x >> 16)
    x = _multiply32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _multiply32(x, 0x846CA68B)
    return x ^ (x >> 16)


def counter_uniform(seed: int, index: Tensor, stream: str, count: int) -> Tensor:
    """Uniform numbers in (0, 1) from the seed, each sample's cache index, a stream name and a counter.

    Args:
        seed: the corruption's seed.
        index: long (B,) cache indices of the batch's samples (on the batch's device).
        stream: one of the module's stream names (independent draws for independent uses).
        count: numbers per sample.

    Returns:
        float32 (B, count) on ``index``'s device; row b depends on ``seed``, ``index[b]`` and ``stream`` only.
    """
    key = int(_mix32(torch.tensor([(seed & _MASK32) ^ (_STREAMS[stream] * 0x9E3779B9 & _MASK32)]))[0])
    sample = _mix32((index.long() & _MASK32) ^ key)  # (B,)
    counter = _mix32(torch.arange(count, device=index.device, dtype=torch.int64) ^ (key >> 1))  # (count,)
    bits = _mix32(sample[:, None] ^ counter[None, :])
    return ((bits >> 8).float() + 0.5) / float(1 << 24)


def counter_normal(seed: int, index: Tensor, count: int) -> Tensor:
    """Standard normal numbers, float32 (B, count): Box–Muller on two :func:`counter_uniform` streams.

    Each pair of uniforms gives two normals (cosine and sine), so ``ceil(count / 2)`` pairs are drawn.
    """
    pairs = (count + 1) // 2
    radius = torch.sqrt(-2.0 * torch.log(counter_uniform(seed, index, "noise_a", pairs)))
    angle = 2.0 * math.pi * counter_uniform(seed, index, "noise_b", pairs)
    return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)[:, :count]


def _chosen_units(seed: int, index: Tensor, stream: str, units: int, share: float) -> Tensor:
    """Units to drop, bool (B, units): exactly ``round(share · units)`` of each sample's, chosen at random."""
    ranks = counter_uniform(seed, index, stream, units).argsort(dim=1).argsort(dim=1)
    return ranks < round(share * units)


def add_noise(
    values: Tensor, corruption: Corruption, index: Tensor, channel_dim: int | None, valid: Tensor | None
) -> Tensor:
    """Gaussian noise of std ``strength`` × each sample's own per-channel std (over the valid entries).

    Args:
        values: float (B, ...) model inputs.
        corruption: the setting (``kind`` noise).
        index: long (B,) cache indices.
        channel_dim: the channel dimension of ``values`` (its std is taken over all other non-batch dimensions);
            None for inputs of one channel (audio).
        valid: bool, broadcastable to ``values``, the entries that carry data (None: all); others are untouched.

    Returns:
        float (B, ...), equal to ``values`` where ``valid`` is False.
    """
    valid = torch.ones_like(values, dtype=torch.bool) if valid is None else valid.expand_as(values)
    channel = None if channel_dim is None else channel_dim % values.ndim
    dims = tuple(d for d in range(1, values.ndim) if d != channel)
    weight = valid.to(values.dtype)
    count = weight.sum(dim=dims, keepdim=True).clamp_min(1.0)
    mean = (values * weight).sum(dim=dims, keepdim=True) / count
    std = torch.sqrt((((values - mean) * weight) ** 2).sum(dim=dims, keepdim=True) / count)
    noise = counter_normal(corruption.seed, index, values[0].numel()).view_as(values).to(values.dtype)
    return torch.where(valid, values + corruption.strength * std * noise, values)


def _time_positions(length: int, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Positions (1, L) and the valid ones, bool (B, L), of sequences with ``lengths`` (B,) valid entries."""
    positions = torch.arange(length, device=lengths.device)[None, :]
    return positions, positions < lengths[:, None]


def drop_time_frames(values: Tensor, corruption: Corruption, index: Tensor, lengths: Tensor | None) -> Tensor:
    """Zero ``strength`` of the time frames of sequences (B, ..., L): min(100, L) equal frames of the valid part.

    Args:
        values: float (B, L) audio or (B, C, L) physiology, time last.
        corruption: the setting (``kind`` drop).
        index: long (B,) cache indices.
        lengths: long (B,) valid entries per sample (None: all L).
    """
    length = values.shape[-1]
    lengths = torch.full((values.shape[0],), length, device=values.device) if lengths is None else lengths.long()
    units = min(SEQUENCE_FRAMES, length)
    positions, valid = _time_positions(length, lengths)
    frame = (positions * units) // lengths.clamp_min(1)[:, None]  # (B, L) frame of each position
    dropped_frames = _chosen_units(corruption.seed, index, "frames", units, corruption.strength)  # (B, units)
    dropped = torch.gather(dropped_frames, 1, frame.clamp_max(units - 1)) & valid  # (B, L)
    shape = (values.shape[0],) + (1,) * (values.ndim - 2) + (length,)
    return values.masked_fill(dropped.view(shape), 0.0)


def mask_time_span(values: Tensor, corruption: Corruption, index: Tensor, lengths: Tensor | None) -> Tensor:
    """Zero one contiguous span of ``round(strength · valid length)`` entries at a random start (all channels).

    Args:
        values: float (B, L) audio or (B, C, L) physiology, time last.
        corruption: the setting (``kind`` occlusion).
        index: long (B,) cache indices.
        lengths: long (B,) valid entries per sample (None: all L).
    """
    length = values.shape[-1]
    lengths = torch.full((values.shape[0],), length, device=values.device) if lengths is None else lengths.long()
    span = torch.round(corruption.strength * lengths.double()).long()  # (B,)
    start = (counter_uniform(corruption.seed, index, "span", 1)[:, 0].double() * (lengths - span + 1)).long()
    start = torch.minimum(start, lengths - span)
    positions, _ = _time_positions(length, lengths)
    masked = (positions >= start[:, None]) & (positions < (start + span)[:, None])
    shape = (values.shape[0],) + (1,) * (values.ndim - 2) + (length,)
    return values.masked_fill(masked.view(shape), 0.0)


def drop_clip_frames(clips: Tensor, corruption: Corruption, index: Tensor) -> Tensor:
    """Zero (the mean colour after standardisation) ``round(strength · T)`` frames of clips (B, T, 3, H, W)."""
    dropped = _chosen_units(corruption.seed, index, "frames", clips.shape[1], corruption.strength)  # (B, T)
    return clips.masked_fill(dropped[:, :, None, None, None], 0.0)


def drop_samples(present: Tensor, corruption: Corruption, index: Tensor) -> Tensor:
    """Mark each sample absent with probability ``strength`` (a sample already absent stays absent)."""
    kept = counter_uniform(corruption.seed, index, "samples", 1)[:, 0] >= corruption.strength
    return present & kept


def depth_patch(depth: Tensor, corruption: Corruption, index: Tensor) -> Tensor:
    """Remove a rectangular patch of ``strength`` of the pixels from normalised depth maps (B, 2, H, W).

    The patch has the map's aspect ratio (sides ``sqrt(strength)`` of the map's, rounded), sits at a random
    position inside the map and becomes "no reading": relief 0 and validity 0.
    """
    _, _, height, width = depth.shape
    side = math.sqrt(corruption.strength)
    patch_h, patch_w = round(side * height), round(side * width)
    top = (counter_uniform(corruption.seed, index, "patch_y", 1)[:, 0] * (height - patch_h + 1)).long()
    left = (counter_uniform(corruption.seed, index, "patch_x", 1)[:, 0] * (width - patch_w + 1)).long()
    rows = torch.arange(height, device=depth.device)[None, :]
    columns = torch.arange(width, device=depth.device)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < (top + patch_h)[:, None])  # (B, H)
    inside_columns = (columns >= left[:, None]) & (columns < (left + patch_w)[:, None])  # (B, W)
    patch = inside_rows[:, None, :, None] & inside_columns[:, None, None, :]  # (B, 1, H, W)
    return depth.masked_fill(patch, 0.0)


def corrupt_batch(batch: dict[str, Any], corruption: Corruption, depth_input: str = "map") -> dict[str, Any]:
    """Corrupt one modality of a normalised device batch (face occlusion excepted: the loader draws it).

    Args:
        batch: the batch after the data module's device transform: ``face`` float (B, 3, H, W) or clips
            (B, T, 3, H, W), ``audio`` float (B, S) with optional ``audio_lengths`` (B,), ``depth`` float
            (B, 2, H, W) (relief, validity) or points (B, N, 6), ``physio`` float (B, C, T), ``index`` long (B,)
            and ``present``.
        corruption: the setting.
        depth_input: ``"map"`` or ``"points"``, as the data module reads depth.

    Returns:
        The same dictionary with the corrupted modality's tensor (or its ``present`` mask) replaced.

    Raises:
        DataError: the batch lacks the modality or the ``index`` field, or the kind is not defined for its form.
    """
    name, kind, index = corruption.modality, corruption.kind, batch.get("index")
    if name not in batch or index is None:
        raise DataError(
            f"test_corruption of {name!r} needs batches with the {name!r} and 'index' fields; this batch has "
            f"{sorted(batch)}. Load the modality (data.init_args.modalities) and do not withhold it."
        )
    if corruption.strength == 0.0 or (kind == "occlusion" and name == "face"):
        return batch  # identity; face occluders are drawn by FaceOcclusionDataset
    values = batch[name]
    if name == "face":
        clip = values.ndim == 5
        if kind == "noise":
            batch[name] = add_noise(values, corruption, index, 2 if clip else 1, None)
        elif clip:
            batch[name] = drop_clip_frames(values, corruption, index)
        else:
            batch[PRESENT_KEY] = {**batch[PRESENT_KEY], name: drop_samples(batch[PRESENT_KEY][name], corruption, index)}
    elif name in ("audio", "physio"):
        lengths = batch.get("audio_lengths") if name == "audio" else None
        if kind == "noise":
            valid = None
            if lengths is not None:
                valid = _time_positions(values.shape[-1], lengths.long())[1]
            batch[name] = add_noise(values, corruption, index, 1 if name == "physio" else None, valid)
        elif kind == "drop":
            batch[name] = drop_time_frames(values, corruption, index, lengths)
        else:
            batch[name] = mask_time_span(values, corruption, index, lengths)
    elif depth_input == "points":
        if kind == "noise":
            xyz = add_noise(values[..., :3], corruption, index, -1, None)
            batch[name] = torch.cat([xyz, values[..., 3:]], dim=-1)
        elif kind == "drop":
            batch[PRESENT_KEY] = {**batch[PRESENT_KEY], name: drop_samples(batch[PRESENT_KEY][name], corruption, index)}
        else:
            raise DataError(
                "test_corruption occlusion of depth removes a patch of depth maps; depth read as point clouds "
                "(depth_input=points) has no image plane to cut it from. Use kind noise or drop, or depth_input=map."
            )
    elif kind == "noise":
        valid = values[:, 1:2] > 0.5
        relief = add_noise(values[:, :1], corruption, index, 1, valid)
        batch[name] = torch.cat([relief, values[:, 1:]], dim=1)
    elif kind == "drop":
        batch[PRESENT_KEY] = {**batch[PRESENT_KEY], name: drop_samples(batch[PRESENT_KEY][name], corruption, index)}
    else:
        batch[name] = depth_patch(values, corruption, index)
    return batch


def occlude_face(
    face: np.ndarray, landmarks: FaceLandmarks | None, strength: float, seed: int, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the package's occluders on one face (or every frame of a clip) until they cover ``strength`` of it.

    Occluders of kinds drawn uniformly from :data:`~multimodal_fer.occlusion.synthesis.OCCLUSION_TYPES` are added
    one after another, each from its own generator, until their union covers at least ``strength`` of the crop's
    pixels or :data:`MAX_FACE_OCCLUDERS` are drawn. The sequence depends on ``seed`` and ``index`` only, so a
    stronger occlusion of a sample adds occluders to a weaker one's (its mask contains the weaker mask). A clip's
    frames all get the same occluders.

    Args:
        face: uint8 (3, H, W) face or (T, 3, H, W) clip.
        landmarks: where occluders are placed (None: canonical positions of an aligned crop).
        strength: the share of the crop to cover, in [0, 1].
        seed: the corruption's seed.
        index: the sample's cache index.

    Returns:
        ``(occluded, mask)``: uint8 like ``face``, and bool (H, W), True where an occluder covers the face.
    """
    frames = face[None] if face.ndim == 3 else face
    images = [np.ascontiguousarray(frame.transpose(1, 2, 0)) for frame in frames]  # (H, W, 3) each
    covered = np.zeros(images[0].shape[:2], dtype=bool)
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAMS["face"], index]))
    for _ in range(MAX_FACE_OCCLUDERS):
        if strength <= 0.0 or covered.mean() >= strength:
            break
        kind = OCCLUSION_TYPES[int(rng.integers(len(OCCLUSION_TYPES)))]
        draw = int(rng.integers(2**63))
        for position, image in enumerate(images):  # the same generator state: the same occluder on every frame
            images[position], mask = occlude(image, kind, np.random.default_rng(draw), landmarks)
        covered |= mask
    occluded = np.stack([image.transpose(2, 0, 1) for image in images])
    return (occluded[0] if face.ndim == 3 else occluded), covered


class FaceOcclusionDataset(Dataset):
    """Wraps a test dataset; occludes every face by :func:`occlude_face` at the corruption's strength.

    Args:
        dataset: a dataset whose batches hold ``face`` uint8 (B, 3, H, W) or clips (B, T, 3, H, W), ``index``
            (B,) and, where the cache has them, ``landmarks`` (B, 5, 2).
        corruption: the setting (modality face, kind occlusion).
    """

    def __init__(self, dataset: Dataset, corruption: Corruption) -> None:
        if corruption.modality != "face" or corruption.kind != "occlusion":
            raise ValueError(f"FaceOcclusionDataset applies face occlusion, not {corruption.suffix}.")
        self.dataset = dataset
        self.corruption = corruption

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, position: int) -> dict[str, Any]:
        return self.__getitems__([position])

    def __getitems__(self, positions: Sequence[int]) -> dict[str, Any]:
        """Read a batch and occlude its faces."""
        batch = self.dataset.__getitems__(positions)  # type: ignore[attr-defined]
        if "face" not in batch:
            raise KeyError("Face occlusion needs the batch field 'face'; load the face modality.")
        if self.corruption.strength == 0.0:
            return batch
        faces = batch["face"].numpy().copy()
        side = min(faces.shape[-2:])
        for i, cache_index in enumerate(batch["index"].tolist()):
            landmarks = (
                FaceLandmarks.from_array(batch["landmarks"][i].numpy())
                if "landmarks" in batch
                else canonical_landmarks(side)
            )
            faces[i], _ = occlude_face(faces[i], landmarks, self.corruption.strength, self.corruption.seed, cache_index)
        batch["face"] = torch.from_numpy(faces)
        return batch
