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

Only the standard library is required; ``tqdm`` is used for the progress bar
when it is installed.

Exit codes: 0 success (or already present), 1 download/extraction failure,
2 bad usage (e.g. unknown dataset name).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Optional, Sequence

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
TIMEOUT_S = 15.0  # connect timeout, and the longest a read may stall
CHUNK_SIZE = 1 << 16
MAX_ATTEMPTS = 3  # retries only after a transfer that made progress
DEFAULT_ROOT = Path(__file__).resolve().parent


class DownloadError(Exception):
    """A failure that is reported to the user as a single line."""


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
# Progress bar (tqdm when available, a plain fallback otherwise)
# --------------------------------------------------------------------------


class _PlainProgress:
    """Minimal stand-in for tqdm: prints percentage / bytes to stderr."""

    def __init__(self, total: Optional[int], initial: int, desc: str) -> None:
        self.total = total
        self.n = initial
        self.desc = desc
        self._last = -1

    def update(self, n: int) -> None:
        self.n += n
        if self.total:
            pct = int(100 * self.n / self.total)
            if pct != self._last:
                self._last = pct
                sys.stderr.write(f"\r{self.desc}: {pct:3d}% ({self.n >> 20} / {self.total >> 20} MiB)")
                sys.stderr.flush()
        else:
            mib = self.n >> 20
            if mib != self._last:
                self._last = mib
                sys.stderr.write(f"\r{self.desc}: {mib} MiB")
                sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: Optional[int], initial: int, desc: str, enabled: bool):
    if not enabled:
        return _NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress(total, initial, desc)
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024)


# --------------------------------------------------------------------------
# Resumable download
# --------------------------------------------------------------------------


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or url


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _unreachable(url: str, exc: BaseException, dest_dir: Path) -> DownloadError:
    return DownloadError(
        f"cannot reach {_host(url)}: {_reason(exc)}; "
        f"check your connection or download {url} by hand into {dest_dir}/"
    )


def _content_range_start(header: Optional[str]) -> Optional[int]:
    """Start offset of a ``Content-Range: bytes START-END/TOTAL`` header."""
    match = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", header or "")
    return int(match.group(1)) if match else None


def _content_range_total(header: Optional[str]) -> Optional[int]:
    match = re.match(r"\s*bytes\s+(?:\d+-\d+|\*)/(\d+)", header or "")
    return int(match.group(1)) if match else None


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "cyclegan-download/1.0"})
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _copy(response: BinaryIO, out: BinaryIO, update: Callable[[int], None]) -> None:
    while True:
        chunk = response.read(CHUNK_SIZE)
        if not chunk:
            return
        out.write(chunk)
        update(len(chunk))


def _transfer(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One attempt: continue ``part`` from its current size up to the end.

    Raises DownloadError for permanent failures and OSError/URLError for
    network trouble (which the caller may retry).
    """
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset > 0:
            # Nothing left to send: either the .part is already complete or
            # it is longer than the file on the server (then start over).
            total = _content_range_total(exc.headers.get("Content-Range"))
            if total == offset:
                return
            part.unlink()
            return _transfer(url, part, timeout, progress)
        raise DownloadError(f"{url}: server answered HTTP {exc.code} {exc.reason}") from None

    with response:
        status = getattr(response, "status", 200)
        if status == 206:
            if offset == 0:
                raise DownloadError(f"{url}: server sent partial content that was not asked for")
            if _content_range_start(response.headers.get("Content-Range")) != offset:
                # Not the range we asked for: drop the .part and start over cleanly.
                response.close()
                part.unlink()
                return _transfer(url, part, timeout, progress)
            mode = "ab"
        else:
            if offset > 0:
                print(f"server ignored the resume request; restarting {part.name} from the beginning")
            offset, mode = 0, "wb"
        action = f"resuming at byte {offset}" if offset else "downloading"
        print(f"{action} {url} -> {part.with_suffix('')}")
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        bar = _progress_bar(total, offset, part.name.removesuffix(".part"), progress)
        try:
            with open(part, mode) as out:
                _copy(response, out, bar.update)
        finally:
            bar.close()

    if total is not None and part.stat().st_size != total:
        raise urllib.error.URLError(f"connection closed after {part.stat().st_size} of {total} bytes")


def download(url: str, dest: Path, *, timeout: float = TIMEOUT_S, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a previous partial file.

    The finished file is moved into place atomically. Raises DownloadError
    with a one-line message on failure (the ``.part`` file is kept so the next
    run resumes).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(url, part, timeout, progress)
            break
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            after = part.stat().st_size if part.exists() else 0
            if after > before and attempt < MAX_ATTEMPTS:
                print(f"transfer interrupted ({_reason(exc)}); resuming at byte {after}", file=sys.stderr)
                continue
            if after > before:
                raise DownloadError(
                    f"download of {url} interrupted: {_reason(exc)}; run the same command again to resume"
                ) from None
            raise _unreachable(url, exc, dest.parent) from None
    os.replace(part, dest)
    return dest


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
