"""The specification of an occlusion benchmark (``mfer occlusion-benchmark SPEC``): what to evaluate and compare.

A spec is a small YAML or JSON file; relative paths in it are read from the spec file's folder::

    split: data/synthaffect_occluded_test        # written by mfer occlusion-split
    fills: [mean_colour, telea, navier_stokes, mirror]   # trivial fills behind the restorer's masks (default: none)
    resamples: 2000                              # bootstrap draws of the test subjects (default 2000)
    bootstrap_seed: 0                            # seed of the draws (default 0)
    level: 0.95                                  # interval level (default 0.95)
    batch_size: 128                              # faces per forward pass (default 128)
    title: SynthAffect test subjects             # first line of summary.md (optional)
    recognisers:                                 # evaluated in this order; conditions default to all five
      - {label: R-clean}
      - {label: R-aug, conditions: [clean, occluded]}
      - {label: R+mask, conditions: [clean, occluded], restores: true, reference: R-clean}
      - {label: R-aug+, max_occluded_fraction: 0.28}   # adds restored_selective (chosen on validation faces)
    seeds:                                       # one entry per seed: its run folders
      - seed: 0
        restorer: runs/occlusion/seed0/restoration   # optional; needed for restored conditions and fills
        runs: {R-clean: runs/occlusion/seed0/R_clean, R-aug: ..., R+mask: ...}
    comparisons:                                 # paired differences, candidate minus baseline (optional)
      - {candidate: R-clean restored, baseline: R-aug occluded}
    recoveries:                                  # optional; default: every restored pipeline vs its reference
      - {pipeline: R-clean restored, reference: R-clean}

A *pipeline* is ``"<label> <condition>"``. Conditions: ``clean``, ``occluded``, ``restored`` (blind: the restorer's
predicted masks), ``restored_true_mask``, ``clean_restored`` (the clean faces through the blind restorer: what its
false alarms cost where nothing is occluded), and, for a recogniser given ``max_occluded_fraction``,
``restored_selective``: blind restoration of the faces whose predicted occluded share is at most that, the others
read as they are (what :class:`~multimodal_fer.models.restoration.FaceRestorer` does with that
``max_occluded_fraction``; choose it on validation faces: the summary's selective-restoration table). Each fill
adds ``restored_<fill>`` beside ``restored`` and ``restored_<fill>_true_mask`` beside ``restored_true_mask``.
``restores: true`` marks a recogniser that restores or masks the occluded face itself (R+restorer, R+mask): its
``occluded`` pipeline is a restoration, whose recovery is set against ``reference``'s clean and occluded scores
(a recogniser's reference is itself unless given).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from multimodal_fer.errors import DataError
from multimodal_fer.models.restoration.fills import TRIVIAL_FILLS

#: The conditions of every recogniser that reads plain faces: the clean and the occluded faces, the occluded faces
#: restored blindly and with the true masks, and the clean faces put through the blind restorer (what restoration
#: costs where nothing is occluded: its false alarms).
BASE_CONDITIONS: tuple[str, ...] = ("clean", "occluded", "restored", "restored_true_mask", "clean_restored")
#: Blind restoration of only the faces whose predicted occluded share is at most a recogniser's
#: ``max_occluded_fraction``; the others are read as they are.
SELECTIVE_CONDITION = "restored_selective"
#: Every condition, in table order.
ALL_CONDITIONS: tuple[str, ...] = (*BASE_CONDITIONS, SELECTIVE_CONDITION)
#: Restorations of the occluded faces (each fill adds its own beside them).
RESTORED_CONDITIONS: tuple[str, ...] = ("restored", "restored_true_mask")
#: Conditions that need a restorer.
RESTORER_CONDITIONS: tuple[str, ...] = (*RESTORED_CONDITIONS, "clean_restored", SELECTIVE_CONDITION)
_TOP_KEYS = (
    "split",
    "fills",
    "resamples",
    "bootstrap_seed",
    "level",
    "batch_size",
    "title",
    "recognisers",
    "seeds",
    "comparisons",
    "recoveries",
)


class SpecError(DataError):
    """An occlusion-benchmark spec that cannot be run; the message names the key and the fix."""


@dataclass(frozen=True)
class RecogniserEntry:
    """A recogniser of the benchmark.

    Attributes:
        label: its name in the tables (no spaces).
        conditions: the inputs it is evaluated on (a subset of :data:`ALL_CONDITIONS`).
        reference: the recogniser whose clean and occluded scores its recoveries are set against ("" = itself).
        restores: it restores or masks occluded faces itself, so its ``occluded`` pipeline counts as restored.
        max_occluded_fraction: the largest predicted occluded share its ``restored_selective`` condition restores
            (None: no such condition).
    """

    label: str
    conditions: tuple[str, ...] = BASE_CONDITIONS
    reference: str = ""
    restores: bool = False
    max_occluded_fraction: float | None = None

    def expanded_conditions(self, fills: Sequence[str]) -> tuple[str, ...]:
        """Its conditions plus each fill's beside ``restored`` and ``restored_true_mask``."""
        expanded = list(self.conditions)
        for base in RESTORED_CONDITIONS:
            if base in self.conditions:
                suffix = base.removeprefix("restored")
                expanded += [f"restored_{fill}{suffix}" for fill in fills]
        return tuple(expanded)


@dataclass(frozen=True)
class SeedRuns:
    """The run folders of one seed.

    Attributes:
        seed: the seed's number.
        runs: recogniser label → its ``mfer fit`` run folder.
        restorer: the restoration run folder, or None.
    """

    seed: int
    runs: dict[str, Path]
    restorer: Path | None = None


@dataclass(frozen=True)
class Comparison:
    """A paired difference: ``candidate`` minus ``baseline``, two pipelines (``"<label> <condition>"``)."""

    candidate: str
    baseline: str


@dataclass(frozen=True)
class Recovery:
    """The share of the occlusion cost a pipeline wins back, against a reference recogniser's clean and occluded."""

    pipeline: str
    reference: str


@dataclass(frozen=True)
class BenchmarkSpec:
    """A parsed occlusion-benchmark spec (module docstring)."""

    split: Path
    recognisers: tuple[RecogniserEntry, ...]
    seeds: tuple[SeedRuns, ...]
    fills: tuple[str, ...] = ()
    comparisons: tuple[Comparison, ...] = ()
    recoveries: tuple[Recovery, ...] = field(default=())
    resamples: int = 2000
    bootstrap_seed: int = 0
    level: float = 0.95
    batch_size: int = 128
    title: str = ""

    def pipelines(self) -> list[str]:
        """Every ``"<label> <condition>"`` evaluated, in table order."""
        return [f"{r.label} {c}" for r in self.recognisers for c in r.expanded_conditions(self.fills)]

    def needs_restorer(self) -> bool:
        """Whether some recogniser is evaluated on restored faces (or fills are asked for)."""
        return bool(self.fills) or any(set(RESTORER_CONDITIONS) & set(r.conditions) for r in self.recognisers)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-able data (absolute paths), as written beside the summary."""
        return {
            "split": str(self.split),
            "fills": list(self.fills),
            "resamples": self.resamples,
            "bootstrap_seed": self.bootstrap_seed,
            "level": self.level,
            "batch_size": self.batch_size,
            "title": self.title,
            "recognisers": [
                {
                    "label": r.label,
                    "conditions": list(r.conditions),
                    "reference": r.reference,
                    "restores": r.restores,
                    **(
                        {"max_occluded_fraction": r.max_occluded_fraction}
                        if r.max_occluded_fraction is not None
                        else {}
                    ),
                }
                for r in self.recognisers
            ],
            "seeds": [
                {
                    "seed": s.seed,
                    "restorer": None if s.restorer is None else str(s.restorer),
                    "runs": {k: str(v) for k, v in s.runs.items()},
                }
                for s in self.seeds
            ],
            "comparisons": [{"candidate": c.candidate, "baseline": c.baseline} for c in self.comparisons],
            "recoveries": [{"pipeline": r.pipeline, "reference": r.reference} for r in self.recoveries],
        }


def default_recoveries(recognisers: Sequence[RecogniserEntry], fills: Sequence[str]) -> tuple[Recovery, ...]:
    """Every restored pipeline against its recogniser's reference; a self-restoring one's ``occluded`` too."""
    found = []
    for r in recognisers:
        reference = r.reference or r.label
        if r.restores:
            found.append(Recovery(f"{r.label} occluded", reference))
        found += [Recovery(f"{r.label} {c}", reference) for c in r.expanded_conditions(fills) if c.startswith("rest")]
    return tuple(found)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be a mapping (key: value), not {type(value).__name__}.")
    return value


def _refuse_unknown(value: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; allowed: {list(allowed)}.")


def _path(value: Any, base: Path, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where} must be a path (a non-empty string).")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def _recogniser(value: Any, index: int) -> RecogniserEntry:
    where = f"recognisers[{index}]"
    value = _mapping(value, where)
    _refuse_unknown(value, ("label", "conditions", "reference", "restores", "max_occluded_fraction"), where)
    label = value.get("label")
    if not isinstance(label, str) or not label or any(c.isspace() for c in label):
        raise SpecError(f"{where}.label must be a name without spaces (e.g. R-clean), not {label!r}.")
    fraction = value.get("max_occluded_fraction")
    if fraction is not None and (
        isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 < fraction <= 1.0
    ):
        raise SpecError(f"{where} ({label}).max_occluded_fraction must be a share in (0, 1], not {fraction!r}.")
    default = BASE_CONDITIONS if fraction is None else ALL_CONDITIONS
    conditions = tuple(value.get("conditions", default))
    unknown = [c for c in conditions if c not in ALL_CONDITIONS]
    if unknown or not conditions or len(set(conditions)) != len(conditions):
        raise SpecError(f"{where} ({label}).conditions {list(conditions)}: give each of {list(ALL_CONDITIONS)} once.")
    if (SELECTIVE_CONDITION in conditions) != (fraction is not None):
        raise SpecError(
            f"{where} ({label}): the condition {SELECTIVE_CONDITION} and max_occluded_fraction go together (the "
            "largest predicted occluded share it restores, chosen on validation faces): give both or neither."
        )
    restores = bool(value.get("restores", False))
    reference = str(value.get("reference", "") or "")
    if restores and (not reference or reference == label):
        raise SpecError(
            f"{where} ({label}) restores or masks faces itself: name as reference another recogniser whose clean "
            "and occluded scores its recovery is set against (reference: R)."
        )
    return RecogniserEntry(label, conditions, reference, restores, None if fraction is None else float(fraction))


def _seed(value: Any, index: int, base: Path, labels: Sequence[str]) -> SeedRuns:
    where = f"seeds[{index}]"
    value = _mapping(value, where)
    _refuse_unknown(value, ("seed", "runs", "restorer"), where)
    seed = value.get("seed", index)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SpecError(f"{where}.seed must be an integer, not {seed!r}.")
    runs = _mapping(value.get("runs", {}), f"{where}.runs")
    missing = [label for label in labels if label not in runs]
    extra = [label for label in runs if label not in labels]
    if missing or extra:
        raise SpecError(
            f"{where}.runs must name a run folder for every recogniser: missing {missing}, unknown {extra} "
            f"(recognisers: {list(labels)})."
        )
    folders = {label: _path(runs[label], base, f"{where}.runs.{label}") for label in labels}
    restorer = value.get("restorer")
    return SeedRuns(seed, folders, None if restorer is None else _path(restorer, base, f"{where}.restorer"))


def _pipeline(value: Any, pipelines: Sequence[str], where: str) -> str:
    if value not in pipelines:
        raise SpecError(f"{where} is {value!r}, not one of the evaluated pipelines {list(pipelines)}.")
    return str(value)


def parse_spec(data: Mapping[str, Any], base: str | Path = ".") -> BenchmarkSpec:
    """Check a spec's contents and build a :class:`BenchmarkSpec`.

    Args:
        data: the spec as read from YAML or JSON.
        base: folder that relative paths are read from.

    Raises:
        SpecError: an unknown key, a missing or malformed entry, an unknown fill, condition, recogniser or pipeline.
    """
    base = Path(base)
    data = _mapping(data, "The spec")
    _refuse_unknown(data, _TOP_KEYS, "The spec")
    if "split" not in data:
        raise SpecError("The spec needs 'split': the folder written by mfer occlusion-split.")
    fills = tuple(data.get("fills") or ())
    unknown_fills = [f for f in fills if f not in TRIVIAL_FILLS]
    if unknown_fills or len(set(fills)) != len(fills):
        raise SpecError(f"fills {list(fills)}: give each once, from the trivial fills {list(TRIVIAL_FILLS)}.")
    raw_recognisers = data.get("recognisers") or []
    if not isinstance(raw_recognisers, list) or not raw_recognisers:
        raise SpecError("The spec needs 'recognisers': a list of {label: ..., conditions: [...]} entries.")
    recognisers = tuple(_recogniser(value, i) for i, value in enumerate(raw_recognisers))
    labels = [r.label for r in recognisers]
    if len(set(labels)) != len(labels):
        raise SpecError(f"Recogniser labels repeat: {labels}.")
    for r in recognisers:
        if r.reference and r.reference not in labels:
            raise SpecError(f"Recogniser {r.label}'s reference {r.reference!r} is none of the recognisers {labels}.")
    raw_seeds = data.get("seeds") or []
    if not isinstance(raw_seeds, list) or not raw_seeds:
        raise SpecError("The spec needs 'seeds': a list of {seed: N, runs: {label: folder}, restorer: folder}.")
    seeds = tuple(_seed(value, i, base, labels) for i, value in enumerate(raw_seeds))
    numbers = [s.seed for s in seeds]
    if len(set(numbers)) != len(numbers):
        raise SpecError(f"Seeds repeat: {numbers}.")
    resamples, level = data.get("resamples", 2000), data.get("level", 0.95)
    if not isinstance(resamples, int) or resamples < 1:
        raise SpecError(f"resamples must be a positive integer, not {resamples!r}.")
    if not isinstance(level, int | float) or not 0.0 < level < 1.0:
        raise SpecError(f"level must lie in (0, 1), not {level!r}.")
    batch_size = data.get("batch_size", 128)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SpecError(f"batch_size must be a positive integer, not {batch_size!r}.")
    spec = BenchmarkSpec(
        split=_path(data["split"], base, "split"),
        recognisers=recognisers,
        seeds=seeds,
        fills=fills,
        resamples=resamples,
        bootstrap_seed=int(data.get("bootstrap_seed", 0)),
        level=float(level),
        batch_size=batch_size,
        title=str(data.get("title", "") or ""),
    )
    pipelines = spec.pipelines()
    comparisons = []
    for i, value in enumerate(data.get("comparisons") or []):
        value = _mapping(value, f"comparisons[{i}]")
        _refuse_unknown(value, ("candidate", "baseline"), f"comparisons[{i}]")
        comparisons.append(
            Comparison(
                _pipeline(value.get("candidate"), pipelines, f"comparisons[{i}].candidate"),
                _pipeline(value.get("baseline"), pipelines, f"comparisons[{i}].baseline"),
            )
        )
    if "recoveries" in data:
        recoveries = []
        for i, value in enumerate(data.get("recoveries") or []):
            value = _mapping(value, f"recoveries[{i}]")
            _refuse_unknown(value, ("pipeline", "reference"), f"recoveries[{i}]")
            reference = value.get("reference")
            if reference not in labels:
                raise SpecError(f"recoveries[{i}].reference is {reference!r}, none of the recognisers {labels}.")
            for condition in ("clean", "occluded"):
                if f"{reference} {condition}" not in pipelines:
                    raise SpecError(f"recoveries[{i}]: the reference {reference} is not evaluated on {condition}.")
            recoveries.append(
                Recovery(_pipeline(value.get("pipeline"), pipelines, f"recoveries[{i}].pipeline"), reference)
            )
    else:
        recoveries = [
            r
            for r in default_recoveries(recognisers, fills)
            if f"{r.reference} clean" in pipelines and f"{r.reference} occluded" in pipelines
        ]
    return BenchmarkSpec(**{**spec.__dict__, "comparisons": tuple(comparisons), "recoveries": tuple(recoveries)})


def load_spec(path: str | Path) -> BenchmarkSpec:
    """Read a spec file (YAML or JSON); relative paths in it are read from its folder.

    Raises:
        FileNotFoundError: no such file.
        SpecError: the file is not valid YAML/JSON, or its contents are not a valid spec.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Occlusion-benchmark spec {path} does not exist (docs/occlusion.md, section 5).")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpecError(f"{path} is not valid YAML or JSON: {error}") from None
    return parse_spec(data or {}, path.resolve().parent)
