"""How well do the trivial fills restore occluded faces given the true masks? No training, seconds on a CPU.

For every occluded face of a face cache with ``face_clean`` and ``occlusion_mask`` (SynthAffect's, or an occlusion
split written by ``mfer occlusion-split``), each trivial fill of
:mod:`multimodal_fer.models.restoration.fills` fills the true mask and is composited as the restorer composites
(visible pixels unchanged). Printed per fill and occlusion kind: PSNR (dB) over the occluded region against the clean
face, whole-face SSIM, and milliseconds per face. The generator's figures with the same masks are the
``restored_true_mask`` condition of ``benchmarks/occlusion_restoration.py``.

Usage:
  python benchmarks/trivial_fills.py --data-root data/synthaffect
  python benchmarks/trivial_fills.py --data-root data/synthaffect_occluded_test --limit 1000 --out fills.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from multimodal_fer.metrics import RestorationMetrics
from multimodal_fer.models.restoration import TRIVIAL_FILLS, trivial_fill
from multimodal_fer.occlusion import OCCLUSION_TYPES
from multimodal_fer.preprocessing.cache import CacheReader
from multimodal_fer.standardization import face_statistics, normalize_face


def measure(root: Path, fills: list[str], radius: int = 3, limit: int | None = None, batch_size: int = 256) -> dict:
    """Fill quality and time per fill, overall (``all``) and per occlusion kind.

    Args:
        root: a face cache with ``face``, ``face_clean``, ``occlusion_mask`` and ``occlusion_type`` fields.
        fills: names from :data:`~multimodal_fer.models.restoration.TRIVIAL_FILLS`.
        radius: the OpenCV fills' inpainting radius in pixels.
        limit: use the first ``limit`` occluded faces only.
        batch_size: faces per batch.

    Returns:
        ``{fill: {group: {"faces", "psnr_occluded", "psnr_occluded_input", "ssim_face", "ms_per_face"}}}``.
    """
    cache = CacheReader(root)
    types = np.asarray(cache.array("occlusion_type"))
    rows = np.flatnonzero(types >= 0)[:limit]
    if rows.size == 0:
        raise SystemExit(f"{root} holds no occluded faces (occlusion_type >= 0); nothing to fill.")
    kinds = types[rows]
    groups = {"all": np.ones(rows.size, dtype=bool)} | {
        kind: kinds == index for index, kind in enumerate(OCCLUSION_TYPES) if (kinds == index).any()
    }
    metrics = {(fill, group): RestorationMetrics("test") for fill in fills for group in groups}
    seconds = dict.fromkeys(fills, 0.0)
    for start in range(0, rows.size, batch_size):
        chosen = rows[start : start + batch_size]
        occluded_u8 = torch.from_numpy(np.array(cache.array("face")[chosen]))
        clean = torch.from_numpy(np.array(cache.array("face_clean")[chosen])).float() / 255.0
        mask = torch.from_numpy(np.array(cache.array("occlusion_mask")[chosen])).float()
        mask = mask / 255.0 if mask.max() > 1 else mask
        mean, std = face_statistics(occluded_u8)
        face = normalize_face(occluded_u8, (mean, std))
        unit_occluded = occluded_u8.float() / 255.0
        for fill in fills:
            began = time.perf_counter()
            restored = face * (1.0 - mask) + trivial_fill(face, mask, fill, radius) * mask
            seconds[fill] += time.perf_counter() - began
            unit = (restored * std + mean).clamp(0.0, 1.0)
            for group, member in groups.items():
                keep = torch.from_numpy(member[start : start + batch_size])
                if keep.any():
                    metrics[fill, group].update(unit[keep], unit_occluded[keep], clean[keep], mask[keep], mask[keep])
    result: dict[str, dict] = {}
    for fill in fills:
        result[fill] = {}
        for group, member in groups.items():
            values = metrics[fill, group].compute()
            result[fill][group] = {
                "faces": int(member.sum()),
                "psnr_occluded": float(values["test/restoration/psnr_occluded"]),
                "psnr_occluded_input": float(values["test/restoration/psnr_occluded_input"]),
                "ssim_face": float(values["test/restoration/ssim_face"]),
            }
        result[fill]["all"]["ms_per_face"] = 1000.0 * seconds[fill] / rows.size
    return result


def markdown(result: dict) -> str:
    """PSNR of the occluded region per kind (rows) and fill (columns), then SSIM and time per face."""
    fills = list(result)
    groups = list(result[fills[0]])
    lines = [
        "PSNR (dB) over the occluded region, true masks; *input* = the occluded face itself.",
        "",
        "| occlusion | faces | input | " + " | ".join(fills) + " |",
        "|---|---|---|" + "---|" * len(fills),
    ]
    for group in groups:
        first = result[fills[0]][group]
        cells = [f"{result[fill][group]['psnr_occluded']:.2f}" for fill in fills]
        lines.append(f"| {group} | {first['faces']} | {first['psnr_occluded_input']:.2f} | " + " | ".join(cells) + " |")
    ssim = " | ".join(f"{result[fill]['all']['ssim_face']:.3f}" for fill in fills)
    speed = " | ".join(f"{result[fill]['all']['ms_per_face']:.3f}" for fill in fills)
    lines += ["", "| all faces | " + " | ".join(fills) + " |", "|---|" + "---|" * len(fills)]
    lines += [f"| SSIM face | {ssim} |", f"| ms per face (CPU) | {speed} |"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="data/synthaffect", help="a face cache with clean faces and masks")
    parser.add_argument("--fills", nargs="+", default=list(TRIVIAL_FILLS), choices=list(TRIVIAL_FILLS))
    parser.add_argument("--radius", type=int, default=3, help="inpainting radius of telea and navier_stokes")
    parser.add_argument("--limit", type=int, default=None, help="use the first N occluded faces only")
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    result = measure(Path(args.data_root), args.fills, args.radius, args.limit)
    print(markdown(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
