"""W&B after a test: confusion matrix, predictions table with sample media, results artifacts; faces per data card."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from multimodal_fer.callbacks import WandbTestLogger
from multimodal_fer.callbacks.wandb_artifacts import RESULTS_ARTIFACT_TYPE, log_results_artifact
from multimodal_fer.cli import main
from multimodal_fer.datamodules import SynthAffectDataModule
from multimodal_fer.datasets.synthaffect.adapter import SynthAffect
from multimodal_fer.datasets.synthaffect.labels import EXPRESSIONS_8

from conftest import CONFIGS, TINY_DATA, run_args, run_folder, tiny_data_args

wandb = pytest.importorskip("wandb")

QUICKSTART = str(CONFIGS / "quickstart.yaml")
COLUMNS = [
    "index",
    "subject",
    "true expression",
    "predicted expression",
    "probability",
    "true AUs",
    "predicted AUs",
    "true valence",
    "predicted valence",
    "true arousal",
    "predicted arousal",
]
TEST_SAMPLES = TINY_DATA["test_subjects"] * TINY_DATA["samples_per_subject"]


def _spy_on_wandb(monkeypatch) -> tuple[list[dict], list]:
    """Record every ``Run.log`` payload and ``Run.log_artifact`` artifact (the real calls still run)."""
    from wandb.sdk.wandb_run import Run

    logged: list[dict] = []
    artifacts: list = []
    log, log_artifact = Run.log, Run.log_artifact

    def spy_log(self, data, *args, **kwargs):
        logged.append(dict(data))
        return log(self, data, *args, **kwargs)

    def spy_artifact(self, artifact, *args, **kwargs):
        artifacts.append(artifact)
        return log_artifact(self, artifact, *args, **kwargs)

    monkeypatch.setattr(Run, "log", spy_log)
    monkeypatch.setattr(Run, "log_artifact", spy_artifact)
    return logged, artifacts


def _one(logged: list[dict], key: str):
    found = [payload[key] for payload in logged if key in payload]
    assert len(found) == 1, f"{key} logged {len(found)} times"
    return found[0]


def _column(table, name: str) -> list:
    position = table.columns.index(name)
    return [row[position] for row in table.data]


@pytest.mark.slow  # a W&B offline fit and two tests: 5-25 s on 2 shared cores
def test_a_test_logs_confusion_matrix_table_media_and_results_artifact_and_hides_forbidden_faces(
    tmp_path: Path, tiny_cache: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    logged, artifacts = _spy_on_wandb(monkeypatch)
    # Offline runs upload nothing, so Lightning refuses log_model there; the switch is forced to test the upload path.
    monkeypatch.setattr("multimodal_fer.callbacks.wandb_test_logger.uploads_artifacts", lambda logger: True)
    common = [*tiny_data_args(tiny_cache), *run_args(tmp_path), "--trainer.accelerator=cpu"]
    main(
        [
            "fit",
            "--config",
            QUICKSTART,
            *common,
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1",
            "--wandb_test.max_rows=3",
        ]
    )
    folder = run_folder(tmp_path)
    matrix = _one(logged, "test/expr/confusion_matrix")
    assert list(matrix.table.columns) == ["Actual", "Predicted", "nPredictions"]
    assert sum(row[2] for row in matrix.table.data) == TEST_SAMPLES  # every labelled test sample, once
    assert {row[0] for row in matrix.table.data} == set(EXPRESSIONS_8)
    table = _one(logged, "test/predictions")
    assert table.columns == [*COLUMNS, "face", "voice", "depth", "physio"]
    assert len(table.data) == 3  # the row cap
    assert _column(table, "index") == sorted(_column(table, "index"))
    kinds = {name: {type(value) for value in _column(table, name)} for name in ("face", "voice", "depth", "physio")}
    assert kinds == {"face": {wandb.Image}, "voice": {wandb.Audio}, "depth": {wandb.Image}, "physio": {wandb.Image}}
    assert set(_column(table, "predicted expression")) <= set(EXPRESSIONS_8)
    # The offline run's own files hold both tables, with the same columns and rows.
    written = next(folder.glob("wandb/offline-run-*/files/media/table/test/predictions_*.table.json"))
    assert json.loads(written.read_text())["columns"] == table.columns
    assert len(json.loads(written.read_text())["data"]) == 3
    assert list(folder.glob("wandb/offline-run-*/files/media/table/test/expr/confusion_matrix*.table.json"))
    results = [artifact for artifact in artifacts if artifact.type == RESULTS_ARTIFACT_TYPE]  # W&B adds run tables
    assert len(results) == 1 and set(results[0].manifest.entries) == {"results-test.json"}
    fitted_f1 = _one(logged, "test/expr/f1_macro")  # a plain test's scalars keep their test/ keys
    assert fitted_f1 == pytest.approx(
        json.loads((folder / "results-test.json").read_text())["metrics"]["test/expr/f1_macro"]
    )

    # The same checkpoint tested on a data set whose card forbids showing faces: no face or depth media at all.
    logged.clear()
    monkeypatch.setattr(SynthAffect, "face_media_allowed", False)
    withheld = "--data.init_args.withheld_modalities=[audio]"
    main(["test", "--config", QUICKSTART, *common, "--ckpt_path=best", withheld, "--wandb_test.max_rows=50"])
    table = _one(logged, "test-withheld-audio/predictions")
    # Its scalars under its own condition, so the W&B run keeps the plain test's test/... values beside them.
    withheld_results = json.loads((folder / "results-test-withheld-audio.json").read_text())["metrics"]
    assert _one(logged, "test-withheld-audio/expr/f1_macro") == pytest.approx(withheld_results["test/expr/f1_macro"])
    assert not [key for payload in logged for key in payload if key.startswith("test/")]
    assert table.columns == [*COLUMNS, "physio"]  # no face, no depth; audio withheld, so no voice either
    assert len(table.data) == TEST_SAMPLES  # fewer samples than the cap
    images = [v for payload in logged for v in payload.values() if isinstance(v, wandb.Image)]
    assert not images
    assert {type(value) for value in _column(table, "physio")} == {wandb.Image}


def test_point_cloud_media_and_what_a_forbidding_card_leaves_out(tiny_cache: Path) -> None:
    from multimodal_fer.visualization.sample_media import CachedSampleMedia

    data = SynthAffectDataModule(root=str(tiny_cache), **{k: v for k, v in TINY_DATA.items() if k != "num_workers"})
    data.setup()
    media = CachedSampleMedia(data.reader, {"depth": "points", "face": "face"}, True, wandb)
    assert media.columns == ["depth", "face"]
    cloud, face = media.row(int(data.splits["test"][0]))
    assert isinstance(cloud, wandb.Object3D) and isinstance(face, wandb.Image)
    hidden = CachedSampleMedia(data.reader, {"depth": "points", "face": "face", "audio": "mel"}, False, wandb)
    assert hidden.columns == [] and set(hidden.left_out) == {"depth", "face", "audio"}
    assert "face_media_allowed" in hidden.left_out["face"] and "'mel'" in hidden.left_out["audio"]


def test_without_a_wandb_logger_nothing_is_kept_or_logged() -> None:
    callback = WandbTestLogger(max_rows=4)
    trainer = SimpleNamespace(loggers=[], world_size=1, is_global_zero=True)
    batch = {"index": torch.arange(2), "expr": torch.tensor([0, 1])}
    callback.on_test_batch_end(trainer, None, {"expr": torch.zeros(2, 8)}, batch, 0)
    callback.on_test_end(trainer, None)
    assert callback._kept == [] and callback.last_logged == {}
    with pytest.raises(ValueError, match="max_rows"):
        WandbTestLogger(max_rows=-1)


def test_results_artifact_holds_the_results_and_predictions_files(tmp_path: Path) -> None:
    results = tmp_path / "results-test-withheld-audio.json"
    results.write_text("{}")
    np.savez(tmp_path / "results-test-withheld-audio.predictions.npz", index=np.arange(3))
    experiment = SimpleNamespace(id="ab/c", log_artifact=lambda artifact, aliases: (artifact, aliases))
    artifact, aliases = log_results_artifact(experiment, wandb, results, "test-withheld-audio")
    assert artifact.name == "results-ab_c" and artifact.type == RESULTS_ARTIFACT_TYPE
    assert set(artifact.manifest.entries) == {results.name, "results-test-withheld-audio.predictions.npz"}
    assert aliases == ["latest", "test-withheld-audio"]


@pytest.mark.slow  # four fits with W&B: 20-60 s on 2 shared cores
def test_each_command_in_one_process_logs_to_its_own_wandb_run_in_the_mode_of_its_time(
    tmp_path: Path, tiny_cache: Path, monkeypatch
) -> None:
    from multimodal_fer.loggers import active_wandb_run

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    settings = [*tiny_data_args(tiny_cache), "--trainer.accelerator=cpu", "--trainer.max_epochs=1"]
    settings += ["--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1", "--test_after_fit=false"]
    # A disabled run first: W&B reads WANDB_MODE only when its session starts, so the logger must pass the mode on.
    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", "--config", QUICKSTART, *settings, f"--run.root={tmp_path}", "--run.name=quiet"])
    assert not list(tmp_path.rglob("offline-run-*"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    logged, _ = _spy_on_wandb(monkeypatch)
    runs = []
    for name in ("first", "second"):
        main(["fit", "--config", QUICKSTART, *settings, f"--run.root={tmp_path}", f"--run.name={name}"])
        assert active_wandb_run() is None, "a fit finishes the W&B run it started"
        runs.append(sorted(p.name for p in tmp_path.rglob("offline-run-*")))
    assert len(runs[0]) == 1 and len(runs[1]) == 2, "the second fit logs to a run of its own"
    assert logged, "both fits logged"
    callers = wandb.init(mode="offline", project="notebook", dir=str(tmp_path))
    try:
        main(["fit", "--config", QUICKSTART, *settings, f"--run.root={tmp_path}", "--run.name=third"])
        assert active_wandb_run() is callers, "a run the caller started stays open"
    finally:
        callers.finish()


def test_a_prepared_caches_voices_and_signals_get_their_rates_and_channel_names(tmp_path: Path) -> None:
    """A real data set's cache keeps its media settings under settings.processor, not where SynthAffect's are: the
    voice column needs the audio rate (it was left out as "no audio_sample_rate"), the physiology plot the rate and
    channel names (it fell back to samples and ch0, ch1, ...)."""
    from multimodal_fer.datasets import DEAP, RAVDESS, SubjectKFold
    from multimodal_fer.visualization.sample_media import CachedSampleMedia, cache_media_settings

    from adapter_checks import tiny_datamodule
    from data.deap.generate import write_fake_deap
    from data.ravdess.generate import write_fake_ravdess

    write_fake_ravdess(tmp_path / "ravdess_raw")
    voices = tiny_datamodule(RAVDESS(), tmp_path / "ravdess_raw", tmp_path / "ravdess", split=SubjectKFold(num_folds=3))
    voices.prepare()
    voices.setup()
    media = CachedSampleMedia(voices.reader, {"face": "face", "audio": "audio"}, False, wandb)
    assert media.columns == ["voice"] and media.audio_rate == 16000 and "face_media_allowed" in media.left_out["face"]
    with_voice = next(int(i) for i in voices.splits["train"] if voices.reader.array("present")[int(i)][1])
    assert isinstance(media.row(with_voice)[0], wandb.Audio)
    write_fake_deap(tmp_path / "deap_raw")
    signals = tiny_datamodule(DEAP(), tmp_path / "deap_raw", tmp_path / "deap", split=SubjectKFold(num_folds=3))
    signals.prepare()
    audio_rate, physio_rate, channels = cache_media_settings(signals._open_cache())
    assert audio_rate is None and physio_rate == 128 and channels == DEAP().physio_layout().channels
