"""Weights & Biases logging that works without an account: offline unless a login is found."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytorch_lightning import loggers
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn

from cyclegan.errors import first_line
from cyclegan.training.lightning_internals import drop_wandb_anonymous, set_wandb_mode
from cyclegan.training.wandb_runs import offline_by_default, offline_by_environment, where_is


class WandbLogger(loggers.WandbLogger):
    """Lightning's WandbLogger with this project's defaults.

    Args:
        project: W&B project.
        save_dir: where the W&B files (``wandb/``) and the run folders
            (``<folder>/<run id>/``: config.yaml, checkpoints/, samples/, metrics.jsonl) go.
        folder: the sub-folder of ``save_dir`` for run folders; the CLI sets the model kind
            (``cyclegan`` / ``method1``); default the project.
        group: put runs side by side in the W&B UI, e.g. method 1 and CycleGAN on one dataset.
        tags: extra tags; the CLI adds the model kind (``cyclegan`` / ``method1``).
        offline: ``None`` decides: offline when ``WANDB_MODE`` is offline/dryrun or no
            login is found; the run can be uploaded later with ``wandb sync``.
        silent: no ``wandb:`` lines in the terminal (``cyclegan fit --verbose`` shows them).
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
        folder: str | None = None,
        silent: bool = True,
    ) -> None:
        if offline is None:
            offline = offline_by_default()
        save_dir = save_dir or "runs"
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            project=project, save_dir=save_dir, name=name, version=version, offline=offline,
            log_model=log_model and not offline, group=group, tags=list(tags or []), notes=notes, job_type=job_type,
            # silent: wandb's banner, run summary with sparklines and sync hints; fit prints
            # where the run is and how to sync it once, itself.
            settings={"silent": silent},
        )
        drop_wandb_anonymous(self)
        self._mode = "offline" if offline else None  # or what a failed start fell back to
        self._folder = folder
        self._warned: set[str] = set()

    @property
    def name(self) -> str | None:
        """The folder under ``save_dir`` holding the run folders (Lightning puts checkpoints in
        ``<save_dir>/<name>/<version>/checkpoints``): the model kind, not the W&B project."""
        return self._folder or super().name

    @property
    def run_dir(self) -> Path | None:
        """``<save_dir>/<folder>/<run id>``, as Lightning lays it out (None before the id is known)."""
        return Path(self.save_dir) / str(self.name) / str(self.version) if self.version else None

    @property
    def offline(self) -> bool:
        return self._mode == "offline" or offline_by_environment()

    @property
    def disabled(self) -> bool:
        return self._mode == "disabled"

    # W&B must never stop training: if it cannot start online (unreachable, bad key), it
    # falls back to offline; if that fails too (full disk), to disabled. Metrics go to
    # metrics.jsonl in the run folder whatever happens to W&B.
    @property
    @rank_zero_experiment
    def experiment(self):
        for attempt in ("as configured", "offline", "disabled"):
            try:
                return super().experiment
            except Exception as e:  # wandb raises many kinds: CommError, UsageError, OSError, ...
                if attempt == "disabled":
                    raise
                fallback = "offline" if attempt == "as configured" and not self.offline else "disabled"
                self._warn(f"W&B could not start {'offline' if self.offline else 'online'} ({first_line(e)}); "
                           f"continuing with W&B {fallback}")
                set_wandb_mode(self, fallback)
                self._mode = fallback

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            rank_zero_warn(message)

    def _local_metrics_file(self) -> Path | None:
        return self.run_dir / "metrics.jsonl" if self.run_dir else None

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) or getattr(v, "ndim", 1) == 0}
        path = self._local_metrics_file()
        if numbers and path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a") as f:
                    f.write(json.dumps({"step": step, **numbers}) + "\n")
            except OSError as e:
                self._warn(f"cannot write {path} ({first_line(e)})")
        self._guard(super().log_metrics, metrics, step)

    def log_image(self, *args: Any, **kwargs: Any) -> None:
        self._guard(super().log_image, *args, **kwargs)

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        self._guard(super().log_hyperparams, *args, **kwargs)

    def _guard(self, fn, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as e:  # a full disk or a dead W&B process: warn once, keep training
            self._warn(f"W&B logging failed ({first_line(e)}); training continues, metrics go to metrics.jsonl")

    def describe(self) -> str:
        """One line: where the run is (:func:`where_is`), or where the metrics go when W&B is disabled.

        Starts the run first: a run that cannot start falls back to offline or disabled, and
        the line says what it became."""
        run = self.experiment
        if self.disabled:
            return f"W&B: disabled (every logged number is in {self._local_metrics_file() or 'metrics.jsonl'})"
        return where_is(run, self.offline)
