"""Two DDP processes on the CPU (gloo) through the real CLI."""

import os
import subprocess
import sys
from pathlib import Path

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
