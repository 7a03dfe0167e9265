"""Test the fusion ablation's models on a second, larger cohort of SynthAffect subjects nobody trained on.

The quickstart's test split holds 12 subjects (576 samples). Differences between a fused and a single-modality
model of about 0.02 expression F1 or arousal CCC are within what another 12 subjects would change. This script
tests the finished runs of ``benchmarks/fusion_ablation.py`` (``--runs``) again on a second cohort: a SynthAffect
cache generated with another seed (``--cohort-seed``, default 1). Every subject of another seed is a new person
(subject traits come from the random stream ``(seed, 0, subject)``), so none of them was seen in training,
validation or model selection. The cohort has the quickstart's settings otherwise (60 subjects × 48 samples);
its split is 1 "training" and 1 validation subject, which nothing uses, and 58 test subjects (2784 samples).

For every seed and every finished run (single-modality runs of every length, ``single/<m>``,
``single_long/<m>``, ``single_x<f>/<m>``; ``fusion``, ``fusion_dropout``, ``fusion_from_singles`` and its
dropout twin), it runs ``mfer test`` of the run's best checkpoint (the one its ``run.json`` names) on the cohort,
which writes ``results-test-on-<cohort cache folder>.json`` (e.g. ``results-test-on-synthaffect_cohort1.json``) and
its per-sample predictions into the run folder (reused when present). It prints and writes
``cohort<seed>.md`` / ``cohort<seed>.json`` to ``--runs``: every condition's metrics (mean ± std over seeds) and the
fused models against the best single-modality model, chosen per seed and metric by its figure on the cohort (the
same strict rule as the ablation).

Only the default encoders are supported: the physiological feature branch standardises its features with
statistics of the training split of the cache it reads, which for the cohort would be one new subject.

Usage:
  python benchmarks/second_cohort.py --runs runs/fusion_ablation_v4 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fusion_ablation as ablation  # noqa: E402  (a sibling script, found through the line above)

from multimodal_fer.benchmarking.run_lookup import (  # noqa: E402
    best_checkpoint,
    best_score,
    has_results,
    is_finished,
    read_metrics,
    test_condition_name,
)

#: The cohort's split: every subject but two is a test subject.
COHORT_SPLIT = ("--data.init_args.val_subjects=1", "--data.init_args.test_subjects=58")
#: Fused runs tested when present, in table order.
FUSED_RUNS = ("fusion", "fusion_dropout", "fusion_from_singles", "fusion_from_singles_dropout")


def cohort_args(root: Path, seed: int) -> list[str]:
    """Data arguments that select the cohort's cache and split."""
    return [f"--data.init_args.root={root}", f"--data.init_args.seed={seed}", *COHORT_SPLIT]


def cohort_condition(root: Path) -> str:
    """The test condition of the cohort: ``test-on-<its cache folder>`` (the runs were fitted on another cache)."""
    return test_condition_name(cache=root)


def test_on_cohort(run: Path, modality: str | None, root: Path, cohort_seed: int) -> dict | None:
    """Metrics of ``run``'s best checkpoint on the cohort (None when the run has not finished)."""
    if not is_finished(run):
        return None
    condition = cohort_condition(root)
    if not has_results(run, condition):
        single = modality is not None
        ablation.mfer(
            [
                "test",
                *ablation.config_args(single=single),
                *([f"--data.init_args.modalities=[{modality}]"] if single else []),
                *cohort_args(root, cohort_seed),
                "--trainer.logger=false",
                f"--ckpt_path={best_checkpoint(run)}",
                *ablation.results_arguments(condition),
            ]
        )
    return read_metrics(run, condition)


def run_seed(folder: Path, root: Path, cohort_seed: int) -> dict[str, dict]:
    """Cohort metrics of every finished run of one seed: {condition: {metric: value}}."""
    results: dict[str, dict] = {}
    kinds = [path.name for path in folder.iterdir() if path.is_dir() and ablation.single_factor(path.name)]
    for kind in sorted(kinds, key=ablation.single_factor):
        for modality in ablation.MODALITIES:
            run = folder / kind / modality
            metrics = test_on_cohort(run, modality, root, cohort_seed)
            if metrics is not None:
                validation = best_score(run, ablation.VALIDATION_KEY)
                results[f"{kind}/{modality}"] = {**metrics, ablation.VALIDATION_KEY: validation}
    for name in FUSED_RUNS:
        metrics = test_on_cohort(folder / name, None, root, cohort_seed)
        if metrics is not None:
            results[name] = metrics
    return results


def summarise(per_seed: dict[int, dict[str, dict]]) -> dict:
    """Mean ± std of every condition present in all seeds, and each fused run against the best single model."""
    seeds = sorted(per_seed)
    conditions = [c for c in per_seed[seeds[0]] if all(c in per_seed[s] for s in seeds)]
    summary: dict[str, dict] = {"conditions": {}, "derived": {}}
    for condition in conditions:
        summary["conditions"][condition] = {
            metric: ablation.mean_std([per_seed[s][condition][metric] for s in seeds]) for metric in ablation.METRICS
        }
    singles = [c for c in conditions if ablation.is_single(c)]
    for name in (n for n in FUSED_RUNS if n in conditions):
        for metric in ablation.METRICS:
            best = [max(per_seed[s][c][metric] for c in singles) for s in seeds]
            fused = [per_seed[s][name][metric] for s in seeds]
            names = (f"best_single/{name}", f"{name}_minus_best_single", f"{name}_beats")
            ablation.compare(summary["derived"], metric, fused, best, names)
            summary["derived"][f"{name}_minus_best_single_per_seed/{metric}"] = [
                f - b for f, b in zip(fused, best, strict=True)
            ]
            chosen = [ablation.validation_chosen_singles(per_seed[s]) for s in seeds]
            if all(chosen):  # each modality's length chosen by its validation score
                best = [max(per_seed[s][c][metric] for c in kept) for s, kept in zip(seeds, chosen, strict=True)]
                names = (f"best_single_vc/{name}", f"{name}_minus_validation_chosen", f"{name}_beats_vc")
                ablation.compare(summary["derived"], metric, fused, best, names)
                summary["derived"][f"{name}_minus_validation_chosen_per_seed/{metric}"] = [
                    f - b for f, b in zip(fused, best, strict=True)
                ]
    return summary


def markdown(summary: dict, seeds: list[int], cohort_seed: int) -> str:
    """Tables: every condition on the cohort; each fused run against the best single model."""

    def cell(pair: tuple[float, float]) -> str:
        return f"{pair[0]:.3f} ± {pair[1]:.3f}"

    metrics = ablation.METRICS
    lines = [
        f"Second cohort: SynthAffect generation seed {cohort_seed}, 58 new test subjects (2784 samples); models of "
        f"seeds {', '.join(map(str, seeds))} (mean ± std over seeds).",
        "",
        "| model | " + " | ".join(metrics.values()) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for condition, values in summary["conditions"].items():
        lines.append(f"| {condition} | " + " | ".join(cell(values[m]) for m in metrics) + " |")
    derived = summary["derived"]
    singles = ", ".join(c for c in summary["conditions"] if ablation.is_single(c))
    for name in (n for n in FUSED_RUNS if f"{n}_minus_best_single/test/expr/f1_macro" in derived):
        lines += [
            "",
            f"{name} against the best single-modality model (of {singles}; chosen per seed and metric by its",
            "figure on this cohort):",
            "",
            "| metric | best single | fused − best single | per seed | seeds where fused wins |",
            "|---|---|---|---|---|",
        ]
        names = (f"best_single/{name}", f"{name}_minus_best_single", f"{name}_beats")
        lines += ablation.comparison_rows(derived, names, cell, per_seed=f"{name}_minus_best_single_per_seed")
        if f"{name}_minus_validation_chosen/test/expr/f1_macro" not in derived:
            continue
        lines += [
            "",
            f"{name} against the best single-modality model when each modality's length is chosen by its validation",
            "score (val/score), not by the figure on this cohort:",
            "",
            "| metric | best single | fused − best single | per seed | seeds where fused wins |",
            "|---|---|---|---|---|",
        ]
        names = (f"best_single_vc/{name}", f"{name}_minus_validation_chosen", f"{name}_beats_vc")
        lines += ablation.comparison_rows(derived, names, cell, per_seed=f"{name}_minus_validation_chosen_per_seed")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="an output folder of benchmarks/fusion_ablation.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cohort-seed", type=int, default=1, help="SynthAffect generation seed of the cohort (not 0)")
    parser.add_argument("--cohort-root", default=None, help="its cache (default data/synthaffect_cohort<seed>)")
    args = parser.parse_args()
    if args.cohort_seed == 0:
        raise SystemExit("--cohort-seed 0 is the training data's generation seed; choose another for new subjects.")
    runs = Path(args.runs).resolve()
    root = Path(args.cohort_root or f"data/synthaffect_cohort{args.cohort_seed}").resolve()
    ablation.mfer(["prepare", "--config", str(ablation.FER_CONFIG), *cohort_args(root, args.cohort_seed)])
    per_seed = {seed: run_seed(runs / f"seed{seed}", root, args.cohort_seed) for seed in args.seeds}
    summary = summarise(per_seed)
    table = markdown(summary, args.seeds, args.cohort_seed)
    print(table)
    (runs / f"cohort{args.cohort_seed}.json").write_text(json.dumps({"per_seed": per_seed, **summary}, indent=2))
    (runs / f"cohort{args.cohort_seed}.md").write_text(table)


if __name__ == "__main__":
    main()
