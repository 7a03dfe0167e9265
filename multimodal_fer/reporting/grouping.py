"""Group results by benchmark protocol and by setting, refuse test sets that differ, find the reference setting.

* A **protocol group** is one data set, split protocol and test condition: its results are compared with each
  other and never with another group's. Within a group every results file must share the cache fingerprint,
  the withheld modalities and the labels scored (the same test set, scored the same way); otherwise the report
  is refused. The labels scored are the data set's own, whatever the model's label space: a model of a combined fit
  (or one tested with ``label_space``) is scored on the same labels as one trained on that data set alone, and a
  combined fit's member results (``results-test-<member>.json``) join the plain ``test`` group of that data set.
* The folds of a cross-validation (``mfer crossval``: protocols ``SubjectKFold(num_folds=k, fold=f, seed=s)``) are
  one protocol group, ``SubjectKFold(num_folds=k, seed=s)``, and one setting whose runs are its folds: its row is the
  mean ± std over folds, and runs of two such settings are paired by fold.
* A **setting** is what a row of a table summarises: the runs that differ only in their seed (or fold). A suite's runs
  (``cell.json``) share a setting when their cells are equal but for ``seed_everything``; other runs when their
  configs are equal but for the seed and the keys of :data:`IGNORED_CONFIG_KEYS` / :data:`IGNORED_CONFIG_LEAVES`
  (where files go, logging, loader workers), which say nothing about what a run computes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from multimodal_fer.reporting.errors import ReportError
from multimodal_fer.reporting.records import SEED_KEY, ResultRecord

#: Top-level config sections and keys ignored when runs are matched as seeds of one setting.
IGNORED_CONFIG_KEYS = (
    SEED_KEY,
    "ckpt_path",
    "test_after_fit",
    "results",
    "prediction_writer",
    "wandb_test",
    "trainer.logger",
    "trainer.enable_progress_bar",
    "run",
    "experiment",
    "name",
    "data.init_args.test_corruption",  # test-time only; the condition (test-noise-audio-0.50, ...) names it
    "data.init_args.test_subset",  # test-time only; the condition (test-subset-<list name>) names it
)
#: Last components of dotted config keys ignored likewise (paths of caches, run folders and logs; loader workers),
#: also inside lists (a ModelCheckpoint's ``dirpath`` in ``trainer.callbacks`` names each run's own folder).
IGNORED_CONFIG_LEAVES = ("default_root_dir", "dirpath", "save_dir", "root", "raw_root", "num_workers")
#: The suite axis of named override sets (``grid: {overrides: [{name: face, ...}, ...]}``).
OVERRIDES_AXIS = "overrides"
#: A setting is labelled by the parameters in which it differs from the others, if there are at most this many.
MAX_LABEL_PARAMETERS = 3
_SEED_SUFFIX = re.compile(r"[-_.,]?seed[-_=]?\d+$")


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dictionaries as one dictionary with dotted keys (lists and other values stay as they are)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def short_key(key: str) -> str:
    """A dotted key without ``init_args`` and ``class_path``: ``data.init_args.modalities`` → ``data.modalities``."""
    return ".".join(part for part in key.split(".") if part not in ("init_args", "class_path"))


def _ignored(key: str) -> bool:
    if any(key == name or key.startswith(name + ".") for name in IGNORED_CONFIG_KEYS):
        return True
    return key.rsplit(".", 1)[-1] in IGNORED_CONFIG_LEAVES


def _without_ignored_leaves(value: Any) -> Any:
    """A config value with the :data:`IGNORED_CONFIG_LEAVES` keys of the mappings nested in it left out."""
    if isinstance(value, Mapping):
        return {k: _without_ignored_leaves(v) for k, v in value.items() if k not in IGNORED_CONFIG_LEAVES}
    if isinstance(value, list | tuple):
        return [_without_ignored_leaves(item) for item in value]
    return value


def _frozen(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def show_value(value: Any) -> str:
    """A parameter value as written on a command line: ``[face,audio]``, ``0.3``, a class path's last part."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(show_value(item) for item in value) + "]"
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+", value):
        return value.rsplit(".", 1)[-1]
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return str(value)


@dataclass
class Setting:
    """Runs that differ only in their seed, on one protocol group.

    Attributes:
        identity: what the runs share (the cell or the config without the seed), as a string.
        parameters: the shared config values by dotted key (the cell's values take precedence).
        label_parameters: the values that name it: the cell's (without the seed), else the config's.
        records: the runs' results files, ordered by seed.
        label: the name shown in tables (set by :func:`group_records`).
        varying: the label parameters in which this setting differs from another of its group (short keys).
    """

    identity: str
    parameters: dict[str, Any]
    label_parameters: dict[str, Any]
    records: list[ResultRecord] = field(default_factory=list)
    label: str = ""
    varying: dict[str, Any] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int | None]:
        """The runs' seeds, in record order."""
        return [record.seed for record in self.records]

    @property
    def folds(self) -> list[int | None]:
        """The runs' cross-validation folds, in record order (None for runs of other protocols)."""
        return [record.fold for record in self.records]

    def run_names(self) -> set[str]:
        """The runs' names, also without a trailing seed (``fusion-seed0`` → ``fusion``), experiments and suites."""
        names = {record.run_name for record in self.records}
        names |= {_SEED_SUFFIX.sub("", name) for name in names}
        return names | {record.experiment for record in self.records} | {r.suite for r in self.records if r.suite}


@dataclass
class ProtocolGroup:
    """Results on one data set, split protocol and test condition, by setting.

    Attributes:
        dataset: the data set's name.
        protocol: the split protocol's description.
        condition: the test condition.
        cache_fingerprint: the shared cache fingerprint (None where the results files have none).
        settings: the settings, in order of first appearance.
    """

    dataset: str
    protocol: str
    condition: str
    cache_fingerprint: str | None
    settings: list[Setting]

    @property
    def title(self) -> str:
        """``dataset · protocol · condition``."""
        return f"{self.dataset} · {self.protocol} · {self.condition}"

    @property
    def records(self) -> list[ResultRecord]:
        """Every results file of the group."""
        return [record for setting in self.settings for record in setting.records]

    @property
    def is_crossval(self) -> bool:
        """Whether the group holds the folds of cross-validations (its rows are means over folds)."""
        return all(record.fold is not None for record in self.records)


def _without_fold(value: Any) -> Any:
    """A config or cell value with the fold number taken out (every fold of a cross-validation is one setting).

    Drops ``fold`` from the init arguments of a ``SubjectKFold`` split and a ``name`` such as ``fold=2`` (the
    name ``mfer crossval`` gives each fold's cell).
    """
    if isinstance(value, Mapping):
        folded = str(value.get("class_path", "")).endswith("SubjectKFold")
        out = {}
        for key, item in value.items():
            if key == "name" and isinstance(item, str) and re.fullmatch(r"fold=\d+", item):
                continue
            if folded and key == "init_args" and isinstance(item, Mapping):
                item = {k: v for k, v in item.items() if k != "fold"}
            out[key] = _without_fold(item)
        return out
    if isinstance(value, list):
        return [_without_fold(item) for item in value]
    return value


def _setting_of(record: ResultRecord) -> Setting:
    """A record's (empty) setting: identity, parameters (the config overridden by the cell) and label parameters.

    A cross-validation fold's fold number is left out, so that its folds make one setting.
    """
    fold = record.fold is not None
    source = _without_fold(record.config or {}) if fold else record.config or {}
    config = {key: _without_ignored_leaves(value) for key, value in flatten(source).items() if not _ignored(key)}
    if record.cell is not None:
        cell = {key: value for key, value in record.cell.items() if key != SEED_KEY}
        cell = _without_fold(cell) if fold else cell
        return Setting(_frozen(["cell", record.suite, cell]), {**config, **cell}, _named_overrides(cell))
    if record.config is None:
        return Setting(_frozen(["run", str(record.run_folder)]), {}, {})
    return Setting(_frozen(["config", config]), config, config)


def _named_overrides(cell: dict[str, Any]) -> dict[str, Any]:
    """A cell's label parameters: an ``overrides`` axis entry that has a ``name`` is labelled by that name alone."""
    entry = cell.get(OVERRIDES_AXIS)
    if isinstance(entry, dict) and "name" in entry:
        return {**cell, OVERRIDES_AXIS: str(entry["name"])}
    return cell


def _check_same_test_set(records: Sequence[ResultRecord], title: str) -> None:
    """Refuse a group whose results files were tested on different test sets or label spaces."""
    by_test_set: dict[str, list[ResultRecord]] = {}
    for record in records:
        key = _frozen([record.cache_fingerprint, record.withheld, record.scored_labels])
        by_test_set.setdefault(key, []).append(record)
    if len(by_test_set) > 1:
        described = [
            f"cache {(group[0].cache_fingerprint or 'none')[:12]}, withheld {list(group[0].withheld)}, "
            f"labels {group[0].scored_labels}: "
            + ", ".join(str(r.path) for r in group[:2])
            + (f" and {len(group) - 2} more" if len(group) > 2 else "")
            for group in by_test_set.values()
        ]
        raise ReportError(
            f"Refusing to compare results on {title} whose test sets differ:\n  " + "\n  ".join(described) + "\n"
            "Results on different caches, withheld modalities or label spaces are not comparable; give their "
            "folders to separate `mfer report` calls."
        )


def _family(setting: Setting) -> str:
    """Settings labelled together: the cells of one suite, runs with configs, runs without."""
    record = setting.records[0]
    if record.cell is not None:
        return f"suite {record.suite}"
    return "config" if record.config is not None else "run"


def _label_family(settings: list[Setting]) -> None:
    """Name each setting by the parameters in which the family's settings differ (else by its runs' name).

    Of keys that vary together (linked ones such as the data's and the model's modalities), the first is kept.
    """
    keys = sorted({key for setting in settings for key in setting.label_parameters})
    varying, patterns = [], set()
    for key in keys:
        pattern = tuple(_frozen(setting.label_parameters.get(key, "<absent>")) for setting in settings)
        if len(set(pattern)) > 1 and pattern not in patterns:
            varying.append(key)
            patterns.add(pattern)
    for setting in settings:
        setting.varying = {
            short_key(key): setting.label_parameters[key] for key in varying if key in setting.label_parameters
        }
        first = setting.records[0]
        base = first.suite or _SEED_SUFFIX.sub("", first.run_name) or first.experiment
        if 0 < len(varying) <= MAX_LABEL_PARAMETERS:
            setting.label = ", ".join(
                show_value(value) if key == OVERRIDES_AXIS else f"{key}={show_value(value)}"
                for key, value in setting.varying.items()
            )
        else:
            setting.label = base


def _label_settings(settings: list[Setting]) -> None:
    """Label the settings family by family; with several families a suite's labels start with its name."""
    families: dict[str, list[Setting]] = {}
    for setting in settings:
        families.setdefault(_family(setting), []).append(setting)
    for members in families.values():
        _label_family(members)
    if len(families) > 1:
        for setting in settings:
            suite = setting.records[0].suite
            if setting.records[0].cell is not None and suite and setting.label != suite:
                setting.label = f"{suite}: {setting.label}"
    seen: dict[str, int] = {}
    for setting in settings:
        count = seen[setting.label] = seen.get(setting.label, 0) + 1
        if count > 1:
            setting.label = f"{setting.label} ({count})"


def group_records(records: Sequence[ResultRecord]) -> list[ProtocolGroup]:
    """Group results files by protocol group and setting.

    Raises:
        ReportError: a group's files were tested on different test sets, or a setting holds two files of one
            seed (say which one to report by passing only its folder).
    """
    by_group: dict[tuple[str, str, str], list[ResultRecord]] = {}
    for record in records:
        by_group.setdefault((record.dataset, record.protocol_family, record.protocol_condition), []).append(record)
    groups = []
    for (dataset, protocol, condition), members in by_group.items():
        title = f"{dataset} · {protocol} · {condition}"
        _check_same_test_set(members, title)
        settings: dict[str, Setting] = {}
        for record in members:
            fresh = _setting_of(record)
            setting = settings.setdefault(fresh.identity, fresh)
            key = record.pair_key
            clash = [other for other in setting.records if other.pair_key is not None and other.pair_key == key]
            if clash:
                what = f"fold ({record.fold})" if record.fold is not None else f"seed ({record.seed})"
                raise ReportError(
                    f"{record.path} and {clash[0].path} are two results of one setting and {what} on "
                    f"{title}; give only the one to report (its run folder, or the results file itself)."
                )
            setting.records.append(record)
        for setting in settings.values():
            setting.records.sort(key=lambda r: (r.pair_key is None, r.pair_key or 0, str(r.path)))
        ordered = list(settings.values())
        _label_settings(ordered)
        groups.append(ProtocolGroup(dataset, protocol, condition, members[0].cache_fingerprint, ordered))
    return groups


def _value_matches(wanted: str, value: Any) -> bool:
    parsed = yaml.safe_load(wanted) if wanted.strip() else wanted
    if parsed == value or wanted == str(value) or show_value(parsed) == show_value(value):
        return True
    return isinstance(value, str) and value.endswith("." + wanted)


def _key_matches(wanted: str, key: str) -> bool:
    wanted, key = short_key(wanted), short_key(key)
    return key == wanted or key.endswith("." + wanted)


def matches_reference(setting: Setting, reference: Sequence[str]) -> bool:
    """Whether a setting is the reference: every ``key=value`` pair matches and every name names it.

    A name names a setting when it equals its label or one of its runs' names (with or without the trailing
    seed), experiments or suites.

    A key matches a parameter whose dotted key (without ``init_args``) equals it or ends with it
    (``modalities`` matches ``data.init_args.modalities``); every parameter it matches must hold the value
    (given as on the command line: ``[face,audio]``, ``0.3``; a class name matches its class path).
    """
    pairs = [item for item in reference if "=" in item]
    names = [item for item in reference if "=" not in item]
    for name in names:
        if name != setting.label and name not in setting.run_names():
            return False
    for pair in pairs:
        wanted_key, wanted_value = pair.split("=", 1)
        matched = [key for key in setting.parameters if _key_matches(wanted_key, key)]
        if not matched or not all(_value_matches(wanted_value, setting.parameters[key]) for key in matched):
            return False
    return True


def find_reference(groups: Sequence[ProtocolGroup], reference: Sequence[str]) -> dict[int, Setting]:
    """The reference setting of every group that has one (group position → setting).

    Raises:
        ReportError: the reference matches no setting of any group, or several settings of one group.
    """
    chosen: dict[int, Setting] = {}
    if not reference:
        return chosen
    for position, group in enumerate(groups):
        found = [setting for setting in group.settings if matches_reference(setting, reference)]
        if len(found) > 1:
            raise ReportError(
                f"--reference {' '.join(reference)} matches {len(found)} settings on {group.title}: "
                + "; ".join(setting.label for setting in found)
                + ". Add key=value pairs until it names one."
            )
        if found:
            chosen[position] = found[0]
    if not chosen:
        labels = sorted({setting.label for group in groups for setting in group.settings})
        raise ReportError(
            f"--reference {' '.join(reference)} matches no setting. The settings are: " + "; ".join(labels) + "."
        )
    return chosen
