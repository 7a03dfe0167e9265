"""Format-faithful fake FER+: FER2013's fake CSV and a ``fer2013new.csv`` of ten vote counts per row, with traps.

The vote file has one row per data row of the fake ``fer2013.csv`` (:mod:`data.fer2013.generate`), in the same
order, and repeats its ``Usage``; the rows FER2013's own reading rejects or fails keep a valid vote row.
"""

from __future__ import annotations

from pathlib import Path

from data.fer2013.generate import SPLITS, write_fake_fer2013

HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
NAMES = ("neutral", "happy", "surprise", "sad", "anger", "disgust", "fear", "contempt")

#: Votes of FER2013's usable fake rows, in order: (votes, expected class or the rejection reason).
VOTES: list[tuple[tuple[int, ...], str]] = [
    ((0, 10, 0, 0, 0, 0, 0, 0, 0, 0), "happy"),  # unanimous
    ((6, 0, 1, 1, 0, 0, 0, 0, 2, 0), "neutral"),  # 6 of 8 once single votes are dropped
    ((4, 0, 0, 4, 1, 0, 0, 0, 1, 0), "no label: no column has more than half of the votes"),  # a 4-4 tie
    ((0, 0, 0, 0, 0, 0, 0, 6, 1, 1), "contempt"),
    ((1, 0, 0, 0, 0, 0, 0, 0, 9, 0), "no label: the majority says unknown"),
    ((0, 0, 0, 0, 0, 0, 0, 0, 0, 10), "no label: the majority says not a face"),
    ((3, 2, 0, 0, 0, 0, 0, 0, 0, 0), "neutral"),  # 3 of 5
    ((1, 1, 1, 1, 1, 1, 1, 1, 1, 1), "no label: no column has two votes or more"),
    ((0, 0, 5, 0, 0, 0, 5, 0, 0, 0), "no label: no column has more than half of the votes"),
    ((0, 0, 0, 0, 7, 3, 0, 0, 0, 0), "anger"),
    ((0, 0, 0, 2, 0, 0, 0, 0, 0, 0), "sad"),
    ((0, 0, 0, 0, 0, 0, 9, 1, 0, 0), "fear"),
    ((0, 0, 0, 0, 0, 8, 0, 0, 2, 0), "disgust"),
    ((0, 0, 8, 2, 0, 0, 0, 0, 0, 0), "surprise"),
]
#: Positions (among the usable rows) whose vote row has no image name, or unreadable counts.
NO_IMAGE, BAD_COUNTS = 9, 10


def write_fake_ferplus(root: Path, seed: int = 0) -> dict:
    """Write FER2013's fake CSV and FER+'s fake vote file under ``root``.

    Returns:
        The expected result of preparing it with :class:`~multimodal_fer.datasets.ferplus.FERPlus`: ``samples``
        {key: (split, class name)}, ``rejections`` {source: reason} (FER2013's and FER+'s), ``failures`` {source:
        reason} (FER2013's, now under FER+'s keys), ``keys`` {FER2013 key: FER+ key}.
    """
    fer = write_fake_fer2013(root, seed)
    lines = (root / "fer2013.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines[1:-1]]  # the last line is FER2013's truncated trap (rejected)
    expected: dict = {"samples": {}, "rejections": dict(fer["rejections"]), "failures": {}, "keys": {}}
    usable = iter(range(len(VOTES)))
    vote_lines = [HEADER]
    failed_rows = {int(source.rsplit(":", 1)[1]) - 2 for source in fer["failures"]}
    for index, fields in enumerate(rows):
        usage = fields[-1]
        name = f"fer{index:07d}.png"
        fer_key = f"row{index:05d}"
        where = f"fer2013new.csv:{index + 2}"
        if fer_key in fer["samples"] or index in failed_rows:
            position = next(usable) if fer_key in fer["samples"] else None
            votes, outcome = VOTES[position] if position is not None else ((0, 9, 0, 0, 0, 0, 0, 0, 1, 0), "happy")
            if position == NO_IMAGE:
                name, outcome = "", "no image name (left out by FER+)"
            counts = ",".join(map(str, votes))
            if position == BAD_COUNTS:
                counts, outcome = "0,0,0,two," + ",".join(map(str, votes[4:])), "malformed vote counts"
            vote_lines.append(f"{usage},{name},{counts}")
            if outcome in NAMES:
                key = name.removesuffix(".png")
                expected["keys"][fer_key] = key
                if index in failed_rows:
                    source = f"fer2013.csv:{index + 2}"
                    expected["failures"][source] = fer["failures"][source]
                else:
                    expected["samples"][key] = (SPLITS[usage], outcome)
            else:
                expected["rejections"][where] = outcome
        else:  # FER2013 rejects the row itself; FER+ still has its row
            vote_lines.append(f"{usage},{name},0,10,0,0,0,0,0,0,0,0")
            source = f"fer2013.csv:{index + 2}"
            if expected["rejections"][source].startswith("unknown expression code"):  # FER2013's code plays no part
                del expected["rejections"][source]
                key = name.removesuffix(".png")
                expected["keys"][fer_key] = key
                expected["samples"][key] = (SPLITS[usage], "happy")
    # FER2013's truncated last row: FER+ has a row for it too
    vote_lines.append(f"Training,fer{len(rows):07d}.png,0,10,0,0,0,0,0,0,0,0")
    (root / "fer2013new.csv").write_text("\n".join(vote_lines) + "\n")
    return expected
