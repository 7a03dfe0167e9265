"""``mfer ablate``: suite expansion, skip/resume/failure bookkeeping, shards, W&B sweeps, and a real tiny suite."""

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from multimodal_fer.benchmarking import SuiteError, load_suite, parse_shard, run_suite, sweep_definition
from multimodal_fer.benchmarking.runner import (
    cell_folder,
    describe,
    member_condition,
    missing_results,
    refuse_extra_tests_of_a_combined_run,
    withheld_sets,
)

from conftest import CONFIGS, REPO, TINY_DATA

QUICKSTART = str(CONFIGS / "quickstart.yaml")


def _suite_file(tmp_path: Path, **document) -> Path:
    document.setdefault("base", [QUICKSTART])
    path = tmp_path / f"{document.pop('file', 'suite')}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_grid_expands_in_file_order_with_readable_names(tmp_path: Path) -> None:
    path = _suite_file(
        tmp_path,
        overrides={"trainer.max_epochs": 3},
        grid={"data.init_args.modalities": [["face"], ["face", "audio"]], "seed_everything": [0, 1, 2]},
        test={"withheld": [[], ["audio"]]},
    )
    suite = load_suite(path)
    assert suite.name == "suite" and len(suite.cells) == 6
    names = [cell.name for cell in suite.cells]
    assert names[:4] == [
        "000-modalities=face-seed=0",
        "001-modalities=face-seed=1",
        "002-modalities=face-seed=2",
        "003-modalities=face+audio-seed=0",
    ]
    assert suite.cells[3].arguments() == ['--data.init_args.modalities=["face", "audio"]', "--seed_everything=0"]
    assert suite.base_arguments() == ["--config", QUICKSTART, "--trainer.max_epochs=3"]
    assert suite.withheld == (("audio",),)  # the empty set is the plain test, always run
    assert withheld_sets(suite, suite.cells[0]) == [] and withheld_sets(suite, suite.cells[3]) == [("audio",)]
    assert suite.cells[0].seedless_values() == {"data.init_args.modalities": ["face"]}


def test_overlay_and_override_set_axes(tmp_path: Path) -> None:
    overlay = CONFIGS / "overlays" / "fusion_gated.yaml"
    path = _suite_file(
        tmp_path,
        grid={
            "config": [None, str(overlay)],
            "overrides": [{"name": "expr-only", "model.init_args.au_weight": 0.0}, {"name": "all"}],
        },
    )
    cells = load_suite(path).cells
    assert [cell.name for cell in cells] == [
        "000-config=none-expr-only",
        "001-config=none-all",
        "002-config=fusion_gated-expr-only",
        "003-config=fusion_gated-all",
    ]
    assert cells[2].arguments() == ["--config", str(overlay), "--model.init_args.au_weight=0.0"]
    assert cells[1].arguments() == []
    with pytest.raises(SuiteError, match="mapping of keys"):
        load_suite(_suite_file(tmp_path, grid={"overrides": ["au_weight=0"]}))


def test_shipped_suites_expand() -> None:
    suites = {path.stem: load_suite(path) for path in (REPO / "benchmarks" / "suites").glob("*.yaml")}
    assert len(suites["modalities"].cells) == 45 and len(suites["fusion"].cells) == 18
    assert {cell.values["data.init_args.modalities"].__len__() for cell in suites["modalities"].cells} == {1, 2, 3, 4}


SHIPPED_SUITES = sorted((REPO / "benchmarks" / "suites").glob("*.yaml"))


@pytest.mark.parametrize("suite_file", SHIPPED_SUITES, ids=lambda path: path.stem)
def test_every_setting_of_the_shipped_suites_builds(
    suite_file: Path, tmp_path: Path, tiny_cache: Path, monkeypatch
) -> None:
    """Each setting (the seed-0 cells) of a shipped suite parses and builds its model, data and trainer."""
    from multimodal_fer.benchmarking.runner import fit_arguments
    from multimodal_fer.cli import build_cli
    from multimodal_fer.models.restoration import RESTORER_CHECKPOINT_KEY, FaceRestorer

    monkeypatch.chdir(tmp_path)  # configs name their output and stage-1 checkpoint relative to the working folder
    restorer = FaceRestorer()
    restorer.image_size.fill_(32)
    target = tmp_path / "runs/restoration/latest/checkpoints/restorer.ckpt"
    target.parent.mkdir(parents=True)
    torch.save({RESTORER_CHECKPOINT_KEY: restorer.export()}, target)
    suite = load_suite(suite_file)
    settings = [cell for cell in suite.cells if cell.values.get("seed_everything", 0) == 0]
    assert settings
    tiny = [f"--data.init_args.{key}={value}" for key, value in {**TINY_DATA, "root": str(tiny_cache)}.items()]
    for cell in settings:
        arguments = fit_arguments(suite, cell, tmp_path / "out", resume=False)[1:]  # without the subcommand
        arguments = [argument for argument in arguments if not argument.startswith("--test_after_fit")]
        cli = build_cli([*arguments, *tiny, "--trainer.accelerator=cpu", "--trainer.logger=false"], run=False)
        assert cli.trainer.max_epochs == suite.overrides.get("trainer.max_epochs", cli.trainer.max_epochs)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"grid": {"seed_everything": []}}, "non-empty list"),
        ({"grdi": {}}, r"unknown keys \['grdi'\]"),
        ({"base": ["configs/missing.yaml"]}, "not found"),
        ({"overrides": {"seed_everything": 1}, "grid": {"seed_everything": [0]}}, "both 'overrides' and 'grid'"),
        ({"test": {"noise": [0.1]}}, "unknown test conditions"),
    ],
)
def test_bad_suite_files_are_refused_by_name(tmp_path: Path, document: dict, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        load_suite(_suite_file(tmp_path, **document))


def test_shards_split_the_cells_without_overlap() -> None:
    assert parse_shard(None) == (0, 1) and parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "1", "a/b", "0/0"):
        with pytest.raises(SuiteError, match="--shard"):
            parse_shard(bad)


class FakeMain:
    """Stands in for ``mfer``: records calls and writes the files a fit or a test would."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, args: list[str]) -> None:
        self.calls.append(args)
        options = dict(arg[2:].split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)
        folder = Path(options["run.root"]) / options["run.experiment"] / options["run.name"]
        if self.fail_on and self.fail_on in folder.name:
            raise ValueError("the model diverged")
        folder.mkdir(parents=True, exist_ok=True)
        if args[0] == "fit":
            (folder / "checkpoints").mkdir(exist_ok=True)
            (folder / "checkpoints" / "last.ckpt").write_text("x")
            (folder / "results-test.json").write_text("{}")
        elif options.get("data.init_args.evaluate_split") == "val":
            (folder / "results-val.json").write_text("{}")
        else:
            withheld = json.loads(options["data.init_args.withheld_modalities"])
            (folder / f"results-test-withheld-{'-'.join(withheld)}.json").write_text("{}")


def test_a_rerun_does_only_what_is_missing_and_failures_are_recorded(tmp_path: Path) -> None:
    suite = load_suite(
        _suite_file(
            tmp_path,
            grid={"data.init_args.modalities": [["face"], ["face", "audio"]], "seed_everything": [0, 1]},
            test={"withheld": [["audio"]]},
        )
    )
    out = tmp_path / "out"
    fake = FakeMain(fail_on="001-")
    outcomes = run_suite(suite, out, entry_point=fake, report=lambda line: None)
    assert [o.status for o in outcomes] == ["done", "failed", "done", "done"]
    failed = json.loads((out / "suite" / suite.cells[1].name / "cell.json").read_text())
    assert failed["status"] == "failed" and "the model diverged" in failed["error"]
    assert [call[0] for call in fake.calls] == ["fit", "fit", "fit", "test", "fit", "test"]
    done = json.loads((out / "suite" / suite.cells[2].name / "cell.json").read_text())
    assert done == {**done, "suite": "suite", "index": 2, "status": "done"}
    assert done["cell"] == {"data.init_args.modalities": ["face", "audio"], "seed_everything": 0}

    # Re-run: the failed cell runs again, one lost extra test is redone, the rest is skipped.
    (out / "suite" / suite.cells[3].name / "results-test-withheld-audio.json").unlink()
    again = FakeMain()
    outcomes = run_suite(suite, out, entry_point=again, report=lambda line: None)
    assert [o.status for o in outcomes] == ["skipped", "done", "skipped", "done"]
    assert [(call[0], call[-1]) for call in again.calls] == [
        ("fit", "--test_after_fit=true"),
        ("test", '--data.init_args.withheld_modalities=["audio"]'),
    ]
    # A cell with a last checkpoint but no results is resumed.
    (out / "suite" / suite.cells[0].name / "results-test.json").unlink()
    resumed = FakeMain()
    run_suite(suite, out, shard=(0, 2), entry_point=resumed, report=lambda line: None)
    assert len(resumed.calls) == 1 and resumed.calls[0][-1] == "--ckpt_path=last"
    assert "[resume]" not in describe(suite, out) and "[done]" in describe(suite, out)

    # Killed after a cell's last results file but before its record: the rerun skips it and writes the record,
    # so the report still knows it as the suite's cell.
    record = out / "suite" / suite.cells[2].name / "cell.json"
    record.unlink()
    untouched = (out / "suite" / suite.cells[3].name / "cell.json").read_text()
    quiet = FakeMain()
    outcomes = run_suite(suite, out, entry_point=quiet, report=lambda line: None)
    assert not quiet.calls and [o.status for o in outcomes] == ["skipped"] * 4
    restored = json.loads(record.read_text())
    assert restored == {**restored, "suite": "suite", "index": 2, "status": "done"}
    assert (out / "suite" / suite.cells[3].name / "cell.json").read_text() == untouched, "done records stay as they are"


def test_validation_scores_each_cell_once_with_predictions(tmp_path: Path) -> None:
    """``test: {validation: true}`` adds one scoring of the validation split per cell, with per-sample predictions
    (what ``mfer report`` tunes AU thresholds on), skipped once its results file exists."""
    suite = load_suite(_suite_file(tmp_path, grid={"seed_everything": [0, 1]}, test={"validation": True}))
    out = tmp_path / "out"
    fake = FakeMain()
    run_suite(suite, out, entry_point=fake, report=lambda line: None)
    validations = [call for call in fake.calls if "--data.init_args.evaluate_split=val" in call]
    assert len(validations) == 2 and all("--results.predictions=true" in call for call in validations)
    assert all(call[0] == "test" and "--ckpt_path=best" in call for call in validations)
    assert all((out / "suite" / cell.name / "results-val.json").is_file() for cell in suite.cells)
    again = FakeMain()
    run_suite(suite, out, entry_point=again, report=lambda line: None)
    assert again.calls == []
    with pytest.raises(SuiteError, match="'test.validation' must be true or false"):
        load_suite(_suite_file(tmp_path, file="bad", test={"validation": "yes"}))


def test_sweep_definition_is_a_grid_over_the_suite(tmp_path: Path) -> None:
    suite = load_suite(_suite_file(tmp_path, grid={"seed_everything": [0, 1]}, overrides={"trainer.max_epochs": 2}))
    sweep = sweep_definition(suite, tmp_path / "out")
    assert sweep["method"] == "grid" and sweep["parameters"] == {"seed_everything": {"values": [0, 1]}}
    assert sweep["command"][-1] == "${args}" and "--trainer.max_epochs=2" in sweep["command"]
    assert "--run.group=suite" in sweep["command"]
    for axis, values in (("config", [None, "configs/overlays/fusion_gated.yaml"]), ("overrides", [{"name": "a"}])):
        expanding = load_suite(_suite_file(tmp_path, grid={axis: values, "seed_everything": [0]}))
        with pytest.raises(SuiteError, match=f"grid axis '{axis}' sets several options per cell"):
            sweep_definition(expanding, tmp_path / "out")


def test_a_combined_cell_is_tested_once_every_member_has_its_results_and_extra_tests_are_refused(tmp_path):
    """A combined run's results are per member (``results-test-<member>.json``): the runner counts those."""
    assert member_condition("test", "disfa") == "test-disfa"
    assert member_condition("test-withheld-audio", "disfa") == "test-disfa-withheld-audio"
    assert member_condition("val", "rafdb") == "val-rafdb"
    suite = load_suite(_suite_file(tmp_path, grid={"seed_everything": [0]}, test={"withheld": [["audio"]]}))
    cell = suite.cells[0]
    folder = cell_folder(suite, cell, tmp_path / "out")
    folder.path.mkdir(parents=True)
    assert missing_results(suite, cell, folder) == ["test", "test-withheld-audio"]
    folder.update_record(members={"rafdb": {}, "disfa": {}})
    (folder.path / "results-test-rafdb.json").write_text("{}")
    assert missing_results(suite, cell, folder)[0] == "test"  # DISFA's results are not there yet
    (folder.path / "results-test-disfa.json").write_text("{}")
    assert missing_results(suite, cell, folder) == ["test-withheld-audio"]
    with pytest.raises(SuiteError, match=r"combined data module \(members rafdb, disfa\).*test-withheld-audio"):
        refuse_extra_tests_of_a_combined_run(suite, cell, folder)


def _ablate(suite: Path, out: Path, *extra: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    command = [sys.executable, "-m", "multimodal_fer", "ablate", str(suite), "--out", str(out), *extra]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    if wait:
        return subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=900)
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)


def _metrics(out: Path, suite: str) -> dict[str, dict]:
    """Every results file of a suite's cells: ``<cell>/<file name>`` → its metrics."""
    return {
        f"{path.parent.name}/{path.name}": json.loads(path.read_text())["metrics"]
        for path in sorted((out / suite).glob("*/results-*.json"))
        if not path.parent.is_symlink()  # <suite>/latest points at the last cell fitted, which differs by shard
    }


@pytest.mark.slow
def test_real_suite_killed_midway_finishes_on_rerun_and_shards_agree(tmp_path: Path, tiny_cache: Path) -> None:
    data = {f"data.init_args.{key}": value for key, value in {**TINY_DATA, "root": str(tiny_cache)}.items()}
    suite = _suite_file(
        tmp_path,
        file="tiny",
        overrides={
            **data,
            "trainer.max_epochs": 1,
            "trainer.logger": False,
            "trainer.accelerator": "cpu",
            "results.predictions": True,
        },
        grid={"data.init_args.modalities": [["face", "audio"], ["audio"]]},  # two cells: one shard each
        test={"withheld": [["audio"]], "validation": True},
    )
    whole = tmp_path / "whole"
    running = _ablate(suite, whole, wait=False)
    first = whole / "tiny" / "000-modalities=face+audio" / "results-val.json"  # the first cell's last step
    deadline = time.monotonic() + 600
    while not first.exists() and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    os.kill(running.pid, signal.SIGKILL)
    running.wait()
    assert first.exists(), "the first cell finished before the kill"
    done_before = {p.parent.name for p in (whole / "tiny").glob("*/results-test.json") if not p.parent.is_symlink()}
    assert len(done_before) < 2, "the kill came before the last cell finished"

    rerun = _ablate(suite, whole)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "done before, skipped" in rerun.stdout + rerun.stderr
    assert {p.parent.name for p in (whole / "tiny").glob("*/results-test.json") if not p.parent.is_symlink()} == {
        "000-modalities=face+audio",
        "001-modalities=audio",
    }
    assert not list((whole / "tiny").glob("001*/results-test-withheld-*.json"))  # audio alone: nothing to keep

    sharded = tmp_path / "sharded"
    for shard in ("0/2", "1/2"):
        done = _ablate(suite, sharded, "--shard", shard)
        assert done.returncode == 0, done.stderr[-3000:]
    assert _metrics(sharded, "tiny") == _metrics(whole, "tiny")

    # The suite's report, from its results files only.
    output = tmp_path / "report" / "report.html"
    report = subprocess.run(
        [sys.executable, "-m", "multimodal_fer", "report", str(whole / "tiny"), "--output", str(output)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    markdown = output.with_suffix(".md").read_text()
    for label in ("modalities=[face,audio]", "modalities=[audio]"):
        assert label in markdown
    assert "test-withheld-audio" in markdown
    # Validation predictions of every cell: AU thresholds tuned on them, so the tuned column has figures.
    assert all((whole / "tiny" / name / "results-val.predictions.npz").is_file() for name in done_before)
    lines, tuned = markdown.splitlines(), []
    for header in (i for i, line in enumerate(lines) if "au/f1_mean_tuned" in line):
        column = [cell.strip() for cell in lines[header].split("|")].index("au/f1_mean_tuned")
        rows = [line for line in itertools.takewhile(lambda line: line.startswith("|"), lines[header + 2 :])]
        tuned += [row.split("|")[column].strip() for row in rows]
    # Each cell's test and the withheld test: a tuned figure in every row.
    assert len(tuned) >= 3 and all(re.fullmatch(r"-?\d\.\d{3}.*", value) for value in tuned), tuned


class CacheFakeMain:
    """Stands in for ``mfer``: a fit records its data root in ``run.json``; a test names its results as the writer."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str]) -> None:
        self.calls.append(args)
        options = dict(arg[2:].split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)
        folder = Path(options["run.root"]) / options["run.experiment"] / options["run.name"]
        folder.mkdir(parents=True, exist_ok=True)
        root = options.get("data.init_args.root", "data/synthaffect")
        if args[0] == "fit":
            (folder / "run.json").write_text(json.dumps({"data_root": root}))
            (folder / "results-test.json").write_text("{}")
        else:
            (folder / f"results-test-on-{Path(root).name}.json").write_text("{}")


def test_each_cell_is_tested_on_the_other_caches_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cohort = {"root": "data/cohort1", "overrides": {"data.init_args.seed": 1, "data.init_args.test_subjects": 58}}
    suite = load_suite(_suite_file(tmp_path, grid={"seed_everything": [0, 1]}, test={"caches": [cohort, "data/c2"]}))
    assert [cache.condition for cache in suite.caches] == ["test-on-cohort1", "test-on-c2"]
    fake = CacheFakeMain()
    outcomes = run_suite(suite, tmp_path / "out", entry_point=fake, report=lambda line: None)
    assert [o.status for o in outcomes] == ["done", "done"]
    assert [call[0] for call in fake.calls] == ["fit", "test", "test"] * 2
    first = fake.calls[1]
    assert first[-3:] == [
        "--data.init_args.root=data/cohort1",
        "--data.init_args.seed=1",
        "--data.init_args.test_subjects=58",
    ]
    assert "--ckpt_path=best" in first and "--data.init_args.withheld_modalities=[]" in first
    assert fake.calls[2][-1] == "--data.init_args.root=data/c2"
    record = json.loads((tmp_path / "out" / "suite" / "suite.json").read_text())
    assert record["caches"][0] == cohort and record["caches"][1] == {"root": "data/c2", "overrides": {}}
    # A lost cohort test is the only thing a re-run does.
    (tmp_path / "out" / "suite" / suite.cells[1].name / "results-test-on-cohort1.json").unlink()
    again = CacheFakeMain()
    assert [o.status for o in run_suite(suite, tmp_path / "out", entry_point=again, report=lambda line: None)] == [
        "skipped",
        "done",
    ]
    assert len(again.calls) == 1 and again.calls[0][-3] == "--data.init_args.root=data/cohort1"
    assert "also tested on: data/cohort1, data/c2" in describe(suite, tmp_path / "out")


def test_a_cache_entry_that_is_the_fits_own_cache_fails_the_cell(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    suite = load_suite(_suite_file(tmp_path, grid={"seed_everything": [0]}, test={"caches": ["data/synthaffect"]}))
    fake = CacheFakeMain()
    [outcome] = run_suite(suite, tmp_path / "out", entry_point=fake, report=lambda line: None)
    assert outcome.status == "failed" and "the cache this cell was fitted on" in (outcome.error or "")
    assert [call[0] for call in fake.calls] == ["fit"]


@pytest.mark.parametrize(
    ("caches", "message"),
    [
        ("data/cohort1", "must be a list"),
        ([{"overrides": {"data.init_args.seed": 1}}], "is a cache folder or a mapping"),
        ([{"root": "data/c", "seed": 1}], r"unknown keys \['seed'\]"),
        ([{"root": "data/c", "overrides": {"data.init_args.root": "x"}}], "give the cache folder as 'root'"),
        (["data/a/cohort", "data/b/cohort"], "share a name"),
    ],
)
def test_bad_cache_entries_are_refused_by_name(tmp_path: Path, caches: object, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        load_suite(_suite_file(tmp_path, test={"caches": caches}))


@pytest.mark.slow  # a 1-epoch fit, its test, a cohort generated and tested, a report: 33 s on 2 shared cores
def test_a_real_cell_is_tested_on_a_second_cohort_and_reported_as_its_own_group(
    tmp_path: Path, tiny_cache: Path
) -> None:
    """A real fit, then its best checkpoint on a cache of another generation seed (generated by the test)."""
    from multimodal_fer.cli import main
    from multimodal_fer.reporting import build_report

    data = {f"data.init_args.{key}": value for key, value in {**TINY_DATA, "root": str(tiny_cache)}.items()}
    cohort = tmp_path / "cohort_seed1"
    suite = load_suite(
        _suite_file(
            tmp_path,
            file="cohort",
            overrides={
                **data,
                "data.init_args.modalities": ["face"],
                "trainer.max_epochs": 1,
                "trainer.logger": False,
                "trainer.accelerator": "cpu",
                "results.predictions": True,
            },
            grid={"seed_everything": [0]},
            test={"caches": [{"root": str(cohort), "overrides": {"data.init_args.seed": 1}}]},
        )
    )
    [outcome] = run_suite(suite, tmp_path / "out", entry_point=main, report=lambda line: None)
    assert outcome.status == "done", outcome.error
    results = json.loads((outcome.folder / "results-test-on-cohort_seed1.json").read_text())
    assert results["data"]["root"] == str(cohort) and (cohort / "summary.json").is_file()
    own = json.loads((outcome.folder / "results-test.json").read_text())
    assert results["cache_fingerprint"] != own["cache_fingerprint"]  # other subjects, not the training cache
    report = build_report([tmp_path / "out" / "cohort"], resamples=10)
    assert sorted(section.title.rsplit(" · ", 1)[-1] for section in report.sections) == [
        "test",
        "test-on-cohort_seed1",
    ]
