"""The Ray executor: chunks of runs as Ray tasks on a cluster (or a local Ray runtime), results as they finish.

Each ``ChunkTask`` becomes one Ray task calling ``stacked.train_chunk``, the same function the local
executor calls, at one torch thread and under the driver's CPU pinning (``runtime_env`` env_vars), so a
study on Ray gives the local numbers bit for bit. The driver keeps everything else: it splits the runs, writes
the experiment folder as results stream back (``ray.wait``), and draws the progress bar from the run-epochs
the tasks report to a small actor. A task whose worker dies is retried by Ray (``MAX_RETRIES``); its result
still comes back once, keyed by ``ChunkTask.index``. Ctrl-C or SIGTERM in the driver cancels the remote tasks
and shuts down a Ray runtime this module started.

Where it runs: the Ray runtime this process is connected to (``ray.init``), else ``address``
(``--ray-address`` / ``train.ray_address``), else ``RAY_ADDRESS``, else a new local one with ``workers`` CPUs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import ray
import torch

from actlab.devices import available_cores
from actlab.engines import stacked
from actlab.engines.executors import ExecutorError
from actlab.signals import HANDLED, Terminated

if TYPE_CHECKING:
    from actlab.engines.common import Progress, TrainSettings
    from actlab.engines.stacked import ChunkResult, ChunkTask

# What makes a worker compute as the driver does: actlab/__init__.py pins MKL, ATen and oneDNN through these
# (read when torch first computes, so they must be in the worker's environment from its start).
PINNED_ENV = ("ACTLAB_PIN_CPU", "MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
MAX_RETRIES = 3  # a task whose worker or node dies runs again (Ray's default for tasks)
POLL_SECONDS = 0.2  # how often the driver passes reported run-epochs on to the progress bar
CONNECT_SECONDS = 5.0  # how long ``preflight`` waits for a cluster's host to accept a connection


@ray.remote(num_cpus=0)
class _Tally:
    """Run-epochs reported by each task's current attempt (a retried task starts again from zero)."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def start(self, index: int) -> None:
        self.counts[index] = 0

    def add(self, index: int, n: int) -> None:
        self.counts[index] = self.counts.get(index, 0) + n

    def snapshot(self) -> dict[int, int]:
        return dict(self.counts)


@ray.remote(num_cpus=1, max_retries=MAX_RETRIES)
def _train(task: ChunkTask, tally) -> tuple[ChunkResult, int]:
    """One chunk in a Ray worker: its result, and how many run-epochs it reported."""
    torch.set_num_threads(1)  # the engines' numbers are defined at one thread
    tally.start.remote(task.index)
    total, unsent, last = 0, 0, time.monotonic()

    def report(n: int) -> None:
        nonlocal total, unsent, last
        total, unsent = total + n, unsent + n
        if time.monotonic() - last >= POLL_SECONDS:  # a call per epoch would cost more than a tiny epoch
            tally.add.remote(task.index, unsent)  # fire and forget: the training never waits for the driver
            unsent, last = 0, time.monotonic()

    return stacked.train_chunk(task, report), total  # the total tops up what the tally has not passed on


def run(
    tasks: Sequence[ChunkTask], *, workers: int, progress: Progress | None, address: str | None = None,
    **options,
) -> Iterator[ChunkResult]:
    """Train ``tasks`` as Ray tasks; yields each task's result once, as tasks finish, in any order.

    ``workers``: CPUs of a local Ray runtime started here (0: one per core); ignored on a cluster.
    """
    started = connect(address, workers)
    try:
        with _termination_named():
            yield from _stream(tasks, progress)
    finally:
        if started:
            ray.shutdown()


def parallelism(workers: int, settings: TrainSettings, address: str | None = None) -> int:
    """How many chunks to cut at least: the cluster's CPUs (connecting to it), or a local runtime's."""
    if ray.is_initialized() or address or os.environ.get("RAY_ADDRESS"):
        connect(address)  # stays connected for ``run``; a cluster is never shut down from here
        return cluster_cpus()
    return workers or available_cores()


def preflight(address: str | None = None) -> None:
    """Before the experiment folder is made: connect to a cluster given by address (``--ray-address`` or
    RAY_ADDRESS; the connection stays for ``run``), so that a wrong address is one line and no folder. Where
    the address names a host and port, nothing answering there fails in seconds, not after Ray's own wait."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None or ray.is_initialized() or address in ("auto", "local"):
        return  # a local runtime (started by ``run``) or one this process is connected to already
    where = _host_port(address)
    if where is not None:
        try:
            socket.create_connection(where, timeout=CONNECT_SECONDS).close()
        except OSError as exc:
            raise ExecutorError(f"cannot connect to the Ray cluster at {address!r} (nothing answers at "
                                f"{where[0]}:{where[1]}: {exc.strerror or exc}); {_FIX}") from None
    connect(address)


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of "host:port" or "ray://host:port", None where the address has another form (Ray
    judges those); ExecutorError for a port no host can have."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None
    if not 0 < int(port) < 65536:
        raise ExecutorError(f"Ray cluster address {address!r}: port {port} is not in 1-65535; {_FIX}")
    return host.strip("[]"), int(port)


def connect(address: str | None, workers: int = 0) -> bool:
    """Connect to ``address``, RAY_ADDRESS or this process's Ray runtime, or start a local one (True then)."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return False
    if address is None:
        with _signals_kept(ignore_ctrl_c=True):
            # "local": a new runtime, even where a `ray start` on this machine left one (or its traces)
            ray.init(address="local", num_cpus=workers or available_cores(), include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR)  # Ray's notes would break up the progress bar
        return True
    said: list[str] = []
    try:
        with _signals_kept(ignore_ctrl_c=False), _stderr_set_aside(said):
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, TimeoutError, ValueError) as exc:
        raise ExecutorError(f"cannot connect to the Ray cluster at {address!r} ({exc}{_why(said)}); "
                            f"{_fix(said)}") from None
    return False


_FIX = "start one with 'ray start --head' or fix --ray-address / train.ray_address / RAY_ADDRESS"


def _why(said: list[str]) -> str:
    """Ray core's last word while connecting (its C++ log line, prefix cut), as "; Ray: ..."; "" if none."""
    last = said[-1] if said else ""
    reason = last.split("GCS server: ", 1)[-1] if "GCS server: " in last else last.split("] ", 1)[-1]
    return f"; Ray: {reason.strip()[:200]}" if reason.strip() else ""


def _fix(said: list[str]) -> str:
    """What to do: a cluster started with token authentication (Ray 2.59 on) needs the driver's token too."""
    if said and "Auth" in said[-1]:
        return "the cluster wants its token: set RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN, or ~/.ray/auth_token)"
    return _FIX


@contextlib.contextmanager
def _stderr_set_aside(said: list[str]) -> Iterator[None]:
    """File descriptor 2 goes to a scratch file inside the block, its lines into ``said``: Ray's C++ core
    writes its connection warnings there directly (logging_level does not reach it), one a second while it
    retries, which would bury actlab's one-line error (it quotes the last one instead). Connecting to a
    cluster starts no local process that could keep the scratch file as its stderr."""
    sys.stderr.flush()
    kept = os.dup(2)
    try:
        with tempfile.TemporaryFile() as scratch:
            os.dup2(scratch.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(kept, 2)
                scratch.seek(0)
                said.extend(line for line in scratch.read().decode(errors="replace").splitlines() if line.strip())
    finally:
        os.close(kept)


@contextlib.contextmanager
def _signals_kept(ignore_ctrl_c: bool) -> Iterator[None]:
    """The driver's signal handlers are the same after the block as before it; with ``ignore_ctrl_c``,
    processes started inside ignore SIGINT (an ignored signal stays ignored across exec).

    - ``ray.init`` installs its own SIGTERM handler (a plain exit): actlab's, which ends a run the way Ctrl-C
      does (``actlab.signals``: finished runs kept, the reason in status.json, exit code 143), comes back.
    - The terminal sends Ctrl-C to its whole process group, which holds a local Ray runtime's own processes.
      Where the driver ignores SIGINT (a shell's background job, nohup) they died under it and its next
      ``ray.wait`` never returned (measured); where it handles SIGINT, it cancels the tasks and shuts the
      runtime down itself either way. A Ctrl-C during the seconds of start-up is ignored.
    Outside the main thread (no signal handlers there) the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, *HANDLED)}
    if ignore_ctrl_c:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in kept.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _termination_named() -> Iterator[None]:
    """A SIGTERM or SIGHUP inside the block ends it as ``signals.Terminated``, whatever Ray made of it.

    Ray runs the driver's signal handlers from inside ``ray.wait`` and turns what they raise into a plain
    KeyboardInterrupt (measured): status.json would say Ctrl-C and the exit code would be 130, not 143.
    Only actlab's own handlers (callables) are watched; SIG_DFL and SIG_IGN are left as they are.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {s: h for s in HANDLED if callable(h := signal.getsignal(s))}
    got: list[int] = []

    def note(signum: int, frame) -> None:
        got.append(signum)
        handlers[signum](signum, frame)

    for s in handlers:
        signal.signal(s, note)
    try:
        yield
    except KeyboardInterrupt as stop:
        if got and not isinstance(stop, Terminated):
            raise Terminated(got[0]) from None
        raise
    finally:
        for s, handler in handlers.items():
            if signal.getsignal(s) is note:  # the handler may have set it to SIG_IGN meanwhile: keep that
                signal.signal(s, handler)


def cluster_cpus() -> int:
    """CPUs of the Ray cluster this process is connected to: how many chunks can train at once."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _stream(tasks: Sequence[ChunkTask], progress: Progress | None) -> Iterator[ChunkResult]:
    """Submit every task, then yield results as they finish while relaying the tasks' progress."""
    env = {name: os.environ[name] for name in PINNED_ENV if name in os.environ}
    tally = _Tally.remote()
    submit = _train.options(runtime_env={"env_vars": env})
    pending = {submit.remote(task, tally): task for task in tasks}
    shown: dict[int, int] = {}  # run-epochs passed on to ``progress``, per task index
    done: set[int] = set()
    polled = time.monotonic()
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            if ready:  # and whatever else has finished meanwhile
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            if progress is not None and time.monotonic() - polled >= POLL_SECONDS:
                _relay(ray.get(tally.snapshot.remote()), shown, done, progress)
                polled = time.monotonic()
            for ref in ready:
                task = pending.pop(ref)
                result, total = ray.get(ref)
                if task.index in done:  # never twice, whatever happened to the task on the way
                    continue
                done.add(task.index)
                if progress is not None:
                    _relay({task.index: total}, shown, set(), progress)
                yield result
    finally:
        for ref in pending:  # Ctrl-C, SIGTERM, an error or the caller stopped: end the remote work now
            ray.cancel(ref, force=True)
        ray.kill(tally)


def _relay(counts: dict[int, int], shown: dict[int, int], done: set[int], progress: Progress) -> None:
    """Pass on run-epochs reported beyond what was shown (a retried task's repeats are not counted twice)."""
    for index, count in counts.items():
        if index not in done and count > shown.get(index, 0):
            progress(count - shown.get(index, 0), None)
            shown[index] = count
