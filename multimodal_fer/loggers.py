"""Weights & Biases logging that works with or without credentials."""

from __future__ import annotations

import logging
import netrc
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from multimodal_fer._lazy import require

log = logging.getLogger(__name__)

#: The stage name test metrics are logged under (``test/expr/f1_macro``).
TEST_PREFIX = "test"


def wandb_credentials_available() -> bool:
    """Whether W&B can log online: an API key in the environment or in ``~/.netrc``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        entries = netrc.netrc(os.environ.get("NETRC") or Path.home() / ".netrc")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    return entries.authenticators(host) is not None


def wandb_mode() -> str:
    """The mode of this package's W&B runs: ``online``, ``offline`` or ``disabled``.

    ``WANDB_MODE`` decides where it says offline (or dryrun) or disabled; otherwise runs go online with credentials
    (:func:`wandb_credentials_available`) and offline without.
    """
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun"):
        return "offline"
    if mode == "disabled":
        return "disabled"
    return "online" if wandb_credentials_available() else "offline"


class WandbLogger(LightningWandbLogger):
    """Lightning's W&B logger that goes offline by itself when no credentials are found.

    ``WANDB_MODE`` (``online``, ``offline``, ``disabled``) in the environment overrides the automatic choice, and is
    read when the logger is made: each run of a process gets the mode the environment says at that time.

    Args:
        project: W&B project.
        name: run name (None: W&B picks one).
        save_dir: folder of the run files and checkpoints.
        offline: force offline (True) or online (False); None decides from the credentials.
        log_model: upload checkpoints as W&B artifacts (online runs only).
        tags: run tags.
        group: run group (e.g. an ablation grid).
        job_type: W&B job type (``mfer`` sets ``fit``, ``test``, ...).
        id: W&B run id; a run with this id is continued (``mfer fit --ckpt_path last`` passes the id that the
            run folder's ``run.json`` holds, so a resumed fit logs into the same W&B run).

    Attributes:
        test_condition: the condition of the test running now (``test``, ``test-withheld-audio``, ``test-rafdb``
            for a combined run's member, ...; set by :class:`~multimodal_fer.callbacks.WandbTestLogger` for the
            length of each test, None otherwise). A test under any condition but plain ``test`` logs its scalar
            metrics under ``<condition>/...`` instead of ``test/...``, so the tests of one W&B run (every member of
            a combined fit, ``mfer test`` under several conditions) keep their own keys and summary values instead
            of each replacing the last one's.
    """

    def __init__(
        self,
        project: str = "multimodal-fer",
        name: str | None = None,
        save_dir: str = "runs",
        offline: bool | None = None,
        log_model: bool = False,
        tags: list[str] | None = None,
        group: str | None = None,
        job_type: str | None = None,
        id: str | None = None,  # noqa: A002 - W&B's own name for it
    ) -> None:
        require("wandb", "logging to Weights & Biases (or set trainer.logger to a CSVLogger)")
        mode = wandb_mode()
        if offline is None:
            offline = mode == "offline"
            if offline and os.environ.get("WANDB_MODE", "").lower() not in ("offline", "dryrun"):
                log.warning(
                    "W&B: no API key found (WANDB_API_KEY or ~/.netrc), so this run logs offline under %s/wandb. "
                    "Upload it later with: wandb sync %s/wandb/offline-run-*",
                    save_dir,
                    save_dir,
                )
        elif mode != "disabled":
            mode = "offline" if offline else "online"
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        # The mode goes to wandb.init itself: W&B reads WANDB_MODE (which Lightning sets for offline runs) only when
        # its session starts, so a second run in one process (a notebook, a test worker) would keep the first run's
        # mode, e.g. log nothing after a disabled run.
        super().__init__(
            project=project,
            name=name,
            save_dir=save_dir,
            offline=offline,
            log_model=log_model and not offline,
            tags=tags,
            group=group,
            id=id,
            job_type=job_type,
            mode=mode,
        )

    test_condition: str | None = None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log ``metrics``; in a test under any condition but ``test``, ``test/...`` keys go as ``<condition>/...``."""
        condition = self.test_condition
        if condition and condition != TEST_PREFIX:
            metrics = {
                f"{condition}/{key.removeprefix(TEST_PREFIX + '/')}"
                if key.startswith(TEST_PREFIX + "/")
                else key: value
                for key, value in metrics.items()
            }
        super().log_metrics(metrics, step)

    @property
    def experiment(self) -> Any:
        """The W&B run, started on first use; a resumed run waits for a killed process's W&B service to let go.

        After ``kill -9`` the killed process's W&B service lives on for a few seconds and still holds the run id,
        so a fit resumed at once would fail with "run ID ... is in use"; it retries for up to
        :data:`RUN_ID_WAIT_S` seconds instead.
        """
        if self._experiment is None:
            _leave_inherited_wandb_service()
        deadline = time.monotonic() + RUN_ID_WAIT_S
        while True:
            try:
                return super().experiment
            except Exception as error:
                if "is in use" not in str(error) or time.monotonic() > deadline:
                    raise
                log.warning("W&B: run %s is still held by the stopped process's service; retrying.", self._id)
                time.sleep(2.0)


def _leave_inherited_wandb_service() -> None:
    """Forget a W&B service inherited from another process, so that this process starts its own.

    A process that used W&B leaves its service's address in ``WANDB_SERVICE`` (``3-<pid>-...``), and every process
    it starts inherits it: a driver script, a notebook or a test run that launches ``mfer fit`` then shares its
    service with each fit. When such a fit is killed, that shared service keeps the fit's run id open until the
    driver exits, so ``--ckpt_path last`` would be refused with "run ID ... is in use" however long it waited.
    """
    token = os.environ.get("WANDB_SERVICE", "")
    owner = token.split("-")[1] if token.count("-") >= 2 else ""
    if owner.isdigit() and int(owner) != os.getpid():
        log.info("W&B: not joining the service of process %s (inherited WANDB_SERVICE); starting its own.", owner)
        del os.environ["WANDB_SERVICE"]


#: How long a resumed run waits for a stopped process to release its W&B run id.
RUN_ID_WAIT_S = 60.0


def active_wandb_run() -> Any:
    """The W&B run active in this process, or None (W&B is not imported unless something used it)."""
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def finish_wandb_run(active_before: Any, failed: bool) -> None:
    """Finish the W&B run a command started in this process, so that the next command starts its own.

    Lightning's logger leaves its run open when a fit or test ends, and a later ``WandbLogger`` in the same process
    (a notebook, a driver script calling :func:`multimodal_fer.cli.main` twice) would log into that run instead of
    starting one. A run that was already active before the command (one the caller started) is left alone.

    Args:
        active_before: :func:`active_wandb_run` before the command.
        failed: the command ended with an error (the run is marked failed).
    """
    run = active_wandb_run()
    if run is not None and run is not active_before:
        run.finish(exit_code=1 if failed else 0)
