"""Single-modality vs fused results on SynthAffect's held-out subjects, from results.json files only.

Runs ``mfer fit`` (with test after fit) once per modality subset and seed, each into its own folder, then
builds a Markdown table (mean ± std over seeds) and a JSON summary from the runs' ``results.json``.

Usage:
  python benchmarks/modality_ablation.py --out runs/ablation [--seeds 0] [--subsets face audio depth physio all]
      [-- extra mfer overrides, e.g. --trainer.max_epochs=20]
  python benchmarks/modality_ablation.py --out runs/ablation --report-only   # rebuild the table
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

METRICS = (
    ("test/expr/f1_macro", "expr macro-F1"),
    ("test/expr/accuracy", "expr acc."),
    ("test/au/f1_mean", "AU mean F1"),
    ("test/va/ccc_valence", "CCC valence"),
    ("test/va/ccc_arousal", "CCC arousal"),
)
ALL = ("face", "audio", "depth", "physio")


def run_folder(out: Path, subset: str, seed: int) -> Path:
    return out / f"{subset}-seed{seed}"


def results_path(folder: Path) -> Path | None:
    """The results.json of a run folder (it lies beside the run's checkpoints), or None."""
    found = sorted(folder.glob("**/results.json"))
    return found[-1] if found else None


def run_one(config: str, out: Path, subset: str, seed: int, extra: list[str]) -> None:
    folder = run_folder(out, subset, seed)
    if results_path(folder) is not None:
        print(f"[ablation] {folder.name}: done before, reusing")
        return
    modalities = ",".join(ALL if subset == "all" else (subset,))
    command = [
        sys.executable,
        "-m",
        "multimodal_fer",
        "fit",
        "--config",
        config,
        "--config",
        "configs/overlays/csv_logger.yaml",
        f"--data.init_args.modalities=[{modalities}]",
        f"--seed_everything={seed}",
        "--test_after_fit=true",
        f"--trainer.default_root_dir={folder}",
        f"--trainer.logger.init_args.save_dir={folder}",
        *extra,
    ]
    print(f"[ablation] {folder.name}: {' '.join(command[2:])}", flush=True)
    subprocess.run(command, check=True, env={**os.environ, "WANDB_MODE": "disabled"})


def report(out: Path, subsets: list[str], seeds: list[int]) -> tuple[str, dict]:
    rows, summary = [], {}
    header = "| modalities | " + " | ".join(label for _, label in METRICS) + " | seeds |"
    rows.append(header)
    rows.append("|" + "---|" * (len(METRICS) + 2))
    for subset in subsets:
        values: dict[str, list[float]] = {name: [] for name, _ in METRICS}
        found = 0
        for seed in seeds:
            path = results_path(run_folder(out, subset, seed))
            if path is None:
                continue
            found += 1
            metrics = json.loads(path.read_text())["metrics"]
            for name, _ in METRICS:
                if name in metrics:
                    values[name].append(float(metrics[name]))
        cells = []
        summary[subset] = {}
        for name, _ in METRICS:
            data = values[name]
            if not data:
                cells.append("–")
                continue
            mean = statistics.fmean(data)
            std = statistics.stdev(data) if len(data) > 1 else 0.0
            summary[subset][name] = {"mean": mean, "std": std, "n": len(data)}
            cells.append(f"{mean:.3f} ± {std:.3f}" if len(data) > 1 else f"{mean:.3f}")
        label = "all four (attention fusion)" if subset == "all" else subset
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {found} |")
    return "\n".join(rows), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--subsets", nargs="+", default=[*ALL, "all"], choices=[*ALL, "all"])
    parser.add_argument("--report-only", action="store_true")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    out = Path(args.out)
    if not args.report_only:
        for seed in args.seeds:
            for subset in args.subsets:
                run_one(args.config, out, subset, seed, extra)
    table, summary = report(out, args.subsets, args.seeds)
    print(table)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
