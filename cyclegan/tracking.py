"""Weights & Biases logging that works without an account: offline unless a login is found."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from pytorch_lightning import loggers
from pytorch_lightning.utilities import rank_zero_info


def wandb_login_found() -> bool:
    """True when an API key is in the environment or in the netrc file ``wandb login`` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbLogger(loggers.WandbLogger):
    """Lightning's WandbLogger with this project's defaults.

    Args:
        project: W&B project.
        save_dir: where the W&B run folder (``wandb/``) and, through Lightning, the
            checkpoints (``<project>/<run id>/checkpoints``) go.
        group: put runs side by side in the W&B UI, e.g. method 1 and CycleGAN on one dataset.
        tags: extra tags; the CLI adds the model kind (``cyclegan`` / ``method1``).
        offline: ``None`` decides: offline when ``WANDB_MODE`` is offline/dryrun or no
            login is found; the run can be uploaded later with ``wandb sync``.
        name, version, notes, job_type, log_model: as for ``wandb.init`` / Lightning's WandbLogger.
    """

    def __init__(
        self,
        *,
        project: str = "cyclegan",
        save_dir: str | None = "runs",
        group: str | None = None,
        tags: list[str] | None = None,
        offline: bool | None = None,
        name: str | None = None,
        version: str | None = None,
        notes: str | None = None,
        job_type: str | None = None,
        log_model: bool = False,
    ) -> None:
        if offline is None:
            offline = os.environ.get("WANDB_MODE") in ("offline", "dryrun") or not wandb_login_found()
        save_dir = save_dir or "runs"
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            project=project, save_dir=save_dir, name=name, version=version, offline=offline,
            log_model=log_model and not offline, group=group, tags=list(tags or []), notes=notes, job_type=job_type,
        )

    @property
    def offline(self) -> bool:
        return self._offline or os.environ.get("WANDB_MODE") in ("offline", "dryrun")

    def describe(self) -> str:
        """One line: where the run is and, offline, how to upload it."""
        run = self.experiment
        run_dir = Path(run.dir).parent  # run.dir is <run folder>/files
        if self.offline:
            return f"W&B run {run.id} logged offline to {run_dir}; upload it later with: wandb sync {run_dir}"
        return f"W&B run {run.id}: {run.url}"


def announce(message: str) -> None:
    rank_zero_info(message)
