"""The fixed list of physiological features (bottom layer: imports nothing of the package).

The extractor (:mod:`multimodal_fer.preprocessing.physio_feature_extraction`) computes them; the physiology encoder's
feature branch reads them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PhysioFeature:
    """One feature of the fixed list.

    Attributes:
        name: feature name, e.g. ``"hrv_rmssd"``.
        unit: unit of the stored value.
        channel: channel it is computed from (``ecg``, ``eda`` or ``rsp``).
        min_seconds: shortest window (s) for which it is valid.
        min_events: fewest events needed: R peaks (ecg), SCRs (eda) or complete breaths (rsp).
        min_sampling_rate: lowest sampling rate (Hz) for which it is valid.
        log_scale: a positive, right-skewed quantity (power, ratio, SD, amplitude) better compared on a log
            scale; the data module standardises ``log1p`` of it.
    """

    name: str
    unit: str
    channel: str
    min_seconds: float
    min_events: int
    min_sampling_rate: float
    log_scale: bool


#: The features, in the order of the stored vectors (see the module docstring for the reasons).
PHYSIO_FEATURES: tuple[PhysioFeature, ...] = (
    PhysioFeature("heart_rate_mean", "beats/min", "ecg", 0.0, 3, 50.0, False),
    PhysioFeature("hrv_rmssd", "ms", "ecg", 10.0, 4, 100.0, True),
    PhysioFeature("hrv_sdnn", "ms", "ecg", 30.0, 3, 100.0, True),
    PhysioFeature("hrv_pnn50", "%", "ecg", 60.0, 4, 100.0, False),
    PhysioFeature("hrv_lf", "ms^2", "ecg", 120.0, 3, 100.0, True),
    PhysioFeature("hrv_hf", "ms^2", "ecg", 60.0, 3, 100.0, True),
    PhysioFeature("hrv_lf_hf", "ratio", "ecg", 300.0, 3, 100.0, True),
    PhysioFeature("eda_scl_mean", "uS", "eda", 4.0, 0, 4.0, True),
    PhysioFeature("eda_scr_count", "count", "eda", 4.0, 0, 4.0, False),
    PhysioFeature("eda_scr_amplitude_mean", "uS", "eda", 4.0, 1, 4.0, True),
    PhysioFeature("rsp_rate", "breaths/min", "rsp", 0.0, 1, 10.0, False),
    PhysioFeature("rsp_rate_variability", "ms", "rsp", 60.0, 3, 10.0, True),
)
#: Names of :data:`PHYSIO_FEATURES`, in order.
PHYSIO_FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in PHYSIO_FEATURES)
#: Number of features F.
NUM_PHYSIO_FEATURES = len(PHYSIO_FEATURES)
