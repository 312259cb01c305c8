"""The local executor: chunks in this process, or in forked worker processes (one thread each)."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import queue
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from actlab import signals
from actlab.devices import available_cores
from actlab.engines.common import Progress, TrainSettings
from actlab.engines.stacked import ChunkResult, ChunkTask, train_chunk


def _forkable(settings: TrainSettings) -> bool:
    # fork is only safe with torch on Linux (macOS's runtime does not survive it; Windows has none)
    return settings.device == "cpu" and sys.platform.startswith("linux")


def parallelism(workers: int, settings: TrainSettings) -> int:
    """Worker processes to use (0: one per core), 1 where forking is not possible."""
    workers = workers or available_cores()
    return workers if workers > 1 and _forkable(settings) else 1


def run(tasks: Sequence[ChunkTask], *, workers: int, progress: Progress | None = None,
        **options: Any) -> Iterator[ChunkResult]:
    """Train ``tasks``, in ``workers`` forked processes where there are several tasks and workers (0: one
    per core), else here; yields each result as it finishes."""
    parts = parallelism(workers, tasks[0].settings) if tasks else 1
    if parts > 1 and len(tasks) > 1:
        yield from _in_workers(tasks, min(parts, len(tasks)), progress)
        return
    for task in tasks:
        yield _here(task, progress)


def _here(task: ChunkTask, progress: Progress | None) -> ChunkResult:
    """Train one task in this process; a single run's epoch measures go to ``progress`` with its count."""
    if progress is None:
        return train_chunk(task)
    latest: dict[str, Mapping[str, float]] = {}
    return train_chunk(task, lambda n: progress(n, latest.pop("m", None)),
                       measures=lambda m: latest.__setitem__("m", m))


def _worker_init(progress_queue) -> None:
    """Set up a worker process (forked: it inherits the parent's CPU pinning and MKL mode)."""
    signals.worker_setup()  # exit with the parent, leave Ctrl-C/SIGTERM to it (actlab/signals.py)
    global _progress_queue
    _progress_queue = progress_queue
    torch.set_num_threads(1)


_progress_queue = None  # set in worker processes only: where they report finished run-epochs


def _worker_train(task: bytes) -> bytes:
    report = _progress_queue.put if _progress_queue is not None else None
    # Plain pickle both ways, of a few stacked tensors: multiprocessing's pickler gives each tensor its own
    # shared-memory segment (more than the training of a small chunk costs), whose file descriptor the worker
    # fetches from a server thread of the parent's: a worker ended by Ctrl-C mid-fetch made that thread print
    # a ConnectionResetError traceback under actlab's one line.
    return pickle.dumps(train_chunk(pickle.loads(task), report))


def _relay(progress_queue, progress: Progress | None) -> None:
    """Pass the run-epochs the workers reported so far on to ``progress``."""
    while not progress_queue.empty():
        n = progress_queue.get()
        if progress is not None:
            progress(n, None)


def _in_workers(tasks: Sequence[ChunkTask], workers: int, progress: Progress | None) -> Iterator[ChunkResult]:
    """Train tasks in ``workers`` forked processes, relaying their progress; yields as they finish."""
    ctx = mp.get_context("fork")
    progress_queue = ctx.SimpleQueue()
    finished: queue.SimpleQueue = queue.SimpleQueue()  # (ok, pickled result or exception), filled by the pool
    pool = ctx.Pool(workers, initializer=_worker_init, initargs=(progress_queue,))
    try:
        for task in tasks:
            pool.apply_async(_worker_train, (pickle.dumps(task),), callback=lambda out: finished.put((True, out)),
                             error_callback=lambda exc: finished.put((False, exc)))
        pool.close()
        for _ in tasks:
            while True:
                _relay(progress_queue, progress)
                try:
                    ok, out = finished.get(timeout=0.1)
                    break
                except queue.Empty:
                    continue
            _relay(progress_queue, progress)
            if not ok:
                raise out
            yield pickle.loads(out)
    except BaseException:
        # Ctrl-C or an error: do not wait for the other chunks. A second signal inside terminate() (a second
        # Ctrl-C, two workers' reports) cut it half-way, and join() then waited forever for the pool's threads:
        # the process is already stopping, so one arriving now is dropped
        with signals.held(drop=True):
            pool.terminate()
            pool.join()
        raise
    pool.join()
