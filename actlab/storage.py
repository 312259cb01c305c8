"""Experiment folders: the only module that writes files (besides the plots and the report it calls for).

An experiment folder ``<runs>/<YYYYmmdd-HHMMSS>_<name>/`` holds:

- ``config.yaml``: the resolved config; ``actlab train|compare --config`` on it replays the experiment;
- ``env.json``: actlab, torch and Python versions, device, threads, platform, the command line;
- ``status.json``: running | complete | incomplete (interrupted or crashed), with counts and times;
- ``metrics.csv``: one row per run and epoch (long format), every measure of ``RunResult.history``;
- ``summary.csv`` / ``summary.json``: one row per run: final and best loss, epoch of best, status, time;
- ``weights.pt``: every run's final parameters (``torch.load`` -> {run id: FeedForward state_dict});
- ``stats.csv`` / ``stats.json`` (compare, report): per activation, the statistics over seeds;
- ``report.md`` and figures (compare, report): derived from the files above, rewritten by ``actlab report``.

Files are appended or rewritten as runs finish, so whatever finished before a crash or Ctrl-C is readable.
Nothing that exists is ever overwritten: a new folder is made for every command.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from actlab import __version__, activations, config
from actlab.engines import RunResult

METRICS_BASE = ["run", "activation", "seed", "lr", "epoch", "train_loss", "last_batch_loss", "full_loss"]


class StorageError(OSError):
    """A runs folder that cannot be created or written."""


def metric_columns(cfg: config.Config) -> list[str]:
    """The columns of metrics.csv for this config (fixed up front, so every row has the same shape)."""
    n_layers = len(cfg.model.sizes) - 1
    hidden = range(1, n_layers)
    cols = list(METRICS_BASE)
    if cfg.data.test_fraction > 0:
        cols.append("test_loss")
    cols += ["seconds"]
    if cfg.train.diagnostics:
        cols += [f"grad_norm_L{layer}" for layer in range(1, n_layers + 1)]
        cols += [f"{kind}_L{layer}" for kind in ("dead", "saturated") for layer in hidden]
    cols += [f"slope_L{layer}" for layer in hidden]
    return cols


def metrics_table(cfg: config.Config, results: Sequence[RunResult]) -> dict[str, list[Any]]:
    """The rows of metrics.csv for ``results``, by column (what ``StoredExperiment.metrics`` reads back)."""
    table: dict[str, list[Any]] = {c: [] for c in metric_columns(cfg)}
    for r in results:
        n = r.epochs_done
        fixed = {"run": [r.spec.run_id] * n, "activation": [r.spec.activation] * n, "seed": [r.spec.seed] * n,
                 "lr": [r.spec.lr] * n, "epoch": list(range(1, n + 1))}
        for column, values in table.items():
            values.extend(fixed[column] if column in fixed else r.history.get(column) or [math.nan] * n)
    return table


def _nan_to_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def run_summary(result: RunResult) -> dict[str, Any]:
    """One row of summary.csv: final and best losses, epoch of best, status and time."""
    h = result.history
    full = h.get("full_loss", [])
    best_epoch = min(range(len(full)), key=full.__getitem__) + 1 if full else None
    last = lambda name: h[name][-1] if h.get(name) else float("nan")  # noqa: E731
    test = h.get("test_loss", [])
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
        "seconds": result.seconds,
        "engine": result.engine,
    }


def environment(device: torch.device, argv: Sequence[str] | None = None,
                cfg: config.Config | None = None) -> dict[str, Any]:
    """env.json: versions, device, threads, the command line, what decides the CPU kernels (CPU model,
    ATen's capability, MKL's CNR mode) and, given the config (CPU only), the engines' start-up probe under
    "equivalence": {"bitwise", "checked", "failed"} (does the batched engine give the loop engine's numbers
    bit for bit on this machine for this experiment's shapes?)."""
    from actlab.engines import RunSpec, probe

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
        n_test = round(cfg.data.samples * cfg.data.test_fraction)
        env["equivalence"] = probe.for_training(specs, cfg.model.sizes, cfg.data.samples - n_test, n_test,
                                                cfg.train.batch_size)
    return env


def new_experiment_dir(runs_dir: Path, name: str, now: float | None = None) -> Path:
    """Create and return a fresh ``<runs_dir>/<timestamp>_<name>`` (a suffix -2, -3... if taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
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
        raise StorageError(
            f"cannot create an experiment folder in '{runs_dir}': {exc.strerror or exc}; "
            "choose another folder with --out DIR"
        ) from None
    raise StorageError(f"too many experiment folders named {stamp}_{name} in '{runs_dir}'")


def write_text(path: Path, text: str) -> Path:
    """Write a file of an experiment folder atomically: a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


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
    _results: list[RunResult] = field(default_factory=list)
    _started: float = field(default_factory=time.time)

    @classmethod
    def create(cls, cfg: config.Config, command: str, run_order: Sequence[str], device: torch.device | str,
               runs_dir: Path | None = None) -> ExperimentWriter:
        """A new experiment folder holding the config and environment, marked running."""
        path = new_experiment_dir(runs_dir or Path(cfg.output.runs_dir), cfg.output.name)
        writer = cls(path, cfg, command, list(run_order))
        (path / "config.yaml").write_text(
            f"# actlab {command}: resolved config; replay with `actlab {command} --config {path / 'config.yaml'}`\n"
            + config.dump_yaml(cfg)
        )
        _write_json(path / "env.json", environment(torch.device(device), cfg=cfg))
        with open(path / "metrics.csv", "w", newline="") as f:
            csv.writer(f).writerow(metric_columns(cfg))
        writer._status("running")
        return writer

    def _status(self, status: str, error: str | None = None) -> None:
        _write_json(self.path / "status.json", {
            "status": status,
            "command": self.command,
            "runs_done": len(self._results),
            "runs_total": len(self.run_order),
            "diverged": sum(r.status == "diverged" for r in self._results),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self._started)),
            "seconds": round(time.time() - self._started, 3),
            **({"error": error} if error else {}),
        })

    def add(self, results: Sequence[RunResult]) -> None:
        """Append finished runs: their metrics rows and an updated summary."""
        table = metrics_table(self.cfg, results)
        with open(self.path / "metrics.csv", "a", newline="") as f:
            # floats as Python writes them (exact round trip), NaN as an empty cell
            cells = [[v if v == v else "" for v in values] for values in table.values()]
            csv.writer(f).writerows(zip(*cells))
        self._results.extend(results)
        self._write_summary()
        self._status("running")

    def _write_summary(self) -> None:
        position = {run_id: i for i, run_id in enumerate(self.run_order)}
        done = sorted(self._results, key=lambda r: position.get(r.spec.run_id, len(position)))
        _write_rows(self.path, "summary", [run_summary(r) for r in done])

    def finish(self, status: str = "complete", error: str | None = None) -> None:
        """Save final weights and mark the folder complete (or incomplete, with the reason)."""
        torch.save({r.spec.run_id: r.state for r in self._results}, self.path / "weights.pt")
        self._status(status, error)

    @property
    def results(self) -> list[RunResult]:
        return list(self._results)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)  # repr: every float round-trips exactly
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

    def metrics(self) -> dict[str, list[Any]]:
        """metrics.csv by column: run and activation as text, seed and epoch as int, the rest float (NaN
        for empty cells)."""
        if self.table is None:
            self.table = self._read_metrics()
        return self.table

    def _read_metrics(self) -> dict[str, list[Any]]:
        with open(self.path / "metrics.csv", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            columns: list[list[Any]] = [list(col) for col in zip(*reader)] or [[] for _ in header]
        table = {}
        for name, cells in zip(header, columns):
            if name in ("run", "activation"):
                table[name] = cells
            elif name in ("seed", "epoch"):
                table[name] = [int(c) for c in cells]
            else:
                table[name] = [float(c) if c else math.nan for c in cells]
        return table

    def curves(self, measure: str = "full_loss") -> dict[str, list[float]]:
        """run id -> per-epoch values of ``measure``."""
        table = self.metrics()
        out: dict[str, list[float]] = {}
        for run, value in zip(table.get("run", []), table.get(measure, [])):
            out.setdefault(run, []).append(value)
        return out


def write_stats(folder: Path, rows: Sequence[dict[str, Any]]) -> None:
    """stats.csv and stats.json: the per-activation statistics over seeds (regenerated on request)."""
    _write_rows(folder, "stats", rows)


def list_experiments(runs_dir: Path) -> list[StoredExperiment]:
    """Every experiment folder directly under ``runs_dir``, oldest first (unreadable ones skipped)."""
    if not runs_dir.is_dir():
        raise StorageError(f"'{runs_dir}' is not a folder; give the folder that holds experiment folders")
    found = []
    for path in sorted(p for p in runs_dir.iterdir() if (p / "config.yaml").is_file()):
        try:
            found.append(load_experiment(path))
        except (config.ConfigError, OSError, ValueError):
            continue  # a folder from another version or a half-written one: list the rest
    return found


def load_experiment(path: Path) -> StoredExperiment:
    """An experiment folder read back (config, status, environment, per-run summary)."""
    if not (path / "config.yaml").is_file():
        raise StorageError(f"'{path}' is not an actlab experiment folder (no config.yaml); "
                           "`actlab runs` lists them")
    cfg = config.load_config(path / "config.yaml")
    read = lambda name, default: json.loads((path / name).read_text()) if (path / name).is_file() else default  # noqa: E731
    summary = [{k: (float("nan") if v is None else v) for k, v in row.items()} for row in read("summary.json", [])]
    return StoredExperiment(path, cfg, read("status.json", {"status": "unknown"}), read("env.json", {}), summary)
