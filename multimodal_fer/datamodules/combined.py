"""Several data sets trained as one model: expression from one, AUs from another, valence-arousal from a third.

:class:`CombinedDataModule` holds named members, each a :class:`~multimodal_fer.datamodules.FERDataModule` with
its own cache, split protocol, preprocessing and options (online occlusion, physiology normalisation, ...). Their
labels are expressed in one label space, by default the union of theirs in the package's vocabulary order
(:func:`~multimodal_fer.datamodules.label_mapping.union_of`): a member without AU labels gives unlabelled AU
columns, which the losses and metrics skip, so one multitask model learns each task from the data sets that label
it. The model gets an encoder for every modality any member loads; a member without one has it marked absent.

Training batches each come from one member (:mod:`~multimodal_fer.datamodules.member_batches`), shuffled together
in an order fixed by the seed and the epoch; ``sampling`` sets how members share an epoch. Validation scores the
members' validation splits together (one ``val/score`` chooses the checkpoint). Testing scores each member's test
split on its own, through that member (``mfer test`` and ``--test_after_fit`` run one test per member into
``results-test-<member>.json``, with the member's own cache fingerprint, protocol and sample records).

Members must agree where one model reads them: the face crop size, the audio sampling rate, the physiological
channels, the depth input. Each member's own ``batch_size`` and ``num_workers`` are not used: the combined module's
are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from multimodal_fer.datamodules.base import FERDataModule, au_positive_weight_of, expression_counts_of
from multimodal_fer.datamodules.cached_dataset import passthrough_collate
from multimodal_fer.datamodules.epoch_sampler import next_training_epoch, run_seed
from multimodal_fer.datamodules.evaluation_sampler import evaluation_shards
from multimodal_fer.datamodules.label_mapping import resolve_label_space, union_of
from multimodal_fer.datamodules.member_batches import (
    MEMBER_KEY,
    SAMPLINGS,
    MemberBatches,
    MemberBatchSampler,
    PlanSampler,
    Sampling,
    evaluation_plan,
)
from multimodal_fer.errors import DataError, MferError
from multimodal_fer.fingerprints import fingerprint
from multimodal_fer.types import LabelSpace, validate_modalities


class CombinedDataModule(pl.LightningDataModule):
    """Named data sets' caches trained as one: labels in one space, batches drawn from every member.

    Args:
        members: member name → its data module, e.g. ``{affectnet: {class_path: ...FERDataModule, init_args:
            {...}}, disfa: {...}}``. Names name the results files (``results-test-<name>.json``): letters, digits,
            ``_`` and ``-``.
        label_space: the space every member's labels are expressed in: None (the union of the members' spaces),
            ``union`` (every class, AU and dimension the package names), a run folder or checkpoint, or the three
            lists (:mod:`~multimodal_fer.datamodules.label_mapping`). Members leave theirs unset.
        sampling: ``proportional`` (every member's training samples once per epoch) or ``equal`` (each member gives
            as many batches as the largest, the smaller ones' samples drawn again).
        batch_size: samples per batch, for every member (per process under DDP).
        num_workers: DataLoader worker processes.

    Raises:
        DataError: no member, a badly formed name, members that disagree on what one model reads, or a label space
            that shares nothing with a member.
    """

    def __init__(
        self,
        members: dict[str, FERDataModule],
        label_space: dict[str, list] | str | None = None,
        sampling: Sampling = "proportional",
        batch_size: int = 64,
        num_workers: int = 2,
    ) -> None:
        super().__init__()
        if not members:
            raise DataError("A combined data module needs at least one member: members: {name: {class_path: ...}}.")
        bad = [name for name in members if not name or not name.replace("_", "").replace("-", "").isalnum()]
        if bad:
            raise DataError(f"Member names {bad} must be letters, digits, '_' or '-': they name results files.")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1.")
        if num_workers < 0:
            raise ValueError(f"num_workers={num_workers} must be 0 or more.")
        if sampling not in SAMPLINGS:
            raise DataError(f"sampling={sampling!r}: choose one of {list(SAMPLINGS)}.")
        self.members = dict(members)
        self.sampling = sampling
        self.batch_size = batch_size
        self.num_workers = num_workers
        own = union_of([member.adapter.label_space for member in self.members.values()])
        self._label_space = resolve_label_space(label_space, own) if label_space is not None else own
        for name, member in self.members.items():
            member.member_name = name
            with member_context(name):
                member.express_labels_in(self._label_space)
        loaded = {modality for member in self.members.values() for modality in member.modalities}
        self._modalities = validate_modalities(sorted(loaded))
        self._check_agreement()

    def _check_agreement(self) -> None:
        """Refuse members one model cannot read together, naming the setting to align."""
        for attribute, setting, modality in (
            ("image_size", "preprocessing.image_size", "face"),
            ("audio_sample_rate", "preprocessing.audio_sample_rate", "audio"),
            ("depth_input", "depth_input", "depth"),
            ("face_clip", "face_clip", "face"),
        ):
            values = {
                name: getattr(member, attribute)
                for name, member in self.members.items()
                if modality in member.modalities and modality not in member.withheld_modalities
            }
            if len(set(values.values())) > 1:
                raise DataError(
                    f"The members disagree on {attribute}: {values}; one model reads them all, so set the members' "
                    f"{setting} alike (and prepare their caches at that setting)."
                )

    # ----------------------------------------------------------------------------------------------- metadata
    @property
    def label_space(self) -> LabelSpace:
        """The space every member's labels are expressed in (heads are sized from it)."""
        return self._label_space

    @property
    def modalities(self) -> tuple[str, ...]:
        """Every modality any member loads (the model gets an encoder for each)."""
        return self._modalities

    @property
    def face_media_allowed(self) -> bool:
        """Faces may be logged only when every member's card allows it."""
        return all(member.face_media_allowed for member in self.members.values())

    @property
    def image_size(self) -> int:
        """Side of the face crops (the members agree on it)."""
        return max((member.image_size for member in self.members.values() if "face" in member.modalities), default=0)

    @property
    def audio_sample_rate(self) -> int | None:
        """The members' audio sampling rate (they agree on it); None when no member loads audio."""
        rates = [m.audio_sample_rate for m in self.members.values() if "audio" in m.modalities]
        return rates[0] if rates else None

    @property
    def physio_channels(self) -> int | None:
        """Channels of the members' physiological signals; None without them or before set-up."""
        channels = {name: m.physio_channels for name, m in self.members.items() if m.physio_channels is not None}
        if len(set(channels.values())) > 1:
            raise DataError(
                f"The members' physiological signals have different channels {channels}; one physiology encoder "
                "reads them all, so combine data sets with the same channels or leave physio out of one."
            )
        return next(iter(channels.values()), None)

    @property
    def cache_fingerprint(self) -> str:
        """One fingerprint of the members' caches, names and the label space."""
        return fingerprint(
            {
                "members": {name: member.cache_fingerprint for name, member in self.members.items()},
                "label_space": self._label_space.to_dict(),
            }
        )

    @property
    def test_condition(self) -> str:
        """The combined module is tested member by member; each member names its own results file."""
        return "test-combined"

    def describe(self) -> dict[str, Any]:
        """What ``run.json`` records of the data: each member's data set and cache folder."""
        return {
            name: {"dataset": member.adapter.name, "root": str(member.root)} for name, member in self.members.items()
        }

    # ----------------------------------------------------------------------------------------------- set-up
    def prepare_data(self) -> None:
        """Build every member's cache on first use (each refuses a stale one with its rebuild command)."""
        for name, member in self.members.items():
            with member_context(name):
                member.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        """Set every member up (cache, splits) and give it the trainer, for its device transform."""
        for name, member in self.members.items():
            member.trainer = self.trainer
            with member_context(name):
                member.setup(stage)
        self.physio_channels  # noqa: B018 - refuses members with different channels now, not mid-fit
        sizes = {
            name: {split: int(m.splits[split].size) for split in ("train", "val", "test")}
            for name, m in self.members.items()
        }
        rank_zero_info(f"Combined data ({self.sampling} sampling): samples per member and split {sizes}")

    # ------------------------------------------------------------------------------------- class statistics
    def _training_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Every member's training labels in the combined space, concatenated: expr (N,), AU (N, K)."""
        labels = [member.training_labels() for member in self.members.values()]
        return np.concatenate([expr for expr, _ in labels]), np.concatenate([au for _, au in labels])

    def au_positive_weight(self) -> torch.Tensor:
        """Per-AU BCE positive weight over every member's training samples that label the AU, clipped to [1, 50].

        Returns:
            float32 (K,).
        """
        return au_positive_weight_of(self._training_labels()[1])

    def expression_class_counts(self) -> torch.Tensor:
        """Training samples of each expression class over every member (unlabelled ones ignored).

        Returns:
            int64 (C,).
        """
        return expression_counts_of(self._training_labels()[0], self._label_space.num_expressions)

    # ----------------------------------------------------------------------------------------------- loaders
    def _datasets(self, split: str) -> list[Any]:
        return [member.dataset(split) for member in self.members.values()]

    def _loader(self, dataset: MemberBatches, sampler: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=passthrough_collate,
            pin_memory=torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(run_seed()),
        )

    def _current_epoch(self) -> int:
        """The epoch the next training batches belong to (:func:`next_training_epoch`)."""
        return next_training_epoch(self.trainer)

    def train_dataloader(self) -> DataLoader:
        """Every member's training batches, shuffled together by seed and epoch (incomplete batches dropped)."""
        datasets = self._datasets("train")
        sampler = MemberBatchSampler(
            [len(d) for d in datasets], self.batch_size, run_seed(), self.sampling, self._current_epoch
        )
        return self._loader(MemberBatches(datasets, self._modalities), sampler)

    def val_dataloader(self) -> DataLoader:
        """Every member's validation samples once, member after member (under DDP: this process's batches)."""
        datasets = self._datasets("val")
        plan = evaluation_plan([len(d) for d in datasets], self.batch_size)
        shards = evaluation_shards(self.trainer)
        sampler = PlanSampler(plan, *shards) if shards is not None else PlanSampler(plan)
        return self._loader(MemberBatches(datasets, self._modalities), sampler)

    def _refuse(self, what: str) -> DataLoader:
        raise DataError(
            f"A combined data module has no single {what} set: each member is tested on its own. `mfer test` with "
            "this config and --ckpt_path tests every member (results-test-<member>.json); to predict, give one "
            "member's data config with --data.init_args.label_space=<the run folder>."
        )

    def test_dataloader(self) -> DataLoader:
        """Refused: ``mfer test`` tests each member through the member itself (:func:`test_members`)."""
        return self._refuse("test")

    def predict_dataloader(self) -> DataLoader:
        """Refused: predict through one member's data config with this run's label space."""
        return self._refuse("prediction")

    # -------------------------------------------------------------------------------------- device transform
    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """The batch's member's device transform (standardisation, augmentation); the member key is removed."""
        member = int(batch.pop(MEMBER_KEY)[0])
        return list(self.members.values())[member].on_after_batch_transfer(batch, dataloader_idx)


@contextmanager
def member_context(name: str) -> Iterator[None]:
    """Re-raise a member's package error, of the same type, naming the member and writing its options as a member's.

    ``--data.init_args.raw_root`` in the message becomes ``--data.init_args.members.<name>.init_args.raw_root``.
    """
    try:
        yield
    except MferError as error:
        message = str(error).replace("--data.init_args.", f"--data.init_args.members.{name}.init_args.")
        raise type(error)(f"Member {name!r}: {message}") from error


def test_members(combined: CombinedDataModule, test: Callable[[FERDataModule], Any]) -> list[Any]:
    """Run ``test`` on each member in turn (each writes ``results-test-<member>.json``); returns what each returned."""
    outputs = []
    for name, member in combined.members.items():
        rank_zero_info(f"Testing member {name!r} ({member.adapter.name}, {member.root})")
        outputs.append(test(member))
    return outputs
