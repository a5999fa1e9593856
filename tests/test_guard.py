"""The non-finite guard deciding on the device (as on CUDA, forced here on the CPU): no value is
read from a tensor on iterations that log nothing, and skipped updates are really skipped."""

import inspect
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from cyclegan import CUT, CycleGAN, DiscriminatorConfig, GeneratorConfig, UnpairedImageDataModule
from cyclegan.errors import NonFiniteLossError
from cyclegan.training.callbacks import TrainingHealth

TINY = dict(generator=GeneratorConfig(ngf=4, n_blocks=1), discriminator=DiscriminatorConfig(ndf=4, n_layers=2))
# Where the training step and its hooks live (data loading reads its own CPU random numbers elsewhere).
PACKAGE = tuple(str(Path(__import__("cyclegan").__file__).parent / sub) for sub in ("training", "models"))
# Reads of tensors drawn from a CPU random generator on purpose (host decisions, on the CPU wherever
# the model runs): the image pool's draws and FastCUT's mirror coin. Nothing else may read.
HOST_RNG = {("image_pool.py", "query"), ("cut.py", "<lambda>")}
READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


class _Reads:
    """Records every read of a tensor's value made by the package's training code, by the
    training batch it happened in (the model's ``batches_trained``, 1-based)."""

    def __init__(self, model):
        self.model = model
        self.by_batch: dict[int, list[tuple[str, str, int]]] = {}

    def patch(self, monkeypatch):
        for name in READS:
            original = getattr(torch.Tensor, name)

            def read(tensor, *args, _original=original, **kwargs):
                caller = inspect.currentframe().f_back
                batch = getattr(self.model, "batches_trained", 0)
                if batch and caller.f_code.co_filename.startswith(PACKAGE):
                    where = (Path(caller.f_code.co_filename).name, caller.f_code.co_name, caller.f_lineno)
                    if where[:2] not in HOST_RNG:
                        self.by_batch.setdefault(batch, []).append(where)
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, read)


def _fit(model, root, tmp_path, callbacks=(), **trainer):
    model.guard.deferred = True  # as chosen on CUDA with fused Adam
    dm = UnpairedImageDataModule(str(root), load_size=36, crop_size=32, num_workers=0)
    t = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path,
                   callbacks=[TrainingHealth(window=2), *callbacks], **trainer)
    t.fit(model, dm)
    return t


@pytest.mark.parametrize("cls", [CycleGAN, CUT])
def test_iterations_that_log_nothing_read_no_tensor(cls, tiny_root, tmp_path, monkeypatch):
    pl.seed_everything(0)
    model = cls(**TINY, pool_size=4) if cls is CycleGAN else cls(**TINY, nce_patches=16)
    reads = _Reads(model)
    reads.patch(monkeypatch)
    _fit(model, tiny_root, tmp_path, max_steps=8, log_every_n_steps=4)
    quiet = {b: r for b, r in reads.by_batch.items() if b % 4}  # batches 4 and 8 log
    assert quiet == {}
    assert reads.by_batch  # the logging iterations do read (the guard's counts, the logged values)


class _NaNAt(CycleGAN):
    """CycleGAN whose generator output turns NaN on chosen iterations."""

    def __init__(self, bad_steps, **kw):
        super().__init__(**kw)
        self.bad_steps = set(bad_steps)
        self.calls = 0

    def generator_losses(self, real_a, real_b):
        self.calls += 1
        if self.calls in self.bad_steps:
            real_a = real_a * float("nan")
        return super().generator_losses(real_a, real_b)


def test_a_skipped_update_changes_no_weight_and_no_optimizer_state(tiny_root, tmp_path, caplog):
    pl.seed_everything(0)
    model = _NaNAt({2, 3}, **TINY, pool_size=4)
    trainer = _fit(model, tiny_root, tmp_path, max_steps=5, log_every_n_steps=5)
    assert model.calls == 5 and trainer.global_step == 5  # deferred: every iteration counts
    assert model.guard.skipped == 2 and model.guard.in_a_row == 0
    for opt in trainer.optimizers:  # fused Adam took found_inf: two of five steps left undone
        assert {int(s["step"]) for s in opt.state.values()} == {3}
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(im).all() for pool in model.pools.by_name.values() for im in pool.images)
    assert "loss_g_adv_ab was nan in 2 of the iterations after step 0 (up to step 5); skipped those updates" in caplog.text


def test_the_same_run_with_no_bad_losses_is_the_run_decided_at_once(tiny_root, tmp_path):
    runs = []
    for deferred in (False, True):
        pl.seed_everything(0)
        model = CycleGAN(**TINY)
        dm = UnpairedImageDataModule(str(tiny_root), load_size=36, crop_size=32, num_workers=0)
        model.guard.deferred = deferred
        pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path, max_steps=4).fit(model, dm)
        runs.append(model.state_dict())
    for name, value in runs[0].items():
        assert torch.equal(value, runs[1][name]), name


def test_a_run_that_diverged_stops_at_the_next_check_naming_the_loss(tiny_root, tmp_path):
    pl.seed_everything(0)
    model = _NaNAt(set(range(3, 100)), **TINY, max_nonfinite=3)
    with pytest.raises(NonFiniteLossError, match=r"loss_g_adv_ab was nan for 4 iterations in a row \(by step 6\)"):
        _fit(model, tiny_root, tmp_path, max_steps=50, log_every_n_steps=3)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_on_a_gpu_the_default_progress_bar_redraws_on_logging_steps_only():
    from pytorch_lightning.callbacks import TQDMProgressBar

    from cyclegan.cli.fit import bar_on_logging_steps

    health, default, chosen = TrainingHealth(), TQDMProgressBar(), TQDMProgressBar(refresh_rate=5)
    out = bar_on_logging_steps([health, default, chosen], 50)
    assert out[0] is health and out[2] is chosen  # a rate the user chose stays
    assert type(out[1]) is TQDMProgressBar and out[1].refresh_rate == 50
    assert bar_on_logging_steps([default], 1)[0] is default
