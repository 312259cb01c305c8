"""Checkpoints of stacks in training: what an interrupted batched run needs to go on where it stopped.

A stack (a chunk of runs trained as one computation) finishes all at once, so without checkpoints an
interrupt loses every run in flight. While it trains, the stacked epoch loop asks its ``Checkpoint``
whether a save is ``due()`` (every ``train.checkpoint_seconds``) and hands it its state between two
epochs, also when Ctrl-C or SIGTERM lands there (mid-epoch, the last save stands): plain tensors, numbers,
strings and lists, so ``torch.load(weights_only=True)`` reads it back without unpickling code. ``actlab
resume`` rebuilds the same stack and continues from that state: the numbers are those of an uninterrupted
run, bit for bit.

Files: ``<experiment>/checkpoints/chunk-<index>.pt``, written atomically (``storage.write_bytes``); a file
is removed once its runs are saved in the folder, and the folder when the experiment is complete. The
loop engine needs none: its runs are short and each is saved as it finishes.

The state a loop saves (``STATE_KEYS``): ``epoch`` (epochs done), ``params`` (the flat buffer),
``optimizer`` (its buffers by name, e.g. exp_avg), ``step`` (optimizer steps), ``generators`` ((N, S)
uint8: each run's shuffle-generator state, or None without shuffling), ``rows`` ((epochs, measures, N) float64: the
per-epoch measures so far), ``names`` (the measures), ``alive`` ((N,) bool), ``diverged_at`` (epoch or
None per run), ``initial`` (epoch-0 measures: name -> per-run list). ``save`` adds ``run_ids`` and
``format``.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from actlab import storage

FORMAT = 1  # bumped when the state's layout changes: an old file is then refused, not misread
FOLDER = "checkpoints"
STATE_KEYS = ("epoch", "params", "optimizer", "step", "generators", "rows", "names", "alive", "diverged_at",
              "initial")
_NAME = re.compile(r"chunk-(\d+)\.pt")


class CheckpointError(storage.StorageError):
    """A checkpoint file that cannot be read back or does not belong to the runs asked for."""


@dataclass
class Checkpoint:
    """One stack's checkpoint file: when a save is due, and the atomic save itself (picklable: a worker
    process saves its own stack's checkpoints)."""

    path: Path
    run_ids: tuple[str, ...]  # the stack's runs, in stack order: a resumed stack is rebuilt in this order
    seconds: float  # at most this long between saves (0: every epoch)
    _last: float | None = None  # when first asked (the stack trains: its worker's clock), then the last save

    def due(self) -> bool:
        """Has ``seconds`` passed since the stack started training (its first question) or was last saved?"""
        now = time.monotonic()
        if self._last is None:
            self._last = now
        return now - self._last >= self.seconds

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (see ``STATE_KEYS``) atomically: a reader sees the previous file or this one."""
        missing = [key for key in STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"checkpoint state lacks {', '.join(missing)}")  # a bug in the engine, not user input
        buffer = io.BytesIO()
        torch.save({**state, "run_ids": list(self.run_ids), "format": FORMAT}, buffer)
        self.path.parent.mkdir(exist_ok=True)
        storage.write_bytes(self.path, buffer.getvalue())
        self._last = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        """The saved state to resume from (None: no file yet); a file of other runs is a CheckpointError."""
        if not self.path.is_file():
            return None
        return read(self.path, self.run_ids)


def read(path: Path, run_ids: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A checkpoint file read back: tensors and plain data only (weights_only), checked for its keys, its
    layout and (given ``run_ids``) that it is the checkpoint of those runs."""
    try:
        state = storage.load_tensors(path, "checkpoint")
    except storage.StorageError as exc:
        raise CheckpointError(f"{exc}; delete it to retrain its runs from the start") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("run_ids"), list):
        raise CheckpointError(f"{path}: not a checkpoint of this actlab version; delete it to retrain its runs "
                              "from the start")
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: lacks {', '.join(missing)}; delete it to retrain its runs from the start")
    if run_ids is not None and tuple(state["run_ids"]) != run_ids:
        raise CheckpointError(f"{path}: holds other runs than the stack being resumed")
    problem = _state_problem(state)
    if problem:
        raise CheckpointError(f"{path}: {problem}, not what actlab saves; delete it to retrain its runs from the start")
    return state


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor(value: Any, dims: int, dtypes: tuple[torch.dtype, ...] | None = None) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == dims and (dtypes is None or value.dtype in dtypes)


def _state_problem(state: dict[str, Any]) -> str | None:
    """What in a checkpoint's state is not the layout ``save`` writes (the module docstring), or None: a
    file that reads back as tensors and lists can still hold anything, and resume must not fail mid-way."""
    ids = state["run_ids"]
    if not ids or not all(isinstance(i, str) for i in ids) or len(set(ids)) != len(ids):
        return "its run_ids are not distinct run names"
    n, floats = len(ids), (torch.float32, torch.float64)
    rows, params, optimizer = state["rows"], state["params"], state["optimizer"]
    if not _tensor(rows, 3, floats) or rows.shape[2] != n:
        return f"its rows are not an (epochs, measures, {n}) float tensor"
    checks = [
        (_is_int(state["epoch"]) and state["epoch"] == rows.shape[0] >= 1, "its epoch is not the number of its rows"),
        (_tensor(params, 1, floats), "its params are not a flat float tensor"),
        (_is_int(state["step"]) and state["step"] >= 0, "its step is not a count"),
        (isinstance(optimizer, dict) and set(optimizer) <= {"exp_avg", "exp_avg_sq", "buf"}
         and ("exp_avg" in optimizer) == ("exp_avg_sq" in optimizer)
         and all(isinstance(t, torch.Tensor) and t.shape == params.shape for t in optimizer.values()),
         "its optimizer buffers do not match its params"),
        (state["generators"] is None or (_tensor(state["generators"], 2, (torch.uint8,))
                                         and state["generators"].shape[0] == n),
         "its generator states are not one per run"),
        (isinstance(state["names"], list) and len(state["names"]) == rows.shape[1]
         and all(isinstance(x, str) for x in state["names"]), "its measure names do not match its rows"),
        (_tensor(state["alive"], 1, (torch.bool,)) and state["alive"].shape[0] == n,
         "its alive flags are not one per run"),
        (isinstance(state["diverged_at"], list) and len(state["diverged_at"]) == n
         and all(e is None or _is_int(e) for e in state["diverged_at"]), "its divergence epochs are not one per run"),
        (isinstance(state["initial"], dict) and all(isinstance(k, str) and isinstance(v, list) and len(v) == n
                                                     for k, v in state["initial"].items()),
         "its epoch-0 measures are not one per run"),
    ]
    return next((problem for ok, problem in checks if not ok), None)


def optimizer_buffers(optimizer: str, momentum: float, steps: int) -> set[str]:
    """The buffers a checkpoint of runs trained with ``optimizer`` holds after ``steps`` steps: Adam's two
    moments; SGD's momentum buffer (made by its first step), none without momentum."""
    if optimizer == "adam":
        return {"exp_avg", "exp_avg_sq"}
    return {"buf"} if momentum != 0 and steps > 0 else set()


def _check_buffers(path: Path, state: dict[str, Any], optimizer: str, momentum: float) -> None:
    """CheckpointError where ``state`` lacks (or has other) optimizer buffers than its runs' optimizer keeps: a
    resume would restart Adam's moments (or momentum) from zero, and the runs would not be the ones an
    uninterrupted session trains, with nothing to tell."""
    want, got = optimizer_buffers(optimizer, momentum, state["step"]), set(state["optimizer"])
    if got != want:
        what = f"{optimizer}{f' (momentum {momentum})' if optimizer == 'sgd' and momentum else ''}"
        has = ", ".join(sorted(got)) or "no optimizer buffers"
        raise CheckpointError(f"{path}: holds {has}, where runs trained with {what} keep "
                              f"{', '.join(sorted(want)) or 'none'}: resuming from it would not continue them; "
                              "delete it to retrain its runs from the start")


class Checkpoints:
    """The ``checkpoints/`` folder of one experiment: a ``Checkpoint`` per stack, reusing the file of a stack
    saved by an earlier (interrupted) session, and removing files whose runs are safely in the folder."""

    def __init__(self, folder: Path, seconds: float, optimizer: tuple[str, float] | None = None) -> None:
        """``optimizer``: (train.optimizer, train.momentum) of the runs to resume; each earlier file must hold
        that optimizer's buffers (else CheckpointError): resuming without them would not continue the runs."""
        self.dir = Path(folder) / FOLDER
        self.seconds = seconds
        self.files: dict[tuple[str, ...], Path] = {}  # run ids of a stack -> its file
        self._epochs: dict[tuple[str, ...], int] = {}  # epochs an earlier session's checkpoint holds
        if self.dir.exists() and not self.dir.is_dir():
            raise CheckpointError(f"{self.dir} is not a folder: actlab keeps the checkpoints of stacks in training "
                                  "there; move it away")
        if self.dir.is_dir():
            for stale in self.dir.glob("*.tmp"):  # a worker ended mid-save: its previous file is intact
                stale.unlink()
            for path in sorted(self.dir.iterdir()):
                if _NAME.fullmatch(path.name):
                    state = read(path)
                    if optimizer is not None:
                        _check_buffers(path, state, *optimizer)
                    key = tuple(state["run_ids"])
                    self.files[key], self._epochs[key] = path, int(state["epoch"])

    def saved(self) -> list[tuple[str, ...]]:
        """The stacks an earlier session checkpointed (their run ids in stack order)."""
        return list(self.files)

    def epochs_done(self) -> int:
        """Run-epochs the earlier sessions' checkpoints hold (progress counts them as done)."""
        return sum(len(key) * epochs for key, epochs in self._epochs.items() if key in self.files)

    def for_stack(self, run_ids: Sequence[str]) -> Checkpoint:
        """The checkpoint of the stack of ``run_ids``: its earlier file if there is one, else a new index."""
        key = tuple(run_ids)
        if key not in self.files:
            used = {int(m.group(1)) for p in self.files.values() if (m := _NAME.fullmatch(p.name))}
            self.files[key] = self.dir / f"chunk-{max(used, default=-1) + 1}.pt"
        return Checkpoint(self.files[key], key, self.seconds)

    def discard(self, done: Iterable[str]) -> None:
        """Remove the files of stacks whose runs are all saved in the folder (they are no longer needed)."""
        finished = set(done)
        for key, path in list(self.files.items()):
            if finished.issuperset(key):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                del self.files[key]

    def clear(self) -> None:
        """The experiment is complete: remove every file and the folder."""
        for path in self.files.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.files.clear()
        with contextlib.suppress(OSError):
            self.dir.rmdir()
