"""Resumable, atomic HTTP downloads: the published datasets (datasets/download.py) and the
published generators (:mod:`cyclegan.inference.pretrained`) both come through :func:`download`.

* The file grows in ``DEST.part``; an interrupted download resumes there (HTTP ``Range``),
  and if the server ignores the range it restarts cleanly from zero.
* Only a complete file (and, with ``verify``, a checked one) is renamed to ``DEST``, so
  ``DEST`` is either absent or whole.
* Failures raise :class:`DownloadError` with a one-line message; an unreachable server
  names the URL and where to put the file by hand.

Standard library only; ``tqdm`` draws the progress bar when installed. Status messages go
to the caller's ``notify`` (a command prints them; the library itself prints nothing but
the progress bar).
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable, Optional

from cyclegan.errors import CycleGANError, first_line

TIMEOUT_S = 15.0  # connect timeout, and the longest a read may stall
CHUNK_SIZE = 1 << 16
MAX_ATTEMPTS = 3  # retries only after a transfer that made progress

Notify = Callable[[str], None]


class DownloadError(CycleGANError):
    """A download that failed; the message is one line."""


def _quiet(message: str) -> None:
    pass


# --------------------------------------------------------------------------
# Progress bar (tqdm when available, a plain fallback otherwise)
# --------------------------------------------------------------------------


class _PlainProgress:
    """Minimal stand-in for tqdm: writes percentage / bytes to stderr."""

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
    return first_line(reason)


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


def _transfer(url: str, part: Path, timeout: float, progress: bool, notify: Notify) -> None:
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
            return _transfer(url, part, timeout, progress, notify)
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
                return _transfer(url, part, timeout, progress, notify)
            mode = "ab"
        else:
            if offset > 0:
                notify(f"server ignored the resume request; restarting {part.name} from the beginning")
            offset, mode = 0, "wb"
        action = f"resuming at byte {offset}" if offset else "downloading"
        notify(f"{action} {url} -> {part.with_suffix('')}")
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


def download(
    url: str,
    dest: Path,
    *,
    timeout: float = TIMEOUT_S,
    progress: bool = True,
    notify: Optional[Notify] = None,
    by_hand: Optional[str] = None,
    verify: Optional[Callable[[Path], None]] = None,
) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a previous partial file.

    ``verify(part)`` checks the complete file before it is moved into place atomically; if
    it raises, the ``.part`` is deleted (a fresh download is needed) and the error goes to
    the caller. ``by_hand`` replaces the default advice of the unreachable-server message
    (``download URL by hand into DIR/``). Raises :class:`DownloadError` with a one-line
    message on failure; the ``.part`` file is kept so the next run resumes.
    """
    notify = notify or _quiet
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(url, part, timeout, progress, notify)
            break
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            after = part.stat().st_size if part.exists() else 0
            if after > before and attempt < MAX_ATTEMPTS:
                notify(f"transfer interrupted ({_reason(exc)}); resuming at byte {after}")
                continue
            if after > before:
                raise DownloadError(
                    f"download of {url} interrupted: {_reason(exc)}; run the same command again to resume"
                ) from None
            advice = by_hand or f"download {url} by hand into {dest.parent}/"
            raise DownloadError(f"cannot reach {_host(url)}: {_reason(exc)}; check your connection or {advice}") from None
    if verify is not None:
        try:
            verify(part)
        except Exception:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, dest)
    return dest
