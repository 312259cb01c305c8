"""Experiment folders: the only module that writes files (besides the plots and the report it calls for).

An experiment folder ``<runs>/<YYYYmmdd-HHMMSS>_<name>/`` holds:

- ``config.yaml``: the resolved config; ``actlab train|compare --config`` on it replays the experiment;
- ``env.json``: actlab, torch and Python versions, device, threads, platform, the command line;
- ``status.json``: running | complete | incomplete (interrupted or crashed), with counts and times;
- ``metrics.csv``: one row per run and epoch (long format), every measure of ``RunResult.history``;
- ``summary.csv`` / ``summary.json``: one row per run: final and best loss, epoch of best, status, time;
- ``weights.pt``: every run's final parameters (``torch.load`` -> {run id: FeedForward state_dict});
- ``stats.csv`` / ``stats.json`` (compare, report): per activation, the statistics over seeds (over a grid:
  per setting, the grid keys as columns; metrics and summary carry them too);
- ``study.csv`` / ``study.json`` (compare over a grid): the fair ranking, each activation at its chosen setting;
- ``report.md`` and figures (compare, report): derived from the files above, rewritten by ``actlab report``;
- ``checkpoints/`` (while incomplete): the state of stacks in training (``actlab.checkpoint``).

Files are appended or rewritten as runs finish, so whatever finished before a crash or Ctrl-C is readable.
Nothing that exists is ever overwritten: a new folder is made for every command, except that ``actlab
resume`` reopens an interrupted folder (``ExperimentWriter.reopen``) to add the runs it lacks.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actlab import __version__, activations, config
from actlab.engines import RunResult

KEEP_METRICS_CHARS = 1 << 28  # up to this much of metrics.csv is kept in memory to sort it at the end

METRICS_BASE = ["run", "activation", "seed", "lr", "epoch", "train_loss", "last_batch_loss", "full_loss"]


class StorageError(OSError):
    """A runs folder that cannot be created, written or read back."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def metric_columns(cfg: config.Config) -> list[str]:
    """The columns of metrics.csv for this config (fixed up front, so every row has the same shape)."""
    n_layers = len(cfg.model.sizes) - 1
    hidden = range(1, n_layers)
    cols = list(METRICS_BASE)
    if cfg.data.test_fraction > 0:
        cols.append("test_loss")
    if cfg.data.validation_fraction > 0:
        cols.append("val_loss")
    cols += ["seconds"]
    if cfg.train.diagnostics:
        cols += [f"grad_norm_L{layer}" for layer in range(1, n_layers + 1)]
        cols += [f"{kind}_L{layer}" for kind in ("dead", "saturated") for layer in hidden]
    cols += [f"slope_L{layer}" for layer in hidden]
    return cols


def grid_metric_columns(configs: Sequence[config.Config], keys: Sequence[str]) -> list[str]:
    """metrics.csv's columns for an experiment over a grid: the grid keys after ``seed``, then every column
    any of its stacks' configs has (a depth grid: grad_norm_L1..L<deepest>), in first-seen order."""
    cols = list(METRICS_BASE[:3]) + list(keys) + list(METRICS_BASE[3:])
    for cfg in configs:
        cols += [c for c in metric_columns(cfg) if c not in cols]
    return cols


def grid_cell(value: Any) -> Any:
    """A grid value as a CSV cell: numbers and text as they are, lists as JSON (``[10, 4, 1]``)."""
    return json.dumps(list(value)) if isinstance(value, list | tuple) else value


def _grid_value(cell: str) -> Any:
    """A grid column's cell read back: JSON where it parses (numbers, lists), else the text itself."""
    try:
        return json.loads(cell)
    except ValueError:
        return cell


def metrics_table(cfg: config.Config, results: Sequence[RunResult], grid: dict[str, dict[str, Any]] | None = None,
                  columns: Sequence[str] | None = None) -> dict[str, list[Any]]:
    """The rows of metrics.csv for ``results``, by column (what ``StoredExperiment.metrics`` reads back);
    ``grid``: run id -> its grid values (columns of their own), ``columns``: the folder's columns."""
    table: dict[str, list[Any]] = {c: [] for c in (columns or metric_columns(cfg))}
    for r in results:
        n = r.epochs_done
        first = 0 if r.initial else 1  # epoch 0: the measures at initialisation, before any step
        fixed = {"run": [r.spec.run_id] * (n + 1 - first), "activation": [r.spec.activation] * (n + 1 - first),
                 "seed": [r.spec.seed] * (n + 1 - first), "lr": [r.spec.lr] * (n + 1 - first),
                 "epoch": list(range(first, n + 1))}
        for key, value in ((grid or {}).get(r.spec.run_id) or {}).items():
            fixed[key] = [grid_cell(value)] * (n + 1 - first)
        for column, values in table.items():
            if column in fixed:
                values.extend(fixed[column])
                continue
            if first == 0:
                values.append(0.0 if column == "seconds" else r.initial.get(column, math.nan))
            values.extend(r.history.get(column) or [math.nan] * n)
    return table


def _nan_to_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def run_summary(result: RunResult) -> dict[str, Any]:
    """One row of summary.csv: final and best losses, epoch of best, status and time."""
    h = result.history
    full = h.get("full_loss", [])
    best_epoch = min(range(len(full)), key=full.__getitem__) + 1 if full else None
    last = lambda name: h[name][-1] if h.get(name) else float("nan")  # noqa: E731
    test, val = h.get("test_loss", []), h.get("val_loss", [])
    return {
        "run": result.spec.run_id,
        "activation": result.spec.activation,
        "seed": result.spec.seed,
        "lr": result.spec.lr,
        "options": json.dumps(dict(result.spec.options)) if result.spec.options else "",
        "status": result.status,
        "diverged_epoch": result.diverged_epoch,
        "epochs": result.epochs_done,
        "final_loss": last("full_loss"),
        "best_loss": full[best_epoch - 1] if best_epoch else float("nan"),
        "best_epoch": best_epoch,
        "final_train_loss": last("train_loss"),
        "final_last_batch_loss": last("last_batch_loss"),
        "final_test_loss": last("test_loss"),
        "best_test_loss": min(test) if test else float("nan"),
        "final_val_loss": last("val_loss"),
        "best_val_loss": min(val) if val else float("nan"),
        "seconds": result.seconds,
        "engine": result.engine,
    }


def environment(device: torch.device, argv: Sequence[str] | None = None,
                cfg: config.Config | None = None) -> dict[str, Any]:
    """env.json: versions, device, threads, the command line, what decides the CPU kernels (CPU model,
    ATen's capability, MKL's CNR mode) and, given the config (CPU only), the engines' start-up probe under
    "equivalence": {"bitwise", "checked", "failed"} (does the batched engine give the loop engine's numbers
    bit for bit on this machine for this experiment's shapes?)."""
    from actlab import study
    from actlab.engines import RunSpec, TrainSettings, probe

    env: dict[str, Any] = {
        "actlab": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "engine_threads": 1,  # both engines train at one intra-op thread (actlab.engines.common.one_thread)
        "command": " ".join(argv if argv is not None else sys.argv),
        **probe.kernel_setup(),
    }
    if cfg is not None and device.type == "cpu":  # the probe is about CPU kernels; GPU results differ anyway
        names = dict.fromkeys([activations.canonical(cfg.model.activation), *cfg.compared_activations()])
        specs = [RunSpec(name, 0, cfg.train.lr, cfg.options_for(name)) for name in names]
        d = cfg.data
        n_test = round(d.samples * d.test_fraction)
        n_val = study.validation_size(d.samples, d.test_fraction, d.validation_fraction) if d.validation_fraction else 0
        # the shapes the engine's own probe checks (batched.check_equivalence): the same probe, run once
        env["equivalence"] = probe.for_training(specs, cfg.model.sizes, d.samples - n_test - n_val, n_test,
                                                cfg.train.batch_size, TrainSettings.from_config(cfg, device), n_val)
    return env


def diagnostics_schedule(cfg: config.Config, grid: Mapping[str, Mapping[str, Any]] | None = None
                         ) -> list[dict[str, Any]] | None:
    """env.json's "diagnostics": the epochs that measured gradient norms and unit states (metrics.csv leaves
    the others empty), one entry per run length (a grid over train.epochs has several); None: not measured."""
    if not cfg.train.diagnostics:
        return None
    from actlab import diagnostics

    lengths = {cfg.train.epochs} if not grid else set()
    lengths |= {int(values["train.epochs"]) for values in (grid or {}).values() if "train.epochs" in values}
    dense = cfg.train.diagnostics_dense
    return [{"train.epochs": epochs, "train.diagnostics_dense": dense,
             "schedule": diagnostics.describe_schedule(epochs, dense),
             "epochs": diagnostics.schedule(epochs, dense)} for epochs in sorted(lengths or {cfg.train.epochs})]


def new_experiment_dir(runs_dir: Path, name: str, now: float | None = None) -> Path:
    """Create and return a fresh ``<runs_dir>/<timestamp>_<name>`` (a suffix -2, -3... if taken).

    On failure nothing is left behind: parent folders made on the way are removed again.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    if len(f"{stamp}_{name}-999".encode()) > 255:  # NAME_MAX of every common file system
        raise StorageError(f"the experiment name '{name[:20]}...' is too long for a folder name; shorten --name")
    made = _missing(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 1000):
            path = runs_dir / (f"{stamp}_{name}" + (f"-{attempt}" if attempt > 1 else ""))
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        _remove_empty(made)
        raise StorageError(
            f"cannot create an experiment folder in '{runs_dir}': {exc.strerror or exc}; "
            "choose another folder with --out DIR"
        ) from None
    _remove_empty(made)
    raise StorageError(f"too many experiment folders named {stamp}_{name} in '{runs_dir}'")


def _missing(runs_dir: Path) -> list[Path]:
    """``runs_dir`` and its parents that do not exist yet (deepest first): the folders making it would add.
    One that cannot even be looked at (no permission) is left out: mkdir then says why."""
    missing = []
    for p in (runs_dir, *runs_dir.parents):
        try:
            p.stat()
        except FileNotFoundError:
            missing.append(p)
        except OSError:
            continue
    return missing


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove folders this process made (deepest first), if they are still empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _disk_error(path: Path, exc: OSError) -> StorageError:
    hint = "; free some space (train and compare can write elsewhere: --out DIR)" if exc.errno in DISK_FULL else ""
    return StorageError(f"cannot write {path}: {exc.strerror or exc}{hint}")


def write_bytes(path: Path, data: bytes) -> Path:
    """Write a file of an experiment folder atomically: a reader never sees half a file, and a failed write
    (disk full) leaves the previous version in place and no temporary file behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk, or a signal mid-write: no temporary file is left
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise _disk_error(path, exc) from None
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """Write a text file of an experiment folder atomically (see ``write_bytes``)."""
    return write_bytes(path, text.encode())


def append_rows(path: Path, text: str) -> None:
    """Append whole CSV rows in one flushed write; a failed write (disk full) is cut back to the last whole row."""
    try:
        with open(path, "ab") as f:
            end = f.seek(0, os.SEEK_END)
            try:
                f.write(text.encode())
                f.flush()
            except BaseException:  # a full disk, or a signal mid-write: back to the last whole row
                f.truncate(end)  # shrinking a file needs no space
                raise
    except OSError as exc:
        raise _disk_error(path, exc) from None


def save_weights(path: Path, states: dict[str, dict[str, torch.Tensor]]) -> None:
    """weights.pt, atomically: a failed save never replaces a good file with a cut or empty one."""
    buffer = io.BytesIO()
    torch.save(states, buffer)
    write_bytes(path, buffer.getvalue())


def load_tensors(path: Path, what: str) -> Any:
    """A file written by ``torch.save`` read back with tensors and plain data only (``weights_only``: its
    unpickling cannot run code); else StorageError: "``path``: not a readable ``what`` (why)"."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  a damaged file can fail in many ways inside torch
        raise StorageError(f"{path}: not a readable {what} ({_unreadable(exc)})") from None


def _unreadable(exc: Exception) -> str:
    """Why torch.load refused a file, in our words: torch's own message advises loading with
    ``weights_only=False``, which would run whatever code the file holds, so it is never quoted."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))  # torch names the object it refused (its wording may change)
    if found:
        return f"it holds a Python object, {found.group(1)}, which actlab never unpickles: that could run code"
    return f"damaged, or not written by torch.save: {type(exc).__name__}"


def load_weights(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """weights.pt read back: tensors only (``load_tensors``), checked for shape."""
    try:
        weights = load_tensors(path, "weights file")
    except StorageError as exc:
        raise StorageError(f"{exc}; the folder is damaged: move weights.pt away to report without the final "
                           "weights") from None
    if not isinstance(weights, dict) or not all(
        isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values()) for v in weights.values()
    ):
        raise StorageError(f"{path}: expected {{run id: state_dict}}; the folder is damaged: move weights.pt away to "
                           "report without the final weights")
    return weights


def _write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def _write_rows(folder: Path, stem: str, rows: Sequence[dict[str, Any]]) -> None:
    """``stem``.csv (floats exact, NaN empty) and ``stem``.json (NaN as null) holding the same rows."""
    if rows:
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: _fmt(v) for k, v in row.items()} for row in rows)
        write_text(folder / f"{stem}.csv", buffer.getvalue())
    _write_json(folder / f"{stem}.json", [{k: _nan_to_none(v) for k, v in row.items()} for row in rows])


@dataclass
class ExperimentWriter:
    """Writes one experiment folder as results arrive."""

    path: Path
    cfg: config.Config
    command: str
    run_order: list[str]  # run ids in plan order: summaries list runs in it, whatever order they finish in
    grid: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id -> its grid values (a grid only)
    columns: list[str] | None = None  # metrics.csv's columns (None: metric_columns(cfg))
    _results: list[RunResult] = field(default_factory=list)
    _started: float = field(default_factory=time.time)
    _earlier: dict[str, tuple[dict[str, Any], dict[str, torch.Tensor]]] = field(default_factory=dict)
    # ^ a reopened folder: run id -> (summary row, final weights) of the runs an earlier session saved
    _blocks: list[tuple[str, str]] | None = field(default_factory=list)
    # ^ (run id, its metrics.csv rows) as this session appended them: the end sorts them without reading the
    # file back (None: more than KEEP_METRICS_CHARS, the file is read back instead)

    @classmethod
    def create(cls, cfg: config.Config, command: str, run_order: Sequence[str], device: torch.device | str,
               runs_dir: Path | None = None, grid: dict[str, dict[str, Any]] | None = None,
               columns: Sequence[str] | None = None) -> ExperimentWriter:
        """A new experiment folder holding the config and environment, marked running (``grid`` and
        ``columns``: an experiment over a grid, see ``grid_metric_columns``).

        If these first files cannot be written (disk full), the folder, and any parent made for it, is
        removed again: no half-made folder is left behind.
        """
        runs_dir = runs_dir or Path(cfg.output.runs_dir)
        made = _missing(runs_dir)
        path = new_experiment_dir(runs_dir, cfg.output.name)
        writer = cls(path, cfg, command, list(run_order), dict(grid or {}), list(columns) if columns else None)
        try:
            text = (f"# actlab {command}: resolved config; replay with "
                    f"`actlab {command} --config {path / 'config.yaml'}`\n" + config.dump_yaml(cfg))
            write_text(path / "config.yaml", text)
            # its checksum: `actlab resume` refuses a config edited after the experiment started
            _write_json(path / "env.json", {**environment(torch.device(device), cfg=cfg),
                                            "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
                                            "diagnostics": diagnostics_schedule(cfg, grid)})
            write_text(path / "metrics.csv", _csv_lines([writer.columns or metric_columns(cfg)]))
            writer._status("running")
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            _remove_empty(made)
            raise
        return writer

    def _status(self, status: str, error: str | None = None) -> None:
        _write_json(self.path / "status.json", {
            "status": status,
            "command": self.command,
            "runs_done": len(self._earlier) + len(self._results),
            "runs_total": len(self.run_order),
            "diverged": sum(r.status == "diverged" for r in self._results)
            + sum(row["status"] == "diverged" for row, _ in self._earlier.values()),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self._started)),
            "seconds": round(time.time() - self._started, 3),
            **({"error": error} if error else {}),
        })

    def add(self, results: Sequence[RunResult]) -> None:
        """Append finished runs: their metrics rows and an updated summary."""
        table = metrics_table(self.cfg, results, self.grid, self.columns)
        lines = csv_lines(table.values())  # whole rows in one write
        blocks, start = [], 0
        for r in results:  # each run's rows, contiguous in the table
            end = start + r.epochs_done + (1 if r.initial else 0)
            blocks.append((r.spec.run_id, "".join(lines[start:end])))
            start = end
        append_rows(self.path / "metrics.csv", "".join(text for _, text in blocks))
        if self._blocks is not None:
            self._blocks.extend(blocks)
            if sum(len(text) for _, text in self._blocks) > KEEP_METRICS_CHARS:
                self._blocks = None  # a huge study: sorted at the end from the file instead
        self._results.extend(results)
        self._write_summary()
        self._status("running")

    def _write_summary(self) -> None:
        position = {run_id: i for i, run_id in enumerate(self.run_order)}
        rows = [row for row, _ in self._earlier.values()] + [self.summary_row(r) for r in self._results]
        rows.sort(key=lambda row: position.get(row["run"], len(position)))
        _write_rows(self.path, "summary", rows)

    def summary_row(self, result: RunResult) -> dict[str, Any]:
        """``run_summary`` with the run's grid values as columns after ``seed`` (a grid only)."""
        return with_grid(run_summary(result), self.grid.get(result.spec.run_id, {}))

    def finish(self, status: str = "complete", error: str | None = None) -> None:
        """Save final weights and mark the folder complete (or incomplete, with the reason).

        Marking a folder incomplete is best effort: it happens while another error (disk full, a signal) is
        being reported, so a failure here is dropped rather than stacked on that error. The status is
        written before the weights, so that a disk too full for the weights still tells why.
        """
        try:
            if status != "complete":
                self._status(status, error)
            states = {run_id: state for run_id, (_, state) in self._earlier.items()}
            states.update((r.spec.run_id, r.state) for r in self._results)
            position = {run_id: i for i, run_id in enumerate(self.run_order)}  # plan order, however they finished
            save_weights(self.path / "weights.pt",
                         dict(sorted(states.items(), key=lambda item: position.get(item[0], len(position)))))
            if status == "complete":
                self._sort_metrics()
            self._status(status, error)
        except StorageError:
            if status == "complete":
                raise

    def _sort_metrics(self) -> None:
        """metrics.csv in plan order, whatever order the runs finished in (workers, a resumed session): a
        complete folder's files do not depend on how it was scheduled."""
        path = self.path / "metrics.csv"
        position = {run_id: i for i, run_id in enumerate(self.run_order)}
        if self._blocks is not None and not self._earlier:  # the file is the header and this session's blocks
            keys = [position.get(run_id, len(position)) for run_id, _ in self._blocks]
            if keys != sorted(keys):
                order = sorted(range(len(keys)), key=keys.__getitem__)
                header = _csv_lines([self.columns or metric_columns(self.cfg)])
                write_text(path, header + "".join(self._blocks[i][1] for i in order))
            return
        header, rows = _csv_rows(path)
        keys = [position.get(row[0], len(position)) for row in rows]
        if keys != sorted(keys):
            order = sorted(range(len(rows)), key=keys.__getitem__)  # stable: epochs stay in order
            write_text(path, _csv_lines([header, *(rows[i] for i in order)]))

    @classmethod
    def reopen(cls, stored: StoredExperiment, command: str, run_order: Sequence[str]) -> ExperimentWriter:
        """An interrupted experiment folder, opened to add the runs it lacks (``actlab resume``).

        A run counts as saved when it has a summary row and weights (weights.pt is written when a session
        ends; a session killed outright left none for its last runs). metrics.csv rows of any other run, and
        a row cut short, are removed, so the runs trained again are not counted twice. The folder's
        metrics.csv columns must be the config's.
        """
        path, cfg = stored.path, stored.config
        header, rows = _csv_rows(path / "metrics.csv")
        emptied = not header and not rows  # a damaged, empty file: its runs are trained again, under a header
        header = metric_columns(cfg) if emptied else header
        if header != metric_columns(cfg):
            raise StorageError(f"{path / 'metrics.csv'}: its columns are not those of the folder's config.yaml "
                               "(was the config edited?); the runs cannot be continued")
        weights = load_weights(path / "weights.pt") if (path / "weights.pt").is_file() else {}
        planned = set(run_order)
        # a run whose metrics.csv rows are missing or cut short (a damaged file) is trained again too
        at = header.index("epoch")
        whole = [row for row in rows if len(row) == len(header)]
        last = last_epochs((row[0] for row in whole), (int(row[at]) if row[at].isdigit() else None for row in whole))
        saved = [row for row in _read_json(path / "summary.json", list, [])
                 if isinstance(row, dict) and row.get("run") in weights and row["run"] in planned
                 and last.get(row["run"], -1) >= (row.get("epochs") if isinstance(row.get("epochs"), int) else 0)]
        writer = cls(path, cfg, command, list(run_order))
        writer._earlier = {row["run"]: (row, weights[row["run"]]) for row in saved}
        writer._started = _parse_time(stored.status.get("started")) or writer._started
        kept = [row for row in rows if row and row[0] in writer._earlier]
        if len(kept) != len(rows) or emptied:
            write_text(path / "metrics.csv", _csv_lines([header, *kept]))
        writer._write_summary()
        if not saved:
            with contextlib.suppress(FileNotFoundError):
                (path / "summary.csv").unlink()  # no rows: _write_rows writes only summary.json
        writer._status("running")
        return writer

    @property
    def saved_runs(self) -> list[str]:
        """Run ids saved in the folder: by earlier sessions and by this one."""
        return [*self._earlier, *(r.spec.run_id for r in self._results)]

    @property
    def results(self) -> list[RunResult]:
        return list(self._results)


def with_grid(row: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A summary row with grid values inserted after its ``seed`` column (lists kept as lists)."""
    if not values:
        return row
    items = list(row.items())
    at = next(i for i, (k, _) in enumerate(items) if k == "seed") + 1
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return dict(items[:at] + list(plain.items()) + items[at:])


def _csv_rows(path: Path, notes: list[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """A CSV file of the folder as text cells: its header and its whole rows (a row cut short is left out,
    and said so in ``notes``)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc}); "
                           "the folder is damaged") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:  # a cell past csv's field size limit (131072 characters), a NUL byte
        raise StorageError(f"{path}: not actlab's CSV ({exc}); the folder is damaged") from None
    header = rows.pop(0) if rows else []
    if rows and (not text.endswith("\n") or len(rows[-1]) != len(header)):
        rows.pop()
        if notes is not None:
            notes.append(f"{path}: the last row was cut short (the run was stopped mid-write); it is left out")
    return header, rows


def _parse_time(text: Any) -> float | None:
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except (TypeError, ValueError):
        return None


def _csv_lines(rows: Any) -> str:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def csv_lines(columns: Iterable[Sequence[Any]]) -> list[str]:
    """The CSV lines (each ending in CRLF) of a table given by columns, as ``csv.writer`` writes its rows,
    except that NaN is an empty cell: floats exact (repr), text quoted where needed.

    metrics.csv holds hundreds of thousands of cells; formatting a column at a time (repr mapped over a
    float column, each distinct text quoted once) takes about 3/4 of ``csv.writer``'s time on the rows (the
    floats' repr, needed for the exact round trip, is most of both)."""
    texts = []
    for values in columns:
        kinds = set(map(type, values))
        if kinds == {float}:
            texts.append(_float_cells(values))
        elif kinds == {int}:
            texts.append(list(map(str, values)))
        else:
            quoted: dict[str, str] = {}
            texts.append([_csv_cell(v, quoted) for v in values])
    if len(texts) == 1:  # csv writes a row of one empty cell as "" (an empty line would be no row)
        texts = [[cell or '""' for cell in texts[0]]]
    return [",".join(row) + "\r\n" for row in zip(*texts)]


def _float_cells(values: Sequence[float]) -> list[str]:
    """A column of floats as CSV cells: repr, NaN empty. The NaNs are found by numpy and never formatted (the
    diagnostics' columns are mostly NaN: epochs off their schedule); a column of few values (lr, seconds: one
    per epoch) formats each value once."""
    numbers = np.fromiter(values, dtype=float, count=len(values))
    nan = np.isnan(numbers)
    missing = np.flatnonzero(nan).tolist()
    if 2 * len(missing) > len(values):  # mostly NaN: format only the numbers
        cells = [""] * len(values)
        for i in np.flatnonzero(~nan).tolist():
            cells[i] = repr(values[i])
        return cells
    sample = values[:: max(1, len(values) // 512)]
    # -0.0 == 0.0: one dict key for two texts, so a column holding -0.0 is formatted value by value
    if 2 * len(set(sample)) <= len(sample) and not np.signbit(numbers[numbers == 0]).any():
        cells = list(map({v: repr(v) for v in set(values)}.__getitem__, values))  # a NaN is found by identity
    else:
        cells = list(map(repr, values))
    for i in missing:
        cells[i] = ""
    return cells


def _csv_cell(value: Any, quoted: dict[str, str]) -> str:
    """One cell as csv.writer writes it (NaN: empty); ``quoted``: the texts seen before, as written."""
    if type(value) is float:
        return "" if value != value else repr(value)
    if not isinstance(value, str):
        return _csv_lines([[value, ""]])[:-3]
    if value not in quoted:
        # a row of two cells, the second empty, then cut: csv writes a row of one empty cell as ""
        quoted[value] = _csv_lines([[value, ""]])[:-3]
    return quoted[value]


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)  # repr: every float round-trips exactly
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return "" if value is None else value


# --------------------------------------------------------------------------------------------------
# Reading folders back.


@dataclass
class StoredExperiment:
    path: Path
    config: config.Config
    status: dict[str, Any]
    env: dict[str, Any]
    summary: list[dict[str, Any]]
    table: dict[str, list[Any]] | None = None  # metrics.csv, once read (or handed over by the writer)
    notes: list[str] = field(default_factory=list)  # what reading tolerated (a cut last row), for the user

    def metrics(self) -> dict[str, list[Any]]:
        """metrics.csv by column: run and activation as text, seed and epoch as int, the rest float (NaN
        for empty cells). A last row cut short (a crash or a full disk mid-write) is dropped, with a note."""
        if self.table is None:
            self.table = self._read_metrics()
        return self.table

    def _read_metrics(self) -> dict[str, list[Any]]:
        path = self.path / "metrics.csv"
        header, rows = _csv_rows(path, self.notes)
        lacking = [name for name in METRICS_KEYS if name not in header]
        if lacking:  # an emptied file, or not actlab's: every curve and per-epoch measure would be missing
            what = "is empty (not even its header row)" if not header else f"has no column {lacking[0]}"
            raise StorageError(f"{path} {what}; the folder is damaged (its per-epoch measures are lost): "
                               f"{self._retrain_hint(resumable=not header)}")
        for line, row in enumerate(rows, start=2):
            if len(row) != len(header):
                raise StorageError(f"{path} line {line}: {len(row)} cells where the header has {len(header)}; "
                                   "the folder is damaged")
        grid_keys = set(self.config.compare.grid)
        columns = list(zip(*rows)) if rows else [()] * len(header)
        # column by column (a whole column in one comprehension: hundreds of thousands of cells); a cell that
        # does not parse sends its column through ``_cell`` one cell at a time, which names the line
        table = {name: _column(name, cells, path, name in grid_keys) for name, cells in zip(header, columns)}
        self._check_rows(table, path)
        return table

    def _check_rows(self, table: dict[str, list[Any]], path: Path) -> None:
        """Every run of summary.json has its rows in metrics.csv, up to its last epoch; else StorageError.

        actlab appends a run's rows before its summary row, so a folder it wrote always has them: a run
        without them is a damaged file, and its curves, epochs-to-threshold and diagnostics would be
        missing from a report that still ranks it (or, epochs cut off, wrong)."""
        epochs_of: dict[str, list[int]] = {}
        for run, epoch in zip(table["run"], table["epoch"]):
            epochs_of.setdefault(run, []).append(epoch)
        for row in self.summary:  # 0 (or 1: no measures at initialisation), 1, 2, ...: each epoch once, in order
            got = epochs_of.get(row["run"], [])
            first = got[0] if got and got[0] in (0, 1) else 0
            wrong = next((e for i, e in enumerate(got) if e != first + i), None)
            if wrong is not None:
                raise StorageError(f"{path}: run {row['run'][:60]!r}: epoch {wrong} out of order (its epochs must "
                                   f"count up from 0 or 1, once each); the folder is damaged: "
                                   f"{self._retrain_hint(resumable=False)}")
        last = last_epochs(table["run"], table["epoch"])
        if any(note.startswith(f"{path}:") and "cut short" in note for note in self.notes) and table["run"]:
            # the last row, cut mid-write and left out with a note (``_csv_rows``), is the only one missing
            last[table["run"][-1]] += 1
        for row in self.summary:
            epochs = row.get("epochs")
            if isinstance(epochs, int) and not isinstance(epochs, bool) and last.get(row["run"], -1) < epochs:
                has = f"rows up to epoch {last[row['run']]}" if row["run"] in last else "no rows"
                raise StorageError(f"{path}: run {row['run'][:60]!r} has {has}, and summary.json says it trained "
                                   f"{epochs} epochs; the folder is damaged (its per-epoch measures are lost): "
                                   f"{self._retrain_hint(resumable=True)}")

    def _retrain_hint(self, resumable: bool) -> str:
        """How to get the lost runs back: ``actlab resume`` retrains them in an incomplete folder (``resumable``:
        for this damage), else the experiment is trained again from its config."""
        if resumable and self.status.get("status") == "incomplete":
            return f"`actlab resume {self.path}` trains those runs again"
        command = self.status.get("command") if self.status.get("command") in ("train", "compare") else "compare"
        return f"train it again: `actlab {command} --config {self.path / 'config.yaml'}`"

    def curves(self, measure: str = "full_loss") -> dict[str, list[float]]:
        """run id -> per-epoch values of ``measure``, epochs 1, 2, ... (epoch 0, at initialisation, left out)."""
        table = self.metrics()
        out: dict[str, list[float]] = {}
        epochs = table.get("epoch") or [1] * len(table.get("run", []))
        for run, epoch, value in zip(table.get("run", []), epochs, table.get(measure, [])):
            if epoch > 0:
                out.setdefault(run, []).append(value)
        return out


METRICS_KEYS = ("run", "activation", "seed", "epoch", "full_loss")  # what the curves and statistics read


def last_epochs(runs: Iterable[str], epochs: Iterable[Any]) -> dict[str, int]:
    """run id -> the last epoch metrics.csv holds for it (0: only the measures at initialisation)."""
    last: dict[str, int] = {}
    for run, epoch in zip(runs, epochs):
        if isinstance(epoch, int) and epoch > last.get(run, -1):
            last[run] = epoch
    return last


def _column(name: str, cells: Sequence[str], path: Path, grid: bool) -> list[Any]:
    """One metrics.csv column in its type (``_cell``'s, or ``_grid_value``'s for a grid key)."""
    if grid:
        return [_grid_value(cell) for cell in cells]
    try:
        if name in ("run", "activation"):
            return list(cells)
        if name in ("seed", "epoch"):
            return [int(cell) for cell in cells]
        nan = math.nan
        return [float(cell) if cell else nan for cell in cells]
    except ValueError:
        return [_cell(name, cell, path, line) for line, cell in enumerate(cells, start=2)]


def _cell(column: str, cell: str, path: Path, line: int) -> Any:
    """One metrics.csv cell in its column's type; a cell that is not one is a damaged file."""
    if column in ("run", "activation"):
        return cell
    try:
        if column in ("seed", "epoch"):
            return int(cell)
        return float(cell) if cell else math.nan
    except ValueError:
        raise StorageError(f"{path} line {line}: column {column} holds {cell[:40]!r}, not a number; "
                           "the folder is damaged") from None


def write_stats(folder: Path, rows: Sequence[dict[str, Any]]) -> None:
    """stats.csv and stats.json: the per-activation statistics over seeds (regenerated on request)."""
    _write_rows(folder, "stats", rows)


def write_study(folder: Path, rows: Sequence[dict[str, Any]]) -> None:
    """study.csv and study.json: a grid's fair ranking, one row per activation (regenerated on request)."""
    _write_rows(folder, "study", rows)


def survey(runs_dir: Path) -> tuple[list[StoredExperiment], list[tuple[Path, str]]]:
    """Every experiment folder directly under ``runs_dir``, oldest first: the readable ones, and the damaged
    ones with their problem (one damaged folder does not hide the others)."""
    if not runs_dir.is_dir():
        raise StorageError(f"'{runs_dir}' is not a folder; give the folder that holds experiment folders")
    found, damaged = [], []
    for path in sorted(p for p in runs_dir.iterdir() if (p / "config.yaml").is_file()):
        try:
            found.append(load_experiment(path))
        except (config.ConfigError, StorageError) as exc:
            damaged.append((path, str(exc)))
    return found, damaged


def list_experiments(runs_dir: Path) -> list[StoredExperiment]:
    """Every readable experiment folder directly under ``runs_dir``, oldest first (``survey``: damaged too)."""
    return survey(runs_dir)[0]


SUMMARY_FIELDS: dict[str, tuple[type, ...]] = {
    "run": (str,), "activation": (str,), "seed": (int,), "status": (str,),
    "final_loss": (int, float, type(None)), "best_loss": (int, float, type(None)),
}


def _read_json(path: Path, kind: type, default: Any) -> Any:
    """A JSON file of a folder, checked to hold a ``kind`` (list or dict); missing: ``default``."""
    if not path.is_file():
        return default
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc}); "
                           "the folder is damaged") from None
    except json.JSONDecodeError as exc:
        raise StorageError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); the folder is damaged") from None
    except RecursionError:  # [[[[...: nested deeper than Python's recursion limit
        raise StorageError(f"{path}: nested too deeply to be actlab's JSON; the folder is damaged") from None
    if not isinstance(data, kind):
        want = "a list" if kind is list else "an object"
        raise StorageError(f"{path}: expected {want}, found {type(data).__name__}; the folder is damaged")
    return data


def _summary_rows(path: Path) -> list[dict[str, Any]]:
    rows = _read_json(path, list, [])
    seen: set[str] = set()  # run ids so far: one row per run (a repeated one would count twice in the statistics)
    for i, row in enumerate(rows):
        problem = "not an object" if not isinstance(row, dict) else next(
            (f"'{k}' missing or not {types[0].__name__}" for k, types in SUMMARY_FIELDS.items()
             if not isinstance(row.get(k, ...), types) or isinstance(row.get(k), bool)), None)
        if not problem and not activations.is_name(row["activation"]):
            problem = f"activation {row['activation'][:40]!r} is neither a registry name nor an import path"
        if not problem and row["status"] not in ("ok", "diverged"):
            problem = f"status {row['status'][:20]!r} is neither ok nor diverged"
        if not problem and any((row[k] or 0) < 0 for k in ("final_loss", "best_loss")):
            problem = "a negative loss, which a mean squared error cannot be"
        if not problem and row["run"] in seen:
            problem = f"run {row['run'][:40]!r} is listed twice"
        if problem:
            raise StorageError(f"{path}: row {i + 1}: {problem}; the folder is damaged")
        seen.add(row["run"])
    return [{k: (float("nan") if v is None else v) for k, v in row.items()} for row in rows]


STATUS_FIELDS: dict[str, tuple[str, ...] | type] = {
    "status": ("running", "complete", "incomplete", "unknown"), "command": ("train", "compare"),
    "runs_done": int, "runs_total": int, "diverged": int, "started": str, "error": str,
}


def _check_status(path: Path, status: dict[str, Any]) -> None:
    """status.json's fields, where present, are what actlab writes; else StorageError: `show` and `runs`
    print them (it printed "5, complete (x of None runs)"), `resume` decides by them."""
    for key, want in STATUS_FIELDS.items():
        if key not in status or (key in ("runs_total", "error") and status[key] is None):
            continue
        value = status[key]
        if isinstance(want, tuple):
            ok, what = value in want, f"one of {', '.join(want)}"
        else:
            ok = isinstance(value, want) and not isinstance(value, bool) and (want is str or value >= 0)
            what = "a count" if want is int else "text"
        if not ok:
            raise StorageError(f"{path}: '{key}' is {json.dumps(value)[:40]}, not {what}; the folder is damaged")


def _check_planned(path: Path, cfg: config.Config, command: Any, summary: Sequence[dict[str, Any]]) -> None:
    """Every summary row is a run the folder's config trains (its activation and seed); else StorageError: a
    report would rank, under this config's setup, an activation or seed that was never trained with it."""
    try:
        trained = {activations.canonical(cfg.model.activation)} if command != "compare" else set()
        if command != "train":
            trained |= set(cfg.compared_activations())
    except activations.ActivationError:  # a name this actlab's registry lacks: the config's check says so
        return
    first = cfg.train.seed
    seeds = range(first, first + (1 if command == "train" else max(1, cfg.compare.seeds)))
    for i, row in enumerate(summary):
        wrong = (f"activation {row['activation'][:40]!r} is not one of config.yaml's ({', '.join(sorted(trained))})"
                 if row["activation"] not in trained else
                 f"seed {row['seed']} is not one of config.yaml's ({first}..{seeds[-1]})"
                 if row["seed"] not in seeds else None)
        if wrong:
            raise StorageError(f"{path}: row {i + 1}: {wrong}; the folder is damaged (or config.yaml is another "
                               "experiment's)")


FOLDER_FILES = ("env.json", "status.json", "summary.json", "summary.csv", "metrics.csv", "weights.pt",
                "stats.json", "stats.csv", "study.json", "study.csv")  # what actlab writes (config.yaml: see below)


def _check_regular(path: Path) -> None:
    """Each of the folder's files that exists is a regular file; else StorageError. A folder or a FIFO where
    summary.json goes read as "no summary yet" (show: 0 runs), and a FIFO would block a reader forever."""
    for name in FOLDER_FILES:
        entry = path / name
        if os.path.lexists(entry) and not entry.is_file():
            if entry.is_dir():  # the words of folders.check_writable, which report and resume also run
                raise StorageError(f"'{entry}' is a folder where actlab writes a file; move it away")
            kind = "a link to nothing" if not entry.exists() else "not a regular file (a FIFO, socket or device)"
            raise StorageError(f"'{entry}' is {kind}, where actlab keeps a file; the folder is damaged: move it "
                               "away")


def load_experiment(path: Path) -> StoredExperiment:
    """An experiment folder read back (config, status, environment, per-run summary), without running any
    code from it; a damaged file is a StorageError naming it."""
    _check_regular(path)
    if not (path / "config.yaml").is_file():
        raise StorageError(f"'{path}' is not an actlab experiment folder (no config.yaml); "
                           "`actlab runs` lists them")
    cfg = config.read_config(path / "config.yaml")
    if not (path / "metrics.csv").is_file():
        raise StorageError(f"{path / 'metrics.csv'} is missing or not a file; the folder is damaged")
    status = _read_json(path / "status.json", dict, {"status": "unknown"})
    _check_status(path / "status.json", status)
    summary = _summary_rows(path / "summary.json")
    _check_planned(path / "summary.json", cfg, status.get("command"), summary)
    for i, row in enumerate(summary):  # over a grid every row names its setting
        missing = [k for k in cfg.compare.grid if k not in row]
        if missing:
            raise StorageError(f"{path / 'summary.json'}: row {i + 1}: grid column '{missing[0]}' missing; "
                               "the folder is damaged")
    return StoredExperiment(path, cfg, status, _read_json(path / "env.json", dict, {}), summary)
