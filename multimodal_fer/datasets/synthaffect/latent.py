"""The affect latent of one SynthAffect sample: expression, intensity, action units and valence/arousal.

One latent drives every modality. Action units follow the FACS prototype of the expression with per-sample
variation (prototype AUs can be missing, other AUs can fire on their own), so the AUs are not a fixed
function of the class. Valence and arousal follow the circumplex position of the expression, scaled by the
intensity, plus noise; arousal also gets a component of its own that no expression explains, which only the
signals driven by arousal (physiology, voice) can reveal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multimodal_fer.datasets.synthaffect.labels import EXPRESSIONS_8, SYNTHAFFECT_AUS

#: FACS prototype AUs of each expression (EMFACS-style; contempt is unilateral AU12+AU14).
PROTOTYPE_AUS: dict[str, tuple[int, ...]] = {
    "neutral": (),
    "happy": (6, 12, 25),
    "sad": (1, 4, 15, 17),
    "surprise": (1, 2, 5, 25, 26),
    "fear": (1, 2, 4, 5, 7, 20, 25, 26),
    "disgust": (9, 10, 15, 17),
    "anger": (4, 5, 7, 23),
    "contempt": (12, 14),
}

#: (valence, arousal) of each expression on the circumplex, at full intensity.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "happy": (0.80, 0.45),
    "sad": (-0.70, -0.45),
    "surprise": (0.25, 0.80),
    "fear": (-0.60, 0.75),
    "disgust": (-0.65, 0.30),
    "anger": (-0.65, 0.70),
    "contempt": (-0.45, 0.15),
}

#: An AU is labelled active when its intensity reaches this level (roughly FACS intensity B and above).
AU_ACTIVE_THRESHOLD = 0.3


@dataclass(frozen=True)
class AffectSettings:
    """How much the latent varies around the expression prototypes.

    Attributes:
        prototype_au_keep: probability that each prototype AU of the expression is expressed.
        spontaneous_au_rate: probability that any other AU fires on its own.
        intensity_range: range of the expression intensity of non-neutral samples.
        va_noise: standard deviation of the noise added to valence and arousal.
        arousal_own_std: standard deviation of the arousal component that the expression does not explain.
        neutral_fraction: share of neutral samples (the other classes share the rest equally).
    """

    prototype_au_keep: float = 0.85
    spontaneous_au_rate: float = 0.05
    intensity_range: tuple[float, float] = (0.5, 1.0)
    va_noise: float = 0.10
    arousal_own_std: float = 0.25
    neutral_fraction: float = 0.125


@dataclass(frozen=True)
class AffectLatent:
    """The affect state of one sample.

    Attributes:
        expression: index into :data:`EXPRESSIONS_8`.
        intensity: expression intensity in [0, 1] (0 for neutral).
        au_intensity: float32 (K,) intensities in [0, 1] aligned to :data:`SYNTHAFFECT_AUS`.
        au_active: float32 (K,) 0/1 labels (intensity ≥ :data:`AU_ACTIVE_THRESHOLD`).
        asymmetry: left/right skew in [-1, 1] of the lip-corner AUs (non-zero for contempt).
        valence: in [-1, 1].
        arousal: in [-1, 1].
    """

    expression: int
    intensity: float
    au_intensity: np.ndarray
    au_active: np.ndarray
    asymmetry: float
    valence: float
    arousal: float


def sample_affect(rng: np.random.Generator, settings: AffectSettings | None = None) -> AffectLatent:
    """Draw one affect latent.

    Args:
        rng: the sample's random generator.
        settings: variation settings; defaults to :class:`AffectSettings`.

    Returns:
        The latent.
    """
    settings = settings or AffectSettings()
    num_classes = len(EXPRESSIONS_8)
    other = (1.0 - settings.neutral_fraction) / (num_classes - 1)
    probabilities = np.array([settings.neutral_fraction] + [other] * (num_classes - 1))
    expression = int(rng.choice(num_classes, p=probabilities))
    name = EXPRESSIONS_8[expression]

    intensity = 0.0 if name == "neutral" else float(rng.uniform(*settings.intensity_range))
    au_intensity = np.zeros(len(SYNTHAFFECT_AUS), dtype=np.float32)
    for column, au in enumerate(SYNTHAFFECT_AUS):
        if au in PROTOTYPE_AUS[name]:
            if rng.random() < settings.prototype_au_keep:
                au_intensity[column] = intensity * rng.uniform(0.6, 1.25)
        elif rng.random() < settings.spontaneous_au_rate:
            au_intensity[column] = rng.uniform(0.15, 0.7)
    au_intensity = np.clip(au_intensity, 0.0, 1.0).astype(np.float32)
    au_active = (au_intensity >= AU_ACTIVE_THRESHOLD).astype(np.float32)

    asymmetry = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.0)) if name == "contempt" else 0.0

    centre_valence, centre_arousal = CIRCUMPLEX[name]
    scale = 0.4 + 0.6 * intensity
    valence = centre_valence * scale + rng.normal(0.0, settings.va_noise)
    arousal = centre_arousal * scale + rng.normal(0.0, settings.va_noise) + rng.normal(0.0, settings.arousal_own_std)
    return AffectLatent(
        expression=expression,
        intensity=intensity,
        au_intensity=au_intensity,
        au_active=au_active,
        asymmetry=asymmetry,
        valence=float(np.clip(valence, -1.0, 1.0)),
        arousal=float(np.clip(arousal, -1.0, 1.0)),
    )
