"""One encoder per modality, keyed by the modality's name: the shape of ``model.init_args.encoders`` in configs.

Why a dataclass with one optional field per modality rather than ``dict[str, Encoder]``: jsonargparse (4.53)
replaces a whole ``dict`` value when a later ``--config`` file sets it, so an overlay that changes the audio encoder
would drop the face, depth and physiology encoders of the config before it. The fields of a dataclass are nested
arguments instead (``model.init_args.encoders.audio``), each merged on its own: a later config or a
``--model.init_args.encoders.audio.init_args.out_dim=64`` flag changes that modality's encoder and keeps the others.
``tests/test_encoder_configs.py`` proves the composition with two config files.

Which modality an encoder serves is its key. Each encoder class also declares the input it reads
(:attr:`~multimodal_fer.models.encoders.Encoder.modality`); the key must agree with it, so a face CNN configured
under ``audio`` is refused by name instead of reading the wrong tensor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from multimodal_fer.models.encoders.base import Encoder
from multimodal_fer.types import MODALITIES


@dataclass(eq=False)
class ModalityEncoders:
    """The encoder of each modality; a modality without one is None.

    In a config::

        encoders:
          face: {class_path: multimodal_fer.models.encoders.FaceCNN, init_args: {out_dim: 128}}
          audio: {class_path: multimodal_fer.models.encoders.AudioMelCNN, init_args: {out_dim: 128}}

    Args:
        face: encoder of face images (B, 3, H, W) or clips (B, T, 3, H, W).
        audio: encoder of waveforms (B, S).
        depth: encoder of depth maps (B, C, H, W) or point clouds (B, N, C).
        physio: encoder of physiological signals (B, C, T).

    Raises:
        ValueError: an encoder sits under a key other than the modality it reads.
    """

    face: Encoder | None = None
    audio: Encoder | None = None
    depth: Encoder | None = None
    physio: Encoder | None = None

    def __post_init__(self) -> None:
        for name, encoder in self.items():
            if encoder.modality != name:
                raise ValueError(
                    f"encoders.{name} is a {type(encoder).__name__}, which reads {encoder.modality!r} inputs, not "
                    f"{name!r} ones; configure it under encoders.{encoder.modality} or choose an encoder that reads "
                    f"{name!r}."
                )

    def items(self) -> list[tuple[str, Encoder]]:
        """``(modality, encoder)`` of every configured modality, in the canonical order face, audio, depth, physio."""
        pairs = ((field.name, getattr(self, field.name)) for field in fields(self))
        return [(name, encoder) for name, encoder in pairs if encoder is not None]

    def as_dict(self) -> dict[str, Encoder]:
        """The configured encoders keyed by modality, in canonical order."""
        return dict(self.items())

    @classmethod
    def of(cls, encoders: ModalityEncoders | Mapping[str, Encoder] | Sequence[Encoder]) -> ModalityEncoders:
        """The encoders in this form, from a mapping keyed by modality or a sequence (placed by ``modality``).

        A sequence is the form configs had before encoders were keyed (``encoders: [{class_path: ...}, ...]``); it is
        still read so that run folders saved then load, each encoder placed by the modality it reads.

        Args:
            encoders: the encoders in any of the three forms.

        Returns:
            A :class:`ModalityEncoders` (``encoders`` itself when it is one).

        Raises:
            ValueError: an unknown modality key, a key that disagrees with its encoder, or two encoders of one
                modality in a sequence.
        """
        if isinstance(encoders, ModalityEncoders):
            return encoders
        if isinstance(encoders, Mapping):
            unknown = sorted(set(encoders) - set(MODALITIES))
            if unknown:
                raise ValueError(f"encoders has keys {unknown}, which are no modality; use {list(MODALITIES)}.")
            return cls(**dict(encoders))
        by_modality: dict[str, Encoder] = {}
        for encoder in encoders:
            if encoder.modality in by_modality:
                first = type(by_modality[encoder.modality]).__name__
                raise ValueError(
                    f"Two encoders read the modality {encoder.modality!r} ({first} and {type(encoder).__name__}); "
                    "keep one."
                )
            by_modality[encoder.modality] = encoder
        return cls(**by_modality)
