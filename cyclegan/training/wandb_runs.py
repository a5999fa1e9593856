"""W&B runs without Lightning: whether a login exists, and the one line saying where a run is.

Shared by the training logger (:mod:`cyclegan.training.wandb_logger`) and by evaluate/compare,
which start runs of their own and must not load Lightning to describe them.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


def wandb_login_found() -> bool:
    """True when an API key is in the environment or in the netrc file ``wandb login`` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def offline_by_environment() -> bool:
    """``WANDB_MODE`` asks for an offline run (``offline`` or its old name ``dryrun``)."""
    return os.environ.get("WANDB_MODE") in ("offline", "dryrun")


def offline_by_default() -> bool:
    """The rule of every run this package starts: offline when ``WANDB_MODE`` says so or no
    login is found (such a run can be uploaded later with ``wandb sync``)."""
    return offline_by_environment() or not wandb_login_found()


def run_folder(run: Any) -> Path:
    """The local folder of a started ``wandb`` run, the one ``wandb sync`` uploads (``run.dir`` is its ``files/``)."""
    return Path(run.dir).parent


def where_is(run: Any, offline: bool) -> str:
    """One line saying where a started ``wandb`` run is: its local folder when offline, else its page.

    The one wording for every command that logs to W&B (``fit`` through :meth:`WandbLogger.describe`,
    ``evaluate`` and ``compare`` through :func:`cyclegan.evaluation.report.describe_run`)."""
    if offline:
        return f"W&B: run {run.id} offline in {run_folder(run)}"
    return f"W&B: run {run.id} at {run.url}"
