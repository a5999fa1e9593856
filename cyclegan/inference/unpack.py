"""Single files taken out of a downloaded tar archive, found by how their member names end: how
the CUT authors' one ``pretrained_models.tar`` becomes six cached generators
(:mod:`cyclegan.inference.pretrained`).

Only the members asked for are read, each streamed into a file whose path the caller chose, so
nothing else in the archive is ever written and no member name ever becomes a path. A member
asked for must still be a regular file under a plain relative name (not absolute, no ``..``, no
backslash): a link or an escaping name is refused, as is a name that two members share. Each
file grows as ``DEST.part`` and takes its name only once complete and checked.
Failures are one line: :class:`BadArchive` (a :class:`CheckpointError`) for an archive that
does not hold what was asked for, naming the archive and the member; a plain
:class:`CycleGANError` when a file cannot be written (the archive itself is then still good).
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path
from typing import Callable, Mapping, Optional

from cyclegan.errors import CheckpointError, CycleGANError, first_line

# key -> how the member's name ends, and where its file goes
Wanted = Mapping[str, tuple[str, Path]]
Verify = Callable[[Path, str], None]  # (the written file, the member's name); raises when unusable


class BadArchive(CheckpointError):
    """An archive that is no tar, or lacks a member asked for, or holds it in a form refused."""


def _reading_error(archive: str, error: BaseException) -> BadArchive:
    return BadArchive(f"cannot read {archive} as a tar archive: {first_line(error)} (truncated or not a tar?)")


def _matches(name: str, tail: str) -> bool:
    return name == tail or name.endswith("/" + tail)


def _unsafe(name: str) -> Optional[str]:
    """Why a member name is no plain relative path, or None when it is one."""
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return "an absolute or non-POSIX name"
    if ".." in name.split("/"):
        return "a name that leaves the archive's folder"
    return None


def find_members(tar: tarfile.TarFile, tails: Mapping[str, str], *, source: str) -> dict[str, tarfile.TarInfo]:
    """key -> the one member whose name is ``tail`` or ends in ``/tail``, for every key of ``tails``.

    BadArchive naming ``source`` (the archive) and the member when one is missing, not a
    regular file, under an unsafe name, or found twice.
    """
    found: dict[str, list[tarfile.TarInfo]] = {key: [] for key in tails}
    try:
        for member in tar:
            for key, tail in tails.items():
                if _matches(member.name, tail):
                    found[key].append(member)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise _reading_error(source, e) from None
    members = {}
    for key, tail in tails.items():
        candidates = found[key]
        if not candidates:
            raise BadArchive(f"{source} has no member '{tail}' (looked for a name ending in it)")
        if len(candidates) > 1:
            names = ", ".join(repr(m.name) for m in candidates)
            raise BadArchive(f"{source} has {len(candidates)} members ending in '{tail}' ({names}); refusing to guess")
        member = candidates[0]
        reason = _unsafe(member.name)
        if reason is not None:
            raise BadArchive(f"refusing member '{member.name}' of {source}: {reason}")
        if not member.isreg():
            raise BadArchive(f"refusing member '{member.name}' of {source}: not a regular file (a link or folder)")
        members[key] = member
    return members


def open_archive(path: Path, *, source: Optional[str] = None) -> tarfile.TarFile:
    """``path`` opened as a tar (compressed or not); BadArchive naming ``source`` when it is none."""
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise _reading_error(source or str(path), e) from None


def check_archive(path: Path, tails: Mapping[str, str], *, source: Optional[str] = None) -> None:
    """BadArchive unless the tar at ``path`` holds every member of ``tails`` (see :func:`find_members`)."""
    with open_archive(path, source=source) as tar:
        find_members(tar, tails, source=source or str(path))


def extract_members(archive: Path, wanted: Wanted, *, verify: Optional[Verify] = None) -> list[Path]:
    """Write, for each key of ``wanted``, the member ending in its tail to its destination.

    Every member is located (and checked, see :func:`find_members`) before any file is written.
    Each file goes through ``DEST.part``; ``verify(part, member_name)`` may refuse it (the
    ``.part`` is then deleted). A failure leaves the destinations written so far in place.
    Returns the destinations, in the order of ``wanted``.
    """
    written = []
    with open_archive(archive) as tar:
        members = find_members(tar, {key: tail for key, (tail, _) in wanted.items()}, source=str(archive))
        for key, (_, dest) in wanted.items():
            member = members[key]
            part = dest.with_name(dest.name + ".part")
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                source = tar.extractfile(member)
                if source is None:  # isreg() was checked; kept for the type checker
                    raise BadArchive(f"refusing member '{member.name}' of {archive}: not a regular file")
                with source, open(part, "wb") as out:
                    shutil.copyfileobj(source, out)
            except (tarfile.TarError, EOFError) as e:
                part.unlink(missing_ok=True)
                raise BadArchive(f"cannot read member '{member.name}' of {archive}: {first_line(e)} (truncated?)") from None
            except OSError as e:
                part.unlink(missing_ok=True)
                raise CycleGANError(f"cannot unpack '{member.name}' of {archive} into {part}: {e.strerror or first_line(e)}") from None
            if verify is not None:
                try:
                    verify(part, member.name)
                except BaseException:
                    part.unlink(missing_ok=True)
                    raise
            os.replace(part, dest)
            written.append(dest)
    return written
