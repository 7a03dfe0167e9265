"""Does restoration rescue recognition of occluded faces? Clean vs occluded vs restored, per occlusion kind.

For each seed this script

1. trains the restorer (``mfer fit --config configs/restoration/synthaffect.yaml``),
2. trains three face-only recognisers with the quickstart's settings (``configs/quickstart.yaml``,
   ``modalities=[face]``): **R** on SynthAffect's faces as generated (30 % occluded), **R-clean** on the
   unoccluded renders (``clean_faces=true``, the usual protocol of occlusion studies), and **R+restorer**, R's
   configuration trained behind the frozen restorer (``configs/overlays/face_restorer.yaml``, the two-stage run),
3. builds the deterministic occlusion split of SynthAffect's test subjects (every test face once with every
   occlusion kind; ``mfer occlusion-split``), and
4. evaluates the *same* weights of R and of R-clean on the clean faces, the occluded faces, the occluded faces
   restored blindly (predicted masks) and restored with the true masks (an upper bound for the mask network);
   R+restorer on the occluded and clean faces; and the restorer itself (PSNR of the occluded region, whole-face
   SSIM, mask IoU).

It writes ``summary.json`` and ``summary.md`` (mean ± std over seeds, overall and per kind) to ``--out``.
Runs already present in ``--out`` are reused.

Usage:
  python benchmarks/occlusion_restoration.py --out runs/occlusion_benchmark --seeds 0 1 2
  python benchmarks/occlusion_restoration.py --out runs/occlusion_benchmark --seeds 0 1 2 --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESTORATION_CONFIG = REPO / "configs/restoration/synthaffect.yaml"
FER_CONFIG = REPO / "configs/quickstart.yaml"
RESTORER_OVERLAY = REPO / "configs/overlays/face_restorer.yaml"
#: recogniser run folder → (extra mfer arguments, conditions it is evaluated under).
RECOGNISERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "R": ((), ("clean", "occluded", "restored", "restored_true_mask")),
    "R_clean": (("--data.init_args.clean_faces=true",), ("clean", "occluded", "restored", "restored_true_mask")),
    "R_restorer": (("--config", str(RESTORER_OVERLAY)), ("clean", "occluded")),
}


def run(command: list[str], cwd: Path) -> None:
    """Run an ``mfer`` command in ``cwd`` (relative paths of the configs resolve there)."""
    cwd.mkdir(parents=True, exist_ok=True)
    print(f"[occlusion] ({cwd}) mfer {' '.join(command)}", flush=True)
    env = {**os.environ, "WANDB_MODE": "disabled"}
    subprocess.run([sys.executable, "-m", "multimodal_fer", *command], cwd=cwd, check=True, env=env)


def train(seed: int, out: Path, data_root: Path, fer_epochs: int | None, restoration_epochs: int | None) -> Path:
    """Train restorer and recogniser of one seed (reusing finished runs); returns the seed's folder."""
    folder = out / f"seed{seed}"
    common = [f"--seed_everything={seed}", f"--data.init_args.root={data_root}", "--trainer.logger=false"]
    if not (folder / "runs/restoration/synthaffect/restorer.ckpt").exists():
        epochs = [f"--trainer.max_epochs={restoration_epochs}"] if restoration_epochs else []
        run(["fit", "--config", str(RESTORATION_CONFIG), *common, *epochs], folder)
    for name, (extra, _) in RECOGNISERS.items():
        if list((folder / name).glob("**/best-*.ckpt")):
            continue
        epochs = [f"--trainer.max_epochs={fer_epochs}", f"--model.init_args.lr_scheduler.init_args.T_max={fer_epochs}"]
        run(
            [
                "fit",
                *("--config", str(FER_CONFIG)),
                *extra,
                *common,
                "--data.init_args.modalities=[face]",
                f"--trainer.default_root_dir={folder / name}",
                *(epochs if fer_epochs else []),
            ],
            folder,
        )
    return folder


def load_recogniser(folder: Path, data_root: Path, run_name: str) -> torch.nn.Module:
    """A face-only FER task of a seed (one of :data:`RECOGNISERS`) with its best checkpoint's weights, in eval mode."""
    from multimodal_fer.cli import build_cli

    overlay = ["--config", str(RESTORER_OVERLAY)] if run_name == "R_restorer" else []
    previous = Path.cwd()
    os.chdir(folder)  # the overlay names the restorer checkpoint relative to the seed's folder
    try:
        cli = build_cli(
            [
                *("--config", str(FER_CONFIG), *overlay),
                f"--data.init_args.root={data_root}",
                "--data.init_args.modalities=[face]",
            ],
            run=False,
        )
    finally:
        os.chdir(previous)
    checkpoint = sorted((folder / run_name).glob("**/best-*.ckpt"))[-1]
    content = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cli.model.on_load_checkpoint(content)  # as Lightning does: fills what older checkpoints lack
    cli.model.load_state_dict(content["state_dict"])
    return cli.model.eval()


@torch.no_grad()
def evaluate_seed(folder: Path, data_root: Path, split_root: Path, batch_size: int = 128) -> dict:
    """Metrics of every condition, overall and per occlusion kind, for one seed."""
    from torchmetrics.classification import MulticlassF1Score, MultilabelF1Score

    from multimodal_fer.datamodules.device_transforms import face_statistics, normalize_face, restandardize
    from multimodal_fer.models.restoration import load_restorer
    from multimodal_fer.occlusion import OCCLUSION_TYPES
    from multimodal_fer.preprocessing.cache import CacheReader
    from multimodal_fer.restoration_metrics import RestorationMetrics
    from multimodal_fer.tasks.occlusion_restoration import to_unit_range

    recognisers = {name: load_recogniser(folder, data_root, name) for name in RECOGNISERS}
    restorer = load_restorer(folder / "runs/restoration/synthaffect/restorer.ckpt")
    split = CacheReader(split_root)
    types = np.asarray(split.array("occlusion_type"))
    groups = {"all": np.arange(types.size)} | {k: np.flatnonzero(types == i) for i, k in enumerate(OCCLUSION_TYPES)}
    label_space = recognisers["R"].label_space
    num_classes, num_aus = label_space.num_expressions, label_space.num_action_units
    runs = [f"{name}/{condition}" for name, (_, conditions) in RECOGNISERS.items() for condition in conditions]
    predictions: dict[str, list[torch.Tensor]] = {run: [] for run in runs}
    au_predictions: dict[str, list[torch.Tensor]] = {run: [] for run in runs}
    restoration = {k: RestorationMetrics("test") for k in groups}
    restored_parts = []
    for start in range(0, types.size, batch_size):
        rows = slice(start, start + batch_size)
        occluded_u8 = torch.from_numpy(np.array(split.array("face")[rows]))
        clean_u8 = torch.from_numpy(np.array(split.array("face_clean")[rows]))
        true_mask = torch.from_numpy(np.array(split.array("occlusion_mask")[rows])).float()
        statistics_occluded = face_statistics(occluded_u8)
        occluded = normalize_face(occluded_u8, statistics_occluded)
        blind = restorer(occluded)
        given = restorer(occluded, true_mask)
        inputs = {
            "clean": normalize_face(clean_u8),
            "occluded": occluded,  # R+restorer restores these inside its face encoder
            "restored": restandardize(blind["restored"]),
            "restored_true_mask": restandardize(given["restored"]),
        }
        present = {"face": torch.ones(occluded.shape[0], dtype=torch.bool)}
        for run in runs:
            name, condition = run.split("/")
            outputs = recognisers[name]({"face": inputs[condition], "present": present})
            predictions[run].append(outputs["expr"].argmax(dim=-1))
            au_predictions[run].append((outputs["au"] > 0).long())
        restored_parts.append(to_unit_range(blind["restored"], *statistics_occluded))
        unit_occluded = to_unit_range(occluded, *statistics_occluded)
        unit_clean = clean_u8.float() / 255.0
        for name, index in groups.items():
            keep = torch.from_numpy(np.isin(np.arange(start, start + occluded.shape[0]), index))
            if keep.any():
                restoration[name].update(
                    restored_parts[-1][keep],
                    unit_occluded[keep],
                    unit_clean[keep],
                    true_mask[keep],
                    blind["mask"][keep],
                )
    expr = torch.from_numpy(np.asarray(split.array("expr"))).long()
    au = torch.from_numpy(np.nan_to_num(np.asarray(split.array("au")), nan=-1)).long()
    result: dict[str, dict] = {}
    for name, index in groups.items():
        idx = torch.from_numpy(index)
        entry: dict[str, float] = {"faces": int(index.size)}
        for run in runs:
            f1 = MulticlassF1Score(num_classes, average="macro")
            entry[f"{run}/expr_f1_macro"] = float(f1(torch.cat(predictions[run])[idx], expr[idx]))
            au_f1 = MultilabelF1Score(num_aus, average="macro", ignore_index=-1)
            entry[f"{run}/au_f1_mean"] = float(au_f1(torch.cat(au_predictions[run])[idx], au[idx]))
        for key, value in restoration[name].compute().items():
            entry[key.removeprefix("test/")] = float(value)
        result[name] = entry
    return result


#: Recovery figures: name → (run with restoration, recogniser whose clean and occluded scores it is set against).
RECOVERIES = {
    "R_restored": ("R/restored", "R"),
    "R_restored_true_mask": ("R/restored_true_mask", "R"),
    "R_clean_restored": ("R_clean/restored", "R_clean"),
    "R_clean_restored_true_mask": ("R_clean/restored_true_mask", "R_clean"),
    "R_restorer": ("R_restorer/occluded", "R"),
}


@torch.no_grad()
def example_figure(folder: Path, split_root: Path, output: Path, per_kind: int = 2) -> None:
    """Draw occluded | mask used | restored (blind) | clean for the first faces of every kind in the split."""
    from torchvision.utils import save_image

    from multimodal_fer.callbacks.restoration_grid import restoration_grid
    from multimodal_fer.datamodules.device_transforms import face_statistics, normalize_face
    from multimodal_fer.models.restoration import load_restorer
    from multimodal_fer.preprocessing.cache import CacheReader
    from multimodal_fer.tasks.occlusion_restoration import to_unit_range

    restorer = load_restorer(folder / "runs/restoration/synthaffect/restorer.ckpt")
    split = CacheReader(split_root)
    types = np.asarray(split.array("occlusion_type"))
    rows = np.concatenate([np.flatnonzero(types == kind)[:per_kind] for kind in np.unique(types)])
    occluded_u8 = torch.from_numpy(np.array(split.array("face")[rows]))
    statistics_occluded = face_statistics(occluded_u8)
    out = restorer(normalize_face(occluded_u8, statistics_occluded))
    grid = restoration_grid(
        occluded_u8.float() / 255.0,
        out["mask"],
        to_unit_range(out["restored"], *statistics_occluded),
        torch.from_numpy(np.array(split.array("face_clean")[rows])).float() / 255.0,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, output)
    print(f"[occlusion] example figure: {output}")


def recovered(entry: dict, metric: str, restored_run: str, reference: str) -> float:
    """Share of the occlusion cost won back: (restored − occluded) / (clean − occluded) of the reference."""
    clean, occluded = entry[f"{reference}/clean/{metric}"], entry[f"{reference}/occluded/{metric}"]
    cost = clean - occluded
    return (entry[f"{restored_run}/{metric}"] - occluded) / cost if abs(cost) > 1e-9 else float("nan")


def summarise(per_seed: dict[int, dict]) -> dict:
    """Mean and std over seeds of every number, per group, plus the recovery shares."""
    first = per_seed[next(iter(per_seed))]
    summary: dict[str, dict] = {}
    for group in first:
        summary[group] = {}
        recoveries = [f"recovered/{name}/{m}" for name in RECOVERIES for m in ("expr_f1_macro", "au_f1_mean")]
        for key in [*first[group], *recoveries]:
            if key.startswith("recovered/"):
                _, name, metric = key.split("/")
                values = [recovered(per_seed[s][group], metric, *RECOVERIES[name]) for s in per_seed]
            else:
                values = [float(per_seed[s][group][key]) for s in per_seed]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[group][key] = {"mean": statistics.fmean(values), "std": std, "n": len(values)}
    return summary


#: Columns of the recognition tables: summary key prefix and digits ("rec." columns are shares, 2 digits).
_RECOGNITION_COLUMNS = (
    *((f"R/{c}", 3) for c in ("clean", "occluded", "restored")),
    ("recovered/R_restored", 2),
    ("R/restored_true_mask", 3),
    ("recovered/R_restored_true_mask", 2),
    *((f"R_clean/{c}", 3) for c in ("clean", "occluded", "restored")),
    ("recovered/R_clean_restored", 2),
    ("R_clean/restored_true_mask", 3),
    ("recovered/R_clean_restored_true_mask", 2),
    ("R_restorer/occluded", 3),
    ("recovered/R_restorer", 2),
    ("R_restorer/clean", 3),
)


def markdown(summary: dict) -> str:
    """Recognition tables (expression, AUs) and a restoration-quality table, overall and per kind."""

    def cell(group: str, key: str, digits: int = 3) -> str:
        value = summary[group].get(key)
        if value is None:
            return "–"
        if value["n"] == 1:
            return f"{value['mean']:.{digits}f}"
        return f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"

    seeds = summary["all"]["faces"]["n"]
    lines = [
        f"SynthAffect test subjects, every test face once with every occlusion kind; {seeds} seeds, mean ± std.",
        "R: face-only recogniser trained on the faces as generated (30 % occluded); R-clean: the same trained on",
        "unoccluded renders; R+restorer: R's configuration trained behind the frozen restorer (two-stage run).",
        "'restored' = blind restoration (predicted masks); 'true mask' = the generator given the true mask.",
        "rec. = recovered share of the occlusion cost, (with restoration − occluded) / (clean − occluded),",
        "against the same recogniser's clean and occluded scores (R's for R+restorer).",
    ]
    for metric, title in (("expr_f1_macro", "Expression macro-F1"), ("au_f1_mean", "AU mean F1")):
        lines += [
            "",
            f"{title}:",
            "",
            "| occlusion | R clean | R occluded | R restored | rec. | R true mask | rec. "
            "| R-clean clean | R-clean occluded | R-clean restored | rec. | R-clean true mask | rec. "
            "| R+restorer occluded | rec. | R+restorer clean |",
            "|---|" + "---|" * 15,
        ]
        for group in summary:
            cells = [cell(group, f"{key}/{metric}", digits) for key, digits in _RECOGNITION_COLUMNS]
            lines.append(f"| {group} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Restoration quality (blind: predicted masks). PSNR in dB over the occluded region and over the whole face;",
        "SSIM over the whole face; *input* = the occluded face itself.",
        "",
        "| occlusion | PSNR occl. input | PSNR occl. restored | gain (dB) | PSNR face input | PSNR face restored "
        "| SSIM input | SSIM restored | mask IoU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group in summary:
        lines.append(
            f"| {group} | {cell(group, 'restoration/psnr_occluded_input', 2)} | "
            f"{cell(group, 'restoration/psnr_occluded', 2)} | {cell(group, 'restoration/psnr_occluded_gain', 2)} | "
            f"{cell(group, 'restoration/psnr_face_input', 2)} | {cell(group, 'restoration/psnr_face', 2)} | "
            f"{cell(group, 'restoration/ssim_face_input')} | {cell(group, 'restoration/ssim_face')} | "
            f"{cell(group, 'mask/iou')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/occlusion_benchmark")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-root", default="data/synthaffect", help="SynthAffect cache of configs/quickstart.yaml")
    parser.add_argument("--fer-epochs", type=int, default=None, help="override the recogniser's epochs")
    parser.add_argument("--restoration-epochs", type=int, default=None, help="override the restorer's epochs")
    parser.add_argument("--report-only", action="store_true", help="rebuild the tables from per_seed.json")
    parser.add_argument("--figure", default=None, help="also draw restored examples of the first seed to this PNG")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_root = Path(args.data_root).resolve()
    split_root = Path(f"{data_root}_occluded_test")
    per_seed_path = out / "per_seed.json"
    per_seed: dict[int, dict] = (
        {int(k): v for k, v in json.loads(per_seed_path.read_text()).items()} if per_seed_path.exists() else {}
    )
    if not args.report_only:
        run(["prepare", "--config", str(FER_CONFIG), f"--data.init_args.root={data_root}"], REPO)
        if not (split_root / "manifest.json").exists():
            run(
                [
                    "occlusion-split",
                    *("--config", str(FER_CONFIG), f"--data.init_args.root={data_root}", "--split", "test"),
                ],
                REPO,
            )
        for seed in args.seeds:
            folder = train(seed, out, data_root, args.fer_epochs, args.restoration_epochs)
            per_seed[seed] = evaluate_seed(folder, data_root, split_root)
            per_seed_path.write_text(json.dumps(per_seed, indent=2))
    if args.figure:
        example_figure(out / f"seed{args.seeds[0]}", split_root, Path(args.figure))
    chosen = {s: per_seed[s] for s in args.seeds if s in per_seed}
    summary = summarise(chosen)
    table = markdown(summary)
    print(table)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(table)


if __name__ == "__main__":
    main()
