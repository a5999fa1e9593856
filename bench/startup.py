"""Start-up time of the ``cyclegan`` command: ``--help``, every ``COMMAND --help``, and
``translate`` of one small image, each the median wall time of N runs in a fresh process.

    python bench/startup.py              # 5 runs each
    python bench/startup.py --runs 3 --size 64

The checkpoint for ``translate`` is a small untrained CycleGAN written here (the weights do not
change the time). Prints a table and, last, one JSON line {"command": seconds, ...}.
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
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cyclegan.training.state import TRANSLATOR  # noqa: E402
from cyclegan.cli import commands  # noqa: E402
from cyclegan.models.networks import GeneratorConfig, build_generator  # noqa: E402


def write_checkpoint(path: Path) -> None:
    """A checkpoint as training writes it, minus the training state translate never reads."""
    config = GeneratorConfig(ngf=8, n_blocks=2)
    nets = {"G_AB": build_generator(config, input_nc=3, output_nc=3),
            "G_BA": build_generator(config, input_nc=3, output_nc=3)}
    torch.save({
        TRANSLATOR: {"kind": "cyclegan", "generator": asdict(config), "input_nc": 3, "output_nc": 3,
                     "directions": {"a2b": "G_AB", "b2a": "G_BA"}},
        "state_dict": {f"{name}.{k}": v for name, net in nets.items() for k, v in net.state_dict().items()},
    }, path)


def timed(argv: list[str], runs: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "cyclegan.cli", *argv], env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"`cyclegan {' '.join(argv)}` failed:\n{result.stderr[-2000:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command (default 5)")
    parser.add_argument("--size", type=int, default=64, help="side of the translated image (default 64)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_checkpoint(tmp / "tiny.ckpt")
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(tmp / "in.png")
        cases = {"--help": ["--help"]}
        cases |= {f"{name} --help": [name, "--help"] for name in commands()}
        cases[f"translate {args.size}px"] = ["translate", "--checkpoint", str(tmp / "tiny.ckpt"), "--input",
                                             str(tmp / "in.png"), "--output", str(tmp / "out"), "--overwrite", "--quiet"]
        results = {name: timed(argv, args.runs) for name, argv in cases.items()}
    width = max(map(len, results))
    print(f"{'cyclegan ...':<{width}}  median of {args.runs} (s)")
    for name, seconds in results.items():
        print(f"{name:<{width}}  {seconds:6.2f}")
    print(json.dumps({name: round(seconds, 3) for name, seconds in results.items()}))


if __name__ == "__main__":
    main()
