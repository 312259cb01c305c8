"""The reference engine: the articles' training loop, one ``nn.Module`` and one ``torch.optim`` optimizer
per run.

Slow (per-operation overhead dominates such a small net) but obviously right: the batched engine is
tested against it. Defined at one thread: results of a single model also change with the thread count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from actlab import diagnostics
from actlab.engines.common import (
    EpochOrder,
    Group,
    Progress,
    RunResult,
    RunSpec,
    TrainSettings,
    batch_bounds,
    groups_of,
    initial_parameters,
)
from actlab.model import FeedForward, load_parameters
from actlab.tasks import Dataset


def build_model(spec: RunSpec, sizes: Sequence[int], group: Group | None = None) -> FeedForward:
    """The run's net with its initial weights (on the CPU)."""
    group = group or Group.of(spec)
    model = FeedForward(sizes, group.build)
    return load_parameters(model, initial_parameters(spec, sizes, group))


def optimizer_options(settings: TrainSettings) -> dict[str, Any]:
    """The torch.optim keywords of ``settings``' optimizer besides lr (the probe's reference uses them too)."""
    if settings.optimizer == "sgd":
        return {"momentum": settings.momentum}
    return {"betas": tuple(settings.betas), "eps": settings.eps}


def make_optimizer(params: Iterable[torch.Tensor], lr: float, settings: TrainSettings) -> torch.optim.Optimizer:
    """The run's torch optimizer. foreach=False: the single-tensor update on every device, so the
    reference does not change with it (and the batched engine replays exactly that arithmetic)."""
    cls = torch.optim.SGD if settings.optimizer == "sgd" else torch.optim.Adam
    return cls(params, lr=lr, foreach=False, **optimizer_options(settings))


def activation_groups(model: FeedForward, elementwise: bool = True) -> list[list[diagnostics.ActGroup]]:
    """The model's activations as the (single-run) groups ``diagnostics.evaluate`` expects."""
    return [[diagnostics.ActGroup(0, 1, module, elementwise, diagnostics.max_slope(module))]
            for module in model.activations()]


def record_diagnostics(
    model: FeedForward, groups, data: Dataset, row: dict[str, float], full: bool = True, prelu: bool = False,
    measure: bool = True,
) -> None:
    """Add this epoch's full-data measures (and, for ``prelu``, its slopes) to ``row`` (name -> value);
    ``full``, ``measure``: as ``diagnostics.evaluate`` (the batched engine's call, on a stack of one run)."""
    linears = model.linears()
    weights = [layer.weight.unsqueeze(0) for layer in linears]  # a stack of one run
    biases = [layer.bias.unsqueeze(0) for layer in linears]
    for name, value in diagnostics.evaluate(weights, biases, groups, data, full, measure).items():
        row[name] = float(value[0])
    if prelu:
        for layer, module in enumerate(model.activations(), start=1):
            row[f"slope_L{layer}"] = float(module.weight.detach()[0])


def train_one(
    spec: RunSpec, data: Dataset, sizes: Sequence[int], settings: TrainSettings, *, group: Group | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """One run of the articles' loop: zero_grad, forward, MSE, backward, optimizer step, per mini-batch."""
    start = time.perf_counter()
    group = group or Group.of(spec)
    device, epochs, full = settings.torch_device, settings.epochs, settings.diagnostics
    model = build_model(spec, sizes, group).to(device)
    groups = activation_groups(model, group.act.elementwise)
    optimizer = make_optimizer(model.parameters(), spec.lr, settings)
    loss_fn = nn.MSELoss()
    x, y = data.x_train, data.y_train
    bounds = batch_bounds(len(x), settings.batch_size)
    order = EpochOrder(spec.seed, len(x)) if settings.shuffle else None
    history: dict[str, list[float]] = {}
    initial: dict[str, float] = {}
    record_diagnostics(model, groups, data, initial, full, group.is_prelu, settings.measures(0))  # epoch 0
    diverged_at = None
    for epoch in range(1, epochs + 1):
        if order is None:
            xe, ye = x, y
        else:
            rows = order.next().to(device)
            xe, ye = x[rows], y[rows]
        total = 0.0
        for lo, hi in bounds:
            optimizer.zero_grad()
            loss = loss_fn(model(xe[lo:hi]), ye[lo:hi])
            loss.backward()
            optimizer.step()
            last = loss.item()
            total += last * (hi - lo)
        row = {"train_loss": total / len(x), "last_batch_loss": last}
        if math.isfinite(total):  # a diverged epoch is not recorded: its measures would be NaN or inf
            record_diagnostics(model, groups, data, row, full, group.is_prelu, settings.measures(epoch))
        if not (math.isfinite(total) and math.isfinite(row["full_loss"])):
            diverged_at = epoch  # the batched engine's rule: the epoch's mean or full-data loss is not finite
            break
        row["seconds"] = time.perf_counter() - start
        for name, value in row.items():
            history.setdefault(name, []).append(value)
        if progress is not None:
            progress(1, {"epoch": epoch, **row})
    if progress is not None and diverged_at is not None:
        progress(epochs - diverged_at + 1, None)  # the epochs it will not run
    return RunResult(
        spec=spec,
        history=history,
        status="ok" if diverged_at is None else "diverged",
        diverged_epoch=diverged_at,
        seconds=time.perf_counter() - start,
        engine="loop",
        state={k: v.detach().cpu() for k, v in model.state_dict().items()},
        initial=initial,
    )


def train_runs(
    specs: Sequence[RunSpec], data: Dataset, sizes: Sequence[int], settings: TrainSettings, *,
    progress: Progress | None = None, executor: str = "local", chunk_size: int = 1, workers: int = 1,
    executor_options: Mapping[str, Any] | None = None, checkpoints: Any = None,
) -> Iterator[list[RunResult]]:
    """Every spec, one after the other, in this process; yields each result as it finishes (the executor
    and chunking arguments of the Engine signature do not apply; nor do checkpoints: a run is short, and
    each is saved as it finishes)."""
    data = data.to(settings.torch_device)
    groups = groups_of(specs)
    for spec in specs:
        yield [train_one(spec, data, sizes, settings, group=groups[spec.group_key], progress=progress)]
