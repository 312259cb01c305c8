"""TensorBoard logs of an experiment: per-epoch scalars of every run, and its HParams for filtering.

Each run becomes one TensorBoard run (``<logdir>/relu/seed3``) holding the per-epoch values of metrics.csv
(losses, gradient norms, dead/saturated shares) and, for the HParams tab, the run's setup (activation, lr,
seed, options, task, epochs, ...) with its final and best losses as metrics. ``TensorBoardSink`` writes runs
as they finish (live, during ``train``/``compare``); ``export`` writes a finished folder from its files.

Needs the optional ``tensorboard`` package (``pip install -e '.[tensorboard]'``): without it,
``TensorBoardUnavailable`` says so, and nothing else of actlab depends on it.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from actlab import config, storage
from actlab.engines import RunResult

INSTALL_HINT = "pip install -e '.[tensorboard]'"
DEFAULT_DIR = "tensorboard"  # inside the experiment folder: `tensorboard --logdir runs` then shows every experiment

# metrics.csv columns that are not per-epoch measures: they are the run's identity or its step
_NOT_SCALARS = {"run", "activation", "seed", "lr", "epoch", "seconds"}


class TensorBoardUnavailable(RuntimeError):
    """The ``tensorboard`` package is not installed."""


def _tensorboard():
    """torch.utils.tensorboard's SummaryWriter class and its summary module."""
    # Imported here, not at the top: actlab works without tensorboard, and torch.utils.tensorboard fails
    # at import time when the package is missing.
    try:
        from torch.utils.tensorboard import SummaryWriter, summary
    except ImportError:
        raise TensorBoardUnavailable(f"TensorBoard export needs the tensorboard package: {INSTALL_HINT}") from None
    return SummaryWriter, summary


def require() -> None:
    """Raise ``TensorBoardUnavailable`` (saying how to install it) unless the tensorboard package is there."""
    _tensorboard()


def scalar_tag(column: str) -> str:
    """The TensorBoard tag of a metrics.csv column, grouped by kind: full_loss -> loss/full,
    grad_norm_L1 -> grad_norm/L1, dead_L2 -> dead/L2 (TensorBoard groups tags by their first part)."""
    if column.endswith("_loss"):
        return f"loss/{column.removesuffix('_loss')}"
    kind, sep, layer = column.rpartition("_L")
    return f"{kind}/L{layer}" if sep and layer.isdigit() else column


def run_folder(run_id: str) -> Path:
    """The relative folder of a run (``relu/seed3``): each part made safe, so that a run id read from a
    folder can never point outside the log directory."""
    parts = [re.sub(r"[^\w.,=\[\]:+-]", "_", part) for part in run_id.split("/")]
    return Path(*[part if part.strip(".") else "_" for part in parts])


def hparams(cfg: config.Config, summary: dict[str, Any]) -> dict[str, Any]:
    """The HParams of one run: what differs between runs (activation, options, seed, lr, the grid's keys) and
    the setup shared by the experiment, as TensorBoard's types (str, int, float, bool). A grid key's value is
    the run's own (its summary row's column), and replaces the shared entry it varies."""
    d, t = cfg.data, cfg.train
    shared = {
        "task": d.task,
        "sizes": "-".join(map(str, cfg.model.sizes)),
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "shuffle": t.shuffle,
        "engine": t.engine,
        "samples": d.samples,
        "noise": d.noise,
        "test_fraction": d.test_fraction,
        "data_seed": d.seed,
    }
    own = {key: _hparam(summary.get(key)) for key in cfg.compare.grid}
    for key in own:
        shared.pop(_SHARED_BY_KEY.get(key, ""), None)
    return {
        "activation": str(summary["activation"]),
        "options": str(summary.get("options") or ""),
        "seed": int(summary["seed"]),
        "lr": float(summary["lr"]),
        "status": str(summary.get("status", "")),
        **own,
        **shared,
    }


# the shared HParams entry a grid key varies (model.depth and model.width vary the net's sizes)
_SHARED_BY_KEY = {"data.task": "task", "model.sizes": "sizes", "model.depth": "sizes", "model.width": "sizes",
                  "train.epochs": "epochs", "train.batch_size": "batch_size", "train.shuffle": "shuffle",
                  "train.engine": "engine", "data.samples": "samples", "data.noise": "noise",
                  "data.test_fraction": "test_fraction", "data.seed": "data_seed"}


def _hparam(value: Any) -> str | int | float | bool:
    """A grid value as a TensorBoard HParam: numbers and booleans as they are, anything else as text (a list
    of sizes as 10-18-1)."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return "-".join(map(str, value))
    return "" if value is None else str(value)


def hparam_metrics(summary: dict[str, Any], held_out: bool) -> dict[str, float]:
    """The HParams metrics of one run: final and best full-training-data loss (and held-out, if any)."""
    keys = ["final_loss", "best_loss"] + (["final_test_loss", "best_test_loss"] if held_out else [])
    return {f"hparam/{key}": _float(summary.get(key)) for key in keys}


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _by_run(table: dict[str, list[Any]],
            grid_keys: Collection[str] = ()) -> dict[str, dict[int, list[tuple[str, float]]]]:
    """metrics.csv by column -> run id -> epoch -> [(tag, value)], empty (NaN) cells left out. The grid's
    columns (``grid_keys``: a run's setting, text such as adam too) are HParams, not scalars."""
    columns = [(c, scalar_tag(c)) for c in table if c not in _NOT_SCALARS and c not in grid_keys]
    out: dict[str, dict[int, list[tuple[str, float]]]] = {}
    for i, (run, epoch) in enumerate(zip(table.get("run", []), table.get("epoch", []))):
        values = [(tag, float(table[column][i])) for column, tag in columns]
        # an empty cell: not measured (no held-out split, no diagnostics or an epoch their schedule skipped,
        # slope_L* of other than prelu): no point, TensorBoard joins the measured ones
        out.setdefault(run, {})[int(epoch)] = [(tag, v) for tag, v in values if not math.isnan(v)]
    return out


class TensorBoardSink:
    """Writes runs into a TensorBoard log directory as they finish: ``add(results)`` per finished chunk."""

    def __init__(self, folder: Path, cfg: config.Config, grid: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.folder = Path(folder)
        self.cfg = cfg
        self.grid = grid or {}  # run id -> its grid values (a grid study)
        self._writer_class, self._summary = _tensorboard()  # fails now, before training, if missing
        self.runs: list[str] = []

    def add(self, results: Sequence[RunResult]) -> None:
        """Log finished runs: their per-epoch scalars and HParams."""
        self.write(storage.metrics_table(self.cfg, results, dict(self.grid)),
                   [storage.with_grid(storage.run_summary(r), self.grid.get(r.spec.run_id, {})) for r in results])

    def write(self, table: dict[str, list[Any]], summaries: Sequence[dict[str, Any]]) -> None:
        """Log runs from metrics.csv rows (by column) and their summary rows (summary.csv)."""
        series = _by_run(table, self.cfg.compare.grid)
        held_out = self.cfg.data.test_fraction > 0
        for summary in summaries:
            run = summary["run"]
            # a queue that holds a whole run: with the default (10 events) each one waits on the writer thread
            with self._writer_class(log_dir=str(self.folder / run_folder(run)), max_queue=10_000) as writer:
                for epoch, values in series.get(run, {}).items():
                    self._write_epoch(writer, epoch, values)
                self._write_hparams(writer, summary, held_out)
            self.runs.append(run)

    def _write_epoch(self, writer, epoch: int, values: list[tuple[str, float]]) -> None:
        # One event per epoch holding every scalar (not one event per scalar: 15x fewer events to write and
        # read back); TensorBoard splits it by tag.
        if not values:
            return
        event = self._summary.scalar(*values[0])
        for tag, value in values[1:]:
            event.value.extend(self._summary.scalar(tag, value).value)
        writer.file_writer.add_summary(event, epoch)

    def _write_hparams(self, writer, summary: dict[str, Any], held_out: bool) -> None:
        metrics = hparam_metrics(summary, held_out)
        _, start, end = self._summary.hparams(hparams(self.cfg, summary), metrics)
        # The session start/end only, in the run's own folder (not SummaryWriter.add_hparams, which makes a
        # new timestamped run): with no experiment summary written, TensorBoard builds the HParams table from
        # every run under --logdir, so the activation filter lists every activation, of every experiment.
        writer.file_writer.add_summary(start)
        writer.file_writer.add_summary(end)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, int(summary.get("epochs") or 0))

    def close(self, status: str = "complete", error: str | None = None) -> None:
        """No more runs. Nothing stays open between runs (each run's writer is closed once written), so there
        is nothing to flush; ``status`` and ``error`` are those of the experiment (a result sink's signature)."""


def export(run_dir: Path, out: Path | None = None) -> tuple[Path, int]:
    """Write an experiment folder's runs as TensorBoard logs (default: ``RUN_DIR/tensorboard``); returns the
    log directory and the number of runs. Never writes into an existing non-empty folder."""
    stored = storage.load_experiment(run_dir)
    if not stored.summary:
        raise storage.StorageError(f"'{run_dir}' holds no finished run yet: nothing to export")
    out = Path(out) if out is not None else Path(run_dir) / DEFAULT_DIR
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise storage.StorageError(f"'{out}' exists and is not empty; actlab does not overwrite files, "
                                   "choose another --out")
    # written beside it, then renamed: an export cut short (a signal, a full disk) leaves no half-written
    # folder, which the next export would refuse to write into
    staging = out.with_name(f".{out.name}-partial-{os.getpid()}")
    sink = TensorBoardSink(staging, stored.config)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as exc:
        raise storage.StorageError(f"cannot create '{out}': {exc.strerror or exc}; choose another --out") from None
    try:
        sink.write(stored.metrics(), stored.summary)
        sink.close()
        staging.rename(out)  # over an empty folder too
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out, len(sink.runs)
