"""The README's figures block is written from results files by scripts/readme_figures.py, never by hand."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("readme_figures", REPO / "scripts" / "readme_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The main job's config as its results file records it: a restorer in front of the face encoder.
RESTORER_CONFIG = {
    "model": {"init_args": {"encoders": {"face": {"init_args": {"restorer": {"class_path": "PretrainedRestorer"}}}}}},
    "data": {"init_args": {"online_occlusion_probability": 0.0}},
}
#: The same without the restorer, half the training faces given a fresh occluder.
AUGMENTATION_CONFIG = {
    "model": {"init_args": {"encoders": {"face": {"init_args": {"restorer": None}}}}},
    "data": {"init_args": {"online_occlusion_probability": 0.5}},
}
#: Stage 3's config: the restorer fine-tuned together with the recogniser.
JOINT_CONFIG = {
    "model": {
        "class_path": "multimodal_fer.tasks.JointRestorationFERTask",
        "init_args": RESTORER_CONFIG["model"]["init_args"],
    },
    "data": {"init_args": {"online_occlusion_probability": 0.7}},
}
ALL_MODALITIES = ["face", "audio", "depth", "physio"]


def _results(
    path: Path,
    metrics: dict[str, float],
    sha: str = "abcdef0123456789",
    config: dict | None = None,
    modalities: list[str] | None = None,
) -> Path:
    environment = {"device": "cpu", "cpu_model": "Test CPU 9000", "cpu_capability": "AVX2", "torch_threads": 3}
    record = {
        "config": config or {},
        "modalities": modalities or ALL_MODALITIES,
        "metrics": metrics,
        "seed": 0,
        "git": {"sha": sha, "dirty": False},
        "data": {"protocol": "SubjectHoldout(val_subjects=8, test_subjects=12, seed=0)"},
        "environment": {**environment, "torch": "2.11.0"},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


RECOGNITION = {
    "test/expr/f1_macro": 0.4261,
    "test/expr/accuracy": 0.4364,
    "test/au/f1_mean": 0.5181,
    "test/va/ccc_valence": 0.3726,
    "test/va/ccc_arousal": 0.7614,
}
RESTORATION = {
    "test/restoration/psnr_occluded_input": 9.5839,
    "test/restoration/psnr_occluded": 16.1302,
    "test/restoration/ssim_face_input": 0.7373,
    "test/restoration/ssim_face": 0.7790,
    "test/mask/iou": 0.5908,
}


@pytest.fixture
def job(tmp_path: Path) -> list[str]:
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\nbefore\n\n<!-- main-job-figures -->\nold\n<!-- /main-job-figures -->\n\nafter\n")
    recognition = _results(tmp_path / "stage2" / "results-test.json", RECOGNITION, config=RESTORER_CONFIG)
    restoration = _results(tmp_path / "stage1" / "results-test.json", RESTORATION)
    return ["--readme", str(readme), "--recognition", str(recognition), "--restoration", str(restoration)]


def test_the_block_is_rewritten_from_the_results_files(job: list[str], tmp_path: Path) -> None:
    script = _script()
    assert script.main([*job, "--check"]) == 1  # "old" is not what the results files say
    assert script.main(job) == 0
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# title\n\nbefore\n\n<!-- main-job-figures -->\n") and text.endswith("\n\nafter\n")
    assert "| main job: restorer + all four modalities | 0.426 | 0.436 | 0.518 | 0.373 | 0.761 |" in text
    prose = " ".join(text.split())  # the prose is wrapped to the README's width
    assert "9.58 → 16.13 dB" in prose and "0.737 → 0.779" in prose and "mask IoU 0.591" in prose
    assert "`abcdef0`" in prose and "Test CPU 9000 (AVX2)" in prose and "3 torch threads" in prose
    assert script.main([*job, "--check"]) == 0
    changed = {**RECOGNITION, "test/va/ccc_arousal": 0.7}
    _results(tmp_path / "stage2" / "results-test.json", changed, sha="1234567aa", config=RESTORER_CONFIG)
    assert script.main([*job, "--check"]) == 1


def test_the_check_passes_a_rerun_that_reproduces_every_figure_at_another_commit(
    job: list[str], tmp_path: Path, capsys
) -> None:
    script = _script()
    assert script.main(job) == 0
    written = (tmp_path / "README.md").read_text()
    _results(tmp_path / "stage2" / "results-test.json", RECOGNITION, sha="fedcba9876", config=RESTORER_CONFIG)
    capsys.readouterr()
    assert script.main([*job, "--check"]) == 0
    assert "only the commits differ (README: `abcdef0`, `abcdef0`; results files: `fedcba9`, `abcdef0`)" in (
        capsys.readouterr().err
    )
    assert (tmp_path / "README.md").read_text() == written  # a check never writes
    _results(tmp_path / "stage2" / "results-test.json", {**RECOGNITION, "test/expr/f1_macro": 0.4262}, sha="fedcba9876")
    assert script.main([*job, "--check"]) == 1  # 0.426 is still 0.426, but the face path is no longer "restorer"
    error = capsys.readouterr().err
    assert "-| main job: restorer + all four modalities |" in error
    assert "+| main job: no occlusion handling + all four modalities |" in error
    _results(
        tmp_path / "stage2" / "results-test.json", {**RECOGNITION, "test/expr/f1_macro": 0.4271}, config=RESTORER_CONFIG
    )
    assert script.main([*job, "--check"]) == 1
    assert "+| main job: restorer + all four modalities | 0.427 |" in capsys.readouterr().err


def test_a_main_job_without_a_restorer_is_named_by_its_face_path(tmp_path: Path) -> None:
    script = _script()
    readme = tmp_path / "README.md"
    readme.write_text("<!-- main-job-figures -->\n<!-- /main-job-figures -->\n")
    recognition = _results(tmp_path / "job" / "results-test.json", RECOGNITION, config=AUGMENTATION_CONFIG)
    missing = tmp_path / "no-restoration-stage.json"  # not read: this job has no restorer
    assert script.main(["--readme", str(readme), "--recognition", str(recognition), "--restoration", str(missing)]) == 0
    text = readme.read_text()
    row = "| main job: occlusion augmentation of 50% of the training faces + all four modalities | 0.426 |"
    assert row in text and "PSNR" not in text
    _results(tmp_path / "job" / "results-test.json", RECOGNITION, config={}, modalities=["face", "audio"])
    assert script.main(["--readme", str(readme), "--recognition", str(recognition)]) == 0
    assert "| main job: no occlusion handling + face + audio | 0.426 |" in readme.read_text()


def test_a_jointly_fine_tuned_restorer_adds_its_own_restoration_figures(tmp_path: Path, capsys) -> None:
    script = _script()
    readme = tmp_path / "README.md"
    readme.write_text("<!-- main-job-figures -->\n<!-- /main-job-figures -->\n")
    restoration = _results(tmp_path / "stage1" / "results-test.json", RESTORATION)
    fine_tuned = {
        "test/restoration/psnr_occluded_input": 9.5839,
        "test/restoration/psnr_occluded": 15.0123,
        "test/restoration/ssim_face_input": 0.7373,
        "test/restoration/ssim_face": 0.7611,
        "test/mask/iou": 0.6502,
    }
    recognition = _results(
        tmp_path / "stage3" / "results-test.json", {**RECOGNITION, **fine_tuned}, config=JOINT_CONFIG
    )
    arguments = ["--readme", str(readme), "--recognition", str(recognition), "--restoration", str(restoration)]
    assert script.main(arguments) == 0
    text = readme.read_text()
    assert "| main job: restorer fine-tuned with the recogniser + all four modalities | 0.426 |" in text
    prose = " ".join(text.split())
    assert "Stage 1's results file (`abcdef0`): occluded-region PSNR 9.58 → 16.13 dB" in prose
    assert "After the joint fine-tuning (the same file): occluded-region PSNR 9.58 → 15.01 dB" in prose
    assert "0.737 → 0.761, mask IoU 0.650" in prose
    _results(tmp_path / "stage3" / "results-test.json", RECOGNITION, config=JOINT_CONFIG)  # no restoration figures
    assert script.main(arguments) == 2
    assert "no number for test/restoration/psnr_occluded_input" in capsys.readouterr().err


def test_missing_results_and_markers_are_refused_by_name(job: list[str], tmp_path: Path, capsys) -> None:
    script = _script()
    (tmp_path / "stage1" / "results-test.json").unlink()
    assert script.main(job) == 2
    assert "stage1/results-test.json does not exist" in capsys.readouterr().err
    _results(tmp_path / "stage1" / "results-test.json", {"test/mask/iou": 0.5})
    assert script.main(job) == 2
    assert "no number for test/restoration/psnr_occluded_input" in capsys.readouterr().err
    _results(tmp_path / "stage1" / "results-test.json", RESTORATION)
    (tmp_path / "README.md").write_text("no block here\n")
    assert script.main(job) == 2
    assert "must hold one <!-- main-job-figures -->" in capsys.readouterr().err
    assert (tmp_path / "README.md").read_text() == "no block here\n"  # nothing written on an error


def test_the_readme_holds_one_generated_block() -> None:
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- main-job-figures -->", 1)[1].split("<!-- /main-job-figures -->", 1)[0]
    assert "written into this README by `python scripts/readme_figures.py`" in " ".join(block.split())
    row = re.search(r"\| main job: [^|]+ \+ all four modalities((?: \| [01]\.\d{3}){5}) \|", block)
    assert row, "the README's figures block is not the script's output; run scripts/readme_figures.py"
