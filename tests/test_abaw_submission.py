"""ABAW track files from Aff-Wild2 predictions (multimodal_fer.evaluation.abaw_submission, mfer abaw-files)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from multimodal_fer.cli import main
from multimodal_fer.errors import DataError
from multimodal_fer.evaluation.abaw_submission import (
    AU_COLUMNS,
    EXPRESSION_COLUMNS,
    TRACKS,
    nearest_predicted,
    write_submission,
)

from data.affwild2.generate import write_mp4

#: (video, frame) → (most probable ABAW class, valence, arousal, AU probabilities)
PREDICTED = {
    ("10-60-1280x720", 1): (4, 0.5, 1.3, 0.9),
    ("10-60-1280x720", 2): (7, -0.2, 0.1, 0.2),
    ("10-60-1280x720", 5): (0, -1.4, 0.0, 0.5),
    ("video3_left", 2): (6, 0.3, -0.3, 0.49),
    ("video3_left", 3): (1, 0.0, 0.2, 0.51),
}


def _predictions(path: Path, columns: tuple[str, ...] = (*EXPRESSION_COLUMNS, *AU_COLUMNS, "valence", "arousal")):
    """A CSV as ``mfer predict`` writes it on an Aff-Wild2 cache (key ``<video>/<frame>``), rows out of order."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["index", "key", "source", *columns], extrasaction="ignore")
        writer.writeheader()
        for index, ((video, frame), (expr, valence, arousal, au)) in enumerate(reversed(PREDICTED.items())):
            row = {"index": index, "key": f"{video}/{frame:05d}", "source": f"cropped_aligned/{video}/{frame:05d}.jpg"}
            row |= {name: 0.9 if k == expr else 0.0125 for k, name in enumerate(EXPRESSION_COLUMNS)}
            row |= {name: au for name in AU_COLUMNS} | {"valence": valence, "arousal": arousal}
            writer.writerow(row)
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_every_frame_gets_a_line_from_its_nearest_predicted_frame_under_the_tracks_header(tmp_path: Path) -> None:
    summary = write_submission(_predictions(tmp_path / "predictions.csv"), tmp_path / "out")
    assert summary.lines == {"10-60-1280x720": 5, "video3_left": 3} and summary.filled == {
        "10-60-1280x720": 2,
        "video3_left": 1,
    }
    expr = _lines(tmp_path / "out/EXPR/10-60-1280x720.txt")
    assert expr[0] == TRACKS["expr"][1] and expr[1:] == ["4", "7", "7", "0", "0"]  # frame 3 → 2, frame 4 → 5
    va = _lines(tmp_path / "out/VA/10-60-1280x720.txt")
    assert va[0] == "valence,arousal" and va[1] == "0.500000,1.000000" and va[5] == "-1.000000,0.000000"  # clipped
    au = _lines(tmp_path / "out/AU/video3_left.txt")  # frame 1 → 2; 0.49 below the threshold, 0.51 above
    assert au[0] == TRACKS["au"][1] and au[1:] == [",".join(["0"] * 12)] * 2 + [",".join(["1"] * 12)]
    assert _lines(tmp_path / "out/EXPR/video3_left.txt")[1:] == ["6", "6", "1"]
    assert set(summary.counted_from.values()) == {"last predicted frame"}


def test_a_video_file_sets_the_line_count_and_a_frame_past_its_end_is_refused(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "10-60-1280x720.mp4", fps=7, seconds=1.0, frequency=200.0)  # 7 frames
    write_mp4(videos / "video3.mp4", fps=4, seconds=1.0, frequency=200.0)  # both people of video3 share its file
    summary = write_submission(_predictions(tmp_path / "p.csv"), tmp_path / "out", ("expr",), videos=videos)
    assert summary.lines == {"10-60-1280x720": 7, "video3_left": 4}
    assert summary.counted_from == {"10-60-1280x720": "video file", "video3_left": "video file"}
    assert _lines(tmp_path / "out/EXPR/10-60-1280x720.txt")[1:] == ["4", "7", "7", "0", "0", "0", "0"]
    assert not (tmp_path / "out/VA").exists()
    write_mp4(videos / "10-60-1280x720.mp4", fps=3, seconds=1.0, frequency=200.0)  # 3 frames: frame 5 cannot be
    with pytest.raises(DataError, match="frame 5 is predicted but its video has 3 frames"):
        write_submission(tmp_path / "p.csv", tmp_path / "again", ("expr",), videos=videos)


def test_missing_columns_unknown_tracks_duplicates_and_foreign_rows_are_refused(tmp_path: Path) -> None:
    no_au = _predictions(tmp_path / "no_au.csv", columns=(*EXPRESSION_COLUMNS, "valence", "arousal"))
    with pytest.raises(DataError, match=r"no au1, au2.*for the AU track.*leave the track out"):
        write_submission(no_au, tmp_path / "out")
    assert write_submission(no_au, tmp_path / "out", ("va", "expr")).files == {"va": 2, "expr": 2}
    with pytest.raises(DataError, match="Unknown track"):
        write_submission(no_au, tmp_path / "out", ("valence",))
    with pytest.raises(DataError, match="strictly between 0 and 1"):
        write_submission(no_au, tmp_path / "out", ("expr",), au_threshold=1.0)
    doubled = tmp_path / "doubled.csv"
    doubled.write_text(no_au.read_text() + no_au.read_text().splitlines()[1] + "\n")
    with pytest.raises(DataError, match="predicted twice"):
        write_submission(doubled, tmp_path / "out", ("expr",))
    foreign = tmp_path / "foreign.csv"
    foreign.write_text(
        no_au.read_text().replace("cropped_aligned/video3_left/00002.jpg", "x").replace("video3_left/00002", "photo")
    )
    with pytest.raises(DataError, match="line .*'photo' is not a <video>/<frame>.jpg"):
        write_submission(foreign, tmp_path / "out", ("expr",))


def test_nearest_predicted_frame_prefers_the_earlier_on_a_tie() -> None:
    positions = nearest_predicted(np.array([2, 4, 9]), 10)
    assert [int(p) for p in positions] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]  # frame 3 is 1 from both 2 and 4: 2 wins


def test_the_command_writes_the_tracks_asked_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predictions = _predictions(tmp_path / "predictions.csv")
    main(["abaw-files", str(predictions), "--output", str(tmp_path / "out"), "--tracks", "va", "au"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["AU", "VA"]
    printed = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert "2 videos × 2 track(s)" in printed and "3 frames without a prediction" in printed
    assert "end at their last predicted frame" in printed


def test_raw_predictions_of_cropped_frames_are_read_by_their_paths_and_error_rows_left_out(tmp_path: Path) -> None:
    """``mfer predict --inputs <cropped_aligned frames> --aligned`` writes source paths and status, no key."""
    cache_style = _predictions(tmp_path / "cache.csv").read_text().splitlines()
    header, rows = cache_style[0].split(","), [line.split(",") for line in cache_style[1:]]
    raw = tmp_path / "raw.csv"
    with raw.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "frame", "time_s", "status", "reason", *header[3:]])
        for row in rows:
            writer.writerow([f"/data/Aff-Wild2/{row[2]}", "", "", "ok", "", *row[3:]])
        writer.writerow(["/data/Aff-Wild2/cropped_aligned/video3_left/00009.jpg", "", "", "error", "unreadable image"])
    summary = write_submission(raw, tmp_path / "out", ("expr",))
    assert summary.lines == {"10-60-1280x720": 5, "video3_left": 3}  # the error row's frame 9 is not predicted
    assert _lines(tmp_path / "out/EXPR/video3_left.txt")[1:] == ["6", "6", "1"]
