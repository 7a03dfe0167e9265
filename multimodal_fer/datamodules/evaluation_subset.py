"""Testing on a listed subset of the evaluated split: real-occlusion and pose subsets of a benchmark.

Published occlusion and pose benchmarks of real faces are lists of the images of a data set's test split (RAN's
Occlusion-RAF-DB, Occlusion-FERPlus and Pose-RAF-DB lists, for instance). ``test_subset`` of
:class:`~multimodal_fer.datamodules.FERDataModule` names such a list; ``mfer test`` then scores only the listed
samples and names its results file after the list (``results-test-subset-<list name>.json``).

The list file names one sample per line by its first whitespace-separated field; the rest of the line is ignored
(other projects' label codes, whose order need not be the data set's: the labels always come from the data set's
own files). Blank lines and lines starting with ``#`` are skipped. An entry names a sample when the entry, or its
last path component, with or without the file extension, equals the sample's key or its source file (relative path,
file name or file stem) as recorded in the cache's ``samples.jsonl``: RAN's ``test_0003_aligned`` names RAF-DB's
``Image/aligned/test_0003_aligned.jpg``, whose key is ``test_0003``.

Nothing is dropped silently. Entries that name nothing in the cache, or name samples of another split, stop the test
with the entries named; entries naming samples that failed preparation (listed in the cache's ``failures.jsonl``)
are left out and recorded in the results file with the repeated entries.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from multimodal_fer.errors import DataError

#: How many offending entries an error message names.
_SHOWN = 5


@dataclass(frozen=True)
class EvaluationSubset:
    """The samples of a subset list found in the evaluated split.

    Attributes:
        name: the list's file stem, made safe for a file name (the results file's condition part).
        path: the list file as given.
        sha256: SHA-256 of the list file's bytes.
        indices: int64 (N,) cache indices of the listed usable samples of the split, ascending.
        entries: entries in the file (repeats counted).
        repeated: entries that name a sample an earlier entry already named.
        failed_preparation: entries naming samples that failed preparation, left out.
    """

    name: str
    path: str
    sha256: str
    indices: np.ndarray
    entries: int
    repeated: int
    failed_preparation: tuple[str, ...] = field(default=())

    def describe(self) -> dict[str, Any]:
        """What the results file records of the subset."""
        return {
            "name": self.name,
            "path": self.path,
            "sha256": self.sha256,
            "entries": self.entries,
            "evaluated": int(self.indices.size),
            "repeated": self.repeated,
            "failed_preparation": list(self.failed_preparation),
        }


def subset_name(path: str | Path) -> str:
    """The list file's stem with anything but letters, digits, ``.``, ``_`` and ``-`` replaced by ``-``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(path).stem).strip("-") or "subset"


def read_subset_entries(path: str | Path) -> tuple[list[str], str]:
    """The entries of a subset list and the SHA-256 of its bytes.

    Args:
        path: the list file.

    Returns:
        ``(entries, sha256)``: the first field of every line that is neither blank nor a ``#`` comment, in order.

    Raises:
        DataError: the file is missing, unreadable, not text, or lists nothing.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
        text = data.decode("utf-8-sig")
    except OSError as error:
        raise DataError(f"test_subset {str(path)!r} cannot be read ({error}); give the path of a list file.") from None
    except UnicodeDecodeError:
        raise DataError(f"test_subset {str(path)!r} is not a UTF-8 text file; give a list of sample names.") from None
    entries = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            entries.append(stripped.split()[0])
    if not entries:
        raise DataError(f"test_subset {str(path)!r} lists no sample (every line is blank or a # comment).")
    return entries, hashlib.sha256(data).hexdigest()


def _without_extension(name: str) -> str:
    path = PurePosixPath(name)
    return str(path.with_suffix("")) if path.suffix else name


def _record_names(record: Mapping[str, Any]) -> set[str]:
    """Every name an entry may use for one sample: its key and its source's path, file name and stem."""
    names = {str(record["key"])}
    source = record.get("source")
    if source:
        text = str(source).replace("\\", "/")
        names |= {text, _without_extension(text), PurePosixPath(text).name, PurePosixPath(text).stem}
    return names


def _entry_forms(entry: str) -> list[str]:
    """The entry, then without its extension, then its last path component with and without the extension."""
    text = entry.replace("\\", "/").rstrip("/")
    last = PurePosixPath(text).name if text else text
    forms = [text, _without_extension(text), last, _without_extension(last)]
    return list(dict.fromkeys(form for form in forms if form))


def _describe(entries: Sequence[str], total: int) -> str:
    shown = ", ".join(repr(entry) for entry in entries[:_SHOWN])
    return shown + (f" and {total - _SHOWN} more" if total > _SHOWN else "")


def select_subset(
    path: str | Path,
    records: Sequence[Mapping[str, Any]],
    usable: np.ndarray,
    splits: Mapping[str, np.ndarray],
    split: str,
) -> EvaluationSubset:
    """Find a subset list's samples in the evaluated split of a cache.

    Args:
        path: the list file.
        records: the cache's ``samples.jsonl``, one record (``key``, ``source``, ...) per cache index.
        usable: int (U,) cache indices of the samples that did not fail preparation.
        splits: cache indices of each protocol split (``train``, ``val``, ``test``).
        split: the split tested (``evaluate_split``).

    Returns:
        The listed samples of ``split`` in cache order, with the list's bookkeeping.

    Raises:
        DataError: the list cannot be read or is empty; the cache records no sample names (a generated data set);
            an entry names no sample, or several; entries name samples of another split; no listed sample is
            usable.
    """
    entries, digest = read_subset_entries(path)
    if not records:
        raise DataError(
            f"test_subset {str(path)!r} names samples, but this cache records no sample names (samples.jsonl): "
            "subset lists need a cache prepared from a data set's raw files (mfer prepare)."
        )
    lookup: dict[str, set[int]] = {}
    for index, record in enumerate(records):
        for name in _record_names(record):
            lookup.setdefault(name, set()).add(index)
    member = {int(i): name for name, indices in splits.items() for i in np.asarray(indices).tolist()}
    usable_set = set(np.asarray(usable).tolist())
    unmatched: list[str] = []
    ambiguous: list[str] = []
    elsewhere: dict[str, list[str]] = {}
    failed: list[str] = []
    chosen: set[int] = set()
    repeated = 0
    for entry in entries:
        found = next((lookup[form] for form in _entry_forms(entry) if form in lookup), None)
        if found is None:
            unmatched.append(entry)
            continue
        if len(found) > 1:
            ambiguous.append(entry)
            continue
        index = next(iter(found))
        if index not in usable_set:
            failed.append(entry)
        elif member.get(index) != split:
            elsewhere.setdefault(member.get(index, "no split"), []).append(entry)
        elif index in chosen:
            repeated += 1
        else:
            chosen.add(index)
    where = f"test_subset {str(path)!r}"
    if unmatched:
        raise DataError(
            f"{where}: {len(unmatched)} of its {len(entries)} entries name no sample of the cache: "
            f"{_describe(unmatched, len(unmatched))}. Entries are matched with the keys and source files of "
            "samples.jsonl in the cache folder; check that the list belongs to this data set and its image kind."
        )
    if ambiguous:
        raise DataError(
            f"{where}: {len(ambiguous)} entries name several samples: {_describe(ambiguous, len(ambiguous))}. "
            "Give each entry as the sample's key or its source path in samples.jsonl."
        )
    if elsewhere:
        counts = ", ".join(f"{len(names)} in {name}" for name, names in sorted(elsewhere.items()))
        examples = [entry for names in elsewhere.values() for entry in names]
        raise DataError(
            f"{where}: entries name samples outside the {split} split being tested ({counts}; e.g. "
            f"{_describe(examples, len(examples))}). Use a list of {split} samples, or evaluate the split it "
            "describes (--data.init_args.evaluate_split, or another split protocol)."
        )
    if not chosen:
        raise DataError(
            f"{where}: every listed sample failed preparation ({_describe(failed, len(failed))}); see "
            "failures.jsonl in the cache folder."
        )
    return EvaluationSubset(
        name=subset_name(path),
        path=str(path),
        sha256=digest,
        indices=np.asarray(sorted(chosen), dtype=np.int64),
        entries=len(entries),
        repeated=repeated,
        failed_preparation=tuple(failed),
    )
