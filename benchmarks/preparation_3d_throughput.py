"""3-D preparation throughput: Bosphorus ``.bnt`` scans and BU-3DFE ``.wrl`` meshes per second through the package's
cache builder (``FERDataModule.prepare``: read, triangulate, Open3D ray-cast depth map, voxel down-sampling, normals,
fixed-size point cloud), with 1 and N worker processes.

Scans are written in the real formats by the test generators (``tests/data/bosphorus``, ``tests/data/bu3dfe``) at
realistic sizes: a Bosphorus scan is a 240×200 grid at 0.8 mm (48,000 grid points, 32,000-37,000 of them valid,
near the ~35k points of the real processed scans; 1.9 MB per file), a BU-3DFE mesh a 2 mm grid of 5,200-6,600
vertices and 10,000-12,900 triangles (the reference's example file holds ~6,000 vertex lines).

    python benchmarks/preparation_3d_throughput.py --scans 64 --workers 1 2

``workers 1`` runs in this process; more start worker processes, whose start-up (importing torch, about ten seconds
on two cores) is inside the figure, as it is for ``mfer prepare``. Prints one JSON object per run and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fake raw file generators

from multimodal_fer.datamodules import FERDataModule  # noqa: E402
from multimodal_fer.datasets import BU3DFE, Bosphorus  # noqa: E402
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing  # noqa: E402

from data.bosphorus.generate import EXPRESSION_SHAPES, write_scan  # noqa: E402
from data.bu3dfe.generate import SHAPES, bnd_text, face_mesh, wrl_text  # noqa: E402

BOSPHORUS_GRID = (240, 200, 0.8)  # rows, columns, mm
BU3DFE_STEP = 2.0  # mm


def write_bosphorus(root: Path, count: int) -> None:
    """``count`` scans over 10 subjects, cycling neutral and the six emotions."""
    codes = [("N_N", "N"), *[(f"E_{code}", code) for code in EXPRESSION_SHAPES if code != "N"]]
    for i in range(count):
        subject = f"bs{i % 10:03d}"
        suffix, shape = codes[(i // 10) % len(codes)]
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        write_scan(folder, f"{subject}_{suffix}_{i // 70}", shape, 70.0 + i % 10, BOSPHORUS_GRID)


def write_bu3dfe(root: Path, count: int) -> None:
    """``count`` F3D meshes with 83-point ``.bnd`` files over 10 subjects, cycling the expressions and intensities."""
    codes = [code for code in SHAPES if code != "NE"]
    for i in range(count):
        subject = f"F{i % 10 + 1:04d}"
        k = i // 10
        code = "NE00WH" if k == 0 else f"{codes[(k - 1) % 6]}{(k - 1) // 6 % 4 + 1:02d}WH"
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        vertices, triangles = face_mesh(SHAPES[code[:2]], 70.0 + i % 10, BU3DFE_STEP)
        (folder / f"{subject}_{code}_F3D.wrl").write_text(wrl_text(vertices, triangles))
        (folder / f"{subject}_{code}_F3D.bnd").write_text(bnd_text(vertices))


def measure(name: str, datamodule: FERDataModule) -> dict:
    """Prepare a cache from scratch; report scans per second."""
    started = time.perf_counter()
    reader = datamodule.prepare()
    seconds = time.perf_counter() - started
    summary = datamodule.summary()
    return {
        "condition": name,
        "scans": reader.num_samples,
        "usable": summary.get("usable"),
        "failures": summary.get("failures"),
        "workers": datamodule.preparation_workers,
        "seconds": round(seconds, 2),
        "scans_per_second": round(reader.num_samples / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=64, help="scans of each data set")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--image-size", type=int, default=64, help="depth map side (the configs' 64)")
    parser.add_argument("--num-points", type=int, default=1024)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mfer_3d_bench_"))
    preprocessing = MediaPreprocessing(image_size=options.image_size, num_points=options.num_points)
    results = []
    try:
        write_bosphorus(work / "bosphorus", options.scans)
        write_bu3dfe(work / "bu3dfe", options.scans)
        conditions = [
            ("Bosphorus .bnt, 240x200 grid (32-37k valid points)", Bosphorus(), "bosphorus"),
            ("BU-3DFE .wrl, 5.2-6.6k vertices", BU3DFE(), "bu3dfe"),
        ]
        for workers in options.workers:
            for name, adapter, folder in conditions:
                datamodule = FERDataModule(
                    dataset=adapter,
                    raw_root=str(work / folder),
                    root=str(work / "cache" / f"{len(results)}"),
                    preprocessing=preprocessing,
                    preparation_workers=workers,
                    num_workers=0,
                )
                results.append(measure(name, datamodule))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for result in results:
        print(json.dumps(result))
    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; depth maps "
          f"{options.image_size}x{options.image_size}, {options.num_points} points\n")  # fmt: skip
    print("| condition | scans | workers | usable | seconds | scans/s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['condition']} | {r['scans']} | {r['workers']} | {r['usable']} | {r['seconds']} "
            f"| {r['scans_per_second']} |"
        )


if __name__ == "__main__":
    main()
