"""The manifest of a converted folder: which checkpoint, with which settings, wrote each output.

It is what makes a rerun safe. An output that already exists is kept only when the
manifest says it came from the same checkpoint (sha256) with the same settings
(direction, format, resize, tiling, precision); any other existing output (another
checkpoint, other settings, or no manifest entry at all: unknown origin) is refused
before anything is written, unless ``--overwrite``. Each row carries its own checkpoint
and settings, and rows of earlier runs for outputs this run does not touch are kept, so
the manifest never claims an image that its checkpoint did not write.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cyclegan.errors import TranslateError
from cyclegan.data.images import RESIZE_RULE, publish

MANIFEST_COLUMNS = ["input", "output", "width", "height", "status", "reason", "checkpoint_sha256", "settings"]
# Statuses of rows whose output file was written by the row's checkpoint.
WRITTEN = ("converted", "exists")


class StaleOutputError(TranslateError):
    """The output folder holds files this checkpoint and these settings did not write."""


def settings_fingerprint(*, direction: str, precision: str, fmt: str, resize, tile, overlap, max_pixels,
                         stats_size) -> str:
    """Everything that changes the output pixels, as one readable string (batch size and workers do not)."""
    resize = f"{resize}:{RESIZE_RULE}" if resize else None  # earlier versions resized with PIL bicubic
    values = {"direction": direction, "format": fmt, "resize": resize, "tile": tile, "overlap": overlap,
              "max_pixels": max_pixels, "stats_size": stats_size, "precision": precision}
    return " ".join(f"{k}={'none' if v is None else v}" for k, v in values.items())


def _key(path: str | os.PathLike) -> Path:
    return Path(path).resolve()


def read_manifest(path: Path) -> dict[Path, dict]:
    """Rows of an existing manifest by their output path (resolved); {} when there is none."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TranslateError(f"cannot read the manifest {path}: {e}; move it away or pass --overwrite") from None
    return {_key(r["output"]): r for r in rows if r.get("output")}


def check_origin(existing: Path, previous: dict[Path, dict], origin: dict[str, str]) -> str | None:
    """Why ``existing`` (an output file already there) may not be kept; None when it may."""
    row = previous.get(_key(existing))
    if row is None or row.get("status") not in WRITTEN:
        return "no manifest entry (unknown origin)"
    if row.get("checkpoint_sha256") != origin["checkpoint_sha256"]:
        return f"written by checkpoint {str(row.get('checkpoint_sha256'))[:12]}..., not {origin['checkpoint_sha256'][:12]}..."
    if row.get("settings") != origin["settings"]:
        return f"written with other settings ({row.get('settings') or 'not recorded'})"
    return None


def refuse_stale(folder: Path, stale: list[tuple[Path, str]]) -> None:
    """One line naming the folder, one example and the way out."""
    if stale:
        path, why = stale[0]
        more = f"; {len(stale) - 1} more" if len(stale) > 1 else ""
        raise StaleOutputError(
            f"{folder} already holds outputs this checkpoint and these settings did not write ({path.name}: {why}"
            f"{more}); pass --overwrite to replace them, or choose a new --output")


def write_manifest(path: Path, rows: Iterable[dict], *, previous: dict[Path, dict] | None = None) -> None:
    """This run's rows, plus earlier rows for outputs this run did not touch; atomically."""
    rows = list(rows)
    touched = {_key(r["output"]) for r in rows}
    kept = [r for k, r in (previous or {}).items() if k not in touched]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in sorted(kept + rows, key=lambda r: (r["input"], r["output"])):
            writer.writerow(row)
    publish(tmp, path)
