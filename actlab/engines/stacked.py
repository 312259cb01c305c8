"""The stacked computation: N runs trained as one, with the loop engine's numbers.

A comparison is many identical tiny trainings; one at a time they are all per-operation overhead. Here the
weights of every run in a chunk are stacked along a leading run dimension — weight (N, out, in), bias
(N, out) — and one batched matmul does every run's layer at once. Each run's loss depends only on its own
slice, so the gradient of the summed losses is, slice by slice, each run's own gradient; Adam and SGD are
element-wise, so running them once over all runs' parameters (one flat buffer, ``flat_optim``) is each
run's own optimizer.

Bitwise equality with the loop engine (at one thread, float32) comes from doing every operation the way
``nn.Linear``, ``nn.MSELoss`` and ``torch.optim`` do it:
- ``StackedLinear`` computes the weight gradient as grad_out^T @ input, ``nn.Linear``'s orientation
  (autograd's own bmm backward may round in another order);
- ``StackedMSE`` computes the gradient as (2/B) * (out - y), like ``mse_loss_backward``;
- the optimizers replay torch's single-tensor arithmetic operation for operation (``flat_optim``);
- exp-based activations see each run as a row of its own (``rowwise``), with a single run's split into a
  vectorised body and a scalar tail.
It also needs the libraries to pick the same kernels for the stacked and the single-run shapes, which
``actlab/__init__.py`` pins and ``probe`` checks at start-up.

The training step itself is written by hand (``step.Step``): the same arithmetic as ``Stack.forward``,
``StackedMSE`` and autograd (which remain the reference, for the probe and the benchmark), without the
graph, each activation by its own kernels (``kernels``) into preallocated buffers.

Activations: runs are grouped by (activation, options), each group resolved once (``common.Group``); each
group's module is applied to its slice of the run dimension (``diagnostics.apply_groups``). Parameter-free
modules apply to (N, B, W) unchanged. PReLU's slope becomes a stacked (n, 1, 1) parameter per layer. Any
other module with parameters — or a custom one that does not act on the last dimension independently of
the leading ones — cannot be stacked (``can_batch``): the batched engine hands it to the loop engine.

What an executor calls: ``train_chunk(ChunkTask) -> ChunkResult``, both picklable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from actlab import activations, diagnostics
from actlab.diagnostics import evaluate
from actlab.engines import affine, flat_optim, rowwise
from actlab.engines.common import (
    EpochOrder,
    Group,
    RunResult,
    RunSpec,
    TrainSettings,
    batch_bounds,
    groups_of,
    initial_parameters,
)
from actlab.engines.step import Forward, Step
from actlab.tasks import Dataset

Activation = Callable[[torch.Tensor], torch.Tensor]  # (n, B, W) -> (n, B, W)

# Activations whose ATen kernels (forward or backward) round their vectorised body and scalar tail
# differently (exp-based): applied run by run (``rowwise``) so that each run gets a single run's split
# (measured without it: each of these differs in training). Custom activations are too (their kernels are
# unknown). Not gelu: on a contiguous input of more than one element torch computes it with oneDNN, on
# padded rows with ATen's kernel: row-wise would differ from a single run everywhere instead of nowhere.
ROW_WISE = frozenset({"sigmoid", "elu", "selu", "celu", "silu", "mish", "softplus"})


class StackedLinear(torch.autograd.Function):
    """x (N, B, in) -> x @ w^T + b for stacked w (N, out, in), b (N, out), with nn.Linear's gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return affine.forward(b.unsqueeze(1), x, w.transpose(1, 2))  # baddbmm, or nn.Linear's sums (affine)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w = ctx.saved_tensors
        grad_x = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2), x)  # (N, out, in), as nn.Linear orients it
        return grad_x, grad_w, grad.sum(1)


class StackedMSE(torch.autograd.Function):
    """Per-run mean squared error: out, y (N, B, 1) -> (N,), with mse_loss's gradient arithmetic."""

    @staticmethod
    def forward(ctx, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        diff = out - y
        ctx.save_for_backward(diff)
        return diff.pow(2).mean(dim=(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (diff,) = ctx.saved_tensors
        norm = 2.0 / (diff.shape[1] * diff.shape[2])
        return diff.mul(norm).mul(grad.view(-1, 1, 1)), None


def _group(of: Group | RunSpec) -> Group:
    return of if isinstance(of, Group) else Group.of(of)


def _stacked_prelu(slope: torch.Tensor):
    # Same arithmetic as PReLU's kernel: x if x > 0 else slope * x.
    return lambda z: torch.where(z > 0, z, slope * z)


def stacked_activation(of: Group | RunSpec, slope: torch.Tensor | None = None) -> Activation:
    """The group's activation as the stack applies it to (n, B, W), the n runs of the group.

    ``slope`` (n, 1, 1): prelu's stacked learned slope (a leaf of the stack's parameters).
    """
    if slope is not None:
        return _stacked_prelu(slope)
    group = _group(of)
    module = group.build()
    # module.forward, not module(): the hook machinery of __call__ costs more than a small op
    # gelu's tanh approximation is ATen's own kernel (oneDNN computes only the exact one): row-wise too
    tanh_gelu = isinstance(module, torch.nn.GELU) and module.approximate == "tanh"
    if group.act.name in ROW_WISE or group.act not in activations.BUILTIN or tanh_gelu:
        return rowwise.row_wise(module.forward, rowwise.backward_kernel(module))
    return module.forward


def _acts_on_last_dim(module: torch.nn.Module, width: int = 5) -> bool:
    """Does ``module`` treat (N, B, W) as N independent (B, W) inputs? Checked on random numbers, laid out
    in rows as the engine will give them (a module that needs contiguous memory fails here, not later)."""
    z = torch.randn(3, 4, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        try:
            stacked = module(rowwise.rows(z))
            single = torch.stack([module(zi) for zi in z])
        except Exception:  # a custom module that rejects 3-d input cannot be stacked
            return False
    return stacked.shape == z.shape and torch.allclose(stacked, single, equal_nan=True)


def can_batch(of: Group | RunSpec) -> bool:
    """False for activations the batched engine hands to the loop engine (parametric other than prelu)."""
    group = _group(of)
    if group.is_prelu:
        return True
    if any(True for _ in group.module.parameters()):
        return False
    return group.act in activations.BUILTIN or _acts_on_last_dim(group.module)


class Stack:
    """The parameters of a chunk of runs in one flat buffer, and leaf views of it for autograd.

    ``specs`` must keep each activation's runs contiguous (one slice per group)."""

    def __init__(self, specs: Sequence[RunSpec], sizes: Sequence[int], device: torch.device,
                 groups: Mapping[Any, Group] | None = None) -> None:
        self.n_runs = len(specs)
        resolved = groups or groups_of(specs)
        inits = [initial_parameters(spec, sizes, resolved[spec.group_key]) for spec in specs]
        tensors: list[torch.Tensor] = []
        for layer in range(len(sizes) - 1):
            tensors.append(torch.stack([p[layer][0] for p in inits]))  # (N, out, in)
        for layer in range(len(sizes) - 1):
            tensors.append(torch.stack([p[layer][1] for p in inits]))  # (N, out)
        # Contiguous runs share an activation: group them, and give each prelu group one slope per layer.
        self.groups: list[tuple[int, int, Group]] = []
        for i, spec in enumerate(specs):
            if self.groups and self.groups[-1][2].key == spec.group_key:
                self.groups[-1] = (self.groups[-1][0], i + 1, self.groups[-1][2])
            else:
                self.groups.append((i, i + 1, resolved[spec.group_key]))
        self.slope_index: dict[tuple[int, int], int] = {}  # (group, hidden layer) -> tensor index
        for g, (start, stop, group) in enumerate(self.groups):
            if group.is_prelu:
                for layer in range(len(sizes) - 2):
                    self.slope_index[g, layer] = len(tensors)
                    tensors.append(torch.full((stop - start, 1, 1), group.prelu_init))
        self.shapes = [t.shape for t in tensors]
        self.flat = torch.cat([t.reshape(-1) for t in tensors]).to(device)
        # Leaves share the flat buffer's storage: the optimizer updates the buffer in place, the leaves see it.
        self.leaves = [view.detach().requires_grad_() for view in self.views(self.flat)]
        self.n_layers = len(sizes) - 1
        self.sizes = tuple(sizes)
        self.act_layers = self._activation_layers(len(sizes) - 2)

    @property
    def weights(self) -> list[torch.Tensor]:
        return self.leaves[: self.n_layers]

    @property
    def biases(self) -> list[torch.Tensor]:
        return self.leaves[self.n_layers : 2 * self.n_layers]

    def _activation_layers(self, n_hidden: int) -> list[list[diagnostics.ActGroup]]:
        layers: list[list[diagnostics.ActGroup]] = [[] for _ in range(n_hidden)]
        for g, (start, stop, group) in enumerate(self.groups):
            scale = diagnostics.max_slope(group.module)
            for layer in range(n_hidden):
                slope = self.leaves[self.slope_index[g, layer]] if (g, layer) in self.slope_index else None
                fn = stacked_activation(group, slope)
                layers[layer].append(diagnostics.ActGroup(start, stop, fn, group.act.elementwise, scale))
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (N, B, 1) of every run for its inputs x (N, B, in)."""
        h = x
        for layer, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = StackedLinear.apply(h, w, b)
            if layer < self.n_layers - 1:
                h = diagnostics.apply_groups(h, self.act_layers[layer])
        return h

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of a buffer laid out as ``flat`` (the optimizer's gradient) in the shapes of the leaves."""
        out, offset = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            out.append(flat[offset : offset + size].view(shape))
            offset += size
        return out

    def slopes(self) -> dict[str, torch.Tensor]:
        """slope_L{l} -> (N,) learned prelu slopes (NaN for runs without prelu)."""
        out: dict[str, torch.Tensor] = {}
        for (g, layer), index in self.slope_index.items():
            start, stop, _ = self.groups[g]
            key = f"slope_L{layer + 1}"
            if key not in out:
                out[key] = torch.full((self.n_runs,), float("nan"), device=self.flat.device)
            out[key][start:stop] = self.leaves[index].detach().view(-1)
        return out

    def run_ranges(self) -> list[tuple[int, int]]:
        """The runs [start, stop) each stacked tensor covers: all of them, or a prelu group's."""
        ranges = [(0, self.n_runs)] * len(self.shapes)
        for (g, _), index in self.slope_index.items():
            ranges[index] = self.groups[g][:2]
        return ranges

    def per_element(self, per_run: torch.Tensor) -> torch.Tensor:
        """A per-run value (N,) spread over the flat buffer: each element gets its run's."""
        return torch.cat([
            per_run[start:stop].view(-1, *[1] * (len(shape) - 1)).expand(shape).reshape(-1)
            for (start, stop), shape in zip(self.run_ranges(), self.shapes)
        ])

    def final(self) -> FinalParameters:
        """The parameters of every run, stacked, on the CPU."""
        slopes = [(index, layer, *self.groups[g][:2]) for (g, layer), index in self.slope_index.items()]
        return FinalParameters([leaf.detach().cpu().clone() for leaf in self.leaves], self.n_layers, slopes)


@dataclass
class FinalParameters:
    """Stacked final parameters: a few large tensors, cheap to pickle, split into per-run views on demand."""

    tensors: list[torch.Tensor]  # the stack's leaves: weights (N, out, in), biases (N, out), prelu slopes
    n_layers: int
    slopes: list[tuple[int, int, int, int]]  # (tensor index, hidden layer, first run, end run)

    def state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Each run's final parameters as the state_dict of the equivalent FeedForward: views, no copies
        (torch.save stores their shared storage once)."""
        n_runs = self.tensors[0].shape[0]
        states: list[dict[str, torch.Tensor]] = [{} for _ in range(n_runs)]
        for layer in range(self.n_layers):
            weights, biases = self.tensors[layer], self.tensors[self.n_layers + layer]
            for r in range(n_runs):
                states[r][f"{2 * layer}.weight"] = weights[r]
                states[r][f"{2 * layer}.bias"] = biases[r]
        for index, layer, start, stop in self.slopes:
            for r in range(start, stop):
                states[r][f"{2 * layer + 1}.weight"] = self.tensors[index][r - start].view(1)
        return states


@dataclass
class ChunkTask:
    """One chunk of runs to train as a stack (picklable: what an executor ships to a worker)."""

    index: int
    specs: tuple[RunSpec, ...]  # each activation's runs contiguous
    data: Dataset
    sizes: tuple[int, ...]
    settings: TrainSettings
    checkpoint: Checkpoint | None = None  # where the stack saves its state (actlab.checkpoint), resumed from


@dataclass
class ChunkResult:
    """A trained chunk: the runs' results without their parameters, and the stacked final parameters
    (picklable and cheap to pickle: a few stacked tensors, not per-run copies)."""

    index: int
    partial: list[RunResult]  # state={} until results()
    final: FinalParameters
    engine_seconds: float = 0.0

    def results(self) -> list[RunResult]:
        """The runs' results, each with its final state_dict (views of the stacked tensors)."""
        for result, state in zip(self.partial, self.final.state_dicts()):
            result.state = state
        return self.partial


class Checkpoint(Protocol):
    """Where the epoch loop saves its state from time to time (see ``train_stack``)."""

    def due(self) -> bool: ...

    def save(self, state: dict) -> None: ...

    def load(self) -> dict | None: ...


def train_chunk(
    task: ChunkTask, report: Callable[[int], None] | None = None, *,
    measures: Callable[[Mapping[str, float]], None] | None = None,
) -> ChunkResult:
    """Train ``task``'s runs as one stack. ``report(n)``: n run-epochs just finished (for progress);
    ``measures``: a single run's epoch measures, every epoch (a live view of ``actlab train``)."""
    stack = Stack(task.specs, task.sizes, task.settings.torch_device)
    data = task.data.to(task.settings.torch_device)
    start = task.checkpoint.load() if task.checkpoint is not None else None  # an earlier session's state
    partial = train_stack(stack, task.specs, data, task.settings, report=report, measures=measures,
                          checkpoint=task.checkpoint, start=start)
    return ChunkResult(task.index, partial, stack.final())


@dataclass
class _Progress:
    """The epoch loop's running record: the per-epoch rows and which runs are still alive."""

    n_runs: int
    rows: list[torch.Tensor] = field(default_factory=list)  # per epoch: (metrics, N) on the CPU
    names: list[str] = field(default_factory=list)
    alive: torch.Tensor = None  # type: ignore[assignment]
    diverged_at: list[int | None] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.alive = torch.ones(self.n_runs, dtype=torch.bool)
        self.diverged_at = [None] * self.n_runs

    def add(self, epoch: int, names: list[str], row: torch.Tensor) -> None:
        """Record an epoch's row (metrics, N); a run whose mean or full-data loss is not finite diverged."""
        self.names = names
        self.rows.append(row)
        finite = torch.isfinite(row[0]) & torch.isfinite(row[names.index("full_loss")])
        for r in torch.nonzero(self.alive & ~finite).flatten().tolist():
            self.diverged_at[r] = epoch
        self.alive &= finite


def _epoch(stack: Stack, optimizer: flat_optim.FlatOptimizer, xe: torch.Tensor, ye: torch.Tensor,
           bounds: Sequence[tuple[int, int]], steps: dict[int, Step]) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the mini-batches: (summed loss x batch size (N,) float64, last batch's loss (N,)).
    ``steps``: the hand-written step of each mini-batch size built so far (built here where missing)."""
    total = torch.zeros(stack.n_runs, dtype=torch.float64, device=stack.flat.device)
    with torch.no_grad():  # once an epoch: the step and the optimizer then skip entering it (common.without_grad)
        for lo, hi in bounds:
            step = steps.get(hi - lo)
            if step is None:
                step = steps[hi - lo] = Step(stack, hi - lo, optimizer.grad)
            last = step(xe[:, lo:hi], ye[:, lo:hi])
            optimizer.step(optimizer.grad)
            # float64, as the loop engine's Python float sum: last (float32) times the batch size is exact in
            # float64, so add's alpha rounds nothing; one operation instead of three
            total.add_(last, alpha=hi - lo)
    return total, last


def train_stack(
    stack: Stack, specs: Sequence[RunSpec], data: Dataset, settings: TrainSettings, *,
    report: Callable[[int], None] | None = None, measures: Callable[[Mapping[str, float]], None] | None = None,
    checkpoint: Checkpoint | None = None, start: dict | None = None,
) -> list[RunResult]:
    """The epoch loop over a stack: results without their ``state`` (``stack.final()`` holds it).

    ``checkpoint`` (``due()``, ``save(state)``): where the state goes every so often and on an interrupt
    between two epochs; ``start``: such a state to go on from (``actlab.checkpoint`` describes both).
    """
    start_time = time.perf_counter()
    n_runs, x, y = stack.n_runs, data.x_train, data.y_train
    optimizer = flat_optim.make(stack, [spec.lr for spec in specs], settings)
    bounds = batch_bounds(len(x), settings.batch_size)
    orders = [EpochOrder(spec.seed, len(x)) for spec in specs] if settings.shuffle else None
    record = _Progress(n_runs)
    forward = Forward(stack)  # the losses of the epochs the diagnostics' schedule skips, by the step's kernels
    initial = evaluate(stack.weights, stack.biases, stack.act_layers, data, settings.diagnostics,
                       settings.measures(0), forward, forward.hidden)  # epoch 0
    initial = {name: v.double().cpu().tolist() for name, v in (initial | stack.slopes()).items()}
    if start is not None:  # a checkpoint of an earlier session: go on from its epoch
        initial = _restore(start, stack, optimizer, orders, record)
    between = True  # between two epochs the state is whole: an interrupt there can save it
    # The steps' and the loss pass's buffers live from epoch to epoch (built anew, they cost 0.4 ms and the
    # page faults of fresh memory), and are let go before each measuring pass of the diagnostics, whose
    # memory per run they would otherwise add to (6.4 KB and 32 KB per run).
    steps: dict[int, Step] = {}
    try:
        for epoch in range(len(record.rows) + 1, settings.epochs + 1):
            between = False
            if orders is None:
                xe, ye = x.expand(n_runs, *x.shape), y.expand(n_runs, *y.shape)
            else:
                idx = torch.stack([order.next() for order in orders]).to(x.device)  # (N, n)
                xe, ye = x[idx], y[idx]
            total, last = _epoch(stack, optimizer, xe, ye, bounds, steps)
            if settings.diagnostics and settings.measures(epoch):
                steps.clear()
                forward.release()
            found = evaluate(stack.weights, stack.biases, stack.act_layers, data, settings.diagnostics,
                             settings.measures(epoch), forward, forward.hidden)
            found.update(stack.slopes())
            names = ["train_loss", "last_batch_loss", *found]
            row = torch.stack([total / len(x), last.double(), *(v.double() for v in found.values())])
            record.add(epoch, names, row.cpu())  # .cpu(): the one host synchronisation of the epoch
            between = True
            if checkpoint is not None and checkpoint.due() and record.alive.any():
                checkpoint.save(_state(stack, optimizer, orders, record, initial))
            if measures is not None and n_runs == 1:  # before report: a caller may pass both on as one
                measures({"epoch": epoch, **dict(zip(names, record.rows[-1][:, 0].tolist()))})
            if report is not None:
                report(n_runs)
            if not record.alive.any():
                if report is not None:
                    report(n_runs * (settings.epochs - epoch))
                break
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (signals.Terminated): keep the epochs done so far
        if checkpoint is not None and between and record.rows and record.alive.any():
            checkpoint.save(_state(stack, optimizer, orders, record, initial))
        raise
    return _results(specs, stack, record, initial, time.perf_counter() - start_time)


OPTIMIZER_STATE = ("exp_avg", "exp_avg_sq", "buf")  # the flat optimizers' buffers (Adam's; SGD's momentum)


def _state(stack: Stack, optimizer: flat_optim.FlatOptimizer, orders: list[EpochOrder] | None,
           record: _Progress, initial: dict[str, list[float]]) -> dict[str, Any]:
    """The loop's state between two epochs, as ``actlab.checkpoint`` saves it (plain tensors and data)."""
    buffers = {name: getattr(optimizer, name) for name in OPTIMIZER_STATE if getattr(optimizer, name, None) is not None}
    return {"epoch": len(record.rows), "params": stack.flat.cpu(), "step": optimizer.step_count,
            "optimizer": {name: t.cpu() for name, t in buffers.items()},
            "generators": torch.stack([o.get_state() for o in orders]) if orders is not None else None,
            "rows": torch.stack(record.rows), "names": list(record.names), "alive": record.alive.clone(),
            "diverged_at": list(record.diverged_at), "initial": initial}


@torch.no_grad()
def _restore(start: dict[str, Any], stack: Stack, optimizer: flat_optim.FlatOptimizer,
             orders: list[EpochOrder] | None, record: _Progress) -> dict[str, list[float]]:
    """Put a saved state into the loop's objects (the stack is rebuilt with the same runs); the epoch-0
    measures."""
    from actlab.checkpoint import CheckpointError  # not at the top: checkpoint -> storage -> engines

    if start["params"].shape != stack.flat.shape or (start["generators"] is None) != (orders is None):
        raise CheckpointError("a checkpoint does not fit the stack of its runs (another config?); delete the "
                              "folder's checkpoints/ to train its runs from the start")
    stack.flat.copy_(start["params"])
    for name, saved in start["optimizer"].items():
        if getattr(optimizer, name, None) is None:  # SGD's momentum buffer exists from the first step on
            setattr(optimizer, name, saved.to(stack.flat.device).clone())
        else:
            getattr(optimizer, name).copy_(saved)
    optimizer.step_count = start["step"]
    for order, state in zip(orders or [], start["generators"] if orders is not None else []):
        order.set_state(state.clone())  # clone: a row of the stacked states crashes set_state
    record.rows, record.names = list(start["rows"].unbind(0)), list(start["names"])
    record.alive.copy_(start["alive"])
    record.diverged_at[:] = start["diverged_at"]
    return start["initial"]


def _results(specs: Sequence[RunSpec], stack: Stack, record: _Progress, initial: dict[str, list[float]],
             seconds: float) -> list[RunResult]:
    """Each run's RunResult (state={}) from the loop's record: its epochs up to any divergence."""
    n_epochs, n_runs = len(record.rows), stack.n_runs
    table = torch.stack(record.rows).permute(2, 1, 0).tolist()  # [run][metric][epoch]
    prelu = [False] * n_runs
    for start, stop, group in stack.groups:
        prelu[start:stop] = [group.is_prelu] * (stop - start)
    results = []
    for r, spec in enumerate(specs):
        diverged = record.diverged_at[r]
        done = n_epochs if diverged is None else diverged - 1
        history = {name: values[:done] for name, values in zip(record.names, table[r])
                   if prelu[r] or not name.startswith("slope_")}
        history["seconds"] = [seconds * (e + 1) / n_epochs / n_runs for e in range(done)]
        results.append(RunResult(
            spec=spec, history=history, status="ok" if diverged is None else "diverged",
            diverged_epoch=diverged, seconds=seconds / n_runs, engine="batched", state={},
            initial={name: v[r] for name, v in initial.items() if prelu[r] or not name.startswith("slope_")},
        ))
    return results
