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


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few chunks, one round: check that the script runs")
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2, help="worker processes / Ray CPUs")
    args = parser.parse_args()
    n, rounds = (8, 1) if args.quick else (args.chunks, args.rounds)
    tasks = tiny_chunks(n)
    count = 0

    def progress(k: int, _measures) -> None:
        nonlocal count
        count += k

    with one_thread():
        serial = timed(lambda: [train_chunk(t) for t in tasks])
        start = timed(lambda: ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                                       logging_level="error"))
        first = timed(lambda: list(ray_executor.run(tasks, workers=args.cpus, progress=progress)))
        local_times, ray_times = [], []
        for _ in range(rounds):
            local_times.append(timed(lambda: list(local.run(tasks, workers=args.cpus, progress=progress))))
            ray_times.append(timed(lambda: list(ray_executor.run(tasks, workers=args.cpus, progress=progress))))
        ray.shutdown()
    t_local, t_ray = statistics.median(local_times), statistics.median(ray_times)
    ms = lambda seconds: f"{1000 * seconds / n:.1f} ms"  # per chunk
    print(f"{n} chunks of 2 runs x 5 epochs, {args.cpus} CPUs, median of {rounds} round(s)")
    print(f"  training alone, in this process:   {ms(serial)} per chunk (one CPU)")
    print(f"  local executor ({args.cpus} processes):    {ms(t_local)} per chunk of wall time")
    print(f"  ray executor ({args.cpus} CPUs):           {ms(t_ray)} per chunk of wall time")
    print(f"  ray - local:                       {ms(t_ray - t_local)} per chunk; ray / local = {t_ray / t_local:.1f}x")
    print(f"  once per command: Ray start-up {start:.1f} s; first round (workers start) {first:.1f} s")
    print(f"  progress reported: {count} run-epochs (expected {len(tasks) * 2 * 5 * (2 * rounds + 1)})")


if __name__ == "__main__":
    main()
