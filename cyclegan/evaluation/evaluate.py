"""Scoring translators beside trivial references (``cyclegan evaluate`` and ``cyclegan compare``).

Every model translates the same inputs at ``translate_size`` (default: the evaluation
size); outputs, targets and references are scored at ``size`` x ``size`` (256 by
default), all resized with one stated filter. Each table also shows trivial references
(a flat image of the target domain's median colour, the unchanged input and, when
translating below the evaluation size, the ground truth squeezed through that size), so
that a score reads against what costs nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from cyclegan.evaluation import metrics as M
from cyclegan.evaluation.features import FeatureExtractor, extract_features
from cyclegan.evaluation.sizes import announce, choose_sizes
from cyclegan.devices import default_batch_size
from cyclegan.errors import DataError, EvaluationError
from cyclegan.data.images import IMAGE_EXTENSIONS, list_images, read_image, resize_array, to_uint8
from cyclegan.inference.translator import Translator

# --filter name -> (cv2 flag, how the protocol card names it); None: the resize rule of
# cyclegan.data.images, the one training and ``translate --resize`` use.
FILTERS = {
    "antialiased": (None, "antialiased (area average when shrinking, bicubic when enlarging, as the training pipeline)"),
    "bicubic": (cv2.INTER_CUBIC, "bicubic (cv2 INTER_CUBIC, no antialiasing)"),
    "bilinear": (cv2.INTER_LINEAR, "bilinear (cv2 INTER_LINEAR)"),
    "area": (cv2.INTER_AREA, "area (cv2 INTER_AREA, antialiased when shrinking)"),
    "lanczos": (cv2.INTER_LANCZOS4, "Lanczos (cv2 INTER_LANCZOS4)"),
    "nearest": (cv2.INTER_NEAREST, "nearest (cv2 INTER_NEAREST)"),
}
REF_FLAT, REF_INPUT = "ref: flat median colour", "ref: input unchanged"
Log = Callable[[str], None]


def progress_bar(iterable, *, desc: str, total: int | None = None, progress: bool = True):
    """A tqdm bar on stderr for one phase; off with ``progress=False`` and when stderr is not a terminal.
    A terminal that reports its size as 0 x 0 (a pseudo-terminal nobody sized: ``script``, some IDEs
    and containers) is taken as 80 x 24: tqdm reads it as -1 rows there and shows no bar at all."""
    try:
        unsized = 0 in os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, ValueError, OSError):  # not a real terminal (a file, a test's stream)
        unsized = False
    size = {"ncols": 80, "nrows": 24} if unsized else {"dynamic_ncols": True}
    return tqdm(iterable, desc=desc, total=total, unit="img", leave=False, file=sys.stderr,
                disable=None if progress else True, **size)


# --------------------------------------------------------------------------- images


def crop_square_and_resize(image: np.ndarray, size: int, filter: str) -> np.ndarray:
    """uint8 (H, W, C) -> (size, size, C): centre crop to a square, then resize with ``filter``."""
    h, w = image.shape[:2]
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        image = image[top:top + s, left:left + s]
    if image.shape[0] != size:
        flag = FILTERS[filter][0]
        if flag is None:  # antialiased
            image = resize_array(image, (size, size))
        else:
            image = cv2.resize(image, (size, size), interpolation=flag).reshape(size, size, image.shape[2])
    return np.array(image)  # a writable copy (PIL's arrays are read-only)


def load_images(paths: list[Path], sizes: list[int], *, filter: str, channels: int = 3, desc: str = "reading",
                progress: bool = False) -> dict[int, torch.Tensor]:
    """Each file read once and resized to every size in ``sizes``: {size: uint8 (N, channels, size, size)}."""
    out: dict[int, list[torch.Tensor]] = {s: [] for s in sizes}
    for path in progress_bar(paths, desc=desc, progress=progress):
        try:
            image = read_image(path, channels=channels)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read image {path}: {e}") from None
        for s in sizes:
            out[s].append(torch.from_numpy(crop_square_and_resize(image, s, filter)).permute(2, 0, 1))
    return {s: torch.stack(v) if v else torch.zeros(0, channels, s, s, dtype=torch.uint8) for s, v in out.items()}


def resize_batch(images: torch.Tensor, size: int, *, filter: str) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, C, size, size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return torch.stack([torch.from_numpy(crop_square_and_resize(im.permute(1, 2, 0).numpy(), size, filter)).permute(2, 0, 1)
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
    row_types: dict[str, str]  # row -> "model" | "reference" (metrics.json's "kinds")
    checkpoints: dict[str, str] = field(default_factory=dict)

    def metric_names(self) -> list[str]:
        present = {k for row in self.summary.values() for k in row}
        return [k for k in M.HIGHER_IS_BETTER if k in present]


def _mean(values: torch.Tensor) -> float:
    finite = values[~torch.isnan(values)]
    return float(finite.double().mean()) if finite.numel() else float("nan")


# --------------------------------------------------------------------------- translating


def row_names(translators: list[Translator], names: list[str | None] | None = None) -> list[str]:
    """A unique row name per translator: the given one or its kind (method1, cyclegan, cyclegan-2, ...)."""
    seen: dict[str, int] = {}
    out = []
    for t, name in zip(translators, names or [None] * len(translators)):
        name = name or t.kind
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def run_translator(t: Translator, images: torch.Tensor, *, batch_size: int, cycle: bool = False,
                   bar=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 inputs (N, C_in, S, S), S a multiple of the stride -> uint8 outputs (N, C_out, S, S) and,
    if ``cycle`` and the translator has an inverse, F(G(x)) (N, C_in, S, S). ``bar``: a tqdm to advance."""
    back = t.inverse if cycle else None
    outs, recs = [], []
    for i in range(0, images.shape[0], batch_size):
        if bar is not None:
            bar.update(min(batch_size, images.shape[0] - i))
        x = images[i:i + batch_size].float() / 127.5 - 1  # (B, C, S, S) in [-1, 1]
        y = t.forward(x)
        outs.append(to_uint8(y).cpu())
        if back is not None:
            recs.append(to_uint8(back.forward(y)).cpu())  # the round trip sees G's unquantised output, as in training
    return torch.cat(outs), (torch.cat(recs) if back is not None else None)


# --------------------------------------------------------------------------- evaluation phases


@dataclass
class _Data:
    """The images every row is scored on; uint8, E the evaluation size, S the translation size."""

    files: list[Path]
    at_translate: torch.Tensor  # inputs (N, C_in, S, S)
    inputs: torch.Tensor  # (N, 3, E, E)
    targets: torch.Tensor | None = None  # (N, 3, E, E), white where an input has no target
    has_target: torch.Tensor | None = None  # bool (N,)
    reference: torch.Tensor | None = None  # (M, 3, E, E)


def _check_translators(translators: list[Translator], names: list[str], translate_size: int) -> int:
    """The input channel count they share."""
    for t, name in zip(translators, names):
        if translate_size % t.stride:
            raise EvaluationError(f"the generators would see {translate_size} px images, not a multiple of {t.stride} "
                                  f"as the {name} generator needs (set --translate-size or --size)")
    in_nc = {t.input_nc for t in translators}
    if len(in_nc) > 1:
        raise EvaluationError("the checkpoints take inputs with different channel counts; compare like with like")
    return in_nc.pop()


def _read_data(card: M.ProtocolCard, *, input_dir: Path, limit, target_dir, reference_dir, reference_limit,
               filter: str, in_nc: int, log: Log, progress: bool) -> _Data:
    """Inputs at both sizes, matched targets and the reference set; counts go on the card."""
    size, translate_size = card.eval_size, card.translate_size
    files = list_images(input_dir)[:limit] if limit else list_images(input_dir)
    log(f"reading {len(files)} inputs from {input_dir}")
    loaded = load_images(files, sorted({size, translate_size}), filter=filter, channels=in_nc, desc="reading inputs",
                         progress=progress)
    data = _Data(files, loaded[translate_size], rgb(loaded[size]))
    card.n_inputs = n = len(files)
    if target_dir is not None:
        target_dir = Path(target_dir)
        matched = match_targets(input_dir, files, target_dir)
        data.has_target = torch.tensor([m is not None for m in matched])
        if not data.has_target.any():
            raise EvaluationError(f"no input in {input_dir} has a target of the same name in {target_dir}")
        data.targets = torch.full((n, 3, size, size), 255, dtype=torch.uint8)
        data.targets[data.has_target] = load_images([m for m in matched if m is not None], [size], filter=filter,
                                                    desc="reading targets", progress=progress)[size]
        card.target_dir, card.n_paired = str(target_dir), int(data.has_target.sum())
        card.n_unmatched_inputs = n - card.n_paired
    if reference_dir is not None:
        ref_files = list_images(reference_dir)
        ref_files = ref_files[:reference_limit] if reference_limit else ref_files
        log(f"reading {len(ref_files)} reference images from {reference_dir}")
        data.reference = load_images(ref_files, [size], filter=filter, desc="reading references", progress=progress)[size]
        card.reference_dir, card.n_reference = str(reference_dir), len(ref_files)
    return data


def _translate_rows(translators: list[Translator], names: list[str], data: _Data, *, size: int, filter: str,
                    batch_size: int, log: Log, progress: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every model's outputs (uint8 (N, 3, E, E)) and, where there is a way back, per-image cycle RMSE."""
    outputs, cycles = {}, {}
    for t, name in zip(translators, names):
        start = time.perf_counter()
        with progress_bar(None, desc=f"translating ({name})", total=len(data.files), progress=progress) as bar:
            out_s, rec_s = run_translator(t, data.at_translate, batch_size=batch_size, cycle=True, bar=bar)
        outputs[name] = rgb(resize_batch(out_s, size, filter=filter))
        if rec_s is not None:
            cycles[name] = M.cycle_rmse(rgb(data.at_translate), rgb(rec_s))
        log(f"translated {len(data.files)} images with {name} ({t.kind}, {t.path}) in {time.perf_counter() - start:.1f} s")
    return outputs, cycles


def _references(data: _Data, *, size: int, translate_size: int, filter: str) -> tuple[dict[str, torch.Tensor], tuple | None]:
    """The trivial rows (uint8 (N, 3, E, E)) and the flat colour used (None without a colour source)."""
    refs, colour = {}, None
    source = data.reference if data.reference is not None else (
        data.targets[data.has_target] if data.targets is not None else None)
    if source is not None:
        colour = M.median_colour(source)
        refs[REF_FLAT] = M.flat_images(colour, len(data.files), (size, size))
    refs[REF_INPUT] = data.inputs
    if data.targets is not None and translate_size < size:
        squeezed = resize_batch(data.targets, translate_size, filter=filter)
        refs[f"ref: target via {translate_size} px"] = resize_batch(squeezed, size, filter=filter)
    return refs, colour


def _score(outputs: dict[str, torch.Tensor], cycles: dict[str, torch.Tensor], data: _Data) -> dict[str, dict[str, torch.Tensor]]:
    """Per-image scores of every row: paired metrics (NaN without a target), layout and cycle."""
    n, per_image = len(data.files), {}
    for row, out in outputs.items():
        scores: dict[str, torch.Tensor] = {}
        if data.targets is not None:
            for k, v in M.paired_metrics(out[data.has_target], data.targets[data.has_target]).items():
                scores[k] = torch.full((n,), float("nan"))
                scores[k][data.has_target] = v.float()
        scores["layout_corr"] = M.layout_correlation(data.inputs, out)
        if row in cycles:
            scores["cycle_rmse"] = cycles[row]
        per_image[row] = scores
    return per_image


def _distribution_scores(summary: dict[str, dict[str, float]], outputs: dict[str, torch.Tensor], data: _Data,
                         card: M.ProtocolCard, extractor: FeatureExtractor, *, kid_subsets: int,
                         kid_subset_size: int, device, log: Log, progress: bool) -> bool:
    """KID and FID of every row against the reference set, into ``summary``; False if skipped (too few images)."""
    if data.reference is None:
        raise EvaluationError("KID/FID need --reference DIR (real images of the target domain); "
                              "or pass --features none")
    card.feature_extractor, card.feature_weights_sha256 = extractor.name, extractor.weights_sha256
    card.feature_input, card.feature_standard = extractor.input_note, extractor.standard
    card.kid_subsets, n = kid_subsets, len(data.files)
    start, done = time.perf_counter(), True
    features = lambda images, what: extract_features(  # noqa: E731
        images, extractor, device=device, bar=progress_bar(None, desc=f"features ({what})", total=len(images),
                                                           progress=progress))
    real = features(data.reference, "references")
    for row, out in outputs.items():
        # n copies of one image: extract it once
        fake = features(out[:1], row).expand(n, -1) if row == REF_FLAT else features(out, row)
        if min(real.shape[0], fake.shape[0]) < 2:
            done = False
            break
        mean, std, used = M.kid(real, fake, subsets=kid_subsets, subset_size=kid_subset_size)
        summary[row].update(kid_mean=mean, kid_std=std, fid=M.fid(real, fake))
        card.kid_subset_size = used
    log(f"KID/FID features ({extractor.name}) in {time.perf_counter() - start:.1f} s")
    return done


def _protocol_notes(card: M.ProtocolCard, *, colour, data: _Data, cycles: bool, features: bool | None,
                    input_dir: Path, reference_dir, target_dir) -> list[str]:
    """The card's notes, in table order: what each reference is, how to read each metric, what was reused."""
    size, translate_size, notes = card.eval_size, card.translate_size, []
    if translate_size != size:
        notes.append(f"inputs resized to {translate_size} px for the generators; outputs resized back to {size} px "
                     f"with the same filter before scoring")
    if colour is not None:
        src = "reference set" if data.reference is not None else "paired targets (optimistic: it has seen them)"
        notes.append(f"{REF_FLAT}: RGB {colour}, the per-channel median of the {src}")
    if data.targets is not None and translate_size < size:
        notes.append(f"ref: target via {translate_size} px: the ground truth resized to {translate_size} px and back, "
                     f"the best a translator working at {translate_size} px can reach")
    notes.append("layout_corr: |Pearson correlation| of input and output luma at 64 px, content kept "
                 "without ground truth (read it against the references: the unchanged input scores 1)")
    if cycles:
        notes.append(f"cycle_rmse: RMSE (0-255) between each input at {translate_size} px and F(G(input)), "
                     f"CycleGAN only")
    if features is not None:
        if not features:
            notes.append("KID/FID skipped: fewer than 2 images")
        if not card.feature_standard:
            notes.append("KID/FID use a non-standard feature extractor: compare them only within this table")
        notes.append(f"FID from {min(card.n_inputs, card.n_reference)} images is strongly biased upwards; prefer KID here")
    reuse = []
    if reference_dir is not None and target_dir is not None and Path(reference_dir).resolve() == Path(target_dir).resolve():
        reuse.append("the KID/FID reference set is the paired target set (the ground truth of these very inputs)")
    if reference_dir is not None and Path(reference_dir).resolve() == input_dir.resolve():
        reuse.append("the reference set is the input set")
    card.inputs_reused = bool(reuse)
    return notes + [f"reuse: {r}" for r in reuse]


def evaluate_translators(
    translators: list[Translator], input_dir: str | os.PathLike, *, names: list[str | None] | None = None,
    reference_dir: str | os.PathLike | None = None, target_dir: str | os.PathLike | None = None,
    direction: str = "a2b", size: int | None = None, translate_size: int | None = None, filter: str = "antialiased",
    extractor: FeatureExtractor | None = None, kid_subsets: int = 100, kid_subset_size: int = 100,
    limit: int | None = None, reference_limit: int | None = None, batch_size: int | None = None,
    device: str | torch.device = "cpu", log: Log = lambda _: None, progress: bool = False,
) -> Evaluation:
    """Translate ``input_dir`` with every translator (each on its own device; load them with
    ``inverse=True`` for cycle scores) and score outputs and trivial references. ``names``:
    row names (default: each kind); ``translate_size``/``size``: what the generators see and what
    is scored (default: the models' training size, see :mod:`cyclegan.evaluation.sizes`);
    ``batch_size``: default, the device's fastest; ``device``: where the KID/FID features are
    computed; ``progress``: bars on stderr (on a terminal) while reading, translating and extracting."""
    input_dir, names = Path(input_dir), row_names(translators, names)
    sizes = choose_sizes(translators, names, size=size, translate_size=translate_size)
    size, translate_size = sizes.size, sizes.translate_size
    in_nc = _check_translators(translators, names, translate_size)
    card = M.ProtocolCard(direction=direction, input_dir=str(input_dir), n_inputs=0, eval_size=size,
                          translate_size=translate_size, resize_filter=FILTERS[filter][1], translate_size_why=sizes.why)
    card.notes += announce(sizes)
    batch_size = batch_size or default_batch_size(translators[0].device, translate_size)
    data = _read_data(card, input_dir=input_dir, limit=limit, target_dir=target_dir, reference_dir=reference_dir,
                      reference_limit=reference_limit, filter=filter, in_nc=in_nc, log=log, progress=progress)
    # Rows: every model's outputs, then the trivial references.
    outputs, cycles = _translate_rows(translators, names, data, size=size, filter=filter, batch_size=batch_size, log=log,
                                      progress=progress)
    refs, colour = _references(data, size=size, translate_size=translate_size, filter=filter)
    row_types = {**{name: "model" for name in outputs}, **{name: "reference" for name in refs}}
    outputs.update(refs)
    per_image = _score(outputs, cycles, data)
    summary = {row: {k: _mean(v) for k, v in scores.items()} for row, scores in per_image.items()}
    features = None
    if extractor is not None:
        features = _distribution_scores(summary, outputs, data, card, extractor, kid_subsets=kid_subsets,
                                        kid_subset_size=kid_subset_size, device=torch.device(device), log=log,
                                        progress=progress)
    card.notes += _protocol_notes(card, colour=colour, data=data, cycles=bool(cycles), features=features,
                                  input_dir=input_dir, reference_dir=reference_dir, target_dir=target_dir)
    return Evaluation(card=card, names=[str(p.relative_to(input_dir)) for p in data.files], inputs=data.inputs,
                      targets=data.targets, has_target=data.has_target, outputs=outputs, per_image=per_image,
                      summary=summary, row_types=row_types, checkpoints={n: str(t.path) for t, n in zip(translators, names)})
