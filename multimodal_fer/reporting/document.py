"""What a report holds, independent of the format it is written in."""

from __future__ import annotations

from dataclasses import dataclass, field

from multimodal_fer.reporting.tables import Table


@dataclass(frozen=True)
class Image:
    """A figure of a report.

    Attributes:
        title: its caption.
        png: the PNG file's bytes.
    """

    title: str
    png: bytes


@dataclass
class Section:
    """One protocol group: its description, tables, figures and notes.

    Attributes:
        title: ``dataset · protocol · condition``.
        details: lines that describe the group (cache, runs, test samples).
        tables: the group's tables, in order.
        lead_images: figures of the summary (setting bars, missing-modality heat maps), shown right after the
            first table (HTML only).
        images: the group's other figures, after its tables (HTML only).
        notes: what is not available and why, and other remarks.
    """

    title: str
    details: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    lead_images: list[Image] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """A whole report.

    Attributes:
        title: the report's title.
        created: when it was built (ISO 8601, UTC).
        inputs: the folders it was built from.
        method: how its statistics are computed, one line each.
        sections: one per protocol group.
        notes: remarks about the inputs (missing files, stored metrics that the predictions do not reproduce).
    """

    title: str
    created: str
    inputs: list[str]
    method: list[str]
    sections: list[Section]
    notes: list[str] = field(default_factory=list)

    @property
    def tables(self) -> list[Table]:
        """Every table of every section."""
        return [table for section in self.sections for table in section.tables]
