"""The three lines that touch Lightning's private internals (cyclegan/training/lightning_internals.py),
run against the installed Lightning: a release that renames one fails here, by name. Also the public
routes that replaced the others: step counting, logging cadence and the data's resume position."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning import loggers
from pytorch_lightning.loggers.logger import Logger

from cyclegan import CycleGAN, DiscriminatorConfig, GeneratorConfig, UnpairedImageDataModule
from cyclegan.training.callbacks import LastCheckpoint
from cyclegan.training.lightning_internals import batches_trained, drop_wandb_anonymous, set_wandb_mode
from cyclegan.training.wandb_logger import WandbLogger

FIXTURES = Path(__file__).parent / "fixtures"
TINY = dict(generator=GeneratorConfig(ngf=4, n_blocks=1), discriminator=DiscriminatorConfig(ndf=4, n_layers=2))


class _Recorder(Logger):
    """Keeps every ``log_metrics`` call: which steps' training logs reached a logger."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, dict]] = []

    name, version = "recorder", "0"

    def log_metrics(self, metrics, step=None) -> None:
        self.calls.append((step, dict(metrics)))

    def log_hyperparams(self, *args, **kwargs) -> None:
        pass


class _NaNAt(CycleGAN):
    """CycleGAN whose generator input turns NaN on chosen calls (1-based): that update is skipped."""

    def __init__(self, bad_calls, **kw):
        super().__init__(**kw)
        self.bad_calls, self.calls, self.loss_g = set(bad_calls), 0, {}

    def generator_losses(self, real_a, real_b):
        self.calls += 1
        out = super().generator_losses(real_a * float("nan") if self.calls in self.bad_calls else real_a, real_b)
        self.loss_g[self.calls] = out.losses["loss_g"].item()
        return out


def _fit(model, root, tmp_path, **trainer):
    dm = UnpairedImageDataModule(str(root), load_size=36, crop_size=32, num_workers=0)
    trainer = {"enable_checkpointing": False, **trainer}
    t = pl.Trainer(enable_progress_bar=False, enable_model_summary=False,
                   limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path, **trainer)
    t.fit(model, dm)
    return t


def _old_style(path: Path) -> Path:
    """The checkpoint as one written before the models counted their batches."""
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["batches_trained"]
    torch.save(checkpoint, path.with_name("old.ckpt"))
    return path.with_name("old.ckpt")


def test_lightning_counts_batches_in_its_loop_state_where_old_checkpoints_are_read(tiny_root, tmp_path):
    pl.seed_everything(0)
    model = _NaNAt({2}, **TINY)  # one skipped update: global_step is not the batch count
    _fit(model, tiny_root, tmp_path, max_steps=3, logger=False, enable_checkpointing=True,
         callbacks=[LastCheckpoint(dirpath=str(tmp_path), every_n_train_steps=0)])  # written at a batch's end
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3 and checkpoint["batches_trained"] == model.batches_trained == 4
    assert batches_trained(checkpoint) == 4  # what the model would have counted
    old = torch.load(FIXTURES / "v0_cyclegan.ckpt", weights_only=True)
    assert (old["global_step"], batches_trained(old)) == (2, 2)


def test_a_run_resumed_from_an_old_checkpoint_logs_each_batch_its_own_values(tiny_root, tmp_path):
    pl.seed_everything(0)
    _fit(CycleGAN(**TINY), tiny_root, tmp_path, max_steps=3, logger=False, enable_checkpointing=True,
         callbacks=[LastCheckpoint(dirpath=str(tmp_path), every_n_train_steps=0)])
    recorder, model = _Recorder(), _NaNAt(set(), **TINY)
    dm = UnpairedImageDataModule(str(tiny_root), load_size=36, crop_size=32, num_workers=0)
    pl.Trainer(max_steps=8, logger=recorder, log_every_n_steps=2, enable_progress_bar=False, enable_model_summary=False,
               limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path,
               callbacks=[LastCheckpoint(dirpath=str(tmp_path), every_n_train_steps=0)],
               ).fit(model, dm, ckpt_path=_old_style(tmp_path / "last.ckpt"))
    logged = {step: metrics["train/loss_g"] for step, metrics in recorder.calls if "train/loss_g" in metrics}
    assert list(logged) == [3, 5, 7]  # batches 4, 6, 8: model.calls 1, 3, 5 of this run
    assert [round(v, 5) for v in logged.values()] == [round(model.loss_g[c], 5) for c in (1, 3, 5)]


def test_lightning_wandb_logger_still_holds_the_init_arguments_we_change(tmp_path):
    plain = loggers.WandbLogger(save_dir=str(tmp_path), offline=True)
    assert "anonymous" in plain._wandb_init  # what drop_wandb_anonymous removes; a rename fails here
    drop_wandb_anonymous(plain)
    assert "anonymous" not in plain._wandb_init
    ours = WandbLogger(save_dir=str(tmp_path), offline=False)
    assert "anonymous" not in ours._wandb_init and not ours.disabled


def test_a_mode_set_before_the_run_starts_is_the_mode_it_starts_in(tmp_path):
    logger = loggers.WandbLogger(save_dir=str(tmp_path), offline=False)
    set_wandb_mode(logger, "disabled")
    run = logger.experiment  # wandb.init(mode="disabled"): no files, no network
    try:
        assert run.disabled
    finally:
        run.finish()


def test_logs_reach_the_logger_on_lightnings_cadence_even_after_a_skipped_update(tiny_root, tmp_path):
    # Lightning sends on_step values to loggers every log_every_n_steps-th *batch*; the models build
    # their logs only then. A skipped update (no optimizer step) must not shift the two apart.
    pl.seed_everything(0)
    recorder = _Recorder()
    model = _NaNAt({3}, **TINY)
    trainer = _fit(model, tiny_root, tmp_path, max_steps=7, logger=recorder, log_every_n_steps=2)
    assert model.guard.skipped == 1 and trainer.global_step == 7 and model.batches_trained == 8
    logged = {step: metrics["train/loss_g"] for step, metrics in recorder.calls if "train/loss_g" in metrics}
    assert list(logged) == [1, 3, 5, 7]  # batches 2, 4, 6, 8 (Lightning's step is the 0-based batch)
    # Each value is that batch's own loss, not one left over from an iteration Lightning did not send.
    assert [round(v, 5) for v in logged.values()] == [round(model.loss_g[b], 5) for b in (2, 4, 6, 8)]
