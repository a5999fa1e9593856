"""Where users train: one prepared run that measures training and conversion on a CUDA GPU.

    python bench/gpu.py              # on a CUDA machine: about 5 minutes, one JSON line at the end
    python bench/gpu.py --smoke      # the same code on the CPU at tiny sizes (under 2 minutes)

It measures, each in a fresh process (peak memory is its own):

* **the training iteration** at 256 px, ResNet-9 (ngf 64), batch 1 and 4: the textbook reference
  step of bench/train_step.py in fp32 (plain Adam, no Lightning), ours at the default precision
  and ours in fp32 (on a GPU, TF32 convolutions and matmuls, as cuDNN and ``fit`` use them), all
  fed from memory; ratios are against the reference;
* **real data loading**: CycleGAN fitted from two folders of JPEGs (286 px, cropped to 256) with
  the default data loader at batch 4, iterations per second against the in-memory step at the
  same batch (``gpu_busy``: the share of the iteration the step itself takes), and the decode +
  augment cost of one item (an A and a B image) in one worker;
* **conversion** (``cyclegan translate``'s path against the plain one-image loop of the
  original test script) at 256x256 and 1024x768;
* whether this device's instance norm gets one image's gradient wrong when it arrives channels-last
  (the CPU kernel of torch 2.14.1 does; PatchNCE's gather avoids sending one).

Nothing is downloaded; the images are generated. Record the JSON line with the date and the GPU
in docs/speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train_step  # noqa: E402  (bench/train_step.py: the reference step and the in-memory timing)
import translate  # noqa: E402  (bench/translate.py: conversion timing)

FULL = dict(size=256, load=286, ngf=64, ndf=64, n_blocks=9, batches=(1, 4), steps=20, warmup=5,
            images=64, convert=("256x256:64", "1024x768:12"))
SMOKE = dict(size=32, load=36, ngf=8, ndf=8, n_blocks=2, batches=(1, 2), steps=2, warmup=1,
             images=8, convert=("64x64:4", "96x64:2"))


def _fp32_tf32() -> None:
    """fp32 as fit runs it on a GPU: TF32 tensor cores for convolutions (cuDNN's default) and matmuls."""
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")


def time_with_data(root: str, batch: int, precision: str, args, queue) -> None:
    """CycleGAN fitted from JPEG folders with the default data loader: seconds per iteration
    over the timed iterations (data waits included), and the loader's workers."""
    import pytorch_lightning as pl

    from cyclegan import UnpairedImageDataModule

    _fp32_tf32()
    model = train_step._model("cyclegan", args)
    data = UnpairedImageDataModule(root, load_size=args.load, crop_size=args.size, batch_size=batch)
    marks: list[float] = []

    class _Clock(pl.Callback):
        def on_train_batch_start(self, trainer, module, b, i):
            if trainer.global_step in (args.warmup, args.warmup + args.steps - 1):  # batch_idx restarts each epoch
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                marks.append(time.perf_counter())

    trainer = pl.Trainer(max_steps=args.warmup + args.steps, precision=precision, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0, callbacks=[_Clock()], devices=1)
    trainer.fit(model, data)
    loader = trainer.train_dataloader
    queue.put({"s_per_it": (marks[1] - marks[0]) / (args.steps - 1), "workers": loader.num_workers,
               "pin_memory": loader.pin_memory, "peak_mb": train_step._peak_memory_mb()})


def item_cost_ms(root: Path, args) -> float:
    """Decode + augment of one training item (an A and a B image) in this process, median of all."""
    from cyclegan import UnpairedImageDataModule

    data = UnpairedImageDataModule(str(root), load_size=args.load, crop_size=args.size, num_workers=0)
    data.setup("fit")
    times = []
    for i in range(len(data.train_set)):
        start = time.perf_counter()
        data.train_set[i]
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def training(args, default_precision: str, root: Path) -> dict:
    out = {}
    for batch in args.batches:
        step_args = argparse.Namespace(ngf=args.ngf, ndf=args.ndf, n_blocks=args.n_blocks, batch=batch,
                                       warmup=args.warmup, steps=args.steps, compile=False)
        rows = {"reference_fp32": train_step._in_subprocess(train_step.time_reference, "cyclegan", args.size, step_args)}
        for name, precision in (("ours_default", default_precision), ("ours_fp32", "32")):
            rows[name] = train_step._in_subprocess(train_step.time_ours, "cyclegan", args.size, precision, step_args)
        ref = statistics.median(rows["reference_fp32"]["ms"])
        line = {}
        for name, r in rows.items():
            if "failed" in r:
                line[name] = r
                continue
            ms = statistics.median(r["ms"])
            line[name] = {"ms": round(ms, 2), "peak_mb": round(r["peak_mb"]), "x_reference": round(ref / ms, 2)}
        out[f"batch{batch}"] = line
        print(f"train {args.size}px batch {batch}: " + "  ".join(
            f"{k} {v['ms']:.1f} ms x{v['x_reference']:.2f} ({v['peak_mb']} MB)" if "ms" in v else f"{k} FAILED"
            for k, v in line.items()), flush=True)
    return out


def data_loading(args, default_precision: str, root: Path, in_memory_ms: float | None) -> dict:
    batch = args.batches[-1]
    r = train_step._in_subprocess(time_with_data, str(root), batch, default_precision, args)
    if "failed" in r:
        return r
    ms = 1000 * r["s_per_it"]
    item = item_cost_ms(root, args)
    row = {"batch": batch, "ms_per_it": round(ms, 2), "it_per_s": round(1000 / ms, 2), "workers": r["workers"],
           "pin_memory": r["pin_memory"], "item_decode_augment_ms": round(item, 2),
           # what the workers could deliver, batches per second, if they had the CPUs to themselves
           "loader_capacity_it_per_s": round(1000 * max(r["workers"], 1) / (item * batch), 1),
           "in_memory_ms": in_memory_ms,
           "gpu_busy": round(min(1.0, in_memory_ms / ms), 3) if in_memory_ms else None}
    print(f"data: {row['it_per_s']} it/s from JPEGs at batch {batch} ({r['workers']} workers, "
          f"{item:.1f} ms per item), in memory {in_memory_ms} ms -> busy {row['gpu_busy']}", flush=True)
    return row


def conversion(args, device: str, workdir: Path) -> dict:
    options = argparse.Namespace(device=device, workers=None)
    out = {}
    for text in args.convert:
        width, height, count = translate.parse_size(text, None)
        folder = translate.make_folder(workdir / f"convert-{width}x{height}", count, width, height)
        rates = {name: translate.spawn(name, folder, workdir / f"out-{name}-{width}x{height}", options)["images_per_s"]
                 for name in ("plain", "defaults")}
        out[f"{width}x{height}"] = {**rates, "x_plain": round(rates["defaults"] / rates["plain"], 2)}
        print(f"convert {width}x{height}: plain {rates['plain']:.1f} img/s, defaults {rates['defaults']:.1f} img/s "
              f"(x{out[f'{width}x{height}']['x_plain']:.2f})", flush=True)
    return out


def norm_gradient_check(device: str) -> dict:
    """Relative error of instance norm's gradient for one image (1, 64, 16, 16) fed a channels-last
    incoming gradient, against the formula: torch's kernel as is (wrong on the CPU in torch 2.14.1),
    and through PatchNCE's gather (``_gather``, which sends the gradient in the map's own layout)."""
    from cyclegan.models.patchnce import _gather

    torch.manual_seed(0)
    x = torch.randn(1, 64, 16, 16, device=device, requires_grad=True)
    upstream = torch.randn(1, 16, 16, 64, device=device).permute(0, 3, 1, 2)  # channels-last strides
    idx = torch.randperm(256, device=device)
    weights = torch.randn(256, 64, device=device)

    def formula(t):
        mean, var = t.mean((2, 3), keepdim=True), t.var((2, 3), keepdim=True, unbiased=False)
        return (t - mean) / torch.sqrt(var + 1e-5)

    def error(norm, loss) -> float:
        got = torch.autograd.grad(loss(norm(x)), x)[0]
        want = torch.autograd.grad(loss(formula(x)), x)[0]
        return float((got - want).norm() / want.norm())

    kernel = error(torch.nn.functional.instance_norm, lambda y: (y * upstream).sum())
    gathered = error(torch.nn.functional.instance_norm, lambda y: (_gather(y, idx) * weights).sum())
    return {"torch_kernel": round(kernel, 6), "patchnce_gather": round(gathered, 6)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the code, measures nothing")
    args = parser.parse_args(argv)
    from cyclegan.devices import training_precision

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        raise SystemExit("error: no CUDA GPU here; bench/gpu.py --smoke runs the same code on the CPU at tiny sizes")
    for key, value in (SMOKE if args.smoke else FULL).items():
        setattr(args, key, value)
    args.compile = False
    device = "cuda" if cuda else "cpu"
    default_precision = training_precision("gpu" if cuda else "cpu")
    started = time.perf_counter()
    report = {"bench": "gpu", "smoke": args.smoke, "date": time.strftime("%Y-%m-%d"),
              "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
              "cuda": torch.version.cuda, "cpus": os.cpu_count(), "default_precision": default_precision,
              "size": args.size, "generator": f"ResNet-{args.n_blocks} ngf {args.ngf}"}
    print(f"device {report['device']}, torch {torch.__version__}, default precision {default_precision}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    try:
        root = workdir / "data"
        for side, seed in (("trainA", 0), ("trainB", 1)):
            translate.make_folder(root / side, args.images, args.load, args.load, seed=seed)
        report["train"] = training(args, default_precision, root)
        in_memory = report["train"][f"batch{args.batches[-1]}"].get("ours_default", {}).get("ms")
        report["data"] = data_loading(args, default_precision, root, in_memory)
        report["convert"] = conversion(args, device, workdir)
        report["instance_norm_one_image_channels_last_grad_error"] = norm_gradient_check(device)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    main()
