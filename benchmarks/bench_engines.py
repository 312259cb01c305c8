"""Issue 13's figures, measured on this machine: the default `actlab compare` end to end, the batched engine
against the loop engine per run, per model-step at scale and its matmul floor, mixed against single-activation
stacks, the diagnostics' share, the CPU pinning's cost; then every target against what was measured.

    python benchmarks/bench_engines.py            # about five minutes on a 2-core machine
    python benchmarks/bench_engines.py --quick    # a smoke run: tiny sizes, check that the script runs
    python benchmarks/bench_engines.py --report [FOLDER]   # only the report of the default compare

Timings on a shared machine are noisy: read the ratios, measured back to back, not the absolute numbers.
Part 1 runs the `actlab` command line in fresh processes (as a user does: two workers on two cores); the other
parts run in this process at one thread (workers=1) unless a row says otherwise, mostly in CPU time. The
pinning is set before torch computes anything, so part 6 compares pinned and unpinned (ACTLAB_PIN_CPU=0) runs
in subprocesses, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from actlab import activations
from actlab.engines import RunSpec, TrainSettings, flat_optim, probe, train
from actlab.tasks import make_dataset

SIZES = (10, 18, 18, 4, 1)
TEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu"]


def timed(specs, engine, epochs, workers=1):
    """Seconds to train ``specs`` (article data, batches of 10 in order) and the results."""
    data = make_dataset("noise", 100, 0)
    start = time.perf_counter()
    results = [r for chunk in train(specs, data, SIZES, TrainSettings(epochs=epochs, batch_size=10),
                                    engine=engine, workers=workers) for r in chunk]
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    parser.add_argument("--loop-seeds", type=int, default=2, help="seeds per activation for the (slow) loop engine")
    parser.add_argument("--child", type=int, metavar="EPOCHS", help=argparse.SUPPRESS)  # part 6's subprocess
    parser.add_argument("--report", nargs="?", const="", metavar="FOLDER",
                        help="only the report's seconds (on FOLDER, a default-compare folder, if given)")
    args = parser.parse_args()
    if args.child:
        return default_compare(args.child)
    if args.report is not None:
        return report_part(Path(args.report) if args.report else None)
    epochs = 15 if args.quick else 150
    setup = probe.kernel_setup()
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, {setup['cpu']}, ATen {setup['cpu_capability']}, "
          f"MKL_CBWR={setup['mkl_cbwr']}; article setup, {epochs} epochs = {epochs * 10} steps per run")
    found = end_to_end(args.quick)
    found |= per_run(epochs, seeds=2 if args.quick else 16, loop_seeds=args.loop_seeds)
    found |= scaling(args.quick)
    found |= stacking(args.quick)
    found["diagnostics"] = max(diagnostics_share(epochs, rounds=1 if args.quick else 3).values())
    pinning(epochs, rounds=1 if args.quick else 2)
    targets(found)


def end_to_end(quick: bool) -> dict[str, float]:
    """Part 1: the default `actlab compare` as a user runs it, each in a fresh process (median of 2)."""
    small = ["--set", "train.epochs=15", "--set", "compare.seeds=2"] if quick else []
    rounds = 1 if quick else 2
    full = startup_seconds(("compare", "-q", *small), repeat=rounds)
    bare = startup_seconds(("compare", "-q", "--no-report", *small), repeat=rounds)
    report = report_seconds(rounds=rounds, extra=small)
    print(f"\n1. The default `actlab compare` end to end (fresh processes, median of {rounds})")
    print(f"   wall time          : {full['wall']:5.2f} s with the report, {bare['wall']:5.2f} s with --no-report")
    print(f"   start-up           : first training step at {full['first_step']:.2f} s = torch's import "
          f"{full['torch_import']:.2f} s + {full['first_step_without_torch']:.2f} s of actlab's own")
    print(f"   training           : {full['wall'] - full['first_step'] - full['after_training']:.2f} s wall "
          f"(two workers)")
    print(f"   after training     : {bare['after_training']:.2f} s without the report (results into the folder, "
          f"statistics), {full['after_training']:.2f} s with it")
    print(f"   report alone       : statistics {report['statistics']:.2f} s, write_report {report['report']:.2f} s "
          f"wall ({report['report_cpu']:.2f} s CPU + {report['report_children_cpu']:.2f} s in its drawing processes)")
    return {"compare": full["wall"], "compare_bare": bare["wall"], "first_step": full["first_step"],
            "first_step_own": full["first_step_without_torch"], "report": report["report"],
            "after_training": full["after_training"]}


def per_run(epochs: int, seeds: int, loop_seeds: int) -> dict[str, float]:
    """Part 2: the same comparison (10 activations) in both engines, one process, one thread."""
    steps = epochs * 10  # 100 samples in batches of 10
    loop_specs = [RunSpec(a, s, 1e-3) for a in TEN for s in range(loop_seeds)]
    batched_specs = [RunSpec(a, s, 1e-3) for a in TEN for s in range(seeds)]
    t_loop, loop_results = timed(loop_specs, "loop", epochs)
    t_batched, batched_results = timed(batched_specs, "batched", epochs)
    ms_loop = 1e3 * t_loop / len(loop_specs)
    ms_batched = 1e3 * t_batched / len(batched_specs)
    print("\n2. The same comparison (10 activations), both engines, one process, one thread")
    print(f"   loop    : {len(loop_specs):4d} runs in {t_loop:7.2f} s = {ms_loop:8.2f} ms per run "
          f"({1e3 * ms_loop / steps:.0f} us per step)")
    print(f"   batched : {len(batched_specs):4d} runs in {t_batched:7.2f} s = {ms_batched:8.2f} ms per run "
          f"({1e3 * ms_batched / steps:.1f} us per model-step)")
    print(f"   ratio   : batched is {ms_loop / ms_batched:.0f}x faster per run")
    by_id = {r.spec.run_id: r for r in batched_results}
    print("   equivalence on the runs both trained:")
    for name in TEN:
        pairs = [(r, by_id[r.spec.run_id]) for r in loop_results if r.spec.activation == name]
        same = all(torch.equal(a.state[k], b.state[k]) for a, b in pairs for k in a.state)
        dev = max(abs(a.history["full_loss"][-1] - b.history["full_loss"][-1]) / a.history["full_loss"][-1]
                  for a, b in pairs)
        print(f"     {name:11s} " + ("bitwise equal (every weight)" if same else
                                     f"not bitwise: final loss differs by up to {dev:.1e} (relative)"))
    return {"per_run": ms_loop / ms_batched, "n_per_run": len(batched_specs)}


def scaling(quick: bool) -> dict[str, float]:
    """Part 3: whole training (diagnostics included) per model-step as the stack grows, relu and the default mix."""
    epochs = 3 if quick else 30
    sizes = [1, 16, 128] if quick else [1, 16, 128, 1024, 4096]
    print(f"\n3. Batched engine scaling ({epochs} epochs, diagnostics on their default schedule; microseconds per "
          "model-step = wall time / (runs x steps))")
    print(f"   {'N':>6}  {'workers':>7}  {'seconds':>8}  {'us/model-step':>13}")
    per_step = {}
    for n in sizes:
        for workers in ([1, 2] if n >= 128 else [1]):
            seconds, _ = timed([RunSpec("relu", s, 1e-3) for s in range(n)], "batched", epochs, workers=workers)
            per_step[n, workers] = 1e6 * seconds / (n * epochs * 10)
            print(f"   {n:6d}  {workers:7d}  {seconds:8.2f}  {per_step[n, workers]:13.2f}")
    specs = [RunSpec(a, s, 1e-3) for a in activations.names() for s in range(10)]
    for workers in (1, 2):
        seconds, _ = timed(specs, "batched", epochs, workers=workers)
        print(f"   {len(specs):6d}  {workers:7d}  {seconds:8.2f}  {1e6 * seconds / (len(specs) * epochs * 10):13.2f}"
              "   (every registry activation x 10 seeds: the default compare)")
    n = 1024 if (1024, 1) in per_step else max(n for n, _ in per_step)  # part 4 times its matmuls at N=1024
    return {"model_step": per_step[n, 1], "model_step_n": n}


def targets(found: dict[str, float]) -> None:
    """The issue's targets against what this run measured."""
    rows = [
        ("default compare, report included", "<= 5 s", f"{found['compare']:.2f} s", found["compare"] <= 5),
        ("start-up to the first training step", "<= 0.5 s",
         f"{found['first_step']:.2f} s ({found['first_step_own']:.2f} s without torch's import)",
         found["first_step"] <= 0.5),
        ("report of the default compare", "<= 1 s", f"{found['report']:.2f} s", found["report"] <= 1),
        ("mixed / single-activation stack", "<= 1.3x", f"{found['mix230']:.2f}x (N=230), {found['mix120']:.2f}x "
         f"(N=120) against relu; against the same activations' own stacks {found['mixing230']:.2f}x, "
         f"{found['mixing120']:.2f}x", max(found["mix230"], found["mix120"]) <= 1.3),
        ("diagnostics / training", "<= 20%", f"{100 * found['diagnostics']:.0f}%", found["diagnostics"] <= 0.2),
        (f"batched vs loop per run (N={found['n_per_run']:.0f})", ">= 100x", f"{found['per_run']:.0f}x",
         found["per_run"] >= 100),
        (f"per model-step, N={found['model_step_n']:.0f}, one core", "<= 3 us",
         f"{found['model_step']:.2f} us (its matmuls alone {found['matmul_floor']:.2f} us)", found["model_step"] <= 3),
    ]
    print("\nTargets (issue 13)")
    for what, target, measured, met in rows:
        print(f"   {what:38s} {target:>9s}  {'met    ' if met else 'not met'}  {measured}")


def _stack(specs, batch: int = 10):
    """A stack of ``specs``, its Adam, and a random mini-batch (N, batch, in), (N, batch, 1)."""
    from actlab.engines.stacked import Stack

    stack = Stack(specs, SIZES, torch.device("cpu"))
    adam = flat_optim.make(stack, [spec.lr for spec in specs], TrainSettings(epochs=1, batch_size=batch))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(len(specs), batch, SIZES[0], generator=gen), torch.randn(len(specs), batch, 1, generator=gen)
    return stack, adam, x, y


def step_fn(specs, autograd: bool = False):
    """One training step (forward, backward, Adam) of one stack of ``specs``, diagnostics aside: the engine's
    hand-written step (``engines/step.py``), or ``autograd``: the same arithmetic through autograd (before)."""
    from actlab.engines.stacked import StackedMSE
    from actlab.engines.step import Step

    stack, adam, x, y = _stack(specs)
    if autograd:
        def step() -> None:
            losses = StackedMSE.apply(stack.forward(x), y)
            grads = torch.autograd.grad(losses.sum(), stack.leaves)
            adam.step(torch.cat([g.reshape(-1) for g in grads], out=adam.grad))

        return step
    hand = Step(stack, x.shape[1], adam.grad)

    def step() -> None:
        hand(x, y)
        adam.step(adam.grad)

    return step


def matmul_fn(n_runs: int, batch: int = 10):
    """The step's batched matmuls alone, same shapes (forward, weight and input gradients): the floor."""
    gen = torch.Generator().manual_seed(0)
    layers = [(torch.randn(n_runs, batch, fan_in, generator=gen), torch.randn(n_runs, fan_out, fan_in, generator=gen),
               torch.randn(n_runs, 1, fan_out, generator=gen), torch.randn(n_runs, batch, fan_out, generator=gen))
              for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:])]

    def matmuls() -> None:
        for i, (h, w, b, g) in enumerate(layers):
            torch.baddbmm(b, h, w.transpose(1, 2))
            torch.bmm(g.transpose(1, 2), h)
            if i:
                torch.bmm(g, w)

    return matmuls


def cpu_time(fns: dict, steps: int = 100, rounds: int = 3) -> dict:
    """CPU seconds per call of each function (best of ``rounds``, the functions alternating): CPU time, not
    wall time, so that other jobs on a shared machine weigh less."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(10):
                fn()
            start = time.thread_time()
            for _ in range(steps):
                fn()
            best[name] = min(best[name], (time.thread_time() - start) / steps)
    return best


def stacking(quick: bool = False) -> dict[str, float]:
    """Part 4: one training step of a stack that mixes activations against one of a single activation (relu,
    and the mean of the same activations' own stacks: what mixing itself costs), the hand-written step
    against autograd, how far the per-model-step time is from the matmul floor, and each activation's
    kernel costs (the batched engine's chunk cut)."""
    torch.set_num_threads(1)
    names = activations.names()
    stacks = {
        "relu x 230": [RunSpec("relu", s, 1e-3) for s in range(230)],
        "23 activations x 10": [RunSpec(a, s, 1e-3) for a in names for s in range(10)],
        "relu x 120": [RunSpec("relu", s, 1e-3) for s in range(120)],
        "12 activations x 10": [RunSpec(a, s, 1e-3) for a in names[:12] for s in range(10)],
        "relu x 1024": [RunSpec("relu", s, 1e-3) for s in range(1024)],
    }
    fns = {(label, how): step_fn(specs, autograd=how == "autograd")
           for label, specs in stacks.items() for how in ("by hand", "autograd")}
    fns["matmuls", "x 1024"] = matmul_fn(1024)
    t = cpu_time(fns, steps=10 if quick else 100)
    print("\n4. One training step (forward, backward, Adam; CPU ms, best of 3, alternating), by hand / autograd:")
    for label in stacks:
        hand, auto = t[label, "by hand"], t[label, "autograd"]
        print(f"   {label:20s} {1e3 * hand:6.2f} / {1e3 * auto:6.2f} ms  (x{auto / hand:.2f})")
    mix230 = t["23 activations x 10", "by hand"] / t["relu x 230", "by hand"]
    mix120 = t["12 activations x 10", "by hand"] / t["relu x 120", "by hand"]
    before = (t["23 activations x 10", "autograd"] / t["relu x 230", "autograd"],
              t["12 activations x 10", "autograd"] / t["relu x 120", "autograd"])
    print(f"   mixed / single activation: {mix230:.2f} at N=230, {mix120:.2f} at N=120 "
          f"(autograd: {before[0]:.2f}, {before[1]:.2f})")
    separate = cpu_time({a: step_fn([RunSpec(a, s, 1e-3) for s in range(10)]) for a in names},
                        steps=10 if quick else 100)
    print(f"   {len(names)} activations x 10 as {len(names)} stacks of 10 runs: {1e3 * sum(separate.values()):.2f} ms "
          f"(one mixed stack: {1e3 * t['23 activations x 10', 'by hand']:.2f} ms)")
    mixing = {n: mixing_cost(names[:k], n, quick) for k, n in ((len(names), 230), (12, 120))}
    row_wise(quick)
    group_costs(quick)
    per_run = 1e6 * t["relu x 1024", "by hand"] / 1024
    floor = 1e6 * t["matmuls", "x 1024"] / 1024
    print(f"   relu x 1024: {per_run:.2f} us per model-step; its batched matmuls alone {floor:.2f} us "
          f"({100 * floor / per_run:.0f}%): ~35 kFLOP at {35e3 / floor / 1e3:.1f} GFLOP/s")
    return {"mix230": mix230, "mix120": mix120, "matmul_floor": floor, "step_1024": per_run,
            "mixing230": mixing[230], "mixing120": mixing[120]}


def mixing_cost(names: Sequence[str], n_runs: int, quick: bool) -> float:
    """What mixing itself costs: one step of a stack of ``names`` x (n_runs / len(names)) runs against the
    mean of the same activations' single-activation stacks of n_runs runs each (each activation at its own
    cost, mixed or not), CPU time, alternating; printed, and the ratio returned."""
    per = n_runs // len(names)
    fns = {"mixed": step_fn([RunSpec(a, s, 1e-3) for a in names for s in range(per)])}
    fns |= {a: step_fn([RunSpec(a, s, 1e-3) for s in range(per * len(names))]) for a in names}
    t = cpu_time(fns, steps=10 if quick else 100)
    mean = sum(t[a] for a in names) / len(names)
    slowest = max(names, key=t.get)
    print(f"   mixing itself, N={per * len(names)}: {len(names)} activations x {per} in one stack "
          f"{1e3 * t['mixed']:.2f} ms, the mean of their single-activation stacks of {per * len(names)} "
          f"{1e3 * mean:.2f} ms (relu {1e3 * t['relu']:.2f}, slowest {slowest} {1e3 * t[slowest]:.2f}): "
          f"x{t['mixed'] / mean:.2f}")
    return t["mixed"] / mean


def group_costs(quick: bool) -> None:
    """The costs behind the batched engine's cut (engines/batched.py, GROUP_COSTS): each activation's kernels
    in a mixed stack (every activation x 10 runs, then x 40), in the training step and (per step: a tenth
    of it) the per-epoch loss pass, CPU microseconds per step; the two sizes give a cost per group and one
    per run."""
    from collections import Counter

    from actlab.engines.stacked import Stack
    from actlab.engines.step import Forward, Step

    names, data = activations.names(), make_dataset("noise", 100, 0)
    spent: dict[tuple[str, int], float] = {}
    for per in (10, 40):
        specs = [RunSpec(a, s, 1e-3) for a in names for s in range(per)]
        stack = Stack(specs, SIZES, torch.device("cpu"))
        adam = flat_optim.make(stack, [1e-3] * len(specs), TrainSettings(epochs=1, batch_size=10))
        x, y = (t.expand(len(specs), *t.shape)[:, :10] for t in (data.x_train, data.y_train))
        step, forward, clock = Step(stack, 10, adam.grad), Forward(stack), Counter()
        for layers in (step.acts, forward.acts):
            for layer in layers:
                for i, bound in enumerate(layer):
                    layer[i] = (_Timed(bound[0], names[i], clock), *bound[1:])
        steps: dict[str, list[float]] = {a: [] for a in names}  # per step, then per loss pass
        passes: dict[str, list[float]] = {a: [] for a in names}
        for _ in range(4 if quick else 23):  # epochs: the first 3 warm up
            for _ in range(10):
                clock.clear()
                step(x, y)
                adam.step(adam.grad)
                for a in names:
                    steps[a].append(clock[a])
            clock.clear()
            forward(data.x_train)
            for a in names:
                passes[a].append(clock[a])
        # medians, past the 3 warm-up epochs: a shared machine's other jobs make the odd call far slower
        spent |= {(a, per): statistics.median(steps[a][30:]) + 0.1 * statistics.median(passes[a][3:])
                  for a in names}
    print("   each activation's kernels in a mixed stack, CPU us per step (the step, and a tenth of the loss pass):"
          "\n   activation     x10     x40  per run  per group")
    for a in names:
        per_run = (spent[a, 40] - spent[a, 10]) / 30
        print(f"   {a:12s} {1e6 * spent[a, 10]:6.1f}  {1e6 * spent[a, 40]:6.1f}  {1e6 * per_run:7.2f}  "
              f"{1e6 * (spent[a, 10] - 10 * per_run):8.1f}")


class _Timed:
    """A kernel whose calls add their CPU time to ``clock[name]``."""

    def __init__(self, kernel, name: str, clock) -> None:
        self.kernel, self.name, self.clock = kernel, name, clock

    def _timed(self, method: str, share: float, *args) -> None:
        start = time.thread_time()
        getattr(self.kernel, method)(*args)
        self.clock[self.name] += share * (time.thread_time() - start)

    def forward(self, *args) -> None:
        self._timed("forward", 1.0, *args)

    def backward(self, *args) -> None:
        self._timed("backward", 1.0, *args)

    def value(self, *args) -> None:
        self._timed("value", 1.0, *args)


def row_wise(quick: bool) -> None:
    """What laying each run out as a row of its own costs the step: the 7 exp-based activations x 10 seeds,
    the step's activation buffers in padded rows (bitwise) or contiguous (not bitwise)."""
    from actlab.engines import kernels
    from actlab.engines.stacked import ROW_WISE

    specs = [RunSpec(a, s, 1e-3) for a in sorted(ROW_WISE) for s in range(10)]
    padded = kernels.padded
    fns = {"rows": step_fn(specs)}
    kernels.padded = lambda n, batch, width, device: torch.empty(n, batch, width, device=device)
    try:
        fns["contiguous"] = step_fn(specs)  # the buffers are made when the step is built
    finally:
        kernels.padded = padded
    t = cpu_time(fns, steps=10 if quick else 100)
    print(f"   the {len(ROW_WISE)} exp-based activations x 10 seeds, one step: row by row (bitwise) "
          f"{1e3 * t['rows']:.2f} ms, contiguous {1e3 * t['contiguous']:.2f} ms: x{t['rows'] / t['contiguous']:.2f}")


def diagnostics_share(epochs: int = 150, rounds: int = 3) -> dict[str, float]:
    """Part 5: what the per-epoch diagnostics cost, time(default) / time(train.diagnostics=false) - 1, for
    the default compare's stack (every activation x 10 seeds) and the half of it one of two workers gets, at
    one thread in this process, alternating with and without (CPU time: the machine may be shared); the
    median over ``rounds``. Losses are logged every epoch either way; the gradient norms and unit states at
    the epochs of train.diagnostics_dense (default 10: 31 of 151 epochs), and also every epoch (dense 0)."""
    torch.set_num_threads(1)
    data = make_dataset("noise", 100, 0)
    names = activations.names()
    half = names[: (len(names) + 1) // 2]
    stacks = {f"{len(names)} activations x 10 seeds": [RunSpec(a, s, 1e-3) for a in names for s in range(10)],
              f"{len(half)} x 10 (one worker's)": [RunSpec(a, s, 1e-3) for a in half for s in range(10)]}
    modes = {"default": {}, "every epoch": {"diagnostics_dense": 0}, "off": {"diagnostics": False}}

    def cpu_seconds(specs, options) -> float:
        settings = TrainSettings(epochs=epochs, batch_size=10, **options)
        start = time.process_time()
        for _ in train(specs, data, SIZES, settings, workers=1):
            pass
        return time.process_time() - start

    print(f"\n5. The diagnostics' share of training: time / time(train.diagnostics=false) - 1, {epochs} epochs, one "
          f"thread, CPU time, median of {rounds} alternating rounds")
    shares = {}
    for label, specs in stacks.items():
        cpu_seconds(specs[:10], modes["default"])  # warm-up
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(rounds):
            for mode, options in modes.items():
                times[mode].append(cpu_seconds(specs, options))
        ratios = {mode: sorted(a / b - 1 for a, b in zip(times[mode], times["off"])) for mode in modes}
        shares[label] = ratios["default"][rounds // 2]
        spread = lambda r: f"{100 * r[rounds // 2]:5.1f}% ({100 * r[0]:.1f} to {100 * r[-1]:.1f})"  # noqa: E731
        print(f"   {label:28s}: default schedule {spread(ratios['default'])}, every epoch "
              f"{spread(ratios['every epoch'])}; losses only {sorted(times['off'])[rounds // 2]:.2f} s")
    return shares


def default_compare(epochs: int) -> None:
    """(Subprocess of part 6.) Train the default comparison (every activation x 10 seeds, batched, one
    process); print JSON: CPU seconds, every run's final loss, and the kernel setup."""
    specs = [RunSpec(a, s, 1e-3) for a in activations.names() for s in range(10)]
    data = make_dataset("noise", 100, 0)
    start = time.process_time()
    results = [r for chunk in train(specs, data, SIZES, TrainSettings(epochs=epochs, batch_size=10), workers=1)
               for r in chunk]
    print(json.dumps({"seconds": time.process_time() - start, "setup": probe.kernel_setup(),
                      "final": {r.spec.run_id: r.history["full_loss"][-1] for r in results}}))


def _child(epochs: int, pinned: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    env["ACTLAB_PIN_CPU"] = "1" if pinned else "0"
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(epochs)], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def pinning(epochs: int, rounds: int = 2) -> None:
    """Part 6: the default comparison with and without actlab's CPU pinning, in alternating subprocesses."""
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for _ in range(rounds):
        for pinned in (True, False):
            runs[pinned].append(_child(epochs, pinned))
    cpu = {pinned: sum(r["seconds"] for r in rs) / len(rs) for pinned, rs in runs.items()}
    on, off = runs[True][0], runs[False][0]
    print(f"\n6. CPU pinning, default comparison ({len(on['final'])} runs, {epochs} epochs, batched, one process)")
    for pinned in (True, False):
        s = runs[pinned][0]["setup"]
        print(f"   {'pinned  ' if pinned else 'unpinned'}: ATen {s['cpu_capability']}, MKL_CBWR={s['mkl_cbwr']}, "
              f"oneDNN ISA {s['onednn_max_cpu_isa'] or 'auto'}: {cpu[pinned]:6.2f} s CPU (mean of {rounds})")
    print(f"   cost    : pinned / unpinned = {cpu[True] / cpu[False]:.2f}")
    print("   same runs, pinned vs unpinned code paths (final loss, max relative difference over 10 seeds):")
    for name in activations.names():
        ids = [k for k in on["final"] if k.split("/")[0] == name]
        same = sum(on["final"][k] == off["final"][k] for k in ids)
        dev = max(abs(on["final"][k] - off["final"][k]) / abs(on["final"][k]) for k in ids)
        print(f"     {name:11s} {same:2d}/{len(ids)} bitwise equal, up to {dev:.1e}")


# The child of ``startup_seconds``: ``python -c`` this, then actlab's own command line. Import hooks (no change
# to what is imported, or when) time torch's import and stamp, as JSON lines in the file $STAMPS, the engine's
# first training step in each process (the first call of the stacked epoch loop's ``_epoch``), the end of its
# training (``_results``), and every folder write of the main process (``storage.ExperimentWriter``).
_STARTUP_CHILD = r"""
import importlib.abc, importlib.machinery, json, os, runpy, sys, time
MAIN = os.getpid()
def stamp(what, **values):
    with open(os.environ["STAMPS"], "a") as f:
        f.write(json.dumps({"what": what, "pid": os.getpid(), "main": os.getpid() == MAIN, **values}) + "\n")
def timed(what, fn, once=False):
    done = set()
    def wrapper(*args, **kwargs):
        first = os.getpid() not in done
        done.add(os.getpid())
        start = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            if first or not once:
                stamp(what, start=start, end=time.time())
    return wrapper
def patch(module):
    if module.__name__ == "actlab.engines.stacked":
        module._epoch = timed("first_step", module._epoch, once=True)
        module._results = timed("trained", module._results)
    elif module.__name__ == "actlab.storage":
        writer = module.ExperimentWriter
        create = writer.create.__func__
        writer.create = classmethod(timed("folder_create", lambda cls, *a, **k: create(cls, *a, **k)))
        writer.add, writer.finish = timed("folder_results", writer.add), timed("folder_finish", writer.finish)
        module.write_stats = timed("folder_stats", module.write_stats)
class Hooks(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in ("torch", "actlab.engines.stacked", "actlab.storage"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        def exec_module(module):
            start = time.time()
            run(module)
            stamp("import " + name, start=start, end=time.time())
            patch(module)
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Hooks())
sys.argv = ["actlab", *sys.argv[1:]]
runpy.run_module("actlab", run_name="__main__", alter_sys=True)
"""


def _startup_once(args: list[str], env: dict[str, str], folder: Path) -> dict[str, float]:
    """One ``actlab`` command in a fresh process, timed by ``_STARTUP_CHILD``'s stamps (seconds)."""
    stamps = folder / "stamps.jsonl"
    stamps.unlink(missing_ok=True)
    start = time.time()
    subprocess.run([sys.executable, "-c", _STARTUP_CHILD, *args], env={**env, "STAMPS": str(stamps)}, check=True,
                   stdout=subprocess.DEVNULL)
    end = time.time()
    rows = [json.loads(line) for line in stamps.read_text().splitlines()]
    of = lambda what: [r for r in rows if r["what"] == what]  # noqa: E731
    first = min(r["start"] for r in of("first_step")) - start
    torch_import = sum(r["end"] - r["start"] for r in of("import torch") if r["main"])
    trained = max(r["end"] for r in of("trained"))
    spent = {what: sum(r["end"] - r["start"] for r in of(what) if r["main"])
             for what in ("folder_create", "folder_results", "folder_finish", "folder_stats")}
    return {"first_step": first, "torch_import": torch_import, "first_step_without_torch": first - torch_import,
            **spent, "after_training": end - trained, "wall": end - start}


def startup_seconds(args: Sequence[str] = ("compare", "-q", "--no-report"), repeat: int = 3,
                    root: str | Path | None = None) -> dict[str, float]:
    """The default ``actlab compare`` (``args``) in ``repeat`` fresh processes, each figure the median (s):
    ``first_step`` (process start to the engine's first training step, the earliest of its workers),
    ``torch_import`` (torch's import in that process, a floor no actlab code removes),
    ``first_step_without_torch``; the main process writing the experiment folder: ``folder_create``
    (config.yaml, env.json with the engines' start-up probe, metrics.csv's header), ``folder_results``
    (metrics rows and summaries as chunks arrive), ``folder_finish`` (weights.pt, metrics.csv in plan order,
    status), ``folder_stats`` (stats.csv/json); ``after_training`` (from the last worker's end of training to
    the process's exit) and ``wall``. ``root``: the actlab source tree to time (default: this one)."""
    import statistics
    import tempfile

    tree = Path(root) if root else Path(__file__).resolve().parents[1]
    compiled(tree)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    found: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            found.append(_startup_once([*args, "--out", str(Path(tmp) / f"runs{i}")], env, Path(tmp)))
    return {key: statistics.median(f[key] for f in found) for key in found[0]}


def compiled(tree: Path) -> None:
    """actlab's bytecode compiled in ``tree``, as an installed package has it: under PYTHONDONTWRITEBYTECODE=1
    (set on some machines) every fresh process would compile actlab's modules again, about 0.1 s of CPU that a
    user's second run does not pay."""
    import compileall

    compileall.compile_dir(str(tree / "actlab"), quiet=1)


# --- the report: statistics, figures, report.md/html of the default compare --------------------------------

_REPORT_CHILD = """
import json, os, sys, tempfile, time
from pathlib import Path
start = time.perf_counter()
from actlab import analysis, stats, storage, workflow  # what compare has imported when training ends
imported = time.perf_counter()
folder = Path(sys.argv[1])
stored = storage.load_experiment(folder)
stored.metrics()  # compare hands metrics.csv over in memory: reading it back is not part of its statistics
t0, c0 = time.perf_counter(), time.process_time()
reference = analysis.task_reference(stored.config)
ranked = stats.summarise(stored.summary, stored.curves(), reference=reference)
with tempfile.TemporaryDirectory() as scratch:
    storage.write_stats(Path(scratch), stats.rows(*ranked, reference))
t1, c1 = time.perf_counter(), time.process_time()
before = os.times()
workflow.write_report(folder)
t2, after = time.perf_counter(), os.times()
print(json.dumps({"imports": imported - start, "statistics": t1 - t0, "statistics_cpu": c1 - c0,
                  "report": t2 - t1, "report_cpu": after.user + after.system - before.user - before.system,
                  "report_children_cpu": after.children_user + after.children_system
                  - before.children_user - before.children_system}))
"""


def report_seconds(folder: Path | None = None, rounds: int = 3, extra: Sequence[str] = ()) -> dict[str, float]:
    """Seconds of what follows training in the default ``actlab compare``, each round in a fresh process
    (so the imports of matplotlib and the rest count): the statistics over seeds (``stats.summarise`` and
    stats.csv/json, as ``run_compare`` computes them) and ``workflow.write_report`` on the folder (figures,
    claims, report.md/html; it also reads metrics.csv and weights.pt back). ``folder``: a default-compare
    folder; None: one is trained first (``actlab compare --no-report``, about 15 s). Medians over ``rounds``."""
    import statistics
    import tempfile

    scratch = None
    if folder is None:
        scratch = tempfile.TemporaryDirectory()
        subprocess.run([sys.executable, "-m", "actlab", "compare", "-q", "--no-report", *extra, "--out", scratch.name],
                       check=True, capture_output=True)
        folder = next(p for p in Path(scratch.name).iterdir() if p.is_dir())
    try:
        runs = []
        for _ in range(rounds):
            out = subprocess.run([sys.executable, "-c", _REPORT_CHILD, str(folder)], check=True,
                                 capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        if scratch is not None:
            scratch.cleanup()
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def report_part(folder: Path | None = None, rounds: int = 3) -> None:
    """Print ``report_seconds``."""
    r = report_seconds(folder, rounds)
    print(f"\nThe report of the default compare (fresh process each, median of {rounds}): statistics "
          f"{r['statistics']:.2f} s ({r['statistics_cpu']:.2f} s CPU); write_report {r['report']:.2f} s wall "
          f"({r['report_cpu']:.2f} s CPU here + {r['report_children_cpu']:.2f} s in its drawing processes), "
          f"after {r['imports']:.2f} s of actlab's imports")


if __name__ == "__main__":
    main()
