"""Per-subject normalisation of physiological signals: each channel z-scored with its subject's own statistics.

People differ in their resting levels and ranges (skin conductance, temperature, heart rate) far more than one
person's signals differ between stimuli; removing each person's level and scale is the usual answer in affective
physiology. With ``physio_normalisation: subject`` the data module maps a sample's ``physio`` (C, T) to
``(x - mean[s, c]) / std[s, c]``, where the mean and the (population) standard deviation of channel ``c`` are taken
over every time step of *every usable window of subject* ``s`` that has the modality: all splits, labels never
used. A test subject's own unlabelled signals therefore enter its statistics, as is usual in the literature
(transductive, per-subject calibration); no label and no other subject's data do.

**What it is not.** The default, ``physio_normalisation: window``
(:func:`~multimodal_fer.datamodules.device_transforms.standardize_signals`), z-scores each window and channel with
that window's own mean and standard deviation: every window looks alike in level and scale, so a model sees only
the window's shape (a window of high arousal with a raised skin conductance looks like a calm one). Subject
normalisation keeps a window's level and amplitude relative to its subject's usual ones. (The per-window z-score
also undoes any per-channel shift or scale, so an adapter's pre-stimulus ``baseline_correction`` reaches the
model's signals only with subject normalisation; it always reaches the features computed from the cache.)

**Computed once per cache.** One pass over the cache's ``physio`` in chunks keeps, per window and channel, the mean
and the sum of squared deviations from it; subjects' totals combine them exactly (the law of total variance), with
no precision lost to large offsets. The result is written to ``<root>/physio_subject_statistics.json`` beside the
cache, with the cache's fingerprint, and read again while that fingerprint holds.

**Fallbacks** (recorded in that file's ``fallbacks``, one entry per subject and channel, and logged):

- a subject with a single window: its statistics would be that window's own, so its windows get the per-window
  standardisation (the same numbers, said openly);
- a channel constant over all of a subject's windows (standard deviation at most ``1e-6 × max(1, |mean|)``):
  centred only (divided by 1), so it stays 0 rather than dividing by nearly nothing;
- a subject without any window with physiology: nothing to normalise (its windows are masked as absent).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from multimodal_fer.datamodules.device_transforms import standardize_signals
from multimodal_fer.preprocessing.cache import CacheReader

log = logging.getLogger(__name__)

PhysioNormalisation = Literal["window", "subject"]
PHYSIO_NORMALISATIONS: tuple[str, ...] = ("window", "subject")
#: The statistics file beside a cache.
STATISTICS_NAME = "physio_subject_statistics.json"
#: Bump when the statistics are computed differently (a file of another version is recomputed).
STATISTICS_VERSION = 1
#: A standard deviation at most this times ``max(1, |mean|)`` counts as zero.
ZERO_VARIANCE_TOLERANCE = 1e-6
#: Windows read per step of the pass over the cache.
CHUNK_WINDOWS = 512
#: Fallback names, as recorded.
SINGLE_WINDOW = "single window: per-window standardisation"
ZERO_VARIANCE = "zero variance: centred only (divided by 1)"
NO_WINDOWS = "no window with physiology: left as stored (masked)"


@dataclass
class SubjectSignalStatistics:
    """Each subject's per-channel mean and standard deviation, indexed by the cache's subject code.

    Attributes:
        mean: float64 (S, C); 0 for subjects without windows.
        std: float64 (S, C), fallbacks applied (1 where centred only or without windows).
        windows: int64 (S,) windows each subject's statistics come from.
        per_window: bool (S,) subjects whose windows get the per-window standardisation instead (one window).
        subjects: (S,) subject names (the manifest's, else the codes as text).
        channels: (C,) channel names (the manifest's, else ``channel_<i>``).
        fallbacks: ``{"subject", "channel" (or None for every channel), "fallback"}`` records.
        cache_fingerprint: the cache they were computed from.
    """

    mean: np.ndarray
    std: np.ndarray
    windows: np.ndarray
    per_window: np.ndarray
    subjects: list[str]
    channels: list[str]
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    cache_fingerprint: str = ""

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (the statistics file)."""
        return {
            "version": STATISTICS_VERSION,
            "cache_fingerprint": self.cache_fingerprint,
            "subjects": self.subjects,
            "channels": self.channels,
            "windows": self.windows.tolist(),
            "per_window": self.per_window.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "fallbacks": self.fallbacks,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubjectSignalStatistics:
        """Read back what :meth:`to_json` wrote."""
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            std=np.asarray(data["std"], dtype=np.float64),
            windows=np.asarray(data["windows"], dtype=np.int64),
            per_window=np.asarray(data["per_window"], dtype=bool),
            subjects=list(data["subjects"]),
            channels=list(data["channels"]),
            fallbacks=list(data["fallbacks"]),
            cache_fingerprint=str(data["cache_fingerprint"]),
        )


def compute_subject_statistics(reader: CacheReader, chunk: int = CHUNK_WINDOWS) -> SubjectSignalStatistics:
    """One streaming pass over a cache's usable ``physio`` windows (see the module docstring).

    Args:
        reader: an open cache with a ``physio`` field (N, C, T) and a ``subject`` field (N,) of codes.
        chunk: windows read at a time.

    Returns:
        The statistics, fallbacks applied and recorded.
    """
    if "physio" not in reader.specs:
        raise ValueError(f"The cache at {reader.root} holds no physiological signals ('physio') to normalise.")
    codes = np.asarray(reader.array("subject"), dtype=np.int64)
    usable = np.asarray(reader.usable, dtype=np.int64)
    names = reader.manifest.get("subjects")
    count = len(names) if names else int(codes.max()) + 1 if codes.size else 0
    subjects = [str(n) for n in names] if names else [str(code) for code in range(count)]
    num_channels, length = (int(n) for n in reader.specs["physio"].shape)
    channels = [str(c) for c in reader.manifest.get("physio_channels") or [f"channel_{i}" for i in range(num_channels)]]
    if "present" in reader.specs and "physio" in reader.manifest.get("modalities", []):
        column = list(reader.manifest["modalities"]).index("physio")
        usable = usable[np.asarray(reader.array("present"), dtype=bool)[usable, column]]
    physio = reader.array("physio")
    window_means = np.empty((usable.size, num_channels), dtype=np.float64)
    window_squares = np.empty((usable.size, num_channels), dtype=np.float64)
    for begin in range(0, usable.size, chunk):
        x = np.asarray(physio[usable[begin : begin + chunk]], dtype=np.float64)  # (n, C, T)
        means = x.mean(axis=-1)
        window_means[begin : begin + chunk] = means
        window_squares[begin : begin + chunk] = ((x - means[..., None]) ** 2).sum(axis=-1)
    owner = codes[usable]
    windows = np.bincount(owner, minlength=count).astype(np.int64)
    held = np.maximum(windows, 1)[:, None]
    mean = np.zeros((count, num_channels))
    np.add.at(mean, owner, window_means)
    mean /= held
    squares = np.zeros((count, num_channels))
    np.add.at(squares, owner, window_squares + length * (window_means - mean[owner]) ** 2)
    std = np.sqrt(squares / (held * length))
    fallbacks: list[dict[str, Any]] = []
    per_window = windows == 1
    for s in np.flatnonzero(windows == 0):
        fallbacks.append({"subject": subjects[s], "channel": None, "fallback": NO_WINDOWS})
    for s in np.flatnonzero(per_window):
        fallbacks.append({"subject": subjects[s], "channel": None, "fallback": SINGLE_WINDOW})
    flat = (windows[:, None] > 1) & (std <= ZERO_VARIANCE_TOLERANCE * np.maximum(1.0, np.abs(mean)))
    for s, c in zip(*np.nonzero(flat), strict=True):
        fallbacks.append({"subject": subjects[s], "channel": channels[c], "fallback": ZERO_VARIANCE})
    std = np.where(flat | (windows[:, None] == 0), 1.0, std)
    return SubjectSignalStatistics(mean, std, windows, per_window, subjects, channels, fallbacks, reader.fingerprint)


def subject_statistics(reader: CacheReader) -> SubjectSignalStatistics:
    """The cache's statistics: read from its statistics file if that matches the cache, else computed and written.

    A cache folder that cannot be written to gets the statistics in memory only (logged); each fallback is logged.
    """
    path = Path(reader.root) / STATISTICS_NAME
    try:
        stored = json.loads(path.read_text())
        if stored.get("version") == STATISTICS_VERSION and stored.get("cache_fingerprint") == reader.fingerprint:
            return SubjectSignalStatistics.from_json(stored)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        pass
    statistics = compute_subject_statistics(reader)
    for record in statistics.fallbacks:
        where = f"channel {record['channel']}" if record["channel"] else "every channel"
        log.warning(
            "Per-subject physio normalisation, subject %s, %s: %s.",
            record["subject"],
            where,
            record["fallback"],
        )
    try:
        _write_json_atomic(path, statistics.to_json())
    except OSError as error:
        log.warning("Could not write %s (%s); the per-subject statistics are kept in memory only.", path, error)
    return statistics


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file of this process (several DDP processes may write the same file)."""
    handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file, indent=1)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class SubjectSignalNormaliser:
    """Applies :class:`SubjectSignalStatistics` to batches on their device.

    Args:
        statistics: the cache's per-subject statistics.
    """

    def __init__(self, statistics: SubjectSignalStatistics) -> None:
        self.statistics = statistics
        self.mean = torch.as_tensor(statistics.mean, dtype=torch.float32)
        self.std = torch.as_tensor(statistics.std, dtype=torch.float32)
        self.per_window = torch.as_tensor(statistics.per_window, dtype=torch.bool)

    def __call__(self, signals: Tensor, subjects: Tensor) -> Tensor:
        """Normalise a batch.

        Args:
            signals: (B, C, T) stored signals.
            subjects: long (B,) the samples' subject codes (the cache's ``subject`` field).

        Returns:
            float32 (B, C, T): ``(x - mean[s]) / std[s]`` per channel; per-window standardised for subjects with a
            single window.
        """
        if signals.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"physio has {signals.shape[1]} channels but the per-subject statistics have {self.mean.shape[1]}; the "
                f"statistics file {STATISTICS_NAME} belongs to another cache: delete it to recompute."
            )
        device = signals.device
        codes = subjects.to(device=device, dtype=torch.long)
        mean = self.mean.to(device)[codes].unsqueeze(-1)  # (B, C, 1)
        std = self.std.to(device)[codes].unsqueeze(-1)
        normalised = (signals.float() - mean) / std
        per_window = self.per_window.to(device)[codes]
        if bool(per_window.any()):
            normalised = torch.where(per_window[:, None, None], standardize_signals(signals), normalised)
        return normalised
