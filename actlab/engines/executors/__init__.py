"""Executors: where the batched engine's chunks are trained. One module each, named in ``EXECUTORS``.

An executor module exposes ``run(tasks: Sequence[ChunkTask], *, workers: int, progress: Progress | None,
**options) -> Iterator[ChunkResult]``: it trains every task with ``actlab.engines.stacked.train_chunk``
and yields each task's result once, as tasks finish, in any order. It may expose ``parallelism(workers,
settings, **options) -> int`` (how many chunks to cut at least; default 1) and ``preflight(**options)`` (checks
before the experiment folder is made, raising ExecutorError). Modules are imported only when chosen,
so an optional executor's library (ray) is needed only by those who use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from types import ModuleType

from actlab.config import ConfigError
from actlab.engines.common import TrainSettings

EXECUTORS = {
    "local": "actlab.engines.executors.local",  # forked worker processes on this machine
    "ray": "actlab.engines.executors.ray",  # Ray tasks on a cluster (optional extra)
}
INSTALL = {"ray": "pip install -e '.[ray]'"}  # what an optional executor needs


class ExecutorError(ConfigError):
    """An unknown executor, or one whose library is not installed (one line, with the fix): a user error."""


def module(name: str) -> ModuleType:
    """The executor module of ``name``; ExecutorError if unknown or not installed."""
    if name not in EXECUTORS:
        raise ExecutorError(f"unknown executor '{name}' (executors: {', '.join(EXECUTORS)})")
    try:
        return importlib.import_module(EXECUTORS[name])
    except ModuleNotFoundError as exc:
        if name not in INSTALL:
            raise
        missing = "Ray" if name == "ray" else exc.name
        raise ExecutorError(f"the {name} executor needs {missing}, which is not installed: "
                            f"{INSTALL[name]}") from None


def preflight(name: str, **options) -> None:
    """What executor ``name`` needs before an experiment folder is made (its library; ray: a cluster given by
    address answers): ExecutorError, one line, otherwise. ``options`` as for its ``run``."""
    check = getattr(module(name), "preflight", None)
    if check is not None:
        check(**options)


def get(name: str) -> Callable[..., Iterator]:
    """The ``run`` function of executor ``name``."""
    return module(name).run


def parallelism(name: str, workers: int, settings: TrainSettings, **options) -> int:
    """How many chunks executor ``name`` wants at least (to keep its workers busy); ``options`` as for its
    ``run`` (the Ray executor needs the cluster's address to count its CPUs)."""
    fn = getattr(module(name), "parallelism", None)
    return fn(workers, settings, **options) if fn is not None else 1
