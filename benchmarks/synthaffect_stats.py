"""Label and occlusion statistics of a SynthAffect cache, per split, as Markdown (for the data card).

Usage:
  python benchmarks/synthaffect_stats.py --config configs/quickstart.yaml
"""

from __future__ import annotations

import argparse

import numpy as np

from multimodal_fer.cli import build_cli
from multimodal_fer.datasets.synthaffect.labels import EXPRESSIONS_8, SYNTHAFFECT_AUS
from multimodal_fer.occlusion.synthesis import OCCLUSION_TYPES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/quickstart.yaml")
    args, overrides = parser.parse_known_args()
    cli = build_cli(["--config", args.config, *overrides, "--trainer.logger=false"], run=False)
    datamodule = cli.datamodule
    reader = datamodule.prepare()
    datamodule.setup()
    expr = np.asarray(reader.array("expr"))
    au = np.asarray(reader.array("au"))
    va = np.asarray(reader.array("va"))
    occlusion = np.asarray(reader.array("occlusion_type"))
    subjects = np.asarray(reader.array("subject"))
    print(f"cache {reader.root}, fingerprint {reader.fingerprint[:12]}, {reader.num_samples} samples\n")
    print("| split | subjects | samples | occluded |")
    print("|---|---|---|---|")
    for name, index in datamodule.splits.items():
        print(f"| {name} | {np.unique(subjects[index]).size} | {index.size} | {np.mean(occlusion[index] >= 0):.1%} |")
    print("\n| expression | share | valence mean ± sd | arousal mean ± sd | most frequent AUs (rate) |")
    print("|---|---|---|---|---|")
    for k, name in enumerate(EXPRESSIONS_8):
        rows = expr == k
        rates = au[rows].mean(0)
        top = [f"AU{SYNTHAFFECT_AUS[j]} ({rates[j]:.2f})" for j in np.argsort(-rates)[:4] if rates[j] > 0.1]
        v, a = va[rows, 0], va[rows, 1]
        print(
            f"| {name} | {rows.mean():.1%} | {v.mean():+.2f} ± {v.std():.2f} | {a.mean():+.2f} ± {a.std():.2f} | "
            f"{', '.join(top) or '–'} |"
        )
    print("\n| AU | " + " | ".join(str(n) for n in SYNTHAFFECT_AUS) + " |")
    print("|---|" + "---|" * len(SYNTHAFFECT_AUS))
    print("| base rate | " + " | ".join(f"{r:.2f}" for r in au.mean(0)) + " |")
    print("\n| occlusion | " + " | ".join(OCCLUSION_TYPES) + " | none |")
    print("|---|" + "---|" * (len(OCCLUSION_TYPES) + 1))
    counts = [int(np.sum(occlusion == i)) for i in range(len(OCCLUSION_TYPES))] + [int(np.sum(occlusion < 0))]
    print("| samples | " + " | ".join(str(c) for c in counts) + " |")


if __name__ == "__main__":
    main()
