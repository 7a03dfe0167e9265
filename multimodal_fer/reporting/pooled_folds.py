"""The pooled figure of a cross-validation: its folds' predictions scored as one test set, from ``aggregate.json``.

``mfer crossval`` writes ``<out>/<name>/aggregate.json`` beside the folds' run folders once every fold has its
``results-test.json`` (:mod:`multimodal_fer.benchmarking.fold_aggregate`): per metric the mean ± std over folds
and, where every fold kept its predictions, the metric of the pooled predictions (``pooled``), the figure that
leave-one-subject-out benchmarks usually report. A report's cross-validation group shows the mean ± std over folds
from the folds' own results files and, in a second table, the pooled figure read from that file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multimodal_fer.reporting.grouping import ProtocolGroup, Setting
from multimodal_fer.reporting.tables import MISSING, Table, show_number

#: Name of a cross-validation's aggregate file in its folder (written by ``mfer crossval``).
AGGREGATE_NAME = "aggregate.json"
#: The condition of the folds' tests that the aggregate pools.
POOLED_CONDITION = "test"


def read_aggregate(setting: Setting, protocol: str) -> tuple[Path, dict[str, Any]] | None:
    """The aggregate of a cross-validation setting's folds, where its folder has one that describes them.

    The folds' run folders share one parent, the cross-validation's folder. Its ``aggregate.json`` is used when its
    protocol is the group's (``SubjectKFold(num_folds=k, seed=s)``, with a leave-one-subject-out prefix allowed)
    and it counts as many folds as the setting has runs.

    Args:
        setting: a setting of a cross-validation group.
        protocol: the group's protocol, without the fold.

    Returns:
        The file and its contents, or None.
    """
    parents = {record.run_folder.parent for record in setting.records}
    if len(parents) != 1:
        return None
    path = parents.pop() / AGGREGATE_NAME
    if not path.is_file():
        return None
    try:
        aggregate = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if not isinstance(aggregate, dict) or not str(aggregate.get("protocol", "")).endswith(protocol):
        return None
    if aggregate.get("num_folds") != len(setting.records):
        return None
    return path, aggregate


def pooled_table(name: str, group: ProtocolGroup, metrics: Sequence[str]) -> Table | None:
    """The pooled figure of every setting of a cross-validation group that has an aggregate; None if none has.

    Args:
        name: the table's file-name part.
        group: a cross-validation group (:attr:`~multimodal_fer.reporting.grouping.ProtocolGroup.is_crossval`).
        metrics: the metrics shown (without ``test/``).
    """
    if not group.is_crossval or group.condition != POOLED_CONDITION:
        return None
    rows, csv_rows, sources = [], [], []
    for setting in group.settings:
        found = read_aggregate(setting, group.protocol)
        if found is None:
            continue
        path, aggregate = found
        sources.append(f"{setting.label}: {path}")
        pooled = [_pooled(aggregate, metric) for metric in metrics]
        samples = aggregate.get("pooled_samples")
        rows.append(
            [setting.label, str(aggregate["num_folds"]), MISSING if samples is None else str(samples)]
            + [show_number(value) for value in pooled]
        )
        csv_rows.append([setting.label, aggregate["num_folds"], samples, *pooled])
    if not rows:
        return None
    columns = ["setting", "folds", "pooled samples", *metrics]
    title = f"{group.title}: the folds' predictions pooled into one test set"
    table = Table(name, title, columns, rows, ["setting", "folds", "pooled samples", *metrics], csv_rows)
    table.notes.append(
        "Pooled: every fold's per-sample test predictions concatenated (the folds test disjoint subjects) and scored "
        "once, as written by mfer crossval; '–' where a fold kept no predictions. From " + "; ".join(sources) + "."
    )
    return table


def _pooled(aggregate: dict[str, Any], metric: str) -> float | None:
    entry = (aggregate.get("metrics") or {}).get(f"test/{metric}") or {}
    value = entry.get("pooled")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
