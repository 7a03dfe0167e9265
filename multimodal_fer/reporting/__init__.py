"""Reports built from results files only: ``mfer report`` (tables in HTML, Markdown, CSV and LaTeX).

Example::

    report = build_report(["runs/suites/modalities"], reference=["data.init_args.modalities=[face]"])
    written = write_report(report, "runs/suites/modalities/report.html")
"""

from multimodal_fer.reporting.builder import DEFAULT_RESAMPLES, build_report, default_metrics
from multimodal_fer.reporting.document import Image, Report, Section
from multimodal_fer.reporting.errors import ReportError
from multimodal_fer.reporting.output import WrittenReport, write_report
from multimodal_fer.reporting.records import ResultRecord, load_records

__all__ = [
    "DEFAULT_RESAMPLES",
    "Image",
    "Report",
    "ReportError",
    "ResultRecord",
    "Section",
    "WrittenReport",
    "build_report",
    "default_metrics",
    "load_records",
    "write_report",
]
