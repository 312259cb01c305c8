"""Bad input, third sweep: signals before the CLI exists, damaged folders (empty metrics, summaries that
disagree with their config, checkpoints without optimizer state), and what a fresh sweep of every command
found.

The contract is test_hostile.py's: one line on stderr, the right exit code (2 for user errors, 128 + the
signal's number for a signal), no traceback, nothing already written lost or changed.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import one_line, snapshot
from typer.testing import CliRunner

from actlab import checkpoint, cli, config, workflow

ROOT = Path(__file__).parent.parent
STOPS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


def run_python(code: str, tmp_path: Path, **kwargs) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python with this tree first on the path, from ``tmp_path``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kwargs.setdefault("timeout", 120)
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          **kwargs)


def assert_one_line(proc: subprocess.CompletedProcess, pattern: str, code: int) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert len(lines) == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert pattern in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------------------------------
# 1. A signal while the CLI is still being imported (typer, rich: a tenth of a second)

# A signal sent by the process to itself when ``trigger`` is first imported: the moment is exact, not luck.
FIRE_ON_IMPORT = """
import importlib.abc, os, sys
class Fire(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {trigger!r}:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), {signum})
        return None
sys.meta_path.insert(0, Fire())
sys.argv = ["actlab", "--help"]
"""


def _entry_point() -> str:
    """The console script's target, as pyproject.toml declares it (``module:function``)."""
    # read with a pattern: tomllib is Python 3.11+, actlab runs on 3.10
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^\[project\.scripts\]\s*actlab\s*=\s*"([^"]+)"', text, re.M).group(1)


# `python -m actlab` and the console script (written as pip writes it, from pyproject.toml's target)
LAUNCHERS = {
    "python -m": "import runpy\nrunpy.run_module('actlab', run_name='__main__', alter_sys=True)\n",
    "script": "import sys\nfrom {module} import {function}\nsys.exit({function}())\n",
}


@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize("trigger", ["actlab.signals", "typer"])  # before the handlers exist, in the CLI's import
@pytest.mark.parametrize("signum", STOPS)
def test_a_signal_while_the_cli_is_imported_is_one_line(tmp_path, launcher, trigger, signum):
    module, function = _entry_point().split(":")
    code = FIRE_ON_IMPORT.format(trigger=trigger, signum=int(signum)) + \
        LAUNCHERS[launcher].format(module=module, function=function)
    proc = run_python(code, tmp_path)
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    assert_one_line(proc, f"({name}): stopped before the command finished", 128 + signum)
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []


def test_the_entry_point_is_the_guarded_one():
    # the console script must start where the handlers are installed first, not at the CLI (typer's import)
    assert _entry_point() == "actlab.__main__:main"
    first = [line for line in (ROOT / "actlab" / "__main__.py").read_text().splitlines()
             if line and not line.startswith(("#", '"""')) and not line[0].isspace() and "import" in line]
    assert first[0] == "import signal" or first[0].startswith("import signal "), first[:2]


def test_a_signal_after_the_command_ended_changes_nothing(tmp_path):
    # the help is printed whole and its exit code set: a SIGTERM now neither cuts the exit nor kills silently
    code = ("import os, signal, sys\nsys.argv = ['actlab', '--version']\n"
            "from actlab import signals\nreal = signals.ignore_all\n"
            "def ignore_then_fire():\n    real()\n    os.kill(os.getpid(), signal.SIGTERM)\n"
            "signals.ignore_all = ignore_then_fire\n"
            "from actlab.__main__ import main\nmain()\n")
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout.startswith("actlab "), proc


# --------------------------------------------------------------------------------------------------
# nohup: a signal the user made actlab ignore stays ignored


def _ignore_sighup():
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


HANG_UP_AT_PREFLIGHT = """
import os, signal, sys
from actlab import experiment
real = experiment.preflight
def preflight(*a, **k):
    os.killpg(0, signal.SIGHUP)  # the terminal closes: the whole group gets SIGHUP, workers too
    return real(*a, **k)
experiment.preflight = preflight
sys.argv = ["actlab", *{args!r}]
from actlab.__main__ import main
main()
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_nohup_keeps_a_run_alive_through_a_hang_up(tmp_path, workers):
    args = ["compare", "-a", "relu,tanh", "--seeds", "2", "--epochs", "2", "-q", "--out", str(tmp_path / "runs"),
            "--set", f"train.workers={workers}", "--no-report"]
    proc = run_python(HANG_UP_AT_PREFLIGHT.format(args=args), tmp_path, preexec_fn=_ignore_sighup,
                      start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = (tmp_path / "runs").iterdir()
    assert '"complete"' in (folder / "status.json").read_text()


CTRL_C_WHILE_A_WORKER_TRAINS = """
import os, signal, sys, time
from actlab.engines.executors import local
MAIN = os.getpid()
def train_chunk(task, *args, **kwargs):  # in a worker: Ctrl-C for the parent, then a chunk that goes on
    if os.getpid() == MAIN:  # not in a worker (one chunk only): never signal whoever started this process
        raise SystemExit("expected worker processes")
    os.kill(os.getppid(), signal.SIGINT)
    time.sleep(120)
local.train_chunk = train_chunk
sys.argv = ["actlab", *{args!r}]
from actlab.__main__ import main
main()
"""


def _ignore_sigterm():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@pytest.mark.parametrize("launcher_ignores_sigterm", [False, True])
def test_two_ctrl_cs_while_workers_train_end_the_run(tmp_path, launcher_ignores_sigterm):
    """Each worker sends its parent a Ctrl-C: the second one came while the pool was being terminated and cut
    that short, and join() then waited forever (about one run in three). And the parent ends its workers with
    SIGTERM: a worker that kept a launcher's ignore (`trap '' TERM`) outlived the Ctrl-C, and the parent
    waited for it. Both were hangs: here the timeout of run_python."""
    # 16 runs: two worker processes (8 runs at least each), whose parent is the actlab process
    args = ["compare", "-a", "relu,tanh", "--seeds", "8", "--epochs", "2", "-q", "--out", str(tmp_path / "runs"),
            "--set", "train.workers=2", "--no-report"]
    proc = run_python(CTRL_C_WHILE_A_WORKER_TRAINS.format(args=args), tmp_path, start_new_session=True, timeout=60,
                      preexec_fn=_ignore_sigterm if launcher_ignores_sigterm else None)
    assert_one_line(proc, "interrupted (Ctrl-C)", 130)


def test_without_nohup_a_hang_up_still_stops_the_run(tmp_path):
    args = ["train", "--epochs", "2", "-q", "--out", str(tmp_path / "runs")]
    proc = run_python(HANG_UP_AT_PREFLIGHT.format(args=args), tmp_path, start_new_session=True)
    assert_one_line(proc, "(SIGHUP)", 129)


# --------------------------------------------------------------------------------------------------
# 2. Folders whose files disagree: metrics.csv without the rows of the runs summary.json lists, summary rows of
#    activations or seeds the config does not train, checkpoints without their optimizer's buffers.

runner = CliRunner()
FAST = ["--epochs", "2", "--set", "train.workers=1", "-q"]


def invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    parent = tmp_path_factory.mktemp("finished")
    result = invoke("compare", "-a", "relu,tanh", "--seeds", "2", *FAST, "--no-report", "--out", parent)
    assert result.exit_code == 0, result.output
    (folder,) = parent.iterdir()
    return folder


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "runs" / folder.name
    shutil.copytree(folder, target)
    return target


def _metrics_lines(keep):
    def damage(folder: Path) -> None:
        lines = (folder / "metrics.csv").read_text().splitlines(keepends=True)
        (folder / "metrics.csv").write_text("".join(line for i, line in enumerate(lines) if keep(i, line)))
    return damage


# Each refused: the report would rank the runs by summary.json's final losses, while every per-epoch number
# (curves, epochs to the threshold, gradient norms, dead units) came out missing or wrong, and the report
# even said "ran with train.diagnostics off" (an empty metrics.csv, before). Nothing of the runs can be
# recovered from the folder, so a note would only sit beside wrong numbers: one line, exit 2.
BROKEN_METRICS = {
    "empty": (_metrics_lines(lambda i, line: False), "metrics.csv is empty (not even its header row)"),
    "header only": (_metrics_lines(lambda i, line: i == 0), "run 'relu/seed0' has no rows"),
    "a run's rows gone": (_metrics_lines(lambda i, line: not line.startswith("tanh/seed1,")),
                          "run 'tanh/seed1' has no rows"),
    "its last epoch gone": (_metrics_lines(lambda i, line: not line.startswith("relu/seed0,relu,0,0.001,2,")),
                            "run 'relu/seed0' has rows up to epoch 1, and summary.json says it trained 2 epochs"),
    # epochs out of order put points of a curve at the wrong epochs (epochs-to-threshold, the figures)
    "an epoch twice": (lambda f: (f / "metrics.csv").write_text((f / "metrics.csv").read_text().replace(
        "relu/seed0,relu,0,0.001,1,", "relu/seed0,relu,0,0.001,2,", 1)), "run 'relu/seed0': epoch 2 out of order"),
    "an epoch below 0": (lambda f: (f / "metrics.csv").write_text((f / "metrics.csv").read_text().replace(
        "tanh/seed1,tanh,1,0.001,0,", "tanh/seed1,tanh,1,0.001,-1,", 1)), "run 'tanh/seed1': epoch -1 out of order"),
    "no epoch column": (lambda f: (f / "metrics.csv").write_text(
        (f / "metrics.csv").read_text().replace(",epoch,", ",epochs,", 1)), "metrics.csv has no column epoch"),
}


@pytest.mark.parametrize("command", ["report", "show"])
@pytest.mark.parametrize("case", BROKEN_METRICS)
def test_metrics_without_the_summarys_runs_is_one_line(finished, tmp_path, case, command):
    damage, pattern = BROKEN_METRICS[case]
    folder = _copy(finished, tmp_path)
    damage(folder)
    before = snapshot(folder)
    line = one_line(invoke(command, folder), pattern)
    assert "the folder is damaged" in line and "train it again: `actlab compare --config" in line
    assert snapshot(folder) == before


def _summary(edit):
    def damage(folder: Path) -> None:
        rows = json.loads((folder / "summary.json").read_text())
        for row in rows:
            edit(row)
        (folder / "summary.json").write_text(json.dumps(rows))
    return damage


def _rename(old: str, new: str):
    def edit(row):
        if row["activation"] == old:
            row["activation"], row["run"] = new, row["run"].replace(old, new)
    return edit


# Refused: report, show and diff would rank gelu (with tanh's losses) as if this config had trained it; runs
# lists the folder as damaged. Which file is wrong cannot be told from the folder: one line, exit 2.
FOREIGN_SUMMARY = {
    "an activation the config lacks": (_summary(_rename("tanh", "gelu")),
                                       "row 3: activation 'gelu' is not one of config.yaml's (relu, tanh)"),
    "a seed the config lacks": (_summary(lambda row: row.update(seed=row["seed"] + 7)),
                                "row 1: seed 7 is not one of config.yaml's (0..1)"),
}


@pytest.mark.parametrize("command", ["report", "show", "diff", "resume", "runs"])
@pytest.mark.parametrize("case", FOREIGN_SUMMARY)
def test_a_summary_of_runs_the_config_does_not_train_is_one_line(finished, tmp_path, case, command):
    damage, pattern = FOREIGN_SUMMARY[case]
    folder = _copy(finished, tmp_path)
    damage(folder)
    before = snapshot(folder)
    if command == "runs":
        result = invoke("runs", folder.parent)
        assert result.exit_code == 0 and "damaged" in result.stdout and pattern in result.stderr, result.output
    else:
        args = (folder, finished) if command == "diff" else (folder,)
        one_line(invoke(command, *args), pattern)
    assert snapshot(folder) == before


def test_the_config_and_summary_checked_are_those_of_every_command(tmp_path):
    # train plans model.activation at train.seed; compare plans compare.activations (aliases canonical) x seeds
    result = invoke("train", "-a", "swish", "--seed", "3", *FAST, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.iterdir()
    assert invoke("show", folder).exit_code == 0
    _summary(lambda row: row.update(seed=4))(folder)
    one_line(invoke("show", folder), "row 1: seed 4 is not one of config.yaml's (3..3)")


# An interrupted compare: relu's runs saved (stack 0), tanh's in a checkpoint (stack 1), sigmoid's not begun.
SETUP = {"compare": {"activations": ["relu", "tanh", "sigmoid"], "seeds": 2},
         "train": {"epochs": 6, "chunk_size": 2, "checkpoint_seconds": 0.0, "workers": 1}}


def make_cfg(tmp: Path, **train) -> config.Config:
    raw = json.loads(json.dumps(SETUP))
    raw["train"].update(train)
    raw["output"] = {"runs_dir": str(tmp)}
    return config.build_config(raw)


def stop_at(share: float):
    def progress(state) -> None:
        if state.fraction >= share:
            raise KeyboardInterrupt
    return progress


def interrupted(cfg) -> Path:
    with pytest.raises(workflow.Interrupted) as stop:
        workflow.run_compare(cfg, progress=stop_at(0.5), report=False)
    folder = stop.value.path
    assert list((folder / "checkpoints").glob("chunk-*.pt")) and json.loads((folder / "summary.json").read_text())
    return folder


def without_timing(path: Path) -> list[list[str]]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    keep = [i for i, name in enumerate(rows[0]) if name != "seconds"]
    return [[row[i] for i in keep] for row in rows]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> tuple[Path, Path]:
    """An interrupted compare, and the same compare uninterrupted."""
    whole = workflow.run_compare(make_cfg(tmp_path_factory.mktemp("whole")), report=False).path
    return interrupted(make_cfg(tmp_path_factory.mktemp("stopped"))), whole


# Resume goes on: the runs whose rows are lost are trained again (they are not counted as saved), so the
# folder ends as the uninterrupted one, every number the same. Before, a header-only metrics.csv was resumed
# into a "complete" folder its own report then refused, and an empty one was refused as "columns are not
# those of the folder's config.yaml (was the config edited?)", which it was not.
@pytest.mark.parametrize("case", ["empty", "header only", "a run's rows gone"])
def test_resume_trains_the_runs_whose_rows_are_lost_again(stopped, tmp_path, case):
    folder, whole = _copy(stopped[0], tmp_path), stopped[1]
    lines = (folder / "metrics.csv").read_text().splitlines(keepends=True)
    keep = {"empty": lambda line: False, "header only": lambda line: line.startswith("run,"),
            "a run's rows gone": lambda line: not line.startswith("relu/seed1,")}[case]
    (folder / "metrics.csv").write_text("".join(filter(keep, lines)))
    report = invoke("report", folder)
    one_line(report, f"`actlab resume {folder}` trains those runs again")
    done = workflow.resume(folder, report=False)
    retrained = {r.spec.run_id for r in done.experiment.results}
    assert {"relu/seed1", "sigmoid/seed0", "sigmoid/seed1"} <= retrained
    assert ("relu/seed0" in retrained) == (case != "a run's rows gone")
    assert without_timing(folder / "metrics.csv") == without_timing(whole / "metrics.csv")
    assert json.loads((folder / "status.json").read_text())["status"] == "complete"


# Refused (before, resumed with the moments restarted at zero: other numbers than an uninterrupted run's,
# and nothing said): the saved state cannot continue the runs; retraining them is the user's call.
@pytest.mark.parametrize(("train", "buffers", "pattern"), [
    ({}, {}, "holds no optimizer buffers, where runs trained with adam keep exp_avg, exp_avg_sq"),
    ({"optimizer": "sgd", "momentum": 0.9, "lr": 0.01}, {}, "where runs trained with sgd (momentum 0.9) keep buf"),
    ({"optimizer": "sgd", "lr": 0.01}, {"exp_avg": 0, "exp_avg_sq": 0}, "holds exp_avg, exp_avg_sq, where runs "
     "trained with sgd keep none"),
])
def test_a_checkpoint_without_its_optimizers_buffers_is_refused(tmp_path, train, buffers, pattern):
    folder = interrupted(make_cfg(tmp_path, **train))
    (path,) = (folder / "checkpoints").glob("chunk-*.pt")
    state = torch.load(path, weights_only=True)
    state["optimizer"] = {name: torch.zeros_like(state["params"]) for name in buffers}
    torch.save(state, path)
    before = snapshot(folder)
    one_line(invoke("resume", folder), pattern)
    assert snapshot(folder) == before


def test_a_checkpoint_with_its_optimizers_buffers_is_read(stopped):
    (path,) = (stopped[0] / "checkpoints").glob("chunk-*.pt")
    saved = checkpoint.Checkpoints(stopped[0], 0.0, ("adam", 0.0)).saved()
    assert saved == [tuple(checkpoint.read(path)["run_ids"])]


# --------------------------------------------------------------------------------------------------
# 3. The sweep: paths that are not regular files, where a config or a folder's file goes.


def actlab(tmp_path: Path, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The real command (a FIFO must not hang a test: the timeout ends one that regressed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "actlab", *map(str, args)], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=120, input=stdin if stdin is not None else "")


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _loop(path: Path) -> Path:
    os.symlink(path.with_name("other"), path)
    os.symlink(path, path.with_name("other"))
    return path


# Before: a FIFO blocked `compare --config` forever (nobody writes to it); a loop of links said "no such
# file"; an empty --config read the current folder ("cannot read config file .: Is a directory").
@pytest.mark.parametrize(("make", "pattern"), [
    (_fifo, "it is not a regular file (a FIFO, socket or device); give a YAML file"),
    (_loop, "it is a symbolic link to nothing (or a loop of links)"),
    (lambda p: p.parent, "it is a folder; give a YAML file"),
    (lambda p: "", "the config file's name is empty; give a YAML file or a shipped config (article,"),
])
def test_a_config_that_is_not_a_file_is_one_line(tmp_path, make, pattern):
    target = make(tmp_path / "cfg.yaml")
    before = sorted(os.listdir(tmp_path))
    args = ("compare", "--config", target, "--out", tmp_path / "runs")
    if make is _fifo:  # the real command, under a timeout: a FIFO that regressed would hang the test run
        assert_one_line(actlab(tmp_path, *args), pattern, 2)
    else:
        one_line(invoke(*args), pattern)
    assert sorted(os.listdir(tmp_path)) == before


def test_a_config_piped_to_stdin_is_read(tmp_path):
    # standard input is the one stream that is not a regular file and still a config: it is what was asked for
    # (the value the error names was read from the pipe)
    proc = actlab(tmp_path, "compare", "--config", "/dev/stdin", "--dry-run", stdin="train: {epochs: 7.5}\n")
    assert_one_line(proc, "train.epochs: must be a whole number (got 7.5) (/dev/stdin line 1)", 2)


def _dangling(path: Path) -> None:
    os.symlink(path.with_name("gone"), path)


# Before: a FIFO, a folder or a dangling link in place of summary.json, status.json or env.json read as "not
# there yet": `show` printed the folder with 0 runs or an unknown status, `diff` compared nothing; a FIFO of
# stats.json or weights.pt passed show/diff/runs/export silently. Refused where read: one line, exit 2.
@pytest.mark.parametrize("name", ["summary.json", "status.json", "env.json", "weights.pt", "stats.json"])
@pytest.mark.parametrize("kind", ["fifo", "folder", "dangling link"])
def test_a_folders_file_that_is_not_a_file_is_one_line(finished, tmp_path, name, kind):
    folder = _copy(finished, tmp_path)
    entry = folder / name
    if entry.exists():
        entry.unlink()
    {"fifo": os.mkfifo, "folder": os.mkdir, "dangling link": _dangling}[kind](entry)
    pattern = {"fifo": "is not a regular file (a FIFO, socket or device), where actlab keeps a file",
               "folder": "is a folder where actlab writes a file; move it away",
               "dangling link": "is a link to nothing, where actlab keeps a file"}[kind]
    # in-process: the check comes before any read, so a regression shows as a failure here, not a hang
    for command in (["show", folder], ["diff", folder, finished], ["report", folder]):
        line = one_line(invoke(*command), pattern)
        assert f"'{entry}'" in line
    result = invoke("runs", folder.parent)
    assert result.exit_code == 0 and "damaged" in result.stdout and pattern in result.stderr, result.output


# Before: `show` printed "5, complete (x of None runs)" and `runs` listed the folder with them; resume decided
# by such fields. Nothing in the folder says what they were: one line, exit 2 (runs: listed as damaged).
@pytest.mark.parametrize(("field", "value", "pattern"), [
    ("command", 5, "'command' is 5, not one of train, compare"),
    ("status", "done", "'status' is \"done\", not one of running, complete, incomplete, unknown"),
    ("runs_done", "x", "'runs_done' is \"x\", not a count"),
    ("runs_total", -4, "'runs_total' is -4, not a count"),
    ("started", 7, "'started' is 7, not text"),
])
def test_a_status_with_fields_actlab_does_not_write_is_one_line(finished, tmp_path, field, value, pattern):
    folder = _copy(finished, tmp_path)
    status = json.loads((folder / "status.json").read_text())
    (folder / "status.json").write_text(json.dumps({**status, field: value}))
    before = snapshot(folder)
    for command in ("show", "report", "resume"):
        one_line(invoke(command, folder), pattern)
    result = invoke("runs", folder.parent)
    assert result.exit_code == 0 and "damaged" in result.stdout and pattern in result.stderr, result.output
    assert snapshot(folder) == before


# Before: a SIGTERM in the middle of `actlab rm` left a half-deleted folder (config.yaml kept, metrics.csv gone)
# that `actlab rm` then refused as "not a readable actlab experiment folder": what the line said to do
# ("run it again") failed. A signal now waits until the folder being deleted is gone.
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_rm_leaves_no_half_deleted_folder(finished, tmp_path, monkeypatch, signum):
    first, second = _copy(finished, tmp_path), _copy(finished, tmp_path / "b")
    real, calls = os.unlink, []

    def unlink(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    one_line(invoke("rm", "--yes", first, second), f"({name}): stopped before the command finished", 128 + signum)
    assert not first.exists() and second.is_dir()
    monkeypatch.undo()
    assert invoke("rm", "--yes", second).exit_code == 0 and not second.exists()  # what the line says works


# Before: a SIGTERM in the middle of `actlab export tensorboard` left a half-written tensorboard/ folder, and
# the export the line then asked for ("run it again to finish it") refused it: "exists and is not empty".
def test_an_export_cut_short_leaves_nothing_and_runs_again(finished, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from actlab import tensorboard

    folder = _copy(finished, tmp_path)
    real, calls = tensorboard.TensorBoardSink._write_hparams, []

    def write_hparams(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first run's logs are written
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tensorboard.TensorBoardSink, "_write_hparams", write_hparams)
    before = snapshot(folder)
    one_line(invoke("export", "tensorboard", folder), "terminated (SIGTERM): stopped before the command finished",
             143)
    assert snapshot(folder) == before and sorted(os.listdir(folder)) == sorted(os.listdir(finished))
    monkeypatch.undo()
    result = invoke("export", "tensorboard", folder)
    assert result.exit_code == 0 and (folder / "tensorboard").is_dir(), result.output
    assert len(list((folder / "tensorboard").rglob("events.out.tfevents.*"))) == 4


# Before: `report` on a folder named with a line break wrote a report.md whose folder line and replay command
# were cut in two. Refused as --out refuses such a name: one line, nothing written.
@pytest.mark.parametrize("name", ["run\nfolder", "run\rfolder", "run\u2028folder"])
def test_a_folder_path_with_a_line_break_is_one_line_for_report(finished, tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(finished, folder)
    before = snapshot(folder)
    line = one_line(invoke("report", folder), "the folder's path holds the control character")
    assert repr(name[3]) in line
    assert snapshot(folder) == before


def test_a_program_that_imports_the_entry_module_keeps_its_signals(tmp_path):
    # the block is for the actlab command alone: a notebook or tool importing main keeps Ctrl-C
    code = "import signal, actlab.__main__\nprint(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))\n"
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc
