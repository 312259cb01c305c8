"""The batched engine: runs grouped by activation, cut into chunks, each chunk trained as one stack
(``stacked.train_chunk``) on an executor (``executors``: local processes today); what cannot be stacked
goes to the loop engine. Results do not depend on the chunking, the executor or the number of workers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from actlab import activations
from actlab.engines import executors, loop, probe
from actlab.engines.common import Group, Progress, RunResult, RunSpec, TrainSettings, groups_of
from actlab.engines.stacked import ChunkTask, can_batch
from actlab.tasks import Dataset

if TYPE_CHECKING:
    from actlab.checkpoint import Checkpoints

MIN_RUNS_PER_WORKER = 8  # below this a worker process costs more than it saves

# What a stack's training costs, to cut chunks that finish together (workers that wait for the slowest chunk
# idle): per run and step, the part every run pays (matmuls, MSE, Adam, the per-epoch passes) and, per
# activation, (per group, per run) for its kernels in the step and the loss pass: CPU microseconds per
# training step of the article's net, measured in a mixed stack at one thread (benchmarks/bench_engines.py,
# part 4, prints them). A group pays its calls whatever its size: gelu (oneDNN's set-up), softmax (its
# autograd node), the kernels written here (prelu, softsign) and autograd on a custom activation cost most.
# Only the balance depends on these numbers, never a result.
RUN_COST = 8.0
GROUP_COSTS: dict[str, tuple[float, float]] = {
    "gelu": (220.0, 6.0), "prelu": (85.0, 10.0), "mish": (55.0, 9.0), "softsign": (75.0, 3.5),
    "softmax": (90.0, 5.0), "tanh": (30.0, 3.0), "elu": (40.0, 3.0), "selu": (30.0, 2.5), "celu": (30.0, 2.5),
    "softplus": (35.0, 3.5), "logsigmoid": (45.0, 4.0), "tanhshrink": (40.0, 4.0),
}
BUILTIN_COST = (30.0, 2.0)  # the other built-ins: one cheap kernel each way
CUSTOM_COST = (150.0, 10.0)  # autograd on the group (engines/kernels.py: Autograd)


def split(specs: Sequence[RunSpec], chunk_size: int, parts: int,
          groups: Mapping[Any, Group] | None = None) -> list[list[RunSpec]]:
    """Contiguous chunks of at most ``chunk_size`` runs, at least ``parts`` of them when there are enough
    runs, cut where the largest chunk's cost (``GROUP_COSTS``) is least; ``specs`` keep each activation's
    runs contiguous. ``groups``: the specs' resolved groups (``groups_of``), if known."""
    n_chunks = max(math.ceil(len(specs) / chunk_size), min(parts, len(specs) // MIN_RUNS_PER_WORKER), 1)
    groups = groups or groups_of(specs)
    runs: list[tuple[int, float, float]] = []  # contiguous runs of one group: (count, group cost, run cost)
    for i, spec in enumerate(specs):
        if i and spec.group_key == specs[i - 1].group_key:
            runs[-1] = (runs[-1][0] + 1, *runs[-1][1:])
        else:
            group_cost, run_cost = _cost(groups[spec.group_key])
            runs.append((1, group_cost, RUN_COST + run_cost))
    # the least largest chunk (to 0.1%) with groups cut anywhere, and with groups kept whole where they fit
    # in a chunk: whole groups unless that costs 5% more (a group cut in two pays its calls twice)
    limits = [_least(runs, n_chunks, chunk_size, whole) for whole in (False, True)]
    whole = limits[1] <= 1.05 * limits[0]
    sizes, start = _cut(runs, limits[whole], chunk_size, whole), 0
    chunks = []
    for size in sizes:
        chunks.append(list(specs[start : start + size]))
        start += size
    return chunks


def _cost(group: Group) -> tuple[float, float]:
    """(per group, per run) of the group's activation in the step (``GROUP_COSTS``)."""
    if group.act not in activations.BUILTIN:
        return CUSTOM_COST
    return GROUP_COSTS.get(group.act.name, BUILTIN_COST)


def _least(runs: Sequence[tuple[int, float, float]], n_chunks: int, chunk_size: int, whole: bool) -> float:
    """The least limit (to 0.1%) at which ``_cut`` makes at most ``n_chunks`` chunks."""
    low, high = 0.0, sum(g + n * r for n, g, r in runs)  # a limit too low, one high enough
    while high - low > 1e-3 * high:
        middle = (low + high) / 2
        low, high = (low, middle) if len(_cut(runs, middle, chunk_size, whole)) <= n_chunks else (middle, high)
    return high


def _cut(runs: Sequence[tuple[int, float, float]], limit: float, chunk_size: int, whole: bool = False) -> list[int]:
    """Chunk sizes (in runs) filled in order up to ``limit`` and ``chunk_size`` (a chunk holds one run at
    least): a group cut in two pays its group cost in both chunks. ``whole``: a group that does not fit in
    what is left of a chunk starts the next one (and is cut only where it fills a chunk of its own)."""
    sizes: list[int] = []
    count, cost = 0, 0.0
    for left, group_cost, run_cost in runs:
        while left:
            fits = math.floor((limit - cost - group_cost) / run_cost) if limit > cost + group_cost else 0
            if whole and count and fits < left:
                fits = 0
            take = min(left, chunk_size - count, max(fits, 0 if count else 1))
            if take:
                count, cost, left = count + take, cost + group_cost + take * run_cost, left - take
            if left or count == chunk_size:  # the chunk is full
                sizes.append(count)
                count, cost = 0, 0.0
    if count:
        sizes.append(count)
    return sizes


def plan(specs: Sequence[RunSpec], groups: Mapping[Any, Group]) -> tuple[list[RunSpec], list[RunSpec]]:
    """(runs to stack, each activation's runs contiguous in first-seen order; runs for the loop engine)."""
    batchable = {key: can_batch(group) for key, group in groups.items()}
    stacked = [spec for spec in specs if batchable[spec.group_key]]
    first_seen = {key: i for i, key in enumerate(groups)}
    stacked.sort(key=lambda spec: first_seen[spec.group_key])  # stable: seeds keep their order
    return stacked, [spec for spec in specs if not batchable[spec.group_key]]


def _resumed(specs: Sequence[RunSpec], checkpoints: Checkpoints | None) -> list[list[RunSpec]]:
    """The stacks an earlier session checkpointed whose runs are all among ``specs``, in their saved order."""
    by_id = {spec.run_id: spec for spec in specs}
    saved = checkpoints.saved() if checkpoints is not None else []
    return [[by_id[run_id] for run_id in key] for key in saved if all(run_id in by_id for run_id in key)]


def check_equivalence(specs: Sequence[RunSpec], data: Dataset, sizes: Sequence[int],
                      settings: TrainSettings) -> dict:
    """Run the start-up probe for this experiment's shapes; one warning line (logging) where it fails."""
    n_test, n_val = (len(x) if x is not None else 0 for x in (data.x_test, data.x_val))
    result = probe.for_training(specs, sizes, len(data.x_train), n_test, settings.batch_size, settings, n_val)
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
    specs: Sequence[RunSpec], data: Dataset, sizes: Sequence[int], settings: TrainSettings, *,
    executor: str = "local", chunk_size: int = 4096, workers: int = 0, progress: Progress | None = None,
    executor_options: Mapping[str, Any] | None = None, checkpoints: Checkpoints | None = None,
) -> Iterator[list[RunResult]]:
    """Train every spec; batchable ones in stacks of at most ``chunk_size`` on ``executor``, the rest by
    the loop engine. ``workers``: the executor's parallelism (local: processes, 0 = one per core).
    ``checkpoints``: each stack saves its state there; a stack saved by an earlier session is rebuilt as it
    was and goes on from its checkpoint."""
    run = executors.get(executor)  # an unknown or uninstalled executor fails before any training
    groups = groups_of(specs)
    stacked, rest = plan(specs, groups)
    if stacked and settings.device == "cpu":
        check_equivalence(stacked, data, sizes, settings)
    parts = executors.parallelism(executor, workers, settings, **(executor_options or {}))
    resumed = _resumed(stacked, checkpoints)
    taken = {spec.run_id for chunk in resumed for spec in chunk}
    stacked = [spec for spec in stacked if spec.run_id not in taken]
    chunks = resumed + (split(stacked, chunk_size, parts, groups) if stacked else [])
    tasks = [ChunkTask(i, tuple(chunk), data, tuple(sizes), settings,
                       checkpoints.for_stack([s.run_id for s in chunk]) if checkpoints is not None else None)
             for i, chunk in enumerate(chunks)]
    for done in run(tasks, workers=workers, progress=progress, **(executor_options or {})):
        yield done.results()
    if rest:
        yield from loop.train_runs(rest, data, sizes, settings, progress=progress)
