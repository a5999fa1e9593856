"""A run stopped and resumed equals the uninterrupted one, bit for bit (CPU)."""

import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from cyclegan import CUT, CycleGAN, DiscriminatorConfig, FastCUT, GeneratorConfig, Method1, UnpairedImageDataModule
from cyclegan.training.callbacks import GracefulStop, LastCheckpoint
from cyclegan.errors import NonFiniteLossError

@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny networks on a shared machine: two intra-op threads fighting other processes for
    # two cores make an iteration ~30x slower than one thread does. (Exactness holds for any
    # count; both runs of a comparison use the same.)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(generator=GeneratorConfig(ngf=4, n_blocks=1), discriminator=DiscriminatorConfig(ndf=4, n_layers=2),
            n_epochs=2, n_epochs_decay=2)


def _fit(model_class, root: Path, ckpt_dir: Path, *, max_steps: int, num_workers: int = 0, ckpt_path=None,
         model_kw=None, callbacks=(), **trainer_kw) -> pl.Trainer:
    pl.seed_everything(0)
    model = model_class(**TINY, **(model_kw or {}))
    dm = UnpairedImageDataModule(str(root), load_size=36, crop_size=32, num_workers=num_workers)
    trainer = pl.Trainer(
        max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[*callbacks, LastCheckpoint(dirpath=str(ckpt_dir), every_n_train_steps=0)], default_root_dir=ckpt_dir.parent,
        num_sanity_val_steps=0, **trainer_kw,
    )
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return trainer


def max_difference(a: dict, b: dict) -> float:
    """Largest absolute difference over two (nested) state dicts of the same structure."""
    assert type(a) is type(b) or not isinstance(a, (dict, list, tuple, torch.Tensor)), (type(a), type(b))
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return max((max_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        return max((max_difference(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape
        return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
    return 0.0 if a == b else float("inf")


def training_state(trainer: pl.Trainer) -> dict:
    """Weights, both optimizers' states and the pools at the end of a fit."""
    model = trainer.lightning_module
    return {
        "weights": model.state_dict(),
        "optimizers": [opt.optimizer.state_dict() for opt in model.optimizers()],
        "pools": model.pools.state_dict(),
    }


# The CLI silences this (set_epoch steps the schedulers of a resumed run first, on purpose).
pytestmark = pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler\.step\(\)`")


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("model_class", [CycleGAN, Method1, CUT, FastCUT])
def test_stop_mid_epoch_and_resume_equals_the_uninterrupted_run(model_class, num_workers, tiny_root, tmp_path):
    # 6 A images, batch 1: 6 iterations an epoch, so 7 stops one iteration into the second
    # epoch, and 20 crosses two more epoch boundaries (and the LR decay) after the resume.
    whole = _fit(model_class, tiny_root, tmp_path / "whole", max_steps=20, num_workers=num_workers)
    _fit(model_class, tiny_root, tmp_path / "parts", max_steps=7, num_workers=num_workers)
    last = tmp_path / "parts" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 7
    resumed = _fit(model_class, tiny_root, tmp_path / "parts", max_steps=20, num_workers=num_workers,
                   ckpt_path=str(last))
    assert resumed.global_step == whole.global_step == 20
    assert max_difference(training_state(whole), training_state(resumed)) == 0.0


def test_the_batches_do_not_depend_on_the_number_of_workers(tiny_root, tmp_path):
    runs = [_fit(Method1, tiny_root, tmp_path / f"w{n}", max_steps=8, num_workers=n) for n in (0, 2)]
    assert max_difference(*(training_state(t) for t in runs)) == 0.0


def test_a_run_resumed_from_an_epoch_end_or_with_another_seed_still_continues_exactly(tiny_root, tmp_path):
    # A stop on an epoch's last batch resumes at the next epoch's first; the data's seed and the
    # RNG states come from the checkpoint, not from --seed_everything.
    whole = _fit(Method1, tiny_root, tmp_path / "whole", max_steps=14, model_kw={"gan_mode": "wgangp"})
    _fit(Method1, tiny_root, tmp_path / "parts", max_steps=6, model_kw={"gan_mode": "wgangp"})
    pl.seed_everything(123)
    model = Method1(**TINY, gan_mode="wgangp")
    model.load_state_dict(whole.lightning_module.state_dict())  # any start: the checkpoint overrides it
    trainer = pl.Trainer(max_steps=14, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[LastCheckpoint(dirpath=str(tmp_path / "parts"), every_n_train_steps=0)],
                         num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(model, UnpairedImageDataModule(str(tiny_root), load_size=36, crop_size=32, num_workers=0),
                ckpt_path=str(tmp_path / "parts" / "last.ckpt"))
    # wgangp draws its interpolation weights from torch's global RNG: restored too.
    assert max_difference(training_state(whole), training_state(trainer)) == 0.0


def test_max_time_writes_last_ckpt_at_the_final_iteration(tiny_root, tmp_path):
    trainer = _fit(CycleGAN, tiny_root, tmp_path / "ckpt", max_steps=10_000, max_time={"seconds": 4})
    assert 0 < trainer.global_step < 10_000
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == trainer.global_step


class _SignalAt(pl.Callback):
    """Sends this process SIGTERM at the end of iteration ``step``, as a cluster's preemption would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_mid_epoch_then_resume_equals_the_uninterrupted_run(tiny_root, tmp_path):
    whole = _fit(CycleGAN, tiny_root, tmp_path / "whole", max_steps=20)
    stop = GracefulStop()
    stopped = _fit(CycleGAN, tiny_root, tmp_path / "parts", max_steps=20, callbacks=[_SignalAt(9), stop])
    assert stop.stopped_by == "SIGTERM" and stopped.global_step == 9
    assert torch.load(stop.checkpoint, weights_only=True)["global_step"] == 9
    resumed = _fit(CycleGAN, tiny_root, tmp_path / "parts", max_steps=20, ckpt_path=stop.checkpoint)
    assert max_difference(training_state(whole), training_state(resumed)) == 0.0


class _StopAtEpochEnd(pl.Callback):
    """Stops training when epoch ``epoch`` ends, as EarlyStopping does on a metric."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def test_a_stop_at_an_epoch_end_writes_last_ckpt_there_and_resumes_exactly(tiny_root, tmp_path):
    whole = _fit(Method1, tiny_root, tmp_path / "whole", max_steps=14)
    stopped = _fit(Method1, tiny_root, tmp_path / "parts", max_steps=14, callbacks=[_StopAtEpochEnd(0)],
                   limit_val_batches=0)  # (the periodic save is off: only the stop writes last.ckpt)
    assert stopped.global_step == 6
    last = tmp_path / "parts" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 6
    resumed = _fit(Method1, tiny_root, tmp_path / "parts", max_steps=14, ckpt_path=str(last))
    assert max_difference(training_state(whole), training_state(resumed)) == 0.0


def test_epoch_sampler_splits_an_epoch_across_ranks_and_resumes_at_the_next_unseen_place():
    from cyclegan.data.datamodule import EpochSampler

    one = list(EpochSampler(7, seed=5, epoch=3))
    assert sorted(i for i, _ in one) == list(range(7)) and len({s for _, s in one}) == 7
    assert [i for i, _ in EpochSampler(7, seed=5, epoch=4)] != [i for i, _ in one]  # a new order each epoch
    # Two ranks: the same permutation (padded to 8) dealt out in turn, with the same item seeds.
    ranks = [list(EpochSampler(7, seed=5, epoch=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert [x for pair in zip(*ranks) for x in pair][:7] == one
    # Resuming at place 4 of that epoch: every rank continues with its next item; other epochs whole.
    for r in (0, 1):
        sampler = EpochSampler(7, seed=5, num_replicas=2, rank=r)
        sampler.resume_at(3, 4)
        assert list(sampler) == ranks[r][2:]
        sampler.set_epoch(4)
        assert len(list(sampler)) == 4


def test_an_item_with_a_seed_is_the_same_whoever_loads_it(tiny_root):
    dm = UnpairedImageDataModule(str(tiny_root), load_size=36, crop_size=32, num_workers=0)
    dm.setup("fit")
    first, again = dm.train_set[(2, 1234)], dm.train_set[(2, 1234)]
    assert first["B_path"] == again["B_path"] and torch.equal(first["A"], again["A"])
    assert torch.equal(first["B"], again["B"])
    others = [dm.train_set[(2, seed)] for seed in range(20)]
    assert len({o["B_path"] for o in others}) > 1  # the seed decides B...
    assert any(not torch.equal(o["A"], first["A"]) for o in others)  # ...and the crop/flip


def test_the_nonfinite_guard_stop_writes_last_ckpt_at_the_last_completed_iteration(tiny_root, tmp_path):
    from test_resilience import _NaNAt

    class _NaNFrom4(_NaNAt):
        def __init__(self, **kw):
            super().__init__(set(range(4, 100)), **kw)

    with pytest.raises(NonFiniteLossError):
        _fit(_NaNFrom4, tiny_root, tmp_path / "ckpt", max_steps=20, model_kw={"max_nonfinite": 2})
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 3
    # The data resumes at the batch that raised, as Lightning's loop state counts it (3 trained, 1 skipped).
    loop = saved["loops"]["fit_loop"]
    assert loop["epoch_loop.batch_progress"]["current"]["processed"] == 4
    assert loop["state_dict"]["combined_loader"] == [{"epoch": 0, "position": 4}]
