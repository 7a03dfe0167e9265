"""Linear probes over a suite's single-modality runs, and their tables (``mfer probe``).

For every seed of a suite folder (:func:`~multimodal_fer.evaluation.probe_features.single_modality_runs`), the
features of that seed's single-modality runs are computed and joined sample by sample, and the probes of
:mod:`~multimodal_fer.evaluation.feature_probes` are fitted on each modality subset. A probe on one modality shows
what its encoder's features hold; a probe on several shows what combining the same fixed features can add without
training any encoder further. The gap between the best single modality's probe and the probe on every modality is
the complementary information a fusion of these encoders could exploit (its "headroom").

Tables: every subset's mean ± sample std over seeds, and the all-modality probe minus the best single probe (chosen
per seed and score), as Markdown and JSON.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from multimodal_fer.evaluation.feature_probes import (
    EXPRESSION_SCORE,
    LOGISTIC_CS,
    RIDGE_ALPHAS,
    ProbeError,
    default_subsets,
    probe_subset,
    subset_name,
)
from multimodal_fer.evaluation.probe_features import extract_features, merge_modalities, single_modality_runs

#: File names of the tables in the output folder.
MARKDOWN_NAME, JSON_NAME = "probes.md", "probes.json"

#: Scores of one seed: subset name → score key → test score.
SeedScores = dict[str, dict[str, float]]


def score_title(key: str) -> str:
    """``expr_f1`` → ``expr F1``; ``ccc_arousal`` → ``CCC arousal``."""
    return "expr F1" if key == EXPRESSION_SCORE else "CCC " + key.removeprefix("ccc_")


def parse_subset(text: str) -> tuple[str, ...]:
    """``face+audio`` → ``("face", "audio")``.

    Raises:
        ProbeError: an empty name or a repeated modality.
    """
    parts = tuple(part.strip() for part in text.split("+"))
    if not all(parts) or len(set(parts)) != len(parts):
        raise ProbeError(f"Modality subset {text!r}: give modalities joined by '+', each once (face+audio).")
    return parts


def probe_suite(
    suite: str | Path,
    subsets: Sequence[Sequence[str]] | None = None,
    overrides: Sequence[str] = (),
    cells: str | None = None,
    report: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Fit the probes on every seed of a suite folder and summarise them (see :func:`summarise`).

    Args:
        suite: the suite folder (``runs/suites/fusion-singles``).
        subsets: modality subsets to probe; None: :func:`~multimodal_fer.evaluation.feature_probes.default_subsets`
            of the modalities every seed has.
        overrides: settings applied after each run's config (``--data.init_args.root=...``).
        cells: a shell pattern the run folders' names must match (None: all).
        report: receives one progress line per run and seed.

    Returns:
        :func:`summarise`'s summary, plus ``suite`` (the folder) and ``runs`` (seed → modality → run folder name).

    Raises:
        ProbeError: see :func:`single_modality_runs`; seeds with different modalities; a subset naming a modality
            no seed's runs have.
    """
    runs = single_modality_runs(suite, cells)
    modalities = {seed: tuple(found) for seed, found in runs.items()}
    if len(set(modalities.values())) > 1:
        listed = "; ".join(f"seed {s}: {'+'.join(m)}" for s, m in modalities.items())
        raise ProbeError(f"The seeds of {suite} have runs of different modalities ({listed}); finish the suite first.")
    available = next(iter(modalities.values()))
    chosen = [tuple(s) for s in subsets] if subsets else default_subsets(available)
    for subset in chosen:
        if not subset or not set(subset) <= set(available):
            raise ProbeError(
                f"Subset {subset_name(subset) or '(empty)'} needs runs of modalities the suite lacks; it has "
                f"single-modality runs of {', '.join(available)}."
            )
    per_seed: dict[int, SeedScores] = {}
    for seed, found in runs.items():
        features = {}
        for modality, folder in found.items():
            report(f"[probe] seed {seed}: {modality} features of {folder}")
            features[modality] = extract_features(folder, overrides)
        splits = merge_modalities(features)
        per_seed[seed] = {subset_name(subset): probe_subset(splits, subset) for subset in chosen}
        report(f"[probe] seed {seed}: {json.dumps(per_seed[seed])}")
    first = next(iter(per_seed.values()))
    keys = list(next(iter(first.values())))
    summary = summarise(per_seed, chosen, keys)
    summary["suite"] = str(suite)
    summary["runs"] = {str(seed): {m: folder.name for m, folder in found.items()} for seed, found in runs.items()}
    return summary


def _stats(values: dict[str, float]) -> dict[str, Any]:
    """Mean, sample std (None for fewer than two) and count of the finite values, and every value (NaN → None)."""
    finite = [v for v in values.values() if math.isfinite(v)]
    return {
        "mean": statistics.fmean(finite) if finite else None,
        "std": statistics.stdev(finite) if len(finite) > 1 else None,
        "n": len(finite),
        "per_seed": {seed: v if math.isfinite(v) else None for seed, v in values.items()},
    }


def summarise(per_seed: dict[int, SeedScores], subsets: Sequence[Sequence[str]], keys: Sequence[str]) -> dict[str, Any]:
    """Mean ± std over seeds of every subset's scores, and the all-modality probe's gain over the best single one.

    Args:
        per_seed: seed → subset name → score key → test score.
        subsets: the subsets probed, in table order.
        keys: the score keys (:func:`~multimodal_fer.evaluation.feature_probes.score_keys`).

    Returns:
        ``{"seeds", "scores", "subsets": {name: {key: {mean, std, n, per_seed}}}, "gain", "settings"}``: means and
        sample stds over the seeds whose score is finite (undefined scores are None in ``per_seed``). ``gain``
        (``{"subset", "over", "scores": {key: {mean, std, n, per_seed, seeds_higher}}}``: the largest subset
        minus the best single-modality subset, per seed) is present when the largest subset contains every
        single-modality subset probed.
    """
    seeds = sorted(per_seed)
    table: dict[str, dict[str, Any]] = {}
    for subset in subsets:
        name = subset_name(subset)
        table[name] = {}
        for key in keys:
            values = {str(s): per_seed[s][name][key] for s in seeds}
            table[name][key] = _stats(values)
    summary: dict[str, Any] = {
        "seeds": seeds,
        "scores": list(keys),
        "subsets": table,
        "settings": {"ridge_alphas": list(RIDGE_ALPHAS), "logistic_cs": list(LOGISTIC_CS)},
    }
    singles = [subset_name(s) for s in subsets if len(s) == 1]
    largest = max(subsets, key=len)
    if singles and len(largest) > 1 and {s[0] for s in subsets if len(s) == 1} <= set(largest):
        every = subset_name(largest)
        gain: dict[str, Any] = {}
        for key in keys:
            gains = {}
            for s in seeds:
                best = max((per_seed[s][m][key] for m in singles), key=lambda v: v if math.isfinite(v) else -math.inf)
                gains[str(s)] = per_seed[s][every][key] - best
            higher = sum(1 for g in gains.values() if math.isfinite(g) and g > 0)
            gain[key] = {**_stats(gains), "seeds_higher": higher}
        summary["gain"] = {"subset": every, "over": singles, "scores": gain}
    return summary


def _cell(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        return "n/a"
    return f"{entry['mean']:.3f}" + (f" ± {entry['std']:.3f}" if entry["std"] is not None else "")


def markdown(summary: dict[str, Any]) -> str:
    """The summary as two Markdown tables: subsets × scores, and the gain of all modalities over the best single."""
    keys, seeds = summary["scores"], summary["seeds"]
    where = f" of `{summary['suite']}`" if "suite" in summary else ""
    lines = [
        f"Linear probes on fixed single-modality features{where}, {len(seeds)} seed(s) (mean ± std), test split.",
        "",
        "| features | " + " | ".join(score_title(k) for k in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for name, scores in summary["subsets"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(scores[k]) for k in keys) + " |")
    gain = summary.get("gain")
    if gain is not None:
        lines += [
            "",
            f"| score | {gain['subset']} − best single (per seed) | seeds where {gain['subset']} is higher |",
            "|---|---|---|",
        ]
        for key in keys:
            entry = gain["scores"][key]
            lines.append(f"| {score_title(key)} | {_cell(entry)} | {entry['seeds_higher']}/{len(seeds)} |")
    return "\n".join(lines) + "\n"


def write_tables(summary: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """Write ``probes.md`` and ``probes.json`` into ``out`` (created if need be); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text, data = out / MARKDOWN_NAME, out / JSON_NAME
    text.write_text(markdown(summary))
    data.write_text(json.dumps(summary, indent=2))
    return text, data
