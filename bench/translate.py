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
import statistics
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
    from cyclegan.models.networks import GeneratorConfig, build_generator, init_weights

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


# name -> (how it runs, precision, batch size); None: the default chosen for the device.
SETTINGS = {
    "plain": ("plain", "32", 1),
    "defaults": ("ours", "auto", None),
    "fp32_b8": ("ours", "32", 8),  # the defaults before issue 13
    "fp32_b1": ("ours", "32", 1),
    "bf16_b8": ("ours", "bf16", 8),
    "bf16_b1": ("ours", "bf16", 1),
    "defaults_compile": ("ours", "auto", None),
}


def _convert(net, device, folder: Path, out: Path, args) -> int:
    from cyclegan.inference.convert import ConvertSettings, convert_folder
    from cyclegan.inference.translator import Translator

    precision = args.precision
    if precision == "auto":
        from cyclegan.devices import inference_precision

        precision = inference_precision("auto", device)
    translator = Translator.from_module(net, device=device, precision=precision)
    settings = ConvertSettings(batch_size=args.batch_size, workers=args.workers)
    # With its manifest, as `cyclegan translate` writes one: the journal's append per output is timed too.
    return convert_folder(translator, folder, out, settings, progress=False, manifest=out / "manifest.csv").converted


def measure(args) -> dict:
    """One measurement, in this (fresh) process: a warm-up pass over the first two images
    (kernel selection, allocator, decoding workers, compilation; reported as ``warmup_s``),
    then the timed pass over the whole folder into a fresh output folder."""
    from cyclegan.data.images import list_images

    device = torch.device(args.device)
    net = build_model().to(device)
    if args.compile:
        net.compile()
    files = list_images(args.folder)
    out = Path(args.out)
    warm_in, warm_out = out.parent / f"{out.name}-warm-in", out.parent / f"{out.name}-warm-out"
    warm_in.mkdir(parents=True, exist_ok=True)
    for f in files[:2]:
        shutil.copy(f, warm_in / f.name)
    start = time.perf_counter()
    if args.run == "plain":
        run_plain(list_images(warm_in), warm_out.mkdir(parents=True) or warm_out, net, device)
    else:
        _convert(net, device, warm_in, warm_out, args)
    warmup = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    children_before = _children_peak_mb()
    start = time.perf_counter()
    if args.run == "plain":
        out.mkdir(parents=True, exist_ok=True)
        run_plain(files, out, net, device)
    else:
        assert _convert(net, device, args.folder, out, args) == len(files)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images": len(files), "seconds": round(seconds, 3), "warmup_s": round(warmup, 3),
            "images_per_s": round(len(files) / seconds, 3), **peak_memory_mb(device, children_before)}


def spawn(name: str, folder: Path, out: Path, args) -> dict:
    run, precision, batch = SETTINGS[name]
    command = [sys.executable, __file__, "--_run", run, "--_folder", str(folder), "--_out", str(out),
               "--device", args.device, "--_precision", precision]
    command += ["--_batch-size", str(batch)] if batch else []
    command += ["--workers", str(args.workers)] if args.workers is not None else []
    command += ["--_compile"] if name.endswith("_compile") else []
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{name} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def parse_size(text: str, default_count: int | None) -> tuple[int, int, int]:
    size, _, count = text.partition(":")
    width, height = (int(v) for v in size.lower().split("x"))
    return width, height, default_count or int(count or 16)


def _cases(args, workdir: Path) -> dict[str, Path]:
    if args.input is None:
        cases = {}
        for text in args.sizes:
            width, height, count = parse_size(text, args.count)
            cases[f"{width}x{height}"] = make_folder(workdir / f"in-{width}x{height}", count, width, height)
        return cases
    if not args.count:
        return {"input": args.input}
    from cyclegan.data.images import list_images

    copy = workdir / "input"  # a copy of the first COUNT images
    copy.mkdir()
    for f in list_images(args.input)[: args.count]:
        shutil.copy(f, copy / f.name)
    return {"input": copy}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=["64x64:48", "256x256:16", "1024x768:4"],
                   help="WIDTHxHEIGHT[:COUNT] folders of JPEGs to generate (default 64x64:48 256x256:16 1024x768:4)")
    p.add_argument("--count", type=int, default=None, help="images per folder, overriding the counts in --sizes")
    p.add_argument("--input", type=Path, default=None, help="benchmark this folder instead of generated ones")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=[k for k in SETTINGS if k != "defaults_compile"],
                   help="what to compare (plain always runs: the ratios are against it)")
    p.add_argument("--compile", action="store_true", help="also time the defaults with torch.compile (compile time "
                   "is in warmup_s)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds over all settings (median reported)")
    p.add_argument("--workers", type=int, default=None, help="decoding workers for ours (default: the converter's)")
    p.add_argument("--_run", choices=["plain", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--_folder", dest="folder", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--_out", dest="out", help=argparse.SUPPRESS)
    p.add_argument("--_precision", dest="precision", default="32", help=argparse.SUPPRESS)
    p.add_argument("--_batch-size", dest="batch_size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--_compile", dest="compile_net", action="store_true", help=argparse.SUPPRESS)
    return p


def main() -> None:
    args = _parser().parse_args()
    if args._run:
        args.run, args.compile = args._run, args.compile_net
        print(json.dumps(measure(args)))
        return
    from cyclegan.devices import default_batch_size, native_bf16

    names = list(dict.fromkeys(["plain", *args.settings, *(["defaults_compile"] if args.compile else [])]))
    workdir = Path(tempfile.mkdtemp(prefix="bench-translate-"))
    report = {"bench": "translate", "device": args.device, "native_bf16": native_bf16(args.device),
              "default_batch_size": default_batch_size(args.device), "cpus": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "load_avg": os.getloadavg()[0], "rounds": args.rounds}
    print(f"device {args.device}, native bf16: {report['native_bf16']}, load average {os.getloadavg()[0]:.2f}")
    try:
        for case, folder in _cases(args, workdir).items():
            runs = {name: [] for name in names}
            for r in range(args.rounds):  # alternate the settings, so drifting load hits all alike
                for name in names:
                    runs[name].append(spawn(name, folder, workdir / f"{name}-{case}-{r}", args))
            plain = statistics.median(x["images_per_s"] for x in runs["plain"])
            report[case] = {}
            for name in names:
                rate = statistics.median(x["images_per_s"] for x in runs[name])
                row = {"images_per_s": round(rate, 3), "ratio": round(rate / plain, 3),
                       "warmup_s": statistics.median(x["warmup_s"] for x in runs[name]),
                       "peak_rss_mb": max(x["peak_rss_mb"] for x in runs[name])}
                report[case][name] = row
                print(f"{case:>10} {name:>17} {rate:8.2f} img/s  x{row['ratio']:.2f} vs plain   "
                      f"warm-up {row['warmup_s']:6.2f} s  peak {row['peak_rss_mb']:6.0f} MB", flush=True)
        report["load_avg_end"] = os.getloadavg()[0]
        print(json.dumps(report))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
