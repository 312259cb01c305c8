"""What every engine shares: the run spec, the result, mini-batch order and the dispatch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from actlab import rng
from actlab.tasks import Dataset

# Progress callback: (run-epochs just finished, the epoch's measures when a single run is training).
Progress = Callable[[int, Mapping[str, float] | None], None]


@dataclass(frozen=True)
class RunSpec:
    """One training run: the activation (with options), the seed of its initial weights and shuffling, lr."""

    activation: str
    seed: int
    lr: float
    options: Mapping[str, Any] = field(default_factory=dict)
    tag: str = ""  # a caller's label, e.g. a grid point 'lr=0.003': part of run_id when set

    @property
    def run_id(self) -> str:
        """``relu/seed3``; options, when set, are part of it: ``leaky_relu[negative_slope=0.3]/seed3``; a tag
        too: ``relu/lr=0.003/seed3``."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.activation}{f'[{opts}]' if opts else ''}{f'/{self.tag}' if self.tag else ''}/seed{self.seed}"

    @property
    def group_key(self) -> tuple[str, tuple[tuple[str, Any], ...]]:
        """Runs with the same key use the same activation function (the batched engine groups them)."""
        return self.activation, tuple(sorted(self.options.items()))


@dataclass
class RunResult:
    """A finished (or diverged) run: per-epoch history and final parameters.

    ``history`` maps a measure to one value per completed epoch: train_loss (mean over the epoch's
    mini-batches, weighted by their size), last_batch_loss (what the article prints), full_loss (whole
    training set after the epoch), test_loss (held-out split, when there is one), seconds (elapsed), and
    the diagnostics of ``actlab.diagnostics`` (grad_norm_L*, dead_L*, saturated_L*, slope_L* for prelu).
    """

    spec: RunSpec
    history: dict[str, list[float]]
    status: Literal["ok", "diverged"]
    diverged_epoch: int | None
    seconds: float
    engine: str
    state: dict[str, torch.Tensor]  # final state_dict of the equivalent FeedForward, on the CPU
    initial: dict[str, float] = field(default_factory=dict)  # epoch 0: full-data measures before any step

    @property
    def epochs_done(self) -> int:
        return len(self.history.get("full_loss", []))


class EpochOrder:
    """A run's mini-batch row orders when shuffling: one seeded random permutation per epoch, in sequence.

    Drawn on the CPU from the run's own generator, so the order does not depend on the device, on the
    engine or on which other runs share a chunk.
    """

    def __init__(self, seed: int, n: int) -> None:
        self._gen = rng.generator(seed, "shuffle")
        self._n = n

    def next(self) -> torch.Tensor:
        """The next epoch's order: a permutation of range(n), (n,) int64."""
        return torch.rand(self._n, generator=self._gen).argsort(stable=True)


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) of every mini-batch: X[i:i+b] in order, the last one possibly shorter."""
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


EngineFn = Callable[..., Iterator[list[RunResult]]]
ENGINES = ("batched", "loop")


def train(
    specs: Sequence[RunSpec],
    data: Dataset,
    sizes: Sequence[int],
    *,
    epochs: int,
    batch_size: int,
    shuffle: bool,
    engine: str = "batched",
    device: torch.device | str = "cpu",
    chunk_size: int = 4096,
    workers: int = 1,
    diagnostics: bool = True,
    progress: Progress | None = None,
) -> Iterator[list[RunResult]]:
    """Train every spec; yields results a chunk at a time (so a caller can save them as they come).

    Both engines compute at one thread (restored afterwards): some kernels (softmax) round differently
    with more threads, and the batched engine gets its parallelism from worker processes instead.
    """
    from actlab.engines import batched, loop

    kwargs = dict(epochs=epochs, batch_size=batch_size, shuffle=shuffle, device=torch.device(device),
                  diagnostics=diagnostics, progress=progress)
    with one_thread():
        if engine == "loop":
            yield from loop.train_runs(specs, data, sizes, **kwargs)
        elif engine == "batched":
            yield from batched.train_runs(specs, data, sizes, chunk_size=chunk_size, workers=workers, **kwargs)
        else:
            raise ValueError(f"unknown engine {engine!r} (engines: {', '.join(ENGINES)})")


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch at one intra-op thread inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
