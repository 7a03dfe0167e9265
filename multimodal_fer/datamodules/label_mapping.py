"""A data set's labels expressed in another label space: for training on several data sets, or testing across them.

Every data set keeps its own classes in its cache (:class:`~multimodal_fer.types.LabelSpace`, named from one
vocabulary). A data module given another space (``label_space``) hands out batches whose ``expr``, ``au`` and ``va``
are that space's columns, mapped by name (:meth:`LabelSpace.map_labels`): a class, AU or dimension the data set does
not label is unlabelled (-1, NaN), which the losses and metrics skip; one it labels but the space lacks is dropped.

Where the space comes from (:func:`resolve_label_space`): ``"union"`` (every word, AU and dimension the package
knows), a run folder or checkpoint (the space its model was trained in: a model trained on AffectNet tested on
RAF-DB's faces), or the three lists written out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from multimodal_fer.errors import DataError
from multimodal_fer.types import EXPRESSION_VOCABULARY, FACS_ACTION_UNITS, UNION_LABEL_SPACE, LabelSpace

#: Batch keys that hold labels.
LABEL_KEYS = ("expr", "au", "va")
#: The value of ``label_space`` that names :data:`~multimodal_fer.types.UNION_LABEL_SPACE`.
UNION = "union"


def union_of(spaces: Sequence[LabelSpace]) -> LabelSpace:
    """The smallest space holding every class, AU and dimension of ``spaces``, in the package's vocabulary order.

    Args:
        spaces: label spaces named from the package's vocabulary.

    Returns:
        Expressions in :data:`EXPRESSION_VOCABULARY` order, AUs in :data:`FACS_ACTION_UNITS` order, and the longest
        of the spaces' affect dimensions (each is a prefix of valence, arousal, dominance).
    """
    for space in spaces:
        space.in_vocabulary()
    expressions = {name for space in spaces for name in space.expressions}
    action_units = {number for space in spaces for number in space.action_units}
    dimensions = max((space.dimensions for space in spaces), key=len, default=())
    return LabelSpace(
        expressions=tuple(name for name in EXPRESSION_VOCABULARY if name in expressions),
        action_units=tuple(number for number in FACS_ACTION_UNITS if number in action_units),
        dimensions=tuple(dimensions),
    )


def label_space_of_run(path: str | Path) -> LabelSpace:
    """The label space a ``mfer fit`` run's model was trained in, read from its checkpoint.

    Args:
        path: a run folder (its best checkpoint, else its last) or a checkpoint file.

    Raises:
        DataError: no checkpoint there, or one without a label space (not a FER model's).
    """
    from multimodal_fer.run_folder import RunFolder  # the run folder module imports nothing of the data modules

    path = Path(path)
    checkpoint = path
    if path.is_dir():
        resolved = path.resolve()
        folder = RunFolder(resolved.parent.parent, resolved.parent.name, resolved.name)
        best = folder.read_record().get("best_checkpoint")
        checkpoint = folder.path / best if best and (folder.path / best).is_file() else folder.last_checkpoint()
        if checkpoint is None:
            raise DataError(f"label_space: the run folder {path} holds no checkpoint; finish or resume its fit first.")
    if not checkpoint.is_file():
        raise DataError(
            f"label_space={str(path)!r} is neither a run folder nor a checkpoint file; give 'union', a run folder, "
            "a checkpoint or {expressions: [...], action_units: [...], dimensions: [...]}."
        )
    # The user's own local file; Lightning checkpoints carry plain Python objects beside the tensors.
    content = torch.load(checkpoint, map_location="cpu", weights_only=False)
    recorded = (content.get("hyper_parameters") or {}).get("label_space") if isinstance(content, dict) else None
    if isinstance(recorded, LabelSpace):
        return recorded
    if isinstance(recorded, dict):
        return LabelSpace.from_dict(recorded)
    raise DataError(f"{checkpoint} records no label space: it is not a checkpoint of a FER model (mfer fit).")


def resolve_label_space(value: LabelSpace | dict | str | None, own: LabelSpace) -> LabelSpace:
    """The space a data module's labels are expressed in.

    Args:
        value: None (the data set's own), ``"union"``, a run folder or checkpoint path, a :class:`LabelSpace` or
            its dictionary form.
        own: the data set's own label space.

    Raises:
        DataError: a space outside the package's vocabulary, or one that keeps none of the data set's labels.
    """
    if value is None:
        return own
    if isinstance(value, LabelSpace):
        target = value
    elif isinstance(value, dict):
        keys = ("expressions", "action_units", "dimensions")
        target = LabelSpace.from_dict({key: value.get(key, []) for key in keys})
    elif str(value) == UNION:
        target = UNION_LABEL_SPACE
    else:
        target = label_space_of_run(value)
    try:
        target.in_vocabulary()
    except ValueError as error:
        raise DataError(f"label_space: {error}") from error
    shared = (
        set(own.expressions) & set(target.expressions)
        or set(own.action_units) & set(target.action_units)
        or set(own.dimensions) & set(target.dimensions)
    )
    if not shared:
        raise DataError(
            f"label_space {target.to_dict()} shares no class, AU or affect dimension with this data set's labels "
            f"{own.to_dict()}: every sample would be unlabelled. Choose a space that holds some of them."
        )
    return target


class LabelMapper:
    """Maps batches of one label space into another (cheap: an index per class, a column per AU and dimension).

    Args:
        source: the space the cache's labels are in.
        target: the space batches leave in.
    """

    def __init__(self, source: LabelSpace, target: LabelSpace) -> None:
        self.source = source
        self.target = target

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Replace the batch's ``expr`` int (B,), ``au`` float (B, K) and ``va`` float (B, D) with ``target``'s.

        Returns:
            The same batch, ``expr`` (B,) int64, ``au`` (B, K') and ``va`` (B, D') float32 in ``target``'s layout;
            a label field the batch lacks is created fully unlabelled, so every batch carries the target's tasks.
        """
        size = int(batch["index"].shape[0])
        expr = batch["expr"].numpy() if "expr" in batch else np.full(size, -1, np.int64)
        au = batch["au"].numpy() if "au" in batch else np.full((size, self.source.num_action_units), np.nan, np.float32)
        va = batch["va"].numpy() if "va" in batch else np.full((size, self.source.num_dimensions), np.nan, np.float32)
        mapped = self.source.map_labels(self.target, expr, au, va)
        for key, values in zip(LABEL_KEYS, mapped, strict=True):
            batch[key] = torch.from_numpy(values)
        return batch

    def training_labels(self, expr: np.ndarray, au: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expression codes (N,) and AU columns (N, K) of the source space in the target's layout (statistics)."""
        expr = np.asarray(expr, dtype=np.int64)
        va = np.full((expr.shape[0], self.source.num_dimensions), np.nan, np.float32)
        mapped_expr, mapped_au, _ = self.source.map_labels(self.target, expr, au, va)
        return mapped_expr, mapped_au


class LabelMappedDataset(Dataset):
    """A batch-reading dataset whose batches leave with their labels in another space (:class:`LabelMapper`).

    Args:
        dataset: a dataset with ``__getitems__`` returning whole batches (the data module's datasets).
        mapper: the mapping.
    """

    def __init__(self, dataset: Dataset, mapper: LabelMapper) -> None:
        self.dataset = dataset
        self.mapper = mapper

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, position: int) -> dict[str, Any]:
        return self.__getitems__([position])

    def __getitems__(self, positions: Sequence[int]) -> dict[str, Any]:
        """The wrapped dataset's batch with ``expr``, ``au`` and ``va`` in the target space."""
        return self.mapper(self.dataset.__getitems__(positions))  # type: ignore[attr-defined]
