"""How sure is "fusion beats the best single modality"? A paired bootstrap over the test subjects.

``benchmarks/fusion_ablation.py`` and ``benchmarks/second_cohort.py`` report, per seed, the fused model minus the
best single-modality model on one set of test subjects. This script asks how much those differences would move
with other subjects: it draws the test subjects again with replacement (``--resamples`` draws, the same draws for
every model and seed), scores every model on each draw, and reports for each seed the difference's 95 % interval
and the share of draws the fused model wins, and the same for the mean over seeds
(:mod:`multimodal_fer.evaluation.subject_bootstrap`).

On each draw the baseline is the best single-modality model on that draw, by the figure compared: of every
length (``single``, ``single_long``, ``single_x<f>``) and modality, the strict rule of the ablation; and, second,
of the lengths chosen per modality by validation score.

For every finished run of ``--runs`` (seeds ``--seeds``) and every test set it takes the per-sample predictions
of the run's results file of that test (``results-test.json``, ``results-test-on-<cohort cache>.json``,
``results-test-withheld-<m>.json``: ``results-<condition>.predictions.npz`` in the run folder, which
``fusion_ablation.py`` and ``second_cohort.py`` write). Where that test has no results file yet, it runs ``mfer
test`` of the run's best checkpoint (the one ``run.json`` names) with the ablation's configs (give the same
``--overlay`` / ``--fused-overlay``), which writes it with its predictions. Where the results file has no
predictions (runs tested without ``--results.predictions=true``), it tests again into
``results-<condition>-retest.json`` (condition ``<condition>-retest``, so ``mfer report`` does not see two results of
one condition), and the re-test must reproduce the run's own file to 1e-4. In every case the metrics recomputed from
the predictions must equal their results file's; otherwise the script stops.

With ``--robustness`` it also asks the second question of the ablation the same way: for each fused model and
its twin trained with modality dropout (``fusion`` / ``fusion_dropout``, and ``fusion_from_singles`` /
``fusion_from_singles_dropout`` where finished), tested with every modality and with each one withheld, how much
more the plain model loses than the dropout model, with the interval of that difference over the same draws
(``subject_bootstrap_robustness.md``; the withheld tests are those the ablation wrote,
``results-test-withheld-<m>.json``, run here where missing).

Test sets: the quickstart's 12 test subjects (``--data-root``), and with ``--cohort-root`` also the 58 subjects of
the second cohort of ``benchmarks/second_cohort.py`` (run that first; its cache and results are reused).

Usage:
  python benchmarks/subject_bootstrap.py --runs runs/fusion_ablation_v6_nonface --seeds 0 1 2 3 4 \\
      --data-root data/synthaffect --cohort-root data/synthaffect_cohort1 \
      --fused-overlay configs/overlays/modality_dropout_non_face.yaml [--robustness]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fusion_ablation as ablation  # noqa: E402  (sibling scripts, found through the line above)
import second_cohort as cohort  # noqa: E402

from multimodal_fer.benchmarking.run_lookup import (  # noqa: E402
    best_checkpoint,
    best_score,
    has_results,
    is_finished,
    predictions_file,
    read_metrics,
    test_condition_name,
)
from multimodal_fer.cli import main as mfer_main  # noqa: E402
from multimodal_fer.evaluation import (  # noqa: E402
    SamplePredictions,
    metric_value,
    paired_loss_bootstrap,
    paired_subject_bootstrap,
)

#: Metrics bootstrapped: the two the fusion bar names.
METRICS = {"expr/f1_macro": "expr F1", "va/ccc_arousal": "CCC arousal"}
#: Largest difference allowed between a re-test and the run's own results file.
TOLERANCE = 1e-4
#: Appended to a condition whose results file has no predictions: the condition of the re-test that writes them.
RETEST_SUFFIX = "-retest"


def test_set_args(test_set: str, data_root: Path, cohort_root: Path | None, cohort_seed: int) -> list[str]:
    """Data arguments of a test set: ``"test"`` (the run's own split) or ``"cohort"``."""
    if test_set == "test":
        return [f"--data.init_args.root={data_root}"]
    assert cohort_root is not None
    return cohort.cohort_args(cohort_root, cohort_seed)


def test_set_condition(test_set: str, cohort_root: Path | None, withheld: str | None = None) -> str:
    """The results condition of a test set (``"test"`` or ``"cohort"``), with ``withheld`` withheld."""
    cache = None
    if test_set != "test":
        assert cohort_root is not None
        cache = cohort_root
    return test_condition_name([withheld] if withheld else [], cache=cache)


def predictions_of(
    run: Path,
    modality: str | None,
    condition: str,
    data_args: list[str],
    withheld: str | None = None,
) -> SamplePredictions:
    """The per-sample predictions of ``run``'s best checkpoint under a test condition, checked against its results.

    ``modality`` names a single-modality run's modality (None for a fused run); ``condition`` is the test's results
    condition (:func:`test_set_condition`), ``data_args`` its data arguments and ``withheld`` a modality the test
    withholds. The predictions of ``results-<condition>.json`` are used where it has them; a missing results file is
    written by a test here; one without predictions is tested again (``<condition>-retest``), and the re-test must
    reproduce it. The metrics recomputed from the predictions must equal their results file's.
    """
    own = read_metrics(run, condition) if has_results(run, condition) else None
    source = condition
    if own is None or predictions_file(run, condition) is None:
        if own is not None:
            source = condition + RETEST_SUFFIX
        if not has_results(run, source):
            mfer_main(
                [
                    "test",
                    *ablation.config_args(single=modality is not None),
                    *([f"--data.init_args.modalities=[{modality}]"] if modality else []),
                    *data_args,
                    *([f"--data.init_args.withheld_modalities=[{withheld}]"] if withheld else []),
                    "--trainer.logger=false",
                    f"--ckpt_path={best_checkpoint(run)}",
                    *ablation.results_arguments(source),
                ]
            )
    path = predictions_file(run, source)
    if path is None:
        raise RuntimeError(f"{run}: results-{source}.json names no predictions file; move it away to test again.")
    again = read_metrics(run, source)
    predictions = SamplePredictions.load(path)
    for metric in METRICS:
        key = f"test/{metric}"
        recomputed = metric_value(predictions, metric)
        before = again[key] if own is None else own[key]
        if abs(again[key] - before) > TOLERANCE or abs(recomputed - again[key]) > TOLERANCE:
            raise RuntimeError(
                f"{run}: {key} is {before:.5f} in results-{condition}.json, {again[key]:.5f} in results-{source}.json "
                f"and {recomputed:.5f} from the predictions; the checkpoint, its config or the cache changed since "
                "the run."
            )
    return predictions


def seed_models(folder: Path, fused: str) -> tuple[Path, dict[str, Path], list[str]]:
    """The fused run, every finished single run by condition, and the validation-chosen conditions."""
    singles: dict[str, Path] = {}
    conditions: dict[str, dict] = {}
    kinds = [path.name for path in folder.iterdir() if path.is_dir() and ablation.single_factor(path.name)]
    for kind in sorted(kinds, key=ablation.single_factor):
        for modality in ablation.MODALITIES:
            run = folder / kind / modality
            if is_finished(run):
                singles[f"{kind}/{modality}"] = run
                score = best_score(run, ablation.VALIDATION_KEY)
                conditions[f"{kind}/{modality}"] = {ablation.VALIDATION_KEY: score}
    if not is_finished(folder / fused):
        raise SystemExit(f"{folder / fused} has not finished; run benchmarks/fusion_ablation.py first.")
    return folder / fused, singles, ablation.validation_chosen_singles(conditions)


def bootstrap_test_set(
    runs: Path, seeds: list[int], fused: str, condition: str, data_args: list[str], resamples: int
) -> dict:
    """Observed and bootstrapped differences on one test set, for both baselines and both metrics."""
    strict, chosen = [], []
    for seed in seeds:
        run, singles, kept = seed_models(runs / f"seed{seed}", fused)
        candidate = predictions_of(run, None, condition, data_args)
        baselines = {c: predictions_of(path, c.split("/")[1], condition, data_args) for c, path in singles.items()}
        strict.append((candidate, list(baselines.values())))
        chosen.append((candidate, [baselines[c] for c in kept]))
    report: dict = {}
    for baseline, comparisons in (("best_single", strict), ("validation_chosen", chosen)):
        for metric in METRICS:
            result = paired_subject_bootstrap(comparisons, metric, resamples=resamples, seed=0)
            report[f"{baseline}/{metric}"] = {
                "subjects": result.subjects,
                "observed": result.observed.tolist(),
                "interval95": result.interval().tolist(),
                "win_fraction": result.win_fraction().tolist(),
                "mean_observed": float(result.observed.mean()),
                "mean_interval95": list(result.mean_interval()),
                "mean_win_fraction": result.mean_win_fraction(),
            }
    return report


def robustness_test_set(
    runs: Path, seeds: list[int], test_set: str, data_args: list[str], cohort_root: Path | None, resamples: int
) -> dict:
    """How much more each plain fused model loses per withheld modality than its modality-dropout twin.

    Covers the ablation's dropout pairs that finished in every seed, bootstrapped over the test subjects.
    """
    pairs = {**ablation.DROPOUT_PAIRS, "fusion_from_singles": "fusion_from_singles_dropout"}
    folders = [runs / f"seed{seed}" for seed in seeds]
    report: dict = {}
    for plain, robust in pairs.items():
        if not all(is_finished(folder / name) for folder in folders for name in (plain, robust)):
            continue
        for modality in ablation.MODALITIES:
            comparisons = [
                tuple(
                    predictions_of(
                        folder / name, None, test_set_condition(test_set, cohort_root, withheld), data_args, withheld
                    )
                    for name in (plain, robust)
                    for withheld in (None, modality)
                )
                for folder in folders
            ]
            for metric in METRICS:
                result = paired_loss_bootstrap(comparisons, metric, resamples=resamples, seed=0)
                values = [[metric_value(model, metric) for model in comparison] for comparison in comparisons]
                report[f"{plain}|{robust}/{modality}/{metric}"] = {
                    "subjects": result.subjects,
                    "plain_loss": [v[0] - v[1] for v in values],
                    "robust_loss": [v[2] - v[3] for v in values],
                    "observed": result.observed.tolist(),
                    "interval95": result.interval().tolist(),
                    "mean_observed": float(result.observed.mean()),
                    "mean_interval95": list(result.mean_interval()),
                    "mean_win_fraction": result.mean_win_fraction(),
                }
    return report


def robustness_markdown(reports: dict[str, dict], resamples: int) -> str:
    """One table per test set: losses of each pair per withheld modality and the bootstrapped difference."""
    lines = [
        "Loss when one modality is withheld at test time (all present minus without m, mean over seeds), for a "
        "fused model and its twin trained with modality dropout; 'plain − dropout' is how much more the plain model "
        f"loses, with its 95 % interval over {resamples} draws of the test subjects and the share of draws in which "
        "the dropout model loses less.",
    ]
    for title, report in reports.items():
        if not report:
            continue
        subjects = next(iter(report.values()))["subjects"]
        lines += ["", f"**{title}, {subjects} subjects**", ""]
        lines += [
            "| models | withheld | metric | plain loss | dropout loss | plain − dropout | 95 % interval | draws won |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, entry in report.items():
            pair, modality, metric = key.split("/", 2)
            low, high = entry["mean_interval95"]
            plain_loss = sum(entry["plain_loss"]) / len(entry["plain_loss"])
            robust_loss = sum(entry["robust_loss"]) / len(entry["robust_loss"])
            lines.append(
                f"| {pair.replace('|', ' vs ')} | {modality} | {METRICS[metric]} | {plain_loss:+.3f} | "
                f"{robust_loss:+.3f} | {entry['mean_observed']:+.3f} | [{low:+.3f}, {high:+.3f}] | "
                f"{entry['mean_win_fraction']:.1%} |"
            )
    return "\n".join(lines) + "\n"


def markdown(reports: dict[str, dict], seeds: list[int], fused: str, resamples: int) -> str:
    """One table per test set and baseline: per seed and mean, difference, 95 % interval, share of draws won."""
    lines = [
        f"{fused} minus the best single-modality model, seeds {', '.join(map(str, seeds))}: the difference on the "
        f"test subjects, its 95 % percentile interval over {resamples} draws of those subjects with replacement, "
        "and the share of draws the fused model wins (the baseline re-chosen on every draw).",
    ]
    titles = {
        "best_single": "best single of every length and modality",
        "validation_chosen": "best single of the lengths chosen by validation score",
    }
    for test_set, report in reports.items():
        for baseline, title in titles.items():
            subjects = report[f"{baseline}/expr/f1_macro"]["subjects"]
            lines += ["", f"**{test_set}, {subjects} subjects; baseline: {title}**", ""]
            lines += ["| metric | seed | difference | 95 % interval | draws won |", "|---|---|---|---|---|"]
            for metric, name in METRICS.items():
                entry = report[f"{baseline}/{metric}"]
                for seed, observed, (low, high), won in zip(
                    seeds, entry["observed"], entry["interval95"], entry["win_fraction"], strict=True
                ):
                    lines.append(f"| {name} | {seed} | {observed:+.3f} | [{low:+.3f}, {high:+.3f}] | {won:.1%} |")
                low, high = entry["mean_interval95"]
                lines.append(
                    f"| {name} | mean | {entry['mean_observed']:+.3f} | [{low:+.3f}, {high:+.3f}] | "
                    f"{entry['mean_win_fraction']:.1%} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="an output folder of benchmarks/fusion_ablation.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fused", default="fusion_from_singles", help="the fused run compared (a folder per seed)")
    parser.add_argument("--data-root", required=True, help="the SynthAffect cache the runs were trained on")
    parser.add_argument("--cohort-root", default=None, help="the second cohort's cache (benchmarks/second_cohort.py)")
    parser.add_argument("--cohort-seed", type=int, default=1)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument(
        "--robustness",
        action="store_true",
        help="also bootstrap the losses with one modality withheld, each fused model against its dropout twin",
    )
    parser.add_argument("--overlay", action="append", default=[], help="as in fusion_ablation.py")
    parser.add_argument("--fused-overlay", action="append", default=[], help="as in fusion_ablation.py")
    args = parser.parse_args()
    ablation.OVERLAYS[:] = [str(Path(c).resolve()) for c in args.overlay]
    ablation.FUSED_OVERLAYS[:] = [str(Path(c).resolve()) for c in args.fused_overlay]
    runs, data_root = Path(args.runs).resolve(), Path(args.data_root).resolve()
    cohort_root = Path(args.cohort_root).resolve() if args.cohort_root else None
    test_sets = {"test": "test split"} | ({"cohort": f"second cohort (seed {args.cohort_seed})"} if cohort_root else {})
    reports = {}
    for test_set, title in test_sets.items():
        data_args = test_set_args(test_set, data_root, cohort_root, args.cohort_seed)
        condition = test_set_condition(test_set, cohort_root)
        reports[title] = bootstrap_test_set(runs, args.seeds, args.fused, condition, data_args, args.resamples)
    table = markdown(reports, args.seeds, args.fused, args.resamples)
    print(table)
    stem = f"subject_bootstrap_{args.fused}"
    (runs / f"{stem}.json").write_text(
        json.dumps({"seeds": args.seeds, "resamples": args.resamples, **reports}, indent=2)
    )
    (runs / f"{stem}.md").write_text(table)
    if args.robustness:
        robustness = {
            title: robustness_test_set(
                runs,
                args.seeds,
                test_set,
                test_set_args(test_set, data_root, cohort_root, args.cohort_seed),
                cohort_root,
                args.resamples,
            )
            for test_set, title in test_sets.items()
        }
        table = robustness_markdown(robustness, args.resamples)
        print(table)
        record = {"seeds": args.seeds, "resamples": args.resamples, **robustness}
        (runs / "subject_bootstrap_robustness.json").write_text(json.dumps(record, indent=2))
        (runs / "subject_bootstrap_robustness.md").write_text(table)


if __name__ == "__main__":
    main()
