import json
from collections import Counter

import numpy as np
import pytest

from multimodal_fer.callbacks.results_writer import ResultsWriter
from multimodal_fer.datasets import RECOLA, OfficialSplits, SampleError, SubjectKFold
from multimodal_fer.datasets.arff_tables import read_arff
from multimodal_fer.errors import DataError
from multimodal_fer.metrics import concordance_correlation
from multimodal_fer.metrics.sequences import sequence_concordance, smooth_sequences, smoothing_kernel
from multimodal_fer.types import LabelSpace

from adapter_checks import (
    assert_subject_disjoint,
    dominant_hz,
    fit_through_config,
    kill_midway_then_resume,
    prepared,
    tiny_datamodule,
)
from data.recola.generate import (
    AUDIO_RATE,
    AVEC_LABELLED,
    FRAMES,
    HOP_FRAMES,
    LABELLED_FRAMES,
    MISSING_FRAMES,
    PHYSIO_RATE,
    RECOLA_LABELLED,
    WINDOW_FRAMES,
    gold,
    tone_hz,
    write_fake_avec,
    write_fake_recola,
)

TIMING = {
    "window_frames": WINDOW_FRAMES,
    "hop_frames": HOP_FRAMES,
    "audio_rate": AUDIO_RATE,
    "physio_rate": PHYSIO_RATE,
}
#: Windows failing in the cache (from the generator's traps): key → reason.
NAN_FRAMES = [42, 47, 52, 57, 62, 67, 72]  # train_4: windows touching the ECG's NaN over 2.0-2.5 s
FLAT_FRAMES = [102, 107, 112, 117, 122, 127, 132, 137]  # dev_1: windows inside the flat EDA from 3.5 s
FAILED = {f"train_4/f{f:05d}": "non-finite signal" for f in NAN_FRAMES}
FAILED |= {f"dev_1/f{f:05d}": "flat signal" for f in FLAT_FRAMES}


def _adapter(**options):
    return RECOLA(**{**TIMING, **options})


@pytest.fixture(scope="module")
def avec(tmp_path_factory):
    return write_fake_avec(tmp_path_factory.mktemp("avec_raw"))


@pytest.fixture(scope="module")
def recola_raw(tmp_path_factory):
    return write_fake_recola(tmp_path_factory.mktemp("recola_raw"))


@pytest.fixture(scope="module")
def built(avec, tmp_path_factory):
    datamodule = tiny_datamodule(
        _adapter(), avec, tmp_path_factory.mktemp("recola_cache") / "c", modalities=["audio", "physio"]
    )
    return datamodule, prepared(datamodule)


def test_recola_avec_prepares_expected_windows_labels_failures_and_rejections(built):
    datamodule, result = built
    expected = {
        f"{name}/f{frame:05d}"
        for name in AVEC_LABELLED
        for frame in LABELLED_FRAMES
        if not (name == "train_2" and frame in MISSING_FRAMES)
    }
    assert set(result["samples"]) == expected - set(FAILED)
    assert (
        result["failures"]
        and {
            f["key"]: f["reason"]
            for f in map(json.loads, (result["reader"].root / "failures.jsonl").read_text().splitlines())
            if f["index"] is not None
        }
        == FAILED
    )
    assert {(r["source"], r["reason"]) for r in result["rejections"]} == {
        (
            "AVEC2016/ratings_gold_standard/arousal/train_2.arff:2.00-3.60s (4 windows)",
            "no gold standard at the window's frame",
        ),
        ("AVEC2016/recordings_audio/train_3.wav", "audio sampling rate other than declared"),
        ("AVEC2016/ratings_gold_standard/valence/dev_2.arff:40", "frame times out of order or repeated"),
        ("AVEC2016/recordings_audio/test_1.wav", "recording with no gold standard"),
    }
    summary = result["summary"]
    assert summary["usable"] == len(expected) - len(FAILED) and summary["failed"] == len(FAILED)
    # valence and arousal of the labelled frame, in the package's (valence, arousal) order; dev_2 lost its valence
    for key, va in result["va"].items():
        name, frame = key.split("/f")
        want = [gold(name, "valence")[int(frame)], gold(name, "arousal")[int(frame)]]
        if name == "dev_2":
            assert np.isnan(va[0]) and va[1] == pytest.approx(want[1], abs=1e-6)
        else:
            assert va == pytest.approx(want, abs=1e-6)
    # train_3's audio was rejected: its samples keep physiology, audio masked
    modalities = datamodule.modalities
    for key, present in result["present"].items():
        assert bool(present[modalities.index("audio")]) == (not key.startswith("train_3/"))
        assert bool(present[modalities.index("physio")])
    assert summary["modalities"]["audio"] == summary["usable"] - len(LABELLED_FRAMES)


def test_recola_cache_holds_the_window_audio_and_physiology(built):
    datamodule, result = built
    reader = result["reader"]
    index = {r["key"]: i for i, r in enumerate(datamodule.sample_records())}
    audio = reader.array("audio")
    i = index["train_1/f00037"]
    assert audio.shape[1] == 16000 and int(reader.array("audio_lengths")[i]) == 16000  # 25 frames = 1 s at 16 kHz
    assert dominant_hz(audio[i], 16000) == pytest.approx(tone_hz("train_1"), abs=2.0)
    physio = reader.array("physio")
    assert physio.shape[1:] == (2, 128)  # ECG, EDA: 1 s at 250 Hz resampled to 128 Hz
    t = 1.0 + np.arange(128) / 128  # window of frames 25-49 (labelled frame 37, centre)
    eda = physio[i, 1]
    assert np.allclose(eda, 2.0 + 0.05 * t, atol=0.01)
    records = datamodule.sample_records()
    assert records[i]["sequence"] == "train_1" and records[i]["frame"] == 37


def test_recola_official_avec_splits_dev_is_test_and_subjects_are_exclusive(built):
    _, result = built
    assert_subject_disjoint(result)
    assert result["subjects"]["test"] == {"dev_1", "dev_2"}
    assert result["subjects"]["train"] | result["subjects"]["val"] == {"train_1", "train_2", "train_3", "train_4"}
    assert {result["samples"][k][0] for k in result["splits"]["test"]} == {"test"}


def test_recola_avec_partitions_and_protocols(avec):
    listing = _adapter().list_samples(avec)
    splits = {s.subject: s.split for s in listing.samples}
    assert splits == {"train_1": "train", "train_2": "train", "train_3": "train", "train_4": "train"} | {
        "dev_1": "test",
        "dev_2": "test",
    }
    assert isinstance(_adapter().default_protocol(), OfficialSplits)
    assert isinstance(_adapter(layout="recola").default_protocol(), SubjectKFold)


def test_recola_original_layout_gold_is_the_raters_mean(recola_raw):
    listing = _adapter(layout="recola").list_samples(recola_raw)
    assert [(r.source, r.reason) for r in listing.rejected] == [
        ("RECOLA-Audio-recordings/P23.wav", "recording with no gold standard")
    ]
    assert Counter(s.subject for s in listing.samples) == dict.fromkeys(RECOLA_LABELLED, len(LABELLED_FRAMES))
    assert {s.split for s in listing.samples} == {None}
    sample = listing.samples[3]
    frame = sample.frame
    assert sample.labels.va == pytest.approx([gold("P16", "valence")[frame], gold("P16", "arousal")[frame]], abs=1e-6)
    one = _adapter(layout="recola", raters=["FM1"]).list_samples(recola_raw).samples[3]
    assert one.labels.va == pytest.approx([gold("P16", "valence")[frame] + 0.03, gold("P16", "arousal")[frame] + 0.03])
    media = _adapter(layout="recola").load(recola_raw, sample)
    assert media.physio["eda"].shape == (PHYSIO_RATE,) and media.audio_path.endswith("RECOLA-Audio-recordings/P16.wav")


def test_recola_original_layout_subject_folds(recola_raw, tmp_path):
    datamodule = tiny_datamodule(
        _adapter(layout="recola"), recola_raw, tmp_path / "c", split=SubjectKFold(num_folds=4), modalities=["physio"]
    )
    result = prepared(datamodule)
    assert_subject_disjoint(result)
    assert sum(len(v) for v in result["subjects"].values()) == 4


@pytest.mark.parametrize("position,offset", [("centre", WINDOW_FRAMES // 2), ("end", WINDOW_FRAMES - 1)])
def test_recola_windows_are_aligned_to_their_labelled_frame(avec, position, offset):
    adapter = _adapter(hop_frames=1, label_position=position)
    samples = [s for s in adapter.list_samples(avec).samples if s.sequence == "train_1"]
    assert [s.frame for s in samples] == list(range(offset, FRAMES - WINDOW_FRAMES + offset + 1))
    for s in samples[:3] + samples[-3:]:
        assert s.locators["start_frame"] == s.frame - offset
        assert s.labels.va == pytest.approx([gold("train_1", "valence")[s.frame], gold("train_1", "arousal")[s.frame]])
    media = adapter.load(avec, samples[-1])
    assert media.audio_offset == pytest.approx((FRAMES - WINDOW_FRAMES) * 0.04)


def test_recola_video_frame_of_the_labelled_frame(avec):
    from multimodal_fer.media.video import read_video_frames

    adapter = _adapter(media=["face", "audio", "physio"])
    assert adapter.modalities == ("face", "audio", "physio") and _adapter().modalities == ("audio", "physio")
    sample = next(s for s in adapter.list_samples(avec).samples if s.key == "train_1/f00062")
    media = adapter.load(avec, sample)
    assert media.video.endswith("recordings_video/train_1.mp4") and media.video_frame == 62
    frames = read_video_frames(media.video, frame_indices=[media.video_frame])
    assert frames.frames[0].shape == (64, 64, 3)


def test_recola_gold_standard_traps_are_rejections(avec, tmp_path):
    base = tmp_path / "AVEC2016"
    folder = base / "ratings_gold_standard"
    for dim in ("arousal", "valence"):
        (folder / dim).mkdir(parents=True)
        text = (avec / "AVEC2016/ratings_gold_standard" / dim / "train_1.arff").read_text()
        (folder / dim / "train_1.arff").write_text(text)
    for media, suffix in (("recordings_audio", ".wav"), ("recordings_physio", ".csv")):  # media present: no record
        (base / media).mkdir()
        (base / media / f"train_1{suffix}").write_bytes((avec / "AVEC2016" / media / f"train_1{suffix}").read_bytes())
    arousal = folder / "arousal" / "train_1.arff"
    lines = arousal.read_text().splitlines()
    row = lines.index(f"train_1,0.08,{gold('train_1', 'arousal')[2]:f}")
    variants = {
        "frame time off the 40-ms grid": lines[:row] + ["train_1,0.1,0.1"] + lines[row + 1 :],
        "Instance_name other than the file's recording": lines[:row] + ["dev_1,0.08,0.1"] + lines[row + 1 :],
        "malformed gold-standard row": lines[:row] + ["train_1,0.08,high"] + lines[row + 1 :],
        "frame times out of order or repeated": lines[:row] + ["train_1,0.04,0.1"] + lines[row + 1 :],
    }
    for reason, text in variants.items():
        arousal.write_text("\n".join(text) + "\n")
        rejected = _adapter().list_samples(tmp_path).rejected
        assert [(r.source, r.reason) for r in rejected] == [
            (f"AVEC2016/ratings_gold_standard/arousal/train_1.arff:{row + 1}", reason)
        ]
    arousal.write_text("\n".join(lines).replace("@attribute GoldStandard", "@attribute Gold") + "\n")
    assert [r.reason for r in _adapter().list_samples(tmp_path).rejected] == [
        "ARFF attributes other than Instance_name, frameTime, GoldStandard"
    ]
    missing = lines[:row] + ["train_1,0.08,?"] + lines[row + 1 :]  # ARFF's missing value: frame 2 unlabelled
    arousal.write_text("\n".join(missing) + "\n")
    listing = _adapter(hop_frames=1, label_position="end", window_frames=1).list_samples(tmp_path)
    frame2 = next(s for s in listing.samples if s.frame == 2)
    assert np.isnan(frame2.labels.va[1]) and not np.isnan(frame2.labels.va[0])  # valence still labels it
    with pytest.raises(DataError, match="ratings_gold_standard/arousal"):
        _adapter().list_samples(tmp_path / "AVEC2016" / "ratings_gold_standard")


def test_recola_physio_rate_other_than_declared_fails_the_window(avec, tmp_path):
    adapter = _adapter()
    sample = next(s for s in adapter.list_samples(avec).samples if s.key == "train_1/f00037")
    with pytest.raises(SampleError, match="imply 250 Hz, not the declared 500 Hz") as caught:
        _adapter(physio_rate=500).load(avec, sample)
    assert caught.value.reason == "sampling rate other than declared"
    with pytest.raises(DataError, match="whole number"):
        RECOLA(window_frames=1, physio_rate=30.0)


def test_arff_reader_reads_the_exact_avec_header(tmp_path):
    path = tmp_path / "dev_1.arff"
    path.write_text(
        "@relation GOLDSTANDARD\n\n@attribute Instance_name string\n@attribute frameTime numeric\n"
        "@attribute GoldStandard numeric\n\n@data\n\ndev_1,0,-0.022925\n'dev_1',0.04,-0.022925\n% comment\n"
    )
    table = read_arff(path)
    assert table.relation == "GOLDSTANDARD" and table.names == ("Instance_name", "frameTime", "GoldStandard")
    assert table.attributes[0] == ("Instance_name", "string")
    assert table.rows == (("dev_1", "0", "-0.022925"), ("dev_1", "0.04", "-0.022925")) and table.row_lines == (9, 10)
    path.write_text(path.read_text() + "dev_1,0.08\n")
    with pytest.raises(DataError, match="dev_1.arff:12: 2 values for 3 attributes"):
        read_arff(path)


# ------------------------------------------------------------------------------- frame-level evaluation
def _reference_smoothing(values, sequences, frames, kernel, width):
    """One prediction at a time: the weighted mean over the same sequence's frames within the window."""
    radius = (width - 1) // 2
    sigma = width / 4
    out = np.empty(len(values))
    for i in range(len(values)):
        weights, total = 0.0, 0.0
        for j in range(len(values)):
            delta = frames[j] - frames[i]
            if sequences[j] == sequences[i] and abs(delta) <= radius:
                w = 1.0 if kernel == "box" else np.exp(-(delta**2) / (2 * sigma**2))
                weights += w * values[j]
                total += w
        out[i] = weights / total
    return out


@pytest.mark.parametrize("kernel", ["box", "gaussian"])
def test_smoothing_matches_a_reference_on_hand_made_sequences(kernel):
    rng = np.random.default_rng(0)
    frames = np.array([0, 1, 2, 3, 4, 5, 9, 10, 11, 0, 2, 4, 6, 8])  # a gap in "a", "b" every other frame
    sequences = np.array(["a"] * 9 + ["b"] * 5)
    values = rng.normal(size=frames.size)
    order = rng.permutation(frames.size)  # sample order must not matter
    got = smooth_sequences(values[order], sequences[order], frames[order], kernel, 5)
    want = _reference_smoothing(values, sequences, frames, kernel, 5)[order]
    assert np.allclose(got, want)
    box = smooth_sequences(np.array([3.0, 6.0, 9.0]), np.zeros(3), np.arange(3), "box", 3)
    assert box.tolist() == pytest.approx([4.5, 6.0, 7.5])  # ends average the frames present only
    assert smooth_sequences(values, sequences, frames, kernel, 1) == pytest.approx(values)


def test_gaussian_smoothing_equals_scipy_inside_the_sequence():
    from scipy.ndimage import gaussian_filter1d

    values = np.random.default_rng(1).normal(size=(60, 2))
    ours = smooth_sequences(values, np.zeros(60), np.arange(60), "gaussian", 9)
    sigma = 9 / 4
    theirs = gaussian_filter1d(values, sigma, axis=0, truncate=4 / sigma)  # radius 4 frames, as ours
    assert np.allclose(ours[4:-4], theirs[4:-4])
    with pytest.raises(ValueError, match="odd"):
        smoothing_kernel("box", 4)


def test_sequence_ccc_pooled_or_per_recording():
    rng = np.random.default_rng(2)
    target = rng.uniform(-1, 1, size=(30, 2))
    prediction = target + rng.normal(0, 0.3, size=(30, 2))
    sequences = np.repeat(["r1", "r2", "r3"], 10)
    target[3, 1] = np.nan  # unlabelled: skipped
    pooled = sequence_concordance(prediction, target, sequences, "concat")
    keep = ~np.isnan(target[:, 1])
    assert pooled[0] == pytest.approx(concordance_correlation(prediction[:, 0], target[:, 0]))
    assert pooled[1] == pytest.approx(concordance_correlation(prediction[keep, 1], target[keep, 1]))
    per = sequence_concordance(prediction, target, sequences, "per_sequence_mean")
    parts = [concordance_correlation(prediction[k : k + 10, 0], target[k : k + 10, 0]) for k in (0, 10, 20)]
    assert per[0] == pytest.approx(np.mean(parts)) and per[0] != pytest.approx(pooled[0])


class _Module:
    label_space = LabelSpace(dimensions=("valence", "arousal"))


def test_results_writer_scores_raw_and_smoothed_frames_side_by_side():
    rng = np.random.default_rng(3)
    frames = np.tile(np.arange(40), 2)
    sequences = np.repeat([0, 1], 40)
    target = np.stack([np.sin(frames / 6.0 + sequences), np.cos(frames / 6.0)], axis=1)
    output = target + rng.normal(0, 0.4, size=target.shape)
    gathered = {"sequence": sequences, "frame": frames, "output_va": output, "target_va": target}
    writer = ResultsWriter(sequence_pooling="per_sequence_mean", smoothing="gaussian", smoothing_width=9)
    scores, record = writer._sequence_scores(gathered, _Module())
    raw = sequence_concordance(output, target, sequences, "per_sequence_mean")
    smooth = sequence_concordance(
        smooth_sequences(output, sequences, frames, "gaussian", 9), target, sequences, "per_sequence_mean"
    )
    assert scores["test/va_frames/ccc_valence"] == pytest.approx(raw[0])
    assert scores["test/va_smoothed/ccc_arousal"] == pytest.approx(smooth[1])
    assert scores["test/va_smoothed/ccc_valence"] > scores["test/va_frames/ccc_valence"]  # noise averaged out
    assert record == {
        "pooling": "per_sequence_mean",
        "smoothing": "gaussian",
        "smoothing_width": 9,
        "sequences": 2,
        "frames": 80,
    }
    with pytest.raises(RuntimeError, match="sequence_pooling"):
        writer._sequence_scores({**gathered, "sequence": np.full(80, -1)}, _Module())
    with pytest.raises(ValueError, match="also set sequence_pooling"):
        ResultsWriter(smoothing="box", smoothing_width=3)


@pytest.mark.slow
def test_recola_kill_midway_then_resume_equals_a_straight_build(avec, tmp_path):
    straight, resumed = kill_midway_then_resume(
        lambda root: tiny_datamodule(_adapter(), avec, root, modalities=["audio", "physio"]), tmp_path, count=40
    )
    assert straight == resumed


@pytest.mark.slow
def test_recola_fits_through_its_config_and_writes_frame_scores(avec, tmp_path):
    fit_through_config(
        "recola.yaml",
        avec,
        tmp_path / "cache",
        tmp_path,
        [
            f"--data.init_args.dataset.init_args.window_frames={WINDOW_FRAMES}",
            f"--data.init_args.dataset.init_args.audio_rate={AUDIO_RATE}",
            f"--data.init_args.dataset.init_args.physio_rate={PHYSIO_RATE}",
            "--data.init_args.preprocessing.audio_seconds=1.0",
            "--test_after_fit=true",
        ],
    )
    (results,) = (tmp_path / "runs").rglob("results-test*.json")
    metrics = json.loads(results.read_text())["metrics"]
    for name in ("valence", "arousal"):
        assert np.isfinite(metrics[f"test/va_frames/ccc_{name}"]) and np.isfinite(
            metrics[f"test/va_smoothed/ccc_{name}"]
        )
    assert json.loads(results.read_text())["sequence_scores"]["smoothing_width"] == 25
