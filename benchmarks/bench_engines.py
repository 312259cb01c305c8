"""Loop engine vs batched engine on the article's setup, in one process; then the batched engine's scaling.

    python benchmarks/bench_engines.py            # about two minutes on a 2-core machine
    python benchmarks/bench_engines.py --quick    # a smoke run (seconds)

Timings on a shared machine are noisy: read the ratios, measured back to back in one process, not the
absolute numbers. Both engines run at one thread in one process (workers=1) unless a row says otherwise.
"""

from __future__ import annotations

import argparse
import time

import torch

from actlab import activations
from actlab.engines import RunSpec, train
from actlab.tasks import make_dataset

SIZES = (10, 18, 18, 4, 1)
TEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu"]


def timed(specs, engine, epochs, workers=1):
    """Seconds to train ``specs`` (article data, batches of 10 in order) and the results."""
    data = make_dataset("noise", 100, 0)
    start = time.perf_counter()
    results = [r for chunk in train(specs, data, SIZES, epochs=epochs, batch_size=10, shuffle=False,
                                    engine=engine, workers=workers) for r in chunk]
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    parser.add_argument("--loop-seeds", type=int, default=2, help="seeds per activation for the (slow) loop engine")
    args = parser.parse_args()
    epochs = 15 if args.quick else 150
    seeds = 2 if args.quick else 16
    steps = epochs * 10  # 100 samples in batches of 10
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available; article setup, "
          f"{epochs} epochs = {steps} steps per run\n")

    loop_specs = [RunSpec(a, s, 1e-3) for a in TEN for s in range(args.loop_seeds)]
    batched_specs = [RunSpec(a, s, 1e-3) for a in TEN for s in range(seeds)]
    t_loop, loop_results = timed(loop_specs, "loop", epochs)
    t_batched, batched_results = timed(batched_specs, "batched", epochs)
    ms_loop = 1e3 * t_loop / len(loop_specs)
    ms_batched = 1e3 * t_batched / len(batched_specs)
    print("1. The same comparison (10 activations), both engines, one process, one thread")
    print(f"   loop    : {len(loop_specs):4d} runs in {t_loop:7.2f} s = {ms_loop:8.2f} ms per run "
          f"({1e3 * ms_loop / steps:.0f} us per step)")
    print(f"   batched : {len(batched_specs):4d} runs in {t_batched:7.2f} s = {ms_batched:8.2f} ms per run")
    print(f"   ratio   : batched is {ms_loop / ms_batched:.0f}x faster per run\n")

    by_id = {r.spec.run_id: r for r in batched_results}
    print("   equivalence on the runs both trained (final full-data loss):")
    for name in TEN:
        devs = [abs(r.history["full_loss"][-1] - by_id[r.spec.run_id].history["full_loss"][-1])
                / r.history["full_loss"][-1] for r in loop_results if r.spec.activation == name]
        same = all(
            torch.equal(r.state[k], by_id[r.spec.run_id].state[k])
            for r in loop_results if r.spec.activation == name for k in r.state
        )
        print(f"     {name:11s} " + ("bitwise equal (every weight)" if same else
                                     f"not bitwise: final loss differs by up to {max(devs):.1e} (relative)"))

    print("\n2. Batched engine scaling (relu; microseconds per model-step = time / (runs x steps))")
    scale_epochs = 3 if args.quick else 30
    sizes = [1, 16, 128] if args.quick else [1, 16, 128, 1024, 8192]
    print(f"   {'N':>6}  {'workers':>7}  {'seconds':>8}  {'us/model-step':>13}")
    for n in sizes:
        for workers in ([1, 2] if n >= 128 else [1]):
            specs = [RunSpec("relu", s, 1e-3) for s in range(n)]
            seconds, _ = timed(specs, "batched", scale_epochs, workers=workers)
            print(f"   {n:6d}  {workers:7d}  {seconds:8.2f}  {1e6 * seconds / (n * scale_epochs * 10):13.2f}")
    n_all = len(activations.names()) * 10
    specs = [RunSpec(a, s, 1e-3) for a in activations.names() for s in range(10)]
    for workers in (1, 2):
        seconds, _ = timed(specs, "batched", scale_epochs, workers=workers)
        print(f"   {n_all:6d}  {workers:7d}  {seconds:8.2f}  {1e6 * seconds / (n_all * scale_epochs * 10):13.2f}"
              "   (every registry activation x 10 seeds: the default compare)")
    stacking()


def step_time(specs, steps: int = 200) -> float:
    """Seconds per training step (forward, backward, Adam) of one stack of ``specs``, diagnostics aside."""
    from actlab.engines.batched import _Adam, _Stack, _StackedMSE

    stack = _Stack(specs, SIZES, torch.device("cpu"))
    adam = _Adam(stack, [spec.lr for spec in specs])
    x, y = torch.randn(len(specs), 10, 10), torch.randn(len(specs), 10, 1)

    def step() -> None:
        losses = _StackedMSE.apply(stack.forward(x), y)
        grads = torch.autograd.grad(losses.sum(), stack.leaves)
        adam.step(torch.cat([g.reshape(-1) for g in grads], out=adam.grad))

    for _ in range(20):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def stacking() -> None:
    """Different activations: one mixed stack (each activation on its slice) or one stack per activation?"""
    torch.set_num_threads(1)
    names = activations.names()
    mixed = step_time([RunSpec(a, s, 1e-3) for a in names for s in range(10)])
    separate = sum(step_time([RunSpec(a, s, 1e-3) for s in range(10)]) for a in names)
    print(f"\n3. {len(names)} activations x 10 seeds, one training step: one mixed stack {1e3 * mixed:.2f} ms, "
          f"{len(names)} per-activation stacks {1e3 * separate:.2f} ms")


if __name__ == "__main__":
    main()
