"""``mfer predict`` on raw files and on a prepared cache."""

import csv

import av
import numpy as np
import pytest
import soundfile
from PIL import Image

from multimodal_fer.cli import main
from multimodal_fer.inference.raw_inputs import collect_inputs

from conftest import CONFIGS, run_folder, tiny_data_args, tiny_trainer_args


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A one-epoch quickstart run on tiny SynthAffect data: (checkpoint, run folder)."""
    root = tmp_path_factory.mktemp("predict_run")
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "quickstart.yaml"),
            *tiny_data_args(root / "cache"),
            *tiny_trainer_args(root / "runs"),
            "--trainer.max_epochs=1",
            "--test_after_fit=false",
        ]
    )
    return run_folder(root / "runs") / "checkpoints" / "last.ckpt", run_folder(root / "runs")


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory):
    """A real face photo, a 22.05 kHz wav, an mp4 with a face and an audio track, a corrupt image, a text file."""
    import skimage.data

    folder = tmp_path_factory.mktemp("raw_inputs")
    photo = skimage.data.astronaut()
    Image.fromarray(photo).save(folder / "astronaut.jpg")
    t = np.arange(int(22050 * 1.5)) / 22050
    tone = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    soundfile.write(folder / "voice.wav", tone.astype(np.float32), 22050)
    _write_mp4(folder / "clip.mp4", np.asarray(Image.fromarray(photo).resize((160, 160))))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "notes.txt").write_text("not media")
    return folder


def _write_mp4(path, frame, seconds=1.0, fps=10, rate=16000):
    container = av.open(str(path), "w")
    video = container.add_stream("mpeg4", rate=fps)
    video.width, video.height, video.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
    audio = container.add_stream("aac", rate=rate)
    for i in range(int(seconds * fps)):
        for packet in video.encode(av.VideoFrame.from_ndarray(np.roll(frame, i, axis=1), format="rgb24")):
            container.mux(packet)
    for packet in video.encode():
        container.mux(packet)
    wave = (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)[None]
    samples = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
    samples.sample_rate = rate
    for packet in [*audio.encode(samples), *audio.encode()]:
        container.mux(packet)
    container.close()


def _rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_inputs_sharing_a_stem_are_one_sample(tmp_path):
    for name in ("a.mp4", "a.wav", "b.jpg", "c.wav"):
        (tmp_path / name).write_bytes(b"x")
    inputs, problems = collect_inputs([tmp_path, tmp_path / "missing.jpg"])
    assert [(i.image, i.video, i.audio) for i in inputs] == [
        (None, tmp_path / "a.mp4", tmp_path / "a.wav"),
        (tmp_path / "b.jpg", None, None),
        (None, None, tmp_path / "c.wav"),
    ]
    assert problems == [(str(tmp_path / "missing.jpg"), "no such file or folder")]


def test_predict_raw_photo_wav_and_mp4_one_row_each(trained_run, raw_files, tmp_path, capsys):
    checkpoint, _ = trained_run
    output = tmp_path / "out.csv"
    # a folder (its media files) and a file that is not media, given by name
    inputs = [str(raw_files), str(raw_files / "notes.txt")]
    main(["predict", "--ckpt_path", str(checkpoint), "--inputs", *inputs, "--output", str(output)])
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in _rows(output)}
    assert set(rows) == {"astronaut.jpg", "voice.wav", "clip.mp4", "broken.png", "notes.txt"}
    assert rows["astronaut.jpg"]["modalities"] == "face" and rows["astronaut.jpg"]["status"] == "ok"
    assert rows["voice.wav"]["modalities"] == "audio"
    assert rows["clip.mp4"]["modalities"] == "face+audio"
    assert rows["broken.png"]["status"] == "error" and rows["broken.png"]["reason"].startswith("unreadable image")
    assert rows["notes.txt"]["status"] == "error" and "not a media file" in rows["notes.txt"]["reason"]
    for name in ("astronaut.jpg", "voice.wav", "clip.mp4"):
        row = rows[name]
        probs = [
            float(row[f"p_{c}"])
            for c in ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
        ]
        assert abs(sum(probs) - 1) < 1e-3 and row["expression"]
        assert -1 <= float(row["valence"]) <= 1 and 0 <= float(row["au12"]) <= 1
        assert "SynthAffect" in row["trained_on"]
    assert "trained only on SynthAffect" in capsys.readouterr().err.replace("\n", " ")


def test_predict_raw_per_frame_rows(trained_run, raw_files, tmp_path):
    checkpoint, _ = trained_run
    output = tmp_path / "frames.csv"
    main(
        [
            "predict",
            "--ckpt_path",
            str(checkpoint),
            "--inputs",
            str(raw_files / "clip.mp4"),
            "--output",
            str(output),
            "--per-frame",
            "--fps",
            "5",
        ]
    )
    rows = _rows(output)
    assert [int(r["frame"]) for r in rows] == list(range(5))
    assert all(r["modalities"] == "face+audio" for r in rows)
    assert [float(r["time_s"]) for r in rows] == sorted(float(r["time_s"]) for r in rows)


def test_predict_on_the_cache_writes_predictions(trained_run, tmp_path):
    checkpoint, run = trained_run
    main(
        [
            "predict",
            "--config",
            str(run / "config.yaml"),
            "--ckpt_path",
            str(checkpoint),
            "--trainer.logger=false",
            f"--prediction_writer.output_dir={tmp_path}",
        ]
    )
    rows = _rows(tmp_path / "predictions.csv")
    assert len(rows) == 8  # 2 test subjects x 4 samples
    assert sorted(int(r["index"]) for r in rows) == sorted(set(int(r["index"]) for r in rows))
    assert all(r["source"] == "generated" and r["expression"] for r in rows)


def test_predict_refuses_a_checkpoint_without_its_config(tmp_path):
    checkpoint = tmp_path / "lonely.ckpt"
    checkpoint.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="No config.yaml"):
        main(["predict", "--ckpt_path", str(checkpoint), "--inputs", str(tmp_path)])


def test_aligned_crops_reach_the_model_as_their_data_set_caches_them(tmp_path):
    """``--aligned``: a RAF-DB aligned crop is resized, not searched for a face, and the model reads exactly the face
    that preparation cached for that image (the same probabilities as on the cache)."""
    import json

    import torch

    from multimodal_fer.inference.raw_predictor import load_run
    from multimodal_fer.preprocessing.cache import CacheReader
    from multimodal_fer.types import PRESENT_KEY

    from adapter_checks import REPO, fake_rafdb_data_args, prepared_fake_rafdb

    raw, cache = prepared_fake_rafdb(tmp_path / "raw", tmp_path / "cache" / "rafdb")
    configs = ["--config", str(REPO / "configs/quickstart.yaml"), "--config", str(REPO / "configs/data/rafdb.yaml")]
    fit = [*configs, *fake_rafdb_data_args(raw, cache), *tiny_trainer_args(tmp_path / "runs")]
    main(["fit", *fit, "--trainer.max_epochs=1", "--test_after_fit=false"])
    checkpoint = run_folder(tmp_path / "runs") / "checkpoints" / "last.ckpt"
    crop = raw / "basic/Image/aligned/test_0001_aligned.jpg"
    output = tmp_path / "aligned.csv"
    main(["predict", "--ckpt_path", str(checkpoint), "--inputs", str(crop), "--output", str(output), "--aligned"])
    (row,) = _rows(output)
    assert row["status"] == "ok" and row["modalities"] == "face" and row["trained_on"] == "rafdb"
    keys = [json.loads(line)["key"] for line in (cache / "samples.jsonl").read_text().splitlines()]
    cached = np.asarray(CacheReader(cache).array("face")[keys.index("test_0001")])
    run = load_run(checkpoint)
    batch = {"face": torch.from_numpy(cached[None].copy()), PRESENT_KEY: {"face": torch.tensor([True])}}
    with torch.no_grad():
        probabilities = run.model(run.datamodule.on_after_batch_transfer(batch, 0))["expr"].softmax(-1)[0]
    expected = {
        f"p_{name}": round(float(p), 4)
        for name, p in zip(run.datamodule.label_space.expressions, probabilities, strict=True)
    }
    assert {name: float(row[name]) for name in expected} == expected
