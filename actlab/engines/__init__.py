"""Training engines. Both take the same run specs and settings and return the same results (``common``):

- ``loop``: one ``nn.Module`` and one ``torch.optim`` optimizer per run, the articles' loop: the reference.
- ``batched``: the runs of a chunk stacked into one computation (``stacked``), chunks scheduled on an
  executor (``executors``: local processes, or Ray); same numbers, far less overhead.

A new engine is a module with a ``train_runs`` of the ``Engine`` signature and one line in ``ENGINES``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from actlab.engines import batched, loop
from actlab.engines.common import Engine, Progress, RunResult, RunSpec, TrainSettings, one_thread
from actlab.tasks import Dataset

if TYPE_CHECKING:
    from actlab.checkpoint import Checkpoints

ENGINES: dict[str, Engine] = {"batched": batched.train_runs, "loop": loop.train_runs}


def train(
    specs: Sequence[RunSpec], data: Dataset, sizes: Sequence[int], settings: TrainSettings, *,
    engine: str = "batched", executor: str = "local", chunk_size: int = 4096, workers: int = 0,
    progress: Progress | None = None, executor_options: Mapping[str, Any] | None = None,
    checkpoints: Checkpoints | None = None,
) -> Iterator[list[RunResult]]:
    """Train every spec; yields results a chunk at a time (so a caller can save them as they come).

    Both engines compute at one thread (restored afterwards): some kernels (softmax) round differently
    with more threads, and the batched engine gets its parallelism from its executor instead.
    ``executor_options`` go to the executor (ray: ``address``). ``checkpoints``: where the batched engine's
    stacks save their state and resume from (``actlab.checkpoint``; the loop engine saves whole runs).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} (engines: {', '.join(ENGINES)})")
    with one_thread():
        yield from ENGINES[engine](specs, data, sizes, settings, executor=executor, chunk_size=chunk_size,
                                   workers=workers, progress=progress, executor_options=executor_options or {},
                                   checkpoints=checkpoints)


__all__ = ["ENGINES", "Engine", "RunResult", "RunSpec", "TrainSettings", "train"]
