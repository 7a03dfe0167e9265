"""Blind face restoration: predict the occlusion mask, fill it (generator or a trivial fill), keep visible pixels.

Faces are in the package's model space: standardised per image (see
:func:`multimodal_fer.datamodules.device_transforms.normalize_face`). A restorer is saved inside the
restoration task's checkpoint under :data:`RESTORER_CHECKPOINT_KEY` together with its architecture and the
image size it was trained on, so it can be rebuilt without Lightning and refused when it does not fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multimodal_fer.errors import DataError
from multimodal_fer.models.restoration.fills import Fill, check_fill, check_inpaint_radius, trivial_fill
from multimodal_fer.models.restoration.generator import GatedUNetGenerator
from multimodal_fer.models.restoration.mask_net import OcclusionMaskNet

#: Checkpoint entry holding an exported restorer.
RESTORER_CHECKPOINT_KEY = "mfer_restorer"
#: Version of the exported format; bump when it changes.
RESTORER_FORMAT_VERSION = 1
_TRAIN_COMMAND = "mfer fit --config configs/restoration/synthaffect.yaml"
#: How gradients reach the mask network through the predicted mask (see :class:`FaceRestorer`).
MaskGradient = Literal["none", "ste", "sigmoid"]
MASK_GRADIENTS: tuple[str, ...] = ("none", "ste", "sigmoid")


def validate_mask(mask: Tensor, image: Tensor) -> Tensor:
    """Check a user-given occlusion mask against its images.

    Args:
        mask: (B, 1, H, W) or (B, H, W), bool or float in [0, 1] (1 = occluded).
        image: (B, C, H, W) the faces it belongs to.

    Returns:
        float (B, 1, H, W) mask in the images' dtype.

    Raises:
        DataError: wrong shape, non-finite values or values outside [0, 1].
    """
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    batch, _, height, width = image.shape
    if mask.shape != (batch, 1, height, width):
        raise DataError(
            f"The occlusion mask has shape {tuple(mask.shape)}; the faces need (B, 1, H, W) = "
            f"({batch}, 1, {height}, {width}). Resize the mask with the face (nearest neighbour)."
        )
    if mask.dtype != torch.bool:
        if not torch.isfinite(mask).all():
            raise DataError("The occlusion mask holds NaN or infinite values; masks must be 0/1 or in [0, 1].")
        low, high = float(mask.min()), float(mask.max())
        if low < 0.0 or high > 1.0:
            raise DataError(
                f"The occlusion mask ranges over [{low:g}, {high:g}]; it must lie in [0, 1] (1 = occluded). "
                "A uint8 mask of 0/255 must be divided by 255."
            )
    return mask.to(image.dtype)


def check_occluded_fraction(value: float) -> float:
    """Validate ``min_occluded_fraction`` (a share of the face's pixels, in [0, 1))."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"min_occluded_fraction is a share of the face's pixels in [0, 1); got {value}.")
    return float(value)


def check_max_occluded_fraction(value: float, minimum: float = 0.0) -> float:
    """Validate ``max_occluded_fraction`` (a share of the face's pixels in (0, 1], above ``min_occluded_fraction``)."""
    if not 0.0 < value <= 1.0:
        raise ValueError(f"max_occluded_fraction is a share of the face's pixels in (0, 1]; got {value}.")
    if value <= minimum:
        raise ValueError(
            f"max_occluded_fraction ({value}) must exceed min_occluded_fraction ({minimum}): no face would be restored."
        )
    return float(value)


def check_mask_gradient(value: str) -> str:
    """Validate ``mask_gradient`` (one of :data:`MASK_GRADIENTS`)."""
    if value not in MASK_GRADIENTS:
        raise ValueError(f"mask_gradient must be one of {list(MASK_GRADIENTS)}, got {value!r}.")
    return value


class FaceRestorer(nn.Module):
    """Occlusion-mask network + inpainting generator, composited so that visible pixels pass unchanged.

    Args:
        mask_net: predicts occlusion logits from the occluded face.
        generator: fills the masked pixels.
        mask_threshold: probability above which a pixel counts as occluded.
        mask_opening: radius in pixels of a morphological opening of the predicted mask, which removes specks
            narrower than ``2 * mask_opening + 1`` pixels (false alarms on eyes, brows and mouth corners, but also
            hair strands and thin strokes); 0 keeps them.
        mask_dilation: pixels by which the predicted mask then grows (covers occluder edges); 0 keeps it.
        min_occluded_fraction: a face whose predicted mask (thresholded and opened, before the dilation) covers
            less than this share of its pixels is judged unoccluded and returned unchanged, bit for bit, with an
            empty mask: false alarms on unoccluded faces then cost nothing. 0 (default) restores every face. A
            mask given to :meth:`forward` is always used.
        max_occluded_fraction: a face whose predicted mask (measured as for ``min_occluded_fraction``) covers more
            than this share is returned unchanged too, with an empty mask: selective restoration, for a recogniser
            that reads a largely hidden face (a scarf, a medical mask) better as it is than behind a guessed fill.
            1 (default) restores every face however much is hidden. Choose it on validation faces with the
            recogniser it serves (``mfer occlusion-benchmark``'s selective-restoration table, docs/occlusion.md).
        mask_gradient: how the predicted mask passes gradients to the mask network when the restorer is trained
            through its output (end-to-end fine-tuning): ``"none"`` (default) composites with the hard 0/1 mask
            and gives none; ``"ste"`` composites with the hard mask but passes gradients straight through to the
            mask probabilities; ``"sigmoid"`` composites softly with the mask probabilities themselves (visible
            pixels then change slightly too).
    """

    def __init__(
        self,
        mask_net: OcclusionMaskNet | None = None,
        generator: GatedUNetGenerator | None = None,
        mask_threshold: float = 0.5,
        mask_dilation: int = 1,
        mask_opening: int = 0,
        min_occluded_fraction: float = 0.0,
        mask_gradient: MaskGradient = "none",
        fill: Fill = "generator",
        inpaint_radius: int = 3,
        max_occluded_fraction: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must lie in (0, 1), got {mask_threshold}.")
        if mask_dilation < 0 or mask_opening < 0:
            raise ValueError(f"mask_dilation and mask_opening must be >= 0, got {mask_dilation}, {mask_opening}.")
        self.mask_net = mask_net if mask_net is not None else OcclusionMaskNet()
        self.generator = generator if generator is not None else GatedUNetGenerator()
        self.mask_threshold = float(mask_threshold)
        self.mask_dilation = int(mask_dilation)
        self.mask_opening = int(mask_opening)
        self.min_occluded_fraction = check_occluded_fraction(min_occluded_fraction)
        self.max_occluded_fraction = check_max_occluded_fraction(max_occluded_fraction, self.min_occluded_fraction)
        self.mask_gradient: str = check_mask_gradient(mask_gradient)
        self.fill: str = check_fill(fill)
        self.inpaint_radius = check_inpaint_radius(inpaint_radius)
        #: Image side the restorer was trained on (0 = not yet known); checked on every forward.
        self.register_buffer("image_size", torch.zeros((), dtype=torch.long))

    def _open(self, mask: Tensor) -> Tensor:
        if self.mask_opening:
            size, pad = 2 * self.mask_opening + 1, self.mask_opening
            mask = -F.max_pool2d(-mask, size, stride=1, padding=pad)  # erosion
            mask = F.max_pool2d(mask, size, stride=1, padding=pad)  # dilation back
        return mask

    def _dilate(self, mask: Tensor) -> Tensor:
        if self.mask_dilation:
            size = 2 * self.mask_dilation + 1
            mask = F.max_pool2d(mask, size, stride=1, padding=self.mask_dilation)
        return mask

    def occluded_pixels(self, mask_logits: Tensor) -> Tensor:
        """The pixels the mask network marks: logits (B, 1, H, W) → float 0/1 (B, 1, H, W).

        Thresholded at ``mask_threshold`` and opened by ``mask_opening``: what the area rules measure, before those
        rules and before the dilation.
        """
        return self._open((mask_logits.sigmoid() > self.mask_threshold).to(mask_logits.dtype))

    def occluded_share(self, mask_logits: Tensor) -> Tensor:
        """The share of each face's pixels the mask network marks, (B, 1, H, W) logits → (B,) in [0, 1].

        What ``min_occluded_fraction`` and ``max_occluded_fraction`` are compared with.
        """
        return self.occluded_pixels(mask_logits).flatten(1).mean(dim=1)

    @property
    def selects_faces(self) -> bool:
        """Whether an area rule leaves some faces unrestored (``min_occluded_fraction`` > 0 or ``max`` < 1)."""
        return self.min_occluded_fraction > 0.0 or self.max_occluded_fraction < 1.0

    def binarize(self, mask_logits: Tensor) -> Tensor:
        """Mask logits (B, 1, H, W) → float 0/1 mask (B, 1, H, W), opened, then dilated by ``mask_dilation``."""
        return self._dilate(self.occluded_pixels(mask_logits))

    def predict_mask(self, mask_logits: Tensor) -> tuple[Tensor, Tensor]:
        """The mask the restorer fills, and which faces it restores.

        Args:
            mask_logits: (B, 1, H, W) the mask network's logits.

        Returns:
            ``(mask, applied)``: float (B, 1, H, W) mask (0/1 unless ``mask_gradient="sigmoid"``; zero for faces
            not restored), with gradients to the logits as ``mask_gradient`` says; bool (B,) faces whose predicted
            occluded share lies in [``min_occluded_fraction``, ``max_occluded_fraction``].
        """
        probability = mask_logits.sigmoid()
        hard = self.occluded_pixels(mask_logits)
        applied = torch.ones(hard.shape[0], dtype=torch.bool, device=hard.device)
        if self.selects_faces:
            share = hard.flatten(1).mean(dim=1)
            applied = (share >= self.min_occluded_fraction) & (share <= self.max_occluded_fraction)
        if self.mask_gradient == "ste":
            # The hard mask's values (p - p is exactly 0), the probabilities' gradient.
            mask = self._dilate(hard + (probability - probability.detach()))
        elif self.mask_gradient == "sigmoid":
            mask = self._dilate(self._open(probability))
        else:
            mask = self._dilate(hard)
        if self.selects_faces:
            mask = mask * applied.view(-1, 1, 1, 1).to(mask.dtype)
        return mask, applied

    def _check_size(self, image: Tensor) -> None:
        trained = int(self.image_size)
        height, width = image.shape[-2:]
        if trained and (height != trained or width != trained):
            raise DataError(
                f"This restorer was trained on {trained}×{trained} faces but receives {height}×{width}. "
                f"Retrain it at this size ({_TRAIN_COMMAND} with data.init_args.image_size={height}) or set the "
                "data's image_size to match."
            )

    def forward(
        self, image: Tensor, mask: Tensor | None = None, generator: GatedUNetGenerator | None = None
    ) -> dict[str, Tensor]:
        """Restore occluded faces.

        Args:
            image: float (B, 3, H, W) standardised faces.
            mask: optional known occlusion mask (B, 1, H, W) in [0, 1]; None predicts it (blind restoration).
            generator: another generator of the same architecture to fill with (the restoration task's moving
                average of this one); None uses :attr:`generator`. Unused unless :attr:`fill` is ``"generator"``.

        Returns:
            ``restored`` (B, 3, H, W): the input where the mask is 0, the fill's pixels where it is 1 (faces
            not restored, and every face with ``fill="none"``: the input itself); ``generated`` (B, 3, H, W): the
            fill's whole image (the generator's, a trivial fill's, or the input for ``"none"``); ``mask``
            (B, 1, H, W): the mask used; ``mask_logits`` (B, 1, H, W): the mask network's logits; ``applied``
            bool (B,): the faces restored (all of them when a mask is given); ``expression_logits`` (B, E): what a
            generator with ``expression_classes`` read from the visible pixels (only from such a generator).
        """
        self._check_size(image)
        mask_logits = self.mask_net(image)
        if mask is None:
            used, applied = self.predict_mask(mask_logits)
        else:
            used = validate_mask(mask, image)
            applied = torch.ones(image.shape[0], dtype=torch.bool, device=image.device)
        expression_logits = None
        if self.fill == "generator":
            filler = generator if generator is not None else self.generator
            generated, expression_logits = filler.forward_with_expression(image, used)
        elif self.fill == "none":
            generated = image
        else:
            generated = trivial_fill(image, used, self.fill, self.inpaint_radius)
        restored = image if self.fill == "none" else image * (1.0 - used) + generated * used
        if self.selects_faces and mask is None:
            restored = torch.where(applied.view(-1, 1, 1, 1), restored, image)  # the input itself, bit for bit
        out = {
            "restored": restored,
            "generated": generated,
            "mask": used,
            "mask_logits": mask_logits,
            "applied": applied,
        }
        if expression_logits is not None:
            out["expression_logits"] = expression_logits
        return out

    # ------------------------------------------------------------------------------------------ export / load
    def export(self) -> dict[str, Any]:
        """Everything needed to rebuild this restorer: architecture, image size and weights."""
        return {
            "format_version": RESTORER_FORMAT_VERSION,
            "architecture": {
                "mask_net": {"class": type(self.mask_net).__name__, **self.mask_net.config},
                "generator": {"class": type(self.generator).__name__, **self.generator.config},
                "mask_threshold": self.mask_threshold,
                "mask_dilation": self.mask_dilation,
                "mask_opening": self.mask_opening,
                "min_occluded_fraction": self.min_occluded_fraction,
                "max_occluded_fraction": self.max_occluded_fraction,
            },
            "image_size": int(self.image_size),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }

    @classmethod
    def from_export(cls, exported: dict[str, Any], source: str = "the checkpoint") -> FaceRestorer:
        """Rebuild a restorer from :meth:`export`'s dictionary.

        Raises:
            DataError: another format version, an unknown architecture, or weights that do not fit it.
        """
        version = exported.get("format_version")
        if version != RESTORER_FORMAT_VERSION:
            raise DataError(
                f"{source} holds a restorer of format version {version}; this package reads version "
                f"{RESTORER_FORMAT_VERSION}. Retrain it with {_TRAIN_COMMAND}."
            )
        architecture = dict(exported["architecture"])
        parts: dict[str, nn.Module] = {}
        for name, expected in (("mask_net", OcclusionMaskNet), ("generator", GatedUNetGenerator)):
            config = dict(architecture[name])
            kind = config.pop("class")
            if kind != expected.__name__:
                raise DataError(
                    f"{source} holds a restorer whose {name} is a {kind}; this package builds {expected.__name__}."
                )
            if expected is GatedUNetGenerator:
                config = GatedUNetGenerator.config_of_export(config)
            parts[name] = expected(**config)
        restorer = cls(
            parts["mask_net"],  # type: ignore[arg-type]
            parts["generator"],  # type: ignore[arg-type]
            mask_threshold=architecture["mask_threshold"],
            mask_dilation=architecture["mask_dilation"],
            mask_opening=architecture.get("mask_opening", 0),
            min_occluded_fraction=architecture.get("min_occluded_fraction", 0.0),
            max_occluded_fraction=architecture.get("max_occluded_fraction", 1.0),
        )
        try:
            restorer.load_state_dict(exported["state_dict"], strict=True)
        except RuntimeError as error:
            raise DataError(
                f"The weights in {source} do not fit the architecture it records ({architecture}); the file was "
                f"edited or written by another version. Retrain with {_TRAIN_COMMAND}.\n{error}"
            ) from error
        return restorer


def load_restorer(checkpoint: str | Path) -> FaceRestorer:
    """Load the restorer saved by :class:`~multimodal_fer.tasks.OcclusionRestorationTask`'s checkpoints.

    Args:
        checkpoint: path to a restoration checkpoint (``.ckpt``) or a file saved from :meth:`FaceRestorer.export`.

    Returns:
        The restorer in eval mode, with the image size it was trained on.

    Raises:
        FileNotFoundError: no such file.
        DataError: not a restoration checkpoint, or one this package cannot rebuild.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"Restorer checkpoint {path} does not exist; train one with {_TRAIN_COMMAND}.")
    # The user's own local file; Lightning checkpoints carry plain Python objects beside the tensors.
    content = torch.load(path, map_location="cpu", weights_only=False)
    exported = content.get(RESTORER_CHECKPOINT_KEY) if isinstance(content, dict) else None
    if exported is None and isinstance(content, dict) and "format_version" in content:
        exported = content
    if exported is None:
        raise DataError(
            f"{path} is not a restoration checkpoint (it has no {RESTORER_CHECKPOINT_KEY!r} entry); point restorer "
            f"at a checkpoint written by {_TRAIN_COMMAND}."
        )
    return FaceRestorer.from_export(exported, source=str(path)).eval()


class PretrainedRestorer(nn.Module):
    """A restorer loaded from a restoration checkpoint, for the face encoder's ``restorer`` argument.

    Args:
        checkpoint: path to a checkpoint written by the restoration task.
        finetune: train the restorer together with the recogniser; False (default) freezes it and keeps it in
            eval mode (batch-norm statistics included).
        mask_gradient: with ``finetune``, how the mask network learns from the recogniser's loss (see
            :class:`FaceRestorer`): ``"none"`` (default) gives it no gradient through the hard mask, so it is
            frozen and kept in eval mode (its batch-norm statistics stay those it was trained with) while the
            generator trains; ``"ste"`` (straight-through) or ``"sigmoid"`` (soft compositing) let it train.
        min_occluded_fraction: overrides the checkpoint's ``min_occluded_fraction`` (faces whose predicted
            occluded share is smaller pass unchanged); None (default) keeps the checkpoint's.
        max_occluded_fraction: overrides the checkpoint's ``max_occluded_fraction`` (faces whose predicted occluded
            share is larger pass unchanged: selective restoration); None (default) keeps the checkpoint's.
        fill: what fills the predicted mask (see :class:`FaceRestorer`): ``"generator"`` (default, the trained
            generator), a trivial baseline behind the same trained mask network (``"mean_colour"``, ``"telea"``,
            ``"navier_stokes"``, ``"mirror"``), or ``"none"`` (faces pass unchanged; the mask is still predicted,
            for a mask-aware face encoder).
        inpaint_radius: neighbourhood radius in pixels of the ``"telea"`` and ``"navier_stokes"`` fills.

    Raises:
        ValueError: ``mask_gradient`` other than ``"none"`` without ``finetune`` (a frozen restorer learns nothing),
            or ``finetune`` with a fill other than ``"generator"`` (nothing of the fill can train).
    """

    def __init__(
        self,
        checkpoint: str,
        finetune: bool = False,
        mask_gradient: MaskGradient = "none",
        min_occluded_fraction: float | None = None,
        fill: Fill = "generator",
        inpaint_radius: int = 3,
        max_occluded_fraction: float | None = None,
    ) -> None:
        super().__init__()
        self.checkpoint = str(checkpoint)
        self.finetune = bool(finetune)
        self.mask_gradient = check_mask_gradient(mask_gradient)
        if self.mask_gradient != "none" and not self.finetune:
            raise ValueError(
                f"mask_gradient={mask_gradient!r} lets the mask network learn while the restorer is fine-tuned; "
                "this restorer is frozen. Set finetune: true, or leave mask_gradient at 'none'."
            )
        if self.finetune and check_fill(fill) != "generator":
            raise ValueError(
                f"fill={fill!r} has no weights to fine-tune; set finetune: false, or fill: generator to train the "
                "generator with the recogniser."
            )
        self.restorer = load_restorer(checkpoint)
        self.restorer.mask_gradient = self.mask_gradient
        self.restorer.fill = check_fill(fill)
        self.restorer.inpaint_radius = check_inpaint_radius(inpaint_radius)
        if min_occluded_fraction is not None:
            self.restorer.min_occluded_fraction = check_occluded_fraction(min_occluded_fraction)
        if max_occluded_fraction is not None or min_occluded_fraction is not None:
            self.restorer.max_occluded_fraction = check_max_occluded_fraction(
                self.restorer.max_occluded_fraction if max_occluded_fraction is None else max_occluded_fraction,
                self.restorer.min_occluded_fraction,
            )
        if not self.finetune:
            self.restorer.requires_grad_(False)
        elif self.mask_gradient == "none":
            self.restorer.mask_net.requires_grad_(False)
        # load_restorer returns it in eval mode; a fine-tuned restorer starts in this module's (train) mode, since
        # Lightning keeps each module's mode when fitting starts.
        self.train(self.training)

    @property
    def image_size(self) -> int:
        """Image side the restorer was trained on."""
        return int(self.restorer.image_size)

    @property
    def mask_net_trains(self) -> bool:
        """Whether the mask network receives gradients (fine-tuned with a straight-through or soft mask)."""
        return self.finetune and self.mask_gradient != "none"

    def train(self, mode: bool = True) -> PretrainedRestorer:
        """Switch modes; a frozen restorer stays in eval mode, and so does a mask network that gets no gradient."""
        super().train(mode)
        if not self.finetune:
            self.restorer.eval()
        elif not self.mask_net_trains:
            self.restorer.mask_net.eval()
        return self

    def restore(self, image: Tensor) -> dict[str, Tensor]:
        """Restore standardised faces (B, 3, H, W) blindly; returns all of :meth:`FaceRestorer.forward`'s outputs."""
        if self.finetune:
            return self.restorer(image)
        with torch.no_grad():
            return self.restorer(image)

    def forward(self, image: Tensor) -> Tensor:
        """Restore standardised faces (B, 3, H, W) blindly; returns restored faces (B, 3, H, W)."""
        return self.restore(image)["restored"]
