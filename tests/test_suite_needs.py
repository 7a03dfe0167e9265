"""Two-stage suites: ``needs`` runs a stage-1 suite first; ``${...}`` names a cell's own values and stage-1 folders."""

import json
from pathlib import Path

import pytest
import yaml

from multimodal_fer.benchmarking import SuiteError, load_suite, run_suite, sweep_definition
from multimodal_fer.benchmarking.runner import describe, fit_arguments

from conftest import CONFIGS, REPO, TINY_DATA

QUICKSTART = str(CONFIGS / "quickstart.yaml")
CONCAT = str(CONFIGS / "overlays" / "fusion_concat.yaml")
ENCODERS = {m: f"${{singles/modalities={m}-seed=${{seed_everything}}}}" for m in ("face", "audio")}


def _write(folder: Path, stem: str, **document) -> Path:
    document.setdefault("base", [QUICKSTART])
    path = folder / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _two_stages(folder: Path, seeds: list[int], **stage_two) -> Path:
    """A stage-1 suite ``singles`` (face, audio × seeds) and a stage-2 suite that needs it; returns stage 2."""
    _write(
        folder,
        "singles",
        base=[QUICKSTART, CONCAT],
        grid={"data.init_args.modalities": [["face"], ["audio"]], "seed_everything": seeds},
    )
    stage_two.setdefault("overrides", {"model.init_args.pretrained_encoders": ENCODERS})
    return _write(folder, "fused", needs=[str(folder / "singles.yaml")], grid={"seed_everything": seeds}, **stage_two)


def test_a_stage_two_cell_names_the_stage_one_cells_of_its_own_seed(tmp_path: Path) -> None:
    overrides = {
        "model.init_args.pretrained_encoders": ENCODERS,
        "trainer.max_epochs": 3,
        "trainer.min_epochs": "${seed_everything}",  # the whole string: the value itself, an int
        "model.init_args.pretrained_encoder_lr_scale": "${seed_everything}.5",  # inside a string: its text
    }
    suite = load_suite(_two_stages(tmp_path, [0, 1], overrides=overrides))
    assert [needed.name for needed in suite.needs] == ["singles"]
    assert [cell.name for cell in suite.needs[0].cells][:2] == [
        "000-modalities=face-seed=0",
        "001-modalities=face-seed=1",
    ]
    assert suite.base_arguments() == ["--config", QUICKSTART, "--trainer.max_epochs=3"]  # the same in every cell
    out = tmp_path / "out"
    second = suite.cells[1]
    assert second.name == "001-seed=1"  # named by its grid values, not by the folders it starts from
    assert second.needs == ("singles/001-modalities=face-seed=1", "singles/003-modalities=audio-seed=1")
    encoders = {
        "face": str(out / "singles/001-modalities=face-seed=1"),
        "audio": str(out / "singles/003-modalities=audio-seed=1"),
    }
    assert second.arguments(out) == [
        f"--model.init_args.pretrained_encoders={json.dumps(encoders)}",
        "--trainer.min_epochs=1",
        "--model.init_args.pretrained_encoder_lr_scale=1.5",
        "--seed_everything=1",
    ]
    assert f"--model.init_args.pretrained_encoders={json.dumps(encoders)}" in fit_arguments(suite, second, out, False)
    with pytest.raises(SuiteError, match="give the output folder"):
        second.arguments()
    plan = describe(suite, out)
    assert plan.index("suite singles") < plan.index("suite fused")
    assert "to run after singles/000-modalities=face-seed=0, singles/002-modalities=audio-seed=0" in plan
    with pytest.raises(SuiteError, match="W&B sweep cannot express"):
        sweep_definition(suite, out)
    # A reference may give the stage-1 cell with its number, and the overrides axis may hold references too.
    axis = [
        {"name": "numbered", "model.init_args.pretrained_encoders": {"face": "${singles/000-modalities=face-seed=0}"}}
    ]
    with_axis = load_suite(_write(tmp_path, "axis", needs=[str(tmp_path / "singles.yaml")], grid={"overrides": axis}))
    assert with_axis.cells[0].name == "000-numbered" and with_axis.cells[0].needs == (
        "singles/000-modalities=face-seed=0",
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"trainer.min_epochs": "${seed}"},
            r"'\$\{seed\}' names no grid key of this suite \(grid keys: \['seed_everything'\]\)",
        ),
        ({"model.init_args.pretrained_encoders": {"face": "${doubles/modalities=face-seed=0}"}}, "not under 'needs'"),
        (
            {"model.init_args.pretrained_encoders": {"face": "${singles/modalities=depth-seed=${seed_everything}}"}},
            "has no cell 'modalities=depth-seed=0'",
        ),
        ({"model.init_args.pretrained_encoders": {"face": "${singles/007-modalities=face-seed=0}"}}, "has no cell"),
    ],
)
def test_references_to_unknown_keys_suites_and_cells_are_refused_by_name(
    tmp_path: Path, overrides: dict, message: str
) -> None:
    with pytest.raises(SuiteError, match=message):
        load_suite(_two_stages(tmp_path, [0], overrides=overrides))


def test_circular_needs_and_references_in_plain_grid_axes_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "a", needs=[str(tmp_path / "b.yaml")])
    _write(tmp_path, "b", needs=[str(tmp_path / "a.yaml")])
    with pytest.raises(SuiteError, match="need each other in a circle"):
        load_suite(tmp_path / "a.yaml")
    with pytest.raises(SuiteError, match="in 'overrides' and in the 'overrides' axis only"):
        load_suite(_write(tmp_path, "c", grid={"trainer.max_epochs": ["${seed_everything}"], "seed_everything": [0]}))


class FakeMain:
    """Stands in for ``mfer``: writes a fit's results file, or fails for run names containing ``fail_on``."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.folders: list[str] = []
        self.fail_on = fail_on

    def __call__(self, args: list[str]) -> None:
        options = dict(arg[2:].split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)
        folder = Path(options["run.root"]) / options["run.experiment"] / options["run.name"]
        self.folders.append(f"{folder.parent.name}/{folder.name}")
        if self.fail_on and self.fail_on in str(folder):
            raise ValueError("the model diverged")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results-test.json").write_text("{}")


def test_needed_cells_run_first_and_a_cell_whose_needs_failed_waits(tmp_path: Path) -> None:
    suite = load_suite(_two_stages(tmp_path, [0, 1]))
    out = tmp_path / "out"
    fake = FakeMain(fail_on="singles/002-")  # audio, seed 0
    outcomes = run_suite(suite, out, entry_point=fake, report=lambda line: None)
    assert [o.status for o in outcomes] == ["done", "done", "failed", "done", "waiting", "done"]
    assert fake.folders == [*(f"singles/{cell.name}" for cell in suite.needs[0].cells), "fused/001-seed=1"]
    assert "singles/002-modalities=audio-seed=0" in outcomes[4].error
    assert json.loads((out / "fused" / "suite.json").read_text())["needs"] == ["singles"]
    again = FakeMain()
    outcomes = run_suite(suite, out, entry_point=again, report=lambda line: None)
    assert again.folders == ["singles/002-modalities=audio-seed=0", "fused/000-seed=0"]
    assert [o.status for o in outcomes].count("skipped") == 4


def test_shipped_two_stage_suite_points_each_seed_at_its_own_stage_one_runs(tmp_path: Path) -> None:
    suite = load_suite(REPO / "benchmarks" / "suites" / "fusion_two_stage.yaml")
    assert [needed.name for needed in suite.needs] == ["fusion-singles"] and len(suite.needs[0].cells) == 12
    for cell in suite.cells:
        seed = cell.values["seed_everything"]
        argument = next(a for a in cell.arguments(tmp_path) if a.startswith("--model.init_args.pretrained_encoders="))
        encoders = json.loads(argument.split("=", 1)[1])
        assert sorted(encoders) == ["audio", "depth", "face", "physio"]
        for modality, folder in encoders.items():
            assert Path(folder).parent == tmp_path / "fusion-singles"
            assert Path(folder).name.endswith(f"-{modality}-seed={seed}")


@pytest.mark.slow  # three 1-epoch fits, their tests, a report: 13-30 s on 2 shared cores
def test_tiny_two_stage_suite_runs_stage_one_then_stage_two_and_reports(tmp_path: Path, tiny_cache: Path) -> None:
    from multimodal_fer.cli import main

    data = {f"data.init_args.{key}": value for key, value in {**TINY_DATA, "root": str(tiny_cache)}.items()}
    tiny = {**data, "trainer.max_epochs": 1, "trainer.logger": False, "trainer.accelerator": "cpu"}
    _write(
        tmp_path,
        "singles",
        base=[QUICKSTART, CONCAT],
        overrides=tiny,
        grid={"data.init_args.modalities": [["face"], ["audio"]], "seed_everything": [0]},
    )
    overrides = {
        **tiny,
        "data.init_args.modalities": ["face", "audio"],
        "model.init_args.pretrained_encoders": ENCODERS,
    }
    stage_two = _write(
        tmp_path,
        "fused",
        base=[QUICKSTART, str(CONFIGS / "overlays" / "fusion_from_singles.yaml")],
        needs=[str(tmp_path / "singles.yaml")],
        overrides=overrides,
        grid={"seed_everything": [0]},
        test={"withheld": [["audio"]]},
    )
    out = tmp_path / "out"
    outcomes = run_suite(load_suite(stage_two), out, report=lambda line: None)
    assert [o.status for o in outcomes] == ["done", "done", "done"]
    fused = out / "fused" / "000-seed=0"
    config = yaml.safe_load((fused / "config.yaml").read_text())
    assert config["model"]["init_args"]["pretrained_encoders"] == {
        "face": str(out / "singles" / "000-modalities=face-seed=0"),
        "audio": str(out / "singles" / "001-modalities=audio-seed=0"),
    }
    assert (fused / "results-test.json").is_file() and (fused / "results-test-withheld-audio.json").is_file()
    report = tmp_path / "report" / "report.html"
    main(["report", str(out / "singles"), str(out / "fused"), "--output", str(report)])
    markdown = report.with_suffix(".md").read_text()
    assert "singles" in markdown and "fused" in markdown and "test-withheld-audio" in markdown
