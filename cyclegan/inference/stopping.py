"""Stopping a conversion cleanly: SIGTERM (what ``timeout``, ``docker stop``, Kubernetes and SLURM
send) is handled as Ctrl-C is. The files already handed to the writers are finished and the
manifest is written, then :class:`ConversionInterrupted` says how to resume. A second SIGTERM
ends the process at once, a second Ctrl-C aborts the finishing; the manifest's journal (:mod:`cyclegan.inference.manifest`) keeps the
folder resumable however a run ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from cyclegan.errors import CycleGANError


class ConversionInterrupted(CycleGANError):
    """Ctrl-C or SIGTERM stopped a conversion: the files in flight were finished and every output
    written is in the manifest, so the same command resumes. ``exit_code`` is 128 + the signal's
    number, as a shell reports a process that the signal ended; ``summary`` is what was done."""

    def __init__(self, signum: signal.Signals, summary, *, left: int, manifest=None) -> None:
        where = f"recorded in {manifest}; " if manifest is not None else ""
        super().__init__(f"stopped by {signum.name}: {summary.converted} output(s) written and {where}{left} left; "
                         "run the same command again to resume")
        self.exit_code, self.summary = 128 + int(signum), summary


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt."""


class StopOnSigterm:
    """While entered (in the main thread; elsewhere signals cannot be handled), SIGTERM raises
    :class:`Terminated` as Ctrl-C raises KeyboardInterrupt, but only while ``armed``: while the
    files in flight are finished it is only noted. A second SIGTERM ends the process at once."""

    def __init__(self) -> None:
        self.armed, self._previous = True, None

    def __enter__(self) -> StopOnSigterm:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._stop) or signal.SIG_DFL
        return self

    def _stop(self, signum: int, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if self.armed:
            raise Terminated

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def run_until_stopped(run: Callable[[], None], finish: Callable[[], None]) -> signal.Signals | None:
    """``run()``, then ``finish()`` however it ends; the signal that stopped ``run`` (SIGINT for
    Ctrl-C, SIGTERM), or None when it ran to its end."""
    with StopOnSigterm() as sigterm:
        try:
            run()
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM through StopOnSigterm
            return signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
        finally:
            sigterm.armed = False
            finish()
    return None


def ignore_sigterm(worker_id: int) -> None:
    """``worker_init_fn`` of decoding workers: SIGTERM sent to the whole process group (SLURM,
    systemd) is left to the main process, which stops the workers once the files in flight are written."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
