"""Signals: SIGTERM and SIGHUP end a run the way Ctrl-C does, and workers never outlive their parent.

``kill``, ``timeout`` and batch schedulers stop a process with SIGTERM; closing its terminal sends SIGHUP.
Their default action ends Python at once: no ``finally``, no status written, temporary folders left behind.
Inside ``terminate_as_interrupt()`` they raise ``Terminated`` instead, a KeyboardInterrupt, so every code
path that already handles Ctrl-C (mark the folder incomplete, keep finished runs, end the workers) handles
them too; the exit code is the shell's convention for death by that signal, 128 + its number.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

HANDLED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_SECONDS = 1.0  # how often the fallback watchdog looks for its parent


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGHUP raise ``Terminated``; the previous handlers come back after.

    After the first such signal the others are ignored until the block ends (the outermost one, when blocks
    are nested), so that a second SIGTERM (a scheduler's reminder) does not interrupt the cleanup the first
    one started. Outside the main thread (where Python cannot install handlers) the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    fired = False

    def raise_terminated(signum: int, frame: object) -> None:
        nonlocal fired
        fired = True
        _raise_terminated(signum, frame)

    raise_terminated.actlab_terminate = True  # type: ignore[attr-defined]
    # a signal ignored by whoever started actlab (`nohup` ignores SIGHUP) stays ignored: the user asked for it
    previous = {s: signal.signal(s, raise_terminated) for s in HANDLED if not _ignored(s)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            # nested in an outer block (the CLI's, around a training's): after a signal, the outer block's
            # cleanup (status, weights) must not be interrupted by the next one either
            outer = getattr(handler, "actlab_terminate", False)
            signal.signal(s, signal.SIG_IGN if fired and outer else handler)


@contextlib.contextmanager
def held(drop: bool = False) -> Iterator[None]:
    """Inside the block, Ctrl-C, SIGTERM and SIGHUP wait: the first one is raised again once the block ends
    (``drop``: never; for the clean-up of a run already stopping for a signal, where a second one is news of
    nothing).

    For a step that must not be cut half-way (deleting a folder). Handlers, not the signal mask: a signal
    sent to the process goes to any thread that does not block it (torch's, a pool's), and its Python
    handler would still run in the main thread. Outside the main thread the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: pending.append(signum))
                for s in (signal.SIGINT, *HANDLED) if not _ignored(s)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if pending and not drop:
            signal.raise_signal(pending[0])  # to this thread: its handler runs now, as if it came now


def install() -> None:
    """For the entry point, before anything else: SIGTERM and SIGHUP raise ``Terminated`` until the process ends.

    Ctrl-C already raises KeyboardInterrupt (Python's own handler). Signals the parent process made the
    process ignore (``nohup``: SIGHUP; a shell's background job: SIGINT) stay ignored.
    """
    for s in HANDLED:
        if not _ignored(s):
            signal.signal(s, _raise_terminated)


def ignore_all() -> None:
    """Ctrl-C, SIGTERM and SIGHUP ignored: while the process says why it stops and exits, nothing cuts it short."""
    for s in (signal.SIGINT, *HANDLED):
        signal.signal(s, signal.SIG_IGN)


def _raise_terminated(signum: int, _frame: object) -> None:
    for s in HANDLED:  # the next SIGTERM (a scheduler's reminder) must not cut the exit the first one started
        signal.signal(s, signal.SIG_IGN)
    raise Terminated(signum)


# a block of terminate_as_interrupt() nested in install()'s handlers keeps ignoring once a signal fired
_raise_terminated.actlab_terminate = True  # type: ignore[attr-defined]


def _ignored(signum: int) -> bool:
    return signal.getsignal(signum) == signal.SIG_IGN


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal number: 130 for Ctrl-C (SIGINT), 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + (interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT)


def reason(interrupt: KeyboardInterrupt) -> str:
    """What stopped the run, for status.json and the user: ``interrupted (Ctrl-C)``, ``terminated (SIGTERM)``."""
    if isinstance(interrupt, Terminated):
        return f"terminated ({signal.Signals(interrupt.signum).name})"
    return "interrupted (Ctrl-C)"


def worker_setup() -> None:
    """Call first in a worker process: end with the parent, and leave signals to it.

    - The parent handles Ctrl-C, SIGTERM and SIGHUP and ends its workers itself: a worker ignores SIGINT
      (the terminal sends it to the whole process group) and gets the default action, a quiet exit, for
      SIGTERM and SIGHUP, instead of the handlers it inherited by fork.
    - If the parent dies without ending them (SIGKILL, a crash), the workers exit by themselves: Linux's
      PR_SET_PDEATHSIG sends them SIGTERM; elsewhere a watchdog thread notices the new parent id.
    """
    import multiprocessing  # here, not at the top: the entry point imports this module before anything else

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for s in HANDLED:
        # SIGTERM is how the parent ends its workers (Pool.terminate, the parent-death signal): always the
        # default, even where the launcher made the parent ignore it (the workers would outlive a Ctrl-C);
        # an ignored SIGHUP (`nohup`) stays ignored: the worker survives the hang-up as its parent does
        if s == signal.SIGTERM or not _ignored(s):
            signal.signal(s, signal.SIG_DFL)
    parent = multiprocessing.parent_process()
    expected = parent.pid if parent is not None else os.getppid()
    if not _set_parent_death_signal(signal.SIGTERM):
        threading.Thread(target=_watch_parent, args=(expected,), daemon=True, name="actlab-parent-watch").start()
    if os.getppid() != expected:  # the parent died before the death signal was armed
        os._exit(1)


def _set_parent_death_signal(signum: int) -> bool:
    """prctl(PR_SET_PDEATHSIG, signum) on Linux; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(expected: int) -> None:
    while os.getppid() == expected:
        time.sleep(WATCH_SECONDS)
    os._exit(1)
