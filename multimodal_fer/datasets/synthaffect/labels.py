"""SynthAffect's label space: the eight expressions of AffectNet-8, sixteen FACS AUs, valence and arousal."""

from __future__ import annotations

from multimodal_fer.types import EXPRESSION_VOCABULARY, LabelSpace

#: The eight expression classes of SynthAffect, index i is label i: the AffectNet-8 order, which is the first eight
#: words of the package's vocabulary.
EXPRESSIONS_8: tuple[str, ...] = EXPRESSION_VOCABULARY[:8]

#: FACS action units that SynthAffect's face model animates (numbers as in FACS).
SYNTHAFFECT_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26)

#: What SynthAffect labels: every sample has all three tasks.
SYNTHAFFECT_LABEL_SPACE = LabelSpace(
    expressions=EXPRESSIONS_8, action_units=SYNTHAFFECT_AUS, dimensions=("valence", "arousal")
)
