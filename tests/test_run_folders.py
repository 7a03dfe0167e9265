"""One folder per run, files that are never overwritten, and resume after kill -9 that repeats an uninterrupted run."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal_fer.callbacks.moved_run import relocated_state
from multimodal_fer.cli import main
from multimodal_fer.datamodules.epoch_sampler import EpochShuffleSampler, epoch_seed
from multimodal_fer.datamodules.online_occlusion import OnlineOcclusionDataset
from multimodal_fer.run_folder import (
    RunFolder,
    RunFolderError,
    RunSettings,
    create_run_folder,
    experiment_name,
    find_resumable_run,
    free_path,
    job_run_name,
    run_folder_of_checkpoint,
)

from conftest import CONFIGS, MFER, REPO, tiny_data_args

QUICKSTART = str(CONFIGS / "quickstart.yaml")


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _cpu(root: Path) -> list[str]:
    return [f"--run.root={root}", "--trainer.logger=false", "--trainer.accelerator=cpu"]


# ---------------------------------------------------------------------------------------------- unit level
def test_new_runs_get_distinct_readable_names(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    first = create_run_folder(tmp_path, "quickstart", None, seed=0)
    second = create_run_folder(tmp_path, "quickstart", None, seed=0)
    assert first.path != second.path and first.path.parent == second.path.parent == tmp_path / "quickstart"
    assert first.name.endswith("_seed0") and second.name.startswith(first.name[:10])
    record = first.read_record()
    assert record["experiment"] == "quickstart" and record["name"] == first.name and record["sessions"] == 1
    assert len(record["wandb_id"]) == 8 and record["wandb_id"] != second.read_record()["wandb_id"]


def test_a_name_that_holds_a_run_is_refused_but_a_failed_start_is_reused(tmp_path: Path) -> None:
    folder = create_run_folder(tmp_path, "e", "mine", seed=1)
    assert create_run_folder(tmp_path, "e", "mine", seed=1).path == folder.path  # nothing written yet: reused
    (folder.checkpoints).mkdir()
    (folder.checkpoints / "last.ckpt").write_bytes(b"x")
    with pytest.raises(RunFolderError, match=r"already holds a run.*--ckpt_path last"):
        create_run_folder(tmp_path, "e", "mine", seed=1)


def test_job_ids_name_runs_so_that_independent_processes_agree(monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert job_run_name() == "slurm-4242-3"
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    assert job_run_name() is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "ab:12")
    assert job_run_name() == "torchrun-ab-12"


def test_settings_refuse_names_that_are_not_folder_names() -> None:
    with pytest.raises(ValueError, match="run.name"):
        RunSettings(name="../elsewhere")
    assert experiment_name(RunSettings(), ["configs/quickstart.yaml"]) == "quickstart"
    assert experiment_name(RunSettings(experiment="x"), ["configs/quickstart.yaml"]) == "x"
    assert experiment_name(RunSettings(), []) == "default"


def test_resume_finds_the_newest_run_with_a_last_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="no run of experiment 'e'"):
        find_resumable_run(tmp_path, "e", None)
    old, new, empty = (create_run_folder(tmp_path, "e", name, seed=0) for name in ("old", "new", "empty"))
    for folder, stamp in ((old, 1_000), (new, 2_000)):
        folder.checkpoints.mkdir()
        (folder.checkpoints / "last.ckpt").write_bytes(b"x")
        os.utime(folder.checkpoints / "last.ckpt", (stamp, stamp))
    assert find_resumable_run(tmp_path, "e", None).name == "new"
    assert find_resumable_run(tmp_path, "e", "old").name == "old"
    with pytest.raises(RunFolderError, match="Runs of 'e' with one: new, old"):
        find_resumable_run(tmp_path, "e", empty.name)
    assert run_folder_of_checkpoint(new.checkpoints / "last.ckpt") == RunFolder(tmp_path.resolve(), "e", "new")
    assert run_folder_of_checkpoint(tmp_path / "elsewhere.ckpt") is None


def test_a_moved_checkpoint_state_names_the_new_folder_and_leaves_other_paths_alone() -> None:
    state = {
        "dirpath": "/old/run/checkpoints",
        "best_model_path": "/old/run/checkpoints/best-epoch=03.ckpt",
        "kth_best_model_path": "/old/run/checkpoints_other/x.ckpt",  # another folder that shares the prefix
        "last_model_path": "",
        "best_k_models": {"/old/run/checkpoints/best-epoch=03.ckpt": 0.5},
        "best_model_score": 0.5,
    }
    moved = relocated_state(state, "/old/run/checkpoints", "/new/run/checkpoints")
    assert moved["dirpath"] == "/new/run/checkpoints"
    assert moved["best_model_path"] == "/new/run/checkpoints/best-epoch=03.ckpt"
    assert moved["best_k_models"] == {"/new/run/checkpoints/best-epoch=03.ckpt": 0.5}
    assert moved["kth_best_model_path"] == "/old/run/checkpoints_other/x.ckpt" and moved["last_model_path"] == ""
    assert moved["best_model_score"] == 0.5 and state["dirpath"] == "/old/run/checkpoints"  # a copy


def test_free_path_never_returns_a_taken_name(tmp_path: Path) -> None:
    (tmp_path / "results-test.json").write_text("{}")
    (tmp_path / "results-test.2.json").write_text("{}")
    assert free_path(tmp_path, "results-test.json").name == "results-test.3.json"
    assert free_path(tmp_path, "config.yaml").name == "config.yaml"


def test_training_order_depends_on_seed_and_epoch_only() -> None:
    epochs: list[int] = [0]
    sampler = EpochShuffleSampler(50, seed=7, epoch_source=lambda: epochs[0])
    torch.manual_seed(1)
    first = list(sampler)
    torch.manual_seed(2)  # the global random state plays no part
    assert list(sampler) == first and sorted(first) == list(range(50)) and sampler.drawn_epoch == 0
    epochs[0] = 1
    assert list(sampler) != first and sampler.drawn_epoch == 1
    assert list(EpochShuffleSampler(50, seed=8, epoch_source=lambda: 0)) != first
    assert epoch_seed(7, 0) != epoch_seed(7, 1) != epoch_seed(8, 0)


def test_online_occlusion_draws_depend_on_seed_and_samples_only() -> None:
    class Faces(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 6

        def __getitems__(self, positions):
            generator = torch.Generator().manual_seed(0)
            faces = torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8, generator=generator)
            return {"face": faces[list(positions)].clone()}

    occluded = OnlineOcclusionDataset(Faces(), probability=1.0, seed=5)
    torch.manual_seed(0)
    first = occluded.__getitems__([0, 3, 4])
    torch.manual_seed(99)
    again = occluded.__getitems__([0, 3, 4])
    assert torch.equal(first["face"], again["face"]) and torch.equal(first["occlusion_mask"], again["occlusion_mask"])
    assert not torch.equal(OnlineOcclusionDataset(Faces(), 1.0, seed=6).__getitems__([0, 3, 4])["face"], first["face"])


# ------------------------------------------------------------------------------------------ through mfer
def test_each_fit_gets_its_folder_and_test_conditions_add_files(tmp_path: Path, tiny_cache: Path) -> None:
    common = ["--config", QUICKSTART, *tiny_data_args(tiny_cache), *_cpu(tmp_path)]
    main(["fit", *common, "--trainer.max_epochs=1"])
    main(["fit", *common, "--trainer.max_epochs=1"])
    runs = sorted(p for p in (tmp_path / "quickstart").iterdir() if not p.is_symlink())
    assert len(runs) == 2
    first, second = runs
    assert (tmp_path / "quickstart" / "latest").resolve() == second.resolve()
    for run in runs:
        assert {"run.json", "config.yaml", "results-test.json"} <= {p.name for p in run.iterdir()}
        assert (run / "checkpoints" / "last.ckpt").is_file()
        record = json.loads((run / "run.json").read_text())
        assert (run / record["best_checkpoint"]).is_file() and record["finished"] and record["epochs"] == 1
    before, second_before = _digests(first), _digests(second)
    assert "multimodal_fer.callbacks.atomic_checkpoints.AtomicCheckpointIO" in (first / "config.yaml").read_text()

    # Tests of the first run under other conditions add files beside the fit's, replacing none.
    main(["test", *common, "--run.experiment=quickstart", f"--run.name={first.name}", "--ckpt_path=best"])
    main(
        [
            "test",
            *common,
            f"--ckpt_path={first / 'checkpoints' / 'last.ckpt'}",
            "--data.init_args.withheld_modalities=[audio]",
        ]
    )
    after = _digests(first)
    assert {name: after[name] for name in before} == before
    added = set(after) - set(before)
    assert {"results-test.2.json", "config-test.yaml", "results-test-withheld-audio-last.json"} <= added
    assert "config-test-withheld-audio-last.yaml" in added
    withheld = json.loads((first / "results-test-withheld-audio-last.json").read_text())
    assert withheld["condition"] == "test-withheld-audio-last" and withheld["data"]["withheld_modalities"] == ["audio"]
    assert withheld["run"]["name"] == first.name
    assert _digests(second) == second_before  # the other run is untouched


def test_fit_into_a_taken_name_and_resume_without_a_run_are_refused(tmp_path: Path, tiny_cache: Path) -> None:
    common = ["--config", QUICKSTART, *tiny_data_args(tiny_cache), *_cpu(tmp_path), "--trainer.max_epochs=1"]
    with pytest.raises(RunFolderError, match="no run of experiment 'quickstart'"):
        main(["fit", *common, "--ckpt_path=last"])
    main(["fit", *common, "--run.name=mine", "--test_after_fit=false"])
    before = _digests(tmp_path / "quickstart" / "mine")
    with pytest.raises(RunFolderError, match="already holds a run"):
        main(["fit", *common, "--run.name=mine"])
    assert _digests(tmp_path / "quickstart" / "mine") == before


def test_resuming_from_a_checkpoint_file_names_the_model_settings_it_overrides(
    tmp_path: Path, tiny_cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = iter(range(10))  # each session sees another commit checked out, as when code moves during a long fit
    monkeypatch.setattr("multimodal_fer.cli.git_revision", lambda: {"sha": f"commit{next(sessions)}", "dirty": False})
    common = ["--config", QUICKSTART, *tiny_data_args(tiny_cache), *_cpu(tmp_path), "--test_after_fit=false"]
    main(["fit", *common, "--run.name=mine", "--trainer.max_epochs=1"])
    checkpoint = tmp_path / "quickstart" / "mine" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    main(["fit", *common, f"--ckpt_path={checkpoint}", "--trainer.max_epochs=2"])
    assert "not used" not in capsys.readouterr().err, "the same settings: nothing to say"
    main(
        [
            "fit",
            *common,
            f"--ckpt_path={checkpoint}",
            "--trainer.max_epochs=2",
            "--model.init_args.expr_label_smoothing=0.2",
        ]
    )
    said = " ".join(capsys.readouterr().err.split())
    assert "the model is built with the settings saved in the checkpoint" in said
    assert "init_args.expr_label_smoothing: 0.2 asked, 0.0 used" in said
    resumed = (tmp_path / "quickstart" / "mine" / "config-resumed.2.yaml").read_text()
    assert "expr_label_smoothing: 0.0" in resumed, "what the run folder records is what was used"
    record = json.loads((tmp_path / "quickstart" / "mine" / "run.json").read_text())
    assert record["git"]["sha"] == "commit0", "the commit the fit started from"
    assert [session["sha"] for session in record["resumed_git"]] == ["commit1", "commit2"]
    main(["test", *common, "--run.experiment=quickstart", "--run.name=mine", "--ckpt_path=last"])
    results = json.loads((tmp_path / "quickstart" / "mine" / "results-test-last.json").read_text())
    assert results["run"]["fit_git"]["sha"] == "commit0" and len(results["run"]["resumed_git"]) == 2


def test_a_copied_run_resumes_with_its_best_checkpoint_still_tracked(tmp_path: Path, tiny_cache: Path) -> None:
    """Lightning forgets the best score when the checkpoint folder has changed; mfer carries it over."""
    common = ["--config", QUICKSTART, *tiny_data_args(tiny_cache), "--trainer.logger=false"]
    common += ["--trainer.accelerator=cpu", "--test_after_fit=false", "--run.name=mine"]
    main(["fit", *common, "--run.root=" + str(tmp_path / "first"), "--trainer.max_epochs=1"])
    original = tmp_path / "first" / "quickstart" / "mine"
    before = _digests(original)
    first_best = json.loads((original / "run.json").read_text())["best_score"]
    copy = tmp_path / "elsewhere" / "quickstart" / "mine"
    shutil.copytree(original, copy)
    main(["fit", *common, "--run.root=" + str(tmp_path / "elsewhere"), "--ckpt_path=last", "--trainer.max_epochs=3"])
    record = json.loads((copy / "run.json").read_text())
    assert record["epochs"] == 3 and record["best_score"] >= first_best  # never replaced by a worse epoch
    best = copy / record["best_checkpoint"]
    assert best.is_file() and best.parent == copy / "checkpoints"
    kept = sorted(path.name for path in (copy / "checkpoints").iterdir())
    assert kept == sorted([best.name, "last.ckpt"]), "the copied best was tracked (and replaced only by a better one)"
    assert _digests(original) == before, "the run it was copied from is untouched"


def _fit_process(root: Path, cache: Path, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [
        *MFER,
        "fit",
        "--config",
        QUICKSTART,
        *tiny_data_args(cache, num_workers=1, online_occlusion_probability=0.5),
        f"--run.root={root}",
        "--trainer.accelerator=cpu",
        "--trainer.max_epochs=4",
        *extra,
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.mark.slow
def test_kill_9_then_resume_ends_like_an_uninterrupted_run(tmp_path: Path, tiny_cache: Path) -> None:
    """A fit killed with SIGKILL and resumed with ``--ckpt_path last`` ends with the uninterrupted run's metrics.

    Both fits log to W&B offline, one data-loader worker reads the batches and online occlusion draws fresh
    occluders, so every source of randomness in training takes part.
    """
    # A W&B run in this process first, as other tests of a full test run do: it leaves its service's address in
    # WANDB_SERVICE, which the fits below inherit. Sharing that service, the killed fit's run id would stay "in use"
    # until this process ends and the resume would be refused; each fit must start its own service.
    wandb = pytest.importorskip("wandb")
    wandb.init(project="parent", mode="offline", dir=tmp_path / "parent").finish()
    assert os.environ.get("WANDB_SERVICE")
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO / "tests")}
    env.pop("WANDB_API_KEY", None)
    whole = _fit_process(tmp_path, tiny_cache, "--run.name=whole", env=env)
    assert whole.returncode == 0, whole.stderr[-3000:]
    kill = '{"class_path": "run_faults.SigkillAtEpochEnd", "init_args": {"epoch": 2}}'
    killed = _fit_process(tmp_path, tiny_cache, "--run.name=killed", f"--trainer.callbacks+={kill}", env=env)
    assert killed.returncode == -9, killed.stderr[-3000:]
    run = tmp_path / "quickstart" / "killed"
    assert not (run / "results-test.json").exists() and (run / "checkpoints" / "last.ckpt").is_file()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 1

    # The killed process's W&B service lives on until it notices its parent is gone (seconds; longer on a loaded
    # machine) and holds the run id meanwhile: a resume at once waits for it (WandbLogger retries for a minute).
    resumed = _fit_process(tmp_path, tiny_cache, "--ckpt_path=last", env=env)  # finds the newest run: killed
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = json.loads((tmp_path / "quickstart" / "whole" / "results-test.json").read_text())["metrics"]
    metrics = json.loads((run / "results-test.json").read_text())["metrics"]
    assert len(metrics) > 20 and metrics == expected

    record = json.loads((run / "run.json").read_text())
    assert record["sessions"] == 2 and len(record["resumed"]) == 1 and record["epochs"] == 4
    whole_record = json.loads((tmp_path / "quickstart" / "whole" / "run.json").read_text())
    assert Path(record["best_checkpoint"]).name == Path(whole_record["best_checkpoint"]).name  # same best epoch
    assert (run / "config.yaml").is_file() and (run / "config-resumed.yaml").is_file()
    offline_runs = sorted((run / "wandb").glob("offline-run-*"))  # both sessions logged into the same W&B run
    assert len(offline_runs) == 2 and all(p.name.endswith(record["wandb_id"]) for p in offline_runs)


def test_predictions_csv_of_a_second_predict_does_not_replace_the_first(tmp_path: Path, tiny_cache: Path) -> None:
    common = ["--config", QUICKSTART, *tiny_data_args(tiny_cache), *_cpu(tmp_path), "--run.name=p"]
    main(["fit", *common, "--trainer.max_epochs=1", "--test_after_fit=false"])
    checkpoint = tmp_path / "quickstart" / "p" / "checkpoints" / "last.ckpt"
    main(["predict", *common, f"--ckpt_path={checkpoint}"])
    main(["predict", *common, f"--ckpt_path={checkpoint}"])
    names = {p.name for p in (tmp_path / "quickstart" / "p").glob("predictions*.csv")}
    assert names == {"predictions.csv", "predictions.2.csv"}
    first = np.loadtxt(tmp_path / "quickstart" / "p" / "predictions.csv", delimiter=",", skiprows=1, usecols=0)
    assert len(first) == 8


def test_checkpoints_are_written_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    from multimodal_fer.callbacks.atomic_checkpoints import AtomicCheckpointIO

    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1, "w": torch.ones(3)}, target)
    assert torch.load(target, weights_only=False)["epoch"] == 1

    def dies_while_writing(checkpoint, path):  # the process is killed half-way through the bytes
        Path(path).write_bytes(b"PK\x03\x04 truncated")
        raise KeyboardInterrupt

    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io._atomic_save", dies_while_writing)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, target)
    assert torch.load(target, weights_only=False)["epoch"] == 1  # the previous checkpoint, whole
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind


@pytest.mark.slow
def test_two_fits_with_one_seed_give_identical_results(tmp_path: Path, tiny_cache: Path) -> None:
    """Same seed, same machine, two fresh processes: every metric of the results files is equal, bit for bit."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    for name in ("first", "second"):
        done = _fit_process(tmp_path, tiny_cache, f"--run.name={name}", "--trainer.max_epochs=3", env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    first, second = (
        json.loads((tmp_path / "quickstart" / name / "results-test.json").read_text()) for name in ("first", "second")
    )
    assert len(first["metrics"]) > 20 and first["metrics"] == second["metrics"]
    assert first["environment"]["torch_threads"] == second["environment"]["torch_threads"]
