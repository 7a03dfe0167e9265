"""Issue 18's three measurable claims, read off an occlusion benchmark's ``summary.json``.

``benchmarks/occlusion_restoration.py`` writes ``summary.json`` with every score, recovery share and paired
difference (:mod:`multimodal_fer.evaluation.occlusion_benchmark`); its ``summary.md`` prints all of them, hundreds of
rows. This script answers the three questions the issue asks of them, each with its figures and intervals, so that
the answer is a command's output, not a reading of a large table:

1. Does blind restoration win back at least half of what occlusion costs the clean-face recogniser (R-clean; the
   share of the seed means), overall and per kind, and does the generator beat every trivial fill behind the same
   masks (paired difference above zero)?
2. Which pipeline reads occluded faces best: the best pipeline with restoration against the occlusion-robust
   recognisers without it (R-aug, R-occ, R+mask, R-aug+, R-mask+), overall and per kind, with clean-face scores?
3. Does restoration cost nothing on unoccluded faces (every clean-face difference within the seed spread, the std
   over seeds, of the reference recogniser's clean-face score)?

The fourth claim (the benchmark runs on any prepared face data set) is a property of the code, tested in
``tests/test_benchmark_scripts.py`` and ``tests/test_occlusion_benchmark.py``, not a figure of a summary.

Usage:
  python benchmarks/occlusion_verdict.py benchmarks/results/occlusion-reader/summary.json
  python benchmarks/occlusion_verdict.py runs/occlusion-benchmark-reader/summary.json --output verdict.md
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multimodal_fer.evaluation.occlusion_tables import markdown_table

#: The clean-face recogniser of claim 1: its own recovery share and its generator-against-fill differences.
CLEAN_RECOGNISER = "R-clean"
#: Every recogniser trained on clean faces only whose recovery share claim 1 shows beside R-clean's (when evaluated).
CLEAN_TRAINED = ("R-clean", "R-clean′", "R-clean+")
#: The occlusion-robust recognisers without restoration that claim 2 sets the restoring pipelines against.
ROBUST_BASELINES = ("R-aug", "R-occ", "R+mask", "R-aug+", "R-mask+")
#: Claim 1's bar: the share of the occlusion cost won back.
HALF = 0.5
METRIC = "expr/f1_macro"
VERDICT_MD = "verdict.md"


@dataclass(frozen=True)
class Claim:
    """One claim's answer: whether it holds and the markdown lines that show why."""

    title: str
    holds: bool
    lines: tuple[str, ...]


def _number(value: float | None, digits: int = 3) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:+.{digits}f}".lstrip("+")


def _signed(value: float, digits: int = 3) -> str:
    return "nan" if math.isnan(value) else f"{value:+.{digits}f}"


def _cell(entry: dict[str, Any] | None, digits: int = 3, signed: bool = False) -> str:
    """``value [low, high]`` of a score, share or difference entry; ``–`` when absent."""
    if entry is None:
        return "–"
    value = entry.get("mean", entry.get("share", entry.get("difference")))
    shown = _signed(value, digits) if signed else _number(value, digits)
    return f"{shown} [{_number(entry['low'], digits)}, {_number(entry['high'], digits)}]"


def _kinds(summary: dict[str, Any], metric: str) -> list[str]:
    return [kind for kind in summary["results"][metric] if kind != "all"]


def recovery_claim(summary: dict[str, Any], metric: str = METRIC, recogniser: str = CLEAN_RECOGNISER) -> Claim:
    """Claim 1: ``recogniser``'s blind restoration wins back at least half the occlusion cost and beats every fill.

    Holds when the share of the seed means is at least :data:`HALF` and every "restored vs restored_<fill>"
    difference of ``recogniser`` is above zero; the lines also show the share of every recogniser of
    :data:`CLEAN_TRAINED`, overall and per kind.
    """
    groups = summary["results"][metric]
    everything = groups["all"]
    pipeline = f"{recogniser} restored"
    if pipeline not in everything["recoveries"]:
        raise KeyError(f"{pipeline!r} has no recovery share in this summary: was {recogniser} evaluated on 'restored'?")
    share = everything["recoveries"][pipeline]
    fills = [
        f for f in summary.get("fills", []) if f"{pipeline} vs {recogniser} restored_{f}" in everything["comparisons"]
    ]
    fill_differences = {f: everything["comparisons"][f"{pipeline} vs {recogniser} restored_{f}"] for f in fills}
    beats_fills = all(entry["difference"] > 0 for entry in fill_differences.values())
    holds = share["share"] >= HALF and beats_fills and bool(fills)
    shares = {
        label: everything["recoveries"][f"{label} restored"]
        for label in dict.fromkeys((recogniser, *CLEAN_TRAINED))
        if f"{label} restored" in everything["recoveries"]
    }
    lines = [
        f"{recogniser}'s blind restoration wins back {_number(share['share'], 2)} "
        f"[{_number(share['low'], 2)}, {_number(share['high'], 2)}] of what occlusion costs it (the bar: {HALF}); "
        f"per seed {', '.join(_number(v, 2) for v in share['per_seed'])}.",
    ]
    kinds = _kinds(summary, metric)
    lines += markdown_table(
        ["occlusion", *(f"{label} share" for label in shares)],
        [["all", *(_cell(e, 2) for e in shares.values())]]
        + [
            [kind, *(_cell(groups[kind]["recoveries"].get(f"{label} restored"), 2) for label in shares)]
            for kind in kinds
        ],
    )
    if fills:
        lines += ["", f"The generator against each trivial fill behind the same predicted masks, {recogniser} reading:"]
        lines += markdown_table(
            ["fill", "generator − fill", "draws the generator wins"],
            [[fill, _cell(entry, signed=True), f"{entry['wins']:.2f}"] for fill, entry in fill_differences.items()],
        )
    else:
        lines += ["", "No trivial fill was evaluated (the benchmark's --fills): the second half cannot be judged."]
    return Claim("1. Blind restoration wins back at least half of what occlusion costs", holds, tuple(lines))


def _label_of(pipeline: str) -> str:
    return pipeline.rsplit(" ", 1)[0]


def best_pipeline_claim(
    summary: dict[str, Any], metric: str = METRIC, baselines: tuple[str, ...] = ROBUST_BASELINES
) -> Claim:
    """Claim 2: the best pipeline with restoration against the occlusion-robust recognisers, overall and per kind.

    The candidates are every pipeline compared with one of ``baselines`` on occluded faces; the best is the one with
    the highest mean score on all faces. The claim "holds" when that pipeline scores above every baseline evaluated
    (the answer the issue asks for either way: which face path wins).
    """
    groups = summary["results"][metric]
    everything = groups["all"]
    robust = [f"{b} occluded" for b in baselines if f"{b} occluded" in everything["scores"]]
    if not robust:
        raise KeyError(f"none of {', '.join(baselines)} was evaluated on occluded faces in this summary")
    candidates = list(
        dict.fromkeys(
            entry["candidate"]
            for entry in everything["comparisons"].values()
            if entry["baseline"] in robust and entry["candidate"] not in robust
        )
    )
    if not candidates:
        raise KeyError("no pipeline with restoration is compared with the occlusion-robust recognisers")
    best = max(candidates, key=lambda c: everything["scores"][c]["mean"])
    strongest = max(robust, key=lambda b: everything["scores"][b]["mean"])
    holds = all(everything["scores"][best]["mean"] > everything["scores"][b]["mean"] for b in robust)
    winner = best if holds else strongest
    lines = [
        f"Best pipeline with restoration on occluded faces: **{best}**; strongest without: **{strongest}**. "
        f"Highest of all: **{winner}**. (The best of {len(candidates)} pipelines is picked on these very faces, "
        "so its lead over a fixed baseline is a little optimistic; the intervals do not include that choice.)",
        "",
        "Every candidate and baseline on all faces of the split (occluded, and the same recogniser on clean faces):",
    ]
    rows = []
    for pipeline in sorted(candidates + robust, key=lambda p: -everything["scores"][p]["mean"]):
        clean = everything["scores"].get(f"{_label_of(pipeline)} clean")
        rows.append(
            [
                pipeline,
                "with" if pipeline in candidates else "without",
                _cell(everything["scores"][pipeline]),
                _cell(clean),
            ]
        )
    lines += markdown_table(["pipeline", "restoration", "occluded faces", "its recogniser on clean faces"], rows)
    lines += ["", f"{best} − each baseline (difference [interval], share of draws it wins), all faces and per kind:"]
    kinds = ["all", *_kinds(summary, metric)]
    rows = []
    for kind in kinds:
        comparisons = groups[kind]["comparisons"]
        cells = []
        for baseline in robust:
            entry = comparisons.get(f"{best} vs {baseline}")
            cells.append("–" if entry is None else f"{_cell(entry, signed=True)}, {entry['wins']:.2f}")
        rows.append([kind, _cell(groups[kind]["scores"].get(best)), *cells])
    lines += markdown_table(["occlusion", best, *(f"− {b}" for b in robust)], rows)
    per_kind = []
    for kind in kinds[1:]:
        scores = groups[kind]["scores"]
        present = [p for p in candidates + robust if p in scores]  # a kind may lack a pipeline's condition
        if present:
            top = max(present, key=lambda p: scores[p]["mean"])
            per_kind.append(f"{kind}: {top} ({_number(scores[top]['mean'])})")
    lines += ["", "Highest per kind: " + "; ".join(per_kind) + "."]
    return Claim(
        "2. A pipeline with restoration reads occluded faces better than every occlusion-robust one",
        holds,
        tuple(lines),
    )


def clean_cost_claim(summary: dict[str, Any], metric: str = METRIC) -> Claim:
    """Claim 3: every clean-face difference that restoration makes lies within its reference's seed spread.

    The differences are "X clean_restored vs X clean" (X's clean faces through the blind restorer) and "P clean vs R
    clean" (a pipeline that restores itself against the recogniser it was built from); the spread is the std over
    seeds of the baseline's clean-face score. Holds when every |difference| is at most its spread.
    """
    everything = summary["results"][metric]["all"]
    rows, holds = [], True
    pairs = [e for e in everything["comparisons"].values() if e["baseline"].endswith(" clean")]
    if not pairs:
        raise KeyError("no clean-face comparison in this summary: was 'clean_restored' evaluated?")
    for entry in pairs:
        spread = everything["scores"][entry["baseline"]]["std"]
        within = abs(entry["difference"]) <= spread
        holds &= within
        rows.append(
            [
                entry["candidate"],
                entry["baseline"],
                _cell(entry, signed=True),
                _number(spread),
                "yes" if within else "**no**",
            ]
        )
    lines = ["Clean faces through restoration against the same faces read directly:"]
    lines += markdown_table(
        ["with restoration", "without", "difference", "baseline's seed spread (std)", "within"], rows
    )
    return Claim("3. Restoration costs nothing on unoccluded faces", holds, tuple(lines))


def verdict_markdown(summary: dict[str, Any], metric: str = METRIC, source: str = "summary.json") -> str:
    """The three claims' answers as markdown, headed by where the summary comes from."""
    claims = [recovery_claim(summary, metric), best_pipeline_claim(summary, metric), clean_cost_claim(summary, metric)]
    seeds = ", ".join(str(s) for s in summary["seeds"])
    level = int(round(100 * summary["level"]))
    lines = [
        "# Issue 18's claims, read off the occlusion benchmark",
        "",
        f"From `{source}`: {summary['faces']['all']} faces of the occlusion split, seeds {seeds}, metric `{metric}` "
        f"(mean of the seeds [{level} % interval over {summary['resamples']} draws of the {summary['units']} test "
        f"subjects]). Written by `python benchmarks/occlusion_verdict.py {source}`.",
        "",
        "| claim | holds |",
        "|---|---|",
        *(f"| {claim.title} | {'yes' if claim.holds else '**no**'} |" for claim in claims),
    ]
    for claim in claims:
        lines += ["", f"## {claim.title}", "", *claim.lines]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summary", type=Path, help="an occlusion benchmark's summary.json")
    parser.add_argument("--metric", default=METRIC, help=f"the metric judged (default {METRIC})")
    parser.add_argument("--output", type=Path, default=None, help="write the markdown here instead of printing it")
    args = parser.parse_args()
    summary = json.loads(args.summary.read_text())
    if args.metric not in summary["results"]:
        parser.error(f"{args.metric} is not in {args.summary}; it has {', '.join(summary['results'])}")
    text = verdict_markdown(summary, args.metric, str(args.summary))
    if args.output:
        args.output.write_text(text)
        print(f"[verdict] {args.output}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
