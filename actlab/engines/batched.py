"""The batched engine: N runs trained as one stacked computation, with the loop engine's numbers.

A comparison is many identical tiny trainings; one at a time they are all per-operation overhead. Here the
weights of every run in a chunk are stacked along a leading run dimension — weight (N, out, in), bias
(N, out) — and one batched matmul does every run's layer at once. Each run's loss depends only on its own
slice, so the gradient of the summed losses is, slice by slice, each run's own gradient; Adam is
element-wise, so running it once over all runs' parameters (one flat buffer) is each run's Adam.

Bitwise equality with the loop engine (at one thread, float32) comes from doing every operation the way
``nn.Linear``, ``nn.MSELoss`` and ``optim.Adam`` do it:
- ``_StackedLinear`` computes the weight gradient as grad_out^T @ input, ``nn.Linear``'s orientation
  (autograd's own bmm backward may round in another order);
- ``_StackedMSE`` computes the gradient as (2/B) * (out - y), like ``mse_loss_backward``;
- the Adam update replays ``torch.optim.Adam``'s single-tensor arithmetic operation for operation; a per-run
  lr goes in as (-lr/bias_correction1) * exp_avg / denom, which is ``addcdiv``'s own order of operations;
- exp-based activations see each run as a row of its own (``rowwise``), with a single run's split into a
  vectorised body and a scalar tail.
It also needs the libraries to pick the same kernels for the stacked and the single-run shapes, which
``actlab/__init__.py`` pins and ``probe`` checks at start-up.

Activations: runs are grouped by (activation, options); each group's module is applied to its slice of the
run dimension (``diagnostics.apply_groups``). Parameter-free modules apply to (N, B, W) unchanged. PReLU's
slope becomes a stacked (n, 1, 1) parameter per layer. Any other module with parameters — or a custom one
that does not act on the last dimension independently of the leading ones — falls back to the loop engine.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import pickle
import queue
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from actlab import activations, diagnostics, signals
from actlab.checkpoint import Checkpoint, CheckpointError, Checkpoints
from actlab.devices import available_cores
from actlab.diagnostics import evaluate
from actlab.engines import loop, probe, rowwise
from actlab.engines.common import EpochOrder, Progress, RunResult, RunSpec, batch_bounds
from actlab.model import initial_parameters
from actlab.tasks import Dataset

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults, which the loop engine uses
# Activations whose ATen kernels (forward or backward) round their vectorised body and scalar tail
# differently (exp-based): applied run by run (``rowwise``) so that each run gets a single run's split
# (measured without it: each of these differs in training). Custom activations are too (their kernels are
# unknown). Not gelu: on a contiguous input of more than one element torch computes it with oneDNN, on
# padded rows with ATen's kernel: row-wise would differ from a single run everywhere instead of nowhere.
ROW_WISE = frozenset({"sigmoid", "elu", "selu", "celu", "silu", "mish", "softplus"})


class _StackedLinear(torch.autograd.Function):
    """x (N, B, in) -> x @ w^T + b for stacked w (N, out, in), b (N, out), with nn.Linear's gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w = ctx.saved_tensors
        grad_x = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2), x)  # (N, out, in), as nn.Linear orients it
        return grad_x, grad_w, grad.sum(1)


class _StackedMSE(torch.autograd.Function):
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


def _stacked_prelu(slope: torch.Tensor):
    # Same arithmetic as PReLU's kernel: x if x > 0 else slope * x.
    return lambda z: torch.where(z > 0, z, slope * z)


def stacked_activation(spec: RunSpec, slope: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The run's activation as the batched engine applies it to a stack (n, B, W) of its runs.

    ``slope`` (n, 1, 1): prelu's stacked learned slope (a leaf of the stack's parameters).
    """
    act = activations.resolve(spec.activation)
    if slope is not None:
        return _stacked_prelu(slope)
    module = act.build(spec.options)
    # module.forward, not module(): the hook machinery of __call__ costs more than a small op
    if act.name in ROW_WISE or act not in activations.BUILTIN:
        return rowwise.row_wise(module.forward, rowwise.backward_kernel(module))
    return module.forward


def _acts_on_last_dim(module: nn.Module, width: int = 5) -> bool:
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


def can_batch(spec: RunSpec) -> bool:
    """False for activations the batched engine hands to the loop engine (parametric other than prelu)."""
    act = activations.resolve(spec.activation)
    if act.name == "prelu":
        return True
    module = act.build(spec.options)
    if any(True for _ in module.parameters()):
        return False
    return act in activations.BUILTIN or _acts_on_last_dim(module)


class _Stack:
    """The parameters of a chunk of runs in one flat buffer, and leaf views of it for autograd."""

    def __init__(self, specs: Sequence[RunSpec], sizes: Sequence[int], device: torch.device) -> None:
        self.n_runs = len(specs)
        inits = [initial_parameters(sizes, spec.seed) for spec in specs]
        tensors: list[torch.Tensor] = []
        for layer in range(len(sizes) - 1):
            tensors.append(torch.stack([p[layer][0] for p in inits]))  # (N, out, in)
        for layer in range(len(sizes) - 1):
            tensors.append(torch.stack([p[layer][1] for p in inits]))  # (N, out)
        # Contiguous runs share an activation: group them, and give each prelu group one slope per layer.
        self.groups: list[tuple[int, int, RunSpec]] = []
        for i, spec in enumerate(specs):
            if self.groups and self.groups[-1][2].group_key == spec.group_key:
                self.groups[-1] = (self.groups[-1][0], i + 1, self.groups[-1][2])
            else:
                self.groups.append((i, i + 1, spec))
        self.slope_index: dict[tuple[int, int], int] = {}  # (group, hidden layer) -> tensor index
        for g, (start, stop, spec) in enumerate(self.groups):
            act = activations.resolve(spec.activation)
            if act.name == "prelu":
                init = float({**act.options(), **spec.options}["init"])  # the registry's default unless set
                for layer in range(len(sizes) - 2):
                    self.slope_index[g, layer] = len(tensors)
                    tensors.append(torch.full((stop - start, 1, 1), init))
        self.shapes = [t.shape for t in tensors]
        self.flat = torch.cat([t.reshape(-1) for t in tensors]).to(device)
        # Leaves share the flat buffer's storage: Adam updates the buffer in place, the leaves see it.
        self.leaves: list[torch.Tensor] = []
        offset = 0
        for shape in self.shapes:
            size = math.prod(shape)
            self.leaves.append(self.flat[offset : offset + size].view(shape).detach().requires_grad_())
            offset += size
        self.n_layers = len(sizes) - 1
        self.act_layers = self._activation_layers(len(sizes) - 2)

    @property
    def weights(self) -> list[torch.Tensor]:
        return self.leaves[: self.n_layers]

    @property
    def biases(self) -> list[torch.Tensor]:
        return self.leaves[self.n_layers : 2 * self.n_layers]

    def _activation_layers(self, n_hidden: int) -> list[list[diagnostics.ActGroup]]:
        layers: list[list[diagnostics.ActGroup]] = [[] for _ in range(n_hidden)]
        for g, (start, stop, spec) in enumerate(self.groups):
            act = activations.resolve(spec.activation)
            scale = diagnostics.max_slope(act.build(spec.options))
            for layer in range(n_hidden):
                slope = self.leaves[self.slope_index[g, layer]] if (g, layer) in self.slope_index else None
                fn = stacked_activation(spec, slope)
                layers[layer].append(diagnostics.ActGroup(start, stop, fn, act.elementwise, scale))
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (N, B, 1) of every run for its inputs x (N, B, in)."""
        h = x
        for layer, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = _StackedLinear.apply(h, w, b)
            if layer < self.n_layers - 1:
                h = diagnostics.apply_groups(h, self.act_layers[layer])
        return h

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

    def final(self) -> _FinalParameters:
        """The parameters of every run, stacked, on the CPU."""
        slopes = [(index, layer, *self.groups[g][:2]) for (g, layer), index in self.slope_index.items()]
        return _FinalParameters([leaf.detach().cpu().clone() for leaf in self.leaves], self.n_layers, slopes)


@dataclass
class _FinalParameters:
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


class _Adam:
    """torch.optim.Adam (single-tensor, default betas and eps) over the flat buffer, with a per-run lr."""

    def __init__(self, stack: _Stack, lrs: Sequence[float]) -> None:
        self.params = stack.flat
        self.exp_avg = torch.zeros_like(self.params)
        self.exp_avg_sq = torch.zeros_like(self.params)
        self._denom = torch.empty_like(self.params)
        self.grad = torch.empty_like(self.params)  # the engine concatenates the gradients into it
        self.step_count = 0
        self.lr: float | None = lrs[0] if len(set(lrs)) == 1 else None
        if self.lr is None:  # one lr per element, in float64 as Python computes the scalar step size
            per_run = torch.tensor(lrs, dtype=torch.float64, device=self.params.device)
            self.lr_flat = torch.cat([
                per_run[start:stop].view(-1, *[1] * (len(shape) - 1)).expand(shape).reshape(-1)
                for (start, stop), shape in zip(stack.run_ranges(), stack.shapes)
            ])

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        self.step_count += 1
        self.exp_avg.lerp_(grad, 1 - BETA1)
        self.exp_avg_sq.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
        bias_correction1 = 1 - BETA1**self.step_count
        bias_correction2 = 1 - BETA2**self.step_count
        # denom = sqrt(exp_avg_sq) / sqrt(bc2) + eps, as Adam computes it, into a reused buffer. The clamp
        # changes no result: below 1e-36, sqrt(v) / sqrt(bc2) < 3.2e-17 (bc2 >= 1e-3) is under half an ulp
        # of eps = 1e-8, so denom is eps either way; but sqrt of exact zeros (the weights of dead ReLU
        # units) takes a slow path on this CPU, 5x slower than the whole rest of the update.
        denom = torch.clamp_min(self.exp_avg_sq, 1e-36, out=self._denom)
        denom.sqrt_().div_(bias_correction2**0.5).add_(EPS)
        if self.lr is not None:
            self.params.addcdiv_(self.exp_avg, denom, value=-(self.lr / bias_correction1))
        else:
            neg_step = (self.lr_flat / bias_correction1).neg_().float()
            self.params.addcdiv_(self.exp_avg * neg_step, denom)


def train_chunk(
    specs: Sequence[RunSpec], data: Dataset, sizes: Sequence[int], *, epochs: int, batch_size: int,
    shuffle: bool, device: torch.device, diagnostics: bool = True, progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> list[RunResult]:
    """Train ``specs`` (already grouped so that equal activations are contiguous) as one stack."""
    results, final = _train_chunk(specs, data, sizes, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                                  device=device, diagnostics=diagnostics, progress=progress, checkpoint=checkpoint)
    return _with_states(results, final)


def _with_states(results: list[RunResult], final: _FinalParameters) -> list[RunResult]:
    for result, state in zip(results, final.state_dicts()):
        result.state = state
    return results


def _train_chunk(
    specs: Sequence[RunSpec], data: Dataset, sizes: Sequence[int], *, epochs: int, batch_size: int,
    shuffle: bool, device: torch.device, diagnostics: bool = True, progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> tuple[list[RunResult], _FinalParameters]:
    """The training itself: results without their ``state`` yet, and the stacked final parameters.
    ``checkpoint``: saves the state every so often and on an interrupt between epochs; resumed from."""
    start_time = time.perf_counter()
    n_runs = len(specs)
    stack = _Stack(specs, sizes, device)
    adam = _Adam(stack, [spec.lr for spec in specs])
    x, y = data.x_train, data.y_train
    n = len(x)
    bounds = batch_bounds(n, batch_size)
    orders = [EpochOrder(spec.seed, n) for spec in specs] if shuffle else None
    rows: list[torch.Tensor] = []  # per epoch: (metrics, N) on the CPU
    names: list[str] = []
    alive = torch.ones(n_runs, dtype=torch.bool)
    diverged_at = [None] * n_runs
    initial = evaluate(stack.weights, stack.biases, stack.act_layers, data, diagnostics)  # epoch 0
    initial = {name: v.double().cpu().tolist() for name, v in (initial | stack.slopes()).items()}
    start = checkpoint.load() if checkpoint is not None else None
    if start is not None:
        rows, names, initial = _restore(start, stack, adam, orders, alive, diverged_at)
    between = True  # between epochs: the state is whole, an interrupt can save it
    try:
        for epoch in range(len(rows) + 1, epochs + 1):
            between = False
            if orders is None:
                xe, ye = x.expand(n_runs, *x.shape), y.expand(n_runs, *y.shape)
            else:
                idx = torch.stack([order.next() for order in orders]).to(device)  # (N, n)
                xe, ye = x[idx], y[idx]
            total = torch.zeros(n_runs, dtype=torch.float64, device=device)
            for lo, hi in bounds:
                losses = _StackedMSE.apply(stack.forward(xe[:, lo:hi]), ye[:, lo:hi])
                grads = torch.autograd.grad(losses.sum(), stack.leaves)
                adam.step(torch.cat([g.reshape(-1) for g in grads], out=adam.grad))
                last = losses.detach()
                total += last.double() * (hi - lo)  # float64, as the loop engine's Python float sum
            measures = evaluate(stack.weights, stack.biases, stack.act_layers, data, diagnostics)
            measures.update(stack.slopes())
            names = ["train_loss", "last_batch_loss", *measures]
            row = torch.stack([total / n, last.double(), *(v.double() for v in measures.values())])
            row = row.cpu()  # the one host synchronisation of the epoch
            rows.append(row)
            finite = torch.isfinite(row[0]) & torch.isfinite(row[names.index("full_loss")])
            for r in torch.nonzero(alive & ~finite).flatten().tolist():
                diverged_at[r] = epoch
            alive &= finite
            between = True
            if checkpoint is not None and checkpoint.due() and alive.any():
                checkpoint.save(_state(stack, adam, orders, rows, names, alive, diverged_at, initial))
            if progress is not None:
                progress(n_runs, {"epoch": epoch, **dict(zip(names, row[:, 0].tolist()))} if n_runs == 1 else None)
            if not alive.any():
                if progress is not None:
                    progress(n_runs * (epochs - epoch), None)
                break
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: between epochs, keep the epochs done so far
        if checkpoint is not None and between and rows and alive.any():
            checkpoint.save(_state(stack, adam, orders, rows, names, alive, diverged_at, initial))
        raise
    seconds = time.perf_counter() - start_time
    table = torch.stack(rows).permute(2, 1, 0).tolist()  # [run][metric][epoch]
    results = []
    for r, spec in enumerate(specs):
        done = len(rows) if diverged_at[r] is None else diverged_at[r] - 1
        prelu = activations.resolve(spec.activation).name == "prelu"
        history = {
            name: values[:done] for name, values in zip(names, table[r])
            if prelu or not name.startswith("slope_")
        }
        history["seconds"] = [seconds * (e + 1) / len(rows) / n_runs for e in range(done)]
        results.append(RunResult(
            spec=spec, history=history, status="ok" if diverged_at[r] is None else "diverged",
            diverged_epoch=diverged_at[r], seconds=seconds / n_runs, engine="batched", state={},
            initial={name: v[r] for name, v in initial.items() if prelu or not name.startswith("slope_")},
        ))
    return results, stack.final()


def _state(stack: _Stack, adam: _Adam, orders: list[EpochOrder] | None, rows: list[torch.Tensor], names: list[str],
           alive: torch.Tensor, diverged_at: list[int | None], initial: dict[str, list[float]]) -> dict:
    """The epoch loop's state between epochs, as ``actlab.checkpoint`` saves it (see STATE_KEYS there)."""
    return {"epoch": len(rows), "params": stack.flat.cpu(), "step": adam.step_count,
            "optimizer": {"exp_avg": adam.exp_avg.cpu(), "exp_avg_sq": adam.exp_avg_sq.cpu()},
            "generators": torch.stack([o.get_state() for o in orders]) if orders is not None else None,
            "rows": torch.stack(rows), "names": list(names), "alive": alive.clone(),
            "diverged_at": list(diverged_at), "initial": initial}


@torch.no_grad()
def _restore(start: dict, stack: _Stack, adam: _Adam, orders: list[EpochOrder] | None, alive: torch.Tensor,
             diverged_at: list[int | None]) -> tuple[list[torch.Tensor], list[str], dict[str, list[float]]]:
    """Put a checkpoint's state into the loop's objects; the rows, measure names and epoch-0 measures."""
    if start["params"].shape != stack.flat.shape or (start["generators"] is None) != (orders is None):
        raise CheckpointError("a checkpoint does not fit its stack (another config?); delete the folder's "
                              "checkpoints/ to retrain its runs from the start")
    stack.flat.copy_(start["params"])
    adam.exp_avg.copy_(start["optimizer"]["exp_avg"])
    adam.exp_avg_sq.copy_(start["optimizer"]["exp_avg_sq"])
    adam.step_count = start["step"]
    for order, state in zip(orders or [], start["generators"] if orders is not None else []):
        order.set_state(state)
    alive.copy_(start["alive"])
    diverged_at[:] = start["diverged_at"]
    return list(start["rows"].unbind(0)), list(start["names"]), start["initial"]


def _split(specs: Sequence[RunSpec], chunk_size: int, parts: int) -> list[list[RunSpec]]:
    """Contiguous chunks of at most ``chunk_size`` runs, at least ``parts`` of them when there are enough runs."""
    n_chunks = max(math.ceil(len(specs) / chunk_size), min(parts, len(specs) // MIN_RUNS_PER_WORKER), 1)
    size = math.ceil(len(specs) / n_chunks)
    return [list(specs[lo : lo + size]) for lo in range(0, len(specs), size)]


MIN_RUNS_PER_WORKER = 8  # below this a worker process costs more than it saves


def _worker_init(progress_queue) -> None:
    """Set up a worker process (forked: it inherits the parent's CPU pinning and MKL mode)."""
    signals.worker_setup()  # exit with the parent, leave Ctrl-C/SIGTERM to it (actlab/signals.py)
    global _progress_queue
    _progress_queue = progress_queue
    torch.set_num_threads(1)


_progress_queue = None  # set in worker processes only: where they report finished run-epochs


def _worker_train(chunk, save, data, sizes, kwargs) -> bytes:
    report = (lambda n, _measures: _progress_queue.put(n)) if _progress_queue is not None else None
    # Plain pickle of a few stacked tensors: per-run tensors (multiprocessing's pickler gives each its own
    # shared-memory segment) would cost more than the training of a small chunk.
    return pickle.dumps(_train_chunk(chunk, data, sizes, progress=report, checkpoint=save, **kwargs))


def _relay(progress_queue, progress: Progress | None) -> None:
    """Pass the run-epochs the workers reported so far on to ``progress``."""
    while not progress_queue.empty():
        n = progress_queue.get()
        if progress is not None:
            progress(n, None)


def _in_workers(chunks, saves, data, sizes, workers: int, progress: Progress | None,
                kwargs) -> Iterator[list[RunResult]]:
    """Train chunks in ``workers`` forked processes, relaying their progress; yields as they finish."""
    ctx = mp.get_context("fork")
    progress_queue = ctx.SimpleQueue()
    finished: queue.SimpleQueue = queue.SimpleQueue()  # (ok, pickled results or exception), filled by the pool
    pool = ctx.Pool(workers, initializer=_worker_init, initargs=(progress_queue,))
    try:
        for chunk, save in zip(chunks, saves):
            pool.apply_async(_worker_train, (chunk, save, data, sizes, kwargs),
                             callback=lambda out: finished.put((True, out)),
                             error_callback=lambda exc: finished.put((False, exc)))
        pool.close()
        for _ in chunks:
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
            yield _with_states(*pickle.loads(out))
    except BaseException:
        pool.terminate()  # Ctrl-C or an error: do not wait for the other chunks
        raise
    finally:
        pool.join()


def _resumed(specs: Sequence[RunSpec], checkpoints: Checkpoints | None) -> list[list[RunSpec]]:
    """The stacks of ``checkpoints`` saved by an earlier session whose runs are all among ``specs``."""
    by_id = {spec.run_id: spec for spec in specs}
    saved = checkpoints.saved() if checkpoints is not None else []
    return [[by_id[run_id] for run_id in key] for key in saved if all(run_id in by_id for run_id in key)]


def check_equivalence(specs: Sequence[RunSpec], data: Dataset, sizes: Sequence[int], batch_size: int) -> dict:
    """Run the start-up probe for this experiment's shapes; one warning line (logging) where it fails."""
    n_test = len(data.x_test) if data.x_test is not None else 0
    result = probe.for_training(specs, sizes, len(data.x_train), n_test, batch_size)
    if not result["bitwise"]:
        logging.getLogger("actlab").warning(_probe_warning(result["failed"], probe.kernel_setup()))
    return result


def _probe_warning(failed: list[str], setup: dict) -> str:
    """One line: what the probe found, under which settings, and the fix where a setting explains it."""
    more = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
    if setup["mkl"] and (setup["mkl_cbwr"] or "").upper() != "COMPATIBLE":
        fix = "; unset MKL_CBWR or set it to COMPATIBLE for bitwise equality"
    elif setup["aten_cpu_capability"] and not setup["aten_pinned"]:
        fix = "; torch computed before actlab was imported, too early for its CPU settings: import actlab first"
    else:
        fix = ""
    return (f"warning: the batched engine does not reproduce the loop engine bit for bit on this machine "
            f"({failed[0]}{more}; MKL_CBWR={setup['mkl_cbwr']}, ATen {setup['cpu_capability']}): results can "
            f"differ from the last bit on{fix}")


def train_runs(
    specs: Sequence[RunSpec], data: Dataset, sizes: Sequence[int], *, epochs: int, batch_size: int,
    shuffle: bool, device: torch.device, chunk_size: int = 4096, workers: int = 1, diagnostics: bool = True,
    progress: Progress | None = None, checkpoints: Checkpoints | None = None,
) -> Iterator[list[RunResult]]:
    """Train every spec; batchable ones in stacks of at most ``chunk_size``, the rest by the loop engine.

    On the CPU, chunks go to ``workers`` processes (0: one per core), one thread each; results do not
    depend on the chunking or the number of workers (tested).
    """
    data = data.to(device)
    kwargs = dict(epochs=epochs, batch_size=batch_size, shuffle=shuffle, device=device, diagnostics=diagnostics)
    batchable_keys = {spec.group_key: can_batch(spec) for spec in specs}
    batchable = [spec for spec in specs if batchable_keys[spec.group_key]]
    # Keep runs of one activation together (first-seen order), so each group is one contiguous slice.
    first_seen: dict[tuple, int] = {}
    for spec in batchable:
        first_seen.setdefault(spec.group_key, len(first_seen))
    batchable.sort(key=lambda spec: first_seen[spec.group_key])
    if batchable and device.type == "cpu":
        check_equivalence(batchable, data, sizes, batch_size)
    workers = workers or available_cores()
    # fork is only safe with torch on Linux (macOS's runtime does not survive it; Windows has none)
    parallel = workers > 1 and device.type == "cpu" and sys.platform.startswith("linux")
    resumed = _resumed(batchable, checkpoints)  # stacks an earlier session checkpointed, rebuilt as they were
    taken = {spec.run_id for chunk in resumed for spec in chunk}
    batchable = [spec for spec in batchable if spec.run_id not in taken]
    chunks = resumed + (_split(batchable, chunk_size, workers if parallel else 1) if batchable else [])
    saves = [checkpoints.for_stack([s.run_id for s in chunk]) if checkpoints else None for chunk in chunks]
    if parallel and len(chunks) > 1:
        yield from _in_workers(chunks, saves, data, sizes, min(workers, len(chunks)), progress, kwargs)
    else:
        for chunk, save in zip(chunks, saves):
            yield train_chunk(chunk, data, sizes, progress=progress, checkpoint=save, **kwargs)
    rest = [spec for spec in specs if not batchable_keys[spec.group_key]]
    if rest:
        yield from loop.train_runs(rest, data, sizes, progress=progress, **kwargs)
