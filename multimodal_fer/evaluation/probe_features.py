"""Fixed features of single-modality runs: find the runs of a suite folder, compute their encoders' features.

A suite folder written by ``mfer ablate`` (``benchmarks/suites/fusion_singles.yaml`` gives
``<out>/fusion-singles/000-face-seed=0/``, ``001-face-seed=1/``, ...) holds one run folder per cell
(docs/runs.md). :func:`single_modality_runs` reads each run's saved ``config.yaml`` for its modalities and seed
and keeps the runs of exactly one modality; :func:`extract_features` rebuilds such a run from its config and its
best checkpoint (the one ``run.json`` names) and computes the features its encoder (and feature norm) gives every
sample of the train, validation and test splits, in eval mode, without augmentation, in cache order.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from multimodal_fer.benchmarking.run_lookup import best_checkpoint, read_run_record
from multimodal_fer.evaluation.feature_probes import SPLITS, ProbeError, SplitFeatures
from multimodal_fer.types import MODALITIES

#: Where a run keeps the resolved config of its fit.
RUN_CONFIG = "config.yaml"


def _modalities_and_seed(folder: Path) -> tuple[tuple[str, ...], int | None]:
    """The data modalities and the seed a run's ``config.yaml`` records (the seed from ``run.json`` if need be)."""
    config: dict[str, Any] = yaml.safe_load((folder / RUN_CONFIG).read_text()) or {}
    data = (config.get("data") or {}).get("init_args") or {}
    modalities = tuple(m for m in MODALITIES if m in (data.get("modalities") or ()))
    seed = config.get("seed_everything")
    if not isinstance(seed, int) or isinstance(seed, bool):
        seed = read_run_record(folder).get("seed")
    return modalities, seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def single_modality_runs(suite: str | Path, cells: str | None = None) -> dict[int, dict[str, Path]]:
    """The single-modality runs of a suite (or experiment) folder, by seed and modality.

    Args:
        suite: a folder whose sub-folders are run folders (``run.json`` and ``config.yaml``), e.g.
            ``runs/suites/fusion-singles``. Runs of several modalities and the ``latest`` link are left out.
        cells: a shell pattern run folder names must match (``*-seed=[01]``); None takes every run.

    Returns:
        ``{seed: {modality: run folder}}``, seeds ascending, modalities in canonical order.

    Raises:
        ProbeError: no such folder; no single-modality run in it; a run without a seed; two runs of one modality
            and seed (e.g. a grid over training lengths: choose one with ``cells``).
    """
    suite = Path(suite)
    if not suite.is_dir():
        raise ProbeError(f"{suite} is not a folder; give a suite folder of `mfer ablate` (runs/suites/<suite>).")
    found: dict[int, dict[str, Path]] = {}
    # ``latest`` links to the experiment's newest run: the same run twice.
    for folder in sorted(p for p in suite.iterdir() if (p / RUN_CONFIG).is_file() and not p.is_symlink()):
        if cells is not None and not fnmatch.fnmatchcase(folder.name, cells):
            continue
        modalities, seed = _modalities_and_seed(folder)
        if len(modalities) != 1:
            continue
        if seed is None:
            raise ProbeError(f"{folder / RUN_CONFIG} sets no seed_everything; probes are grouped by seed.")
        (modality,) = modalities
        earlier = found.setdefault(seed, {}).get(modality)
        if earlier is not None:
            raise ProbeError(
                f"Two {modality} runs of seed {seed}: {earlier.name} and {folder.name}. Choose one per modality and "
                "seed with a pattern of run names (mfer probe ... --cells '<pattern>')."
            )
        found[seed][modality] = folder
    if not found:
        raise ProbeError(
            f"{suite} holds no single-modality run (a sub-folder with {RUN_CONFIG} whose data has "
            "one modality); run `mfer ablate benchmarks/suites/fusion_singles.yaml --out runs/suites` first"
            + (f", or loosen --cells {cells!r}" if cells is not None else "")
            + "."
        )
    return {
        seed: {m: runs[m] for m in MODALITIES if m in runs} for seed, runs in sorted(found.items(), key=lambda x: x[0])
    }


def extract_features(run: str | Path, overrides: Sequence[str] = ()) -> dict[str, SplitFeatures]:
    """The fixed features a single-modality run's encoder gives every sample of its data's three splits.

    Args:
        run: the run folder (its ``config.yaml`` and the best checkpoint ``run.json`` names).
        overrides: settings applied after the run's config, e.g. ``--data.init_args.root=data/synthaffect`` when
            its cache has moved, or ``--data.init_args.num_workers=0``.

    Returns:
        ``{split: SplitFeatures}`` for ``train``, ``val`` and ``test``, with the run's modality's features
        (N, out_dim) after its feature norm.

    Raises:
        RunLookupError: the run has no finished fit or its best checkpoint is missing.
        ProbeError: the run has not exactly one modality.
    """
    from multimodal_fer.tasks.recogniser_loading import load_fer_run  # imports the CLI: only when extracting

    run = Path(run)
    checkpoint = best_checkpoint(run)
    task, data = load_fer_run(checkpoint, run / RUN_CONFIG, overrides)
    model = task.model.eval()
    if len(model.modalities) != 1:
        raise ProbeError(f"{run} is a run of {list(model.modalities)}; probes read single-modality runs.")
    (modality,) = model.modalities
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    keys = (modality, *model.side_inputs())  # the batch entries the encoder reads
    label_space = data.label_space
    splits: dict[str, SplitFeatures] = {}
    for split in SPLITS:
        parts: dict[str, list[np.ndarray]] = {"features": [], "expr": [], "va": [], "index": []}
        with torch.no_grad():
            for batch in data.ordered_dataloader(split):
                batch = data.on_after_batch_transfer(batch, 0)
                features = model.encode({k: batch[k] for k in keys if k in batch}, batch["present"])
                parts["features"].append(features[modality].float().numpy())
                parts["expr"].append(batch["expr"].numpy())
                parts["va"].append(batch["va"].float().numpy())
                parts["index"].append(batch["index"].numpy())
        joined = {key: np.concatenate(values) for key, values in parts.items()}
        splits[split] = SplitFeatures(
            features={modality: joined["features"]},
            expr=joined["expr"],
            va=joined["va"],
            index=joined["index"],
            dimensions=tuple(label_space.dimensions),
            num_expressions=label_space.num_expressions,
        )
    return splits


def merge_modalities(per_modality: dict[str, dict[str, SplitFeatures]]) -> dict[str, SplitFeatures]:
    """One :class:`SplitFeatures` per split with the features of every modality's run.

    Args:
        per_modality: modality → that run's :func:`extract_features`.

    Raises:
        ProbeError: the runs read different samples or labels (other caches or splits): probe runs of one suite.
    """
    if not per_modality:
        raise ProbeError("No runs to merge; give at least one single-modality run.")
    (first, reference), *others = per_modality.items()
    merged: dict[str, SplitFeatures] = {}
    for split in SPLITS:
        base = reference[split]
        features = dict(base.features)
        for modality, splits in others:
            other = splits[split]
            same = np.array_equal(other.index, base.index) and np.array_equal(other.expr, base.expr)
            if not same or not np.array_equal(other.va, base.va, equal_nan=True):
                raise ProbeError(
                    f"The {modality} run and the {first} run read different {split} samples or labels (other "
                    "caches, splits or data settings); probe runs fitted on the same data, or give the data "
                    "root they share with --data-root."
                )
            features.update(other.features)
        merged[split] = SplitFeatures(
            features=features,
            expr=base.expr,
            va=base.va,
            index=base.index,
            dimensions=base.dimensions,
            num_expressions=base.num_expressions,
        )
    return merged
