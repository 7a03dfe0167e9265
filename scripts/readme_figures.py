"""Write the README's table of the main job's figures from the job's own results files.

After the README's first command::

    .venv/bin/python scripts/readme_figures.py            # rewrites the block in README.md, prints it
    .venv/bin/python scripts/readme_figures.py --check    # exit 1 if README.md's figures differ from the files'

``--check`` compares the figures, not the provenance: a rerun on another commit that reproduces every figure passes,
and the check says which commits the README and the results files name. Any other difference is printed line by line.

The block between ``<!-- main-job-figures -->`` and ``<!-- /main-job-figures -->`` is replaced with the figures of
the main job's results file (``--recognition``, by default :data:`MAIN_JOB_RESULTS`), with the commit, the machine
and the thread count it recorded. The table's row says how the job's face encoder meets occluded faces, read from the
config the results file recorded (a restorer in front of it, fine-tuned end to end with the recogniser or frozen,
occlusion augmentation of its training faces, or neither). Where the face encoder has a restorer, the restoration
stage's results file (``--restoration``, by default ``runs/restoration/latest/results-test.json``) adds its figures,
and a job that fine-tuned the restorer adds the fine-tuned restorer's, from its own results file. Nothing is typed by
hand.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

START = "<!-- main-job-figures -->"
END = "<!-- /main-job-figures -->"

#: The recognition columns: (header, metric of stage 2's results file).
RECOGNITION_COLUMNS = (
    ("expr macro-F1", "test/expr/f1_macro"),
    ("expr accuracy", "test/expr/accuracy"),
    ("AU mean F1", "test/au/f1_mean"),
    ("CCC valence", "test/va/ccc_valence"),
    ("CCC arousal", "test/va/ccc_arousal"),
)


#: The README's line width for prose.
LINE_WIDTH = 115
#: The results file of the README's main job (its first command).
MAIN_JOB_RESULTS = Path("runs/quickstart-restorer-joint/latest/results-test.json")
#: The restoration stage's results file, read when the main job's face encoder has a restorer.
RESTORATION_RESULTS = Path("runs/restoration/latest/results-test.json")
#: The task of stage 3, which fine-tunes the recogniser and its restorer together.
JOINT_TASK = "JointRestorationFERTask"
#: The face path of a job whose restorer was fine-tuned with the recogniser (stage 3).
JOINT_FACE_PATH = "restorer fine-tuned with the recogniser"


#: A commit as the block names it: a short sha in backticks, perhaps marked as made with uncommitted changes.
COMMIT_PATTERN = re.compile(r"`[0-9a-f]{7}(?: with uncommitted changes)?`")


class FiguresError(Exception):
    """A results file or the README's figures block is missing or malformed."""


def read_results(path: Path) -> dict[str, Any]:
    """One results file, refused by name if missing or without metrics."""
    if not path.is_file():
        raise FiguresError(
            f"{path} does not exist: run the README's first command (or pass --recognition/--restoration)."
        )
    results = json.loads(path.read_text())
    if not results.get("metrics"):
        raise FiguresError(f"{path} holds no metrics; is it a results file of `mfer test`?")
    return results


def metric(results: dict[str, Any], name: str, path: Path) -> float:
    """A metric of a results file, refused by name when absent or not a number."""
    value = results["metrics"].get(name)
    if not isinstance(value, int | float):
        raise FiguresError(f"{path} has no number for {name} (found {value!r}).")
    return float(value)


def machine(results: dict[str, Any]) -> str:
    """The machine a results file was measured on: CPU or GPU, thread count, torch build."""
    environment = results.get("environment", {})
    device = environment.get("device", "cpu")
    if device == "cpu":
        device = environment.get("cpu_model") or environment.get("cpu") or "unknown CPU"
        capability = environment.get("cpu_capability")
        if capability:
            device = f"{device} ({capability})"
    threads = environment.get("torch_threads")
    parts = [device, f"{threads} torch threads" if threads else None, f"torch {environment.get('torch', '?')}"]
    return ", ".join(part for part in parts if part)


def commit(results: dict[str, Any]) -> str:
    """The short commit a results file was made at, marked when the tree had uncommitted changes."""
    git = results.get("git") or {}
    sha = (git.get("sha") or "unknown")[:7]
    return f"{sha} with uncommitted changes" if git.get("dirty") else sha


def face_path(results: dict[str, Any]) -> str:
    """How the job's face encoder meets occluded faces, from the config its results file recorded."""
    config = results.get("config") or {}
    face = (((config.get("model") or {}).get("init_args") or {}).get("encoders") or {}).get("face") or {}
    if (face.get("init_args") or {}).get("restorer"):
        joint = str((config.get("model") or {}).get("class_path") or "").endswith(JOINT_TASK)
        return JOINT_FACE_PATH if joint else "restorer"
    probability = ((config.get("data") or {}).get("init_args") or {}).get("online_occlusion_probability") or 0.0
    if probability:
        return f"occlusion augmentation of {float(probability):.0%} of the training faces"
    return "no occlusion handling"


def modalities(results: dict[str, Any]) -> str:
    """The job's modalities in words: "all four modalities" or their names."""
    names = list(results.get("modalities") or [])
    return "all four modalities" if sorted(names) == ["audio", "depth", "face", "physio"] else " + ".join(names)


def figures_block(recognition_path: Path, restoration_path: Path | None = None) -> str:
    """The README block: the main job's recognition table (and its restoration stage's figures where it has one).

    Args:
        recognition_path: the main job's results file.
        restoration_path: the restoration stage's results file, read only when the job's face encoder has a
            restorer (default :data:`RESTORATION_RESULTS`).
    """
    recognition = read_results(recognition_path)
    path = face_path(recognition)
    values = [metric(recognition, name, recognition_path) for _, name in RECOGNITION_COLUMNS]
    split = recognition.get("data", {}).get("protocol", "the test split")
    intro = (
        f"The main job's `results-test.json` at `{commit(recognition)}` (seed {recognition.get('seed')}, "
        f"{split}; {machine(recognition)}), written into this README by `python scripts/readme_figures.py`:"
    )
    lines = [
        START,
        textwrap.fill(intro, width=LINE_WIDTH, break_on_hyphens=False, break_long_words=False),
        "",
        "| test metric | " + " | ".join(header for header, _ in RECOGNITION_COLUMNS) + " |",
        "|---|" + "---|" * len(RECOGNITION_COLUMNS),
        f"| main job: {path} + {modalities(recognition)} | " + " | ".join(f"{value:.3f}" for value in values) + " |",
    ]
    if path in ("restorer", JOINT_FACE_PATH):
        restoration_path = restoration_path or RESTORATION_RESULTS
        restoration = read_results(restoration_path)
        stage_1 = f"Stage 1's results file (`{commit(restoration)}`)"
        lines += ["", _restoration_line(restoration, restoration_path, stage_1)]
    if path == JOINT_FACE_PATH:
        lines += ["", _restoration_line(recognition, recognition_path, "After the joint fine-tuning (the same file)")]
    return "\n".join([*lines, END])


def _restoration_line(restoration: dict[str, Any], restoration_path: Path, source: str) -> str:
    """A results file's restoration figures in one wrapped sentence that starts with ``source``."""
    return textwrap.fill(
        f"{source}: occluded-region PSNR "
        f"{metric(restoration, 'test/restoration/psnr_occluded_input', restoration_path):.2f} → "
        f"{metric(restoration, 'test/restoration/psnr_occluded', restoration_path):.2f} dB, whole-face SSIM "
        f"{metric(restoration, 'test/restoration/ssim_face_input', restoration_path):.3f} → "
        f"{metric(restoration, 'test/restoration/ssim_face', restoration_path):.3f}, mask IoU "
        f"{metric(restoration, 'test/mask/iou', restoration_path):.3f} on the test split's occluded faces.",
        width=LINE_WIDTH,
        break_on_hyphens=False,
        break_long_words=False,
    )


def split_at_block(text: str) -> tuple[str, str, str]:
    """``text`` as (before, figures block with its markers, after); refused when the markers are not there once each."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise FiguresError(f"The README must hold one {START} ... {END} block (found it malformed or missing).")
    before, rest = text.split(START, 1)
    inside, after = rest.split(END, 1)
    return before, START + inside + END, after


def replace_block(text: str, block: str) -> str:
    """``text`` with its figures block replaced by ``block`` (see :func:`split_at_block` for what is refused)."""
    before, _, after = split_at_block(text)
    return before + block + after


def without_provenance(block: str) -> str:
    """``block`` with its commits replaced by one placeholder and its line breaks ignored, to compare figures only."""
    return " ".join(COMMIT_PATTERN.sub("`<commit>`", block).split())


def check(text: str, block: str, readme: Path) -> int:
    """0 when the README's block says what ``block`` says, perhaps at other commits; else 1 with the differences."""
    written = split_at_block(text)[1]
    if written == block:
        return 0
    if without_provenance(written) == without_provenance(block):
        print(
            f"{readme}'s figures are these results files' figures; only the commits differ "
            f"(README: {', '.join(COMMIT_PATTERN.findall(written))}; "
            f"results files: {', '.join(COMMIT_PATTERN.findall(block))}).",
            file=sys.stderr,
        )
        return 0
    difference = difflib.unified_diff(
        written.splitlines(), block.splitlines(), f"{readme} (now)", "from the results files", lineterm=""
    )
    print(f"{readme} differs from these results files:", *difference, sep="\n", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with ``--check`` compare) the README's figures block; print the block."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--recognition", type=Path, default=MAIN_JOB_RESULTS, help="the main job's results file")
    parser.add_argument(
        "--restoration",
        type=Path,
        default=None,
        help=f"the restoration stage's results file, where the main job has a restorer (default {RESTORATION_RESULTS})",
    )
    parser.add_argument(
        "--check", action="store_true", help="compare only; exit 1 when the README's figures differ (commits aside)"
    )
    arguments = parser.parse_args(argv)
    try:
        block = figures_block(arguments.recognition, arguments.restoration)
        text = arguments.readme.read_text()
        updated = replace_block(text, block)
    except FiguresError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(block)
    if arguments.check:
        return check(text, block, arguments.readme)
    arguments.readme.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
