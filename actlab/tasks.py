"""Synthetic regression tasks. Every run of a comparison sees the same data: it depends on data.seed only."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from actlab import rng, study


class TaskError(ValueError):
    """A task name or setting that cannot produce data."""


@dataclass(frozen=True)
class Dataset:
    """Training data, an optional held-out test split and an optional validation split (carved out of the
    training points); inputs (n, features), targets (n, 1)."""

    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    @property
    def features(self) -> int:
        return self.x_train.shape[1]

    def to(self, device: torch.device | str) -> Dataset:
        moved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "task"}
        return dataclasses.replace(self, **{k: None if t is None else t.to(device) for k, t in moved.items()})


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
    test_fraction: float = 0.0, validation_fraction: float = 0.0,
) -> Dataset:
    """``samples`` points of ``task``; a seeded random ``test_fraction`` of them is held out, and a seeded
    random ``validation_fraction`` of all points is carved out of the training part (the test points are the
    same with or without it)."""
    if task not in TASKS:
        raise TaskError(f"unknown task '{task}' (tasks: {', '.join(TASKS)})")
    width = task_features(task, features)
    gen = rng.generator(seed, f"data:{task}")
    x, y = TASKS[task].sample(samples, width, noise, gen)
    n_test = round(samples * test_fraction)
    data = Dataset(task, x, y)
    if n_test > 0:
        order = torch.randperm(samples, generator=rng.generator(seed, "split"))
        test, train = order[:n_test].sort().values, order[n_test:].sort().values
        data = Dataset(task, x[train], y[train], x[test], y[test])
    if validation_fraction > 0:
        try:
            n_val = study.validation_size(samples, test_fraction, validation_fraction)
        except study.StudyError as exc:
            raise TaskError(str(exc)) from None
        x_train, y_train, x_val, y_val = study.carve_validation(data.x_train, data.y_train, n_val, seed)
        data = dataclasses.replace(data, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)
    return data
