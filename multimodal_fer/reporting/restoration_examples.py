"""Restoration examples of a report: the latest grid a run's ``RestorationGridLogger`` saved, where faces may be shown.

``RestorationGridLogger`` saves ``<run folder>/restoration_grids[/<logger version>]/epoch_XXX.png`` (rows of
occluded | mask | restored | clean faces) after every validation epoch. The report embeds a setting's latest one
(highest epoch, then newest file, of its first run that has any) only where the run's results file records that the
data set's card allows showing its faces (``data.face_media_allowed``, the rule the W&B predictions tables and the
grid logger follow). Otherwise it says why none is shown. Each run's grid is shown once, in the first section asked
about that holds the run (the report asks about plain ``test`` sections first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from multimodal_fer.reporting.document import Image
from multimodal_fer.reporting.grouping import ProtocolGroup
from multimodal_fer.reporting.records import ResultRecord

#: The folder of a run that holds its restoration grids.
GRID_FOLDER = "restoration_grids"
#: A grid's file name.
_GRID_NAME = re.compile(r"^epoch_(?P<epoch>\d+)\.png$")
#: The first bytes of every PNG file.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def latest_grid(run_folder: Path) -> Path | None:
    """The run's latest restoration grid (highest epoch, then most recently written), None if it has none."""
    folder = run_folder / GRID_FOLDER
    if not folder.is_dir():
        return None
    grids = [path for path in folder.rglob("epoch_*.png") if _GRID_NAME.match(path.name) and path.is_file()]
    if not grids:
        return None
    return max(grids, key=lambda path: (int(_GRID_NAME.match(path.name)["epoch"]), path.stat().st_mtime, str(path)))


def _refusal(record: ResultRecord) -> str | None:
    """Why the run's faces may not be shown, None where its results file says the data card allows it."""
    allowed = (record.data or {}).get("face_media_allowed")
    if allowed is True:
        return None
    if allowed is False:
        return f"the data card of {record.dataset} does not allow showing its faces (face_media_allowed)"
    return (
        f"{record.path.name} does not record whether the data card allows showing faces (data.face_media_allowed, "
        "written by `mfer test` since the report shows restoration grids); test the run again to record it"
    )


@dataclass
class RestorationExamples:
    """Gives each section its restoration grids, each run's once.

    Attributes:
        shown: run folders already dealt with.
    """

    shown: set[Path] = field(default_factory=set)

    def __call__(self, group: ProtocolGroup, has_restoration: bool) -> tuple[list[Image], list[str]]:
        """The group's grids and notes on the grids it does not show.

        Args:
            group: the protocol group.
            has_restoration: whether the group has ``restoration/*`` metrics (if so and no run has a grid, a
                note says that none is shown).

        Returns:
            (figures, notes).
        """
        images, notes = [], []
        found_any = fresh_any = False
        for setting in group.settings:
            records = [record for record in setting.records if record.run_folder not in self.shown]
            self.shown.update(record.run_folder for record in setting.records)
            fresh_any = fresh_any or bool(records)
            with_grid = [(record, grid) for record in records if (grid := latest_grid(record.run_folder))]
            if not with_grid:
                continue
            found_any = True
            record, grid = with_grid[0]
            refusal = _refusal(record)
            png = grid.read_bytes() if refusal is None else b""
            if refusal is None and not png.startswith(PNG_SIGNATURE):
                refusal = f"{grid} is not a PNG file"
            if refusal is not None:
                notes.append(f"Restoration examples of {setting.label}: none shown; {refusal}.")
                continue
            relative = grid.relative_to(record.run_folder)
            caption = (
                f"{setting.label}: restoration examples of run {record.run_name}, {relative} (rows: occluded | mask "
                "| restored | clean)"
            )
            images.append(Image(caption, png))
        if fresh_any and not found_any and has_restoration:
            notes.append(
                "Restoration examples: none shown; no run folder of this group holds restoration grids "
                f"({GRID_FOLDER}/epoch_XXX.png, saved by RestorationGridLogger during fit)."
            )
        return images, notes
