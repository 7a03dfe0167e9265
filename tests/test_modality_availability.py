"""A requested modality the data can never hold is refused, never trained on as always absent.

Two traps, on fake raw files of RECOLA (AVEC 2016 layout) and MAHNOB-HCI: a modality the adapter is configured not to
read (``media`` without it) is refused when the data module is built, before anything is listed or cached, with the
option that turns it on; a cache where a modality is absent from every sample of a split (no video was found) is
refused at set-up with the counts and ``failures.jsonl``. Partial presence is masked as usual and reported.
"""

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from multimodal_fer.datasets import MAHNOBHCI, RECOLA, OfficialSplits, SubjectKFold
from multimodal_fer.datasets.base import check_modalities
from multimodal_fer.errors import DataError
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing

from adapter_checks import REPO, tiny_datamodule
from data.fake_av_media import face_frames, write_video
from data.mahnob_hci.generate import STRIDE_SECONDS, WINDOW_SECONDS, write_fake_mahnob
from data.recola.generate import AUDIO_RATE, FRAMES, PHYSIO_RATE, WINDOW_FRAMES, write_fake_avec

#: RECOLA windows of the fake: its rates, two windows per recording (few samples: faces are detected).
RECOLA_OPTIONS = {
    "window_frames": WINDOW_FRAMES,
    "hop_frames": 75,
    "audio_rate": AUDIO_RATE,
    "physio_rate": PHYSIO_RATE,
}
EVERY_MEDIUM = ["face", "audio", "physio"]


def _recola_datamodule(raw: Path, root: Path, media: list[str], modalities: list[str]):
    return tiny_datamodule(
        RECOLA(**RECOLA_OPTIONS, media=media),
        raw,
        root,
        split=OfficialSplits(val_fraction=0.2, seed=0),
        preprocessing=MediaPreprocessing(image_size=32, audio_seconds=WINDOW_FRAMES * 0.04),
        modalities=modalities,
    )


@pytest.fixture(scope="module")
def avec(tmp_path_factory):
    """The fake AVEC 2016 release, train_1's video replaced by one whose face the detector finds (192 x 144)."""
    raw = write_fake_avec(tmp_path_factory.mktemp("avec_raw"))
    write_video(raw / "AVEC2016/recordings_video/train_1.mp4", face_frames(FRAMES, 192, 144), 25, "mp4", "mpeg4")
    return raw


def test_media_without_video_and_modalities_face_is_refused_with_the_fix(avec, tmp_path):
    root = tmp_path / "never"
    with pytest.raises(ValueError) as refused:
        _recola_datamodule(avec, root, media=["audio", "physio"], modalities=["face", "audio"])
    message = str(refused.value)
    assert "modalities asks for ['face']" in message
    assert "configured to read only ['audio', 'physio']" in message  # the adapter's media
    assert "--data.init_args.dataset.init_args.media='[audio,physio,face]'" in message  # fix 1: add it to media
    assert "--data.init_args.modalities='[audio]'" in message  # fix 2: drop it from modalities
    assert not root.exists()  # refused before anything is listed or built
    # a modality the data set never has is refused as before, naming what it has
    with pytest.raises(ValueError, match=re.escape("provides ['face', 'audio', 'physio'], not ['depth']")):
        check_modalities(RECOLA(media=EVERY_MEDIUM), ["face", "depth"])
    # MAHNOB-HCI: media [] reads physiology only; face is refused, and the default modalities follow media
    mahnob = MAHNOBHCI(window_seconds=WINDOW_SECONDS, stride_seconds=STRIDE_SECONDS, media=[])
    assert mahnob.provided_modalities == ("physio",)
    with pytest.raises(ValueError, match=re.escape("add face to the adapter's media (now [];")):
        check_modalities(mahnob, ["physio", "face"])
    assert tiny_datamodule(mahnob, tmp_path, tmp_path / "unused").modalities == ("physio",)  # not built
    assert MAHNOBHCI(media=["audio"]).provided_modalities == ("physio", "audio")


def test_the_config_path_refuses_face_outside_media_before_preparing(avec, tmp_path):
    from multimodal_fer.cli import main

    with pytest.raises(ValueError, match=re.escape("every sample would lack face")):
        main(
            [
                "prepare",
                "--config",
                str(REPO / "configs" / "data" / "recola.yaml"),
                f"--data.init_args.raw_root={avec}",
                f"--data.init_args.root={tmp_path / 'cache'}",
                "--data.init_args.modalities=[face,audio,physio]",
            ]
        )
    assert not (tmp_path / "cache").exists()


def test_a_cache_with_no_face_in_any_sample_is_refused_at_setup(tmp_path):
    raw = write_fake_avec(tmp_path / "raw", video=False)
    datamodule = _recola_datamodule(raw, tmp_path / "cache", EVERY_MEDIUM, EVERY_MEDIUM)
    reader = datamodule.prepare()  # the cache is built: audio and physiology are there
    summary = datamodule.summary()
    assert summary["modalities"]["face"] == 0 and summary["modalities"]["physio"] == summary["usable"] > 0
    failures = (reader.root / "failures.jsonl").read_text()
    assert failures.count("no video file (face absent, other modalities kept)") == 6  # every labelled recording
    with pytest.raises(DataError) as refused:
        datamodule.setup()
    message = str(refused.value)
    assert "face is in no sample of the train and val and test split" in message
    assert re.search(r"train 0/\d+, val 0/\d+, test 0/\d+; summary\.json: 0 of \d+ usable samples", message)
    assert f"{reader.root}/failures.jsonl" in message and "no video file (face absent" in message
    assert "--data.init_args.withheld_modalities='[face]'" in message
    assert datamodule.reader is None  # nothing usable was set up
    # withholding it on purpose, or not asking for it, is accepted
    withheld = _recola_datamodule(raw, tmp_path / "cache", EVERY_MEDIUM, EVERY_MEDIUM)
    withheld.withheld_modalities = ("face",)
    withheld.setup()
    _recola_datamodule(raw, tmp_path / "cache", EVERY_MEDIUM, ["audio", "physio"]).setup()


def test_a_split_without_faces_is_refused_even_when_others_have_them(avec, tmp_path):
    datamodule = _recola_datamodule(avec, tmp_path / "cache", EVERY_MEDIUM, EVERY_MEDIUM)
    datamodule.prepare()
    assert datamodule.summary()["modalities"]["face"] > 0  # train_1's windows have faces: the cache as a whole has some
    with pytest.raises(DataError, match=r"face is in no sample of the (val and )?test split") as refused:
        datamodule.setup()
    assert re.search(r"test 0/\d+", str(refused.value))


def test_partial_presence_is_accepted_and_reported(avec, tmp_path, caplog):
    raw = tmp_path / "raw"
    shutil.copytree(avec, raw)
    videos = raw / "AVEC2016" / "recordings_video"
    # train_1 has a video; train_4 (the validation recording this seed carves) and dev_1 get one: train and test
    # are partial (train_2, train_3 and dev_2 have none), no split is without faces
    for name in ("train_4", "dev_1"):
        shutil.copy(videos / "train_1.mp4", videos / f"{name}.mp4")
    datamodule = _recola_datamodule(raw, tmp_path / "cache", EVERY_MEDIUM, EVERY_MEDIUM)
    reader = datamodule.prepare()
    with caplog.at_level(logging.INFO):
        datamodule.setup()
    present = np.asarray(reader.array("present"), dtype=bool)
    face = list(reader.manifest["modalities"]).index("face")
    records = datamodule.sample_records()
    test = datamodule.splits["test"]
    faces = int(present[test, face].sum())
    assert faces == sum(records[i]["key"].startswith("dev_1/") for i in test)  # dev_1's windows, not dev_2's
    assert 0 < faces < test.size
    train = datamodule.splits["train"]
    assert 0 < int(present[train, face].sum()) < train.size
    line = next(r.getMessage() for r in caplog.records if "samples holding each modality" in r.getMessage())
    sizes = {name: idx.size for name, idx in datamodule.splits.items()}
    assert f"test {sizes['test']} (face {faces}, audio " in line
    assert f"train {sizes['train']} (face {int(present[datamodule.splits['train'], face].sum())}, " in line
    fed = sum(int(batch["present"]["face"].sum()) for batch in datamodule.ordered_dataloader("test"))
    assert fed == faces  # the batches mask the windows without a face


def test_mahnob_without_any_face_video_is_refused_at_setup(tmp_path):
    raw = tmp_path / "raw"
    write_fake_mahnob(raw)
    adapter = MAHNOBHCI(
        window_seconds=WINDOW_SECONDS, stride_seconds=STRIDE_SECONDS, media=["face"], video_glob="*C9 trigger*.avi"
    )  # a file pattern matching no camera
    split = SubjectKFold(num_folds=4)
    datamodule = tiny_datamodule(adapter, raw, tmp_path / "cache", split=split, modalities=["physio", "face"])
    datamodule.prepare()
    with pytest.raises(DataError, match="face is in no sample of the train and val and test split") as refused:
        datamodule.setup()
    assert "face video missing or unreadable (physiology kept)" in str(refused.value)
