"""Does fusion beat the best single modality, and does modality dropout make one model robust to a lost modality?

For each seed this script trains, with the quickstart's settings (``configs/quickstart.yaml``, SynthAffect,
attention fusion, 20 epochs), on the same cache and subject split:

- **single/<m>**: one model per modality ``m`` (``--data.init_args.modalities=[m]``), its encoder feeding the
  heads through an MLP (``configs/overlays/fusion_concat.yaml``): with one modality there is nothing to attend
  over, and attention fusion over a single token left the face-only model at chance in some seeds;
- **fusion**: all four modalities, attention fusion;
- **fusion_dropout**: the same with modality dropout 0.3 per modality (``--model.init_args.modality_dropout=0.3``;
  nothing else differs);

then tests ``fusion`` and ``fusion_dropout`` on the held-out subjects with every modality present and with each
single modality withheld (``mfer test --data.init_args.withheld_modalities=[m]``: the model keeps that
encoder, the batches mark the modality absent). Every figure comes from the results files the runs write.

Each model is one run folder (docs/runs.md), named by the script: ``<out>/seed<s>/single/<m>``,
``<out>/seed<s>/fusion``, ... (``--run.root``, ``--run.experiment``, ``--run.name``). It holds ``run.json`` (the best
checkpoint), ``checkpoints/``, ``results-test.json`` (the test after fit) and, for the fused models,
``results-test-withheld-<m>.json``; every test also writes its per-sample predictions
(``results-<condition>.predictions.npz``), which ``mfer report`` uses (its subject bootstrap).
Finished runs are reused, an interrupted one is resumed from its last checkpoint (``--ckpt_path last``), and a
missing withheld test is run. It prints and writes ``summary.md`` / ``summary.json`` (mean ± std over seeds, the
fused models against the best single model per seed and metric, the losses when a modality is withheld) and
``per_seed.json`` to ``--out``. ``mfer report <out>`` builds the per-setting tables, paired tests and subject
bootstrap of the same results files against any reference setting.

``--overlay`` configs (e.g. an encoder preset) compose after the quickstart in every run and test;
``--fused-overlay`` configs (e.g. ``configs/overlays/unimodal_heads.yaml``) only in the fused runs and their tests.

``--from-singles`` adds two-stage fusion (``MultitaskFERTask(pretrained_encoders=...)``), per seed:

- **single_long/<m>**: every single-modality model trained for twice the epochs (the face CNN is still
  improving at the quickstart's length; audio over-fits with more epochs), and with ``--single-length-factors
  2 4`` also **single_x4/<m>**, four times the epochs (any factor f > 2 gives ``single_x<f>``);
- **fusion_from_singles**: all four modalities, attention fusion, each encoder (and its feature norm) started
  from that seed's best single-modality run of modality m, of any length, the one with the higher validation
  score (``val/score`` at its best checkpoint; test figures play no part), then
  everything trained for the plain number of epochs (or ``--two-stage-epochs``), the started encoders at
  ``--encoder-lr-scale`` times the learning rate (default 1), held fixed for the first
  ``--encoder-warmup-epochs`` (default 0). The choice is written to ``fusion_from_singles/encoder_sources.json``;
- **fusion_from_singles_dropout** (with ``--two-stage-dropout p``): the same trained with modality dropout p, and
  compared with ``fusion_from_singles`` when a modality is withheld, as ``fusion_dropout`` is with ``fusion``.

The two-stage fusion is compared with the best single-modality model of any length, chosen per seed and
metric by its test figure: the strictest baseline. The longest single runs should reach the point where more
epochs stop helping the best modality, or the comparison credits fusion with what is only longer training:
the face CNN goes from 0.31 expression F1 at 10 epochs to 0.45 at 20 and 0.59 at 40 (seeds 0-2).

The plain two-stage recipe (fixed stage-1 lengths, the same seed's single runs) is a shipped suite, whose tables
come from ``mfer ablate`` + ``mfer report``: ``benchmarks/suites/fusion_two_stage.yaml`` (it needs
``fusion_singles.yaml``). This script stays for what a suite does not express: each modality's stage-1 length chosen
by validation among several. A second cohort is a suite's ``test.caches`` (the two fusion suites test on one), and
the fused models against the best single model with the subject bootstrap is ``mfer report`` of the suites'
folders with ``--best-of fusion-singles`` (docs/report.md, "Against the best of several").

Usage:
  python benchmarks/fusion_ablation.py --out runs/fusion_ablation --seeds 0 1 2 [--epochs 10]
  python benchmarks/fusion_ablation.py --out runs/fusion_ablation --seeds 0 1 2 [--epochs 10] --report-only
  python benchmarks/fusion_ablation.py --out runs/fusion_ablation_physio_features --epochs 10 \
      --overlay configs/encoders/physio_cnn_features.yaml
  python benchmarks/fusion_ablation.py --out runs/fusion_ablation_unimodal --epochs 10 \
      --fused-overlay configs/overlays/unimodal_heads.yaml
  python benchmarks/fusion_ablation.py --out runs/fusion_ablation_v3 --seeds 0 1 2 --epochs 10 --from-singles
  python benchmarks/fusion_ablation.py --out runs/fusion_ablation_v6 --seeds 0 1 2 --epochs 10 --from-singles \
      --single-length-factors 2 4 --two-stage-epochs 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from multimodal_fer.benchmarking.run_lookup import (
    VALIDATION_SCORE,
    best_checkpoint,
    best_score,
    has_results,
    read_metrics,
    results_filename,
    run_folder_arguments,
    run_state,
    test_condition_name,
)
from multimodal_fer.run_folder import RUN_FOLDER_ENVIRONMENT

REPO = Path(__file__).resolve().parents[1]
FER_CONFIG = REPO / "configs/quickstart.yaml"
#: Extra configs composed after the quickstart in every run (set from --overlay).
OVERLAYS: list[str] = []
#: Extra configs composed after those in the fused runs only (set from --fused-overlay).
FUSED_OVERLAYS: list[str] = []
#: How a single-modality model reaches its heads: an MLP on its encoder's features.
SINGLE_OVERLAY = str(REPO / "configs/overlays/fusion_concat.yaml")
MODALITIES = ("face", "audio", "depth", "physio")
#: Fused models: run name → extra ``mfer fit`` arguments.
FUSED = {"fusion": (), "fusion_dropout": ("--model.init_args.modality_dropout=0.3",)}
#: Two-stage fused models (--from-singles), encoders started from the seed's single-modality runs.
#: (Modality dropout is measured on the joint fused models only, to keep three seeds within a CPU work session.)
FROM_SINGLES = {"fusion_from_singles": ()}
#: Learning-rate factor of the started encoders in the two-stage runs (set from --encoder-lr-scale).
ENCODER_LR_SCALE = [1.0]
#: Epochs the started encoders are held fixed before fine-tuning in the two-stage runs (--encoder-warmup-epochs).
ENCODER_WARMUP_EPOCHS = [0]
#: Epochs of the two-stage runs (set from --two-stage-epochs; None: the plain number of epochs).
TWO_STAGE_EPOCHS: list[int | None] = [None]
#: Longer single-modality runs of --from-singles, as multiples of the plain number of epochs (--single-length-factors).
SINGLE_LENGTH_FACTORS: list[int] = [2]
#: Each fused model and the model trained the same way with modality dropout.
DROPOUT_PAIRS = {"fusion": "fusion_dropout"}
#: Where a single run's validation score (``val/score`` of its best checkpoint) is kept beside its test metrics.
VALIDATION_KEY = VALIDATION_SCORE
#: Metrics reported: results file key → column title.
METRICS = {
    "test/expr/f1_macro": "expr F1",
    "test/va/ccc_arousal": "CCC arousal",
    "test/va/ccc_valence": "CCC valence",
    "test/au/f1_mean": "AU F1",
}


def mfer(arguments: list[str]) -> None:
    """Run one ``mfer`` command from the repository root, W&B off, in a run folder of its own choosing."""
    print(f"[fusion] mfer {' '.join(arguments)}", flush=True)
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop(RUN_FOLDER_ENVIRONMENT, None)  # set only for the processes an mfer command starts itself
    subprocess.run([sys.executable, "-m", "multimodal_fer", *arguments], cwd=REPO, check=True, env=env)


def config_args(single: bool) -> list[str]:
    """``--config`` arguments of a run: the quickstart, then the overlays of every run, then the kind's own."""
    configs = [str(FER_CONFIG), *OVERLAYS, *([SINGLE_OVERLAY] if single else FUSED_OVERLAYS)]
    return [arg for config in configs for arg in ("--config", config)]


def results_arguments(condition: str) -> list[str]:
    """``mfer test`` arguments that write ``results-<condition>.json`` (and its predictions) into the run folder."""
    return [
        f"--results.filename={results_filename(condition)}",
        f"--results.condition={condition}",
        "--results.predictions=true",
    ]


def fit(folder: Path, seed: int, data_root: Path, extra: tuple[str, ...], epochs: int | None, single: bool) -> Path:
    """Train one model into the run folder ``folder`` unless it finished before; returns its best checkpoint.

    An interrupted fit (a last checkpoint, no results) is resumed with ``--ckpt_path last``.
    """
    state = run_state(folder)
    if state != "finished":
        if state == "resumable":
            print(f"[fusion] {folder}: resuming the unfinished run from its last checkpoint", flush=True)
        mfer(
            [
                "fit",
                *config_args(single),
                f"--seed_everything={seed}",
                f"--data.init_args.root={data_root}",
                "--trainer.logger=false",
                *run_folder_arguments(folder),
                *([f"--trainer.max_epochs={epochs}"] if epochs else []),  # the cosine schedule's T_max follows
                "--test_after_fit=true",
                "--results.predictions=true",
                *(["--ckpt_path=last"] if state == "resumable" else []),
                *extra,
            ]
        )
    return best_checkpoint(folder)


def test_withheld(folder: Path, data_root: Path, withheld: str) -> dict:
    """Test a fused run's best checkpoint with one modality withheld (``results-test-withheld-<m>.json``)."""
    condition = test_condition_name([withheld])
    if not has_results(folder, condition):
        mfer(
            [
                "test",
                *config_args(single=False),
                f"--data.init_args.root={data_root}",
                "--trainer.logger=false",
                f"--data.init_args.withheld_modalities=[{withheld}]",
                f"--ckpt_path={best_checkpoint(folder)}",
                *results_arguments(condition),
            ]
        )
    return read_metrics(folder, condition)


def single_kind(factor: int) -> str:
    """Folder (and condition prefix) of the single-modality runs trained for ``factor`` times the epochs."""
    return {1: "single", 2: "single_long"}.get(factor, f"single_x{factor}")


def single_factor(kind: str) -> int | None:
    """The epoch multiple of a single-modality run folder name (inverse of ``single_kind``); None for others."""
    if kind in ("single", "single_long"):
        return 1 if kind == "single" else 2
    suffix = kind.removeprefix("single_x")
    return int(suffix) if suffix != kind and suffix.isdigit() else None


def is_single(condition: str) -> bool:
    """Whether a condition (``<kind>/<modality>``) is a single-modality run of any length."""
    return single_factor(condition.split("/")[0]) is not None


def run_seed(out: Path, seed: int, data_root: Path, epochs: int | None, from_singles: bool) -> dict:
    """Every run of one seed: {condition: {metric: value}}."""
    folder = out / f"seed{seed}"
    results: dict[str, dict] = {}
    singles: dict[str, Path] = {}
    for modality in MODALITIES:
        run = singles[modality] = folder / "single" / modality
        fit(run, seed, data_root, (f"--data.init_args.modalities=[{modality}]",), epochs, single=True)
        results[f"single/{modality}"] = {**read_metrics(run), VALIDATION_KEY: best_score(run, VALIDATION_KEY)}
    fused = dict(FUSED)
    if from_singles:
        sources = {}
        for modality in MODALITIES:
            candidates = [singles[modality]]
            for factor in SINGLE_LENGTH_FACTORS:
                run = folder / single_kind(factor) / modality
                selector = (f"--data.init_args.modalities=[{modality}]",)
                fit(run, seed, data_root, selector, factor * (epochs or 20), True)
                candidates.append(run)
                results[f"{single_kind(factor)}/{modality}"] = {
                    **read_metrics(run),
                    VALIDATION_KEY: best_score(run, VALIDATION_KEY),
                }
            sources[modality] = max(candidates, key=lambda r: best_score(r, VALIDATION_KEY))
        start = "{" + ", ".join(f"{m}: {best_checkpoint(sources[m])}" for m in MODALITIES) + "}"
        scale = f"--model.init_args.pretrained_encoder_lr_scale={ENCODER_LR_SCALE[0]}"
        warmup = f"--model.init_args.pretrained_encoder_warmup_epochs={ENCODER_WARMUP_EPOCHS[0]}"
        fused.update(
            {
                name: (f"--model.init_args.pretrained_encoders={start}", scale, warmup, *extra)
                for name, extra in FROM_SINGLES.items()
            }
        )
        for name in FROM_SINGLES:
            (folder / name).mkdir(parents=True, exist_ok=True)
            record = {
                m: {"run": str(r), "checkpoint": str(best_checkpoint(r)), "val_score": best_score(r, VALIDATION_KEY)}
                for m, r in sources.items()
            }
            (folder / name / "encoder_sources.json").write_text(json.dumps(record, indent=2))
    for name, extra in fused.items():
        run = folder / name
        length = (TWO_STAGE_EPOCHS[0] or epochs) if name in FROM_SINGLES else epochs
        fit(run, seed, data_root, extra, length, single=False)
        results[f"{name}/all"] = read_metrics(run)
        for modality in MODALITIES:
            results[f"{name}/without_{modality}"] = test_withheld(run, data_root, modality)
    return results


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(per_seed: dict[int, dict]) -> dict:
    """Mean ± std over seeds of every condition and metric, plus best-single and drop figures per seed."""
    seeds = sorted(per_seed)
    conditions = list(per_seed[seeds[0]])
    summary: dict[str, dict] = {"conditions": {}, "derived": {}}
    for condition in conditions:
        summary["conditions"][condition] = {
            metric: mean_std([per_seed[s][condition][metric] for s in seeds]) for metric in METRICS
        }
    two_stage = "fusion_from_singles/all" in conditions
    derived = summary["derived"]
    for metric in METRICS:
        best_single = [max(per_seed[s][f"single/{m}"][metric] for m in MODALITIES) for s in seeds]
        fused = [per_seed[s]["fusion/all"][metric] for s in seeds]
        compare(derived, metric, fused, best_single, ("best_single", "fusion_minus_best_single", "fusion_beats"))
        if two_stage:  # against the best single model of any length
            best_any = [max(per_seed[s][c][metric] for c in conditions if is_single(c)) for s in seeds]
            fused = [per_seed[s]["fusion_from_singles/all"][metric] for s in seeds]
            names = ("best_single_any_length", "from_singles_minus_best_single", "from_singles_beats")
            compare(derived, metric, fused, best_any, names)
            chosen = [validation_chosen_singles(per_seed[s]) for s in seeds]
            if all(chosen):  # each modality's length chosen by validation, as a researcher without the test set would
                best_chosen = [max(per_seed[s][c][metric] for c in kept) for s, kept in zip(seeds, chosen, strict=True)]
                names = (
                    "best_single_validation_chosen",
                    "from_singles_minus_validation_chosen",
                    "from_singles_beats_vc",
                )
                compare(derived, metric, fused, best_chosen, names)
        for name in [n for pair in DROPOUT_PAIRS.items() for n in pair if f"{n}/all" in conditions]:
            for modality in MODALITIES:
                drops = [
                    per_seed[s][f"{name}/all"][metric] - per_seed[s][f"{name}/without_{modality}"][metric]
                    for s in seeds
                ]
                summary["derived"][f"drop/{name}/{modality}/{metric}"] = mean_std(drops)
    return summary


def validation_chosen_singles(conditions: dict[str, dict]) -> list[str]:
    """Per modality, the single run (of any length) with the best validation score; [] if a score is missing.

    This is the single-modality model a researcher would keep without looking at the test set: each modality's
    training length chosen by ``val/score``, as the two-stage sources are.
    """
    singles = [c for c in conditions if is_single(c)]
    if not singles or any(VALIDATION_KEY not in conditions[c] for c in singles):
        return []
    by_modality: dict[str, list[str]] = {}
    for condition in singles:
        by_modality.setdefault(condition.split("/")[1], []).append(condition)
    return [max(runs, key=lambda c: conditions[c][VALIDATION_KEY]) for runs in by_modality.values()]


def compare(derived: dict, metric: str, fused: list[float], baseline: list[float], names: tuple[str, str, str]) -> None:
    """Record a fused model against a per-seed baseline: the baseline, the difference, and the seeds it wins.

    ``names`` are the keys' stems: (baseline, difference, wins); wins are stored under
    ``{wins}_best_single_in_seeds/{metric}`` as (count, seeds).
    """
    baseline_name, difference_name, wins_name = names
    derived[f"{baseline_name}/{metric}"] = mean_std(baseline)
    derived[f"{difference_name}/{metric}"] = mean_std([f - b for f, b in zip(fused, baseline, strict=True)])
    derived[f"{wins_name}_best_single_in_seeds/{metric}"] = (
        sum(f > b for f, b in zip(fused, baseline, strict=True)),
        len(fused),
    )


def comparison_rows(
    derived: dict, names: tuple[str, str, str], cell: Callable[[tuple[float, float]], str], per_seed: str | None = None
) -> list[str]:
    """Table rows ``| metric | baseline | difference | [per seed |] wins |`` from the keys ``compare`` wrote.

    ``names`` are the stems given to ``compare``; ``per_seed``, when given, is the stem of a per-seed difference
    list (``<per_seed>/<metric>``).
    """
    baseline, difference, wins_name = names
    rows = []
    for metric, title in METRICS.items():
        wins, total = derived[f"{wins_name}_best_single_in_seeds/{metric}"]
        cells = [title, cell(derived[f"{baseline}/{metric}"]), cell(derived[f"{difference}/{metric}"])]
        if per_seed is not None:
            cells.append(", ".join(f"{d:+.3f}" for d in derived[f"{per_seed}/{metric}"]))
        rows.append("| " + " | ".join([*cells, f"{wins}/{total}"]) + " |")
    return rows


def markdown(summary: dict, seeds: int, epochs: int | None) -> str:
    """Tables: every condition's test metrics; fusion vs best single; drops when a modality is withheld."""

    def cell(pair: tuple[float, float]) -> str:
        return f"{pair[0]:.3f} ± {pair[1]:.3f}" if seeds > 1 else f"{pair[0]:.3f}"

    lines = [
        f"SynthAffect, 12 held-out test subjects, {seeds} seeds (mean ± std); quickstart settings, "
        f"{epochs or 20} epochs{' + ' + ', '.join(Path(o).name for o in OVERLAYS) if OVERLAYS else ''}.",
        "single/m = modality m alone, its encoder feeding the heads through an MLP (fusion_concat.yaml).",
        "fusion = attention fusion of all four modalities"
        + (f" + {', '.join(Path(o).name for o in FUSED_OVERLAYS)}" if FUSED_OVERLAYS else "")
        + "; fusion+dropout = the same trained with modality dropout",
        "0.3; 'without m' = the same weights tested with modality m withheld (marked absent in every batch).",
        "",
        "| model | " + " | ".join(METRICS.values()) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for condition, values in summary["conditions"].items():
        lines.append(f"| {condition} | " + " | ".join(cell(values[m]) for m in METRICS) + " |")
    derived = summary["derived"]
    lines += ["", "Fusion against the best single modality (chosen per seed and metric):", ""]
    lines += ["| metric | best single | fusion − best single | seeds where fusion wins |", "|---|---|---|---|"]
    lines += comparison_rows(derived, ("best_single", "fusion_minus_best_single", "fusion_beats"), cell)
    if "best_single_any_length/test/expr/f1_macro" in derived:
        lines += [
            "",
            "Two-stage fusion (each encoder started from modality m's single run of any length with the better",
            "validation score, then fused for "
            + (f"{TWO_STAGE_EPOCHS[0]} epochs" if TWO_STAGE_EPOCHS[0] else "the plain number of epochs")
            + f", at {ENCODER_LR_SCALE[0]:g}x the learning",
            "rate for the started encoders"
            + (f", held fixed for the first {ENCODER_WARMUP_EPOCHS[0]} epoch(s)" if ENCODER_WARMUP_EPOCHS[0] else "")
            + ") against the best single-modality model",
            "of any length ("
            + ", ".join(f"{single_kind(f)}/m" for f in (1, *SINGLE_LENGTH_FACTORS))
            + "; chosen per seed and metric by its test figure):",
            "",
            "| metric | best single | two-stage fusion − best single | seeds where fusion wins |",
            "|---|---|---|---|",
        ]
        names = ("best_single_any_length", "from_singles_minus_best_single", "from_singles_beats")
        lines += comparison_rows(derived, names, cell)
    if "best_single_validation_chosen/test/expr/f1_macro" in derived:
        lines += [
            "",
            "The same against the best single-modality model when each modality's length is chosen by its",
            "validation score (val/score), not by the test figure:",
            "",
            "| metric | best single | two-stage fusion − best single | seeds where fusion wins |",
            "|---|---|---|---|",
        ]
        names = ("best_single_validation_chosen", "from_singles_minus_validation_chosen", "from_singles_beats_vc")
        lines += comparison_rows(derived, names, cell)
    for plain, dropped in DROPOUT_PAIRS.items():
        if any(f"drop/{name}/face/test/expr/f1_macro" not in derived for name in (plain, dropped)):
            continue
        lines += ["", f"Loss when one modality is withheld at test time, {plain} vs {dropped}", ""]
        lines += ["(all present − without m; lower is better):", ""]
        lines += [f"| metric | withheld | {plain} | {dropped} |", "|---|---|---|---|"]
        for metric, title in METRICS.items():
            for modality in MODALITIES:
                lines.append(
                    f"| {title} | {modality} | {cell(derived[f'drop/{plain}/{modality}/{metric}'])} | "
                    f"{cell(derived[f'drop/{dropped}/{modality}/{metric}'])} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/fusion_ablation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-root", default="data/synthaffect", help="SynthAffect cache of configs/quickstart.yaml")
    parser.add_argument("--epochs", type=int, default=None, help="override the quickstart's 20 epochs")
    parser.add_argument("--overlay", action="append", default=[], help="config composed after the quickstart")
    parser.add_argument("--fused-overlay", action="append", default=[], help="config composed in the fused runs only")
    parser.add_argument(
        "--from-singles", action="store_true", help="add two-stage fusion from the single runs (see above)"
    )
    parser.add_argument(
        "--encoder-lr-scale",
        type=float,
        default=1.0,
        help="two-stage runs: learning-rate factor of the started encoders (pretrained_encoder_lr_scale)",
    )
    parser.add_argument(
        "--encoder-warmup-epochs",
        type=int,
        default=0,
        help="two-stage runs: epochs the started encoders are held fixed first (pretrained_encoder_warmup_epochs)",
    )
    parser.add_argument("--two-stage-epochs", type=int, default=None, help="two-stage runs: epochs (default: --epochs)")
    parser.add_argument(
        "--single-length-factors",
        type=int,
        nargs="+",
        default=[2],
        help="with --from-singles: longer single-modality runs, as multiples of the epochs (default: 2)",
    )
    parser.add_argument(
        "--two-stage-dropout",
        type=float,
        default=None,
        help="with --from-singles: add fusion_from_singles_dropout, the two-stage model with this modality dropout",
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the tables from per_seed.json")
    args = parser.parse_args()
    OVERLAYS.extend(str(Path(overlay).resolve()) for overlay in args.overlay)
    ENCODER_LR_SCALE[0] = args.encoder_lr_scale
    ENCODER_WARMUP_EPOCHS[0] = args.encoder_warmup_epochs
    TWO_STAGE_EPOCHS[0] = args.two_stage_epochs
    if any(factor < 2 for factor in args.single_length_factors):
        parser.error(f"--single-length-factors must be 2 or more (1 is the plain run): {args.single_length_factors}")
    SINGLE_LENGTH_FACTORS[:] = sorted(set(args.single_length_factors))
    if args.two_stage_dropout is not None:
        if not 0.0 < args.two_stage_dropout < 1.0:
            parser.error(f"--two-stage-dropout must lie in (0, 1), got {args.two_stage_dropout}")
        FROM_SINGLES["fusion_from_singles_dropout"] = (f"--model.init_args.modality_dropout={args.two_stage_dropout}",)
        DROPOUT_PAIRS["fusion_from_singles"] = "fusion_from_singles_dropout"
    FUSED_OVERLAYS.extend(str(Path(overlay).resolve()) for overlay in args.fused_overlay)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_root = Path(args.data_root).resolve()
    per_seed_path = out / "per_seed.json"
    per_seed = {int(k): v for k, v in json.loads(per_seed_path.read_text()).items()} if per_seed_path.exists() else {}
    if not args.report_only:
        mfer(["prepare", "--config", str(FER_CONFIG), f"--data.init_args.root={data_root}"])
        for seed in args.seeds:
            per_seed[seed] = run_seed(out, seed, data_root, args.epochs, args.from_singles)
            per_seed_path.write_text(json.dumps(per_seed, indent=2))
    chosen = {s: per_seed[s] for s in args.seeds if s in per_seed}
    summary = summarise(chosen)
    table = markdown(summary, len(chosen), args.epochs)
    print(table)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(table)


if __name__ == "__main__":
    main()
