"""Ablation suites: a YAML file of base configs, overrides and a grid, expanded into cells (one fit each).

A suite file::

    base: [configs/quickstart.yaml]          # configs composed in order, as repeated --config
    overrides: {trainer.max_epochs: 20}      # applied to every cell
    grid:                                    # Cartesian product; any config key, dotted as on the command line
      data.init_args.modalities: [[face], [audio], [face, audio]]
      config: [null, configs/overlays/fusion_gated.yaml]        # overlay files composed after the base
      overrides: [{name: expr-only, model.init_args.au_weight: 0}, {name: all-tasks}]   # several keys at once
      seed_everything: [0, 1, 2]
    test:                                    # optional: extra tests of each cell's best checkpoint
      withheld: [[], [audio], [face]]
      corrupt: {modalities: [audio, face], kinds: [noise, drop, occlusion], strengths: [0.25, 0.5, 1.0]}
      caches:                                # other prepared caches (a second cohort): root + data overrides
        - {root: data/synthaffect_cohort1, overrides: {data.init_args.seed: 1, data.init_args.test_subjects: 58}}
      validation: true                       # also results-val.json with predictions (AU thresholds)

Each cell is one combination of grid values: a fit (and its test) in its own run folder
``<out>/<suite>/<cell name>/``, named after its values (``003-modalities=face+audio-seed=1``). ``corrupt`` is
expanded into one test-time corruption per modality × kind × strength
(:class:`~multimodal_fer.corruption_conditions.Corruption`; an optional ``seed`` entry sets their draws' seed).
Each entry of ``caches`` (:class:`OtherCache`) tests the cell's best checkpoint on another prepared cache of the
same data set, with every modality present: ``root`` is the cache folder (a plain string is the root alone) and
``overrides`` the data settings that cache needs (its generation seed, its split); the results file is
``results-test-on-<cache folder name>.json``.

A two-stage recipe is two suites: the second lists the first under ``needs`` (``mfer ablate`` runs the needed
suites' cells first, into the same ``--out``) and its override strings name a first-stage cell's run folder,
with the cell's own grid values filled in (:mod:`multimodal_fer.benchmarking.interpolation`)::

    needs: [benchmarks/suites/fusion_singles.yaml]       # the suite named fusion-singles
    overrides:
      model.init_args.pretrained_encoders:
        face: ${fusion-singles/face-seed=${seed_everything}}   # → <out>/fusion-singles/000-face-seed=0 for seed 0
    grid: {seed_everything: [0, 1, 2]}
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from multimodal_fer.benchmarking.interpolation import (
    InterpolationError,
    fill_folders,
    has_references,
    interpolate,
)
from multimodal_fer.corruption_conditions import Corruption
from multimodal_fer.errors import MferError

#: Keys a suite file may hold.
SUITE_KEYS = ("name", "base", "overrides", "grid", "test", "description", "needs")
#: Test conditions a suite may ask for under ``test``.
TEST_KEYS = ("withheld", "corrupt", "caches", "validation")
#: Keys of ``test.corrupt``: the first three are required, ``seed`` is optional.
CORRUPT_KEYS = ("modalities", "kinds", "strengths", "seed")
#: Keys of a ``test.caches`` entry given as a mapping: ``root`` is required.
CACHE_KEYS = ("root", "overrides")
#: The data root's key, set by a ``test.caches`` entry's ``root`` (never by its overrides).
DATA_ROOT_KEY = "data.init_args.root"
#: Grid axis whose values are overlay config files (a path, a list of paths, or null for none).
CONFIG_AXIS = "config"
#: Grid axis whose values are mappings of several config keys set together (``name`` names the cell).
OVERRIDES_AXIS = "overrides"


class SuiteError(MferError):
    """A suite file that cannot be expanded: unknown keys, an empty grid axis, a base config that is missing."""


@dataclass(frozen=True)
class OtherCache:
    """Another prepared cache that every cell's best checkpoint is tested on (``test.caches``): a second cohort.

    Attributes:
        root: the cache folder (relative to the working folder, as the base configs' data root).
        overrides: dotted data keys → values the test sets besides the root (e.g. the generation seed and the
            split that cache was prepared with), as command-line overrides.
    """

    root: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def condition(self) -> str:
        """The test's results condition, as the results writer names a test on another cache than the fit's."""
        return f"test-on-{Path(self.root).name}"

    def arguments(self) -> list[str]:
        """``--data.init_args.root=<root>`` and the overrides, as command-line arguments."""
        return [command_line_override(DATA_ROOT_KEY, self.root)] + [
            command_line_override(key, value) for key, value in self.overrides.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        """The entry as the suite file gives it (for ``suite.json``)."""
        return {"root": self.root, "overrides": self.overrides}


@dataclass(frozen=True)
class Cell:
    """One combination of grid values.

    Attributes:
        index: position in the suite's expansion (shards take every n-th).
        values: grid key (dotted) → value of this cell, as the suite file gives it (names and groups the cell).
        name: readable folder name, unique within the suite.
        settings: the suite's overrides that hold ``${...}``, resolved for this cell.
        resolved: ``values`` with the ``${...}`` of the ``overrides`` axis resolved (None: the same as ``values``).
        needs: the cells of needed suites this cell refers to, as ``<suite>/<cell name>``.
    """

    index: int
    values: dict[str, Any]
    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    resolved: dict[str, Any] | None = None
    needs: tuple[str, ...] = ()

    def arguments(self, out: Path | None = None) -> list[str]:
        """The cell's resolved overrides, then its grid values, as command-line arguments.

        A config key becomes ``--key=<JSON value>``; the ``config`` axis adds ``--config <file>`` for each overlay
        file (none for null); the ``overrides`` axis sets several keys at once from a mapping (its ``name`` entry
        only names the cell). References to cells of needed suites become run folders under ``out``.

        Raises:
            SuiteError: the cell refers to a needed suite's cell and ``out`` is not given.
        """
        if self.needs and out is None:
            raise SuiteError(f"Cell {self.name} names run folders of {list(self.needs)}; give the output folder.")
        arguments = [command_line_override(k, fill_folders(v, Path(out or "."))) for k, v in self.settings.items()]
        for key, value in (self.values if self.resolved is None else self.resolved).items():
            value = fill_folders(value, Path(out or "."))
            if key == CONFIG_AXIS:
                files = [] if value is None else [value] if isinstance(value, str) else list(value)
                arguments += [item for path in files for item in ("--config", str(path))]
            elif key == OVERRIDES_AXIS:
                arguments += [command_line_override(k, v) for k, v in value.items() if k != "name"]
            else:
                arguments.append(command_line_override(key, value))
        return arguments

    def seedless_values(self) -> dict[str, Any]:
        """The cell's values without the seed: cells that differ only in seed are repeats of one setting."""
        return {key: value for key, value in self.values.items() if key != "seed_everything"}


@dataclass(frozen=True)
class Suite:
    """An expanded suite file.

    Attributes:
        name: the suite's name (its ``name`` key, else the file's stem): the experiment folder and W&B group.
        base: config files, composed in order.
        overrides: dotted key → value applied to every cell.
        grid: dotted key → values, expanded as a Cartesian product in the file's order.
        withheld: modality sets withheld in extra tests of every cell (``[]`` is the plain test, always run).
        corruptions: test-time corruptions tested on every cell that has their modality.
        caches: other prepared caches every cell's best checkpoint is tested on.
        validation: also score each cell's best checkpoint on its validation split with per-sample predictions
            (``results-val.json``), from which ``mfer report`` tunes AU thresholds.
        description: free text shown by ``--dry-run``.
        needs: suites whose cells run first (their cells' run folders are named in this suite's overrides).
    """

    name: str
    base: tuple[Path, ...]
    overrides: dict[str, Any]
    grid: dict[str, list[Any]]
    withheld: tuple[tuple[str, ...], ...] = ()
    description: str = ""
    corruptions: tuple[Corruption, ...] = ()
    caches: tuple[OtherCache, ...] = ()
    cells: tuple[Cell, ...] = field(default=(), compare=False)
    needs: tuple[Suite, ...] = field(default=(), compare=False)
    validation: bool = False

    def base_arguments(self) -> list[str]:
        """``--config`` for each base config, then the overrides that are the same in every cell."""
        arguments = [item for path in self.base for item in ("--config", str(path))]
        per_cell = {key for cell in self.cells for key in cell.settings}  # resolved per cell (``${...}``)
        fixed = {key: value for key, value in self.overrides.items() if key not in per_cell}
        return arguments + [command_line_override(key, value) for key, value in fixed.items()]

    def interpolates(self) -> bool:
        """Whether any override holds ``${...}`` (then each cell's arguments differ beyond its grid values)."""
        return has_references(self.overrides) or has_references(self.grid.get(OVERRIDES_AXIS, []))


def command_line_override(key: str, value: Any) -> str:
    """``--key=value`` with the value as JSON (lists, mappings and strings survive the parser unchanged)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return f"--{key}={text}"


def load_suite(path: Path, _loading: tuple[Path, ...] = ()) -> Suite:
    """Read and expand a suite file, and the suites it needs.

    Config and needed suite files are looked for relative to the working folder first, then to the suite file's
    folder and the folders above it (so the shipped suites work from any working folder).

    Raises:
        SuiteError: unknown keys, a missing base config, a grid axis that is not a non-empty list, a needed suite
            that needs this one, a ``${...}`` that names no grid key, needed suite or cell of it.
    """
    path = Path(path)
    if path.resolve() in _loading:
        chain = " → ".join(str(item) for item in (*_loading, path.resolve()))
        raise SuiteError(f"Suite files need each other in a circle: {chain}.")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SuiteError(f"Suite file {path} does not exist.") from None
    except yaml.YAMLError as error:
        raise SuiteError(f"Suite file {path} is not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise SuiteError(f"Suite file {path} must hold a mapping with the keys {list(SUITE_KEYS)}.")
    unknown = sorted(set(document) - set(SUITE_KEYS))
    if unknown:
        raise SuiteError(f"Suite file {path}: unknown keys {unknown}; a suite has {list(SUITE_KEYS)}.")
    base = tuple(_find_config(entry, path) for entry in _as_list(document.get("base"), "base", path))
    if not base:
        raise SuiteError(f"Suite file {path}: 'base' must name at least one config file.")
    overrides = dict(document.get("overrides") or {})
    grid = dict(document.get("grid") or {})
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SuiteError(f"Suite file {path}: grid axis {key!r} must be a non-empty list, got {values!r}.")
        if key != OVERRIDES_AXIS and has_references(values):
            raise SuiteError(
                f"Suite file {path}: grid axis {key!r} holds '${{...}}'; references are resolved in 'overrides' "
                "and in the 'overrides' axis only."
            )
        if key == OVERRIDES_AXIS and not all(isinstance(value, dict) for value in values):
            raise SuiteError(f"Suite file {path}: every value of the 'overrides' axis must be a mapping of keys.")
        if key == CONFIG_AXIS:
            grid[key] = [_overlay_files(value, path) for value in values]
    both = sorted(set(grid) & set(overrides))
    if both:
        raise SuiteError(f"Suite file {path}: {both} appear in both 'overrides' and 'grid'; keep each in one.")
    test = dict(document.get("test") or {})
    unknown_tests = sorted(set(test) - set(TEST_KEYS))
    if unknown_tests:
        raise SuiteError(f"Suite file {path}: unknown test conditions {unknown_tests}; known: {list(TEST_KEYS)}.")
    withheld = tuple(tuple(sorted(entry)) for entry in _as_list(test.get("withheld"), "test.withheld", path) if entry)
    name = str(document.get("name") or path.stem)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$", name):
        raise SuiteError(f"Suite name {name!r} must be usable as a folder name (letters, digits, _.=+-).")
    corruptions = _corruptions(test.get("corrupt"), path)
    caches = _caches(test.get("caches"), path)
    validation = test.get("validation", False)
    if not isinstance(validation, bool):
        raise SuiteError(f"Suite file {path}: 'test.validation' must be true or false, not {validation!r}.")
    needs = tuple(
        load_suite(_find_config(entry, path), (*_loading, path.resolve()))
        for entry in _as_list(document.get("needs"), "needs", path)
    )
    needed_names = [needed.name for needed in needs]
    if name in needed_names or len(set(needed_names)) != len(needed_names):
        raise SuiteError(f"Suite file {path}: the suites under 'needs' ({needed_names}) and {name!r} must differ.")
    description = str(document.get("description") or "")
    suite = Suite(
        name, base, overrides, grid, withheld, description, corruptions, caches, needs=needs, validation=validation
    )
    try:
        cells = tuple(_resolve(cell, suite) for cell in expand(grid))
    except InterpolationError as error:
        raise SuiteError(f"Suite file {path}: {error}") from None
    return Suite(**{**suite.__dict__, "cells": cells})


def _resolve(cell: Cell, suite: Suite) -> Cell:
    """The cell with the ``${...}`` of the suite's overrides and of its ``overrides`` axis value resolved."""
    if not suite.interpolates():
        return cell
    names = {needed.name: [c.name for c in needed.cells] for needed in suite.needs}
    own = {key: value for key, value in cell.values.items() if key not in (CONFIG_AXIS, OVERRIDES_AXIS)}
    needs: set[str] = set()
    settings = {}
    for key, value in suite.overrides.items():
        if has_references(value):
            settings[key], found = interpolate(value, own, names, _short_value)
            needs |= found
    resolved = dict(cell.values)
    if OVERRIDES_AXIS in resolved:
        resolved[OVERRIDES_AXIS], found = interpolate(resolved[OVERRIDES_AXIS], own, names, _short_value)
        needs |= found
    return Cell(cell.index, cell.values, cell.name, settings, resolved, tuple(sorted(needs)))


def expand(grid: dict[str, list[Any]]) -> list[Cell]:
    """The grid's Cartesian product, in the file's order (the last key varies fastest), with readable names."""
    keys = list(grid)
    cells = []
    for index, combination in enumerate(itertools.product(*(grid[key] for key in keys))):
        values = dict(zip(keys, combination, strict=True))
        label = "-".join(_label(key, value) for key, value in values.items())
        cells.append(Cell(index, values, f"{index:03d}" + (f"-{label}" if label else "")))
    return cells


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with 0 ≤ i < n (None: the whole suite, ``(0, 1)``)."""
    if not text:
        return 0, 1
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or int(match[2]) < 1 or int(match[1]) >= int(match[2]):
        raise SuiteError(f"--shard must be i/n with 0 <= i < n (e.g. 0/4), got {text!r}.")
    return int(match[1]), int(match[2])


def _corruptions(value: Any, path: Path) -> tuple[Corruption, ...]:
    """``test.corrupt`` expanded: one corruption per modality × kind × strength, in the file's order.

    Raises:
        SuiteError: not a mapping, unknown or missing keys, an empty list, or a value :class:`Corruption` refuses.
    """
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise SuiteError(
            f"Suite file {path}: 'test.corrupt' must be a mapping {{modalities: [...], kinds: [...], strengths: "
            f"[...]}}, got {value!r}."
        )
    unknown = sorted(set(value) - set(CORRUPT_KEYS))
    missing = [key for key in CORRUPT_KEYS[:3] if key not in value]
    if unknown or missing:
        raise SuiteError(
            f"Suite file {path}: 'test.corrupt' has unknown keys {unknown} or lacks {missing}; it holds "
            f"{list(CORRUPT_KEYS[:3])} (lists) and optionally 'seed'."
        )
    axes = [_as_list(value[key], f"test.corrupt.{key}", path) for key in CORRUPT_KEYS[:3]]
    empty = [key for key, axis in zip(CORRUPT_KEYS, axes, strict=False) if not axis]
    if empty:
        raise SuiteError(f"Suite file {path}: 'test.corrupt' lists {empty} are empty; give at least one value each.")
    corruptions = []
    for modality, kind, strength in itertools.product(*axes):
        try:
            corruptions.append(Corruption(modality, kind, strength, value.get("seed", 0)))
        except ValueError as error:
            raise SuiteError(f"Suite file {path}: 'test.corrupt': {error}") from None
    return tuple(dict.fromkeys(corruptions))


def _caches(value: Any, path: Path) -> tuple[OtherCache, ...]:
    """``test.caches``: each entry a cache folder, or a mapping ``{root: <folder>, overrides: {key: value}}``.

    Raises:
        SuiteError: not a list, an entry without a root, unknown keys, overrides that are not a mapping or that set
            the data root, or two caches whose folders share a name (their results files would share one).
    """
    caches = []
    for entry in _as_list(value, "test.caches", path):
        if isinstance(entry, str) and entry.strip():
            caches.append(OtherCache(entry))
            continue
        example = "{root: data/synthaffect_cohort1, overrides: {data.init_args.seed: 1}}"
        if not isinstance(entry, dict) or not isinstance(entry.get("root"), str) or not entry["root"].strip():
            raise SuiteError(
                f"Suite file {path}: each 'test.caches' entry is a cache folder or a mapping like {example}, got "
                f"{entry!r}."
            )
        unknown = sorted(set(entry) - set(CACHE_KEYS))
        overrides = entry.get("overrides") or {}
        if unknown or not isinstance(overrides, dict):
            raise SuiteError(
                f"Suite file {path}: 'test.caches' entry {entry!r} has unknown keys {unknown} or overrides that are "
                f"not a mapping; an entry holds {list(CACHE_KEYS)}, like {example}."
            )
        if DATA_ROOT_KEY in overrides:
            raise SuiteError(f"Suite file {path}: 'test.caches' entry {entry!r}: give the cache folder as 'root'.")
        caches.append(OtherCache(entry["root"], dict(overrides)))
    names = [Path(cache.root).name for cache in caches]
    if len(set(names)) != len(names):
        raise SuiteError(
            f"Suite file {path}: 'test.caches' folders {names} share a name; the results file is named after the "
            "folder (results-test-on-<folder>.json), so give each cache a folder of its own name."
        )
    return tuple(caches)


def _as_list(value: Any, label: str, path: Path) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SuiteError(f"Suite file {path}: {label!r} must be a list, got {value!r}.")
    return value


def _find_config(entry: Any, suite_path: Path) -> Path:
    """A config file named in a suite: relative to the working folder, else to the suite's folder or one above."""
    candidate = Path(str(entry))
    for option in (candidate, *(folder / candidate for folder in suite_path.resolve().parents)):
        if option.is_file():
            return option
    raise SuiteError(
        f"Suite file {suite_path}: config {entry!r} not found (relative to . or to a folder above the suite)."
    )


def _overlay_files(value: Any, suite_path: Path) -> str | list[str] | None:
    """A ``config`` axis value with each file found (relative to . or to the suite)."""
    if value is None:
        return None
    if isinstance(value, list):
        return [str(_find_config(item, suite_path)) for item in value]
    return str(_find_config(value, suite_path))


def _short_key(key: str) -> str:
    """``data.init_args.modalities`` → ``modalities``; ``seed_everything`` → ``seed``."""
    if key == "seed_everything":
        return "seed"
    last = key.rsplit(".", 1)[-1]
    return re.sub(r"[^A-Za-z0-9]+", "_", last).strip("_") or "value"


def _label(key: str, value: Any) -> str:
    """``key=value`` for a cell name; overlay files by their stem, override sets by their ``name``."""
    if key == CONFIG_AXIS:
        files = [] if value is None else [value] if isinstance(value, str) else value
        return "config=" + ("+".join(Path(item).stem for item in files) or "none")
    if key == OVERRIDES_AXIS:
        named = value.get("name")
        return str(named) if named else "+".join(f"{_short_key(k)}={_short_value(v)}" for k, v in value.items())
    return f"{_short_key(key)}={_short_value(value)}"


def _short_value(value: Any) -> str:
    """A value in a folder name: lists joined with ``+``, class paths by their class name."""
    if isinstance(value, list | tuple):
        return "+".join(_short_value(item) for item in value) or "none"
    if isinstance(value, dict):
        if "class_path" in value:
            return _short_value(str(value["class_path"]).rsplit(".", 1)[-1])
        return "+".join(f"{key}{_short_value(item)}" for key, item in value.items()) or "none"
    text = str(value).rsplit(".", 1)[-1] if isinstance(value, str) and "." in str(value) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_.") or "none"
