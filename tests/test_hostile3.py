"""Bad input, third sweep: signals before the CLI exists, damaged folders (empty metrics, summaries that
disagree with their config, checkpoints without optimizer state), and what a fresh sweep of every command
found.

The contract is test_hostile.py's: one line on stderr, the right exit code (2 for user errors, 128 + the
signal's number for a signal), no traceback, nothing already written lost or changed.
"""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
STOPS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


def run_python(code: str, tmp_path: Path, **kwargs) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python with this tree first on the path, from ``tmp_path``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, **kwargs)


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
@pytest.mark.parametrize("trigger", ["actlab.signals", "typer", "rich.console"])  # before the handlers, in the CLI's
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
    assert first[0] == "import _signal" or first[0].startswith("import _signal "), first[:2]


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


def test_without_nohup_a_hang_up_still_stops_the_run(tmp_path):
    args = ["train", "--epochs", "2", "-q", "--out", str(tmp_path / "runs")]
    proc = run_python(HANG_UP_AT_PREFLIGHT.format(args=args), tmp_path, start_new_session=True)
    assert_one_line(proc, "(SIGHUP)", 129)
