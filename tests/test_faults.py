"""Fault injection: a full disk, SIGTERM/SIGHUP/SIGINT mid-run, the parent SIGKILLed under its workers.

Expected (issue 10, items 1 and 3): one line naming the problem, a non-zero exit, the folder marked
incomplete with the reason, finished runs kept, no cut row, no empty weights.pt, no temporary files, and
no process left behind.
"""

import builtins
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from actlab import cli, signals, storage

ROOT = Path(__file__).parent.parent
runner = CliRunner()
SMALL = ["compare", "-a", "relu,tanh", "--seeds", "2", "--epochs", "3", "-q", "--no-report",
         "--set", "train.workers=1", "--set", "train.chunk_size=2"]


class FullDisk:
    """Stands in for ``open`` in actlab.storage: writes to files named ``name`` fail with ENOSPC once
    ``room`` bytes have gone in (the failing write puts in what still fits first, as a real disk does)."""

    def __init__(self, name: str | None, room: int) -> None:
        self.name, self.room = name, room

    def open(self, path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115  closed by the caller
        if "r" in mode or (self.name is not None and Path(path).name != self.name):
            return f
        return _Filling(f, self)


class _Filling:
    def __init__(self, f, disk: FullDisk) -> None:
        self._f, self._disk = f, disk

    def write(self, data):
        if len(data) > self._disk.room:
            self._f.write(data[: self._disk.room])
            self._f.flush()
            self._disk.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_disk_full_at_start_leaves_no_half_made_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "open", FullDisk(None, 0).open, raising=False)
    result = runner.invoke(cli.app, [*SMALL, "--out", str(tmp_path / "new" / "runs")])
    assert result.exit_code == 2
    assert "No space left on device" in one_line(result.stderr) and "config.yaml" in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither the folder nor the parents made for it


def test_disk_full_mid_run_keeps_whole_rows_and_marks_the_folder(tmp_path, monkeypatch):
    disk = FullDisk("metrics.csv", 10**9)
    monkeypatch.setattr(storage, "open", disk.open, raising=False)
    real_add = storage.ExperimentWriter.add

    def add(writer, results):  # the second chunk's rows find the disk full half-way
        if writer.results:
            disk.room = 700
        real_add(writer, results)

    monkeypatch.setattr(storage.ExperimentWriter, "add", add)
    result = runner.invoke(cli.app, [*SMALL, "--out", str(tmp_path)])
    assert result.exit_code == 2
    line = one_line(result.stderr)
    assert "metrics.csv" in line and "No space left on device" in line
    (folder,) = tmp_path.iterdir()
    text = (folder / "metrics.csv").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 1 + 2 * (1 + 3)  # header + first chunk, epochs 0-3
    status = json.loads((folder / "status.json").read_text())
    assert status["status"] == "incomplete" and "No space left on device" in status["error"]
    assert set(torch.load(folder / "weights.pt", weights_only=True)) == {"relu/seed0", "relu/seed1"}
    assert not list(folder.glob("*.tmp"))
    assert runner.invoke(cli.app, ["show", str(folder)]).exit_code == 0


def test_a_failed_save_keeps_the_good_weights(tmp_path, monkeypatch):
    path = tmp_path / "weights.pt"
    storage.save_weights(path, {"a": {"w": torch.ones(3)}})
    good = path.read_bytes()
    monkeypatch.setattr(storage, "open", FullDisk(None, 10).open, raising=False)
    with pytest.raises(storage.StorageError, match="No space left on device"):
        storage.save_weights(path, {"a": {"w": torch.zeros(1000)}})
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["weights.pt"]


def test_a_failed_append_is_cut_back_to_whole_rows(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    path.write_text("a,b\r\n1,2\r\n")
    monkeypatch.setattr(storage, "open", FullDisk(None, 5).open, raising=False)
    with pytest.raises(storage.StorageError, match=r"cannot write .*metrics\.csv: No space left on device; free"):
        storage.append_rows(path, "3,4\r\n5,6\r\n")
    assert path.read_bytes() == b"a,b\r\n1,2\r\n"


# --------------------------------------------------------------------------------------------------
# A real full disk: a tiny tmpfs (needs root and mount; skipped elsewhere).


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)]
    if os.geteuid() != 0 or not shutil.which("mount") or subprocess.run(command, capture_output=True).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path, leave: int) -> None:
    """Fill the file system at ``mount`` up to ``leave`` bytes free."""
    stat = os.statvfs(mount)
    free = stat.f_bavail * stat.f_frsize
    (mount / "filler").write_bytes(b"\0" * max(free - leave, 0))


# What a user may set to force other CPU kernels: the start-up probe then warns, honestly, on a line of its own,
# which the one-line checks of these (not numerical) tests would count; actlab's own pinning applies instead.
KERNEL_OVERRIDES = ("MKL_CBWR", "ATEN_CPU_CAPABILITY")


def _actlab(*args, env=None, **kwargs) -> subprocess.Popen:
    inherited = {key: value for key, value in os.environ.items() if key not in KERNEL_OVERRIDES}
    env = {**inherited, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "actlab", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_real_disk_full_at_start(tiny_disk):
    _fill(tiny_disk, 0)
    proc = _actlab(*SMALL, "--out", tiny_disk / "runs")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "No space left on device" in one_line(stderr)
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]


def test_real_disk_full_mid_run(tiny_disk):
    _fill(tiny_disk, 40_000)  # the first files fit (a few 4 kB pages), 40 epochs of rows do not
    proc = _actlab(*SMALL, "--epochs", "400", "--out", tiny_disk)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "No space left on device" in one_line(stderr)
    (folder,) = [p for p in tiny_disk.iterdir() if p.is_dir()]
    text = (folder / "metrics.csv").read_text()
    assert text.endswith("\n")
    assert json.loads((folder / "status.json").read_text())["status"] in ("incomplete", "running")
    weights = folder / "weights.pt"
    assert not weights.exists() or isinstance(torch.load(weights, weights_only=True), dict)
    assert not list(folder.glob("*.tmp"))


# --------------------------------------------------------------------------------------------------
# Signals


LONG = ["compare", "-a", "relu,tanh", "--seeds", "8", "--epochs", "5000", "-q", "--no-report",
        "--set", "train.chunk_size=8"]


def _processes() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every live process (zombies aside), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                found.append((int(entry.name), int(fields[1]), int(fields[2])))
    return found


def _group(pgid: int) -> list[int]:
    return [pid for pid, _, group in _processes() if group == pgid]


def _children(pid: int) -> list[int]:
    return [child for child, parent, _ in _processes() if parent == pid]


def _wait_for(condition, seconds: float = 60.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _start_long(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = _actlab(*LONG, *extra, "--out", tmp_path / "runs", env={"TMPDIR": str(tmp)}, start_new_session=True)
    assert _wait_for(lambda: list((tmp_path / "runs").glob("*/status.json"))), "the folder never appeared"
    return proc, tmp


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.mark.parametrize("signum,engine", [(signal.SIGTERM, "batched"), (signal.SIGHUP, "batched"),
                                          (signal.SIGTERM, "loop"), (signal.SIGINT, "batched")])
def test_a_signal_ends_the_run_like_ctrl_c(tmp_path, signum, engine):
    workers = ["--set", "train.workers=2"] if engine == "batched" else ["--engine", "loop"]
    proc, tmp = _start_long(tmp_path, *workers)
    if engine == "batched":
        assert _wait_for(lambda: len(_children(proc.pid)) >= 2), "no workers started"
    # Past the start: a worker killed while it receives its chunk's tensors from the parent makes
    # multiprocessing's resource-sharer thread print a traceback (the engine passes tensors by fd).
    time.sleep(1.5)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    line = one_line(stderr)
    assert name in line and "runs saved in" in line
    (folder,) = (tmp_path / "runs").iterdir()
    status = json.loads((folder / "status.json").read_text())
    assert status["status"] == "incomplete" and name in status["error"]
    summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").exists() else []
    assert len(summary) == status["runs_done"]  # what finished is kept
    assert isinstance(torch.load(folder / "weights.pt", weights_only=True), dict)
    assert not list(folder.glob("*.tmp"))
    assert _wait_for(lambda: not _group(proc.pid), 10), "processes left behind"
    assert not list(tmp.glob("pymp-*")), "multiprocessing's temporary folder left behind"


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    proc, _ = _start_long(tmp_path, "--set", "train.workers=2")
    assert _wait_for(lambda: len(_children(proc.pid)) >= 2), "no workers started"
    proc.kill()
    proc.communicate(timeout=60)
    assert _wait_for(lambda: not _group(proc.pid), 10), "workers outlived their killed parent"


def test_terminate_as_interrupt_raises_in_the_block_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as caught, signals.terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next bytecode; this line is never finished
    assert isinstance(caught.value, signals.Terminated)
    assert signals.exit_code(caught.value) == 143 and signals.reason(caught.value) == "terminated (SIGTERM)"
    assert signals.exit_code(KeyboardInterrupt()) == 130
    assert signal.getsignal(signal.SIGTERM) == before
