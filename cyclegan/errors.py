"""Errors and warnings a user can act on. Each error derives from ``CycleGANError``; the command
line catches that one base once (cli.app) and prints ``error: <message>`` in one line, exit code
``error.exit_code``. Anything else is a bug and keeps its traceback. Warnings go through
:func:`warn`, one line each."""

from __future__ import annotations

import logging

_log = logging.getLogger("cyclegan")


class CycleGANError(Exception):
    """A user-facing problem: bad argument, unreadable file, unusable checkpoint."""

    exit_code = 2


class DataError(CycleGANError, ValueError):
    """An image folder or file that cannot be used."""


class CheckpointError(CycleGANError, ValueError):
    """A checkpoint or model file that cannot be read or does not fit."""


class TranslateError(CycleGANError, ValueError):
    """Bad settings for converting images."""


class EvaluationError(CycleGANError, ValueError):
    """Bad settings or inputs for evaluate/compare."""


class MetricsError(CycleGANError, ValueError):
    """Images that a metric cannot score (shape, range)."""


class NonFiniteLossError(CycleGANError, RuntimeError):
    """Training stopped after too many non-finite losses in a row."""

    exit_code = 1


def first_line(error: BaseException) -> str:
    """An exception as one line for an ``error:`` or ``warning:`` message: its message's first
    line, or its type's name when it has none (a library's multi-line dump stays out)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def warn(message: str) -> None:
    """A warning the user can act on (a skipped update or file, a state that cannot come back),
    as one line on the ``cyclegan`` logger: shown even while the CLI quiets Lightning's own info
    lines; under DDP from rank 0 only (Lightning sets the rank where it runs; elsewhere it is 0)."""
    from lightning_utilities.core.rank_zero import rank_zero_only  # tiny; Lightning's rank bookkeeping

    if getattr(rank_zero_only, "rank", 0) == 0:
        _log.warning(message)
