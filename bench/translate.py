"""Throughput of folder conversion: ``convert_folder`` against a plain one-image-at-a-time loop.

    python bench/translate.py                                # 24 JPEGs at 256x256, 6 at 1024x768, CPU or CUDA
    python bench/translate.py --sizes 512x512:40 --device cuda --precision bf16
    python bench/translate.py --input my_photos/ --count 50

The generator is a full-size, untrained ResNet-9 (ngf 64): weights do not change the speed.
"Plain" is what the original test script does per file: PIL decode, to tensor, fp32 forward
with batch 1, PIL encode, no workers. "Ours" is the real ``cyclegan translate`` path (batches,
decoding workers, writer threads, inference mode). Each measurement runs in a fresh process,
so that peak memory (RSS of the process, of its largest worker, CUDA peak allocated) is its own.
The last line printed is one JSON object with the headline numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_folder(folder: Path, count: int, width: int, height: int, *, seed: int = 0) -> Path:
    """``count`` smooth random JPEGs (camera-like content compresses and decodes like photos do)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((width, height), Image.BICUBIC)
        noise = rng.normal(0, 6, (height, width, 3))  # some texture, as in photos
        image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))
        image.save(folder / f"{i:04d}.jpg", quality=90)
    return folder


def build_model():
    from cyclegan.networks import GeneratorConfig, build_generator, init_weights

    torch.manual_seed(0)
    return init_weights(build_generator(GeneratorConfig(ngf=64, n_blocks=9), input_nc=3, output_nc=3)).eval()


def _children_peak_mb() -> float:
    # The largest finished child process (a DataLoader worker); ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def peak_memory_mb(device: torch.device, children_before: float) -> dict:
    # VmHWM is this process's own peak; ru_maxrss would include the parent's from before exec.
    hwm = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM:"))
    memory = {"peak_rss_mb": round(hwm / 1024, 1)}
    children = _children_peak_mb()
    if children > children_before:  # forked workers: their RSS counts pages shared with the main process
        memory["peak_worker_rss_mb"] = round(children, 1)
    if device.type == "cuda":
        memory["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return memory


def run_plain(files: list[Path], out: Path, net, device: torch.device) -> None:
    for path in files:
        image = Image.open(path).convert("RGB")
        x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            y = net(x.to(device))
        array = ((y[0] + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
        Image.fromarray(array).save(out / path.name, quality=95)


def measure(args) -> dict:
    """One measurement, in this (fresh) process."""
    from cyclegan.data import list_images
    from cyclegan.translate import Translator, convert_folder

    device = torch.device(args.device)
    net = build_model().to(device)
    files = list_images(args.folder)
    out = Path(args.out)
    with torch.no_grad():  # warm up kernels and allocator on one small input
        net(torch.zeros(1, 3, 256, 256, device=device))
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    children_before = _children_peak_mb()
    start = time.perf_counter()
    if args.run == "plain":
        run_plain(files, out, net, device)
    else:
        translator = Translator.from_module(net, device=device, precision=args.precision)
        summary = convert_folder(
            translator, args.folder, out, batch_size=args.batch_size, workers=args.workers, progress=False,
        )
        assert summary.converted == len(files), summary
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images": len(files), "seconds": round(seconds, 3), "images_per_s": round(len(files) / seconds, 3),
            **peak_memory_mb(device, children_before)}


def spawn(run: str, folder: Path, out: Path, args) -> dict:
    command = [sys.executable, __file__, "--_run", run, "--_folder", str(folder), "--_out", str(out),
               "--device", args.device, "--precision", args.precision, "--batch-size", str(args.batch_size),
               "--workers", str(args.workers)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{run} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def parse_size(text: str, default_count: int | None) -> tuple[int, int, int]:
    size, _, count = text.partition(":")
    width, height = (int(v) for v in size.lower().split("x"))
    return width, height, default_count or int(count or 16)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=["256x256:24", "1024x768:6"],
                   help="WIDTHxHEIGHT[:COUNT] folders of JPEGs to generate (default 256x256:24 1024x768:6)")
    p.add_argument("--count", type=int, default=None, help="images per folder, overriding the counts in --sizes")
    p.add_argument("--input", type=Path, default=None, help="benchmark this folder instead of generated ones")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["32", "bf16"], default="32", help="for ours; plain is always fp32")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--_run", choices=["plain", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--_folder", dest="folder", help=argparse.SUPPRESS)
    p.add_argument("--_out", dest="out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._run:
        args.run = args._run
        print(json.dumps(measure(args)))
        return

    workdir = Path(tempfile.mkdtemp(prefix="bench-translate-"))
    try:
        if args.input is not None:
            cases = {"input": args.input}
            if args.count:  # a copy of the first COUNT images
                from cyclegan.data import list_images

                copy = workdir / "input"
                copy.mkdir()
                for f in list_images(args.input)[: args.count]:
                    shutil.copy(f, copy / f.name)
                cases = {"input": copy}
        else:
            cases = {}
            for text in args.sizes:
                width, height, count = parse_size(text, args.count)
                cases[f"{width}x{height}"] = make_folder(workdir / f"in-{width}x{height}", count, width, height)
        report = {"bench": "translate", "device": args.device, "precision": args.precision,
                  "batch_size": args.batch_size, "workers": args.workers, "cpus": os.cpu_count(),
                  "torch_threads": torch.get_num_threads()}
        header = f"{'images':>16} {'n':>4} {'plain img/s':>12} {'ours img/s':>11} {'ratio':>6} {'plain peak MB':>14} {'ours peak MB':>13}"
        print(header)
        for name, folder in cases.items():
            (workdir / f"plain-{name}").mkdir()
            plain = spawn("plain", folder, workdir / f"plain-{name}", args)
            ours = spawn("ours", folder, workdir / f"ours-{name}", args)
            ratio = ours["images_per_s"] / plain["images_per_s"]
            key = "peak_cuda_mb" if "peak_cuda_mb" in ours else "peak_rss_mb"
            print(f"{name:>16} {ours['images']:>4} {plain['images_per_s']:>12.2f} {ours['images_per_s']:>11.2f} "
                  f"{ratio:>6.2f} {plain[key]:>14.0f} {ours[key]:>13.0f}")
            report[name] = {"images": ours["images"], "images_per_s": ours["images_per_s"],
                            "plain_images_per_s": plain["images_per_s"], "ratio": round(ratio, 3),
                            "peak_memory": {"ours": {k: v for k, v in ours.items() if "peak" in k},
                                            "plain": {k: v for k, v in plain.items() if "peak" in k}}}
        print(json.dumps(report))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
