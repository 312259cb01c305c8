"""Memory budget: estimate what an experiment needs before allocating anything, and refuse what cannot fit.

A width of 3e8 or ``data.samples=1e9`` otherwise ends in an allocation traceback, or in a long wait and a
MemoryError; ``--seeds 100000000`` in building a list of billions of runs. The estimate is deliberately
rough (within a small factor, on the high side): it only has to tell "fits easily" from "cannot fit".
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from actlab import activations, tasks
from actlab.config import Config, ConfigError
from actlab.devices import available_cores

FLOAT = 4  # bytes of a float32
PY_VALUE = 40  # bytes per stored per-epoch measure: a Python float in a list, plus its float64 row cell
RUN_OVERHEAD = 4096  # bytes per run for its spec, result and summary objects


class BudgetError(ConfigError):
    """An experiment that needs more memory than this machine has available."""


@dataclass(frozen=True)
class Estimate:
    """Bytes an experiment needs, by part."""

    data: int  # the dataset (and its temporaries while it is generated)
    kept: int  # what stays in memory for every run until the end: per-epoch history and final weights
    training: int  # the runs being trained at once: parameters, Adam state, activations, gradients
    runs: int

    @property
    def total(self) -> int:
        return self.data + self.kept + self.training


def count_runs(cfg: Config, command: str) -> int:
    """How many runs ``command`` (train or compare) trains for ``cfg``, without building them."""
    if command == "train":
        return 1
    named = {activations.canonical(n) for n in cfg.compare.activations if n != "all"}
    if "all" in cfg.compare.activations:
        named |= set(activations.names())
    return len(named) * cfg.compare.seeds


def estimate(cfg: Config, runs: int) -> Estimate:
    """The memory ``runs`` runs of ``cfg`` need, in bytes (0 runs: the dataset alone)."""
    d, t, sizes = cfg.data, cfg.train, cfg.model.sizes
    features = tasks.task_features(d.task, d.features)
    n_train = d.samples - round(d.samples * d.test_fraction)
    data = 3 * d.samples * (features + 1) * FLOAT
    params = sum(a * b + b for a, b in zip(sizes, sizes[1:])) + len(sizes)  # (+ a prelu slope per layer)
    units = sum(sizes)
    measures = 8 + 3 * len(sizes)  # columns of metrics.csv, roughly
    kept = runs * (params * FLOAT + t.epochs * measures * PY_VALUE + RUN_OVERHEAD)
    per_run = (
        7 * params * FLOAT  # flat parameters, their gradients, Adam's two moments, denominator, copies
        + 6 * min(t.batch_size, n_train) * units * FLOAT  # forward values saved for backward, and backward
        + 4 * n_train * units * FLOAT  # the end-of-epoch evaluation on the whole training set
        + (n_train * (features + 1) * FLOAT + 8 * n_train if t.shuffle else 0)  # each run's shuffled copy
    )
    at_once = 1 if t.engine == "loop" else t.chunk_size * max(1, t.workers or available_cores())
    return Estimate(data, kept, min(runs, at_once) * per_run, runs)


def available() -> int | None:
    """Bytes of memory available to this process now (MemAvailable, capped by a cgroup limit), or None."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):  # free pages; else (macOS) all of them
            with contextlib.suppress(ValueError, OSError, AttributeError):
                found.append(os.sysconf(name) * os.sysconf("SC_PAGE_SIZE"))
                break
    try:  # a container's limit (cgroup v2) can be far below what the machine has free
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _size(n: float) -> str:
    """Bytes as a person reads them: 24.6 GB; past petabytes, a power of ten (2.1e+25 bytes)."""
    if n >= 1e18:
        return f"{n:.2g} bytes"
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def check(cfg: Config, runs: int, free: int | None = None) -> Estimate:
    """The estimate for ``runs`` runs of ``cfg``; BudgetError (one line) if it exceeds the memory available."""
    est = estimate(cfg, runs)
    free = available() if free is None else free
    if free is None or est.total <= free:
        return est
    part = max(("data", est.data), ("kept", est.kept), ("training", est.training), key=lambda p: p[1])[0]
    hint = {
        "data": "lower data.samples (or data.features)",
        "kept": "lower compare.seeds, the activations compared or train.epochs",
        "training": "lower model.sizes, data.samples, train.chunk_size or train.workers",
    }[part]
    what = f"training {runs:,} run{'s' if runs != 1 else ''} of a {'-'.join(map(str, cfg.model.sizes))} net" if runs \
        else f"a dataset of {cfg.data.samples:,} points"
    raise BudgetError(f"{what} needs about {_size(est.total)} of memory (estimate) but {_size(free)} is available; "
                      f"{hint}")

