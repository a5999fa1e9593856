"""Everything about checkpoint files: writing them atomically, keeping ``last.ckpt`` current,
finding the one to resume, reading them back once, and rebuilding generators from them.

What the models add to a checkpoint (pools, translator metadata) is written by
:func:`cyclegan.training.save_training_state`; the keys are named there.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any, Literal
from weakref import proxy

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from torch import nn

from .errors import CheckpointError
from .networks import GeneratorConfig, build_generator
from .training import TRANSLATOR, translator_meta  # noqa: F401  (translator_meta: its old import path)

Direction = Literal["a2b", "b2a"]
WANDB_RUN_ID = "wandb_run_id"  # checkpoint entry: the W&B run that a resumed fit continues


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks: names the exact weights behind a result."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a Lightning checkpoint of ours onto the CPU, tensors and plain data only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {_reason(e)}") from None
    if not isinstance(checkpoint, dict) or TRANSLATOR not in checkpoint:
        raise CheckpointError(f"{path} is not a cyclegan training checkpoint (no 'translator' entry)")
    return checkpoint


def load_generator(ckpt_path: str | os.PathLike, direction: Direction = "a2b") -> nn.Module:
    """The trained generator for ``direction`` as an ``nn.Module`` in eval mode, on the CPU.

    It maps (N, C, H, W) tensors in [-1, 1] to the other domain; H and W must be multiples
    of the generator's stride (4 for ResNet generators). Method-1 checkpoints have only "a2b".
    """
    checkpoint = read_checkpoint(ckpt_path)
    meta = checkpoint[TRANSLATOR]
    if direction not in meta["directions"]:
        have = ", ".join(meta["directions"])
        raise CheckpointError(f"{ckpt_path}: a {meta['kind']} checkpoint has no '{direction}' generator (it has: {have})")
    in_nc, out_nc = meta["input_nc"], meta["output_nc"]
    if direction == "b2a":
        in_nc, out_nc = out_nc, in_nc
    net = build_generator(GeneratorConfig(**meta["generator"]), input_nc=in_nc, output_nc=out_nc)
    prefix = meta["directions"][direction] + "."
    net.load_state_dict({k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)})
    return net.eval()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file, then renames it into place.

    A crash or SIGKILL mid-write leaves the previous checkpoint intact instead of a
    truncated one.
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


class LastCheckpoint(ModelCheckpoint):
    """Keeps ``last.ckpt`` current: every ``every_n_train_steps`` steps and after the final step.

    It is written at the end of a training batch, not when training ends: by then
    Lightning has already counted the epoch as finished, and a run resumed from such a
    checkpoint would skip an epoch (and its learning rate) when it continues.

    A ModelCheckpoint for its folder (``<run>/checkpoints``, resolved by Lightning),
    ``last_model_path`` and its place in ``trainer.checkpoint_callbacks``, but the writing is
    its own, through ``trainer.save_checkpoint``: ModelCheckpoint's own saving would warn
    about manual optimization at every save and can only be driven through its private methods.
    """

    def __init__(self, dirpath: str | None = None, every_n_train_steps: int = 1000) -> None:
        # every_n_train_steps is passed on only so that the callback's state key (and so the
        # state restored from older checkpoints) stays the same; save_last=False and
        # save_top_k=0 keep ModelCheckpoint itself from writing anything.
        super().__init__(dirpath=dirpath, save_last=False, save_top_k=0, every_n_train_steps=every_n_train_steps)
        self.every_n_train_steps = every_n_train_steps
        self._saved_step: int | None = None  # the step last.ckpt was written at, in this fit

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        periodic = self.every_n_train_steps > 0 and step % self.every_n_train_steps == 0
        final_step = 0 < trainer.max_steps <= step
        final_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs > 0
        if periodic or final_step or (final_epoch and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch):
            self.save_now(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._saved_step is None:  # stopped otherwise (max_time, early stopping) before any save
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


def find_last_checkpoint(root: str | os.PathLike, dirpath: str | None = None) -> Path:
    """``--ckpt_path last``: the newest last.ckpt under ``root``, preferring those in ``dirpath``."""
    candidates = sorted(Path(root).glob("**/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if dirpath:
        candidates = [p for p in candidates if p.parent == Path(dirpath)] or candidates
    if not candidates:
        raise CheckpointError(f"--ckpt_path last: no last.ckpt under {root}")
    return candidates[-1]


def wandb_run_id(path: str | os.PathLike) -> str | None:
    """The W&B run a checkpoint was written by (None if it has none), checking that the file is there."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:  # memory-mapped: only the few bytes of the run id are read now
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get(WANDB_RUN_ID)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {_reason(e)}") from None
