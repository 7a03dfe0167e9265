"""How many samples of each split hold each requested modality, and refusing a split where one holds none.

A real data set's cache records per sample which modalities could be read (its ``present`` field, one column per
modality of the manifest). A modality missing from part of the samples is ordinary (a recording without audio, a
window past a video's end): the fusion masks it. A requested modality missing from *every* sample of a split is a
preparation that went wrong (every video unreadable, a file pattern that matches nothing) and would train or
evaluate a model without that modality while looking like a normal run; :func:`check_presence` refuses it with
the counts and where the reasons are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from multimodal_fer.errors import DataError
from multimodal_fer.preprocessing.builder import FAILURES_NAME
from multimodal_fer.preprocessing.cache import CacheReader

#: Presence counts: split → modality → samples of the split holding it.
PresenceCounts = dict[str, dict[str, int]]


def presence_counts(reader: CacheReader, splits: Mapping[str, np.ndarray], modalities: Sequence[str]) -> PresenceCounts:
    """Samples of each split that hold each modality.

    Args:
        reader: the cache.
        splits: split name → int (S,) cache indices of its samples.
        modalities: the modalities to count.

    Returns:
        split → modality → count. A cache without a ``present`` field (generated data: every sample holds every
        modality it has) counts every sample for the modalities of its manifest, 0 for others.
    """
    recorded = list(reader.manifest.get("modalities", []))
    present = np.asarray(reader.array("present"), dtype=bool) if "present" in reader.specs else None
    counts: PresenceCounts = {}
    for name, indices in splits.items():
        indices = np.asarray(indices, dtype=np.int64)
        counts[name] = {}
        for modality in modalities:
            if modality not in recorded:
                counts[name][modality] = 0
            elif present is None:
                counts[name][modality] = int(indices.size)
            else:
                counts[name][modality] = int(present[indices, recorded.index(modality)].sum())
    return counts


def describe_presence(counts: PresenceCounts, sizes: Mapping[str, int], withheld: Sequence[str] = ()) -> str:
    """One line: each split's size and, per modality, how many of its samples hold it.

    E.g. ``train 120 (face 96, physio 120), val 20 (face 20, physio 20), test 40 (face 0, physio 40)``; withheld
    modalities are named as such.
    """
    parts = []
    for name, per_modality in counts.items():
        held = [f"{m} {n}" for m, n in per_modality.items()] + [f"{m} withheld" for m in withheld]
        parts.append(f"{name} {sizes[name]} ({', '.join(held)})")
    return ", ".join(parts)


def check_presence(
    counts: PresenceCounts,
    sizes: Mapping[str, int],
    root: Any,
    summary: Mapping[str, Any],
    dataset: str,
    rebuild_command: str,
) -> None:
    """Refuse a requested modality that no sample of some split holds.

    Args:
        counts: :func:`presence_counts` of the modalities the model reads (withheld ones left out).
        sizes: split → its number of samples.
        root: the cache folder (for the pointers to ``failures.jsonl`` and ``summary.json``).
        summary: the cache's ``summary.json`` (empty if it has none).
        dataset: the data set's name.
        rebuild_command: the command that rebuilds the cache.

    Raises:
        DataError: naming each such modality, its presence per split, the cache's commonest failure reasons, where
            ``failures.jsonl`` is, and the fixes (repair the raw files or options and rebuild, drop the modality,
            or withhold it on purpose).
    """
    empty: dict[str, list[str]] = {}
    for split, per_modality in counts.items():
        for modality, count in per_modality.items():
            if count == 0 and sizes[split] > 0:
                empty.setdefault(modality, []).append(split)
    if not empty:
        return
    lines = []
    for modality, splits in empty.items():
        per_split = ", ".join(f"{split} {counts[split][modality]}/{sizes[split]}" for split in counts)
        cached = summary.get("modalities", {}).get(modality)
        whole = f"; summary.json: {cached} of {summary.get('usable', '?')} usable samples" if cached is not None else ""
        lines.append(f"{modality} is in no sample of the {' and '.join(splits)} split ({per_split}{whole})")
    reasons = sorted(summary.get("failures", {}).items(), key=lambda item: -item[1])[:3]
    named = ", ".join(f"{reason}: {count}" for reason, count in reasons) or "none recorded"
    modalities = list(empty)
    listed = ",".join(modalities)
    raise DataError(
        f"The {dataset} cache at {root} cannot feed the requested modalities: {'; '.join(lines)}. A model would "
        f"run without {' and '.join(modalities)} there while looking like a normal run. Why samples and files were "
        f"left out is in {root}/{FAILURES_NAME} (commonest reasons: {named}); a modality absent with no record "
        "there means its files were not found where the adapter looks (its folders and file patterns). Fix the "
        f"raw files or the adapter's options and rebuild ({rebuild_command}), or drop {listed} from "
        "--data.init_args.modalities, or, to test without it on purpose, "
        f"--data.init_args.withheld_modalities='[{listed}]'."
    )
