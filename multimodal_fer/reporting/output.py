"""Write a report: ``<stem>.html`` (self-contained), ``<stem>.md``, ``<stem>.tex`` and ``<stem>-<table>.csv``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from multimodal_fer.reporting.document import Report
from multimodal_fer.reporting.errors import ReportError
from multimodal_fer.reporting.html_page import render_html
from multimodal_fer.reporting.text_formats import csv_text, latex_table, markdown_table


@dataclass(frozen=True)
class WrittenReport:
    """The files a report was written to.

    Attributes:
        html: the self-contained HTML page.
        markdown: every table in Markdown.
        latex: every table as a LaTeX ``table`` float (the document needs the booktabs package).
        csv: one CSV file per table, in table order.
    """

    html: Path
    markdown: Path
    latex: Path
    csv: list[Path]


def csv_path(output: Path, table_name: str) -> Path:
    """Where a table's CSV file goes beside the HTML page: ``report.html`` → ``report-<table>.csv``."""
    return output.with_name(f"{output.stem}-{table_name}.csv")


def markdown_document(report: Report, output: Path) -> str:
    """The report's text and tables in Markdown; each table names its CSV file."""
    lines = [f"# {report.title}", "", f"Built {report.created} from {', '.join(report.inputs)}.", ""]
    lines += [f"- {line}" for line in report.method]
    if report.notes:
        lines += ["", "Notes:", "", *(f"- {note}" for note in report.notes)]
    for section in report.sections:
        lines += ["", f"## {section.title}", "", *section.details]
        for table in section.tables:
            lines += ["", markdown_table(table).rstrip("\n"), "", f"CSV: `{csv_path(output, table.name).name}`"]
        if section.notes:
            lines += ["", *(f"- {note}" for note in section.notes)]
    return "\n".join(lines) + "\n"


def latex_document(report: Report) -> str:
    """Every table as a LaTeX float, to include (``input``) in a document that loads the booktabs package."""
    header = [
        f"% {report.title}, built {report.created} by `mfer report` from {', '.join(report.inputs)}.",
        "% Needs \\usepackage{booktabs}. Each table's label is tab:<its CSV name>.",
        "",
    ]
    return "\n".join(header) + "\n".join(latex_table(table, f"tab:{table.name}") for table in report.tables)


def write_report(report: Report, output: str | Path) -> WrittenReport:
    """Write the report's files beside ``output`` (an ``.html`` path), creating its folder.

    Raises:
        ReportError: ``output`` does not end in ``.html``.
    """
    output = Path(output)
    if output.suffix.lower() != ".html":
        raise ReportError(f"--output must name an .html file (the other files go beside it), got {output}.")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_html(report), encoding="utf-8")
    markdown = output.with_suffix(".md")
    markdown.write_text(markdown_document(report, output), encoding="utf-8")
    latex = output.with_suffix(".tex")
    latex.write_text(latex_document(report), encoding="utf-8")
    tables = []
    for table in report.tables:
        path = csv_path(output, table.name)
        path.write_text(csv_text(table), encoding="utf-8")
        tables.append(path)
    return WrittenReport(output, markdown, latex, tables)
