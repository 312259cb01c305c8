"""An experiment from a config: its data, its runs, and training them. Pure compute: no files, no printing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from actlab import activations, budget, engines
from actlab.config import Config
from actlab.engines import RunResult, RunSpec, TrainSettings
from actlab.engines.common import Progress
from actlab.tasks import Dataset, make_dataset

if TYPE_CHECKING:
    from actlab.checkpoint import Checkpoints


def preflight(cfg: Config, tensorboard: bool = False) -> torch.device:
    """What must hold before an experiment folder is made, checked once for every entry point: the device
    exists, the executor's library is installed (ray) and its cluster answers, TensorBoard is there when asked
    for. Each failure is one user error; the device to train on otherwise."""
    from actlab import devices
    from actlab.engines import executors

    device = devices.resolve_device(cfg.device)
    executors.preflight(cfg.train.executor, **executor_options(cfg))
    if tensorboard:
        from actlab import tensorboard as tb

        tb.require()
    return device


def dataset(cfg: Config) -> Dataset:
    """The experiment's data: the same for every run, from data.seed."""
    d = cfg.data
    budget.check(cfg, 0)  # before allocating: data.samples=1e9 is one line, not a MemoryError
    return make_dataset(d.task, d.samples, d.seed, features=d.features, noise=d.noise, test_fraction=d.test_fraction,
                        validation_fraction=d.validation_fraction)


def train_specs(cfg: Config) -> list[RunSpec]:
    """``actlab train``: one run of model.activation with train.seed."""
    budget.check(cfg, 1)
    name = activations.canonical(cfg.model.activation)
    return [spec(cfg, name, cfg.train.seed)]


def compare_specs(cfg: Config) -> list[RunSpec]:
    """``actlab compare``: every compared activation x seeds train.seed, train.seed + 1, ..."""
    budget.check(cfg, budget.count_runs(cfg, "compare"))  # before building billions of specs
    seeds = range(cfg.train.seed, cfg.train.seed + cfg.compare.seeds)
    return [spec(cfg, name, seed) for name in cfg.compared_activations() for seed in seeds]


def spec(cfg: Config, activation: str, seed: int, tag: str = "") -> RunSpec:
    """The run of ``activation`` (canonical name) and ``seed`` under ``cfg``: its lr, options, initialisation."""
    return RunSpec(activation, seed, cfg.train.lr, cfg.options_for(activation), cfg.init_for(activation),
                   cfg.model.init_bias, tag)


def run(
    cfg: Config, specs: Sequence[RunSpec], data: Dataset, device: torch.device, progress: Progress | None = None,
    checkpoints: Checkpoints | None = None,
) -> Iterator[list[RunResult]]:
    """Train ``specs`` with the configured engine and executor; yields results as chunks finish.
    ``checkpoints``: where stacks in training save their state, and resume from (``actlab.checkpoint``)."""
    t = cfg.train
    return engines.train(
        specs, data, cfg.model.sizes, TrainSettings.from_config(cfg, device), engine=t.engine,
        executor=t.executor, chunk_size=t.chunk_size, workers=t.workers, progress=progress,
        executor_options=executor_options(cfg), checkpoints=checkpoints,
    )


def executor_options(cfg: Config) -> dict[str, object]:
    """What the configured executor is given besides the tasks (ray: the cluster's address)."""
    return {"address": cfg.train.ray_address} if cfg.train.executor == "ray" else {}


@dataclass
class Experiment:
    """Everything a finished experiment holds in memory (what ``train``/``compare`` return from Python)."""

    config: Config
    data: Dataset
    results: list[RunResult]

    def result(self, activation: str, seed: int | None = None) -> RunResult:
        name = activations.canonical(activation)
        for r in self.results:
            if r.spec.activation == name and (seed is None or r.spec.seed == seed):
                return r
        raise KeyError(f"no run of {activation} (seed {seed})")


def train(cfg: Config, device: torch.device | str = "cpu", progress: Progress | None = None) -> Experiment:
    """Train one run (model.activation, train.seed) in memory."""
    data = dataset(cfg)
    results = [r for chunk in run(cfg, train_specs(cfg), data, torch.device(device), progress) for r in chunk]
    return Experiment(cfg, data, results)


def compare(cfg: Config, device: torch.device | str = "cpu", progress: Progress | None = None) -> Experiment:
    """Train every compared activation over every seed in memory."""
    data = dataset(cfg)
    specs = compare_specs(cfg)
    results = [r for chunk in run(cfg, specs, data, torch.device(device), progress) for r in chunk]
    order = {spec.run_id: i for i, spec in enumerate(specs)}
    return Experiment(cfg, data, sorted(results, key=lambda r: order[r.spec.run_id]))
