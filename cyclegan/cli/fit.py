"""``cyclegan fit`` / ``cyclegan validate``: LightningCLI for both translators.

The command-line side of training, loaded by cli.app only for these two commands (Lightning takes
seconds to import): parses (:mod:`.fit_parser`: bad arguments in one line), checks a checkpoint to
resume from before Lightning reads it, lays out one folder per run and prints a short summary of
where everything is (:mod:`.summary`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import yaml
from jsonargparse import lazy_instance
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.plugins.io import TorchCheckpointIO

from cyclegan.cli.fit_parser import FitArgumentParser
from cyclegan.cli.parsing import ArgumentError, import_class
from cyclegan.cli.artifacts import ModelArtifact
from cyclegan.cli.summary import RunSummary, say
from cyclegan.training.callbacks import (
    AtomicCheckpointIO, GracefulStop, LastCheckpoint, SampleGrid, TrainingHealth, run_dir,
)
from cyclegan.inference.checkpoints import (
    check_fits, check_kind, check_network_settings, checkpoint_kind, find_last_checkpoint, settings_kept_on_resume,
    wandb_run_id,
)
from cyclegan.data.datamodule import UnpairedImageDataModule
from cyclegan.devices import training_precision
from cyclegan.errors import CycleGANError
from cyclegan.inference.authors import load_run
from cyclegan.evaluation.validation import ValidationMetrics
from cyclegan.training.wandb_logger import WandbLogger

# Imported so that ``--model CycleGAN`` / ``--model Method1`` / ``--model CUT`` resolve by short name.
from cyclegan.training.cut import CUT, FastCUT  # noqa: F401
from cyclegan.training.cycle_gan import CycleGAN  # noqa: F401
from cyclegan.training.method1 import Method1  # noqa: F401

_WANDB_LOGGER = f"{WandbLogger.__module__}.{WandbLogger.__name__}"


class _SaveConfig(SaveConfigCallback):
    """Writes the resolved config.yaml into the run's own folder and logs it to W&B."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs, save_to_log_dir=False)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.config_filename).write_text(text)
        config = yaml.safe_load(text)
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})


def _root(config) -> Path:
    """Where run folders are: the W&B logger's save_dir, else the trainer's root."""
    logger = config.trainer.logger
    save_dir = getattr(logger, "class_path", None) == _WANDB_LOGGER and logger.init_args.get("save_dir")
    return Path(save_dir or config.trainer.default_root_dir or "runs")


def _run_id(name: str) -> str:
    """A readable, still unique run id from ``--name`` (not from ``random``: the seed fixes that)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"
    return f"{slug}-{secrets.token_hex(4)}"


def _plain(value: Any) -> Any:
    """A jsonargparse Namespace (a dataclass argument) as a dict."""
    return value.as_dict() if hasattr(value, "as_dict") else value


def _model_kind(class_path: str) -> str:
    return import_class(class_path).kind


class CycleGANCLI(LightningCLI):
    """LightningCLI for ``fit`` and ``validate``: the project's callbacks as options, one run folder
    per run by model kind, a checkpoint checked before a resume, and a short summary on stderr."""

    def __init__(self, *args: Any, verbose: bool = False, **kwargs: Any) -> None:
        self.verbose = verbose  # everything Lightning and wandb print, as _quiet describes
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # test/predict need dataloaders these models do not have; `cyclegan translate` predicts.
        return {name: skip for name, skip in LightningCLI.subcommands().items() if name in ("fit", "validate")}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--name", type=Optional[str], default=None,
                            help="readable run name: the W&B run's name and the start of its folder's name")
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
        parser.add_lightning_class_args(ModelArtifact, "model_artifact")  # --model_artifact.enabled true
        parser.add_argument("--init_from", type=Optional[str], default=None,
                            help="fit: start from a run of the authors' code, a checkpoints/NAME folder with "
                            "latest_net_{G_A,G_B,D_A,D_B}.pth (weights only: the optimizers start fresh)")
        parser.add_argument("--init_epoch", type=Optional[int], default=None,
                            help="with --init_from: take EPOCH_net_*.pth instead of latest_net_*.pth, and carry "
                            "the LR schedule on at that epoch")

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parses, then checks a fit's ``--ckpt_path`` and resolves ``last``, before LightningCLI reads it.

        Right after parsing, LightningCLI replaces the configured model (its class too) by the
        checkpoint's hyperparameters, for a path that is a file. The checks need the model the
        user configured, and ``last`` must be a path by then for the checkpoint's settings to be
        taken: so here, not in ``before_instantiate_classes``, which runs after that replacement.
        """
        super().parse_arguments(parser, args)
        if self.config.get("subcommand") == "fit" and self.config.fit.ckpt_path:
            self._check_resume(self.config.fit)

    def _check_resume(self, config) -> None:
        """The checkpoint is of this kind and these networks; say which model settings a resume
        keeps (Lightning takes the checkpoint's); ``--ckpt_path last`` becomes the newest last.ckpt."""
        kind = _model_kind(config.model.class_path)
        path = Path(config.ckpt_path)
        if config.ckpt_path == "last":
            path = find_last_checkpoint(_root(config), config.last_checkpoint.dirpath, kind=kind)
        check_kind(path, kind)
        init_args = config.model.get("init_args") or {}
        check_network_settings(path, {net: _plain(init_args.get(net)) for net in ("generator", "discriminator")})
        kept = settings_kept_on_resume(path, {k: _plain(v) for k, v in init_args.items()})
        if kept:  # rather than ignore the config in silence
            say(f"note: resuming keeps the checkpoint's model settings: {', '.join(kept)}")
        config.ckpt_path = str(path)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        # Each training step runs two backward passes over disjoint parameter sets (the
        # generators, then the discriminators), so DDP must look for unused parameters.
        if config.trainer.strategy == "ddp":
            config.trainer.strategy = "ddp_find_unused_parameters_true"
        if self.subcommand == "fit" and config.trainer.precision is None:
            # bf16-mixed where the device computes bf16 natively (1.6-1.8x float32 at 256 px on an AMX CPU).
            accelerator = config.trainer.accelerator
            config.trainer.precision = training_precision(accelerator) if isinstance(accelerator, str) else "32-true"
        if self.subcommand == "fit" and (config.init_from or config.init_epoch is not None):
            self._carry_on_schedule(config)  # also when resuming: the schedule stays where the run put it
        logger = config.trainer.logger
        if getattr(logger, "class_path", None) != _WANDB_LOGGER:
            if self.subcommand == "fit" and config.ckpt_path:
                self._resume(config, None)
            # Another Lightning logger (CSVLogger, TensorBoardLogger): run folders by kind as well.
            init_args = getattr(logger, "init_args", None)
            if init_args is not None and "name" in init_args and init_args.name in (None, "", "lightning_logs"):
                init_args.name = _model_kind(config.model.class_path)
                if config.name and "version" in init_args and init_args.version is None:
                    init_args.version = _run_id(config.name)
            return
        args = logger.init_args
        # The W&B files and the run folders follow --trainer.default_root_dir unless
        # --trainer.logger.init_args.save_dir says otherwise.
        args.save_dir = args.save_dir or config.trainer.default_root_dir or "runs"
        args.silent = args.silent and not self.verbose
        if self.subcommand == "fit" and config.ckpt_path:
            self._resume(config, args)
        args.folder = args.folder or _model_kind(config.model.class_path)
        if config.name:
            args.name = args.name or config.name
            # The folder is <kind>/<run id>.
            args.version = args.version or _run_id(config.name)

    def _resume(self, config, wandb_args) -> None:
        """The W&B run of the checkpoint resumes, and the run keeps its folder."""
        path = Path(config.ckpt_path)
        run_id = wandb_run_id(path)
        if wandb_args is not None and run_id and not wandb_args.version:
            wandb_args.version = run_id
            # A run folder <root>/<folder>/<run id>/checkpoints (also one from before run folders
            # were named by kind) stays where it is.
            run = path.parent.parent
            if (path.parent.name == "checkpoints" and run.name == run_id
                    and run.parent.parent.resolve() == _root(config).resolve()):
                wandb_args.folder = wandb_args.folder or run.parent.name
        folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        say(f"resuming the {checkpoint_kind(path)} run in {folder} from {path.name}"
            + (f" (W&B run {run_id})" if run_id else ""))

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
            say(f"--init_epoch {epoch}: the LR schedule carries on at epoch {epoch}; "
                f"max_epochs {total} -> {total - epoch} (the epochs left of it)")
        elif not epoch:
            say("--init_from: the LR schedule starts at epoch 0 (--init_epoch N carries on after N epochs)")

    def _init_from(self, folder: str, epoch: int | None) -> None:
        """``--init_from DIR``: their G_A, G_B, D_A, D_B into our G_AB, G_BA, D_B, D_A (their D_A judges B)."""
        m = self.model
        nets = {"G_AB": m.G_AB, "G_BA": m.G_BA, "D_A": m.D_A, "D_B": m.D_B}
        files = load_run(nets, folder, "latest" if epoch is None else epoch)
        say("--init_from: " + ", ".join(f"{ours} <- {path.name}" for ours, path in files.items())
            + f" from {folder}; optimizer state starts fresh")

    def before_fit(self) -> None:
        config = self.config.fit
        # A checkpoint the model cannot load is refused before any W&B run starts or resumes.
        if config.ckpt_path:
            check_fits(config.ckpt_path, self.model.kind, self.model.state_dict())
            if config.init_from:
                say(f"--init_from ignored: resuming from {config.ckpt_path}, which holds the weights")
        elif config.init_from:  # before anything else, so that a file that does not fit fails first
            self._init_from(config.init_from, config.init_epoch)
        # List the image folders now, so that a bad one fails before any W&B run is created.
        self.datamodule.setup("fit")
        stride, dm = self.model.G_AB.stride, self.datamodule
        if dm.preprocess != "none" and dm.crop_size % stride:  # else a shape error deep inside the first step
            raise ArgumentError(f"--data.crop_size {dm.crop_size} is not a multiple of {stride}, which this generator "
                                f"needs (it downsamples {stride}x): use {max(stride, dm.crop_size // stride * stride)}")
        if dm.preprocess == "none" and stride > 4:  # 'none' pads each image to a multiple of 4 only
            raise ArgumentError(f"--data.preprocess none keeps each image's size (padded to a multiple of 4), but this "
                                f"generator needs multiples of {stride}: use a ResNet generator or a crop preprocess")
        self.trainer.callbacks += [RunSummary(), GracefulStop()]
        if self.trainer.strategy.root_device.type == "cuda":
            self.trainer.callbacks[:] = bar_on_logging_steps(self.trainer.callbacks, self.trainer.log_every_n_steps)
        if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and self.trainer.is_global_zero:
                logger.experiment.tags = tuple(dict.fromkeys([*logger.experiment.tags, self.model.kind]))

    def after_fit(self) -> None:
        for callback in self.trainer.callbacks:
            if isinstance(callback, GracefulStop) and callback.stopped_by:
                say(f"stopped by {callback.stopped_by} at step {self.trainer.global_step}; "
                    f"resume with --ckpt_path {callback.checkpoint or 'last'}")
        # Close the W&B run so its files are complete when the command returns
        # (and a second fit in the same process starts a run of its own).
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and self.trainer.is_global_zero:
                logger.experiment.finish()


def bar_on_logging_steps(callbacks: list[pl.Callback], every: int) -> list[pl.Callback]:
    """On a GPU, the default progress bar redraws on logging steps only: each redraw reads the
    shown losses back from the GPU, which makes the host wait for the GPU to finish."""
    return [TQDMProgressBar(refresh_rate=every) if type(c) is TQDMProgressBar and c.refresh_rate == 1 and every > 1
            else c for c in callbacks]


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """While training: silence what a user cannot act on (Lightning's info lines and tips, the
    model summary, a torch deprecation inside Lightning); ``--verbose`` keeps all of it.

    The package's own warnings (:func:`cyclegan.errors.warn`, the ``cyclegan`` logger, which has
    no handler of its own) stay: Python's last-resort handler writes them to stderr as they are."""
    names = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")
    levels = {name: logging.getLogger(name).level for name in names}
    with warnings.catch_warnings():
        # main() hands LightningCLI the arguments explicitly (less --debug).
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        # training.base.set_epoch puts a resumed run's LR schedulers at its epoch before any optimizer
        # step: that is the point, nothing is skipped.
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
        if not verbose:
            # Lightning's own use of a torch API it will update; nothing for a user to change.
            warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")
            # A resumed run writes into its own checkpoint folder on purpose (last.ckpt is replaced).
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            # validate (and a resume into a new folder) restores ModelCheckpoint state meant for another folder.
            warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
            for name in names:
                logging.getLogger(name).setLevel(logging.WARNING)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def build_cli(args: list[str] | None = None, *, run: bool = True, verbose: bool = False) -> CycleGANCLI:
    """The CLI object (``args=None`` reads ``sys.argv``); after ``fit`` it holds ``.model`` and ``.trainer``."""
    with _quiet(verbose):
        return CycleGANCLI(
            datamodule_class=UnpairedImageDataModule,
            subclass_mode_model=True,
            save_config_callback=_SaveConfig,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"default_root_dir": "runs", "logger": lazy_instance(WandbLogger, save_dir=None),
                              "enable_model_summary": verbose},
            parser_class=FitArgumentParser,
            # Lightning's default (True) means 0 anyway, with a warning; 0 says so.
            seed_everything_default=0,
            auto_configure_optimizers=False,
            verbose=verbose,
            args=args,
            run=run,
        )
