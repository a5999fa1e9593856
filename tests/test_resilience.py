"""Interruptions and faults during training: nothing lost, clear messages, reproducible runs."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from cyclegan import CycleGAN, DiscriminatorConfig, GeneratorConfig, UnpairedImageDataModule
from cyclegan.cli import build_cli
from cyclegan.errors import NonFiniteLossError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _args(root: Path, runs: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(CONFIGS / "cyclegan.yaml"), "--config", str(CONFIGS / "tiny.yaml"),
            "--data.root", str(root), "--trainer.default_root_dir", str(runs), "--seed_everything", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.log_every_n_steps", "1", *extra]


def _losses(runs: Path) -> list[dict]:
    (path,) = runs.glob("cyclegan/*/metrics.jsonl")
    return [row for line in path.read_text().splitlines() if "train/loss_g" in (row := json.loads(line))]


def test_same_seed_same_losses(tiny_root, tmp_path):
    for name in ("one", "two"):
        build_cli(_args(tiny_root, tmp_path / name, "--trainer.max_steps", "20"))
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == 20 and one == two


def _start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    # A fresh W&B service, as a shell would start: inheriting this test process's service would
    # leave the killed run registered in it, which no real resume meets.
    env = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "cyclegan.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for_step(ckpt_glob, root: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in root.glob(ckpt_glob):
            try:
                if torch.load(path, weights_only=True, mmap=True)["global_step"] >= step:
                    return path
            except Exception:
                pass  # being replaced right now
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.2)
    raise TimeoutError(f"no checkpoint at step {step}")


def test_sigkill_then_resume_last_continues_everything(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    args = _args(tiny_root, runs, "--trainer.max_steps", "400", "--last_checkpoint.every_n_train_steps", "3")
    proc = _start(args, tmp_path)
    ckpt = _wait_for_step("cyclegan/*/checkpoints/last.ckpt", runs, 6, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(ckpt, weights_only=True)  # never half-written: it loads
    run_id = saved["wandb_run_id"]
    assert ckpt.parent.parent.name == run_id

    target = saved["global_step"] + 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = build_cli(_args(tiny_root, runs, "--trainer.max_steps", str(target), "--ckpt_path", "last"))
    assert not [w for w in caught if "W&B" in str(w.message)], [str(w.message) for w in caught]
    assert cli.trainer.global_step == target
    opt_g, _ = (o.optimizer for o in cli.model.optimizers())
    assert {int(s["step"]) for s in opt_g.state.values()} == {target}  # Adam resumed, not restarted
    assert cli.trainer.current_epoch >= saved["epoch"]
    assert len(cli.model.pool_a) == min(50, target)  # the pool came back, then grew
    assert cli.trainer.logger.version == run_id and not cli.trainer.logger.disabled  # the same W&B run
    assert len(list(runs.glob(f"wandb/offline-run-*-{run_id}"))) == 2  # both sessions, one id
    assert not list(runs.rglob("*.tmp-*"))


def test_sigterm_finishes_the_iteration_writes_a_checkpoint_and_exits_cleanly(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    proc = _start(_args(tiny_root, runs, "--trainer.max_steps", "400", "--last_checkpoint.every_n_train_steps", "2"),
                  tmp_path)
    _wait_for_step("cyclegan/*/checkpoints/last.ckpt", runs, 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert "SIGTERM received: stopping after this iteration (Ctrl-C again to abort)" in out, out[-2000:]
    stopped = [line for line in out.splitlines() if line.startswith("stopped by SIGTERM at step ")]
    assert stopped, out[-2000:]
    step = int(stopped[0].split("at step ")[1].split(";")[0])
    (ckpt,) = runs.glob("cyclegan/*/checkpoints/last.ckpt")
    assert torch.load(ckpt, weights_only=True)["global_step"] == step < 400


def test_a_checkpoint_save_that_fails_midway_leaves_the_previous_one(tmp_path, monkeypatch):
    # Lightning's own save writes its temporary file in $TMPDIR and moves it into place: a rename
    # only on the same filesystem, else a copy into the old checkpoint. This one writes beside it.
    from cyclegan.training.callbacks import AtomicCheckpointIO

    class _Unsavable:
        def __reduce__(self):
            raise RuntimeError("killed mid-write")

    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)
    renamed, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renamed.append(Path(src)), real_replace(src, dst))[1])
    io.save_checkpoint({"step": 2}, path)
    assert [p.parent for p in renamed] == [path.parent]  # the temporary file is on the checkpoint's filesystem
    with pytest.raises(RuntimeError, match="killed mid-write"):
        io.save_checkpoint({"step": 3, "weights": torch.zeros(10_000), "bad": _Unsavable()}, path)
    assert torch.load(path, weights_only=True) == {"step": 2}
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporaries left


def test_a_save_removes_what_a_killed_process_left_and_only_that(tmp_path):
    from cyclegan.training.callbacks import AtomicCheckpointIO

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its PID no longer runs
    path = tmp_path / "last.ckpt"
    left = tmp_path / f".last.ckpt.tmp-{dead.pid}"
    busy = tmp_path / f".last.ckpt.tmp-{os.getppid()}"  # a process that still runs (and may be writing)
    left.write_bytes(b"half a checkpoint")
    busy.write_bytes(b"being written")
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["last.ckpt", busy.name])


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


def _tiny_fit(model, root, tmp_path, **trainer):
    dm = UnpairedImageDataModule(str(root), load_size=36, crop_size=32, num_workers=0)
    t = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path, **trainer)
    t.fit(model, dm)
    return t


TINY = dict(generator=GeneratorConfig(ngf=4, n_blocks=1), discriminator=DiscriminatorConfig(ndf=4, n_layers=2))


def test_nonfinite_losses_skip_the_update_then_stop_with_a_name(tiny_root, tmp_path):
    pl.seed_everything(0)
    model = _NaNAt({2, 3}, **TINY)
    trainer = _tiny_fit(model, tiny_root, tmp_path, max_steps=4)
    assert trainer.global_step == 4 and model.calls == 6  # two iterations skipped, four applied
    assert model.guard.skipped == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())

    model = _NaNAt(set(range(1, 100)), **TINY, max_nonfinite=3)
    with pytest.raises(NonFiniteLossError, match=r"loss_g_adv_ab was nan for 3 iterations in a row .*last good checkpoint"):
        _tiny_fit(model, tiny_root, tmp_path, max_steps=4)


def test_wandb_that_cannot_start_does_not_stop_training(tiny_root, tmp_path, monkeypatch):
    import wandb

    real_init = wandb.init

    def broken_init(*args, **kwargs):
        if kwargs.get("mode") != "disabled":
            raise wandb.errors.CommError("simulated: cannot reach the W&B server / disk full")
        return real_init(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", broken_init)
    runs = tmp_path / "runs"
    with pytest.warns(UserWarning, match="W&B could not start"):
        cli = build_cli(_args(tiny_root, runs, "--trainer.max_steps", "3"))
    assert cli.trainer.global_step == 3
    rows = _losses(runs)
    assert len(rows) == 3 and "train/loss_cycle_a" in rows[0]
    assert list(runs.rglob("last.ckpt"))


@pytest.mark.slow
def test_sigterm_at_any_iteration_then_resume_last_equals_the_uninterrupted_run(tiny_root, tmp_path):
    from test_resume_exact import max_difference

    small = ("--model.init_args.generator.ngf", "4", "--model.init_args.generator.n_blocks", "1",
             "--model.init_args.discriminator.ndf", "4", "--samples.every_n_steps", "0",
             "--last_checkpoint.every_n_train_steps", "2", "--trainer.max_steps", "30")
    env = {"OMP_NUM_THREADS": "1"}  # the same thread count in every process (and fast on shared cores)
    whole = _start(_args(tiny_root, tmp_path / "whole", *small), tmp_path, env)
    parts = tmp_path / "parts"
    proc = _start(_args(tiny_root, parts, *small), tmp_path, env)
    _wait_for_step("cyclegan/*/checkpoints/last.ckpt", parts, 2, proc)
    proc.send_signal(signal.SIGTERM)  # wherever it is by now
    out, _ = proc.communicate(timeout=120)
    stopped = [line for line in out.splitlines() if line.startswith("stopped by SIGTERM at step ")]
    assert proc.returncode == 0 and stopped, out[-3000:]
    assert int(stopped[0].split("at step ")[1].split(";")[0]) < 30
    resumed = _start(_args(tiny_root, parts, *small, "--ckpt_path", "last"), tmp_path, env)
    for p in (whole, resumed):
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    (a,), (b,) = (list(root.glob("cyclegan/*/checkpoints/last.ckpt")) for root in (tmp_path / "whole", parts))
    a, b = (torch.load(path, weights_only=True) for path in (a, b))
    assert a["global_step"] == b["global_step"] == 30
    for key in ("state_dict", "optimizer_states", "image_pools"):
        assert max_difference(a[key], b[key]) == 0.0, key
