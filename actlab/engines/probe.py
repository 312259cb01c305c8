"""Start-up probe: do the batched engine's stacked primitives give this machine's single-run numbers?

The batched engine equals the loop engine bit for bit only if every stacked operation rounds as the
single-run one does, and that depends on the kernels the libraries pick for this CPU and these shapes
(``actlab/__init__.py`` pins MKL's and ATen's code paths so that the answer does not depend on the CPU).
The probe checks, on random numbers and the experiment's own layer shapes and batch sizes, each primitive
of a training step and of the per-epoch diagnostics against the single-run code the loop engine runs:
each linear layer (output, input, weight and bias gradients), the MSE loss and its gradient, each
activation (output and gradients), and the optimizer's update (Adam or SGD, one lr and per-run lrs).
About 0.1 s for the 23 registry activations; cached in memory per set of shapes, activations and optimizer
(the folder's env.json and the engine ask for the same probe: it runs once).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from actlab.engines.common import Group, RunSpec, TrainSettings, one_thread

N_RUNS = 8  # a stack of a few runs: each run's slice is computed alike, and 8 give enough values to compare


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def kernel_setup() -> dict[str, Any]:
    """What decides the kernels: CPU model, ATen's CPU capability (asked for and in use), MKL's CNR mode,
    oneDNN's ISA limit (the variables as set; the probe shows whether MKL's took effect)."""
    wanted = os.environ.get("ATEN_CPU_CAPABILITY")
    in_use = torch.backends.cpu.get_cpu_capability()
    return {
        "cpu": cpu_model(),
        "cpu_capability": in_use,
        "aten_cpu_capability": wanted,  # the pin; differs from cpu_capability if torch ran before actlab
        "aten_pinned": wanted is not None and wanted.upper() == in_use.upper(),
        "mkl_cbwr": os.environ.get("MKL_CBWR"),  # MKL reads it at its first call: the probe checks the effect
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "mkl": torch.backends.mkl.is_available(),
    }


def equivalence(
    specs: Iterable[RunSpec], sizes: Sequence[int], batch_sizes: Iterable[int], eval_sizes: Iterable[int] = (),
    settings: TrainSettings | None = None,
) -> dict[str, Any]:
    """{"bitwise": bool, "checked": [...], "failed": [...]}: does every stacked primitive reproduce the
    single-run one for these layer ``sizes``, mini-batch sizes, (diagnostics) full-data sizes and the
    optimizer of ``settings`` (default: Adam's defaults)?"""
    # one probe per set of activations, whatever order they come in (env.json's and the engine's lists differ)
    groups = sorted({spec.group_key: None for spec in specs}, key=repr)
    # only the optimizer's fields matter here: the others are normalised so that the cache hits
    optimizer = dataclasses.replace(settings or TrainSettings(1, 1), epochs=1, batch_size=1, shuffle=False,
                                    diagnostics=True, device="cpu")
    return dict(_probe(tuple(sizes), tuple(sorted(set(batch_sizes))), tuple(sorted(set(eval_sizes))),
                       tuple(groups), optimizer))


def for_training(
    specs: Iterable[RunSpec], sizes: Sequence[int], n_train: int, n_test: int, batch_size: int,
    settings: TrainSettings | None = None, n_val: int = 0,
) -> dict[str, Any]:
    """``equivalence`` for a training setup: the runs the batched engine stacks, the mini-batch sizes of
    an epoch (full and last), the full-data sizes of the diagnostics (training and held-out sets: test and
    ``n_val`` validation points) and the optimizer of ``settings``."""
    from actlab.engines.stacked import can_batch

    full = min(batch_size, n_train)
    batch_sizes = {full, n_train % batch_size or full}
    eval_sizes = {n_train, *(n for n in (n_test, n_val) if n)}
    distinct = {spec.group_key: spec for spec in specs}.values()  # one run per activation is enough
    return equivalence([s for s in distinct if can_batch(s)], sizes, batch_sizes, eval_sizes, settings)


@functools.lru_cache(maxsize=16)
def _probe(sizes, batch_sizes, eval_sizes, group_keys, optimizer: TrainSettings) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    checked: list[str] = []
    failed: list[str] = []
    with one_thread():
        for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            name = f"linear {fan_in}->{fan_out}"
            checked.append(name)
            # the first layer's input gradient (the data's) is computed by neither engine: not compared
            failed += [f"{name} batch {b}: {what}" for b in batch_sizes
                       for what in _linear(fan_in, fan_out, b, gen) if layer or "input grad" not in what]
            failed += [f"{name} full data {b}: {what}" for b in eval_sizes
                       for what in _linear_output(fan_in, fan_out, b, gen)]
        checked.append("mse")
        failed += [f"mse batch {b}: {what}" for b in batch_sizes for what in _mse(b, gen)]
        checked.append(optimizer.optimizer)
        failed += [f"{optimizer.optimizer}: {what}" for what in _optimizer(sizes, gen, optimizer)]
        widths = sorted(set(sizes[1:-1]))
        for activation, options in group_keys:
            spec = RunSpec(activation, 0, 0.0, dict(options))
            name = spec.run_id.rsplit("/", 1)[0]
            checked.append(name)
            group = Group.of(spec)
            modules = [group.build() for _ in range(N_RUNS)]  # once per activation: building one is not free
            failed += [f"{name} {b}x{w}: {what}" for b in sorted({*batch_sizes, *eval_sizes}) for w in widths
                       for what in _activation(group, modules, b, w, gen)]
    return {"bitwise": not failed, "checked": checked, "failed": failed}


def _grads(out: torch.Tensor, leaves: Sequence[torch.Tensor], grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Gradients of ``leaves`` given ``grad`` for ``out``: through sum(out * grad), whose gradient for out is
    exactly grad (1 * grad), because a tensor ``grad_outputs`` makes autograd import sympy (half a second)."""
    return torch.autograd.grad((out * grad).sum(), leaves)


def _single_grads(outs: Sequence[torch.Tensor], leaves: Sequence[Sequence[torch.Tensor]],
                  grads: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
    """``_grads`` of every run's own graph (outs[i], leaves[i], grads[i]) in one backward pass: the runs'
    sums add up with gradient exactly 1 each, so every run's nodes get exactly its grad and run their own
    kernels on their own shapes, as in a call per run (which costs an autograd call per run)."""
    total = torch.stack([(out * grad).sum() for out, grad in zip(outs, grads)]).sum()
    flat = torch.autograd.grad(total, [leaf for run in leaves for leaf in run])
    found, start = [], 0
    for run in leaves:
        found.append(flat[start : start + len(run)])
        start += len(run)
    return found


def _differs(names: Sequence[str], stacked: Sequence[torch.Tensor], single: Sequence[torch.Tensor]) -> list[str]:
    return [n for n, a, b in zip(names, stacked, single) if not torch.equal(a, b)]


def _linear(fan_in: int, fan_out: int, batch: int, gen: torch.Generator) -> list[str]:
    from actlab.engines import step
    from actlab.engines.rowwise import rows
    from actlab.engines.stacked import StackedLinear

    x, grad = torch.randn(N_RUNS, batch, fan_in, generator=gen), torch.randn(N_RUNS, batch, fan_out, generator=gen)
    w = torch.rand(N_RUNS, fan_out, fan_in, generator=gen).sub_(0.5).requires_grad_()
    b = torch.rand(N_RUNS, fan_out, generator=gen).sub_(0.5).requires_grad_()
    x.requires_grad_()
    out = StackedLinear.apply(x, w, b)
    stacked = [out, *_grads(out, (x, w, b), grad)]
    leaves = [[t[i].detach().requires_grad_() for t in (x, w, b)] for i in range(N_RUNS)]
    outs = [F.linear(xi, wi, bi) for xi, wi, bi in leaves]  # nn.Linear's own arithmetic, run by run
    single = [[oi, *g] for oi, g in zip(outs, _single_grads(outs, leaves, grad.unbind(0)))]
    reference = [torch.stack(parts) for parts in zip(*single)]
    # the training step's arithmetic, on inputs and gradients laid out in padded rows as it lays them out
    padded = step.linear(rows(x.detach()), w.detach(), b.detach(), rows(grad))
    names = ["output", "input grad", "weight grad", "bias grad"]
    return _differs(names, stacked, reference) + _differs([f"step {n}" for n in names], padded, reference)


def _linear_output(fan_in: int, fan_out: int, batch: int, gen: torch.Generator) -> list[str]:
    """The full-data pass's linear layer (``step.Forward``: inputs in padded rows) against F.linear per run."""
    from actlab.engines import step
    from actlab.engines.rowwise import rows

    x = torch.randn(N_RUNS, batch, fan_in, generator=gen)
    w = torch.rand(N_RUNS, fan_out, fan_in, generator=gen).sub_(0.5)
    b = torch.rand(N_RUNS, fan_out, generator=gen).sub_(0.5)
    padded = step.linear(rows(x), w, b, torch.zeros(N_RUNS, batch, fan_out))[0]
    return _differs(["output"], [padded], [torch.stack([F.linear(*run) for run in zip(x, w, b)])])


def _mse(batch: int, gen: torch.Generator) -> list[str]:
    from actlab.engines.stacked import StackedMSE

    out, y = torch.randn(N_RUNS, batch, 1, generator=gen).requires_grad_(), torch.randn(N_RUNS, batch, 1, generator=gen)
    loss = StackedMSE.apply(out, y)
    stacked = [loss.detach(), *torch.autograd.grad(loss.sum(), out)]
    leaves = [[out[i].detach().requires_grad_()] for i in range(N_RUNS)]
    losses = [nn.MSELoss()(run[0], y[i]) for i, run in enumerate(leaves)]
    ones = [torch.ones(()) for _ in losses]  # each loss's own gradient, 1, as autograd.grad(loss, out) uses
    single = [[li.detach(), *g] for li, g in zip(losses, _single_grads(losses, leaves, ones))]
    return _differs(["loss", "gradient"], stacked, [torch.stack(parts) for parts in zip(*single)])


def _activation(group: Group, modules: Sequence[nn.Module], batch: int, width: int, gen: torch.Generator) -> list[str]:
    """The group's stacked activation and the training step's kernels against each of N_RUNS ``modules``
    (built from the group) on its own slice."""
    from actlab.engines import kernels
    from actlab.engines.stacked import stacked_activation

    z, grad = 3 * torch.randn(N_RUNS, batch, width, generator=gen), torch.randn(N_RUNS, batch, width, generator=gen)
    z.requires_grad_()
    slope = None
    if group.is_prelu:  # the stacked slope (n, 1, 1) against each module's own
        slope = torch.stack([m.weight.detach() for m in modules]).view(N_RUNS, 1, 1).requires_grad_()
    out = stacked_activation(group, slope)(z)
    stacked = [out, *_grads(out, [z] + ([slope] if slope is not None else []), grad)]
    leaves = [[z[i].detach().requires_grad_(), *module.parameters()] for i, module in enumerate(modules)]
    outs = [module(run[0]) for module, run in zip(modules, leaves)]
    single = [[oi, *(g.view(-1) if g.dim() == 1 else g for g in grads)]
              for oi, grads in zip(outs, _single_grads(outs, leaves, grad.unbind(0)))]
    if slope is not None:
        stacked[-1] = stacked[-1].view(N_RUNS, 1)
    # the training step's kernels (engines/kernels.py) on the same numbers
    grad_slope = None if slope is None else torch.empty_like(slope)
    kernel = kernels.for_group(group.module, stacked_activation(group), slope, grad_slope)
    step = [*kernels.run(kernel, z, grad), *([grad_slope.view(N_RUNS, 1)] if slope is not None else [])]
    reference = [torch.stack(parts) for parts in zip(*single)]
    return _differs(["output", "input grad", "slope grad"], stacked, reference) + _differs(
        ["step output", "step input grad", "step slope grad"], step, reference)


def _torch_step(settings: TrainSettings, lr: float) -> Callable[[torch.Tensor, torch.Tensor, list], None]:
    """One parameter tensor's update by torch.optim's single-tensor function (``Adam(foreach=False)``'s or
    ``SGD(foreach=False)``'s arithmetic, with the loop engine's keywords, without the optimizer object, whose
    construction imports torch's compiler: a second of start-up); ``state``: the tensor's optimizer state,
    a list filled on first use."""
    from actlab.engines.loop import optimizer_options

    options = {"weight_decay": 0.0, "maximize": False, **optimizer_options(settings)}
    if settings.optimizer == "sgd":
        from torch.optim.sgd import sgd

        def sgd_step(p: torch.Tensor, g: torch.Tensor, state: list) -> None:
            if not state:
                state.append(None)
            sgd([p], [g], state, foreach=False, grad_scale=None, found_inf=None, lr=lr, dampening=0.0,
                nesterov=False, **options)

        return sgd_step
    from torch.optim.adam import adam

    beta1, beta2 = options.pop("betas")

    def adam_step(p: torch.Tensor, g: torch.Tensor, state: list) -> None:
        if not state:
            state.extend([torch.zeros_like(p), torch.zeros_like(p), torch.tensor(0.0)])
        m, v, step = state
        adam([p], [g], [m], [v], [], [step], foreach=False, capturable=False, differentiable=False,
             fused=None, grad_scale=None, found_inf=None, has_complex=False, amsgrad=False, beta1=beta1,
             beta2=beta2, lr=lr, **options)

    return adam_step


def _optimizer(sizes: Sequence[int], gen: torch.Generator, settings: TrainSettings) -> list[str]:
    """Three steps of the engine's flat-buffer optimizer against torch.optim's single-tensor arithmetic on
    each run's own parameter tensors, with one lr for all runs and with one lr per run."""
    from actlab.engines import flat_optim
    from actlab.engines.stacked import Stack

    failed = []
    for lrs in ([1e-3] * N_RUNS, [1e-3 * (1 + r) for r in range(N_RUNS)]):
        specs = [RunSpec("relu", seed, lr) for seed, lr in enumerate(lrs)]
        stack = Stack(specs, sizes, torch.device("cpu"))
        flat = flat_optim.make(stack, lrs, settings)
        params = [leaf[r].detach().clone() for leaf in stack.leaves for r in range(N_RUNS)]
        steps = [_torch_step(settings, lrs[i % N_RUNS]) for i in range(len(params))]
        states: list[list] = [[] for _ in params]
        for _ in range(3):
            grads = [torch.randn(leaf.shape, generator=gen) for leaf in stack.leaves]
            flat.step(torch.cat([g.reshape(-1) for g in grads], out=flat.grad))  # the engine's own buffer
            per_run = [g[r] for g in grads for r in range(N_RUNS)]
            for p, g, step, state in zip(params, per_run, steps, states):
                step(p, g, state)
        stacked = [leaf.detach() for leaf in stack.leaves]
        single = [torch.stack(params[i * N_RUNS : (i + 1) * N_RUNS]) for i in range(len(stacked))]
        what = "per-run lr " if len(set(lrs)) > 1 else ""
        failed += _differs([f"{what}parameters {i}" for i in range(len(single))], stacked, single)
    return failed
