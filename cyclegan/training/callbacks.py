"""Training callbacks: sample grids, training health, stopping cleanly on signals, ``last.ckpt``.
(Validation KID is an evaluation callback: :mod:`cyclegan.evaluation.validation`.)

(Checkpoint files without Lightning are in :mod:`cyclegan.inference.checkpoints`; writing them, atomically
and as ``last.ckpt``, is here.)
"""

from __future__ import annotations

import os
import signal
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from weakref import proxy

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_warn
from PIL import Image

from cyclegan.data.grids import as_pixels, titled_grid
from cyclegan.data.images import to_uint8
from cyclegan.errors import NonFiniteLossError, warn
from cyclegan.training.wandb_logger import WandbLogger
from cyclegan.training.base import D_ACCURACY


def run_dir(trainer: pl.Trainer) -> Path:
    """The run's folder: the parent of its checkpoint folder, laid out as Lightning does
    (``<save_dir>/<logger name>/<version>``, known before the checkpoint callback resolves its
    folder), else the trainer's root."""
    callback = trainer.checkpoint_callback
    if callback is not None and callback.dirpath:
        return Path(callback.dirpath).parent
    if trainer.loggers:
        logger = trainer.loggers[0]
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version
    return Path(trainer.default_root_dir)


class SampleGrid(pl.Callback):
    """Translates a fixed set of validation images and logs the grid, each column titled in the PNG.

    Each row is one image; the columns are the model's ``sample_columns(real_a, real_b)``, an
    ordered mapping of column title to (N, C, H, W) images in [-1, 1] (CycleGAN: real A | A->B |
    A->B->A | real B | B->A | B->A->B; any model may give any number of columns). One grid per
    sampling point: every ``every_n_steps`` training steps and at the end of training (with
    ``every_n_steps`` 0: after each validation and at the end instead). Logged to W&B under
    ``samples`` and written to ``<run dir>/samples/step_XXXXXXX.png``, the same pixels.

    Args:
        num_images: rows in the grid (the first validation images of each domain).
        every_n_steps: training steps between grids.
    """

    def __init__(self, num_images: int = 4, every_n_steps: int = 500) -> None:
        self.num_images, self.every_n_steps = num_images, every_n_steps
        self._batch: dict[str, torch.Tensor] | None = None
        self._last_step: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule  # Lightning has run its setup by now
        if datamodule is not None and hasattr(datamodule, "sample_batch"):
            self._batch = datamodule.sample_batch(self.num_images)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.log_grid(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation is a sampling point only without a step cadence: beside one it would add
        # near-duplicates (an epoch end at step 248, the cadence at 250).
        if self.every_n_steps <= 0 and not trainer.sanity_checking:
            self.log_grid(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.log_grid(trainer, pl_module)

    def log_grid(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._batch is None or not trainer.is_global_zero or self._last_step == trainer.global_step:
            return  # (a skipped non-finite update leaves the step where it was)
        self._last_step = trainer.global_step
        was_training = pl_module.training
        pl_module.eval()
        columns = pl_module.sample_columns(
            self._batch["A"].to(pl_module.device), self._batch["B"].to(pl_module.device)
        )
        pl_module.train(was_training)
        # uint8 (H, W, 3): the same pixels in the PNG file and in W&B (which would cast a
        # float grid in [0, 1] to uint8 as it is, leaving only the values 0 and 1).
        pixels = as_pixels(titled_grid([(title, to_uint8(images).cpu()) for title, images in columns.items()]))
        path = run_dir(trainer) / "samples" / f"step_{trainer.global_step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        caption = f"step {trainer.global_step}: " + " | ".join(columns)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("samples", [pixels], step=trainer.global_step, caption=[caption])


class GracefulStop(pl.Callback):
    """Ctrl-C or SIGTERM: finish the current iteration, write ``last.ckpt``, stop cleanly.

    A second Ctrl-C aborts at once. Replaces Lightning's own SIGTERM handling, which
    raises an exception at the next batch end instead of stopping with a checkpoint.
    ``stopped_by`` names the signal afterwards (``None`` if training ran to its end).
    """

    def __init__(self) -> None:
        self.stopped_by: str | None = None
        self.checkpoint: str | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._request_stop)

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self.stopped_by is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: abort now
        self.stopped_by = signal.Signals(signum).name
        # Said at once (an iteration can take seconds), through the package's warnings: the
        # terminal shows them, from rank 0 only. The newline ends a progress bar's line.
        warn(f"\n{self.stopped_by} received: stopping after this iteration (Ctrl-C again to abort)")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        stop = self.stopped_by is not None
        if trainer.world_size > 1:  # every rank must stop at the same iteration
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        self.stopped_by = self.stopped_by or "another rank's signal"
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, LastCheckpoint):
                callback.save_now(trainer)
                self.checkpoint = callback.last_model_path
        trainer.should_stop = True

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()


class TrainingHealth(pl.Callback):
    """Watches for the GAN failure modes people hit, and warns once each in the console.

    - A discriminator that wins outright: when its patch accuracy (what ``training_step``
      returns under ``D_ACCURACY``, also logged as ``train/d_*_acc``) averaged over the last
      ``window`` iterations stays above ``max_d_accuracy``, the generator's gradient vanishes
      and it stops improving.
    - Mode collapse: after each validation the fixed sample images are translated, and the
      mean pairwise distance between the outputs is divided by that between the inputs
      (logged as ``val/diversity_ab``). Far below 1 (``min_diversity``), different inputs
      are being mapped to nearly the same output.
    """

    def __init__(self, window: int = 200, max_d_accuracy: float = 0.99, min_diversity: float = 0.1,
                 num_images: int = 8) -> None:
        self.window, self.max_d_accuracy, self.min_diversity = window, max_d_accuracy, min_diversity
        self.num_images = num_images
        self._accuracy: dict[str, deque] = {}
        self._warned: set[str] = set()
        self._batches = 0

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._batches += 1
        accuracies: Mapping[str, torch.Tensor] = (outputs or {}).get(D_ACCURACY, {})  # {} for a skipped update
        for name, value in accuracies.items():
            history = self._accuracy.setdefault(name, deque(maxlen=self.window))
            history.append(value.detach())
            # Read back (a device sync) only when the model's logs are read anyway, once the window is full.
            due = pl_module.logs_due() if hasattr(pl_module, "logs_due") else self._batches % 50 == 0
            if len(history) < self.window or not due:
                continue
            accuracy = torch.stack(list(history)).float().mean().item()
            if accuracy > self.max_d_accuracy:
                self._warn_once(name, f"{name} has classified {accuracy:.1%} of patches right over "
                                      f"the last {self.window} iterations: it is winning outright and the generator's "
                                      "gradient may vanish (try a smaller discriminator or lr, or the lsgan loss)")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if trainer.sanity_checking or datamodule is None or not hasattr(datamodule, "sample_batch"):
            return
        real_a = datamodule.sample_batch(self.num_images)["A"].to(pl_module.device)
        if len(real_a) < 2:
            return
        with torch.no_grad():
            fake_b = pl_module(real_a)
        diversity = (_mean_pairwise_l1(fake_b) / _mean_pairwise_l1(real_a).clamp_min(1e-8)).item()
        pl_module.log("val/diversity_ab", diversity, sync_dist=True)
        if diversity < self.min_diversity:
            self._warn_once("diversity", f"translations of different images differ {diversity:.2f}x as much as the "
                                         "images themselves: the generator may be collapsing onto a few outputs")


def _mean_pairwise_l1(x: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel L1 distance over all pairs of images in x (N, C, H, W)."""
    flat = x.flatten(1).float()
    n = flat.shape[0]
    return torch.cdist(flat, flat, p=1).sum() / (n * (n - 1) * flat.shape[1])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, then renames it into place.

    A crash or SIGKILL mid-write leaves the previous checkpoint intact instead of a
    truncated one, wherever the run folder is. Lightning's own save (``_atomic_save`` in
    lightning_fabric/utilities/cloud_io.py, through an fsspec transaction) writes its temporary
    file in ``$TMPDIR`` and moves it with ``shutil.move``: atomic only when ``$TMPDIR`` is on the
    run folder's filesystem. Otherwise (``/tmp`` a tmpfs, a container's overlay, a node's local
    disk beside a shared run folder) the move copies into the existing checkpoint in place.
    The fsync puts the contents on disk before the rename: after a power cut, a filesystem that
    does not flush data on rename (ext4 does, by default) can otherwise show an empty
    ``last.ckpt``. It costs well under a second per save (0.02-0.6 s for 240 MB, measured), and
    ``last.ckpt`` is written every ``every_n_train_steps`` iterations.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _remove_stale_temporaries(path)


def _remove_stale_temporaries(path: Path) -> None:
    """Remove what a process killed mid-save left beside ``path`` (``.NAME.tmp-PID`` of a PID that
    no longer runs): a resumed run leaves no stray files in the checkpoint folder."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        pid = stale.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            stale.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True


class LastCheckpoint(ModelCheckpoint):
    """Keeps ``last.ckpt`` current: every ``every_n_train_steps`` steps and at the last
    completed iteration, however the run ends (max_steps, max_epochs, max_time, early
    stopping, a signal through :class:`GracefulStop`, the non-finite guard).

    It is written where Lightning's loop state resumes exactly: at the end of a training
    batch, or, for a stop decided at an epoch's end (early stopping), at validation or
    epoch end. ``on_train_end`` only catches what is left: by then Lightning has counted
    the epoch as finished, and a run stopped mid-epoch and resumed from there would skip
    the rest of that epoch.

    A ModelCheckpoint for its folder (``<run>/checkpoints``, resolved by Lightning),
    ``last_model_path`` and its place in ``trainer.checkpoint_callbacks`` (Lightning runs
    checkpoint callbacks last, so it sees ``should_stop`` set by Timer or EarlyStopping in
    the same hook), but the writing is its own, through ``trainer.save_checkpoint``:
    ModelCheckpoint's own saving would warn about manual optimization at every save and can
    only be driven through its private methods.
    """

    def __init__(self, dirpath: str | None = None, every_n_train_steps: int = 1000) -> None:
        # every_n_train_steps is passed on only so that the callback's state key (and so the
        # state restored from older checkpoints) stays the same; save_last=False and
        # save_top_k=0 keep ModelCheckpoint itself from writing anything.
        super().__init__(dirpath=dirpath, save_last=False, save_top_k=0, every_n_train_steps=every_n_train_steps)
        self.every_n_train_steps = every_n_train_steps
        self._saved_step: int | None = None  # the step last.ckpt was written at, in this fit

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        periodic = self.every_n_train_steps > 0 and step % self.every_n_train_steps == 0
        final_step = 0 < trainer.max_steps <= step
        final_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs > 0
        # num_training_batches counts what the epoch runs: full batches only (drop_last), cut to
        # limit_train_batches; batch_idx carries on from a resumed mid-epoch position.
        last_batch = batch_idx + 1 == trainer.num_training_batches
        if periodic or final_step or trainer.should_stop or (final_epoch and last_batch):
            self.save_now(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.should_stop:  # e.g. EarlyStopping, which decides here
            self.save_now(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.should_stop:  # e.g. EarlyStopping with check_on_train_epoch_end
            self.save_now(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save_now(trainer)  # a no-op when last.ckpt already holds this step

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # The guard stops on the iteration after the last applied update: the weights are
        # still those of the last completed iteration, and worth keeping.
        if isinstance(exception, NonFiniteLossError):
            self.save_now(trainer)

    def save_now(self, trainer: pl.Trainer) -> None:
        """Write last.ckpt for the current iteration (once per iteration; on every rank, as DDP needs)."""
        if trainer.global_step in (0, self._saved_step) or trainer.fast_dev_run or trainer.sanity_checking:
            return  # (no need to save when no steps were taken)
        # Set before saving: last_model_path is part of this callback's state in the checkpoint.
        self.last_model_path = self.last_model_path or self._free_last_path(trainer)
        trainer.save_checkpoint(self.last_model_path)
        self._saved_step = trainer.global_step
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def _free_last_path(self, trainer: pl.Trainer) -> str:
        """last.ckpt, or last-v1.ckpt, ... where an earlier run left one in the same folder."""
        path, version = self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST), self.STARTING_VERSION
        while self.file_exists(path, trainer):
            path, version = self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST, ver=version), version + 1
        return path
