"""What ``cyclegan fit`` tells the user while it trains: where the run is, how long it will take,
and at the end how to resume and upload it; a few lines on stderr, from rank 0 only."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.utilities import rank_zero_only

from cyclegan.training.state import WANDB_RUN_ID
from cyclegan.training.callbacks import run_dir
from cyclegan.training.wandb_logger import WandbLogger
from cyclegan.training.wandb_runs import run_folder


@rank_zero_only
def say(line: str) -> None:
    """One line for the user on stderr (stdout stays for what a command produces)."""
    print(line, file=sys.stderr, flush=True)


class RunSummary(pl.Callback):
    """Prints where the run is, a time estimate after the first iterations, and at the end how to
    resume and upload it; records the W&B run id in checkpoints so that a resumed fit continues it."""

    def __init__(self, timed_steps: int = 3) -> None:
        self.timed_steps = timed_steps
        self._start: tuple[int, float] | None = None  # (step, time) after the first, warm-up iteration

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                checkpoint[WANDB_RUN_ID] = logger.version

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:  # one summary; other ranks' loggers are stand-ins
            return
        say(f"run: {run_dir(trainer)} (config.yaml, checkpoints/, samples/); precision {trainer.precision}"
            + (" (bf16 autocast; --trainer.precision 32 for float32)" if trainer.precision == "bf16-mixed" else ""))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                say(logger.describe())
        n_epochs = getattr(pl_module.hparams, "n_epochs", None)
        n_decay = getattr(pl_module.hparams, "n_epochs_decay", None)
        start = pl_module.hparams.get("start_epoch", 0)
        if n_epochs is not None and trainer.max_steps == -1 and trainer.max_epochs != n_epochs + n_decay - start:
            done = f" ({start} done before this run)" if start else ""
            say(f"note: the LR schedule spans n_epochs + n_epochs_decay = {n_epochs + n_decay} epochs{done}, "
                f"but training stops after max_epochs = {trainer.max_epochs}")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero:
            return
        if self._start is None:
            self._start = (step, time.perf_counter())
        elif self._start[0] >= 0 and step - self._start[0] >= self.timed_steps:
            seconds = (time.perf_counter() - self._start[1]) / (step - self._start[0])
            self._start = (-1, 0.0)  # said once
            left = max(0, int(trainer.estimated_stepping_batches) - step)
            timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
            if left:
                say(speed_line(seconds, left, trainer.strategy.root_device.type,
                               time_left=timer.time_remaining("train") if timer else None))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        last = next((c.last_model_path for c in trainer.checkpoint_callbacks if c.last_model_path), None)
        if last:
            say(f"last checkpoint: {last}; resume: the same command with --ckpt_path last (or --ckpt_path {last})")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.offline and not logger.disabled:
                say(f"upload the W&B run: wandb sync {run_folder(logger.experiment)}")


def speed_line(seconds: float, left: int, device: str, *, time_left: float | None = None) -> str:
    """The one speed line; with ``time_left`` (--trainer.max_time) it says where the clock stops the run."""
    total = seconds * left
    hm = lambda t: f"{int(t) // 3600}h{int(t) % 3600 // 60:02d}m"  # noqa: E731
    line = f"speed: {seconds:.2f} s/iteration on {device}; {left} iterations left, about {hm(total)}"
    if time_left is not None and time_left < total:
        line = (f"speed: {seconds:.2f} s/iteration on {device}; max_time stops training in about {hm(time_left)}, "
                f"after about {int(time_left / seconds)} of the {left} iterations left")
        total = time_left
    if device == "cpu" and total > 3600:
        line += " (a smoke run: --config configs/tiny.yaml; real training wants a GPU)"
    return line
