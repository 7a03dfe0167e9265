"""Does restoration rescue recognition of occluded faces? Clean vs occluded vs restored, per occlusion kind.

For each seed this script

1. trains face-only recognisers with the quickstart's settings (``configs/quickstart.yaml``, ``modalities=[face]``)
   and the face encoder feeding the heads through a plain MLP (``configs/overlays/fusion_concat.yaml``: with one
   modality there is nothing to attend over, and the attention fusion left some seeds at chance):

   - **R-clean** on the unoccluded renders (``clean_faces=true``, the usual protocol of occlusion studies),
   - **R** on SynthAffect's faces as generated (30 % occluded),
   - **R-occ**, trained with a fresh random occluder on every training face (``online_occlusion_probability=1``):
     the occlusion-robust recogniser restoration competes with,
   - **R+restorer**, R's configuration trained behind the frozen restorer (``configs/overlays/face_restorer.yaml``),
   - **R+mask**, R's configuration as a mask-aware recogniser: the occluded face plus the occlusion mask predicted by
     the frozen restorer's mask network as a 4th input channel (``configs/overlays/face_mask_aware.yaml``);

2. trains the restorer (``configs/restoration/synthaffect.yaml``; with ``--guided``, R-clean is its frozen critic
   (``recogniser_critic``), and a second clean-face recogniser **R-clean′** (seed + 1000), which the restorer
   never sees, is evaluated too: does the restorer make faces any recogniser reads, or only its critic?),
3. builds the deterministic occlusion split of SynthAffect's test subjects (every test face once with every
   occlusion kind; ``mfer occlusion-split``), and
4. evaluates the same weights of every recogniser on the clean faces, the occluded faces, the occluded faces
   restored blindly (predicted masks) and restored with the true masks (an upper bound for the mask network);
   the same with each trivial fill of ``--fills`` in place of the generator, behind the same masks (mean colour,
   OpenCV's Telea and Navier–Stokes inpainting, left–right mirror: what the generator must beat);
   R+restorer and R+mask on the occluded faces (they restore or mask them themselves) and the clean ones; and the
   restorer itself (PSNR of the occluded region, whole-face SSIM, mask IoU).

Every model is one run folder (docs/runs.md) named by the script: ``<out>/seed<s>/R_clean``, ``.../R``,
``.../R_occ``, ``.../R_restorer``, ``.../R_mask``, ``.../R_clean_other`` and the restorer's
``<out>/seed<s>/restoration`` (``--run.root``, ``--run.experiment``, ``--run.name``). Each model is loaded from the
best checkpoint its ``run.json`` names (the restorer's is ``checkpoints/restorer.ckpt``), and R+restorer and R+mask
are given that seed's restorer checkpoint explicitly. Finished runs are reused and interrupted ones resumed
(``--ckpt_path last``).

It writes ``summary.json`` and ``summary.md`` (mean ± std over seeds, overall and per kind) and
``per_seed.json`` to ``--out``.

Usage:
  python benchmarks/occlusion_restoration.py --out runs/occlusion_benchmark --seeds 0 1 2
  python benchmarks/occlusion_restoration.py --out runs/occlusion_benchmark --seeds 0 1 2 --report-only
  python benchmarks/occlusion_restoration.py --out runs/occlusion_benchmark --seeds 0 --fills mean_colour mirror
  python benchmarks/occlusion_restoration.py --out runs/occlusion_benchmark_recipe --seeds 0 1 2 \
    --recogniser-config configs/overlays/face_recipe.yaml     # every recogniser with issue 18's recipe
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from multimodal_fer.benchmarking.run_lookup import best_checkpoint, run_folder_arguments, run_state
from multimodal_fer.models.restoration import TRIVIAL_FILLS
from multimodal_fer.run_folder import RUN_FOLDER_ENVIRONMENT

REPO = Path(__file__).resolve().parents[1]
RESTORATION_CONFIG = REPO / "configs/restoration/synthaffect.yaml"
FER_CONFIG = REPO / "configs/quickstart.yaml"
FACE_ONLY_OVERLAY = REPO / "configs/overlays/fusion_concat.yaml"
RESTORER_OVERLAY = REPO / "configs/overlays/face_restorer.yaml"
MASK_AWARE_OVERLAY = REPO / "configs/overlays/face_mask_aware.yaml"
#: Overlays that load the seed's restorer: their recognisers are trained after it.
BEHIND_RESTORER = (str(RESTORER_OVERLAY), str(MASK_AWARE_OVERLAY))
#: The restorer's run folder in a seed's folder.
RESTORER_RUN = "restoration"
#: The key of the overlays of :data:`BEHIND_RESTORER` that names the restorer checkpoint stage 2 loads.
RESTORER_CHECKPOINT_KEY = "model.init_args.encoders.face.init_args.restorer.init_args.checkpoint"
ALL_CONDITIONS = ("clean", "occluded", "restored", "restored_true_mask")
#: Trivial fills evaluated behind the restorer's masks (``--fills``); each adds ``restored_<fill>`` and
#: ``restored_<fill>_true_mask`` to every recogniser evaluated on ``restored``.
FILLS: list[str] = ["mean_colour", "telea", "navier_stokes", "mirror"]


@dataclass(frozen=True)
class Recogniser:
    """A face-only recogniser of the benchmark.

    Attributes:
        label: name in the tables.
        extra: ``mfer fit`` arguments beyond the shared face-only ones.
        conditions: inputs it is evaluated on.
        seed_offset: added to the benchmark seed (another initialisation and data order).
        reference: recogniser whose clean and occluded scores its recovery is set against.
    """

    label: str
    extra: tuple[str, ...]
    conditions: tuple[str, ...] = ALL_CONDITIONS
    seed_offset: int = 0
    reference: str = ""


#: Run folder → recogniser (those behind the restorer are trained after it).
RECOGNISERS: dict[str, Recogniser] = {
    "R_clean": Recogniser("R-clean", ("--data.init_args.clean_faces=true",)),
    "R": Recogniser("R", ()),
    "R_occ": Recogniser("R-occ", ("--data.init_args.online_occlusion_probability=1.0",)),
    "R_restorer": Recogniser("R+restorer", ("--config", str(RESTORER_OVERLAY)), ("clean", "occluded"), reference="R"),
    "R_mask": Recogniser("R+mask", ("--config", str(MASK_AWARE_OVERLAY)), ("clean", "occluded"), reference="R"),
}
CRITIC = "R_clean"
#: Evaluated only with a guided restorer: a clean-face recogniser the restorer never saw.
INDEPENDENT = {"R_clean_other": Recogniser("R-clean′", ("--data.init_args.clean_faces=true",), seed_offset=1000)}


def run(command: list[str]) -> None:
    """Run an ``mfer`` command from the repository root, W&B off."""
    print(f"[occlusion] mfer {' '.join(command)}", flush=True)
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop(RUN_FOLDER_ENVIRONMENT, None)  # set only for the processes an mfer command starts itself
    subprocess.run([sys.executable, "-m", "multimodal_fer", *command], cwd=REPO, check=True, env=env)


def fit(folder: Path, arguments: list[str]) -> None:
    """``mfer fit`` into the run folder ``folder`` unless it finished before (resuming an interrupted one).

    The recognisers' own tests play no part here (every figure comes from :func:`evaluate_seed`), so a fit counts
    as finished once ``run.json`` records its best checkpoint.
    """
    state = run_state(folder, condition=None)
    if state == "finished":
        return
    resume = ["--ckpt_path=last"] if state == "resumable" else []
    run(["fit", *arguments, *run_folder_arguments(folder), *resume])


def train(seed: int, out: Path, data_root: Path, options: argparse.Namespace) -> Path:
    """Train the recognisers and the restorer of one seed (reusing finished runs); returns the seed's folder."""
    folder = out / f"seed{seed}"
    common = [f"--data.init_args.root={data_root}", "--trainer.logger=false"]
    fer_epochs = [f"--trainer.max_epochs={options.fer_epochs}"] if options.fer_epochs else []  # T_max follows
    behind_restorer = {name for name, r in RECOGNISERS.items() if set(BEHIND_RESTORER) & set(r.extra)}

    def fit_recogniser(name: str) -> None:
        recogniser = RECOGNISERS[name]
        restorer = []
        if name in behind_restorer:  # this seed's restorer, not the overlay's runs/restoration/latest
            restorer = [f"--{RESTORER_CHECKPOINT_KEY}={best_checkpoint(folder / RESTORER_RUN)}"]
        fit(
            folder / name,
            [
                *("--config", str(FER_CONFIG), "--config", str(FACE_ONLY_OVERLAY)),
                *(argument for config in options.recogniser_config for argument in ("--config", str(config))),
                *recogniser.extra,
                *restorer,
                f"--seed_everything={seed + recogniser.seed_offset}",
                *common,
                "--data.init_args.modalities=[face]",
                *fer_epochs,
            ],
        )

    for name in RECOGNISERS:
        if name not in behind_restorer:
            fit_recogniser(name)
    restoration = ["--config", str(RESTORATION_CONFIG), f"--seed_everything={seed}", *common]
    if options.restoration_epochs:
        restoration.append(f"--trainer.max_epochs={options.restoration_epochs}")
    if options.guided:
        restoration.append(f"--model.init_args.recogniser_critic={best_checkpoint(folder / CRITIC)}")
    fit(folder / RESTORER_RUN, restoration)
    for name in sorted(behind_restorer):
        fit_recogniser(name)
    return folder


def load_recogniser(folder: Path, run_name: str) -> torch.nn.Module:
    """A recogniser of a seed (one of :data:`RECOGNISERS`): the model of its best checkpoint, in eval mode."""
    from multimodal_fer.tasks.recogniser_loading import load_fer_model

    model, _ = load_fer_model(best_checkpoint(folder / run_name))  # R+restorer's config names its restorer by path
    return model


@torch.no_grad()
def evaluate_seed(folder: Path, split_root: Path, batch_size: int = 128) -> dict:
    """Metrics of every condition (with every fill of :data:`FILLS`), overall and per occlusion kind, for one seed."""
    from torchmetrics.classification import MulticlassF1Score, MultilabelF1Score

    from multimodal_fer.datamodules.device_transforms import face_statistics, normalize_face, restandardize
    from multimodal_fer.metrics import RestorationMetrics
    from multimodal_fer.models.restoration import load_restorer
    from multimodal_fer.occlusion import OCCLUSION_TYPES
    from multimodal_fer.preprocessing.cache import CacheReader
    from multimodal_fer.tasks.occlusion_restoration import to_unit_range

    recognisers = {name: load_recogniser(folder, name) for name in RECOGNISERS}
    restorer = load_restorer(best_checkpoint(folder / RESTORER_RUN))
    split = CacheReader(split_root)
    types = np.asarray(split.array("occlusion_type"))
    groups = {"all": np.arange(types.size)} | {k: np.flatnonzero(types == i) for i, k in enumerate(OCCLUSION_TYPES)}
    label_space = recognisers[CRITIC].label_space
    num_classes, num_aus = label_space.num_expressions, label_space.num_action_units
    runs = [f"{name}/{condition}" for name, recogniser in RECOGNISERS.items() for condition in conditions(recogniser)]
    predictions: dict[str, list[torch.Tensor]] = {run: [] for run in runs}
    au_predictions: dict[str, list[torch.Tensor]] = {run: [] for run in runs}
    fills = ("generator", *FILLS)
    restoration = {(k, fill): RestorationMetrics("test") for k in groups for fill in fills}
    for start in range(0, types.size, batch_size):
        rows = slice(start, start + batch_size)
        occluded_u8 = torch.from_numpy(np.array(split.array("face")[rows]))
        clean_u8 = torch.from_numpy(np.array(split.array("face_clean")[rows]))
        true_mask = torch.from_numpy(np.array(split.array("occlusion_mask")[rows])).float()
        statistics_occluded = face_statistics(occluded_u8)
        occluded = normalize_face(occluded_u8, statistics_occluded)
        restorer.fill = "generator"
        blind = restorer(occluded)
        given = restorer(occluded, true_mask)
        inputs = {
            "clean": normalize_face(clean_u8),
            "occluded": occluded,  # R+restorer and R+mask restore or mask these inside their face encoders
            "restored": restandardize(blind["restored"]),
            "restored_true_mask": restandardize(given["restored"]),
        }
        blind_by_fill = {"generator": blind["restored"]}
        for fill in FILLS:  # the same mask network, thresholds and compositing; another fill
            restorer.fill = fill
            blind_by_fill[fill] = restorer(occluded)["restored"]
            inputs[f"restored_{fill}"] = restandardize(blind_by_fill[fill])
            inputs[f"restored_{fill}_true_mask"] = restandardize(restorer(occluded, true_mask)["restored"])
        present = {"face": torch.ones(occluded.shape[0], dtype=torch.bool)}
        for run in runs:
            name, condition = run.split("/")
            outputs = recognisers[name]({"face": inputs[condition]}, present).heads
            predictions[run].append(outputs["expr"].argmax(dim=-1))
            au_predictions[run].append((outputs["au"] > 0).long())
        unit_occluded = to_unit_range(occluded, *statistics_occluded)
        unit_clean = clean_u8.float() / 255.0
        for fill, restored in blind_by_fill.items():
            unit_restored = to_unit_range(restored, *statistics_occluded)
            for name, index in groups.items():
                keep = torch.from_numpy(np.isin(np.arange(start, start + occluded.shape[0]), index))
                if keep.any():
                    restoration[name, fill].update(
                        unit_restored[keep], unit_occluded[keep], unit_clean[keep], true_mask[keep], blind["mask"][keep]
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
        for fill in fills:  # the generator's under the plain names, a fill's under fill/<fill>/...
            prefix = "" if fill == "generator" else f"fill/{fill}/"
            for key, value in restoration[name, fill].compute().items():
                if fill == "generator" or key.startswith("test/restoration/"):
                    entry[prefix + key.removeprefix("test/")] = float(value)
        result[name] = entry
    return result


def conditions(recogniser: Recogniser) -> tuple[str, ...]:
    """The inputs a recogniser is evaluated on: its own conditions, plus every fill's where it sees restored faces."""
    if "restored" not in recogniser.conditions:
        return recogniser.conditions
    fills = [f"restored_{fill}{mask}" for fill in FILLS for mask in ("", "_true_mask")]
    return (*recogniser.conditions, *fills)


def recoveries() -> dict[str, tuple[str, str]]:
    """Recovery figures: name → (run with restoration, recogniser whose clean and occluded scores it is set against)."""
    found: dict[str, tuple[str, str]] = {}
    for name, recogniser in RECOGNISERS.items():
        if recogniser.reference:
            found[name] = (f"{name}/occluded", recogniser.reference)
            continue
        for condition in conditions(recogniser):
            if condition.startswith("restored"):
                found[f"{name}_{condition}"] = (f"{name}/{condition}", name)
    return found


@torch.no_grad()
def example_figure(folder: Path, split_root: Path, output: Path, per_kind: int = 2) -> None:
    """Draw occluded | mask used | restored (blind) | clean for the first faces of every kind in the split."""
    from torchvision.utils import save_image

    from multimodal_fer.callbacks.restoration_grid import restoration_grid
    from multimodal_fer.datamodules.device_transforms import face_statistics, normalize_face
    from multimodal_fer.models.restoration import load_restorer
    from multimodal_fer.preprocessing.cache import CacheReader
    from multimodal_fer.tasks.occlusion_restoration import to_unit_range

    restorer = load_restorer(best_checkpoint(folder / RESTORER_RUN))
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
    """Mean, std and per-seed values of every number, per group, plus the recovery shares."""
    first = per_seed[next(iter(per_seed))]
    shares = recoveries()
    summary: dict[str, dict] = {}
    for group in first:
        summary[group] = {}
        recovery_keys = [f"recovered/{name}/{m}" for name in shares for m in ("expr_f1_macro", "au_f1_mean")]
        # Seeds evaluated before a condition existed (e.g. the fills) leave it out of the summary.
        measured = [key for key in first[group] if all(key in per_seed[s][group] for s in per_seed)]
        runs = {key.rsplit("/", 1)[0] for key in measured}
        for key in [*measured, *recovery_keys]:
            if key.startswith("recovered/"):
                _, name, metric = key.split("/")
                if shares[name][0] not in runs:
                    continue
                values = [recovered(per_seed[s][group], metric, *shares[name]) for s in per_seed]
            else:
                values = [float(per_seed[s][group][key]) for s in per_seed]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[group][key] = {"mean": statistics.fmean(values), "std": std, "n": len(values), "values": values}
    return summary


def markdown(summary: dict) -> str:
    """Headline tables (all faces, every recogniser), per-kind tables, and the restoration-quality table."""

    def cell(group: str, key: str, digits: int = 3) -> str:
        value = summary[group].get(key)
        if value is None:
            return "–"
        if value["n"] == 1:
            return f"{value['mean']:.{digits}f}"
        return f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"

    def reached(group: str, key: str) -> str:
        value = summary[group].get(key)
        if value is None:
            return "–"
        return f"{sum(v >= 0.5 for v in value['values'])}/{value['n']}"

    seeds = summary["all"]["faces"]["n"]
    lines = [
        f"SynthAffect test subjects, every test face once with every occlusion kind; {seeds} seeds, mean ± std.",
        "Face-only recognisers (quickstart settings, MLP head). R-clean: trained on unoccluded faces; R: on the faces",
        "as generated (30 % occluded); R-occ: with an occluder on every training face; R+restorer: R's recipe trained",
        "behind the frozen restorer; R+mask: R's recipe with the restorer's predicted mask as a 4th input channel."
        + (
            " The restorer was guided by R-clean (its frozen critic); R-clean′ is R-clean's recipe with another"
            " seed, never seen by the restorer."
            if "R_clean_other" in RECOGNISERS
            else " The restorer trained its own critic (not guided by any recogniser here)."
        ),
        "'restored' = blind restoration (predicted masks); 'true mask' = the generator given the true mask.",
        "rec. = recovered share of the occlusion cost, (restored − occluded) / (clean − occluded) for the same",
        "recogniser; '≥ ½' = seeds in which rec. reaches 0.5. R+restorer and R+mask restore or mask the occluded faces",
        "themselves (their 'restored' column); their rec. is set against R's clean and occluded scores.",
    ]
    for metric, title in (("expr_f1_macro", "Expression macro-F1"), ("au_f1_mean", "AU mean F1")):
        lines += [
            "",
            f"{title}, all occluded test faces:",
            "",
            "| recogniser | clean | occluded | restored | rec. | ≥ ½ | true mask | rec. | ≥ ½ |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, recogniser in RECOGNISERS.items():
            if recogniser.reference:
                row = [
                    cell("all", f"{name}/clean/{metric}"),
                    "–",
                    cell("all", f"{name}/occluded/{metric}"),
                    cell("all", f"recovered/{name}/{metric}", 2),
                    reached("all", f"recovered/{name}/{metric}"),
                    "–",
                    "–",
                    "–",
                ]
            else:
                row = [cell("all", f"{name}/{c}/{metric}") for c in ("clean", "occluded", "restored")]
                row += [
                    cell("all", f"recovered/{name}_restored/{metric}", 2),
                    reached("all", f"recovered/{name}_restored/{metric}"),
                    cell("all", f"{name}/restored_true_mask/{metric}"),
                    cell("all", f"recovered/{name}_restored_true_mask/{metric}", 2),
                    reached("all", f"recovered/{name}_restored_true_mask/{metric}"),
                ]
            lines.append(f"| {recogniser.label} | " + " | ".join(row) + " |")
    if FILLS:
        fill_names = " | ".join(FILLS)
        for metric, title in (("expr_f1_macro", "Expression macro-F1"), ("au_f1_mean", "AU mean F1")):
            lines += [
                "",
                f"{title} behind the same masks, by fill (generator = the restorer's; all occluded test faces):",
                "",
                f"| recogniser | masks | occluded | generator | {fill_names} |",
                "|---|---|---|---|" + "---|" * len(FILLS),
            ]
            for name, recogniser in RECOGNISERS.items():
                if "restored" not in recogniser.conditions:
                    continue
                for masks, suffix in (("predicted", ""), ("true", "_true_mask")):
                    row = [cell("all", f"{name}/occluded/{metric}"), cell("all", f"{name}/restored{suffix}/{metric}")]
                    row += [cell("all", f"{name}/restored_{fill}{suffix}/{metric}") for fill in FILLS]
                    lines.append(f"| {recogniser.label} | {masks} | " + " | ".join(row) + " |")
    for metric, title in (("expr_f1_macro", "Expression macro-F1"), ("au_f1_mean", "AU mean F1")):
        for name, recogniser in RECOGNISERS.items():
            if recogniser.reference or (metric == "au_f1_mean" and name != CRITIC):
                continue
            lines += [
                "",
                f"{title} per occlusion kind, {recogniser.label} (clean: {cell('all', f'{name}/clean/{metric}')}):",
                "",
                "| occlusion | occluded | restored | rec. | true mask | rec. |",
                "|---|---|---|---|---|---|",
            ]
            for group in summary:
                if group == "all":
                    continue
                row = [
                    cell(group, f"{name}/occluded/{metric}"),
                    cell(group, f"{name}/restored/{metric}"),
                    cell(group, f"recovered/{name}_restored/{metric}", 2),
                    cell(group, f"{name}/restored_true_mask/{metric}"),
                    cell(group, f"recovered/{name}_restored_true_mask/{metric}", 2),
                ]
                lines.append(f"| {group} | " + " | ".join(row) + " |")
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
    if FILLS:
        lines += [
            "",
            "PSNR (dB) over the occluded region by fill, behind the same predicted masks; SSIM over the whole face:",
            "",
            "| occlusion | input | generator | "
            + " | ".join(FILLS)
            + " | SSIM generator | "
            + " | ".join(f"SSIM {fill}" for fill in FILLS)
            + " |",
            "|---|---|---|" + "---|" * (2 * len(FILLS) + 1),
        ]
        for group in summary:
            row = [cell(group, "restoration/psnr_occluded_input", 2), cell(group, "restoration/psnr_occluded", 2)]
            row += [cell(group, f"fill/{fill}/restoration/psnr_occluded", 2) for fill in FILLS]
            row += [cell(group, "restoration/ssim_face")]
            row += [cell(group, f"fill/{fill}/restoration/ssim_face") for fill in FILLS]
            lines.append(f"| {group} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/occlusion_benchmark")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-root", default="data/synthaffect", help="SynthAffect cache of configs/quickstart.yaml")
    parser.add_argument("--fer-epochs", type=int, default=None, help="override the recogniser's epochs")
    parser.add_argument("--restoration-epochs", type=int, default=None, help="override the restorer's epochs")
    parser.add_argument(
        "--guided", action="store_true", help="R-clean, frozen, is the restorer's critic (recogniser_critic)"
    )
    parser.add_argument(
        "--fills",
        nargs="*",
        default=FILLS,
        choices=list(TRIVIAL_FILLS),
        help="trivial fills evaluated behind the restorer's masks (none: --fills with no names)",
    )
    parser.add_argument(
        "--recogniser-config",
        action="append",
        default=[],
        metavar="YAML",
        help="an overlay composed into every recogniser's fit after the face-only one, e.g. "
        "configs/overlays/face_recipe.yaml (repeatable; use another --out, finished runs are reused)",
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the tables from per_seed.json")
    parser.add_argument("--figure", default=None, help="also draw restored examples of the first seed to this PNG")
    args = parser.parse_args()
    if args.guided:
        RECOGNISERS.update(INDEPENDENT)
    FILLS[:] = args.fills
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_root = Path(args.data_root).resolve()
    split_root = Path(f"{data_root}_occluded_test")
    per_seed_path = out / "per_seed.json"
    per_seed: dict[int, dict] = (
        {int(k): v for k, v in json.loads(per_seed_path.read_text()).items()} if per_seed_path.exists() else {}
    )
    if not args.report_only:
        run(["prepare", "--config", str(FER_CONFIG), f"--data.init_args.root={data_root}"])
        if not (split_root / "manifest.json").exists():
            run(
                [
                    "occlusion-split",
                    *("--config", str(FER_CONFIG), f"--data.init_args.root={data_root}", "--split", "test"),
                ]
            )
        for seed in args.seeds:
            folder = train(seed, out, data_root, args)
            per_seed[seed] = evaluate_seed(folder, split_root)
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
