"""A report as one self-contained HTML page: inline CSS, figures as inline base64 PNG, no scripts, no links out."""

from __future__ import annotations

import base64
from html import escape

from multimodal_fer.reporting.document import Image, Report, Section
from multimodal_fer.reporting.tables import Table

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1b1f24; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.5rem; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: 0.6rem 0 0.4rem; font-size: 0.88rem; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.3rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.55rem; }
th { background: #f3f5f7; text-align: left; }
td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td:first-child { text-align: left; white-space: normal; }
tr:nth-child(even) td { background: #fafbfc; }
.note { color: #57606a; font-size: 0.85rem; margin: 0.2rem 0; }
.method li, .warnings li { font-size: 0.88rem; }
.warnings { color: #9a6700; }
figure { display: inline-block; margin: 0.5rem 1rem 0.5rem 0; }
figcaption { font-size: 0.8rem; color: #57606a; max-width: 24rem; }
code { font-size: 0.85rem; }
"""


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(column)}</th>" for column in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in table.notes)
    return (
        f'<table id="{escape(table.name)}"><caption>{escape(table.title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"
    )


def _image(image: Image) -> str:
    data = base64.b64encode(image.png).decode("ascii")
    return (
        f'<figure><img alt="{escape(image.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(image.title)}</figcaption></figure>"
    )


def _section(section: Section) -> str:
    parts = [f"<h2>{escape(section.title)}</h2>"]
    parts += [f"<p>{escape(line)}</p>" for line in section.details]
    tables = [_table(table) for table in section.tables]
    parts += tables[:1]
    if section.lead_images:
        parts.append("<div>" + "".join(_image(image) for image in section.lead_images) + "</div>")
    parts += tables[1:]
    parts += [f'<p class="note">{escape(note)}</p>' for note in section.notes]
    if section.images:
        parts.append("<div>" + "".join(_image(image) for image in section.images) + "</div>")
    return "\n".join(parts)


def render_html(report: Report) -> str:
    """The report as one HTML document (UTF-8)."""
    inputs = ", ".join(f"<code>{escape(folder)}</code>" for folder in report.inputs)
    method = "".join(f"<li>{escape(line)}</li>" for line in report.method)
    warnings = "".join(f"<li>{escape(note)}</li>" for note in report.notes)
    body = [
        f"<h1>{escape(report.title)}</h1>",
        f"<p>Built {escape(report.created)} from {inputs}.</p>",
        f'<ul class="method">{method}</ul>',
        f'<ul class="warnings">{warnings}</ul>' if warnings else "",
        *(_section(section) for section in report.sections),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(report.title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body>\n</html>\n"
    )
