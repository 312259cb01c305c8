"""Experiment folders as a collection: list and filter them, tell two apart, delete them safely.

Reading a folder never executes code from it (config.yaml is read with yaml.safe_load, the rest is JSON).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import shutil
import statistics
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actlab import activations, config, grid, signals, storage

STATUSES = ("running", "complete", "incomplete")
MARKERS = ("config.yaml", "env.json", "status.json")  # what every experiment folder has from its first second


class FolderError(storage.StorageError):
    """A folder that is not what the command needs (not an experiment folder, a symlink, missing...)."""


def describe(stored: storage.StoredExperiment) -> dict[str, Any]:
    """One experiment folder as plain data: the row of ``actlab runs`` (and of its ``--json``)."""
    cfg, status = stored.config, stored.status
    acts = sorted({row["activation"] for row in stored.summary})
    return {
        "folder": stored.path.name,
        "path": str(stored.path),
        "name": cfg.output.name,
        "command": status.get("command", "?"),
        "status": status.get("status", "unknown"),
        "started": status.get("started"),
        "task": cfg.data.task,
        "epochs": cfg.train.epochs,
        "activations": acts,
        "seeds": len({row["seed"] for row in stored.summary}),
        "runs_done": status.get("runs_done", len(stored.summary)),
        "runs_total": status.get("runs_total"),
    }


def select(rows: Sequence[dict[str, Any]], status: str | None = None, task: str | None = None,
           command: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    """The rows (``describe``) that match every filter given; ``name`` is a glob on the folder name."""
    if status is not None and status not in STATUSES:
        raise FolderError(f"--status must be one of {', '.join(STATUSES)} (got {status!r})")
    if command is not None and command not in ("train", "compare"):
        raise FolderError(f"--command must be train or compare (got {command!r})")
    return [
        row for row in rows
        if (status is None or row["status"] == status) and (task is None or row["task"] == task)
        and (command is None or row["command"] == command)
        and (name is None or fnmatch.fnmatchcase(row["folder"], name) or fnmatch.fnmatchcase(row["name"], name))
    ]


# --------------------------------------------------------------------------------------------------
# Two experiments side by side.


@dataclass
class Difference:
    """What differs between experiments A and B."""

    a: Path
    b: Path
    config: list[tuple[str, Any, Any]]  # (dotted key, value in A, value in B), keys that differ only
    # (activation, grid setting as text ("" without a grid), median final loss in A, in B); NaN: not run there
    final_loss: list[tuple[str, str, float, float]]
    runs: tuple[int, int]  # finished runs in A and in B

    def as_dict(self) -> dict[str, Any]:
        nan = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
        return {
            "a": str(self.a), "b": str(self.b),
            "config": [{"key": k, "a": va, "b": vb} for k, va, vb in self.config],
            "final_loss_median": [{"activation": act, "setting": setting, "a": nan(va), "b": nan(vb)}
                                  for act, setting, va, vb in self.final_loss],
            "runs": {"a": self.runs[0], "b": self.runs[1]},
        }


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    return {prefix: data}


def _medians(stored: storage.StoredExperiment, keys: Sequence[str] = ()) -> dict[tuple[str, str], float]:
    """Per activation and setting of ``keys`` (grid keys), the median over seeds of the final full-data loss
    (diverged runs count as +inf). A grid's settings are kept apart: pooled, lr=1e-3 and lr=1 would make one
    meaningless median. A key the folder has no grid over takes its config's value, so that a plain compare
    meets the grid point it ran at."""
    grid_keys = set(stored.config.compare.grid) if stored.config is not None else set()
    own = {k: _own_value(stored.config, k) for k in keys if k not in grid_keys}
    by_act: dict[tuple[str, str], list[float]] = {}
    for row in stored.summary:
        value = row.get("final_loss", math.nan)
        value = value if isinstance(value, int | float) and math.isfinite(value) else math.inf
        setting = grid.label({k: row.get(k) if k in grid_keys else own[k] for k in keys})  # as in run ids
        by_act.setdefault((row["activation"], setting), []).append(value)
    return {key: statistics.median(values) for key, values in by_act.items()}


def _own_value(cfg: config.Config | None, key: str) -> Any:
    try:
        return grid.plain_value(grid.own_value(cfg, key)) if cfg is not None else None
    except (KeyError, AttributeError, TypeError):  # an option the config does not set
        return None


def diff(a: storage.StoredExperiment, b: storage.StoredExperiment) -> Difference:
    """The config keys whose values differ, and each activation's median final loss in both, at each setting of
    either folder's grid keys."""
    fa, fb = _flat(config.to_dict(a.config)), _flat(config.to_dict(b.config))
    keys = list(fa) + [k for k in fb if k not in fa]
    changed = [(k, fa.get(k), fb.get(k)) for k in keys if fa.get(k) != fb.get(k)]
    grid_keys = list(dict.fromkeys([*a.config.compare.grid, *b.config.compare.grid]))
    ma, mb = _medians(a, grid_keys), _medians(b, grid_keys)
    both = list(ma) + [key for key in mb if key not in ma]
    losses = [(act, setting, ma.get((act, setting), math.nan), mb.get((act, setting), math.nan))
              for act, setting in both]
    return Difference(a.path, b.path, changed, losses, (len(a.summary), len(b.summary)))


def check_runs_dir(runs_dir: Path) -> None:
    """``runs_dir`` (``--out``) may hold new experiment folders: it is not itself one (a folder made inside an
    experiment would be listed, reported and deleted with it); else FolderError."""
    if all((runs_dir / marker).is_file() for marker in MARKERS):
        raise FolderError(f"'{runs_dir}' is an experiment folder; --out names the folder that holds experiment "
                          f"folders, e.g. '{runs_dir.parent}'")


# --------------------------------------------------------------------------------------------------
# Writing into a folder that exists (report, resume): only into its own files.


WRITTEN = {".md", ".html", ".csv", ".json", ".yaml", ".pt", ".png", ".svg", ".tmp"}  # what actlab writes there


def check_writable(path: Path) -> None:
    """An experiment folder ``report`` or ``resume`` may write into: nothing in it is a symbolic link (a file
    written or appended through one, a figure or a ``*.tmp``, would land outside the folder, possibly over a
    file of the user's), nothing is a FIFO, socket or device (reading one would block), no file actlab writes
    (``name.ext``) is a folder, and its path is UTF-8 (report.md names it); else FolderError."""
    if any("\udc80" <= c <= "\udcff" for c in str(path.resolve())):  # bytes that were not UTF-8, kept by Python
        raise FolderError(f"{str(path)!r}: the folder's path is not UTF-8 text, and the report names it; rename the "
                          "folder (or a parent) in UTF-8")
    # a line break in it would cut report.md's lines and the replay command it prints (as --out refuses it)
    broken = next((c for c in str(path.resolve()) if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if broken is not None:
        raise FolderError(f"{str(path)!r}: the folder's path holds the control character {broken!r}, and the report "
                          "names it; rename the folder (or a parent) without it")
    for root, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            entry = Path(root, name)
            if entry.is_symlink():
                raise FolderError(f"'{entry}' is a symbolic link: actlab writes into this folder and never through "
                                  "a link, which could overwrite a file outside it; replace the link by a copy of its "
                                  "file, or remove it")
            if not (entry.is_file() or entry.is_dir()):  # a FIFO would block the read (a checkpoint) forever
                raise FolderError(f"'{entry}' is not a regular file (a FIFO, socket or device): an experiment folder "
                                  "holds files and folders only; remove it")
        for name in sorted(dirs):
            if root == str(path) and Path(name).suffix in WRITTEN:  # a user's own notes.d or v1.2 is fine
                raise FolderError(f"'{Path(root, name)}' is a folder where actlab writes a file; move it away")


def check_weights(stored: storage.StoredExperiment, weights: dict[str, dict[str, Any]]) -> None:
    """Every run's final weights in weights.pt (read back, tensors only) fit the net of the folder's config:
    the parameter names and shapes the report loads them into; else FolderError naming the run. Shapes are
    compared, no net is built (a config can name a net too large to allocate). A grid over the net's shape
    (model.sizes, depth or width) gives each point its own net: not checked here."""
    if any(key.split(".")[:2] in (["model", "sizes"], ["model", "depth"], ["model", "width"])
           for key in stored.config.compare.grid):
        return
    sizes = stored.config.model.sizes
    hidden: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}  # (activation, options) -> its parameters
    for row in stored.summary:
        state = weights.get(row["run"])
        if state is None:
            continue
        key = (row["activation"], str(row.get("options") or ""))
        if key not in hidden:
            try:  # a registry activation's own parameters (prelu's slope); user code is never imported
                spec = activations.resolve(key[0], imports=False)
                options = json.loads(key[1]) if key[1] else {}
                hidden[key] = {k: tuple(t.shape) for k, t in spec.build(options).state_dict().items()}
            except (activations.ActivationError, ValueError, TypeError):
                continue  # not built by the report either
        want = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            want |= {f"{2 * i}.weight": (fan_out, fan_in), f"{2 * i}.bias": (fan_out,)}
            if i < len(sizes) - 2:
                want |= {f"{2 * i + 1}.{k}": shape for k, shape in hidden[key].items()}
        got = {k: tuple(t.shape) for k, t in state.items()}
        if got != want:
            wrong = next((k for k in want if got.get(k) != want[k]), None) or next(k for k in got if k not in want)
            raise FolderError(f"{stored.path / 'weights.pt'}: run {row['run']}: parameter {wrong} is "
                              f"{list(got[wrong]) if wrong in got else 'missing'}, not {list(want.get(wrong, ()))} as "
                              f"the config's {'-'.join(map(str, sizes))} net has; the folder is damaged: move "
                              "weights.pt away to report without the final weights")


# --------------------------------------------------------------------------------------------------
# Deleting: only what is provably an experiment folder, never through a symlink.


def check_removable(path: Path, force: bool = False) -> Path:
    """``path`` itself if it is a real actlab experiment folder that may be deleted (``force``: even one marked
    running); else FolderError."""
    if path.is_symlink():
        raise FolderError(f"'{path}' is a symbolic link: actlab rm deletes only real experiment folders, "
                          "never what a link points to")
    if not path.exists():
        raise FolderError(f"'{path}' does not exist; `actlab runs` lists the experiment folders")
    if not path.is_dir():
        raise FolderError(f"'{path}' is not a folder: actlab rm deletes only experiment folders")
    missing = [m for m in MARKERS if not (path / m).is_file() or (path / m).is_symlink()]
    if missing:
        raise FolderError(f"'{path}' is not an actlab experiment folder (no {', '.join(missing)}): not deleted")
    try:
        stored = storage.load_experiment(path)
    except (config.ConfigError, OSError, ValueError) as exc:
        raise FolderError(f"'{path}' is not a readable actlab experiment folder ({exc}): not deleted") from None
    here = Path.cwd().resolve()
    if here == path.resolve() or path.resolve() in here.parents:
        raise FolderError(f"'{path}' holds the current directory: cd out of it first")
    if stored.status.get("status") == "running" and not force:
        raise FolderError(f"'{path}' is marked running (another actlab may be writing it); if that run is dead, "
                          "use --force")
    return path


def remove(path: Path) -> None:
    """Delete an experiment folder checked by ``check_removable`` (symlinks inside are unlinked, not followed).

    Ctrl-C, SIGTERM or SIGHUP while it deletes waits until the folder is gone: cut half-way, it would leave a
    folder that is no longer an experiment folder, which ``actlab rm`` then refuses to delete."""
    with signals.held():
        _remove(path)


def _remove(path: Path) -> None:
    if not shutil.rmtree.avoids_symlink_attacks and any(os.scandir(path)):
        # without the fd-based rmtree, delete entry by entry without following links
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                _remove(Path(entry.path))
            else:
                os.unlink(entry.path)
        os.rmdir(path)
        return
    shutil.rmtree(path)


def config_changed(stored: storage.StoredExperiment) -> bool:
    """config.yaml is not the one the experiment ran with: its sha256 differs from the one env.json recorded
    when the folder was made (a folder whose env.json has none, written by an older actlab, cannot tell)."""
    expected = stored.env.get("config_sha256")
    return expected is not None and hashlib.sha256((stored.path / "config.yaml").read_bytes()).hexdigest() != expected


def check_config_unchanged(stored: storage.StoredExperiment) -> None:
    """``report``: FolderError where config.yaml was edited after the runs: the statistics read the task, the
    epochs and the sizes from it, and would describe an experiment that did not run."""
    if config_changed(stored):
        raise FolderError(f"'{stored.path / 'config.yaml'}' was changed after the experiment ran (env.json recorded "
                          "another sha256): a report would describe an experiment that did not run; restore it")

