#!/usr/bin/env python3
"""Download one of the published CycleGAN datasets.

Usage:
    python datasets/download.py NAME [--root DIR] [--base-url URL]

The archive is fetched from the CycleGAN authors' server (the same URL the
original ``download_cyclegan_dataset.sh`` uses) into ``ROOT/NAME.zip.part``,
renamed to ``ROOT/NAME.zip`` once complete, extracted to ``ROOT/NAME/``
(``trainA``, ``trainB``, ``testA``, ``testB``) and then deleted.

* Interrupted downloads resume where they stopped (HTTP ``Range``); if the
  server ignores the range, the download restarts cleanly from zero.
* Zip entries with absolute paths or ``..`` components are rejected.
* A dataset that is already extracted is reported and skipped.
* The base URL can be overridden with ``--base-url`` or the environment
  variable ``CYCLEGAN_DATASET_URL`` (e.g. for a mirror).

The download itself is ``cyclegan.inference.download`` (shared with the published
models of ``cyclegan pretrained``); the script runs from a checkout with or
without the package installed. ``tqdm`` draws the progress bar when installed.

Exit codes: 0 success (or already present), 1 download/extraction failure,
2 bad usage (e.g. unknown dataset name).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import Optional, Sequence

if __name__ == "__main__":  # run as a script: use this checkout's package, installed or not
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cyclegan.inference.download import TIMEOUT_S, DownloadError  # noqa: E402
from cyclegan.inference.download import download as _download  # noqa: E402

DATASETS: tuple[str, ...] = (
    "horse2zebra",
    "maps",
    "apple2orange",
    "summer2winter_yosemite",
    "monet2photo",
    "cezanne2photo",
    "ukiyoe2photo",
    "vangogh2photo",
    "facades",
    "iphone2dslr_flower",
)
DEFAULT_BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
URL_ENV_VAR = "CYCLEGAN_DATASET_URL"
SPLITS: tuple[str, ...] = ("trainA", "trainB", "testA", "testB")
DEFAULT_ROOT = Path(__file__).resolve().parent


# --------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------


def base_url(override: Optional[str] = None) -> str:
    """The base URL: explicit override, else $CYCLEGAN_DATASET_URL, else default."""
    url = override or os.environ.get(URL_ENV_VAR) or DEFAULT_BASE_URL
    return url.rstrip("/")


def dataset_url(name: str, base: Optional[str] = None) -> str:
    return f"{base_url(base)}/{name}.zip"


# --------------------------------------------------------------------------
# Resumable download: one implementation in the package, shared with pretrained models
# --------------------------------------------------------------------------


def download(url: str, dest: Path, *, timeout: float = TIMEOUT_S, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a previous partial file
    (see :func:`cyclegan.inference.download.download`); status lines go to stdout."""
    return _download(url, dest, timeout=timeout, progress=progress, notify=print)


# --------------------------------------------------------------------------
# Safe extraction
# --------------------------------------------------------------------------


def _safe_member_path(name: str) -> PurePosixPath:
    """Validate one zip entry name; return it as a relative POSIX path."""
    normalized = name.replace("\\", "/")
    path = PurePosixPath(normalized)
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized) or path.is_absolute():
        raise DownloadError(f"refusing to extract absolute path {name!r}")
    if ".." in path.parts:
        raise DownloadError(f"refusing to extract path outside the target folder {name!r}")
    return path


def safe_extract(zip_path: Path, dest: Path) -> Path:
    """Extract ``zip_path`` so that its images end up in ``dest`` (``dest/trainA``, ...).

    All entries are checked before anything is written. The archive is
    unpacked into a hidden staging folder next to ``dest`` and moved into place
    only when complete. A single top-level folder in the archive (the
    published zips contain ``NAME/trainA/...``) is unwrapped.
    """
    if dest.exists():
        raise DownloadError(f"{dest} already exists")
    staging = dest.with_name(f".{dest.name}.extracting")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = archive.infolist()
            for info in members:  # validate everything first: all or nothing
                _safe_member_path(info.filename)
            staging.mkdir(parents=True)
            root = staging.resolve()
            for info in members:
                target = (staging / _safe_member_path(info.filename)).resolve()
                if target != root and root not in target.parents:
                    raise DownloadError(f"refusing to extract {info.filename!r} outside {dest}")
                archive.extract(info, staging)
        entries = [p for p in staging.iterdir() if p.name != "__MACOSX"]
        single_dir = len(entries) == 1 and entries[0].is_dir() and entries[0].name not in SPLITS
        content = entries[0] if single_dir else staging
        os.replace(content, dest)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{zip_path} is not a valid zip file ({exc}); delete it and try again") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return dest


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def is_extracted(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def fetch_dataset(
    name: str,
    root: Path = DEFAULT_ROOT,
    *,
    base: Optional[str] = None,
    timeout: float = TIMEOUT_S,
    progress: bool = True,
) -> Path:
    """Download and extract dataset ``name`` into ``root/name``; return that folder."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}")
    root = Path(root)
    target = root / name
    if is_extracted(target):
        print(f"{name} is already present at {target}; skipping")
        return target
    zip_path = root / f"{name}.zip"
    if not zip_path.exists():
        url = dataset_url(name, base)
        download(url, zip_path, timeout=timeout, progress=progress)
    print(f"extracting {zip_path} -> {target}")
    if target.exists():  # an empty leftover folder
        target.rmdir()
    safe_extract(zip_path, target)
    zip_path.unlink()
    missing = [split for split in SPLITS if not (target / split).is_dir()]
    if missing:
        print(f"warning: {target} has no {', '.join(missing)} folder(s)", file=sys.stderr)
    print(f"done: {target}")
    return target


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Download a published CycleGAN dataset.",
        epilog="datasets: " + ", ".join(DATASETS),
    )
    parser.add_argument("name", help="dataset name, e.g. horse2zebra")
    parser.add_argument(
        "--root",
        type=Path,
        default=DEFAULT_ROOT,
        help="folder that receives NAME/ (default: the folder containing this script)",
    )
    parser.add_argument(
        "--base-url",
        default=None,
        help=f"server folder holding NAME.zip (default: ${URL_ENV_VAR} or {DEFAULT_BASE_URL})",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse_args(argv)
    if args.name not in DATASETS:
        print(f"unknown dataset {args.name!r}; choose one of: {', '.join(DATASETS)}", file=sys.stderr)
        return 2
    try:
        fetch_dataset(args.name, args.root, base=args.base_url, progress=not args.no_progress)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, permissions, ...
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
