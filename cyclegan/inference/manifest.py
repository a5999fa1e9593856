"""The manifest of a converted folder: which checkpoint, with which settings, wrote each output.

It is what makes a rerun safe. An output that already exists is kept only when the
manifest says it came from the same checkpoint (sha256) with the same settings
(direction, format, resize, tiling, precision); any other existing output (another
checkpoint, other settings, or no manifest entry at all: unknown origin) is refused
before anything is written, unless ``--overwrite``. Each row carries its own checkpoint
and settings, and rows of earlier runs for outputs this run does not touch are kept, so
the manifest never claims an image that its checkpoint did not write.

A run that is killed (SIGKILL, the OOM killer) never gets to write the CSV, so each output
is also journaled as it is written: one line appended to ``.NAME.journal`` beside the
manifest, naming the very file (inode, size, mtime) that is then renamed into place. The
next run folds the journal into what the manifest says, keeping a line only when its
output is still that file (a line whose rename never happened is dropped: that output is
converted again), and at its end writes the CSV and removes the journal. Temporary files
of a killed run are removed by the next one.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from cyclegan.errors import TranslateError
from cyclegan.data.images import RESIZE_RULE, publish
from cyclegan.inference.checkpoints import sha256_state_dict

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; temporaries are then told apart by their process id alone
    fcntl = None

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


def origin_of(translator, settings, checkpoint_sha256: str) -> dict[str, str]:
    """What the manifest records as the source of a run's outputs: the checkpoint's sha256 (for a
    module from Python without one: the hash of its weights) and the settings' fingerprint."""
    s = settings
    if not checkpoint_sha256 and translator.module is not None:
        checkpoint_sha256 = sha256_state_dict(translator.module)
    fingerprint = settings_fingerprint(
        direction=translator.metadata.get("direction", ""), precision=translator.precision, fmt=s.fmt,
        resize=s.resize, tile=s.tile, overlap=s.overlap, max_pixels=s.max_pixels, stats_size=s.stats_size)
    return {"checkpoint_sha256": checkpoint_sha256, "settings": fingerprint}


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path))
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in sorted(kept + rows, key=lambda r: (r["input"], r["output"])):
            writer.writerow(row)
    publish(tmp, path)


# --------------------------------------------------------------------------- journal and temporaries


def journal_path(manifest: Path) -> Path:
    """Where a conversion in progress journals its outputs: ``.NAME.journal`` beside the manifest."""
    return manifest.with_name(f".{manifest.name}.journal")


def temporary_prefix(path: Path) -> str:
    """Name prefix of the temporary file that becomes ``path``: hidden, with the writer's process id."""
    return f".{path.name}.tmp-{os.getpid()}-"


# Those of temporary_prefix + mkstemp's random part; earlier versions wrote no process id.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.tmp-(?:(?P<pid>\d+)-)?\w+")


def _running(pid: str | None) -> bool:
    """Whether the process that named a temporary file may still be writing it (called before this
    process writes any, so its own id means an earlier process's, e.g. in a restarted container)."""
    if pid is None or int(pid) == os.getpid():
        return False
    if os.name == "nt":  # signal 0 is CTRL_C_EVENT there: assume it runs (kept; no harm but a hidden file)
        return True
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):  # gone; or no process id at all
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True


def remove_temporaries(paths: Iterable[Path], *, all_stale: bool) -> int:
    """Delete the temporary files a killed run left beside ``paths`` (outputs of any format with
    their stems, the manifest): every one when ``all_stale`` (this run holds the journal's lock, so
    no other conversion into the folder runs), else those of a process that no longer runs.
    Returns how many were removed."""
    stems: dict[Path, set[str]] = defaultdict(set)
    for path in paths:
        stems[path.parent].add(path.stem)
    removed = 0
    for folder, names in stems.items():
        try:
            entries = [e for e in os.scandir(folder) if e.name.startswith(".") and ".tmp-" in e.name]
        except OSError:  # not there yet: nothing left in it
            continue
        for entry in entries:
            match = _TEMPORARY.fullmatch(entry.name)
            if match and Path(match["name"]).stem in names and (all_stale or not _running(match["pid"])):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def _is_still(output: str, ino: int, size: int, mtime_ns: int) -> bool:
    """Whether ``output`` is the very file a journal line names (a rename keeps inode and mtime)."""
    try:
        st = os.stat(output)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (size, mtime_ns) and (st.st_ino == ino or not ino)


def read_journal(path: Path) -> dict[Path, dict]:
    """Rows a conversion journaled, by output (resolved), each only while its output is still the
    file it wrote; {} when there is no journal."""
    try:
        with open(path, "rb") as f:
            return journal_rows(f.read())
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise TranslateError(f"cannot read the manifest journal {path}: {e.strerror or e}; move it away") from None


def journal_rows(data: bytes) -> dict[Path, dict]:
    """:func:`read_journal` of a journal's bytes. A line cut short (a power loss) is skipped."""
    rows = {}
    for line in data.splitlines():
        try:
            entry = json.loads(line)
            output, (ino, size, mtime_ns) = entry["output"], entry["file"]
        except (ValueError, KeyError, TypeError):
            continue
        if _is_still(output, ino, size, mtime_ns):
            rows[_key(output)] = {c: str(entry.get(c, "")) for c in MANIFEST_COLUMNS}
    return rows


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)  # writes still append: O_APPEND
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _opened(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _lock(fd: int) -> bool | None:
    """Lock a journal for this process: True; False where the file system has no locks; None when
    another process holds it. A POSIX record lock: it ends with the process however it ends, and
    decoding workers forked from it do not inherit it (a flock would outlive a killed run in an
    orphaned worker). It also ends when the process closes any descriptor of the file: the journal
    is read back through ``fd`` only."""
    if fcntl is None:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        return None if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES) else False
    return True


class Manifest:
    """The manifest of one conversion: ``previous`` (the CSV, folded with the journal a killed run
    left), this run's journal (:meth:`record`, from the writer threads), the CSV at the end
    (:meth:`finish`). With ``path`` None there is none and every call does nothing.

    A row is journaled before its temporary file is renamed into place, and is valid only once
    it has been (:func:`read_journal`): a crash at any instant leaves rows for complete outputs
    only and no output without its row. Each row is one ``os.write`` of an ``O_APPEND``
    descriptor: in the kernel once the call returns, so it survives the process being killed
    (SIGKILL, the OOM killer). There is no fsync, of rows or of outputs: that would guard
    against a power loss only, at a disk flush per image; after one, an output whose row did not
    reach the disk is refused as of unknown origin, never listed under the wrong checkpoint.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.journal = journal_path(path) if path is not None else None
        self.previous = {**read_manifest(path), **read_journal(self.journal)} if path is not None else {}
        self.locked = False  # this run holds the journal's lock: no other conversion writes here
        self._fd: int | None = None
        self._origin: dict[str, str] = {}
        self._write_lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self._fd is not None

    def open(self, origin: dict[str, str], *, outputs: list[Path]) -> None:
        """Start journaling this run's rows (after the checks: a refused run writes nothing), and
        remove the temporary files a killed run left beside ``outputs`` and the manifest.
        Refuses when another conversion is writing into the same manifest right now."""
        self._origin = origin
        self._open_journal()
        remove_temporaries([*outputs, *([self.path] if self.path is not None else [])], all_stale=self.locked)

    def _open_journal(self) -> None:
        if self.journal is None:
            return
        for _ in range(3):
            try:
                self.journal.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.journal, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            except OSError as e:
                raise TranslateError(f"cannot write the manifest journal {self.journal}: {e.strerror or e}") from None
            locked = _lock(fd)
            if locked is None:
                os.close(fd)
                raise TranslateError(
                    f"another conversion is writing into {self.path.parent} now ({self.journal.name} is locked); "
                    "wait for it to end, or choose another --output")
            if _opened(fd, self.journal):
                self._fd, self.locked = fd, locked
                return
            os.close(fd)  # the run before removed it as this one opened it: open the new one

    def record(self, row: dict, written: os.stat_result) -> None:
        """Journal ``row`` for the finished temporary file ``written`` (before it is renamed)."""
        if self._fd is None:
            return
        entry = {**self._origin, **row, "file": [written.st_ino, written.st_size, written.st_mtime_ns]}
        data = (json.dumps(entry) + "\n").encode()
        with self._write_lock:
            while data:
                data = data[os.write(self._fd, data):]

    def finish(self, rows: list[dict]) -> None:
        """Write the CSV (earlier rows, this run's journal, ``rows``), then remove the journal."""
        if self.path is None:
            return
        # The journal also has outputs whose rows an interrupt kept out of ``rows``.
        journaled = journal_rows(_read_all(self._fd)) if self._fd is not None else {}
        write_manifest(self.path, rows, previous={**self.previous, **journaled})
        if self._fd is not None:
            self.journal.unlink(missing_ok=True)  # while still locked: the next run opens a new one
            os.close(self._fd)
            self._fd = None
