"""How much can fusing the modalities gain at all? Linear probes on the single-modality models' features.

For every seed of a ``benchmarks/fusion_ablation.py`` output folder, this script takes the four single-modality
runs (``seed<s>/single/<m>``), loads each run's encoder and feature norm from the best checkpoint its
``run.json`` names into one model (``multimodal_fer.tasks.encoder_initialisation.load_pretrained_encoder``), and
computes the features of every SynthAffect sample, fixed (eval mode, no augmentation). On the features of a subset
of modalities (concatenated, standardised with training statistics) it then fits linear probes on the training
subjects, chooses their regularisation on the validation subjects, and scores them on the held-out test subjects:

- arousal and valence: ridge regression (``sklearn.linear_model.Ridge``), scored by CCC;
- expression: multinomial logistic regression (``sklearn.linear_model.LogisticRegression``), scored by
  macro-F1.

A probe on one modality shows what its encoder's features hold; a probe on several shows what combining those
same features can add, without training any encoder further. The gap between the best single modality's probe
and the all-modality probe is the complementary information a fusion of these encoders could exploit. Tables
(mean ± std over seeds) are printed and written to ``<runs>/headroom.md`` and ``<runs>/headroom.json``.

Usage:
  python benchmarks/fusion_headroom.py --runs runs/fusion_ablation_v3 --seeds 0 1 2
  python benchmarks/fusion_headroom.py --runs runs/fusion_ablation_v2_physio_features --seeds 0 1 2 \
      --overlay configs/encoders/physio_cnn_features.yaml
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score

from multimodal_fer.benchmarking.run_lookup import best_checkpoint
from multimodal_fer.cli import build_cli
from multimodal_fer.metrics import concordance_correlation as ccc
from multimodal_fer.tasks.encoder_initialisation import load_pretrained_encoder

REPO = Path(__file__).resolve().parents[1]
MODALITIES = ("face", "audio", "depth", "physio")
#: Modality subsets probed: each modality alone, the two arousal-driven signals, the three expressive ones, all.
SUBSETS = (
    ("face",),
    ("audio",),
    ("depth",),
    ("physio",),
    ("audio", "physio"),
    ("face", "audio", "depth"),
    MODALITIES,
)
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
LOGISTIC_CS = (0.001, 0.01, 0.1, 1.0)
#: Score columns: key → title.
SCORES = {"expr_f1": "expr F1", "ccc_arousal": "CCC arousal", "ccc_valence": "CCC valence"}


def extract_features(runs: Path, seed: int, data_root: Path, overlays: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Fixed features of every split from the seed's single-modality encoders.

    Returns:
        ``{split: {modality: (N, D) features, "expr": (N,), "va": (N, 2)}}`` for train, val and test.
    """
    cli = build_cli(
        [
            "--config",
            str(REPO / "configs/quickstart.yaml"),
            *(arg for overlay in overlays for arg in ("--config", overlay)),
            f"--data.init_args.root={data_root}",
            "--data.init_args.num_workers=0",
            "--trainer.logger=false",
        ],
        run=False,
    )
    model, data = cli.model.model, cli.datamodule
    for modality in MODALITIES:
        checkpoint = best_checkpoint(runs / f"seed{seed}" / "single" / modality)
        print(f"[headroom] seed {seed}: {modality} from {checkpoint}", flush=True)
        load_pretrained_encoder(model, modality, checkpoint)
    model.eval()
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    keys = (*MODALITIES, *model.side_inputs())  # batch entries the encoders read
    splits: dict[str, dict[str, np.ndarray]] = {}
    for split in ("train", "val", "test"):
        parts: dict[str, list[np.ndarray]] = {key: [] for key in (*MODALITIES, "expr", "va")}
        with torch.no_grad():
            for batch in data.ordered_dataloader(split):
                batch = data.on_after_batch_transfer(batch, 0)
                features = model.encode({k: batch[k] for k in keys if k in batch}, batch["present"])
                for modality in MODALITIES:
                    parts[modality].append(features[modality].numpy())
                parts["expr"].append(batch["expr"].numpy())
                parts["va"].append(batch["va"].numpy())
        splits[split] = {key: np.concatenate(values) for key, values in parts.items()}
    return splits


def probe(splits: dict[str, dict[str, np.ndarray]], subset: tuple[str, ...]) -> dict[str, float]:
    """Test scores of linear probes on the concatenated features of ``subset`` (regularisation chosen on val)."""
    inputs = {split: np.concatenate([values[m] for m in subset], axis=1) for split, values in splits.items()}
    mean, std = inputs["train"].mean(axis=0), inputs["train"].std(axis=0) + 1e-6
    inputs = {split: (x - mean) / std for split, x in inputs.items()}
    scores: dict[str, float] = {}
    for column, name in ((0, "ccc_valence"), (1, "ccc_arousal")):
        targets = {split: values["va"][:, column] for split, values in splits.items()}
        fitted = [Ridge(alpha=alpha).fit(inputs["train"], targets["train"]) for alpha in RIDGE_ALPHAS]
        best = max(fitted, key=lambda r: float(ccc(r.predict(inputs["val"]), targets["val"])))
        scores[name] = float(ccc(best.predict(inputs["test"]), targets["test"]))
    labels = {split: values["expr"] for split, values in splits.items()}
    classifiers = [LogisticRegression(C=c, max_iter=2000).fit(inputs["train"], labels["train"]) for c in LOGISTIC_CS]
    best_classifier = max(classifiers, key=lambda c: f1_score(labels["val"], c.predict(inputs["val"]), average="macro"))
    scores["expr_f1"] = float(f1_score(labels["test"], best_classifier.predict(inputs["test"]), average="macro"))
    return scores


def markdown(per_seed: dict[int, dict[str, dict[str, float]]]) -> str:
    """Mean ± std over seeds of every subset's probe, and the all-modality probe's gain over the best single."""
    seeds = sorted(per_seed)

    def cell(values: list[float]) -> str:
        mean = statistics.fmean(values)
        return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"

    lines = [
        f"Linear probes on fixed single-modality features, {len(seeds)} seeds (mean ± std), SynthAffect test subjects.",
        "",
        "| features | " + " | ".join(SCORES.values()) + " |",
        "|---|" + "---|" * len(SCORES),
    ]
    for subset in SUBSETS:
        name = "+".join(subset)
        lines.append(f"| {name} | " + " | ".join(cell([per_seed[s][name][k] for s in seeds]) for k in SCORES) + " |")
    lines += ["", "| score | all four − best single (per seed) | seeds where all four is higher |", "|---|---|---|"]
    every = "+".join(MODALITIES)
    for key, title in SCORES.items():
        gains = [per_seed[s][every][key] - max(per_seed[s][m][key] for m in MODALITIES) for s in seeds]
        lines.append(f"| {title} | {cell(gains)} | {sum(g > 0 for g in gains)}/{len(seeds)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/fusion_ablation_v3", help="a fusion_ablation.py output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-root", default="data/synthaffect", help="SynthAffect cache of configs/quickstart.yaml")
    parser.add_argument(
        "--overlay", action="append", default=[], help="config composed after the quickstart, as in the runs"
    )
    args = parser.parse_args()
    runs, data_root = Path(args.runs).resolve(), Path(args.data_root).resolve()
    torch.manual_seed(0)
    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    for seed in args.seeds:
        splits = extract_features(runs, seed, data_root, [str(Path(o).resolve()) for o in args.overlay])
        per_seed[seed] = {"+".join(subset): probe(splits, subset) for subset in SUBSETS}
        print(f"[headroom] seed {seed}: {json.dumps(per_seed[seed])}", flush=True)
    table = markdown(per_seed)
    print(table)
    (runs / "headroom.json").write_text(json.dumps(per_seed, indent=2))
    (runs / "headroom.md").write_text(table)


if __name__ == "__main__":
    main()
