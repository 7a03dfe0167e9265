"""Faults and bad inputs, each with its expected outcome: a clear error, a recorded failure or a masked modality.

docs/reliability.md lists every kind with the test that checks it (here or in the adapters' and other tests).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from multimodal_fer.callbacks.results_writer import json_safe
from multimodal_fer.cli import main
from multimodal_fer.datamodules import FERDataModule, SynthAffectDataModule
from multimodal_fer.datasets import RAFDB, OfficialSplits
from multimodal_fer.datasets.base import DatasetAdapter, Listing, RawMedia, RawSample, SampleLabels
from multimodal_fer.errors import CorruptCacheError, DataError, NonFiniteLossError
from multimodal_fer.preprocessing.cache import CacheReader
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing
from multimodal_fer.types import LabelSpace

from adapter_checks import REPO, TESTS
from conftest import CONFIGS, tiny_data_args
from data.rafdb.generate import write_fake_rafdb


# ------------------------------------------------------------------------------------------------------ caches
@pytest.fixture()
def cache(tiny_cache, tmp_path):
    """A private copy of the session's tiny SynthAffect cache (these tests damage it)."""
    import shutil

    copy = tmp_path / "synthaffect"
    shutil.copytree(tiny_cache, copy)
    return copy


def _open(root):
    return CacheReader(root, rebuild_hint="mfer prepare --config <your config> --overwrite")


def test_flipped_bytes_in_an_array_are_refused_by_name(cache):
    path = cache / "physio.npy"
    data = bytearray(path.read_bytes())
    data[-200:-136] = bytes(b ^ 0xFF for b in data[-200:-136])  # 64 flipped bytes, size unchanged
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCacheError, match=r"physio\.npy changed since the cache was built.*--overwrite"):
        _open(cache)


def test_a_change_that_keeps_size_and_time_is_caught_by_prepare_verify(cache):
    path = cache / "audio.npy"
    _open(cache)  # verified once: later opens trust unchanged files
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same modification time
    _open(cache)  # the fast path cannot see it
    with pytest.raises(CorruptCacheError, match=r"audio\.npy changed"):
        main(["prepare", "--config", str(CONFIGS / "quickstart.yaml"), *tiny_data_args(cache), "--verify"])


def test_a_truncated_array_is_refused(cache):
    path = cache / "face.npy"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptCacheError, match=r"face\.npy is truncated"):
        _open(cache)


def test_an_array_longer_than_its_header_is_refused(cache):
    with (cache / "expr.npy").open("ab") as handle:
        handle.write(b"\0" * 16)
    with pytest.raises(CorruptCacheError, match=r"expr\.npy is longer than its header says"):
        _open(cache)


def test_an_array_of_another_shape_is_refused(cache):
    np.save(cache / "va.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(CorruptCacheError, match=r"va\.npy holds float32 \(3, 2\) but the manifest says"):
        _open(cache)


def test_a_missing_array_is_refused(cache):
    (cache / "depth.npy").unlink()
    with pytest.raises(CorruptCacheError, match=r"depth\.npy is missing"):
        _open(cache)


def test_a_damaged_manifest_is_refused(cache):
    (cache / "manifest.json").write_text('{"format_version": 1, "arrays": [')
    with pytest.raises(CorruptCacheError, match="manifest.json is damaged"):
        _open(cache)


def test_a_missing_manifest_is_refused_and_nothing_is_rebuilt_or_deleted(cache):
    (cache / "manifest.json").unlink()
    before = sorted(p.name for p in cache.iterdir())
    datamodule = SynthAffectDataModule(**_tiny_kwargs(cache))
    with pytest.raises(DataError, match="not a cache"):
        datamodule.prepare()
    with pytest.raises(CorruptCacheError, match="manifest.json is missing"):
        _open(cache)
    assert sorted(p.name for p in cache.iterdir()) == before


def _tiny_kwargs(root):
    from conftest import TINY_DATA

    return {"root": str(root), **TINY_DATA}


# --------------------------------------------------------------------------------------------- preparation
def _slow_build_script(root: Path, pids: Path) -> str:
    return f"""
import os, sys, time
sys.path[:0] = [{str(TESTS)!r}, {str(REPO)!r}]
from multimodal_fer.datamodules import SynthAffectDataModule
import multimodal_fer.datasets.synthaffect.adapter as adapter

real = adapter.SynthAffect.load
def slow(self, raw_root, sample):
    with open({str(pids)!r}, "a") as handle:
        handle.write(f"{{os.getpid()}}\\n")
    time.sleep(0.5)
    return real(self, raw_root, sample)
adapter.SynthAffect.load = slow
if __name__ == "__main__":
    SynthAffectDataModule(root={str(root)!r}, num_subjects=6, samples_per_subject=8, image_size=32,
                          audio_seconds=0.5, physio_seconds=4.0, val_subjects=2, test_subjects=2,
                          generation_workers=2).prepare()
"""


def test_killing_a_preparation_kills_its_workers(tmp_path):
    pids = tmp_path / "pids.txt"
    script = tmp_path / "build.py"
    script.write_text(_slow_build_script(tmp_path / "cache", pids))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not pids.exists() or len(set(pids.read_text().split())) < 2):
        time.sleep(0.2)
    workers = {int(p) for p in pids.read_text().split()}
    assert len(workers) >= 2, "the workers never started"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.2)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert not alive, f"workers {alive} outlived their killed parent"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except OSError:
        return "gone"


class _Recordings(DatasetAdapter):
    """A tiny audio data set for fault tests: every wav in a folder is one sample."""

    name = "recordings"
    modalities = ("audio",)

    @property
    def label_space(self) -> LabelSpace:
        return LabelSpace(expressions=("neutral", "happy"))

    def list_samples(self, raw_root: Path) -> Listing:
        return Listing(
            [
                RawSample(key=p.stem, subject=p.stem, source=p.name, split="train" if i % 2 else "test",
                          labels=SampleLabels(expr=i % 2))
                for i, p in enumerate(sorted(raw_root.glob("*.wav")))
            ]
        )  # fmt: skip

    def load(self, raw_root: Path, sample: RawSample) -> RawMedia:
        return RawMedia(audio_path=str(raw_root / sample.source))


def test_non_finite_and_wrongly_sampled_audio_at_preparation(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    tone = (0.2 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    for i in range(4):
        soundfile.write(raw / f"good{i}.wav", tone, 16000, subtype="FLOAT")
    soundfile.write(raw / "resampled.wav", np.tile(tone, 2)[:11025], 22050, subtype="FLOAT")  # 0.5 s at 22.05 kHz
    bad = tone.copy()
    bad[100:110] = np.nan
    soundfile.write(raw / "nan.wav", bad, 16000, subtype="FLOAT")
    infinite = tone.copy()
    infinite[5] = np.inf
    soundfile.write(raw / "inf.wav", infinite, 16000, subtype="FLOAT")
    datamodule = FERDataModule(
        dataset=_Recordings(),
        raw_root=str(raw),
        root=str(tmp_path / "cache"),
        split=OfficialSplits(val_fraction=0.5),
        preprocessing=MediaPreprocessing(audio_seconds=0.5),
        preparation_workers=0,
    )
    reader = datamodule.prepare()
    failures = {
        f["source"]: f["reason"] for f in map(json.loads, (reader.root / "failures.jsonl").read_text().splitlines())
    }
    assert failures == {"inf.wav": "non-finite audio", "nan.wav": "non-finite audio"}
    assert datamodule.summary()["usable"] == 5
    keys = [r["key"] for r in datamodule.sample_records()]
    resampled = keys.index("resampled")
    assert int(reader.array("audio_lengths")[resampled]) == 8000  # 0.5 s at the model's 16 kHz


def test_an_image_without_a_face_is_recorded_and_all_failing_is_an_error(tmp_path):
    import skimage.data
    from PIL import Image

    write_fake_rafdb(tmp_path / "raw")
    originals = tmp_path / "raw" / "basic" / "Image" / "original"

    def datamodule(root):
        return FERDataModule(
            dataset=RAFDB(images="original"),
            raw_root=str(tmp_path / "raw"),
            root=str(tmp_path / root),
            split=OfficialSplits(val_fraction=0.2),
            preprocessing=MediaPreprocessing(image_size=32, face_detector="mtcnn"),
            preparation_workers=0,
        )

    # the fake's drawn faces are no faces to a real detector: nothing usable, and the error says why
    with pytest.raises(DataError, match=r"Every one of the 15 rafdb samples failed.*no face found"):
        datamodule("drawn").prepare()
    photo = Image.fromarray(skimage.data.astronaut()).resize((200, 200))
    for path in originals.glob("*.jpg"):
        photo.save(path)
    Image.new("RGB", (160, 160), (128, 128, 128)).save(originals / "train_00001.jpg")
    module = datamodule("photos")
    module.prepare()
    assert module.summary()["failures"]["no face found"] == 1
    assert module.summary()["usable"] == 13  # 15 listed: one blank, one missing file


# ------------------------------------------------------------------------------------------- configs, CLI
def _mfer(*args, cwd=REPO):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "multimodal_fer", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_bad_value_ends_with_one_message_and_exit_2_without_a_traceback(tiny_cache):
    run = _mfer(
        "prepare",
        "--config",
        str(CONFIGS / "quickstart.yaml"),
        *tiny_data_args(tiny_cache),
        "--data.init_args.batch_size=-4",
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "batch_size=-4 must be at least 1" in run.stderr
    assert "Traceback" not in run.stderr
    debug = _mfer(
        "prepare",
        "--config",
        str(CONFIGS / "quickstart.yaml"),
        *tiny_data_args(tiny_cache),
        "--data.init_args.batch_size=-4",
        "--debug",
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_a_probability_outside_0_1_is_refused_before_anything_is_built(tmp_path):
    with pytest.raises(ValueError, match=r"online_occlusion_probability=1.5 must lie in \[0, 1\]"):
        SynthAffectDataModule(root=str(tmp_path / "never"), online_occlusion_probability=1.5)
    assert not (tmp_path / "never").exists()


def test_a_missing_raw_root_names_what_to_pass(tmp_path):
    with pytest.raises(DataError, match="needs its raw files.*raw_root"):
        FERDataModule(dataset=RAFDB(), root=str(tmp_path / "c")).prepare()


# ------------------------------------------------------------------------------------------ run-time values
def _task():
    from multimodal_fer.models.encoders import PhysioCNN
    from multimodal_fer.models.fusion import AttentionFusion
    from multimodal_fer.tasks import MultitaskFERTask

    space = LabelSpace(expressions=("neutral", "happy"), dimensions=("valence", "arousal"))
    return MultitaskFERTask({"physio": PhysioCNN(out_dim=16, widths=[4, 8])}, space, ["physio"], fusion=AttentionFusion)


def _batch(values):
    return {
        "physio": values,
        "present": {"physio": torch.ones(values.shape[0], dtype=torch.bool)},
        "expr": torch.tensor([0, 1]),
        "va": torch.zeros(2, 2),
        "index": torch.tensor([17, 42]),
    }


class _Trainer:
    world_size = 1
    global_step = 0


def test_a_non_finite_loss_stops_with_the_step_and_the_samples():
    task = _task()
    task._trainer = None
    signals = torch.randn(2, 3, 256)
    signals[1, 0, 5] = float("nan")
    with pytest.raises(
        NonFiniteLossError, match=r"at step 0 \(batch 3\).*\[17, 42\].*non-finite values in the inputs \['physio'\]"
    ):
        _run_step(task, _batch(signals), 3)


def test_skip_counts_non_finite_batches_instead_of_stopping():
    task = _task()
    task.non_finite_loss = "skip"
    signals = torch.full((2, 3, 256), float("inf"))
    assert _run_step(task, _batch(signals), 0) is None
    assert task.skipped_non_finite_batches == 1


def _run_step(task, batch, batch_idx):
    from unittest import mock

    with (
        mock.patch.object(type(task), "trainer", new=_Trainer()),
        mock.patch.object(task, "log"),
        mock.patch.object(task, "log_dict"),
    ):
        task.train()
        return task.training_step(batch, batch_idx)


def test_results_files_never_hold_bare_nan():
    results = json_safe({"metrics": {"test/va/ccc_valence": float("nan"), "test/expr/f1": 0.5}, "x": [float("inf")]})
    text = json.dumps(results, allow_nan=False)
    assert json.loads(text) == {"metrics": {"test/va/ccc_valence": None, "test/expr/f1": 0.5}, "x": [None]}


# --------------------------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_with_damaged_weights_is_refused(tmp_path):
    from multimodal_fer.errors import CorruptCheckpointError

    task = _task()
    state = {"state_dict": {k: v.clone() for k, v in task.state_dict().items()}}
    name = next(k for k, v in state["state_dict"].items() if v.is_floating_point() and v.numel() > 4)
    state["state_dict"][name].view(-1)[:4] = float("nan")
    with pytest.raises(CorruptCheckpointError, match=r"NaN or infinite weights in 1 tensors"):
        task.on_load_checkpoint(state)


def test_a_checkpoint_of_other_modalities_is_refused_with_what_to_do():
    """A four-modality checkpoint tested on face-only data (an occlusion split) is refused by name, not by
    a list of missing and unexpected state-dict keys."""
    from multimodal_fer.errors import CheckpointMismatchError
    from multimodal_fer.models.encoders import FaceCNN, PhysioCNN
    from multimodal_fer.models.fusion import AttentionFusion
    from multimodal_fer.tasks import MultitaskFERTask

    space = LabelSpace(expressions=("neutral", "happy"), dimensions=("valence", "arousal"))
    encoders = {"face": FaceCNN(out_dim=16), "physio": PhysioCNN(out_dim=16, widths=[4, 8])}
    both = MultitaskFERTask(encoders, space, ["face", "physio"], fusion=AttentionFusion)
    physio_only = _task()
    with pytest.raises(
        CheckpointMismatchError, match=r"trained on the modalities \['face', 'physio'\].*built for \['physio'\]"
    ):
        physio_only.on_load_checkpoint({"state_dict": both.state_dict()})
    physio_only.on_load_checkpoint({"state_dict": dict(_task().state_dict())})  # the same modalities load


def test_an_audio_encoder_for_another_sampling_rate_is_refused(tiny_cache, tmp_path):
    """The cache's waveforms are 16 kHz; an encoder built for 22.05 kHz would read them on a wrong time axis."""
    arguments = ["fit", "--config", str(CONFIGS / "quickstart.yaml"), *tiny_data_args(tiny_cache)]
    arguments += [f"--run.root={tmp_path}", "--trainer.fast_dev_run=true", "--trainer.logger=false"]
    with pytest.raises(DataError, match=r"expects 22050 Hz waveforms, but the data's audio is at 16000 Hz"):
        main([*arguments, "--model.init_args.encoders.audio.init_args.sample_rate=22050"])
    main(arguments)  # the matching rate trains


def test_a_physiology_encoder_for_another_channel_count_is_refused(tiny_cache, tmp_path):
    """The quickstart's cache holds 3 physiological channels; an encoder for 8 (DEAP's) is refused at set-up."""
    arguments = ["fit", "--config", str(CONFIGS / "quickstart.yaml"), *tiny_data_args(tiny_cache)]
    arguments += [f"--run.root={tmp_path}", "--trainer.fast_dev_run=true", "--trainer.logger=false"]
    with pytest.raises(DataError, match=r"takes 8 signal channels, but the data has 3\. Set .*in_channels=3"):
        main([*arguments, "--model.init_args.encoders.physio.init_args.in_channels=8"])


def test_a_fit_whose_score_was_never_finite_reports_no_best_checkpoint():
    from types import SimpleNamespace

    from multimodal_fer.cli import MferCLI
    from multimodal_fer.errors import NoBestCheckpointError

    tested = []
    checkpoint = SimpleNamespace(best_model_path="runs/x/best.ckpt", best_model_score=torch.tensor(float("-inf")))
    checkpoint.monitor = "val/score"
    trainer = SimpleNamespace(checkpoint_callback=checkpoint, test=lambda *a, **k: tested.append(k))
    fake_cli = SimpleNamespace(config={"fit": {"test_after_fit": True}}, trainer=trainer, model=None, datamodule=None)
    fake_cli._record_fit_end = lambda: None
    fake_cli.test = lambda **arguments: MferCLI.test(fake_cli, **arguments)
    fake_cli._announce_results = lambda: None
    with pytest.raises(NoBestCheckpointError, match="val/score was never finite"):
        MferCLI.after_fit(fake_cli)
    assert not tested
    checkpoint.best_model_score = torch.tensor(0.4)
    MferCLI.after_fit(fake_cli)
    assert tested == [{"model": None, "datamodule": None, "ckpt_path": "runs/x/best.ckpt"}]
