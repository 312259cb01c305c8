"""The batched engine: runs grouped by activation, cut into chunks, each chunk trained as one stack
(``stacked.train_chunk``) on an executor (``executors``: local processes today); what cannot be stacked
goes to the loop engine. Results do not depend on the chunking, the executor or the number of workers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from actlab.engines import executors, loop, probe
from actlab.engines.common import Group, Progress, RunResult, RunSpec, TrainSettings, groups_of
from actlab.engines.stacked import ChunkTask, can_batch
from actlab.tasks import Dataset

if TYPE_CHECKING:
    from actlab.checkpoint import Checkpoints

MIN_RUNS_PER_WORKER = 8  # below this a worker process costs more than it saves


def split(specs: Sequence[RunSpec], chunk_size: int, parts: int) -> list[list[RunSpec]]:
    """Contiguous chunks of at most ``chunk_size`` runs, at least ``parts`` of them when there are enough runs."""
    n_chunks = max(math.ceil(len(specs) / chunk_size), min(parts, len(specs) // MIN_RUNS_PER_WORKER), 1)
    size = math.ceil(len(specs) / n_chunks)
    return [list(specs[lo : lo + size]) for lo in range(0, len(specs), size)]


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
    chunks = resumed + (split(stacked, chunk_size, parts) if stacked else [])
    tasks = [ChunkTask(i, tuple(chunk), data, tuple(sizes), settings,
                       checkpoints.for_stack([s.run_id for s in chunk]) if checkpoints is not None else None)
             for i, chunk in enumerate(chunks)]
    for done in run(tasks, workers=workers, progress=progress, **(executor_options or {})):
        yield done.results()
    if rest:
        yield from loop.train_runs(rest, data, sizes, settings, progress=progress)
