"""``cyclegan evaluate`` and ``cyclegan compare``: score translators beside trivial references.

    cyclegan evaluate --checkpoint last.ckpt --input maps/testA --reference maps/testB --target maps/testB
    cyclegan compare --checkpoint m1.ckpt --checkpoint cyc.ckpt --input maps/testA --target maps/testB --probe 32

Every model translates the same inputs at ``--translate-size`` (default: the evaluation
size); outputs, targets and references are scored at ``--size`` x ``--size`` (256 by
default), all resized with one stated filter. Each table also shows trivial references
(a flat image of the target domain's median colour, the unchanged input and, when
translating below the evaluation size, the ground truth squeezed through that size), so
that a score reads against what costs nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from . import metrics as M
from .checkpoint import CheckpointError, fail, load_generator, read_checkpoint
from .data import IMAGE_EXTENSIONS, DataError, list_images, read_image, to_uint8

FILTERS = {
    "bicubic": (cv2.INTER_CUBIC, "bicubic (cv2 INTER_CUBIC, no antialiasing, as the training pipeline)"),
    "bilinear": (cv2.INTER_LINEAR, "bilinear (cv2 INTER_LINEAR)"),
    "area": (cv2.INTER_AREA, "area (cv2 INTER_AREA, antialiased when shrinking)"),
    "lanczos": (cv2.INTER_LANCZOS4, "Lanczos (cv2 INTER_LANCZOS4)"),
    "nearest": (cv2.INTER_NEAREST, "nearest (cv2 INTER_NEAREST)"),
}
REF_FLAT, REF_INPUT = "ref: flat median colour", "ref: input unchanged"


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated as asked; one-line message."""


# --------------------------------------------------------------------------- images


def resize(image: np.ndarray, size: int, filter: str) -> np.ndarray:
    """uint8 (H, W, C) -> (size, size, C): centre crop to a square, then resize with ``filter``."""
    h, w = image.shape[:2]
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        image = image[top:top + s, left:left + s]
    if image.shape[0] != size:
        channels = image.shape[2]
        image = cv2.resize(image, (size, size), interpolation=FILTERS[filter][0]).reshape(size, size, channels)
    return np.array(image)  # a writable copy (PIL's arrays are read-only)


def load_images(paths: list[Path], sizes: list[int], *, filter: str, channels: int = 3) -> dict[int, torch.Tensor]:
    """Each file read once and resized to every size in ``sizes``: {size: uint8 (N, channels, size, size)}."""
    out: dict[int, list[torch.Tensor]] = {s: [] for s in sizes}
    for path in paths:
        try:
            image = read_image(path, channels=channels)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read image {path}: {e}") from None
        for s in sizes:
            out[s].append(torch.from_numpy(resize(image, s, filter)).permute(2, 0, 1))
    return {s: torch.stack(v) if v else torch.zeros(0, channels, s, s, dtype=torch.uint8) for s, v in out.items()}


def resize_batch(images: torch.Tensor, size: int, *, filter: str) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, C, size, size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return torch.stack([torch.from_numpy(resize(im.permute(1, 2, 0).numpy(), size, filter)).permute(2, 0, 1)
                        for im in images])


def rgb(images: torch.Tensor) -> torch.Tensor:
    """Grayscale (N, 1, H, W) shown and scored as RGB."""
    return images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images



def match_targets(input_dir: Path, inputs: list[Path], target_dir: Path) -> list[Path | None]:
    """The target with the same relative path as each input; failing that, the same stem with any image extension."""
    if not target_dir.is_dir():
        raise DataError(f"target folder not found: {target_dir}")
    by_stem: dict[tuple[Path, str], Path] = {}
    for p in sorted(target_dir.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            rel = p.relative_to(target_dir)
            by_stem.setdefault((rel.parent, rel.stem), p)
    out = []
    for p in inputs:
        rel = p.relative_to(input_dir)
        exact = target_dir / rel
        out.append(exact if exact.is_file() else by_stem.get((rel.parent, rel.stem)))
    return out


# --------------------------------------------------------------------------- translators


@dataclass
class Translator:
    """A checkpoint's generator for one direction and, for CycleGAN, the way back."""

    name: str
    kind: str
    path: Path
    forward: nn.Module
    backward: nn.Module | None
    input_nc: int
    output_nc: int
    stride: int = 4


def load_translator(path: str | os.PathLike, *, direction: str = "a2b", name: str | None = None) -> Translator:
    meta = read_checkpoint(path)["translator"]
    forward = load_generator(path, direction)
    other = "b2a" if direction == "a2b" else "a2b"
    backward = load_generator(path, other) if other in meta["directions"] else None
    in_nc, out_nc = meta["input_nc"], meta["output_nc"]
    if direction == "b2a":
        in_nc, out_nc = out_nc, in_nc
    stride = 4 if meta["generator"].get("arch", "resnet") == "resnet" else 2 ** int(meta["generator"].get("n_downs", 8))
    return Translator(name or meta["kind"], meta["kind"], Path(path), forward, backward, in_nc, out_nc, stride)


@torch.inference_mode()
def translate(t: Translator, images: torch.Tensor, *, batch_size: int, device: torch.device,
              cycle: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 inputs (N, C_in, S, S) -> uint8 outputs (N, C_out, S, S) and, if ``cycle``, F(G(x)) (N, C_in, S, S)."""
    fwd = t.forward.to(device)
    back = t.backward.to(device) if cycle and t.backward is not None else None
    outs, recs = [], []
    for i in range(0, images.shape[0], batch_size):
        x = images[i:i + batch_size].to(device).float() / 127.5 - 1  # (B, C, S, S) in [-1, 1]
        y = fwd(x)
        outs.append(to_uint8(y).cpu())
        if back is not None:
            recs.append(to_uint8(back(y)).cpu())  # the round trip sees G's unquantised output, as in training
    return torch.cat(outs), (torch.cat(recs) if back is not None else None)


# --------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """Everything a table, a report or a W&B run needs. Rows are models, then references."""

    card: M.ProtocolCard
    names: list[str]  # input file names relative to the input folder, (N,)
    inputs: torch.Tensor  # uint8 (N, 3, E, E)
    targets: torch.Tensor | None  # uint8 (N, 3, E, E); white where an input has no target
    has_target: torch.Tensor | None  # bool (N,)
    outputs: dict[str, torch.Tensor]  # row -> uint8 (N, 3, E, E)
    per_image: dict[str, dict[str, torch.Tensor]]  # row -> metric -> (N,), NaN where not defined
    summary: dict[str, dict[str, float]]  # row -> metric -> value
    kinds: dict[str, str]  # row -> "model" | "reference"
    checkpoints: dict[str, str] = field(default_factory=dict)

    def metric_names(self) -> list[str]:
        present = {k for row in self.summary.values() for k in row}
        return [k for k in M.HIGHER_IS_BETTER if k in present]


def _mean(values: torch.Tensor) -> float:
    finite = values[~torch.isnan(values)]
    return float(finite.double().mean()) if finite.numel() else float("nan")


def evaluate_translators(
    translators: list[Translator], input_dir: str | os.PathLike, *, reference_dir: str | os.PathLike | None = None,
    target_dir: str | os.PathLike | None = None, direction: str = "a2b", size: int = 256,
    translate_size: int | None = None, filter: str = "bicubic", extractor: M.FeatureExtractor | None = None,
    kid_subsets: int = 100, kid_subset_size: int = 100, limit: int | None = None, reference_limit: int | None = None,
    batch_size: int = 8, device: str | torch.device = "cpu", log=print,
) -> Evaluation:
    """Translate ``input_dir`` with every translator and score outputs and trivial references."""
    input_dir = Path(input_dir)
    translate_size = translate_size or size
    device = torch.device(device)
    for t in translators:
        if translate_size % t.stride:
            raise EvaluationError(f"the generators would see {translate_size} px images, not a multiple of {t.stride} "
                                  f"as the {t.name} generator needs (set --translate-size or --size)")
    in_nc = {t.input_nc for t in translators}
    if len(in_nc) > 1:
        raise EvaluationError("the checkpoints take inputs with different channel counts; compare like with like")
    in_nc = in_nc.pop()

    files = list_images(input_dir)[:limit] if limit else list_images(input_dir)
    names = [str(p.relative_to(input_dir)) for p in files]
    log(f"reading {len(files)} inputs from {input_dir}")
    loaded = load_images(files, sorted({size, translate_size}), filter=filter, channels=in_nc)
    inputs_s, inputs_e = loaded[translate_size], rgb(loaded[size])
    n = len(files)

    card = M.ProtocolCard(direction=direction, input_dir=str(input_dir), n_inputs=n, eval_size=size,
                          translate_size=translate_size, resize_filter=FILTERS[filter][1])
    if translate_size != size:
        card.notes.append(f"inputs resized to {translate_size} px for the generators; outputs resized back to {size} px "
                          f"with the same filter before scoring")

    targets = has_target = None
    if target_dir is not None:
        target_dir = Path(target_dir)
        matched = match_targets(input_dir, files, target_dir)
        has_target = torch.tensor([m is not None for m in matched])
        if not has_target.any():
            raise EvaluationError(f"no input in {input_dir} has a target of the same name in {target_dir}")
        found = load_images([m for m in matched if m is not None], [size], filter=filter)[size]
        targets = torch.full((n, 3, size, size), 255, dtype=torch.uint8)  # white where an input has no target
        targets[has_target] = found
        card.target_dir, card.n_paired = str(target_dir), int(has_target.sum())
        card.n_unmatched_inputs = n - card.n_paired

    reference = None
    if reference_dir is not None:
        reference_dir = Path(reference_dir)
        ref_files = list_images(reference_dir)
        ref_files = ref_files[:reference_limit] if reference_limit else ref_files
        log(f"reading {len(ref_files)} reference images from {reference_dir}")
        reference = load_images(ref_files, [size], filter=filter)[size]
        card.reference_dir, card.n_reference = str(reference_dir), len(ref_files)

    # Rows: every model's outputs, then the trivial references, all uint8 (N, 3, E, E).
    outputs: dict[str, torch.Tensor] = {}
    cycles: dict[str, torch.Tensor] = {}
    kinds: dict[str, str] = {}
    for t in translators:
        start = time.perf_counter()
        out_s, rec_s = translate(t, inputs_s, batch_size=batch_size, device=device, cycle=True)
        outputs[t.name] = rgb(resize_batch(out_s, size, filter=filter))
        if rec_s is not None:
            cycles[t.name] = M.cycle_rmse(rgb(inputs_s), rgb(rec_s))
        kinds[t.name] = "model"
        log(f"translated {n} images with {t.name} ({t.kind}, {t.path}) in {time.perf_counter() - start:.1f} s")

    colour_source = reference if reference is not None else (targets[has_target] if targets is not None else None)
    if colour_source is not None:
        colour = M.median_colour(colour_source)
        outputs[REF_FLAT] = M.flat_images(colour, n, (size, size))
        kinds[REF_FLAT] = "reference"
        src = "reference set" if reference is not None else "paired targets (optimistic: it has seen them)"
        card.notes.append(f"{REF_FLAT}: RGB {colour}, the per-channel median of the {src}")
    outputs[REF_INPUT], kinds[REF_INPUT] = inputs_e, "reference"
    if targets is not None and translate_size < size:
        squeezed = f"ref: target via {translate_size} px"
        outputs[squeezed] = resize_batch(resize_batch(targets, translate_size, filter=filter), size, filter=filter)
        kinds[squeezed] = "reference"
        card.notes.append(f"{squeezed}: the ground truth resized to {translate_size} px and back, the best a "
                          f"translator working at {translate_size} px can reach")

    per_image: dict[str, dict[str, torch.Tensor]] = {}
    for row, out in outputs.items():
        scores: dict[str, torch.Tensor] = {}
        if targets is not None:
            paired = M.paired_metrics(out[has_target], targets[has_target])
            for k, v in paired.items():
                full = torch.full((n,), float("nan"))
                full[has_target] = v.float()
                scores[k] = full
        scores["layout_corr"] = M.layout_correlation(inputs_e, out)
        if row in cycles:
            scores["cycle_rmse"] = cycles[row]
        per_image[row] = scores
    summary = {row: {k: _mean(v) for k, v in scores.items()} for row, scores in per_image.items()}
    card.notes.append("layout_corr: |Pearson correlation| of input and output luma at 64 px, content kept "
                      "without ground truth (read it against the references: the unchanged input scores 1)")
    if cycles:
        card.notes.append(f"cycle_rmse: RMSE (0-255) between each input at {translate_size} px and F(G(input)), "
                          f"CycleGAN only")

    if extractor is not None:
        if reference is None:
            raise EvaluationError("KID/FID need --reference DIR (real images of the target domain); "
                                  "or pass --features none")
        card.feature_extractor, card.feature_weights_sha256 = extractor.name, extractor.weights_sha256
        card.feature_input, card.feature_standard = extractor.input_note, extractor.standard
        card.kid_subsets = kid_subsets
        start = time.perf_counter()
        real = M.extract_features(reference, extractor, device=device)
        for row, out in outputs.items():
            if row == REF_FLAT:  # n copies of one image: extract it once
                fake = M.extract_features(out[:1], extractor, device=device).expand(n, -1)
            else:
                fake = M.extract_features(out, extractor, device=device)
            if min(real.shape[0], fake.shape[0]) < 2:
                card.notes.append("KID/FID skipped: fewer than 2 images")
                break
            mean, std, used = M.kid(real, fake, subsets=kid_subsets, subset_size=kid_subset_size)
            summary[row].update(kid_mean=mean, kid_std=std, fid=M.fid(real, fake))
            card.kid_subset_size = used
        log(f"KID/FID features ({extractor.name}) in {time.perf_counter() - start:.1f} s")
        if not extractor.standard:
            card.notes.append("KID/FID use a non-standard feature extractor: compare them only within this table")
        card.notes.append(f"FID from {min(n, card.n_reference)} images is strongly biased upwards; prefer KID here")

    reuse = []
    if reference_dir is not None and target_dir is not None and Path(reference_dir).resolve() == Path(target_dir).resolve():
        reuse.append("the KID/FID reference set is the paired target set (the ground truth of these very inputs)")
    if reference_dir is not None and Path(reference_dir).resolve() == input_dir.resolve():
        reuse.append("the reference set is the input set")
    card.inputs_reused = bool(reuse)
    card.notes += [f"reuse: {r}" for r in reuse]
    return Evaluation(card=card, names=names, inputs=inputs_e, targets=targets, has_target=has_target,
                      outputs=outputs, per_image=per_image, summary=summary, kinds=kinds,
                      checkpoints={t.name: str(t.path) for t in translators})


# --------------------------------------------------------------------------- printing


def format_value(metric: str, value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf"
    if metric == "pixel_acc":
        return f"{100 * value:.1f}%"
    if metric in ("kid_mean", "kid_std"):
        return f"{value:.4f}" + (f"±{std:.4f}" if std is not None else "")
    if metric in ("ssim", "edge_f1", "layout_corr"):
        return f"{value:.3f}"
    return f"{value:.2f}"


def format_table(ev: Evaluation) -> str:
    """A plain-text table: one row per model and reference, arrows saying which way is better."""
    metrics = [m for m in ev.metric_names() if m != "kid_std"]
    heads = ["", *[("kid" if m == "kid_mean" else m) + ("↑" if M.HIGHER_IS_BETTER[m] else "↓") for m in metrics]]
    rows = [[name, *[format_value(m, ev.summary[name].get(m), ev.summary[name].get("kid_std") if m == "kid_mean" else None)
                      for m in metrics]] for name in ev.summary]
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    out, previous = [line(heads)], "model"
    for name, r in zip(ev.summary, rows):
        if ev.kinds[name] != previous:  # a rule between the models and the references
            out.append("-" * len(out[0]))
            previous = ev.kinds[name]
        out.append(line(r))
    return "\n".join(out)


def json_safe(value):
    """Non-finite floats become None (JSON has no inf/NaN); tensors become lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluation_dict(ev: Evaluation) -> dict:
    return json_safe({"card": ev.card.to_dict(), "checkpoints": ev.checkpoints, "kinds": ev.kinds,
                      "summary": ev.summary})


# --------------------------------------------------------------------------- W&B


def wandb_run(*, job_type: str, group: str | None, save_dir: Path, config: dict, tags: list[str]):
    """A W&B run in project "cyclegan", offline when WANDB_MODE says so or no login is found
    (the rule of :class:`cyclegan.tracking.WandbLogger`); returns (run, offline)."""
    import wandb

    from .tracking import wandb_login_found

    offline = os.environ.get("WANDB_MODE") in ("offline", "dryrun") or not wandb_login_found()
    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project="cyclegan", dir=str(save_dir), job_type=job_type, group=group, config=config,
                     tags=tags, mode="offline" if offline else "online",
                     settings=wandb.Settings(quiet=True, console="off"))
    return run, offline


def describe_run(run, offline: bool) -> str:
    run_dir = Path(run.dir).parent
    if offline:
        return f"W&B run {run.id} logged offline to {run_dir}; upload it later with: wandb sync {run_dir}"
    return f"W&B run {run.id}: {run.url}"


def summary_table(ev: Evaluation):
    import wandb

    metrics = ev.metric_names()
    data = [[name, ev.kinds[name], *[json_safe(ev.summary[name].get(m)) for m in metrics]] for name in ev.summary]
    return wandb.Table(columns=["model", "kind", *metrics], data=data)


def log_summary_to_wandb(run, ev: Evaluation) -> None:
    """The summary table, one bar chart per metric (models and references), and run.summary values."""
    import wandb

    table = summary_table(ev)
    logs = {"summary": table}
    for m in ev.metric_names():
        logs[f"charts/{m}"] = wandb.plot.bar(table, "model", m, title=f"{m} ({'higher' if M.HIGHER_IS_BETTER[m] else 'lower'} is better)")
    run.log(logs)
    for name, row in ev.summary.items():
        for m, v in row.items():
            if math.isfinite(v):
                run.summary[f"{name}/{m}"] = v


# --------------------------------------------------------------------------- commands


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="folder of source-domain images to translate")
    p.add_argument("--reference", help="folder of real target-domain images: the KID/FID reference and the flat-colour reference")
    p.add_argument("--target", help="folder of ground truth: files with the same relative name as the inputs (paired metrics)")
    p.add_argument("--direction", choices=["a2b", "b2a"], default="a2b")
    p.add_argument("--size", type=int, default=256, help="evaluation size: outputs and targets are scored at SIZE x SIZE")
    p.add_argument("--translate-size", type=int, help="size the generators see (default: --size); e.g. the training crop")
    p.add_argument("--filter", choices=sorted(FILTERS), default="bicubic", help="resize filter for every resize")
    p.add_argument("--features", choices=["inception", "random-conv", "none"], default="inception",
                   help="KID/FID features: the FID Inception network (torch-fidelity download or --inception), "
                        "a deterministic random conv net (not comparable to published numbers), or none")
    p.add_argument("--inception", metavar="PATH", help="local TorchScript file of the FID Inception network (offline machines)")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=100)
    p.add_argument("--limit", type=int, help="use only the first N inputs (sorted by name)")
    p.add_argument("--reference-limit", type=int, help="use only the first N reference images")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--wandb-group", help="W&B group, e.g. the dataset")
    p.add_argument("--wandb-dir", default="runs", help="where the W&B run folder (wandb/) goes")


def _validate(args: argparse.Namespace) -> None:
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


def _default_out(kind: str) -> Path:
    return Path("runs") / kind / time.strftime("%Y%m%d-%H%M%S")


def _setup(args: argparse.Namespace, names: list[str | None]) -> tuple[list[Translator], M.FeatureExtractor | None]:
    _validate(args)
    translators = [load_translator(c, direction=args.direction, name=n) for c, n in zip(args.checkpoint, names)]
    seen: dict[str, int] = {}
    for t in translators:  # unique row names: method1, cyclegan, cyclegan-2, ...
        seen[t.name] = seen.get(t.name, 0) + 1
        if seen[t.name] > 1:
            t.name = f"{t.name}-{seen[t.name]}"
    if args.features != "none" and args.reference is None:
        raise EvaluationError("KID/FID need --reference DIR (real images of the target domain); or pass --features none")
    # Load the feature network before translating, so that a missing one fails in seconds.
    return translators, M.load_feature_extractor(args.features, inception_path=args.inception)


def _run(args: argparse.Namespace, translators: list[Translator], extractor) -> Evaluation:
    log = lambda msg: print(msg, file=sys.stderr)
    return evaluate_translators(
        translators, args.input, reference_dir=args.reference, target_dir=args.target, direction=args.direction,
        size=args.size, translate_size=args.translate_size, filter=args.filter, extractor=extractor,
        kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, limit=args.limit,
        reference_limit=args.reference_limit, batch_size=args.batch_size, device=args.device, log=log,
    )


def main_evaluate(argv: list[str] | None = None) -> int:
    """``cyclegan evaluate``: print a table beside trivial references and write metrics.json."""
    p = _Parser(prog="cyclegan evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, action="append", help="a training checkpoint (.ckpt)")
    p.add_argument("--name", help="row name of the model (default: its kind)")
    p.add_argument("--out", type=Path, help="output folder for metrics.json (default: runs/evaluate/<time>)")
    p.add_argument("--wandb", action="store_true", help="also log the table to a W&B run (offline without a login)")
    _common_arguments(p)
    args = p.parse_args(argv)
    if len(args.checkpoint) > 1:
        p.error("evaluate takes one --checkpoint; use cyclegan compare for several")
    try:
        translators, extractor = _setup(args, [args.name])
        ev = _run(args, translators, extractor)
    except (DataError, CheckpointError, M.MetricsError, EvaluationError) as e:
        return fail(e)
    out = args.out or _default_out("evaluate")
    out.mkdir(parents=True, exist_ok=True)
    from .report import write_json

    write_json(out / "metrics.json", evaluation_dict(ev))
    print(format_table(ev))
    for line in ev.card.lines():
        print(f"  {line}")
    print(f"metrics: {out / 'metrics.json'}")
    if args.wandb:
        run, offline = wandb_run(job_type="evaluate", group=args.wandb_group, save_dir=Path(args.wandb_dir),
                                  config={"card": json_safe(ev.card.to_dict()), "checkpoints": ev.checkpoints},
                                  tags=[t.kind for t in translators])
        log_summary_to_wandb(run, ev)
        run.finish()
        print(describe_run(run, offline))
    return 0


def main_compare(argv: list[str] | None = None) -> int:
    """``cyclegan compare``: the same inputs through every model; report.html, grid.png, metrics.csv/json, W&B."""
    p = _Parser(prog="cyclegan compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, action="append", help="a training checkpoint; repeat for each model")
    p.add_argument("--name", action="append", help="row name per --checkpoint, in order (default: the model kind)")
    p.add_argument("--probe", type=int, default=32, help="images shown side by side (evenly spaced over the sorted inputs)")
    p.add_argument("--grid-cell", type=int, default=128, help="pixel size of one image in grid.png")
    p.add_argument("--out", type=Path, help="output folder (default: runs/compare/<time>)")
    p.add_argument("--no-wandb", action="store_true", help="write only the local report")
    _common_arguments(p)
    args = p.parse_args(argv)
    if args.name and len(args.name) != len(args.checkpoint):
        p.error(f"give one --name per --checkpoint ({len(args.checkpoint)}), or none")
    if args.probe < 1 or args.grid_cell < 8:
        p.error("--probe must be at least 1 and --grid-cell at least 8")
    try:
        translators, extractor = _setup(args, args.name or [None] * len(args.checkpoint))
        ev = _run(args, translators, extractor)
    except (DataError, CheckpointError, M.MetricsError, EvaluationError) as e:
        return fail(e)
    from .report import write_report

    out = args.out or _default_out("compare")
    written = write_report(ev, out, probe=args.probe, grid_cell=args.grid_cell)
    print(format_table(ev))
    for line in ev.card.lines():
        print(f"  {line}")
    for label, path in written.items():
        if label != "probes":
            print(f"{label}: {path}")
    if not args.no_wandb:
        from .report import log_compare_to_wandb

        run, offline = wandb_run(job_type="compare", group=args.wandb_group, save_dir=Path(args.wandb_dir),
                                  config={"card": json_safe(ev.card.to_dict()), "checkpoints": ev.checkpoints},
                                  tags=sorted({t.kind for t in translators}))
        log_compare_to_wandb(run, ev, written["probes"], grid=written["grid"])
        run.finish()
        print(describe_run(run, offline))
    return 0
