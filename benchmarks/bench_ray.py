"""What the Ray executor costs per chunk: N tiny chunks through the local executor and through Ray, in one process.

    python benchmarks/bench_ray.py              # about a minute on a 2-core machine
    python benchmarks/bench_ray.py --quick      # a smoke run

The chunks are tiny on purpose (2 runs x 5 epochs of the article's net, a few milliseconds of training), so
the difference between the two executors is their overhead: shipping a task and its data, running it in a
worker, sending back the result and the progress. Both executors get the same CPUs (``--cpus``) and run
back to back, alternating, ``--rounds`` times; the medians are printed. Ray's start-up (once per command
on a local runtime) and its first round (its workers start and import torch) are printed apart. Timings
on a shared machine are noisy: read the differences and ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

import ray

from actlab import config, experiment
from actlab.engines.common import TrainSettings, one_thread
from actlab.engines.executors import local
from actlab.engines.executors import ray as ray_executor
from actlab.engines.stacked import ChunkTask, train_chunk


def tiny_chunks(n: int, runs: int = 2, epochs: int = 5) -> list[ChunkTask]:
    """``n`` chunks of ``runs`` relu runs (the article's data and net) for ``epochs`` epochs each."""
    cfg = config.build_config({"train": {"epochs": epochs}, "compare": {"activations": ["relu"], "seeds": n * runs}})
    specs, data = experiment.compare_specs(cfg), experiment.dataset(cfg)
    settings = TrainSettings(epochs=epochs, batch_size=10)
    return [ChunkTask(i, tuple(specs[i * runs:(i + 1) * runs]), data, tuple(cfg.model.sizes), settings)
            for i in range(n)]


def timed(fn, *args, **kwargs) -> float:
    """Seconds ``fn(*args, **kwargs)`` takes, its result consumed (an executor's results are an iterator)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    if isinstance(result, Iterator):
        list(result)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few chunks, one round: check that the script runs")
    parser.add_argument("--chunks", type=int, default=16, help="the small batch; the large one has 4x as many")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2, help="worker processes / Ray CPUs")
    args = parser.parse_args()
    n, rounds = (4, 1) if args.quick else (args.chunks, args.rounds)
    small, large = tiny_chunks(n), tiny_chunks(4 * n)
    executors = {"local": local.run, "ray": ray_executor.run}
    with one_thread():
        serial = timed(lambda: [train_chunk(t) for t in large]) / len(large)
        start = timed(ray.init, address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                      logging_level="error")
        first = timed(ray_executor.run, small, workers=args.cpus, progress=None)
        times: dict[tuple[str, int], list[float]] = {}
        for _ in range(rounds):  # alternating, so that both see the same load on a shared machine
            for name, run in executors.items():
                for tasks in (small, large):
                    seconds = timed(run, tasks, workers=args.cpus, progress=lambda k, m: None)
                    times.setdefault((name, len(tasks)), []).append(seconds)
        ray.shutdown()
    median = {key: statistics.median(values) for key, values in times.items()}
    # per chunk: the slope between the two sizes; per command: what is left at zero chunks
    slope = {name: (median[name, 4 * n] - median[name, n]) / (3 * n) for name in executors}
    fixed = {name: median[name, n] - n * slope[name] for name in executors}
    print(f"chunks of 2 runs x 5 epochs (article net), {n} and {4 * n} of them, {args.cpus} CPUs, "
          f"median of {rounds} round(s)")
    print(f"  training alone, in this process: {1000 * serial:.1f} ms per chunk (one CPU)")
    for name in executors:
        print(f"  {name:>5} executor: {1000 * slope[name]:.1f} ms per chunk of wall time, "
              f"{fixed[name]:.2f} s per command")
    print(f"  ray - local: {1000 * (slope['ray'] - slope['local']):+.1f} ms per chunk "
          f"(ray / local = {slope['ray'] / slope['local']:.2f}x), {fixed['ray'] - fixed['local']:+.2f} s per command")
    print(f"  once per command on a new local runtime: Ray start-up {start:.1f} s, "
          f"first tasks (workers start and import torch) {first:.1f} s")


if __name__ == "__main__":
    main()
