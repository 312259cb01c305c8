"""Loop engine vs batched engine on the article's setup, in one process; then the batched engine's scaling;
then what actlab's CPU pinning costs and what it changes.

    python benchmarks/bench_engines.py            # about three minutes on a 2-core machine
    python benchmarks/bench_engines.py --quick    # a smoke run (seconds)
    python benchmarks/bench_engines.py --report [FOLDER]   # only part 5: the report of the default compare

Timings on a shared machine are noisy: read the ratios, measured back to back, not the absolute numbers.
Both engines run at one thread in one process (workers=1) unless a row says otherwise. The pinning is
set before torch computes anything, so part 4 compares pinned and unpinned (ACTLAB_PIN_CPU=0) runs in
subprocesses, alternating, and reports CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
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
    parser.add_argument("--child", type=int, metavar="EPOCHS", help=argparse.SUPPRESS)  # part 4's subprocess
    parser.add_argument("--report", nargs="?", const="", metavar="FOLDER",
                        help="only part 5, the report's seconds (on FOLDER, a default-compare folder, if given)")
    args = parser.parse_args()
    if args.child:
        return default_compare(args.child)
    if args.report is not None:
        return report_part(Path(args.report) if args.report else None)
    epochs = 15 if args.quick else 150
    seeds = 2 if args.quick else 16
    steps = epochs * 10  # 100 samples in batches of 10
    setup = probe.kernel_setup()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available, {setup['cpu']}, ATen "
          f"{setup['cpu_capability']}, MKL_CBWR={setup['mkl_cbwr']}; article setup, {epochs} epochs = {steps} "
          "steps per run\n")

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
    pinning(epochs)
    if not args.quick:
        report_part()


def step_time(specs, steps: int = 200) -> float:
    """Seconds per training step (forward, backward, Adam) of one stack of ``specs``, diagnostics aside."""
    from actlab.engines.stacked import Stack, StackedMSE

    stack = Stack(specs, SIZES, torch.device("cpu"))
    adam = flat_optim.make(stack, [spec.lr for spec in specs], TrainSettings(epochs=1, batch_size=10))
    x, y = torch.randn(len(specs), 10, 10), torch.randn(len(specs), 10, 1)

    def step() -> None:
        losses = StackedMSE.apply(stack.forward(x), y)
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
    from actlab.engines import stacked as batched  # ROW_WISE is read when a stack is built

    exp_based = [RunSpec(a, s, 1e-3) for a in sorted(batched.ROW_WISE) for s in range(10)]
    times: dict[bool, list[float]] = {True: [], False: []}
    row_wise = batched.ROW_WISE
    for _ in range(3):  # alternating, to share the machine's noise
        for rows in (True, False):
            batched.ROW_WISE = row_wise if rows else frozenset()
            times[rows].append(step_time(exp_based))
    batched.ROW_WISE = row_wise
    on, off = min(times[True]), min(times[False])
    print(f"   the {len(row_wise)} exp-based activations x 10 seeds, one step: row by row (bitwise) {1e3 * on:.2f} ms, "
          f"contiguous {1e3 * off:.2f} ms: x{on / off:.2f}")


def default_compare(epochs: int) -> None:
    """(Subprocess of part 4.) Train the default comparison (every activation x 10 seeds, batched, one
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
    """Part 4: the default comparison with and without actlab's CPU pinning, in alternating subprocesses."""
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for _ in range(rounds):
        for pinned in (True, False):
            runs[pinned].append(_child(epochs, pinned))
    cpu = {pinned: sum(r["seconds"] for r in rs) / len(rs) for pinned, rs in runs.items()}
    on, off = runs[True][0], runs[False][0]
    print(f"\n4. CPU pinning, default comparison ({len(on['final'])} runs, {epochs} epochs, batched, one process)")
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


def report_seconds(folder: Path | None = None, rounds: int = 3) -> dict[str, float]:
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
        subprocess.run([sys.executable, "-m", "actlab", "compare", "-q", "--no-report", "--out", scratch.name],
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
    print(f"\n5. The report of the default compare (fresh process each, median of {rounds}): statistics "
          f"{r['statistics']:.2f} s ({r['statistics_cpu']:.2f} s CPU); write_report {r['report']:.2f} s wall "
          f"({r['report_cpu']:.2f} s CPU here + {r['report_children_cpu']:.2f} s in its drawing processes), "
          f"after {r['imports']:.2f} s of actlab's imports")


if __name__ == "__main__":
    main()
