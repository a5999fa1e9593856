"""Two DDP processes on the CPU (gloo) through the real CLI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
CONFIGS = TESTS.parent / "configs"


def test_ddp_two_ranks_stay_identical_and_write_one_checkpoint(tiny_root, tmp_path):
    runs, dump = tmp_path / "runs", tmp_path / "dump"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "cyclegan.cli", "fit", "--config", str(CONFIGS / "cyclegan.yaml"),
         "--config", str(CONFIGS / "tiny.yaml"), "--data.root", str(tiny_root),
         "--trainer.default_root_dir", str(runs), "--trainer.max_steps", "2", "--trainer.strategy", "ddp",
         "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
         "--seed_everything", "0", "--trainer.callbacks+=rank_dump.DumpWeights", "--trainer.callbacks.folder", str(dump)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # Gradients were averaged across ranks: the weights agree exactly...
    assert rank0["weights"].keys() == rank1["weights"].keys()
    for k in rank0["weights"]:
        assert torch.equal(rank0["weights"][k], rank1["weights"][k]), k
    # ...while each rank saw its own data and kept its own pool.
    assert not torch.equal(rank0["pools"]["b"], rank1["pools"]["b"])
    assert [p.name for p in runs.rglob("*.ckpt")] == ["last.ckpt"]
    assert len(list(runs.glob("wandb/offline-run-*"))) == 1  # rank 0 logs, alone


def test_ddp_fastcut_ranks_stay_identical_with_their_own_mirror_coins(tiny_root, tmp_path):
    # FastCUT draws a coin per rank (mirror the input or not) and PatchNCE locations per rank;
    # the heads train with G's optimizer: all of it must still be averaged into one set of weights.
    runs, dump = tmp_path / "runs", tmp_path / "dump"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "cyclegan.cli", "fit", "--config", str(CONFIGS / "fastcut.yaml"),
         "--config", str(CONFIGS / "tiny.yaml"), "--data.root", str(tiny_root),
         "--trainer.default_root_dir", str(runs), "--trainer.max_steps", "3", "--trainer.strategy", "ddp",
         "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
         "--samples.every_n_steps", "0", "--seed_everything", "0",
         "--trainer.callbacks+=rank_dump.DumpWeights", "--trainer.callbacks.folder", str(dump)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert any(k.startswith("nce_heads.") for k in rank0["weights"])
    for k in rank0["weights"]:
        assert torch.equal(rank0["weights"][k], rank1["weights"][k]), k


def _ddp_fit(tiny_root, runs: Path, dump: Path, *extra: str, devices: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    strategy = ("--trainer.strategy", "ddp") if devices > 1 else ()
    result = subprocess.run(
        [sys.executable, "-m", "cyclegan.cli", "fit", "--config", str(CONFIGS / "cyclegan.yaml"),
         "--config", str(CONFIGS / "tiny.yaml"), "--data.root", str(tiny_root), "--trainer.default_root_dir", str(runs),
         *strategy, "--trainer.devices", str(devices), "--trainer.accelerator", "cpu",
         "--trainer.enable_progress_bar", "false", "--seed_everything", "0", "--samples.every_n_steps", "0",
         "--model.init_args.generator.ngf", "4", "--model.init_args.generator.n_blocks", "1",
         "--model.init_args.discriminator.ndf", "4",
         "--trainer.callbacks+=rank_dump.DumpWeights", "--trainer.callbacks.folder", str(dump), *extra],
        capture_output=True, text=True, timeout=600, env=env, cwd=runs.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_ddp_stop_and_resume_equals_the_uninterrupted_run_on_every_rank(tiny_root, tmp_path):
    from test_resume_exact import max_difference

    # 6 A images over 2 ranks: 3 iterations an epoch; 5 stops mid-epoch.
    _ddp_fit(tiny_root, tmp_path / "whole", tmp_path / "dump_whole", "--trainer.max_steps", "10")
    _ddp_fit(tiny_root, tmp_path / "parts", tmp_path / "dump_stop", "--trainer.max_steps", "5")
    _ddp_fit(tiny_root, tmp_path / "parts", tmp_path / "dump_resumed", "--trainer.max_steps", "10",
             "--ckpt_path", "last")
    for rank in (0, 1):
        whole, resumed = (torch.load(tmp_path / d / f"rank{rank}.pt", weights_only=True)["full"]
                          for d in ("dump_whole", "dump_resumed"))
        assert whole["step"] == resumed["step"] == 10
        assert max_difference(whole, resumed) == 0.0, rank
    # The ranks kept pools of their own, and each got its own back.
    assert max_difference(*(torch.load(tmp_path / "dump_resumed" / f"rank{r}.pt")["full"]["pools"]
                            for r in (0, 1))) > 0

    # Another world size: one line says what cannot come back, and training goes on.
    result = _ddp_fit(tiny_root, tmp_path / "parts", tmp_path / "dump_one", "--trainer.max_steps", "12",
                      "--ckpt_path", "last", devices=1)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "written by 2 process" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    assert torch.load(tmp_path / "dump_one" / "rank0.pt", weights_only=True)["full"]["step"] == 12
