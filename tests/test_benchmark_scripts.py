"""Run folders for the benchmark scripts: the run_lookup helper, and the commands the scripts launch (faked here).

Nothing trains: ``mfer`` is replaced by a fake that leaves, in the run folder its ``--run.*`` arguments (fits) or
its checkpoint (tests) name, the files the package writes there (``run.json``, ``checkpoints/``,
``results-<condition>.json``, predictions). The scripts must then find everything through those files.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from multimodal_fer.benchmarking.run_lookup import (
    RunLookupError,
    best_checkpoint,
    best_score,
    has_results,
    is_finished,
    predictions_file,
    read_metrics,
    read_run_record,
    results_conditions,
    results_filename,
    results_path,
    run_folder,
    run_folder_arguments,
    run_state,
)
from multimodal_fer.benchmarking.run_lookup import test_condition_name as condition_name  # not a test
from multimodal_fer.run_folder import RunFolderError, free_path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the occlusion benchmark's module, imported in its test

EXPR, AROUSAL = "test/expr/f1_macro", "test/va/ccc_arousal"


def _write_run(
    folder: Path,
    *,
    best: str | None = "checkpoints/best-epoch=03.ckpt",
    score: float | None = 0.5,
    last: bool = True,
    results: dict[str, dict] | None = None,
) -> Path:
    """A run folder as ``mfer fit`` leaves it; ``best=None``: a fit that has not ended."""
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    record: dict = {"experiment": folder.parent.name, "name": folder.name, "seed": 0}
    if best is not None:
        (folder / best).write_bytes(b"weights")
        record.update(best_checkpoint=best, best_score=score, monitor="val/score")
    if last:
        (folder / "checkpoints/last.ckpt").write_bytes(b"weights")
        record["last_checkpoint"] = "checkpoints/last.ckpt"
    (folder / "run.json").write_text(json.dumps(record))
    for condition, metrics in (results or {}).items():
        (folder / results_filename(condition)).write_text(json.dumps({"condition": condition, "metrics": metrics}))
    return folder


# ----------------------------------------------------------------------------------------------- run_lookup
def test_run_folder_arguments_put_the_run_exactly_at_the_path(tmp_path: Path) -> None:
    arguments = run_folder_arguments(tmp_path / "out" / "seed0" / "fusion")
    assert arguments == [f"--run.root={tmp_path / 'out'}", "--run.experiment=seed0", "--run.name=fusion"]
    values = dict(argument.removeprefix("--run.").split("=", 1) for argument in arguments)
    folder = run_folder(tmp_path / "out" / "seed0" / "fusion")
    assert Path(values["root"]) / values["experiment"] / values["name"] == folder.path == tmp_path / "out/seed0/fusion"
    assert run_folder_arguments("relative/seed1/single")[0] == f"--run.root={Path('relative').absolute()}"
    with pytest.raises(ValueError, match="run.name"):
        run_folder_arguments(tmp_path / "seed0" / "two words")


def test_the_best_checkpoint_is_the_one_run_json_names_not_a_search(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "exp" / "run", best="checkpoints/best-epoch=03.ckpt")
    (run / "checkpoints/best-epoch=07.ckpt").write_bytes(b"a later, worse epoch of a resumed fit")
    assert best_checkpoint(run) == run / "checkpoints/best-epoch=03.ckpt"
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "best_checkpoint": "checkpoints/best-epoch=07.ckpt"}))
    assert best_checkpoint(run) == run / "checkpoints/best-epoch=07.ckpt"
    assert read_run_record(run)["name"] == "run"


def test_lookups_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(RunLookupError, match="does not exist"):
        best_checkpoint(tmp_path / "nowhere")
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    (old / "checkpoints/best-epoch=02.ckpt").write_bytes(b"weights")
    (old / "checkpoints/results.json").write_text('{"metrics": {}}')
    with pytest.raises(RunLookupError, match="before runs had their own folders"):
        best_checkpoint(old)
    with pytest.raises(RunLookupError, match="written before run folders"):
        results_path(old)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunLookupError, match="not a run folder"):
        best_checkpoint(tmp_path / "empty")
    unfinished = _write_run(tmp_path / "exp" / "unfinished", best=None)
    with pytest.raises(RunLookupError, match=r"has not ended.*resume it.*--ckpt_path last"):
        best_checkpoint(unfinished)
    gone = _write_run(tmp_path / "exp" / "gone")
    (gone / "checkpoints/best-epoch=03.ckpt").unlink()
    with pytest.raises(RunLookupError, match=r"names the best checkpoint checkpoints/best-epoch=03\.ckpt"):
        best_checkpoint(gone)
    broken = _write_run(tmp_path / "exp" / "broken")
    (broken / "run.json").write_text("{")
    with pytest.raises(RunLookupError, match="not valid JSON"):
        best_checkpoint(broken)
    assert issubclass(RunLookupError, RunFolderError)


def test_the_best_score_is_run_jsons_and_must_be_of_the_monitored_metric(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "exp" / "run", score=0.625)
    assert best_score(run) == 0.625
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "monitor": "val/loss"}))
    with pytest.raises(RunLookupError, match="chosen by 'val/loss', not 'val/score'"):
        best_score(run)
    assert best_score(run, monitor=None) == 0.625
    (run / "run.json").write_text(json.dumps({**record, "best_score": None}))
    with pytest.raises(RunLookupError, match="no finite best_score"):
        best_score(run)
    with pytest.raises(RunLookupError, match="has not ended"):
        best_score(_write_run(tmp_path / "exp" / "unfinished", best=None))


def test_results_files_are_found_by_condition(tmp_path: Path) -> None:
    run = _write_run(
        tmp_path / "exp" / "run",
        results={"test": {EXPR: 0.4}, "test-withheld-audio": {EXPR: 0.3}, "test.2": {EXPR: 0.41}},
    )
    assert results_conditions(run) == ["test", "test-withheld-audio"]  # a later re-test (.2) is not a condition
    assert read_metrics(run) == {EXPR: 0.4}
    assert read_metrics(run, "test-withheld-audio") == {EXPR: 0.3}
    assert has_results(run, "test-withheld-audio") and not has_results(run, "test-withheld-face")
    with pytest.raises(RunLookupError, match="no results-test-withheld-face.json.*of test, test-withheld-audio"):
        read_metrics(run, "test-withheld-face")
    with pytest.raises(ValueError, match="path separators"):
        results_filename("../test")
    assert predictions_file(run) is None
    (run / "results-test.json").write_text(json.dumps({"metrics": {}, "predictions": "results-test.predictions.npz"}))
    with pytest.raises(RunLookupError, match="names the predictions results-test.predictions.npz"):
        predictions_file(run)
    (run / "results-test.predictions.npz").write_bytes(b"npz")
    assert predictions_file(run) == run / "results-test.predictions.npz"
    (run / "results-test.json").write_text("{}")
    with pytest.raises(RunLookupError, match="holds no metrics"):
        read_metrics(run)


def test_run_state_says_whether_to_fit_resume_or_reuse(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    assert run_state(experiment / "absent") == "new"
    (experiment / "started").mkdir(parents=True)
    (experiment / "started/run.json").write_text('{"name": "started"}')  # a fit that failed while starting
    assert run_state(experiment / "started") == "new"
    assert run_state(_write_run(experiment / "killed", best=None)) == "resumable"
    done = _write_run(experiment / "done", results={"test": {EXPR: 0.4}})
    assert run_state(done) == "finished" and is_finished(done)
    untested = _write_run(experiment / "untested")  # the fit ended, its test after fit did not
    assert run_state(untested) == "resumable" and not is_finished(untested)
    assert run_state(untested, condition=None) == "finished"
    assert run_state(done, condition="test-clean-faces") == "resumable"
    stuck = _write_run(experiment / "stuck", best=None, last=False)
    (stuck / "checkpoints/best-epoch=01.ckpt").write_bytes(b"weights")
    with pytest.raises(RunLookupError, match=r"best-epoch=01\.ckpt but neither a finished fit"):
        run_state(stuck)


def test_condition_names_are_the_packages(tmp_path: Path) -> None:
    from multimodal_fer.callbacks.results_writer import test_condition
    from multimodal_fer.datamodules import SynthAffectDataModule

    cohort = tmp_path / "synthaffect_cohort1"
    for withheld, clean in (([], False), (["audio"], False), (["face", "audio"], False), (["audio"], True)):
        data = SynthAffectDataModule(
            root=str(cohort),
            modalities=["face", "audio", "depth"],
            withheld_modalities=withheld or None,
            clean_faces=clean,
        )
        assert data.test_condition == condition_name(withheld, clean_faces=clean)
        run = _write_run(tmp_path / "exp" / f"run-{len(withheld)}-{clean}")
        assert test_condition(data, None, run) == condition_name(withheld, clean_faces=clean)  # no data_root
        record = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**record, "data_root": str(tmp_path / "synthaffect")}))
        assert test_condition(data, None, run) == condition_name(withheld, clean_faces=clean, cache=cohort)
    assert condition_name(["audio"], cache=cohort) == "test-withheld-audio-on-synthaffect_cohort1"


# ------------------------------------------------------------------------------------- the scripts' commands
class FakeMfer:
    """Stands in for ``mfer``: records each command and writes what the package would write, without training.

    Every best checkpoint scores ``val/score`` 0.5; every test writes ``{EXPR: 0.4, AROUSAL: 0.7}``.
    """

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, arguments: list[str]) -> None:
        self.calls.append(list(arguments))
        options = dict(a.removeprefix("--").split("=", 1) for a in arguments[1:] if a.startswith("--") and "=" in a)
        if arguments[0] == "fit":
            run = Path(options["run.root"]) / options["run.experiment"] / options["run.name"]
            if options.get("ckpt_path") != "last":
                assert run_state(run, condition=None) == "new", f"mfer fit would refuse {run}"
            restorer = any("configs/restoration/" in a for a in arguments)
            best = "checkpoints/restorer.ckpt" if restorer else "checkpoints/best-epoch=01.ckpt"
            extended = options.get("ckpt_path") == "last" and run_state(run, condition=None) == "finished"
            _write_run(run, best=best, score=0.5)
            if "trainer.max_epochs" in options:  # run.json's count of the epochs trained
                record = read_run_record(run)
                (run / "run.json").write_text(json.dumps({**record, "epochs": int(options["trainer.max_epochs"])}))
            # The session's saved config, named as mfer names it (only the setting the benchmark reads back).
            stem = "config-resumed" if options.get("ckpt_path") else "config"
            decay = {"lr_decay_epochs": int(options.get("model.init_args.lr_decay_epochs", 0))}
            free_path(run, f"{stem}.yaml").write_text(yaml.safe_dump({"model": {"init_args": decay}}))
            condition = "test-clean-faces" if options.get("data.init_args.clean_faces") == "true" else "test"
            if not extended:  # a continued fit's test is its second (mfer numbers it, results-test.2.json)
                self._results(run, condition, options)
        elif arguments[0] == "calibrate-restorer":  # the calibrated copy: a run folder naming its restorer.ckpt
            restorers = [Path(a.removeprefix("--restorer=")) for a in arguments if a.startswith("--restorer=")]
            assert all(r.is_file() or best_checkpoint(r) for r in restorers) and best_checkpoint(options["recogniser"])
            _write_run(Path(options["output"]), best="checkpoints/restorer.ckpt", score=0.5)
            (Path(options["output"]) / "calibration.json").write_text(json.dumps({"chosen": {"threshold": 0.7}}))
        elif arguments[0] == "test":
            run = Path(options["ckpt_path"]).parent.parent
            assert run_folder(run).path / read_run_record(run)["best_checkpoint"] == Path(options["ckpt_path"])
            self._results(run, options["results.condition"], options, options["results.filename"])

    def _results(self, run: Path, condition: str, options: dict[str, str], filename: str | None = None) -> None:
        target = run / (filename or results_filename(condition))
        assert not target.exists(), f"{target} would become {target.stem}.2.json"
        target.write_text(json.dumps({"condition": condition, "metrics": {EXPR: 0.4, AROUSAL: 0.7}}))

    def commands(self, verb: str) -> list[list[str]]:
        """The recorded commands of one verb."""
        return [call for call in self.calls if call[0] == verb]


def _run_of(command: list[str]) -> Path:
    options = dict(a.removeprefix("--run.").split("=", 1) for a in command if a.startswith("--run."))
    return Path(options["root"]) / options["experiment"] / options["name"]


def _guided_long_options() -> argparse.Namespace:
    """The benchmark's options with the recipe, a guided long restorer and short epochs."""
    return argparse.Namespace(
        fer_epochs=3,
        restoration_epochs=2,
        guided=True,
        recogniser_config=[str(REPO / "configs/overlays/face_recipe.yaml")],
        restoration_config=REPO / "configs/restoration/synthaffect_long.yaml",
        joint_epochs=4,
    )


def _guided_benchmark_with_fake_mfer(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, FakeMfer]:
    """The benchmark script with R-clean′ (as --guided adds it) and its mfer commands recorded, not run."""
    import occlusion_restoration as occlusion

    fake = FakeMfer()
    monkeypatch.setattr(occlusion, "run", fake)
    monkeypatch.setattr(occlusion, "RECOGNISERS", {**occlusion.RECOGNISERS, **occlusion.INDEPENDENT})
    return occlusion, fake


def test_the_occlusion_benchmark_names_every_run_and_gives_stage_2_its_seeds_restorer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    occlusion, fake = _guided_benchmark_with_fake_mfer(monkeypatch)
    recipe = str(REPO / "configs/overlays/face_recipe.yaml")
    long_recipe = REPO / "configs/restoration/synthaffect_long.yaml"
    options = _guided_long_options()
    seed = occlusion.train(0, tmp_path / "out", tmp_path / "cache", options)
    assert seed == tmp_path / "out" / "seed0"
    order = [_run_of(command).name for command in fake.commands("fit")]
    assert order == [
        "R_clean", "R", "R_occ", "R_aug", "R_clean_other", "critic", "restoration", "R_mask", "R_restorer", "R_joint",
    ]  # fmt: skip
    by_name = {_run_of(command).name: command for command in fake.commands("fit")}
    restorer = seed / "restoration/checkpoints/restorer.ckpt"
    assert f"--{occlusion.RESTORER_CHECKPOINT_KEY}={restorer}" in by_name["R_restorer"]
    assert f"--{occlusion.RESTORER_CHECKPOINT_KEY}={restorer}" in by_name["R_mask"]
    joint = by_name["R_joint"]  # stage 3 starts from R+restorer with the same restorer, for joint_epochs
    assert f"--{occlusion.RESTORER_CHECKPOINT_KEY}={restorer}" in joint
    assert f"--model.init_args.recogniser_checkpoint={seed / 'R_restorer'}" in joint
    assert "--trainer.max_epochs=4" in joint and "--trainer.max_epochs=3" not in joint
    assert str(occlusion.JOINT_OVERLAY) in joint and str(long_recipe) in by_name["restoration"]
    # the restorer's terms keep the weights it was trained with (the long recipe's, not the overlay's stage-1 ones)
    assert "--model.init_args.hole_weight=3.0" in joint and "--model.init_args.feature_matching_weight=1.0" in joint
    assert not any(occlusion.RESTORER_CHECKPOINT_KEY in a for a in by_name["R"])
    # with a recogniser overlay the critic is R-clean's setup without it, in its own run
    critic = seed / "critic/checkpoints/best-epoch=01.ckpt"
    assert f"--model.init_args.recogniser_critic={critic}" in by_name["restoration"]
    without_recipe = list(by_name["R_clean"])
    del without_recipe[without_recipe.index(recipe) - 1 : without_recipe.index(recipe) + 1]  # its "--config", recipe
    assert by_name["critic"] == [a.replace("=R_clean", "=critic") for a in without_recipe]
    assert "--trainer.max_epochs=2" in by_name["restoration"] and "--trainer.max_epochs=3" in by_name["R"]
    for name, command in by_name.items():  # the recogniser overlay reaches every recogniser, not the restorer
        assert (recipe in command) == (name not in ("restoration", "critic")), name
        if name not in ("restoration", "critic"):
            assert command.index(recipe) > command.index(str(occlusion.FACE_ONLY_OVERLAY))
    assert best_checkpoint(seed / occlusion.RESTORER_RUN) == restorer
    aug = by_name["R_aug"]  # R-clean's setup plus an occluder on about half of the training faces
    assert occlusion.CLEAN_FACES in aug and "--data.init_args.online_occlusion_probability=0.5" in aug
    occlusion.train(0, tmp_path / "out", tmp_path / "cache", options)
    assert len(fake.calls) == 10  # every run reused


def test_calibrated_masks_are_chosen_by_the_critic_on_validation_faces_and_used_from_then_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    occlusion, fake = _guided_benchmark_with_fake_mfer(monkeypatch)
    validation = tmp_path / "cache_occluded_val"
    options = argparse.Namespace(**vars(_guided_long_options()), calibrate_masks=True, validation_split=validation)
    seed = occlusion.train(0, tmp_path / "out", tmp_path / "cache", options)
    (calibration,) = fake.commands("calibrate-restorer")
    assert f"--restorer={seed / occlusion.RESTORER_RUN}" in calibration
    assert f"--recogniser={seed / occlusion.CRITIC_RUN}" in calibration  # the restorer's own judge, not R-clean
    assert f"--split={validation}" in calibration and f"--output={seed / occlusion.CALIBRATED_RUN}" in calibration
    calibrated = seed / occlusion.CALIBRATED_RUN / "checkpoints/restorer.ckpt"
    by_name = {_run_of(command).name: command for command in fake.commands("fit")}
    for name in ("R_restorer", "R_mask", "R_joint"):  # stage 2 and 3 load the calibrated copy
        assert f"--{occlusion.RESTORER_CHECKPOINT_KEY}={calibrated}" in by_name[name], name
    spec = occlusion.evaluation_spec(tmp_path / "out", tmp_path / "split", [0], restorer_name=occlusion.CALIBRATED_RUN)
    assert spec.seeds[0].restorer == seed / occlusion.CALIBRATED_RUN
    plain = occlusion.evaluation_spec(tmp_path / "out", tmp_path / "split", [0])
    assert plain.seeds[0].restorer == seed / occlusion.RESTORER_RUN
    occlusion.train(0, tmp_path / "out", tmp_path / "cache", options)
    assert len(fake.commands("calibrate-restorer")) == 1  # a finished calibration is reused
    published = tmp_path / "published"
    (tmp_path / "out" / "predictions-seed0.npz").write_bytes(b"")
    monkeypatch.setattr(occlusion, "compact_seed", lambda source, destination: None)
    for name in (occlusion.SPEC_JSON, occlusion.SUMMARY_JSON, occlusion.SUMMARY_MD):
        (tmp_path / "out" / name).write_text("{}")
    occlusion.export(tmp_path / "out", published, [0])
    assert json.loads((published / "calibration-seed0.json").read_text())["chosen"]["threshold"] == 0.7


@pytest.mark.parametrize("calibrate", [False, True])
def test_a_tuned_restorer_starts_from_the_finished_restorer_judged_by_several_critics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calibrate: bool
) -> None:
    occlusion, fake = _guided_benchmark_with_fake_mfer(monkeypatch)
    tuning = {"tune_epochs": 5, "tune_critics": 3, "tune_label_weight": 10.0}
    validation = {"calibrate_masks": True, "validation_split": tmp_path / "val"} if calibrate else {}
    options = argparse.Namespace(**vars(_guided_long_options()), **tuning, **validation)
    seed = occlusion.train(1, tmp_path / "out", tmp_path / "cache", options)
    order = [_run_of(command).name for command in fake.commands("fit")]
    assert order[order.index("restoration") :][:4] == ["restoration", "critic2", "critic3", "restoration_tuned"]
    by_name = {_run_of(command).name: command for command in fake.commands("fit")}
    assert "--seed_everything=2001" in by_name["critic2"] and "--seed_everything=3001" in by_name["critic3"]

    def setup(command: list[str]) -> list[str]:
        return [a for a in command if not a.startswith(("--seed_everything=", "--run.name="))]

    assert setup(by_name["critic2"]) == setup(by_name["critic"]) == setup(by_name["critic3"])  # another seed only
    tuned = by_name["restoration_tuned"]
    assert f"--model.init_args.initial_checkpoint={seed / 'restoration/checkpoints/restorer.ckpt'}" in tuned
    critics = [seed / name / "checkpoints/best-epoch=01.ckpt" for name in ("critic", "critic2", "critic3")]
    assert f"--model.init_args.recogniser_critic=[{', '.join(map(str, critics))}]" in tuned
    assert "--model.init_args.label_weight=10.0" in tuned and "--trainer.max_epochs=5" in tuned
    assert "--trainer.max_epochs=2" not in tuned and "--seed_everything=1" in tuned  # not the restorer's epochs
    evaluated = seed / (occlusion.CALIBRATED_RUN if calibrate else occlusion.TUNED_RUN)
    if calibrate:
        (calibration,) = fake.commands("calibrate-restorer")
        assert f"--restorer={seed / occlusion.TUNED_RUN}" in calibration  # the tuned restorer is calibrated
    for name in ("R_restorer", "R_mask", "R_joint"):  # stage 2 and 3 load the evaluated restorer
        assert f"--{occlusion.RESTORER_CHECKPOINT_KEY}={evaluated / 'checkpoints/restorer.ckpt'}" in by_name[name]
    name = occlusion.evaluated_restorer(calibrate, options.tune_epochs)
    assert (
        occlusion.evaluation_spec(tmp_path / "out", tmp_path / "split", [1], restorer_name=name).seeds[0].restorer
        == evaluated
    )
    calls = len(fake.calls)
    occlusion.train(1, tmp_path / "out", tmp_path / "cache", options)
    assert len(fake.calls) == calls  # every run reused


def test_restoration_overlays_reach_the_restorer_and_its_fine_tuning_and_set_the_joint_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    occlusion, fake = _guided_benchmark_with_fake_mfer(monkeypatch)
    reading = REPO / "configs/restoration/overlays/reads_expression.yaml"
    weights = tmp_path / "weights.yaml"  # a later overlay's weight replaces the restoration config's
    weights.write_text("model:\n  init_args:\n    hole_weight: 5.0\n")
    tuning = {"tune_epochs": 5, "tune_critics": 1, "tune_label_weight": 0.0}
    options = argparse.Namespace(**vars(_guided_long_options()), **tuning, restoration_overlay=[reading, weights])
    occlusion.train(0, tmp_path / "out", tmp_path / "cache", options)
    by_name = {_run_of(command).name: command for command in fake.commands("fit")}
    long_recipe = str(REPO / "configs/restoration/synthaffect_long.yaml")
    for name in ("restoration", "restoration_tuned"):
        command = by_name[name]
        assert command.index(long_recipe) < command.index(str(reading)) < command.index(str(weights)), name
    for name in ("R_clean", "critic", "R_restorer", "R_joint"):  # recognisers compose no restoration overlay
        assert str(reading) not in by_name[name], name
    joint = by_name["R_joint"]
    assert "--model.init_args.hole_weight=5.0" in joint and "--model.init_args.feature_matching_weight=1.0" in joint


def test_a_larger_tune_epochs_continues_the_finished_fine_tuning_once_the_runs_built_on_it_are_moved_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    occlusion, fake = _guided_benchmark_with_fake_mfer(monkeypatch)
    out, cache = tmp_path / "out", tmp_path / "cache"

    def options(tune_epochs: int) -> argparse.Namespace:
        tuning = {"tune_epochs": tune_epochs, "tune_critics": 2, "tune_label_weight": 10.0}
        validation = {"calibrate_masks": True, "validation_split": tmp_path / "val"}
        return argparse.Namespace(**vars(_guided_long_options()), **tuning, **validation)

    seed = occlusion.train(0, out, cache, options(5))
    tuned = seed / occlusion.TUNED_RUN
    assert read_run_record(tuned)["epochs"] == 5
    calls = len(fake.calls)
    with pytest.raises(SystemExit, match="would leave restoration_calibrated, R_mask, R_restorer, R_joint built on"):
        occlusion.train(0, out, cache, options(8))
    assert len(fake.calls) == calls  # nothing trained
    for name in (occlusion.CALIBRATED_RUN, "R_mask", "R_restorer", "R_joint"):
        shutil.move(seed / name, tmp_path / name)
    occlusion.train(0, out, cache, options(8))
    again = fake.calls[calls:]
    assert [command[0] for command in again] == ["fit", "calibrate-restorer", "fit", "fit", "fit"]
    candidates = [a for a in again[1] if a.startswith("--restorer=")]  # the fine-tuning's best and its end point
    assert candidates == [f"--restorer={tuned}", f"--restorer={tuned / 'checkpoints/last.ckpt'}"]
    assert [_run_of(command).name for command in again if command[0] == "fit"] == [
        "restoration_tuned", "R_mask", "R_restorer", "R_joint",
    ]  # fmt: skip
    assert "--ckpt_path=last" in again[0] and "--trainer.max_epochs=8" in again[0]  # continued, not started over
    assert read_run_record(tuned)["epochs"] == 8
    occlusion.train(0, out, cache, options(8))
    assert len(fake.calls) == calls + 5  # every run reused
    with pytest.raises(SystemExit, match="trained 8 epochs, more than the 5 asked"):
        occlusion.train(0, out, cache, options(5))


def test_a_decayed_fine_tuning_continues_only_a_constant_rate_run_that_stopped_before_its_decay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    occlusion, fake = _guided_benchmark_with_fake_mfer(monkeypatch)
    out, cache = tmp_path / "out", tmp_path / "cache"

    def train(tune_epochs: int, decay_epochs: int) -> Path:
        tuning = {"tune_epochs": tune_epochs, "tune_critics": 2, "tune_label_weight": 10.0}
        options = {**vars(_guided_long_options()), **tuning, "tune_decay_epochs": decay_epochs, "only": "restorer"}
        return occlusion.train(0, out, cache, argparse.Namespace(**options)) / occlusion.TUNED_RUN

    tuned = train(4, 0)
    assert "--model.init_args.lr_decay_epochs=0" in fake.calls[-1]
    calls = len(fake.calls)
    with pytest.raises(SystemExit, match="only a constant-rate run of at most 3 epochs continues into it"):
        train(6, 3)  # epoch 4 of that fit would already decay
    assert len(fake.calls) == calls
    train(7, 3)
    continued = fake.calls[calls:]
    assert len(continued) == 1 and "--ckpt_path=last" in continued[0]
    assert "--trainer.max_epochs=7" in continued[0] and "--model.init_args.lr_decay_epochs=3" in continued[0]
    assert occlusion.decay_epochs_of(tuned) == 3  # its latest session's config
    train(7, 3)
    assert len(fake.calls) == calls + 1  # the finished fit is the one asked: reused
    with pytest.raises(SystemExit, match="trained 7 epochs with lr_decay_epochs=3, not the 0 asked"):
        train(7, 0)
    with pytest.raises(SystemExit, match="trained 7 epochs with lr_decay_epochs=3: continued to 9"):
        train(9, 2)
    assert len(fake.calls) == calls + 1


def test_the_occlusion_benchmark_splits_a_seeds_training_between_two_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    occlusion, fake = _guided_benchmark_with_fake_mfer(monkeypatch)
    options = _guided_long_options()
    names = lambda: [_run_of(command).name for command in fake.commands("fit")]  # noqa: E731
    occlusion.train(0, tmp_path / "out", tmp_path / "cache", argparse.Namespace(**vars(options), only="restorer"))
    assert names() == ["critic", "restoration"]
    occlusion.train(0, tmp_path / "out", tmp_path / "cache", argparse.Namespace(**vars(options), only="recognisers"))
    assert names()[2:] == ["R_clean", "R", "R_occ", "R_aug", "R_clean_other"]
    occlusion.train(0, tmp_path / "out", tmp_path / "cache", options)  # the rest: behind the restorer, then stage 3
    assert names()[7:] == ["R_mask", "R_restorer", "R_joint"]


def test_the_occlusion_benchmark_trains_one_run_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    occlusion, fake = _guided_benchmark_with_fake_mfer(monkeypatch)
    options = _guided_long_options()
    names = lambda: [_run_of(command).name for command in fake.commands("fit")]  # noqa: E731

    def part(name: str) -> None:
        occlusion.train(0, tmp_path / "out", tmp_path / "cache", argparse.Namespace(**vars(options), only=name))

    part("R_aug")
    assert names() == ["R_aug"]
    with pytest.raises(RunLookupError):  # behind the restorer: not before it has finished
        part("R_mask")
    assert names() == ["R_aug"]
    part("restorer")
    part("R_mask")
    assert names()[1:] == ["critic", "restoration", "R_mask"]
    part("R_clean_other")
    assert names()[4:] == ["R_clean_other"]
    occlusion.train(0, tmp_path / "out", tmp_path / "cache", options)  # the rest, each run once
    assert names()[5:] == ["R_clean", "R", "R_occ", "R_restorer", "R_joint"]


def test_continued_recognisers_start_from_r_clean_and_meet_restoration_in_the_comparisons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    occlusion, fake = _guided_benchmark_with_fake_mfer(monkeypatch)
    monkeypatch.setattr(occlusion, "RECOGNISERS", {**occlusion.RECOGNISERS, **occlusion.CONTINUED})
    options = argparse.Namespace(**vars(_guided_long_options()), continue_epochs=5)
    names = lambda: [_run_of(command).name for command in fake.commands("fit")]  # noqa: E731

    def part(name: str) -> None:
        occlusion.train(0, tmp_path / "out", tmp_path / "cache", argparse.Namespace(**vars(options), only=name))

    with pytest.raises(RunLookupError):  # it starts from R-clean: not before R-clean has finished
        part("R_aug_cont")
    assert names() == []
    part("recognisers")
    assert names() == ["R_clean", "R", "R_occ", "R_aug", "R_clean_other", "R_clean_cont", "R_aug_cont"]
    by_name = {_run_of(command).name: command for command in fake.commands("fit")}
    start = f"--model.init_args.pretrained_encoders={{face: {tmp_path / 'out' / 'seed0' / 'R_clean'}}}"
    for name, twin in (("R_clean_cont", "R_clean"), ("R_aug_cont", "R_aug")):
        command = by_name[name]
        assert start in command and "--trainer.max_epochs=5" in command and "--trainer.max_epochs=3" not in command
        same = [a for a in command if a not in (start, "--trainer.max_epochs=5") and not a.startswith("--run.name")]
        assert same == [a for a in by_name[twin] if a != "--trainer.max_epochs=3" and not a.startswith("--run.name")]
    assert not any(a.startswith("--model.init_args.pretrained_encoders") for a in by_name["R_aug"])
    with pytest.raises(RunLookupError):  # the mask-aware one reads the restorer's masks: not before it has finished
        part("R_mask_cont")
    part("restorer")
    part("R_mask_cont")
    assert names()[-3:] == ["critic", "restoration", "R_mask_cont"]
    mask_aware = fake.commands("fit")[-1]
    restorer = tmp_path / "out" / "seed0" / "restoration/checkpoints/restorer.ckpt"
    assert start in mask_aware and "--trainer.max_epochs=5" in mask_aware
    assert f"--{occlusion.RESTORER_CHECKPOINT_KEY}={restorer}" in mask_aware
    assert str(occlusion.MASK_AWARE_OVERLAY) in mask_aware and occlusion.CLEAN_FACES in mask_aware
    assert "--data.init_args.online_occlusion_probability=0.5" in mask_aware  # R-aug+'s data, plus the mask
    spec = occlusion.evaluation_spec(tmp_path / "out", tmp_path / "split", [0])
    (mask_plus,) = [r for r in spec.recognisers if r.label == "R-mask+"]
    assert mask_plus.conditions == ("clean", "occluded") and mask_plus.restores and mask_plus.reference == "R-aug+"
    pairs = {(c.candidate, c.baseline) for c in spec.comparisons}
    assert {
        ("R-clean restored", "R-aug+ occluded"),
        ("R-clean+ restored", "R-aug+ occluded"),
        ("R-aug+ restored", "R-aug+ occluded"),
        ("R-aug+ restored", "R-aug+ restored_navier_stokes"),
        ("R-aug+ clean_restored", "R-aug+ clean"),
        ("R-clean restored", "R-mask+ occluded"),
        ("R-aug+ restored", "R-mask+ occluded"),
    } <= pairs
    assert ("R-clean+ restored", "R-clean+ occluded") not in pairs  # R-clean+ is not an occlusion-robust baseline


def test_selective_shares_are_chosen_on_validation_faces_then_compared_on_the_test_faces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import occlusion_restoration as occlusion

    monkeypatch.setattr(occlusion, "RECOGNISERS", {**occlusion.RECOGNISERS, **occlusion.CONTINUED})
    seen = {}

    def evaluate(spec, out, report_only=False, report=None):  # noqa: ANN001, ANN202
        seen.update(spec=spec, out=out, report_only=report_only)
        return {"selective": {"recognisers": {"R-aug+": {"best": 0.3}, "R-clean": {"best": 1.0}}}}

    monkeypatch.setattr(occlusion, "run_benchmark", evaluate)
    out = tmp_path / "out"
    chosen = occlusion.choose_selective(out, tmp_path / "val", [0, 1], None, occlusion.CALIBRATED_RUN)
    assert chosen == {"R-aug+": 0.3}  # restoring every face (1) needs no selective pipeline
    validation = seen["spec"]
    assert validation.split == tmp_path / "val" and seen["out"] == out / occlusion.SELECTIVE_VALIDATION
    assert {r.conditions for r in validation.recognisers} == {("occluded", "restored")}
    labels = {r.label for r in validation.recognisers}
    assert {"R-clean", "R-aug", "R-clean+", "R-aug+"} <= labels and not labels & {"R-mask+", "R+restorer", "R+joint"}
    assert validation.seeds[1].restorer == out / "seed1" / occlusion.CALIBRATED_RUN
    assert validation.seeds[1].runs["R-aug+"] == out / "seed1" / "R_aug_cont"

    test = occlusion.evaluation_spec(out, tmp_path / "split", [0], selective=chosen)
    (aug,) = [r for r in test.recognisers if r.label == "R-aug+"]
    assert aug.max_occluded_fraction == 0.3 and aug.conditions[-1] == "restored_selective"
    assert all(r.max_occluded_fraction is None for r in test.recognisers if r.label != "R-aug+")
    pairs = [(c.candidate, c.baseline) for c in test.comparisons]
    assert len(pairs) == len(set(pairs))
    assert {
        ("R-aug+ restored_selective", "R-aug+ restored"),
        ("R-aug+ restored_selective", "R-aug+ occluded"),
        ("R-aug+ restored_selective", "R-mask+ occluded"),
    } <= set(pairs)


def _rafdb_options(**settings: Any) -> argparse.Namespace:
    """The benchmark's options for recognisers on RAF-DB (configs/data/rafdb.yaml) at their default epochs."""
    defaults = {"fer_epochs": None, "restoration_epochs": None, "guided": False, "recogniser_config": []}
    return argparse.Namespace(**defaults, data_config=REPO / "configs/data/rafdb.yaml", **settings)


def test_the_occlusion_benchmark_on_another_data_set_reuses_one_restorer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import occlusion_restoration as occlusion

    fake = FakeMfer()
    monkeypatch.setattr(occlusion, "run", fake)
    restorer = _write_run(tmp_path / "shared" / "restoration", best="checkpoints/restorer.ckpt")
    rafdb = REPO / "configs/data/rafdb.yaml"
    options = _rafdb_options(restorer_run=restorer, restoration_data_root=None)
    for seed in (0, 1):
        occlusion.train(seed, tmp_path / "out", tmp_path / "rafdb", options)
    fits = fake.commands("fit")
    assert not [c for c in fits if _run_of(c).name == "restoration"]  # the named restorer serves every seed
    for command in fits:
        assert command.index(str(rafdb)) == command.index(str(occlusion.FER_CONFIG)) + 2  # data after quickstart
        assert occlusion.CLEAN_FACES not in command  # a real data set's faces are unoccluded already
        assert f"--data.init_args.root={tmp_path / 'rafdb'}" in command
    mask = [c for c in fits if _run_of(c).name == "R_mask"]
    assert len(mask) == 2 and all(
        f"--{occlusion.RESTORER_CHECKPOINT_KEY}={best_checkpoint(restorer)}" in c for c in mask
    )
    assert occlusion.data_root_of(rafdb, None) == Path("data/rafdb").resolve()

    spec = occlusion.evaluation_spec(tmp_path / "out", tmp_path / "split", [0, 1], restorer, resamples=100)
    assert spec.resamples == 100 and [s.restorer for s in spec.seeds] == [restorer, restorer]
    assert spec.seeds[1].runs["R-aug"] == tmp_path / "out/seed1/R_aug"
    pairs = {(c.candidate, c.baseline) for c in spec.comparisons}
    assert {("R-clean restored", "R-aug occluded"), ("R-clean restored", "R+mask occluded")} <= pairs
    assert ("R-clean restored", "R-clean restored_telea") in pairs
    recoveries = {(r.pipeline, r.reference) for r in spec.recoveries}
    assert ("R+restorer occluded", "R") in recoveries and ("R-aug restored", "R-aug") in recoveries


def test_the_occlusion_benchmark_trains_each_restorer_on_the_data_sets_own_faces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import occlusion_restoration as occlusion

    fake = FakeMfer()
    monkeypatch.setattr(occlusion, "run", fake)
    rafdb = REPO / "configs/data/rafdb.yaml"
    options = _rafdb_options(
        restoration_config=occlusion.RESTORATION_CONFIG,
        restorer_run=None,
        own_faces=True,
        restoration_data_root=tmp_path / "synthaffect",
    )
    occlusion.train(0, tmp_path / "out", tmp_path / "rafdb", options)
    restoration = [c for c in fake.commands("fit") if _run_of(c).name == "restoration"]
    assert len(restoration) == 1
    command = restoration[0]
    configs = [command[i + 1] for i, a in enumerate(command) if a == "--config"]
    assert configs[:3] == [str(occlusion.RESTORATION_CONFIG), str(rafdb), str(occlusion.OWN_FACES_OVERLAY)]
    assert f"--data.init_args.root={tmp_path / 'rafdb'}" in command  # the data set's cache, not SynthAffect's
    mask = [c for c in fake.commands("fit") if _run_of(c).name == "R_mask"]
    assert f"--{occlusion.RESTORER_CHECKPOINT_KEY}={best_checkpoint(_run_of(command))}" in mask[0]
    script = REPO / "benchmarks" / "occlusion_restoration.py"
    refused = subprocess.run(
        [sys.executable, str(script), "--own-faces", "--out", str(tmp_path / "x")], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "--own-faces trains each seed's restorer" in refused.stderr


def test_the_benchmarks_look_nothing_up_the_old_way() -> None:
    assert not (REPO / "benchmarks" / "modality_ablation.py").exists()  # the modalities suite and mfer report
    assert not (REPO / "benchmarks" / "fusion_ablation.py").exists()  # the fusion suites and mfer report --best-of
    assert not (REPO / "benchmarks" / "fusion_headroom.py").exists()  # mfer probe
    old = re.compile(r"default_root_dir|checkpoints/results|results\.json\"|glob\(\"\*\*/best|T_max=|restorer\.ckpt\"")
    found = {
        path.name: [line for line in path.read_text().splitlines() if old.search(line)]
        for path in sorted((REPO / "benchmarks").glob("*.py"))
    }
    assert not {name: lines for name, lines in found.items() if lines}


def test_the_occlusion_benchmark_exports_its_tables_with_decisions_only(tmp_path: Path) -> None:
    import numpy as np
    import occlusion_restoration as occlusion

    from multimodal_fer.evaluation.occlusion_evaluation import SeedEvaluation, load_seed, save_seed
    from multimodal_fer.evaluation.subject_bootstrap import SamplePredictions
    from multimodal_fer.types import LabelSpace

    rng = np.random.default_rng(0)
    space = LabelSpace(expressions=tuple(f"e{i}" for i in range(8)), action_units=(1, 2, 4), dimensions=("valence",))
    targets = {"expr": rng.integers(0, 8, 20), "au": rng.integers(0, 2, (20, 3)).astype(float)}
    outputs = {"expr": rng.normal(size=(20, 8)).astype(np.float32), "au": rng.normal(size=(20, 3)).astype(np.float32)}
    outputs["va"] = rng.normal(size=(20, 1)).astype(np.float32)
    predictions = {"R clean": SamplePredictions(np.arange(20), np.arange(20) // 5, targets, outputs, space)}
    out, published = tmp_path / "out", tmp_path / "published"
    save_seed(SeedEvaluation(3, predictions, {}, {}), out / "predictions-seed3.npz", "units", np.zeros(20, int))
    for name in ("spec.json", "summary.json", "summary.md", "verdict.md"):
        (out / name).write_text(name)
    validation = out / occlusion.SELECTIVE_VALIDATION  # where the selective shares were chosen goes along
    save_seed(SeedEvaluation(3, predictions, {}, {}), validation / "predictions-seed3.npz", "units", np.zeros(20, int))
    for name in ("spec.json", "summary.json", "summary.md"):
        (validation / name).write_text(f"validation {name}")
    occlusion.export(out, published, [3])
    assert sorted(p.name for p in published.iterdir()) == [
        "predictions-seed3.npz", "selective-validation", "spec.json", "summary.json", "summary.md", "verdict.md",
    ]  # fmt: skip
    assert (published / occlusion.SELECTIVE_VALIDATION / "summary.md").read_text() == "validation summary.md"
    assert (published / occlusion.SELECTIVE_VALIDATION / "predictions-seed3.npz").is_file()
    assert (published / "summary.md").read_text() == "summary.md"
    kept = load_seed(published / "predictions-seed3.npz").evaluation.predictions["R clean"].outputs
    assert np.array_equal(kept["expr"].argmax(axis=1), outputs["expr"].argmax(axis=1))
    assert np.array_equal(kept["au"] > 0, outputs["au"] > 0) and np.array_equal(kept["va"], outputs["va"])


def test_the_throughput_benchmark_times_all_three_paths_on_a_tiny_cache(
    tiny_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import throughput

    from conftest import tiny_data_args

    output = tmp_path / "throughput.json"
    arguments = ["--config", str(REPO / "configs/quickstart.yaml"), "--steps", "2", "--warmup", "1"]
    arguments += ["--output", str(output), *tiny_data_args(tiny_cache)]
    monkeypatch.setattr(sys, "argv", ["throughput.py", *arguments])
    throughput.main()
    result = json.loads(output.read_text())
    assert result["precision"] == "32-true" and result["device"].startswith("CPU")
    for key in ("loader_samples_per_s", "plain_pytorch_train_samples_per_s", "lightning_train_samples_per_s"):
        assert result[key] > 0, key


def test_several_parts_train_in_the_order_given_for_every_seed_then_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import occlusion_restoration as occlusion

    calls, trained = [], []
    monkeypatch.setattr(occlusion, "run", calls.append)
    monkeypatch.setattr(occlusion, "train", lambda seed, out, root, options: trained.append((options.only, seed)))
    monkeypatch.setattr(occlusion, "run_benchmark", lambda *a, **k: pytest.fail("--only stops before the evaluation"))
    arguments = ["occlusion_restoration.py", "--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "cache")]
    monkeypatch.setattr(sys, "argv", [*arguments, "--seeds", "0", "2", "--only", "R_clean", "R_aug"])
    occlusion.main()
    assert trained == [("R_clean", 0), ("R_clean", 2), ("R_aug", 0), ("R_aug", 2)]
    assert [command[0] for command in calls] == ["prepare", "occlusion-split"]
    monkeypatch.setattr(sys, "argv", [*arguments, "--only", "R_clean", "R_nothing"])
    with pytest.raises(SystemExit):
        occlusion.main()
