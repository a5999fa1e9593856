"""The ``cyclegan`` command: LightningCLI (fit, validate, ...) for both translators.

    cyclegan fit --config configs/cyclegan.yaml --data.root datasets/horse2zebra
    cyclegan fit --config configs/method1.yaml --config configs/tiny.yaml --data.root datasets/emoji
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
import yaml
from jsonargparse import lazy_instance
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_info

from .callbacks import (
    AtomicCheckpointIO, GracefulStop, LastCheckpoint, SampleGrid, TrainingHealth, ValidationMetrics, run_dir,
)
from .checkpoint import WANDB_RUN_ID, CheckpointError, find_last_checkpoint, wandb_run_id
from .commands import COMMANDS
from .data import UnpairedImageDataModule
from .devices import training_precision
from .errors import CycleGANError
from .published import load_run
from .tracking import WandbLogger

# Imported so that ``--model CycleGAN`` / ``--model Method1`` resolve by short name.
from .cycle_gan import CycleGAN  # noqa: F401
from .method1 import Method1  # noqa: F401


class _SaveConfigToLogger(SaveConfigCallback):
    """Writes config.yaml beside the run (Lightning's default) and logs the resolved config to W&B."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})


class _RunSummary(pl.Callback):
    """Prints where checkpoints, samples and the W&B run are, at the start and the end of fit,
    and records the W&B run id in checkpoints so that a resumed fit continues the same run."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                checkpoint[WANDB_RUN_ID] = logger.version

    def _lines(self, trainer: pl.Trainer) -> list[str]:
        lines = []
        if trainer.checkpoint_callback is not None:
            lines.append(f"checkpoints: {trainer.checkpoint_callback.dirpath} (last.ckpt and periodic ones)")
        lines.append(f"sample grids: {run_dir(trainer) / 'samples'}")
        lines.append(f"precision: {trainer.precision}" + (" (bf16 autocast; --trainer.precision 32 for float32)"
                                                         if trainer.precision == "bf16-mixed" else ""))
        lines += [logger.describe() for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        return lines

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for line in self._lines(trainer):
            rank_zero_info(line)
        n_epochs = getattr(pl_module.hparams, "n_epochs", None)
        n_decay = getattr(pl_module.hparams, "n_epochs_decay", None)
        start = pl_module.hparams.get("start_epoch", 0)
        if n_epochs is not None and trainer.max_steps == -1 and trainer.max_epochs != n_epochs + n_decay - start:
            done = f" ({start} done before this run)" if start else ""
            rank_zero_info(f"note: the LR schedule spans n_epochs + n_epochs_decay = {n_epochs + n_decay} epochs{done}, "
                     f"but training stops after max_epochs = {trainer.max_epochs}")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for callback in trainer.checkpoint_callbacks:
            if callback.last_model_path:
                rank_zero_info(f"last checkpoint: {callback.last_model_path}")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                rank_zero_info(logger.describe())


class CycleGANCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"model": lazy_instance(CycleGAN)})
        parser.link_arguments("data.input_nc", "model.init_args.input_nc")
        parser.link_arguments("data.output_nc", "model.init_args.output_nc")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.save_top_k": -1,  # keep every periodic checkpoint
            "checkpoint.every_n_epochs": 5,
            "checkpoint.filename": "epoch{epoch:03d}-step{step:07d}",
            "checkpoint.auto_insert_metric_name": False,
        })
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(SampleGrid, "samples")
        parser.add_lightning_class_args(TrainingHealth, "health")
        parser.add_lightning_class_args(ValidationMetrics, "val_metrics")
        parser.add_argument("--init_from", type=Optional[str], default=None,
                            help="fit: start from a run of the authors' code, a checkpoints/NAME folder with "
                            "latest_net_{G_A,G_B,D_A,D_B}.pth (weights only: the optimizers start fresh)")
        parser.add_argument("--init_epoch", type=Optional[int], default=None,
                            help="with --init_from: take EPOCH_net_*.pth instead of latest_net_*.pth, and carry "
                            "the LR schedule on at that epoch")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        # Each training step runs two backward passes over disjoint parameter sets (the
        # generators, then the discriminators), so DDP must look for unused parameters.
        if config.trainer.strategy == "ddp":
            config.trainer.strategy = "ddp_find_unused_parameters_true"
        # The W&B folder (and so the checkpoints) follow --trainer.default_root_dir
        # unless --trainer.logger.save_dir says otherwise.
        logger = config.trainer.logger
        if getattr(logger, "class_path", None) == f"{WandbLogger.__module__}.{WandbLogger.__name__}":
            if logger.init_args.save_dir is None:
                logger.init_args.save_dir = config.trainer.default_root_dir or "runs"
        if self.subcommand == "fit" and config.trainer.precision is None:
            config.trainer.precision = _default_precision(config.trainer.accelerator)
        if self.subcommand == "fit" and config.ckpt_path:
            self._resume(config)
        if self.subcommand == "fit" and (config.init_from or config.init_epoch is not None):
            self._carry_on_schedule(config)  # also when resuming: the schedule stays where the run put it

    def _resume(self, config) -> None:
        """``--ckpt_path last`` means the newest last.ckpt of this root; the W&B run resumes too."""
        logger = config.trainer.logger
        wandb_logger = getattr(logger, "class_path", None) == f"{WandbLogger.__module__}.{WandbLogger.__name__}"
        if config.ckpt_path == "last":
            root = logger.init_args.save_dir if wandb_logger else config.trainer.default_root_dir or "runs"
            config.ckpt_path = str(find_last_checkpoint(root, config.last_checkpoint.dirpath))
        path = Path(config.ckpt_path)
        run_id = wandb_run_id(path)
        if wandb_logger and run_id and not logger.init_args.version:
            logger.init_args.version = run_id
        rank_zero_info(f"resuming from {path}" + (f" (W&B run {run_id})" if run_id else ""))

    def _carry_on_schedule(self, config) -> None:
        """``--init_epoch N``: the LR schedule carries on at epoch N, and a ``max_epochs`` that
        spans the whole schedule trains what is left of it (as the authors' ``--epoch_count N+1``)."""
        init = config.model.init_args
        if not config.init_from:
            raise CycleGANError("--init_epoch needs --init_from DIR")
        if "start_epoch" not in init:
            raise CycleGANError("--init_from loads the four networks of a CycleGAN run; it needs --model CycleGAN")
        epoch, total = config.init_epoch or 0, init.n_epochs + init.n_epochs_decay
        if not 0 <= epoch < total:
            raise CycleGANError(f"--init_epoch {epoch} is outside the LR schedule (n_epochs + n_epochs_decay = {total})")
        init.start_epoch = epoch
        if epoch and config.trainer.max_epochs == total:
            config.trainer.max_epochs = total - epoch
            rank_zero_info(f"--init_epoch {epoch}: the LR schedule carries on at epoch {epoch}; "
                           f"max_epochs {total} -> {total - epoch} (the epochs left of it)")
        elif not epoch:
            rank_zero_info("--init_from: the LR schedule starts at epoch 0 (--init_epoch N carries on after N epochs)")

    def _init_from(self, folder: str, epoch: int | None) -> None:
        """``--init_from DIR``: their G_A, G_B, D_A, D_B into our G_AB, G_BA, D_B, D_A (their D_A judges B)."""
        m = self.model
        nets = {"G_AB": m.G_AB, "G_BA": m.G_BA, "D_A": m.D_A, "D_B": m.D_B}
        files = load_run(nets, folder, "latest" if epoch is None else epoch)
        rank_zero_info("--init_from: " + ", ".join(f"{ours} <- {path.name}" for ours, path in files.items())
                       + f" from {folder}; optimizer state starts fresh")

    def before_fit(self) -> None:
        config = self.config[self.subcommand]
        if config.ckpt_path and config.init_from:
            rank_zero_info(f"--init_from ignored: resuming from {config.ckpt_path}, which holds the weights")
        elif config.init_from:  # before anything else, so that a file that does not fit fails first
            self._init_from(config.init_from, config.init_epoch)
        # List the image folders now, so that a bad one fails before any W&B run is created.
        self.datamodule.setup("fit")
        self.trainer.callbacks += [_RunSummary(), GracefulStop()]
        if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        kind = getattr(self.model, "kind", None)
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and kind and self.trainer.is_global_zero:
                logger.experiment.tags = tuple(dict.fromkeys([*logger.experiment.tags, kind]))

    def after_fit(self) -> None:
        for callback in self.trainer.callbacks:
            if isinstance(callback, GracefulStop) and callback.stopped_by and self.trainer.is_global_zero:
                rank_zero_info(f"stopped by {callback.stopped_by} at step {self.trainer.global_step}; "
                         f"resume with --ckpt_path {callback.checkpoint or 'last'}")
        # Close the W&B run so its files are complete when the command returns
        # (and a second fit in the same process starts a run of its own).
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and self.trainer.is_global_zero:
                logger.experiment.finish()


def _default_precision(accelerator) -> str:
    """Training precision when ``--trainer.precision`` is not given: bf16-mixed where the device
    computes bf16 natively (1.6-1.8x a float32 step at 256 px on an AMX CPU), else 32-true;
    ``--trainer.precision 32`` opts out."""
    return training_precision(accelerator) if isinstance(accelerator, str) else "32-true"


def _quiet_expected_warnings() -> None:
    """Silence the warnings about what this project does on purpose; installed when the CLI
    starts (not at import), before LightningCLI would warn."""
    # main() hands LightningCLI the arguments explicitly (less --debug).
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    # training.set_epoch puts a resumed run's LR schedulers at its epoch before any optimizer
    # step: that is the point, nothing is skipped.
    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")


def build_cli(args: list[str] | None = None, *, run: bool = True) -> CycleGANCLI:
    """The CLI object (``args=None`` reads ``sys.argv``); after ``fit`` it holds ``.model`` and ``.trainer``."""
    _quiet_expected_warnings()
    return CycleGANCLI(
        datamodule_class=UnpairedImageDataModule,
        subclass_mode_model=True,
        save_config_callback=_SaveConfigToLogger,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"default_root_dir": "runs", "logger": lazy_instance(WandbLogger, save_dir=None)},
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


# Commands beside Lightning's fit/validate/...: name -> function taking the remaining
# arguments and returning an exit code (see cyclegan.commands).
TOOLS = COMMANDS


def run(argv: list[str], *, debug: bool = False) -> int | None:
    """Run one command line (without the program name): the exit code, or None after a Lightning
    command that finished. A :class:`CycleGANError` becomes one ``error: ...`` line and its exit
    code; with ``debug`` it propagates with its traceback."""
    try:
        if argv and argv[0] in TOOLS:
            return TOOLS[argv[0]](argv[1:])
        build_cli(argv)
        return None
    except CycleGANError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cyclegan`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # tracebacks instead of one-line errors, for every command
    if debug:
        argv.remove("--debug")
    if not argv or argv[0] in ("-h", "--help"):
        print("commands: fit, validate, test, predict (Lightning); " + ", ".join(TOOLS)
              + "\n`cyclegan COMMAND --help` lists a command's options\n")
    code = run(argv, debug=debug)
    if code is not None:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
