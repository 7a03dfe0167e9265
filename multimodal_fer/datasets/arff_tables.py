"""Weka ARFF files as the AVEC challenges distribute them: a header of attributes, then comma-separated rows.

A small reader of its own rather than :func:`scipy.io.arff.loadarff`, which refuses ``string`` attributes (AVEC's
gold-standard files start every row with the recording's name as a ``string``). Supported: ``@relation``,
``@attribute <name> <type>`` (``numeric``/``real``/``integer``/``string``/nominal ``{...}``; names may be quoted),
``@data`` rows of dense comma-separated values, single- or double-quoted values, ``%`` comments and blank lines.
Sparse rows (``{...}``) are refused. Values stay text; the caller converts the columns it reads.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from multimodal_fer.errors import DataError


@dataclass(frozen=True)
class ArffTable:
    """The content of one ARFF file.

    Attributes:
        relation: the ``@relation`` name.
        attributes: ``(name, type)`` per column, in order (types lower-cased, nominal sets as written).
        rows: the data rows, each with one text value per attribute.
        row_lines: 1-based line number of each row in the file (for rejections that name a line).
    """

    relation: str
    attributes: tuple[tuple[str, str], ...]
    rows: tuple[tuple[str, ...], ...]
    row_lines: tuple[int, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The attribute names."""
        return tuple(name for name, _ in self.attributes)

    def column(self, name: str) -> list[str]:
        """One column's values by attribute name.

        Raises:
            DataError: no attribute of that name.
        """
        if name not in self.names:
            raise DataError(f"The ARFF table {self.relation!r} has no attribute {name!r} (it has {list(self.names)}).")
        index = self.names.index(name)
        return [row[index] for row in self.rows]


def _split(text: str) -> list[str]:
    """One line's comma-separated values, quotes (single or double) removed, spaces around values stripped."""
    quote = "'" if "'" in text and '"' not in text else '"'
    return [value.strip() for value in next(csv.reader([text], quotechar=quote, skipinitialspace=True), [])]


def read_arff(path: str | Path) -> ArffTable:
    """Read an ARFF file.

    Raises:
        DataError: the file is missing or not UTF-8 text, lacks ``@data`` or attributes, has a sparse row or a row
            whose value count differs from the attribute count (the message names the line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"Cannot read the ARFF file {str(path)!r}: {error}.") from error
    relation = ""
    attributes: list[tuple[str, str]] = []
    rows: list[tuple[str, ...]] = []
    lines: list[int] = []
    in_data = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if not in_data:
            keyword = line.split(None, 1)[0].lower()
            rest = line[len(keyword) :].strip()
            if keyword == "@relation":
                relation = rest.strip("'\"")
            elif keyword == "@attribute":
                if rest[:1] in "'\"":
                    end = rest.find(rest[0], 1)
                    name, kind = rest[1:end], rest[end + 1 :].strip()
                else:
                    name, _, kind = rest.partition(" ")
                if not name or not kind.strip():
                    raise DataError(f"{path}:{number}: an @attribute line needs a name and a type, got {line!r}.")
                attributes.append((name, kind.strip() if kind.strip().startswith("{") else kind.strip().lower()))
            elif keyword == "@data":
                in_data = True
            else:
                raise DataError(f"{path}:{number}: {line[:40]!r} is not an ARFF header line (@relation, @attribute).")
            continue
        if line.startswith("{"):
            raise DataError(f"{path}:{number}: sparse ARFF rows are not supported.")
        values = _split(line)
        if len(values) != len(attributes):
            raise DataError(f"{path}:{number}: {len(values)} values for {len(attributes)} attributes.")
        rows.append(tuple(values))
        lines.append(number)
    if not in_data or not attributes:
        raise DataError(f"{path} is not an ARFF file: no @attribute lines or no @data section.")
    return ArffTable(relation, tuple(attributes), tuple(rows), tuple(lines))
