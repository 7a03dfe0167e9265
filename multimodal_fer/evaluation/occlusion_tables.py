"""Markdown tables of an occlusion benchmark's summary (``summary.md`` of ``mfer occlusion-benchmark``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from multimodal_fer.evaluation.occlusion_spec import ALL_CONDITIONS

_TITLES = {"expr/f1_macro": "Expression macro-F1", "au/f1_mean": "AU mean F1"}
_QUALITY = (
    ("restoration/psnr_occluded_input", "PSNR occl. input", 2),
    ("restoration/psnr_occluded", "PSNR occl. restored", 2),
    ("restoration/psnr_occluded_gain", "gain (dB)", 2),
    ("restoration/psnr_face_input", "PSNR face input", 2),
    ("restoration/psnr_face", "PSNR face restored", 2),
    ("restoration/ssim_face_input", "SSIM input", 3),
    ("restoration/ssim_face", "SSIM restored", 3),
    ("mask/iou", "mask IoU", 3),
)


def metric_title(metric: str) -> str:
    """``expr/f1_macro`` → ``Expression macro-F1``; ``va/ccc_arousal`` → ``CCC arousal``."""
    return _TITLES.get(metric, "CCC " + metric.removeprefix("va/ccc_"))


def _number(value: float, digits: int) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def score_cell(entry: dict[str, Any] | None, seeds: int, digits: int = 3) -> str:
    """``mean ± std [low, high]`` (no ± for one seed); ``–`` when not evaluated."""
    if entry is None:
        return "–"
    value = entry["mean"] if "mean" in entry else entry.get("share", entry.get("difference"))
    spread = f" ± {_number(entry['std'], digits)}" if seeds > 1 else ""
    return f"{_number(value, digits)}{spread} [{_number(entry['low'], digits)}, {_number(entry['high'], digits)}]"


def _quality_cell(entry: dict[str, Any] | None, digits: int) -> str:
    if entry is None:
        return "–"
    spread = f" ± {_number(entry['std'], digits)}" if entry["n"] > 1 else ""
    return f"{_number(entry['mean'], digits)}{spread}"


def _comparison_cell(entry: dict[str, Any], seeds: int) -> str:
    return f"{score_cell(entry, seeds)}, {entry['wins']:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table's lines, led by an empty line: the header, the rule, one line a row."""
    return [
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _metric_tables(summary: dict[str, Any], metric: str) -> list[str]:
    seeds = len(summary["seeds"])
    title = metric_title(metric)
    groups = summary["results"][metric]
    everything = groups["all"]
    recognisers, fills = summary["recognisers"], summary["fills"]
    lines = ["", f"## {title}", "", f"All {summary['faces']['all']} faces of the split, per condition:"]
    used = [c for c in ALL_CONDITIONS if any(c in r["conditions"] for r in recognisers)]
    lines += markdown_table(
        ["recogniser", *used],
        [
            [r["label"], *(score_cell(everything["scores"].get(f"{r['label']} {c}"), seeds) for c in used)]
            for r in recognisers
        ],
    )
    restoring = [r for r in recognisers if "restored" in r["conditions"] or "restored_true_mask" in r["conditions"]]
    if fills and restoring:
        lines += ["", f"{title} behind the same masks, by fill (generator = the restorer's own):"]
        rows = []
        for r in restoring:
            for masks, suffix in (("predicted", ""), ("true", "_true_mask")):
                if f"restored{suffix}" not in r["conditions"]:
                    continue
                cells = [everything["scores"].get(f"{r['label']} restored{suffix}")]
                cells += [everything["scores"].get(f"{r['label']} restored_{fill}{suffix}") for fill in fills]
                rows.append([r["label"], masks, *(score_cell(c, seeds) for c in cells)])
        lines += markdown_table(["recogniser", "masks", "generator", *fills], rows)
    if everything["recoveries"]:
        lines += [
            "",
            "Recovered share of the occlusion cost, (restored − occluded) / (clean − occluded) of the reference:",
        ]
        lines += markdown_table(
            ["pipeline", "reference", "share", "per seed", "undefined draws"],
            [
                [
                    pipeline,
                    entry["reference"],
                    score_cell(entry, seeds, 2),
                    ", ".join(_number(v, 2) for v in entry["per_seed"]),
                    str(entry["undefined_draws"]),
                ]
                for pipeline, entry in everything["recoveries"].items()
            ],
        )
    if everything["comparisons"]:
        lines += [
            "",
            "Paired differences, candidate − baseline (wins: share of draws in which the candidate is higher):",
        ]
        lines += markdown_table(
            ["candidate", "baseline", "difference", "wins"],
            [
                [entry["candidate"], entry["baseline"], score_cell(entry, seeds), f"{entry['wins']:.2f}"]
                for entry in everything["comparisons"].values()
            ],
        )
    kinds = [g for g in groups if g != "all"]
    for r in recognisers:
        conditions = [c for c in ALL_CONDITIONS if c in r["conditions"]]
        recovered = [p for p in everything["recoveries"] if p.startswith(f"{r['label']} ") and " restored_" not in p]
        lines += ["", f"{title} per occlusion kind, {r['label']}:"]
        lines += markdown_table(
            ["occlusion", "faces", *conditions, *(f"rec. {p.split(' ', 1)[1]}" for p in recovered)],
            [
                [
                    kind,
                    str(summary["faces"][kind]),
                    *(score_cell(groups[kind]["scores"].get(f"{r['label']} {c}"), seeds) for c in conditions),
                    *(score_cell(groups[kind]["recoveries"].get(p), seeds, 2) for p in recovered),
                ]
                for kind in kinds
            ],
        )
    if everything["comparisons"] and kinds:
        names = list(everything["comparisons"])
        lines += ["", f"{title} paired differences per occlusion kind (difference [interval], wins):"]
        lines += markdown_table(
            ["occlusion", *names],
            [
                [
                    kind,
                    *(_comparison_cell(groups[kind]["comparisons"][n], seeds) for n in names),
                ]
                for kind in kinds
            ],
        )
    return lines


def _selective_lines(selective: dict[str, Any]) -> list[str]:
    """The selective-restoration scan: the choosing metric by the largest predicted occluded share restored."""
    if not selective or not selective.get("recognisers"):
        return []
    labels = list(selective["recognisers"])
    lines = [
        "",
        "## Selective restoration",
        "",
        f"{metric_title(selective['metric'])} (mean over seeds) when only the faces whose predicted occluded share "
        "is at most the row's value are restored and the others read as they are (assembled face by face from the "
        "'occluded' and 'restored' conditions; 1 = 'restored'). Choose the share on validation faces and give it to "
        "the test spec as the recogniser's max_occluded_fraction: a share read off a test split's table is fitted "
        "to its faces. Best per recogniser: "
        + ", ".join(f"{label} {entry['best']:g}" for label, entry in selective["recognisers"].items())
        + ".",
    ]
    rows = []
    for index, fraction in enumerate(selective["fractions"]):
        cells = []
        for label in labels:
            entry = selective["recognisers"][label]
            cell = _number(entry["scores"][index], 3)
            cells.append(f"**{cell}**" if fraction == entry["best"] else cell)
        rows.append([f"{fraction:g}", _number(100 * selective["restored_faces"][index], 1), *cells])
    return lines + markdown_table(["largest share restored", "faces restored (%)", *labels], rows)


def _commit(git: dict[str, Any]) -> str:
    return (git.get("sha") or "unknown")[:7] + (" (uncommitted changes)" if git.get("dirty") else "")


def _describe(provenance: dict[str, Any]) -> str:
    machine = provenance.get("machine") or {}
    commit = _commit(provenance.get("git") or {})
    if provenance.get("git_at_write"):  # the checkout moved while it ran: the code was loaded at the first commit
        commit += f" (checked out by the time it wrote: {_commit(provenance['git_at_write'])})"
    device = machine.get("gpu") or f"{machine.get('cpu_model')}, {machine.get('cpu_count')} cores"
    command, time = provenance.get("command"), provenance.get("time")
    return f"`{command}` at commit {commit} on {device}, torch {machine.get('torch')}, {time}"


def _provenance_lines(summary: dict[str, Any]) -> list[str]:
    """Where the figures come from: each seed's evaluation and this summary (command, commit, machine, time)."""
    lines = []
    evaluated = summary.get("evaluated") or {}
    for seed, provenance in evaluated.items():
        if provenance:
            lines.append(f"Seed {seed} evaluated by {_describe(provenance)}.")
    if summary.get("summarised"):
        lines.append(f"Summarised by {_describe(summary['summarised'])}.")
    return lines


def markdown(summary: dict[str, Any]) -> str:
    """``summary.md``: headline, fill, recovery, comparison and per-kind tables per metric, then restoration quality."""
    seeds = summary["seeds"]
    level = int(round(100 * summary["level"]))
    lines = [
        f"# {summary['title'] or 'Occlusion benchmark'}",
        "",
        f"Occlusion split {summary['split']}: {summary['faces']['all']} faces, {summary['units']} bootstrap units; "
        f"seeds {', '.join(str(s) for s in seeds)}.",
        f"Cells: mean over seeds ± std over seeds [{level} % interval of the seed mean over {summary['resamples']} "
        f"draws of the test units, bootstrap seed {summary['bootstrap_seed']}; one draw shared by every seed, "
        "recogniser, condition and kind].",
        summary["unit_note"],
        "'restored' = the restorer's generator behind its predicted masks (blind); 'restored_true_mask' = behind the "
        "true masks; 'restored_<fill>' = a trivial fill behind the same masks; 'clean_restored' = the clean faces "
        "through the blind restorer.",
        *_provenance_lines(summary),
    ]
    for metric in summary["metrics"]:
        lines += _metric_tables(summary, metric)
    lines += _selective_lines(summary.get("selective") or {})
    quality = summary["restoration"]
    if quality:
        lines += [
            "",
            "## Restoration quality",
            "",
            "Blind (predicted masks); PSNR in dB over the occluded region and the whole face, SSIM over the whole "
            "face; input = the occluded face itself; mean ± std over seeds.",
        ]
        lines += markdown_table(
            ["occlusion", *(title for _, title, _ in _QUALITY)],
            [[g, *(_quality_cell(q.get(k), d) for k, _, d in _QUALITY)] for g, q in quality.items()],
        )
        fills = summary["fills"]
        if fills:
            lines += ["", "PSNR (dB) over the occluded region and whole-face SSIM by fill, behind the same masks:"]
            lines += markdown_table(
                ["occlusion", "generator", *fills, "SSIM generator", *(f"SSIM {f}" for f in fills)],
                [
                    [
                        g,
                        _quality_cell(q.get("restoration/psnr_occluded"), 2),
                        *(_quality_cell(q.get(f"fill/{f}/restoration/psnr_occluded"), 2) for f in fills),
                        _quality_cell(q.get("restoration/ssim_face"), 3),
                        *(_quality_cell(q.get(f"fill/{f}/restoration/ssim_face"), 3) for f in fills),
                    ]
                    for g, q in quality.items()
                ],
            )
    return "\n".join(lines) + "\n"
