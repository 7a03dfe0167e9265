"""SynthAffect's label space: the eight expressions of AffectNet-8, sixteen FACS AUs, valence and arousal."""

from __future__ import annotations

from multimodal_fer.types import LabelSpace

#: The eight expression classes of SynthAffect (the AffectNet-8 order), index i is label i.
EXPRESSIONS_8: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
)

#: FACS action units that SynthAffect's face model animates (numbers as in FACS).
SYNTHAFFECT_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26)

#: What SynthAffect labels: every sample has all three tasks.
SYNTHAFFECT_LABEL_SPACE = LabelSpace(
    expressions=EXPRESSIONS_8, action_units=SYNTHAFFECT_AUS, dimensions=("valence", "arousal")
)
