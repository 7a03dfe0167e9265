"""SynthAffect behind the adapter contract: a generated data set whose samples are made at the cache's shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from multimodal_fer.datasets.base import DatasetAdapter, Listing, RawMedia, RawSample
from multimodal_fer.datasets.protocols import SplitProtocol, SubjectHoldout
from multimodal_fer.datasets.synthaffect.generator import (
    PHYSIO_CHANNEL_NAMES,
    SynthAffectSettings,
    array_specs,
    generate_sample,
)
from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_LABEL_SPACE
from multimodal_fer.types import ArraySpec, LabelSpace

#: Source recorded for generated samples (there is no raw file).
GENERATED_SOURCE = "generated"


class SynthAffect(DatasetAdapter):
    """The embedded default data set: every sample generated from its own random stream, every modality present.

    Args:
        settings: generation settings (subjects, samples, sizes, occlusion, clip mode, seed).
        val_subjects: subjects held out for validation by the default protocol.
        test_subjects: subjects held out for testing by the default protocol.
    """

    name = "synthaffect"
    modalities = ("face", "audio", "depth", "physio")
    face_media_allowed = True  # generated faces: nobody's likeness
    generated = True

    def __init__(self, settings: SynthAffectSettings, val_subjects: int = 8, test_subjects: int = 12) -> None:
        self.generation = settings
        self.val_subjects = val_subjects
        self.test_subjects = test_subjects

    @property
    def label_space(self) -> LabelSpace:
        """Eight expressions, sixteen AUs, valence and arousal."""
        return SYNTHAFFECT_LABEL_SPACE

    def list_samples(self, raw_root: Path | None = None) -> Listing:
        """Every sample to generate: key ``"000123"``, subject ``"0002"``, no official split.

        Subject names are zero-padded, so sorted names are in numeric order and the cache's ``subject`` field
        (the generator's subject number) indexes them.
        """
        per_subject = self.generation.samples_per_subject
        return Listing(
            [
                RawSample(key=f"{index:06d}", subject=f"{index // per_subject:04d}", source=GENERATED_SOURCE)
                for index in range(self.generation.num_samples)
            ]
        )

    def load(self, raw_root: Path | None, sample: RawSample) -> RawMedia:
        """Generate the sample (deterministic in the settings and its index)."""
        return RawMedia(fields=generate_sample(self.generation, int(sample.key)))

    def field_specs(self) -> list[ArraySpec]:
        """The cache fields of a generated sample (see :func:`array_specs`)."""
        return array_specs(self.generation)

    def default_protocol(self) -> SplitProtocol:
        """Whole subjects held out, with the generation seed (the splits SynthAffect always had)."""
        return SubjectHoldout(self.val_subjects, self.test_subjects, seed=self.generation.seed)

    def settings(self) -> dict[str, Any]:
        """SynthAffect's fingerprint settings (unchanged since generator version 3, so old caches stay valid)."""
        return self.generation.fingerprint_settings()

    def metadata(self) -> dict[str, Any]:
        """The physiological channels (the sampling rate is among the settings)."""
        return {"physio_channels": list(PHYSIO_CHANNEL_NAMES)}
