"""Converting a folder tree (or one file) with a :class:`~cyclegan.inference.translator.Translator`.

    cyclegan translate --checkpoint runs/.../last.ckpt --input photos/ --output zebras/
    cyclegan translate --checkpoint last.ckpt --input big.jpg --output big_zebra.png --tile 1024
    cyclegan translate --checkpoint horse2zebra.onnx --input photos/ --output zebras/ --format webp

Inputs are decoded in DataLoader workers, grouped by size into batches for the model, and
encoded and written (atomically) by a thread pool; existing outputs are skipped when the
manifest says this checkpoint wrote them with these settings (and refused otherwise, see
:mod:`cyclegan.inference.manifest`), unreadable inputs reported and counted, and a CSV manifest records
one row per input. An animated GIF gives its first frame, as a PNG unless ``--format`` says otherwise.
Each output is journaled as it is written, so a run killed at any instant resumes; Ctrl-C and
SIGTERM finish the files in flight and write the manifest before the run stops.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cyclegan.devices import MAX_BATCH, capped_batch_size, default_batch_size, usable_cpus
from cyclegan.errors import DataError, TranslateError
from cyclegan.data.images import (
    IMAGE_EXTENSIONS, describe_error, finish_image, frame_count, list_images, prepare_image, publish, to_numpy_images,
    to_tensor,
)
from cyclegan.inference.manifest import Manifest, check_origin, origin_of, refuse_stale, temporary_prefix
from cyclegan.inference.stopping import ConversionInterrupted, ignore_sigterm, run_until_stopped
from cyclegan.inference.translator import DEFAULT_MAX_PIXELS, DEFAULT_STATS_SIZE, Translator, as_translator

OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}
_HOLDS_ALPHA = {".png", ".tif", ".tiff", ".webp"}  # JPEG cannot store alpha; Pillow reads BMP alpha back as RGB
_SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}
# Format "same" for inputs we would not write back in kind: a GIF's 256-colour palette would
# undo the translation, and only its first frame is translated anyway.
_SAME_AS = {".gif": ".png"}


@dataclass(frozen=True)
class ConvertSettings:
    """How a folder is converted; ``cyclegan translate`` builds one from its flags."""

    fmt: str = "same"  # output format: same (the input's), png, jpg or webp
    resize: int | None = None  # scale the short side to this first; None: full resolution
    tile: int | None = None  # translate in overlapping tiles of this size; None: only when needed
    overlap: int | None = None  # tile overlap in pixels; None: tile / 4
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are tiled automatically
    stats_size: int = DEFAULT_STATS_SIZE  # long side of the instance-norm statistics pass for tiles
    overwrite: bool = False  # redo outputs that already exist
    batch_size: int | None = None  # same-size images per forward pass; None: the device's fastest (devices.py)
    workers: int | None = None  # decoding processes and encoding threads; None: min(4, CPUs)

    @property
    def n_workers(self) -> int:
        return min(4, usable_cpus()) if self.workers is None else self.workers


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
    frames: int = 1  # an animated GIF has more; its first is translated


class _Images(Dataset):
    """Decodes inputs in DataLoader workers; a file that cannot be read comes back with its reason."""

    def __init__(self, files: list[Path], *, channels: int, resize: int | None) -> None:
        self.files, self.channels, self.resize = files, channels, resize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> _Decoded:
        try:
            with Image.open(self.files[index]) as image:
                frames = frame_count(image)
                array, alpha = prepare_image(image, channels=self.channels, resize=self.resize)
            return _Decoded(index, array, alpha, frames=frames)
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
        same = _SAME_AS.get(rel.suffix.lower(), rel.suffix)
        return rel.with_suffix(same if fmt == "same" else OUTPUT_FORMATS[fmt])

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


def _write(job: _Job, array: np.ndarray, alpha: np.ndarray | None, fmt: str, frames: int = 1,
           journal: Manifest | None = None) -> dict:
    """Encode and write atomically (hidden temporary file in the same folder, journaled, then renamed)."""
    dst, notes = job.dst, [ANIMATED_NOTE.format(frames=frames)] if frames > 1 else []
    if alpha is not None and dst.suffix.lower() not in _HOLDS_ALPHA:
        if fmt == "same":
            dst = job.dst.with_suffix(".png")
            notes.append(f"{job.dst.suffix.lstrip('.')} cannot hold alpha: wrote png")
        else:
            alpha = None
            notes.append(f"alpha dropped: {fmt} cannot hold it")
    image = finish_image(array, alpha)
    row = _row(job, dst=dst, size=image.size, status="converted", reason="; ".join(notes))
    tmp = None
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        pil_format = Image.registered_extensions()[dst.suffix.lower()]
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=temporary_prefix(dst))
        with os.fdopen(fd, "wb") as f:
            image.save(f, format=pil_format, **_SAVE_OPTIONS.get(pil_format, {}))
        if journal is not None:  # names this very file (closed: its mtime is final): the row counts once renamed
            journal.record(row, os.stat(tmp))
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


ANIMATED_NOTE = "animated GIF ({frames} frames): first frame only"


@dataclass
class Summary:
    converted: int = 0
    existing: int = 0
    failed: int = 0
    animated: int = 0  # animated GIFs converted: first frame only
    rows: list[dict] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)  # checkpoint_sha256 and settings of this run's rows

    def add(self, row: dict) -> None:
        row = {**self.origin, **row}
        self.rows.append(row)
        if row["status"] == "converted":
            self.converted += 1
            self.animated += "animated GIF" in row["reason"]
        elif row["status"] == "exists":
            self.existing += 1
        else:
            self.failed += 1

    def __str__(self) -> str:
        text = f"converted {self.converted}, skipped-existing {self.existing}, failed {self.failed}"
        return text + (f"; {self.animated} animated GIF(s): first frame only" if self.animated else "")


def convert_folder(
    generator: nn.Module | Translator, src: str | os.PathLike, dst: str | os.PathLike,
    settings: ConvertSettings = ConvertSettings(), *, manifest: str | os.PathLike | None = None,
    checkpoint_sha256: str = "", progress: bool = True, log: Callable[[str], None] | None = None,
) -> Summary:
    """Translate every image under ``src`` (or the single image ``src``) into ``dst``, mirroring the tree.

    An existing output is skipped when ``manifest`` records it as written by this checkpoint
    (``checkpoint_sha256``; default: the hash of the module's weights) with these settings;
    any other existing output raises :class:`~cyclegan.inference.manifest.StaleOutputError` before
    anything is written, unless ``settings.overwrite``. Unreadable inputs are reported through
    ``log`` (default: stderr, above the progress bar) as ``skipped PATH: reason`` and counted
    as failed. ``manifest`` (None: none) receives one CSV row per input, also when Ctrl-C or
    SIGTERM stops the run: the files in flight are finished, then
    :class:`~cyclegan.inference.stopping.ConversionInterrupted` says how far it got. A module runs in
    float32 where its parameters are. Raises :class:`TranslateError` for usage errors.
    """
    translator = as_translator(generator, None, None)
    if settings.tile is not None and not translator.can_tile:
        raise TranslateError("--tile on an instance-norm model needs its training checkpoint, not an exported file")
    src, dst = Path(src), Path(dst)
    jobs = plan(src, dst, fmt=settings.fmt)
    out_root = dst if not (src.is_file() and jobs[0].dst == dst) else dst.parent
    if manifest is not None and src.is_dir() and _is_inside(Path(manifest).resolve(), src.resolve()):
        raise TranslateError(f"manifest {manifest} is inside the input folder {src}")
    record = Manifest(Path(manifest) if manifest is not None else None)  # with what a killed run journaled
    summary = Summary(origin=origin_of(translator, settings, checkpoint_sha256))
    todo = _still_to_do(jobs, settings, summary, record.previous)  # refuses stale outputs: nothing written yet
    refuse_stale(out_root, [(Path(r["output"]), r.pop("stale")) for r in summary.rows if "stale" in r])
    _check_writable(out_root)
    record.open(summary.origin, outputs=[j.dst for j in jobs])  # and removes what a killed run left
    log = log or (lambda line: tqdm.write(line, file=sys.stderr))
    for row in summary.rows:
        if row["status"] == "failed":
            log(f"skipped {row['input']}: {row['reason']}")
    before = len(summary.rows)
    conversion = _Conversion(translator, todo, settings, summary, log, progress=progress, manifest=record)
    stopped_by = run_until_stopped(conversion.run, conversion.close)
    if stopped_by is not None:
        raise ConversionInterrupted(stopped_by, summary, left=len(todo) - (len(summary.rows) - before),
                                    manifest=manifest)
    return summary


def _still_to_do(jobs: list[_Job], settings: ConvertSettings, summary: Summary, previous: dict) -> list[_Job]:
    """The jobs to run. Outputs claimed twice fail; existing ones from this origin are recorded as such,
    others get a "stale" reason (unless overwriting)."""
    todo, claimed = [], {}
    for job in jobs:
        if job.dst in claimed:  # e.g. a.jpg and a.png with --format png
            summary.add(_row(job, status="failed", reason=f"same output as {claimed[job.dst]}"))
            continue
        claimed[job.dst] = job.src
        done = None if settings.overwrite else _already_done(job, settings.fmt)
        if done is None:
            todo.append(job)
            continue
        row = _row(job, dst=done, size=_size_of(done), status="exists")
        stale = check_origin(done, previous, summary.origin)
        summary.add({**row, "stale": stale} if stale else row)
    return todo


class _Conversion:
    """One run over ``todo``: decoding workers -> size-grouped batches through the model -> writer threads.

    Decoded images wait, grouped by size, until their group fills a batch; at most about two
    batches wait, so a folder of all-different sizes still streams. The writers stay a little
    behind the model. Every finished job lands in ``summary`` once.
    """

    def __init__(self, translator: Translator, todo: list[_Job], settings: ConvertSettings, summary: Summary,
                 log: Callable[[str], None], *, progress: bool, manifest: Manifest = Manifest(None)) -> None:
        self.translator, self.todo, self.settings, self.summary, self.log = translator, todo, settings, summary, log
        self.manifest, self.journal = manifest, manifest if manifest.active else None
        # The largest batch any size gets; each size group's own limit is _group_limit.
        self.batch_size = max(1, settings.batch_size or MAX_BATCH)
        self.waiting: dict[tuple[int, int], list[_Decoded]] = defaultdict(list)
        self.pending: deque[Future] = deque()
        self.pool = ThreadPoolExecutor(max(1, settings.n_workers))  # encoders and writers, off the model's thread
        # Off when there is nothing to do, and when stderr is not a terminal (disable=None).
        self.bar = tqdm(total=len(todo), unit="img", disable=True if not (progress and todo) else None,
                        dynamic_ncols=True, file=sys.stderr)

    def run(self) -> None:
        loader = DataLoader(
            _Images([j.src for j in self.todo], channels=self.translator.input_nc, resize=self.settings.resize),
            batch_size=self.batch_size, collate_fn=list, num_workers=self.settings.n_workers,
            worker_init_fn=ignore_sigterm,
        )
        for chunk in loader if self.todo else []:
            for item in chunk:
                self._take(item)
            while sum(map(len, self.waiting.values())) > 2 * self.batch_size:
                self._translate(self.waiting.pop(max(self.waiting, key=lambda k: len(self.waiting[k]))))
            while len(self.pending) > 2 * self.batch_size:
                self._finish(self.pending.popleft().result())
        for group in self.waiting.values():
            self._translate(group)
        self.waiting.clear()

    def close(self) -> None:
        """Finish the files handed to the writers (also after Ctrl-C or SIGTERM), then write the manifest."""
        while self.pending:
            self._finish(self.pending.popleft().result())
        self.pool.shutdown()
        self.bar.close()
        self.manifest.finish(self.summary.rows)

    def _take(self, item: _Decoded) -> None:
        """A decoded image joins its size group; a full group goes through the model."""
        if item.error is not None:
            self._finish(_row(self.todo[item.index], status="failed", reason=f"cannot read: {item.error}"))
            return
        h, w = item.array.shape[:2]
        group = self.waiting[h, w]
        group.append(item)
        if len(group) >= self._group_limit(h, w):
            self._translate(self.waiting.pop((h, w)))

    def _group_limit(self, h: int, w: int) -> int:
        """How many h x w images one forward pass takes (pixel budgets: :mod:`cyclegan.devices`)."""
        if self.settings.batch_size is None:
            return default_batch_size(self.translator.device, (h, w))
        return capped_batch_size(self.batch_size, (h, w))

    def _translate(self, items: list[_Decoded]) -> None:
        s, t = self.settings, self.translator
        try:
            y = t.translate(to_tensor([it.array for it in items], t.device), tile=s.tile, overlap=s.overlap,
                            max_pixels=s.max_pixels, stats_size=s.stats_size)
        except TranslateError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. out of memory even in tiles: the other images go on
            for it in items:
                self._finish(_row(self.todo[it.index], status="failed", reason=f"cannot translate: {describe_error(e)}"))
            return
        for it, out in zip(items, to_numpy_images(y)):
            self.pending.append(self.pool.submit(_write, self.todo[it.index], out, it.alpha, s.fmt, it.frames,
                                                 self.journal))

    def _finish(self, row: dict) -> None:
        self.summary.add(row)
        if row["status"] == "failed":
            self.log(f"skipped {row['input']}: {row['reason']}")
        self.bar.update(1)
