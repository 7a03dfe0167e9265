"""The error ``mfer report`` refuses with."""

from __future__ import annotations

from multimodal_fer.errors import MferError


class ReportError(MferError, ValueError):
    """Results that cannot be reported as asked: none found, test sets that differ, unknown metrics or references."""
