"""``cyclegan fit`` / ``cyclegan validate``: LightningCLI for both translators.

The command-line side of training, loaded by cli.py only for these two commands (Lightning takes
seconds to import): parses, reports bad arguments in one line, lays out one folder per run and
prints a short summary of where everything is.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import logging
import re
import secrets
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn, Optional

import pytorch_lightning as pl
import yaml
from jsonargparse import lazy_instance
from pytorch_lightning.callbacks import ModelCheckpoint, Timer
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_only

from cyclegan.training.callbacks import (
    AtomicCheckpointIO, GracefulStop, LastCheckpoint, SampleGrid, TrainingHealth, ValidationMetrics, run_dir,
)
from cyclegan.inference.checkpoints import (
    WANDB_RUN_ID, check_fits, check_kind, check_network_settings, checkpoint_kind, find_last_checkpoint,
    settings_kept_on_resume, wandb_run_id,
)
from cyclegan.data.datamodule import UnpairedImageDataModule
from cyclegan.devices import training_precision
from cyclegan.errors import CycleGANError
from cyclegan.inference.authors import load_run
from cyclegan.training.wandb_logger import WandbLogger

# Imported so that ``--model CycleGAN`` / ``--model Method1`` resolve by short name.
from cyclegan.training.cycle_gan import CycleGAN  # noqa: F401
from cyclegan.training.method1 import Method1  # noqa: F401

_WANDB_LOGGER = f"{WandbLogger.__module__}.{WandbLogger.__name__}"


class ArgumentError(CycleGANError):
    """A bad ``fit``/``validate`` argument or config file (exit code 2)."""


class _Parser(LightningArgumentParser):
    """Reports a bad argument as one ``error:`` line (cli.run prints it) instead of a usage dump,
    suggesting the closest option for a misspelt one."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse parsing a nested value: it catches this itself
            super().error(message, ex)
        lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
        text = lines[0] if lines else "bad arguments"
        if len(lines) > 1 and text.endswith(":"):  # "does not validate against any of the types:" + reasons
            text = f"{text} {lines[-1]}"
        # A bad value inside --model.init_args: name the option and what it expects, not jsonargparse's NestedArg.
        keys = re.findall(r'Parser key "([^"]+)"', str(message))
        expected = next((line.lstrip("- ") for line in lines if line.lstrip("- ").startswith("Expected")
                         and "NoneType" not in line), None)
        if len(keys) > 1 and expected:
            text = f"--{'.'.join(keys[:1] + ['init_args'] * ('class_path' in str(message)) + keys[1:])}: {expected}"
        refused = re.search(r"Option '([^']+)' is not accepted", str(message))
        owner = re.search(r"given class_path '([^']+)'", str(message))
        if keys and refused and owner:
            model_class = _import_class(owner.group(1))
            settings = inspect.signature(model_class).parameters
            close = difflib.get_close_matches(refused.group(1), list(settings), n=1, cutoff=0.6)
            text = (f"--{keys[0]}.init_args.{refused.group(1)}: {model_class.__name__} has no such setting"
                    + (f" (did you mean --{keys[0]}.init_args.{close[0]}?)" if close else ""))
        unknown = re.search(r"unrecognized arguments: (\S+)", text)
        if unknown:
            close = difflib.get_close_matches(unknown.group(1).split("=")[0], _option_strings(self), n=1, cutoff=0.75)
            text += f" (did you mean {close[0]}?)" if close else ""
        raise ArgumentError(text) from ex


def _option_strings(parser: Any) -> list[str]:
    """Every ``--option`` of a parser and its subcommands' parsers."""
    options = []
    for action in parser._actions:
        options += [s for s in action.option_strings if s.startswith("--")]
        for sub in (getattr(action, "_name_parser_map", None) or {}).values():  # subcommands
            options += _option_strings(sub)
    return options


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


@rank_zero_only
def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _RunSummary(pl.Callback):
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
        _say(f"run: {run_dir(trainer)} (config.yaml, checkpoints/, samples/); precision {trainer.precision}"
             + (" (bf16 autocast; --trainer.precision 32 for float32)" if trainer.precision == "bf16-mixed" else ""))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                _say(_wandb_line(logger))
        n_epochs = getattr(pl_module.hparams, "n_epochs", None)
        n_decay = getattr(pl_module.hparams, "n_epochs_decay", None)
        start = pl_module.hparams.get("start_epoch", 0)
        if n_epochs is not None and trainer.max_steps == -1 and trainer.max_epochs != n_epochs + n_decay - start:
            done = f" ({start} done before this run)" if start else ""
            _say(f"note: the LR schedule spans n_epochs + n_epochs_decay = {n_epochs + n_decay} epochs{done}, "
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
                _say(_speed_line(seconds, left, trainer.strategy.root_device.type,
                                 time_left=timer.time_remaining("train") if timer else None))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        last = next((c.last_model_path for c in trainer.checkpoint_callbacks if c.last_model_path), None)
        if last:
            _say(f"last checkpoint: {last}; resume: the same command with --ckpt_path last (or --ckpt_path {last})")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.offline and not logger.disabled:
                _say(f"upload the W&B run: wandb sync {Path(logger.experiment.dir).parent}")


def _wandb_line(logger: WandbLogger) -> str:
    run = logger.experiment
    if logger.disabled:
        return "W&B: disabled (metrics.jsonl in the run folder has every logged number)"
    if logger.offline:
        return f"W&B: run {run.id} offline in {Path(run.dir).parent}"
    return f"W&B: {run.url}"


def _speed_line(seconds: float, left: int, device: str, *, time_left: float | None = None) -> str:
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


def _import_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _model_kind(class_path: str) -> str:
    return _import_class(class_path).kind


class CycleGANCLI(LightningCLI):
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

    def _parse_ckpt_path(self) -> None:
        # Lightning replaces the configured model by the checkpoint's hyperparameters here; check
        # first that the checkpoint is of this kind and these networks, and resolve ``last``.
        if self.config.get("subcommand") == "fit" and self.config.fit.ckpt_path:
            config = self.config.fit
            kind = _model_kind(config.model.class_path)
            path = Path(config.ckpt_path)
            if config.ckpt_path == "last":
                path = find_last_checkpoint(_root(config), config.last_checkpoint.dirpath, kind=kind)
            check_kind(path, kind)
            init_args = config.model.get("init_args") or {}
            check_network_settings(path, {net: _plain(init_args.get(net)) for net in ("generator", "discriminator")})
            kept = settings_kept_on_resume(path, {k: _plain(v) for k, v in init_args.items()})
            if kept:  # Lightning takes the checkpoint's hyperparameters: say so rather than ignore the config
                _say(f"note: resuming keeps the checkpoint's model settings: {', '.join(kept)}")
            config.ckpt_path = str(path)
        super()._parse_ckpt_path()

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
        _say(f"resuming the {checkpoint_kind(path)} run in {folder} from {path.name}"
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
            _say(f"--init_epoch {epoch}: the LR schedule carries on at epoch {epoch}; "
                 f"max_epochs {total} -> {total - epoch} (the epochs left of it)")
        elif not epoch:
            _say("--init_from: the LR schedule starts at epoch 0 (--init_epoch N carries on after N epochs)")

    def _init_from(self, folder: str, epoch: int | None) -> None:
        """``--init_from DIR``: their G_A, G_B, D_A, D_B into our G_AB, G_BA, D_B, D_A (their D_A judges B)."""
        m = self.model
        nets = {"G_AB": m.G_AB, "G_BA": m.G_BA, "D_A": m.D_A, "D_B": m.D_B}
        files = load_run(nets, folder, "latest" if epoch is None else epoch)
        _say("--init_from: " + ", ".join(f"{ours} <- {path.name}" for ours, path in files.items())
             + f" from {folder}; optimizer state starts fresh")

    def before_fit(self) -> None:
        config = self.config.fit
        # A checkpoint the model cannot load is refused before any W&B run starts or resumes.
        if config.ckpt_path:
            check_fits(config.ckpt_path, self.model.kind, self.model.state_dict())
            if config.init_from:
                _say(f"--init_from ignored: resuming from {config.ckpt_path}, which holds the weights")
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
        self.trainer.callbacks += [_RunSummary(), GracefulStop()]
        if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and self.trainer.is_global_zero:
                logger.experiment.tags = tuple(dict.fromkeys([*logger.experiment.tags, self.model.kind]))

    def after_fit(self) -> None:
        for callback in self.trainer.callbacks:
            if isinstance(callback, GracefulStop) and callback.stopped_by:
                _say(f"stopped by {callback.stopped_by} at step {self.trainer.global_step}; "
                     f"resume with --ckpt_path {callback.checkpoint or 'last'}")
        # Close the W&B run so its files are complete when the command returns
        # (and a second fit in the same process starts a run of its own).
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and self.trainer.is_global_zero:
                logger.experiment.finish()


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """While training: silence what a user cannot act on (Lightning's info lines and tips, the
    model summary, a torch deprecation inside Lightning); ``--verbose`` keeps all of it."""
    names = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")
    levels = {name: logging.getLogger(name).level for name in names}
    with warnings.catch_warnings():
        # main() hands LightningCLI the arguments explicitly (less --debug).
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        # training.set_epoch puts a resumed run's LR schedulers at its epoch before any optimizer
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
            parser_class=_Parser,
            # Lightning's default (True) means 0 anyway, with a warning; 0 says so.
            seed_everything_default=0,
            auto_configure_optimizers=False,
            verbose=verbose,
            args=args,
            run=run,
        )
