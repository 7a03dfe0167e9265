"""A report's figures and tables logged to W&B beside the runs it was built from (``mfer report --wandb``).

The runs' own W&B logger (``trainer.logger`` of their configs: :class:`~multimodal_fer.loggers.WandbLogger`) names
the project and the group (the suite, or the experiment); the report becomes one more run of that group, with job
type ``report``, holding every figure of the HTML page as an image and every table as a W&B table, so that the
report sits next to the runs in W&B's workspace. Without W&B credentials (or with ``WANDB_MODE=offline``) it is
written offline under ``<output folder>/wandb`` and uploaded later with ``wandb sync``, like the runs themselves.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multimodal_fer.reporting.document import Report
from multimodal_fer.reporting.errors import ReportError

#: The package's W&B logger, as configs name it.
WANDB_LOGGER = "multimodal_fer.loggers.WandbLogger"


@dataclass(frozen=True)
class WandbDestination:
    """Where a report's W&B run goes.

    Attributes:
        project: the runs' W&B project.
        group: the runs' group (a suite's name, or their experiment).
        logged_runs: how many of the report's runs were logged to W&B.
    """

    project: str
    group: str
    logged_runs: int


def _logger_settings(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The init arguments of a run config's W&B logger, or None when it logged elsewhere (or nowhere)."""
    loggers = ((config or {}).get("trainer") or {}).get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        if isinstance(logger, dict) and logger.get("class_path", "").endswith("WandbLogger"):
            return dict(logger.get("init_args") or {})
    return None


def wandb_destination(configs: Sequence[dict[str, Any] | None], fallback_group: str) -> WandbDestination:
    """The project and group of the runs' W&B loggers.

    Args:
        configs: the report's runs' resolved configs.
        fallback_group: the group when the runs' loggers name none (the report's first input folder's name).

    Raises:
        ReportError: when no run was logged to W&B, or the runs were logged to several projects.
    """
    settings = [found for found in (_logger_settings(config) for config in configs) if found is not None]
    if not settings:
        raise ReportError(
            "--wandb: none of these runs was logged to W&B (their configs' trainer.logger is not "
            f"{WANDB_LOGGER}), so there is no project to put the report in. Leave out --wandb."
        )
    projects = sorted({str(found.get("project") or "multimodal-fer") for found in settings})
    if len(projects) > 1:
        raise ReportError(
            f"--wandb: the runs were logged to several W&B projects ({', '.join(projects)}); report them separately."
        )
    groups = sorted({str(found["group"]) for found in settings if found.get("group")})
    group = groups[0] if len(groups) == 1 else fallback_group
    return WandbDestination(projects[0], group, len(settings))


def upload_report(report: Report, destination: WandbDestination, directory: Path) -> Path:
    """Log every figure and table of a report to one W&B run of the runs' project and group.

    Args:
        report: the built report.
        destination: the project and group (:func:`wandb_destination`).
        directory: where W&B writes its files (``<directory>/wandb``).

    Returns:
        The W&B run's local folder.
    """
    import wandb
    from PIL import Image as PILImage

    from multimodal_fer.loggers import wandb_mode

    directory.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=destination.project,
        group=destination.group,
        job_type="report",
        name=f"{destination.group}/report",
        dir=str(directory),
        mode=wandb_mode(),
        config={"inputs": report.inputs, "created": report.created},
        reinit="create_new",
    )
    try:
        # Keys stay short (W&B names a table's artifact after its key, 128 characters at most): the section's
        # number and the figure's number or the table's file name; titles go into captions and the "sections" table.
        titles = [[f"{position:02d}", section.title] for position, section in enumerate(report.sections)]
        run.log({"sections": wandb.Table(columns=["section", "title"], data=titles)})
        for position, section in enumerate(report.sections):
            for number, image in enumerate([*section.lead_images, *section.images]):
                picture = PILImage.open(io.BytesIO(image.png))
                run.log({f"{position:02d}/figure{number:02d}": wandb.Image(picture, caption=image.title)})
            for table in section.tables:
                columns, rows = list(table.csv_columns), [list(row) for row in table.csv_rows]
                run.log({f"{position:02d}/{table.name[:80]}": wandb.Table(columns=columns, data=rows)})
        local = Path(run.dir).parent
    finally:
        run.finish()
    return local
