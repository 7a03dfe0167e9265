"""Tables as Markdown, CSV and LaTeX (booktabs) text."""

from __future__ import annotations

import csv
import io
import math

from multimodal_fer.reporting.tables import Table

#: Characters LaTeX treats specially, and what stands for them in a table cell.
_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "–": "--",
    "·": r"$\cdot$",
    "<": r"$<$",
    ">": r"$>$",
}


def markdown_table(table: Table) -> str:
    """A pipe table with its title in bold above it and its notes below."""

    def cells(values: list[str]) -> str:
        return "| " + " | ".join(value.replace("|", "\\|") for value in values) + " |"

    lines = [f"**{table.title}**", "", cells(table.columns), "|" + "---|" * len(table.columns)]
    lines += [cells(row) for row in table.rows]
    lines += ["", *table.notes] if table.notes else []
    return "\n".join(lines) + "\n"


def csv_text(table: Table) -> str:
    """The table's plain numbers as CSV (empty cells for missing values)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.csv_columns)
    for row in table.csv_rows:
        writer.writerow(["" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v for v in row])
    return buffer.getvalue()


def latex_escape(text: str) -> str:
    """Text with LaTeX's special characters replaced (for tables in a document that loads booktabs)."""
    return "".join(_LATEX.get(character, character) for character in text)


def latex_table(table: Table, label: str) -> str:
    """A ``table`` float with a booktabs ``tabular``, its caption and label, the notes below it."""
    alignment = "l" + "r" * (len(table.columns) - 1)
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}}}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{alignment}}}",
        r"\toprule",
        " & ".join(latex_escape(column) for column in table.columns) + r" \\",
        r"\midrule",
        *(" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in table.rows),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    lines += [rf"\par\smallskip\footnotesize {latex_escape(note)}" for note in table.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
