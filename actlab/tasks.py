"""Synthetic regression tasks. Every run of a comparison sees the same data: it depends on data.seed only."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from actlab import rng


class TaskError(ValueError):
    """A task name or setting that cannot produce data."""


@dataclass(frozen=True)
class Dataset:
    """Training data and an optional held-out split; inputs (n, features), targets (n, 1)."""

    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    @property
    def features(self) -> int:
        return self.x_train.shape[1]

    def to(self, device: torch.device | str) -> Dataset:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Dataset(self.task, move(self.x_train), move(self.y_train), move(self.x_test), move(self.y_test))


Sampler = Callable[[int, int, float, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def _noise(n: int, features: int, noise: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # The article's data: targets independent of the inputs, so a net can only memorise them.
    x = torch.randn(n, features, generator=gen)
    y = torch.randn(n, 1, generator=gen)
    return x, y


def _cosine(n: int, features: int, noise: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # ARTICLES.md §D: y = cos(x) + 1 on n evenly spaced points of [0, 2*pi].
    x = torch.linspace(0.0, 2 * math.pi, n).unsqueeze(1)
    y = torch.cos(x) + 1.0
    return x, y + noise * torch.randn(n, 1, generator=gen)


def _teacher(n: int, features: int, noise: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # A fixed random tanh net (features -> 32 -> 1) labels Gaussian inputs: learnable, non-linear structure.
    x = torch.randn(n, features, generator=gen)
    w1 = torch.randn(features, 32, generator=gen) / math.sqrt(features)
    w2 = torch.randn(32, 1, generator=gen) / math.sqrt(32)
    y = torch.tanh(2.0 * x @ w1) @ w2
    y = (y - y.mean()) / y.std()  # unit variance, so losses read like the noise task's
    return x, y + noise * torch.randn(n, 1, generator=gen)


def _friedman1(n: int, features: int, noise: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # Friedman #1: 10*sin(pi*x1*x2) + 20*(x3-0.5)^2 + 10*x4 + 5*x5 on U(0,1) inputs; the rest are distractors.
    if features < 5:
        raise TaskError("task friedman1 needs at least 5 input features (data.features)")
    x = torch.rand(n, features, generator=gen)
    y = (10 * torch.sin(math.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2
         + 10 * x[:, 3] + 5 * x[:, 4]).unsqueeze(1)
    y = (y - 14.41) / 4.88  # the function's own mean and std, so the scale does not depend on the sample
    return x, y + noise * torch.randn(n, 1, generator=gen)


@dataclass(frozen=True)
class Task:
    name: str
    sample: Sampler
    features: int | None  # fixed input width, or None: any (default 10)
    description: str


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("noise", _noise, None, "the article's: X, y ~ N(0, 1) independent; only memorisation is possible"),
        Task("cosine", _cosine, 1, "y = cos(x) + 1 on evenly spaced x in [0, 2*pi] (the curve-fitting article)"),
        Task("teacher", _teacher, None, "y = a fixed random tanh net of X ~ N(0, 1), unit variance (+ noise)"),
        Task("friedman1", _friedman1, None, "Friedman #1 on X ~ U(0, 1)^d, d >= 5, standardised (+ noise)"),
    )
}
DEFAULT_FEATURES = 10


def task_features(task: str, features: int | None) -> int:
    """The input width the task produces for the configured ``features`` (None: its natural width)."""
    fixed = TASKS[task].features
    if fixed is not None:
        if features not in (None, fixed):
            raise TaskError(f"task {task} has {fixed} input feature(s); remove data.features or set it to {fixed}")
        return fixed
    return DEFAULT_FEATURES if features is None else features


def make_dataset(
    task: str, samples: int, seed: int, *, features: int | None = None, noise: float = 0.0,
    test_fraction: float = 0.0,
) -> Dataset:
    """``samples`` points of ``task``; a seeded random ``test_fraction`` of them is held out."""
    if task not in TASKS:
        raise TaskError(f"unknown task '{task}' (tasks: {', '.join(TASKS)})")
    width = task_features(task, features)
    gen = rng.generator(seed, f"data:{task}")
    x, y = TASKS[task].sample(samples, width, noise, gen)
    n_test = round(samples * test_fraction)
    if n_test == 0:
        return Dataset(task, x, y)
    order = torch.randperm(samples, generator=rng.generator(seed, "split"))
    test, train = order[:n_test].sort().values, order[n_test:].sort().values
    return Dataset(task, x[train], y[train], x[test], y[test])
