"""`cyclegan fit` with its defaults against the CycleGAN authors' train.py, end to end, alternated.

    python bench/vs_authors.py --authors PATH/TO/pytorch-CycleGAN-and-pix2pix --data FOLDER

FOLDER holds trainA/ and trainB/ (images of 256 px or more). The authors' repository
(junyanz/pytorch-CycleGAN-and-pix2pix) is a checkout of your own: it is run, never imported or
copied. Both train CycleGAN at their defaults: ResNet-9 and 70x70 PatchGAN (ngf = ndf = 64),
286 px loads cropped to 256, batch 1, flips, their data loaders; theirs in fp32 as published
(their train.py has no other precision), ours at its default precision (bf16-mixed where the hardware
computes bf16 natively). Both run as the user runs them: logging, image pools and loaders included.

The cost of one iteration is read from the wall clock of whole runs: each tool runs ``--short`` and
``--long`` iterations, and (time of long - time of short) / (long - short) cancels start-up,
first-iteration warm-up and the writing at the end. Runs alternate between the tools (theirs short,
ours short, theirs long, ours long) for ``--rounds`` rounds, so that drifts of the machine reach both.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def theirs(args, iterations: int, out: Path) -> list[str]:
    """Their train.py: one epoch of ``iterations`` images (--max_dataset_size), no decay epochs."""
    return [args.python, "-u", "train.py", "--dataroot", str(args.data.resolve()), "--name", "bench",
            "--model", "cycle_gan", "--checkpoints_dir", str(out), "--no_html", "--print_freq", "1",
            "--max_dataset_size", str(iterations), "--n_epochs", "1", "--n_epochs_decay", "0"]


def ours(args, iterations: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "cyclegan.cli", "fit", "--config", str(ROOT / "configs/cyclegan.yaml"),
            "--data.root", str(args.data.resolve()), "--trainer.max_steps", str(iterations),
            "--trainer.default_root_dir", str(out)]


def timed(command: list[str], cwd: Path, log: Path) -> float:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with log.open("w") as f:
        done = subprocess.run(command, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} ... failed (exit {done.returncode}); its output: {log}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--authors", type=Path, required=True, help="a checkout of junyanz/pytorch-CycleGAN-and-pix2pix")
    p.add_argument("--data", type=Path, required=True, help="a folder with trainA/ and trainB/")
    p.add_argument("--short", type=int, default=3)
    p.add_argument("--long", type=int, default=11)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--python", default=sys.executable, help="the interpreter for their train.py")
    args = p.parse_args()
    if not (args.authors / "train.py").is_file() or not (args.authors / "models/cycle_gan_model.py").is_file():
        sys.exit(f"{args.authors}: not a checkout of the CycleGAN authors' code (no train.py / models/cycle_gan_model.py)")
    for side in ("trainA", "trainB"):
        if not (args.data / side).is_dir():
            sys.exit(f"{args.data}: no {side}/ folder")
    if args.long <= args.short:
        sys.exit("--long must be more iterations than --short")

    per_iteration: dict[str, list[float]] = {"theirs": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="vs-authors-") as tmp:
        for r in range(args.rounds):
            times: dict[tuple[str, int], float] = {}
            for n in (args.short, args.long):
                for name, build, cwd in (("theirs", theirs, args.authors), ("ours", ours, ROOT)):
                    out = Path(tmp) / f"{name}-{r}-{n}"
                    times[name, n] = timed(build(args, n, out), cwd, Path(tmp) / f"{name}-{r}-{n}.log")
                    print(f"round {r + 1}: {name} {n} iterations in {times[name, n]:.1f} s", flush=True)
            for name in per_iteration:
                per_iteration[name].append((times[name, args.long] - times[name, args.short]) / (args.long - args.short))
            print(f"round {r + 1}: theirs {per_iteration['theirs'][-1]:.2f} s/iteration, ours "
                  f"{per_iteration['ours'][-1]:.2f} s/iteration: "
                  f"{per_iteration['theirs'][-1] / per_iteration['ours'][-1]:.2f}x", flush=True)

    ratios = [t / o for t, o in zip(per_iteration["theirs"], per_iteration["ours"])]
    print(json.dumps({
        "theirs_s_per_iteration": [round(t, 3) for t in per_iteration["theirs"]],
        "ours_s_per_iteration": [round(t, 3) for t in per_iteration["ours"]],
        "speedup_per_round": [round(x, 2) for x in ratios], "speedup_mean": round(statistics.mean(ratios), 2),
        "short": args.short, "long": args.long, "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
