"""Large annotation CSVs read by line offset: listed once, one row re-read per sample, checked by a digest.

A listing of hundreds of thousands of rows keeps only each row's byte offset and a short digest (so it pickles
small to the cache builder's workers); ``load`` seeks to the row and refuses it if the file changed since.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path

from multimodal_fer.datasets.base import SampleError


def indexed_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(1-based line number, byte offset, raw bytes) of every line of a file."""
    offset = 0
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            yield number, offset, raw
            offset += len(raw)


def row_digest(raw: bytes) -> str:
    """A short digest of one line (its end-of-line bytes ignored)."""
    return hashlib.blake2b(raw.rstrip(b"\r\n"), digest_size=8).hexdigest()


def read_line(path: Path, offset: int, digest: str, what: str) -> bytes:
    """The line at ``offset``, checked against the digest taken while listing.

    Args:
        path: the CSV.
        offset: byte offset of the line.
        digest: :func:`row_digest` of the line when it was listed.
        what: what the file is, for the failure reasons (``"annotation list"``, ``"CSV"``).

    Raises:
        SampleError: ``"unreadable <what>"`` or ``"<what> row changed since listing"``.
    """
    try:
        with path.open("rb") as stream:
            stream.seek(offset)
            raw = stream.readline()
    except OSError as error:
        raise SampleError(f"unreadable {what}") from error
    if row_digest(raw) != digest:
        raise SampleError(f"{what} row changed since listing")
    return raw


def csv_fields(raw: bytes) -> list[str] | None:
    """The comma-separated fields of one CSV line (None: not UTF-8)."""
    try:
        text = raw.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError:
        return None
    return next(csv.reader([text]), [])
