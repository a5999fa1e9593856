"""Converting images with a trained translator: one PIL image, one tensor, or a whole folder tree.

    cyclegan translate --checkpoint runs/.../last.ckpt --input photos/ --output zebras/
    cyclegan translate --checkpoint last.ckpt --input big.jpg --output big_zebra.png --tile 1024
    cyclegan translate --checkpoint horse2zebra.onnx --input photos/ --output zebras/ --format webp

Rules, the same for the Python API and the command:
- the checkpoint alone gives architecture, norm, channels and stride;
- full resolution by default: the image is reflection-padded to the generator's stride,
  translated and cropped back (``resize`` scales the short side first);
- EXIF orientation is applied; transparent images are composited onto white as in
  training and their alpha channel is put back unchanged on the output;
- images over ``max_pixels`` (or that run out of memory) are translated in overlapping
  tiles normalised with whole-image instance-norm statistics (see :mod:`cyclegan.tiling`);
  exported instance-norm models have no layers to take those statistics from, so they
  always run whole images.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .checkpoint import CheckpointError, fail, load_generator, sha256_file
from .data import IMAGE_EXTENSIONS, DataError, describe_error, list_images, normalize_image, to_uint8
from .tiling import NormStats, reflect_pad, round_up, tiled_forward

Precision = Literal["32", "bf16"]
DEFAULT_MAX_PIXELS = 2048 * 2048  # larger images are tiled
DEFAULT_TILE = 1024
# A batch holds at most --batch-size images and about this many pixels: beyond it a GPU is
# already busy, and on a CPU larger batches only cost memory.
BATCH_PIXELS = 1024 * 1024
# Long side of the pass that records instance-norm statistics for tiles: exact (the whole image)
# for anything up to this size, a downscaled approximation beyond.
DEFAULT_STATS_SIZE = 2048
OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}
_HOLDS_ALPHA = {".png", ".tif", ".tiff", ".webp"}  # JPEG cannot store alpha; Pillow reads BMP alpha back as RGB
_SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


class TranslateError(ValueError):
    """A usage error (bad paths, options the model cannot honour); one-line message."""


# ---------------------------------------------------------------------------------------
# The model behind one interface


class Translator:
    """A generator, loaded from a training checkpoint or an exported file, with its device and precision.

    ``forward`` maps (N, input_nc, H, W) in [-1, 1], H and W multiples of ``stride``, to
    (N, output_nc, H, W) in [-1, 1]; :meth:`translate` takes any size. ``module`` is the
    PyTorch generator when there is one: tiling an instance-norm model needs its layers.
    """

    def __init__(
        self, net: Callable[[torch.Tensor], torch.Tensor], *, input_nc: int, output_nc: int, stride: int,
        device: torch.device | str = "cpu", precision: Precision = "32", module: nn.Module | None = None,
        instance_norm: bool = False, metadata: dict | None = None,
    ) -> None:
        if precision not in ("32", "bf16"):
            raise TranslateError(f"precision must be 32 or bf16, got {precision!r}")
        self.net, self.module = net, module
        self.input_nc, self.output_nc, self.stride = input_nc, output_nc, stride
        self.device, self.precision = torch.device(device), precision
        self.stats = NormStats(module) if module is not None and instance_norm else None
        # Instance norm without access to its layers (an exported file) would make tiles differ in brightness.
        self.can_tile = self.stats is not None or not instance_norm
        self.metadata = metadata or {}

    @classmethod
    def from_module(
        cls, generator: nn.Module, *, device: torch.device | str | None = None, precision: Precision = "32",
        metadata: dict | None = None,
    ) -> Translator:
        """Wrap a generator (moved to ``device``; by default it stays where its parameters are)."""
        convs = [m for m in generator.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        if not convs:
            raise TranslateError(f"{type(generator).__name__} has no convolutions: not an image generator")
        if device is None:
            device = next(generator.parameters()).device
        generator.to(device)
        return cls(
            generator, input_nc=convs[0].in_channels, output_nc=convs[-1].out_channels,
            stride=getattr(generator, "stride", 1), device=device, precision=precision, module=generator,
            instance_norm=any(isinstance(m, nn.InstanceNorm2d) for m in generator.modules()), metadata=metadata,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bf16 = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            return self.net(x.to(self.device)).float()

    def translate(
        self, x: torch.Tensor, *, tile: int | None = None, overlap: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS, stats_size: int = DEFAULT_STATS_SIZE, tile_batch: int = 4,
    ) -> torch.Tensor:
        """(N, input_nc, h, w) in [-1, 1], any h and w -> (N, output_nc, h, w) on the translator's device.

        Pads by reflection to the stride and crops back. Tiles when ``tile`` is given, when
        h * w > ``max_pixels``, or when the whole image runs out of memory.
        """
        n, c, h, w = x.shape
        if c != self.input_nc:
            raise TranslateError(f"the generator takes {self.input_nc}-channel images, got {c} channels")
        # At least 8 px: a ResNet generator's last instance norm (at 1/4 scale) needs 2x2 values.
        H, W = round_up(max(h, 8), self.stride), round_up(max(w, 8), self.stride)
        top, left = (H - h) // 2, (W - w) // 2
        x = reflect_pad(x.float(), top, H - h - top, left, W - w - left)
        if tile is None and H * W > max_pixels and self.can_tile:
            tile = min(DEFAULT_TILE, math.isqrt(max_pixels))
        y = self._run(x, tile=tile, overlap=overlap, stats_size=stats_size, tile_batch=tile_batch)
        return y[:, :, top : top + h, left : left + w].to(self.device)

    def _run(self, x: torch.Tensor, *, tile: int | None, stats_size: int, **tiling) -> torch.Tensor:
        """Padded (N, C, H, W) -> (N, C_out, H, W); on out-of-memory, one image at a time, then tiles (on the CPU)."""
        if tile is not None:
            return torch.cat([self._tiled(x[i : i + 1], tile=tile, stats_size=stats_size, **tiling) for i in range(len(x))])
        try:
            return self.forward(x)
        except Exception as e:  # noqa: BLE001 - each backend raises out-of-memory as a different type
            if not _is_oom(e) or not (len(x) > 1 or self.can_tile):
                raise
        _free_memory()  # outside the except block, so that the failed pass's tensors are gone
        if len(x) > 1:
            return torch.cat([self._run(x[i : i + 1], tile=None, stats_size=stats_size, **tiling) for i in range(len(x))])
        # The whole image did not fit, so neither would a statistics pass at full size.
        half = max(x.shape[-2:]) // 2
        return self._run(x, tile=min(DEFAULT_TILE, half), stats_size=min(stats_size, half), **tiling)

    def _tiled(self, x: torch.Tensor, *, tile: int, overlap: int | None, stats_size: int, tile_batch: int) -> torch.Tensor:
        if not self.can_tile:
            raise TranslateError("tiling an instance-norm model needs its training checkpoint, not an exported file")
        stats_size = min(stats_size, max(x.shape[-2:]))
        while True:  # halve the tile and the statistics pass until they fit
            try:
                return tiled_forward(
                    self.forward, x, tile=tile, overlap=tile // 4 if overlap is None else overlap, stride=self.stride,
                    stats=self.stats, stats_size=stats_size, batch_size=tile_batch, device=self.device,
                )
            except Exception as e:  # noqa: BLE001
                if not _is_oom(e) or tile // 2 < max(self.stride, 64):
                    raise
            _free_memory()
            tile, stats_size = tile // 2, max(self.stride, stats_size // 2)


def _is_oom(e: Exception) -> bool:
    # CUDA raises torch.OutOfMemoryError; the CPU allocator and onnxruntime raise RuntimeErrors that say so.
    text = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or any(
        s in text for s in ("out of memory", "can't allocate memory", "failed to allocate")
    )


def _free_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve_device(device: str | None) -> torch.device:
    """``None``: CUDA if available, else the CPU; a device that is not there is a usage error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise TranslateError(f"unknown device {device!r} (try cpu, cuda, cuda:1)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise TranslateError(f"--device {device}: CUDA is not available here")
    return resolved


def load_translator(
    path: str | os.PathLike, direction: str | None = None, *, device: str | None = None, precision: Precision = "32",
) -> Translator:
    """A :class:`Translator` from a training checkpoint, a TorchScript export (.pt) or an ONNX export (.onnx).

    ``direction`` defaults to "a2b" for checkpoints and to the exported one for exports.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    from .export import is_exported, load_exported  # export imports this module

    if is_exported(path):
        return load_exported(path, direction=direction, device=resolve_device(device), precision=precision)
    generator = load_generator(path, direction or "a2b")
    return Translator.from_module(generator, device=resolve_device(device), precision=precision)


# ---------------------------------------------------------------------------------------
# Images <-> tensors


def prepare_image(image: Image.Image, *, channels: int, resize: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A PIL image as the model's input: uint8 (H, W, channels), and its alpha (H, W) or None.

    Decoded as in training (:func:`cyclegan.data.normalize_image`); ``resize`` scales the
    short side to that many pixels, alpha alike.
    """
    image, alpha = normalize_image(image, channels=channels)
    if resize:
        w, h = image.size
        scale = resize / min(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = image.resize(size, Image.BICUBIC)
        alpha = alpha.resize(size, Image.BICUBIC) if alpha is not None else None
    array = np.asarray(image)
    return array.reshape(array.shape[0], array.shape[1], channels), None if alpha is None else np.asarray(alpha)


def to_tensor(arrays: list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """Same-size uint8 (H, W, C) arrays -> (N, C, H, W) float in [-1, 1] on ``device`` (moved as uint8: 4x less to copy)."""
    x = torch.from_numpy(np.stack(arrays)).to(device).permute(0, 3, 1, 2)
    return x.float() / 127.5 - 1


def to_numpy_images(y: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] on any device -> uint8 (N, H, W, C) numpy."""
    return to_uint8(y).permute(0, 2, 3, 1).cpu().numpy()


def finish_image(array: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """uint8 (H, W, 1 or 3) -> an L or RGB image, LA or RGBA when the input's alpha is put back."""
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    if alpha is not None:
        image.putalpha(Image.fromarray(alpha))
    return image


def _as_translator(generator: nn.Module | Translator, device, precision) -> Translator:
    """``precision=None``: 32 for a module, its own for a Translator (which keeps its device and precision)."""
    if isinstance(generator, Translator):
        if (device is not None and torch.device(device) != generator.device) or (
            precision is not None and precision != generator.precision
        ):
            raise TranslateError("a loaded Translator keeps its device and precision; load it again to change them")
        return generator
    return Translator.from_module(generator, device=device, precision=precision or "32")


def translate_tensor(
    generator: nn.Module | Translator, x: torch.Tensor, *, tile: int | None = None, device: str | None = None,
    precision: Precision | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, stats_size: int = DEFAULT_STATS_SIZE,
) -> torch.Tensor:
    """Translate (C, H, W) or (N, C, H, W) in [-1, 1] of any size; returns the same layout on ``x``'s device."""
    translator = _as_translator(generator, device, precision)
    batched = x.dim() == 4
    y = translator.translate(x if batched else x[None], tile=tile, max_pixels=max_pixels, stats_size=stats_size)
    return (y if batched else y[0]).to(x.device)


def translate_image(
    generator: nn.Module | Translator, image: Image.Image, *, resize: int | None = None, tile: int | None = None,
    device: str | None = None, precision: Precision | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
    stats_size: int = DEFAULT_STATS_SIZE,
) -> Image.Image:
    """Translate a PIL image at full resolution (or short side ``resize``); see the module docstring for the rules."""
    translator = _as_translator(generator, device, precision)
    array, alpha = prepare_image(image, channels=translator.input_nc, resize=resize)
    y = translator.translate(to_tensor([array], translator.device), tile=tile, max_pixels=max_pixels, stats_size=stats_size)
    return finish_image(to_numpy_images(y)[0], alpha)


# ---------------------------------------------------------------------------------------
# Folders


@dataclass
class _Job:
    src: Path
    dst: Path


@dataclass
class _Decoded:
    index: int
    array: np.ndarray | None = None  # (H, W, C) uint8
    alpha: np.ndarray | None = None  # (H, W) uint8
    error: str | None = None


class _Images(Dataset):
    """Decodes inputs in DataLoader workers; a file that cannot be read comes back with its reason."""

    def __init__(self, files: list[Path], *, channels: int, resize: int | None) -> None:
        self.files, self.channels, self.resize = files, channels, resize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> _Decoded:
        try:
            with Image.open(self.files[index]) as image:
                array, alpha = prepare_image(image, channels=self.channels, resize=self.resize)
            return _Decoded(index, array, alpha)
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported and skipped
            return _Decoded(index, error=describe_error(e))


def _has_alpha(path: Path) -> bool:
    with Image.open(path) as image:  # header only
        return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def _size_of(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image:  # header only
            return image.size
    except Exception:  # noqa: BLE001 - the manifest leaves the size blank
        return None


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan(src: Path, dst: Path, *, fmt: str = "same") -> list[_Job]:
    """Input files and their outputs: a folder's tree mirrored under ``dst``, same stems.

    Raises :class:`TranslateError` for anything that would write into ``src``.
    """
    if fmt != "same" and fmt not in OUTPUT_FORMATS:
        raise TranslateError(f"--format must be same, {', '.join(OUTPUT_FORMATS)}; got {fmt!r}")
    if not src.exists():
        raise TranslateError(f"input not found: {src}")
    src_r, dst_r = src.resolve(), dst.resolve()

    def target(rel: Path) -> Path:
        return rel.with_suffix(rel.suffix if fmt == "same" else OUTPUT_FORMATS[fmt])

    if src.is_file():
        if src.suffix.lower() not in IMAGE_EXTENSIONS:
            raise TranslateError(f"not an image ({'/'.join(sorted(IMAGE_EXTENSIONS))}): {src}")
        file_target = dst.suffix.lower() in IMAGE_EXTENSIONS and not dst.is_dir()
        jobs = [_Job(src, dst if file_target else dst / target(Path(src.name)))]
    else:
        if _is_inside(dst_r, src_r):
            raise TranslateError(f"output {dst} is inside the input folder {src}; choose a folder outside it")
        try:
            jobs = [_Job(f, dst / target(f.relative_to(src))) for f in list_images(src)]
        except DataError as e:
            raise TranslateError(str(e)) from None
        # OUT may contain IN (OUT=data, IN=data/photos): a mirrored path can still land in IN.
        for job in jobs:
            if _is_inside(job.dst.resolve(), src_r):
                raise TranslateError(f"output {job.dst} would be written inside the input folder {src}")
    for job in jobs:
        if job.dst.resolve() == job.src.resolve():
            raise TranslateError(f"output {job.dst} is the input itself")
    return jobs


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise TranslateError(f"cannot write to {folder}: {e.strerror or describe_error(e)}") from None


def _alpha_fallback(job: _Job, fmt: str) -> Path | None:
    """Where a transparent image goes when its format-``same`` target cannot hold alpha."""
    if fmt == "same" and job.dst.suffix.lower() not in _HOLDS_ALPHA:
        return job.dst.with_suffix(".png")
    return None


def _already_done(job: _Job, fmt: str) -> Path | None:
    if job.dst.exists():
        return job.dst
    fallback = _alpha_fallback(job, fmt)
    if fallback is not None and fallback.exists():
        try:
            return fallback if _has_alpha(job.src) else None
        except Exception:  # noqa: BLE001 - unreadable: let the conversion report it
            return None
    return None


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # read once, at import: os.umask is process-wide, not thread-safe


def publish(tmp: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename a finished temporary file onto ``dst`` (atomic), with the permissions a plain open() would give.

    ``tempfile.mkstemp`` creates files readable by their owner only.
    """
    os.chmod(tmp, _FILE_MODE)
    os.replace(tmp, dst)


def _write(job: _Job, array: np.ndarray, alpha: np.ndarray | None, fmt: str) -> dict:
    """Encode and write atomically (hidden temporary file in the same folder, then rename)."""
    dst, note = job.dst, ""
    if alpha is not None and dst.suffix.lower() not in _HOLDS_ALPHA:
        if fmt == "same":
            dst, note = job.dst.with_suffix(".png"), f"{job.dst.suffix.lstrip('.')} cannot hold alpha: wrote png"
        else:
            alpha, note = None, f"alpha dropped: {fmt} cannot hold it"
    image = finish_image(array, alpha)
    row = _row(job, dst=dst, size=image.size, status="converted", reason=note)
    tmp = None
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        pil_format = Image.registered_extensions()[dst.suffix.lower()]
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.tmp-")
        with os.fdopen(fd, "wb") as f:
            image.save(f, format=pil_format, **_SAVE_OPTIONS.get(pil_format, {}))
        publish(tmp, dst)
    except Exception as e:  # noqa: BLE001 - one file that cannot be written does not stop the others
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        row.update(status="failed", reason=f"cannot write: {describe_error(e)}")
    return row


def _row(job: _Job, *, dst: Path | None = None, size=None, status: str, reason: str = "") -> dict:
    return {
        "input": str(job.src), "output": str(dst or job.dst), "width": size[0] if size else "",
        "height": size[1] if size else "", "status": status, "reason": reason,
    }


MANIFEST_COLUMNS = ["input", "output", "width", "height", "status", "reason", "checkpoint_sha256"]


def write_manifest(path: Path, rows: Iterable[dict], *, checkpoint_sha256: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: r["input"]):
            writer.writerow({**row, "checkpoint_sha256": checkpoint_sha256})
    publish(tmp, path)


@dataclass
class Summary:
    converted: int = 0
    existing: int = 0
    failed: int = 0
    rows: list[dict] = field(default_factory=list)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if row["status"] == "converted":
            self.converted += 1
        elif row["status"] == "exists":
            self.existing += 1
        else:
            self.failed += 1

    def __str__(self) -> str:
        return f"converted {self.converted}, skipped-existing {self.existing}, failed {self.failed}"


def convert_folder(
    generator: nn.Module | Translator, src: str | os.PathLike, dst: str | os.PathLike, *, fmt: str = "same",
    resize: int | None = None, tile: int | None = None, overlap: int | None = None, overwrite: bool = False,
    batch_size: int = 8, workers: int | None = None, device: str | None = None, precision: Precision | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS, stats_size: int = DEFAULT_STATS_SIZE, manifest: str | os.PathLike | None = None,
    checkpoint_sha256: str = "", progress: bool = True, log: Callable[[str], None] | None = None,
) -> Summary:
    """Translate every image under ``src`` (or the single image ``src``) into ``dst``, mirroring the tree.

    Existing outputs are skipped unless ``overwrite``; unreadable inputs are reported through
    ``log`` (default: stderr) as ``skipped PATH: reason`` and counted as failed. ``manifest``
    (None: none) receives one CSV row per input. Raises :class:`TranslateError` for usage errors.
    """
    translator = _as_translator(generator, device, precision)
    if tile is not None and not translator.can_tile:
        raise TranslateError("--tile on an instance-norm model needs its training checkpoint, not an exported file")
    src, dst = Path(src), Path(dst)
    jobs = plan(src, dst, fmt=fmt)
    out_root = dst if not (src.is_file() and jobs[0].dst == dst) else dst.parent
    if manifest is not None and src.is_dir() and _is_inside(Path(manifest).resolve(), src.resolve()):
        raise TranslateError(f"manifest {manifest} is inside the input folder {src}")
    _check_writable(out_root)
    log = log or (lambda line: tqdm.write(line, file=sys.stderr))
    workers = min(4, os.cpu_count() or 1) if workers is None else workers

    summary, todo, claimed = Summary(), [], {}
    for job in jobs:
        if job.dst in claimed:  # e.g. a.jpg and a.png with --format png
            summary.add(_row(job, status="failed", reason=f"same output as {claimed[job.dst]}"))
            log(f"skipped {job.src}: same output as {claimed[job.dst]}")
            continue
        claimed[job.dst] = job.src
        done = None if overwrite else _already_done(job, fmt)
        if done is not None:
            summary.add(_row(job, dst=done, size=_size_of(done), status="exists"))
        else:
            todo.append(job)

    loader = DataLoader(
        _Images([j.src for j in todo], channels=translator.input_nc, resize=resize),
        batch_size=max(1, batch_size), collate_fn=list, num_workers=workers,
    )
    pool, pending = ThreadPoolExecutor(max(1, workers)), deque()  # encoders and writers, off the model's thread
    bar = tqdm(total=len(todo), unit="img", disable=not progress, dynamic_ncols=True, file=sys.stderr)

    def finish(row: dict) -> None:
        summary.add(row)
        if row["status"] == "failed":
            log(f"skipped {row['input']}: {row['reason']}")
        bar.update(1)

    def run_batch(items: list[_Decoded]) -> None:
        try:
            y = translator.translate(
                to_tensor([it.array for it in items], translator.device), tile=tile, overlap=overlap,
                max_pixels=max_pixels, stats_size=stats_size,
            )
        except TranslateError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. out of memory even in tiles: the other images go on
            for it in items:
                finish(_row(todo[it.index], status="failed", reason=f"cannot translate: {describe_error(e)}"))
            return
        for it, out in zip(items, to_numpy_images(y)):
            pending.append(pool.submit(_write, todo[it.index], out, it.alpha, fmt))

    # Decoded images wait, grouped by size, until their group fills a batch; at most about
    # two batches wait, so a folder of all-different sizes still streams.
    waiting: dict[tuple[int, int], list[_Decoded]] = defaultdict(list)
    try:
        for chunk in loader if todo else []:
            for item in chunk:
                if item.error is not None:
                    finish(_row(todo[item.index], status="failed", reason=f"cannot read: {item.error}"))
                    continue
                h, w = item.array.shape[:2]
                group = waiting[h, w]
                group.append(item)
                if len(group) >= max(1, min(batch_size, BATCH_PIXELS // (h * w))):
                    run_batch(waiting.pop((h, w)))
            while sum(map(len, waiting.values())) > 2 * batch_size:
                run_batch(waiting.pop(max(waiting, key=lambda k: len(waiting[k]))))
            while len(pending) > 2 * batch_size:  # the writers stay a little behind the model
                finish(pending.popleft().result())
        for group in waiting.values():
            run_batch(group)
    finally:
        # Also when interrupted: files already handed to the writers are finished and recorded.
        while pending:
            finish(pending.popleft().result())
        pool.shutdown()
        bar.close()
        if manifest is not None:
            write_manifest(Path(manifest), summary.rows, checkpoint_sha256=checkpoint_sha256)
    return summary


# ---------------------------------------------------------------------------------------
# Command line


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cyclegan translate",
        description="Translate a folder of images (recursively, mirrored into OUT) or a single image with a trained "
        "translator, at full resolution.",
    )
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.ckpt), or a file from `cyclegan export` "
                   "(.pt TorchScript, .onnx); it alone defines architecture and channels")
    p.add_argument("--input", required=True, type=Path, help="image file, or folder searched recursively")
    p.add_argument("--output", required=True, type=Path,
                   help="output folder mirroring INPUT's tree (for a single image: a folder or a file name)")
    p.add_argument("--direction", choices=["a2b", "b2a"], default=None,
                   help="which generator (default a2b; an exported file has only its own)")
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
    p.add_argument("--batch-size", metavar="N", type=_positive, default=8, help="same-size images per forward pass (default 8; about 1 megapixel at most)")
    p.add_argument("--workers", metavar="N", type=int, default=min(4, os.cpu_count() or 1),
                   help="decoding processes and encoding threads (default min(4, CPUs); 0 decodes in this process)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--precision", choices=["32", "bf16"], default="32", help="bf16 autocast (default 32)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist (default: skip them)")
    p.add_argument("--manifest", type=Path, default=None,
                   help="CSV of input, output, size, status, reason, checkpoint hash (default OUTPUT/manifest.csv; "
                   "none when OUTPUT is a single file)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        translator = load_translator(args.checkpoint, args.direction, device=args.device, precision=args.precision)
        file_output = args.input.is_file() and args.output.suffix.lower() in IMAGE_EXTENSIONS and not args.output.is_dir()
        manifest = args.manifest or (None if file_output else args.output / "manifest.csv")
        summary = convert_folder(
            translator, args.input, args.output, fmt=args.fmt, resize=args.resize, tile=args.tile,
            overlap=args.overlap, overwrite=args.overwrite, batch_size=args.batch_size, workers=args.workers,
            max_pixels=args.max_pixels, stats_size=args.stats_size, manifest=manifest,
            checkpoint_sha256=sha256_file(args.checkpoint), progress=not args.quiet,
        )
    except (CheckpointError, TranslateError) as e:
        return fail(e)
    print(summary)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
