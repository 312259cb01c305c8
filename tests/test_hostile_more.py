"""More bad input, found by sweeping every command: numbers float32 cannot hold, unusable --out paths,
folders with links or folders where files go, damaged JSON/CSV/checkpoints/weights, and signals outside
training (start-up, report writing).

The contract is test_hostile.py's: one line on stderr, the right exit code (2 for user errors, 128 + the
signal's number for a signal), no traceback, nothing outside the folder touched and nothing in it lost.
"""

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
from helpers import one_line, snapshot
from typer.testing import CliRunner

from actlab import checkpoint, cli, config, signals, storage

ROOT = Path(__file__).parent.parent
runner = CliRunner()
FAST = ["--epochs", "2", "--set", "train.workers=1", "-q"]


def invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


# --------------------------------------------------------------------------------------------------
# Numbers the float32 engines cannot hold: refused by the config, not by torch mid-training


FLOAT32_CASES = [
    (["train", "--lr", "1e38"], "train.lr: is too large: the first step, 1e+39"),  # Adam: lr / (1 - 0.9)
    (["train", "--lr", "1e308"], "train.lr: is too large"),
    (["train", "--lr", "1e30", "--set", "train.betas=[0.99999999999,0.999]"], "train.lr: is too large"),
    (["train", "--lr", "1e39", "--set", "train.optimizer=sgd"], "train.lr: is too large"),
    (["train", "--lr", "1e39", "--set", "train.optimizer=sgd", "--engine", "loop"], "train.lr: is too large"),
    (["train", "--set", "train.eps=1e300"], "train.eps: must be > 0 and at most 3.4e+38"),
    (["compare", "-a", "relu", "--seeds", "2", "--grid", "train.lr=1e-3,1e39"], "(--grid train.lr)"),
]


@pytest.mark.parametrize("args,pattern", FLOAT32_CASES, ids=[" ".join(a)[:50] for a, _ in FLOAT32_CASES])
def test_numbers_float32_cannot_hold_are_refused_up_front(tmp_path, args, pattern):
    one_line(invoke(*args, *FAST, "--out", tmp_path / "runs"), pattern)
    assert list(tmp_path.iterdir()) == []


def test_the_largest_learning_rate_float32_holds_still_trains(tmp_path):
    # 3e37 / (1 - 0.9) = 3e38 < 3.4e38: it diverges, as such a rate does, but it is a run, not an error
    result = invoke("train", "--lr", "3e37", *FAST, "--out", tmp_path)
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------------------------------
# --out: paths the file system cannot hold, or a terminal cannot show


@pytest.mark.parametrize("name,pattern", [
    ("x" * 300, "output.runs_dir: the folder name 'xxxxxxxxxxxxxxxxxxxx...' is 300 bytes long"),
    ("a/" * 2000, "output.runs_dir: is 40"),
    ("a\nb", "output.runs_dir: holds the invisible character '\\n'"),
    ("a\tb", "output.runs_dir: holds the invisible character '\\t'"),
    ("a\u202eb", "output.runs_dir: holds the invisible character '\\u202e' (RIGHT-TO-LEFT OVERRIDE)"),
])
def test_unusable_out_paths_are_one_line(tmp_path, name, pattern):
    line = one_line(invoke("train", *FAST, "--out", tmp_path / name), pattern)
    assert line.endswith("(--out)")
    assert list(tmp_path.iterdir()) == []


def test_a_parent_that_cannot_be_looked_at_is_a_storage_error(tmp_path, monkeypatch):
    """As a user without permission to search a parent folder: stat raises EACCES, not ENOENT."""
    locked = tmp_path / "locked"
    real_stat, real_mkdir = Path.stat, Path.mkdir

    def stat(self, *args, **kwargs):
        if locked in (self, *self.parents) and self != locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    def mkdir(self, *args, **kwargs):
        if locked in (self, *self.parents):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(storage.StorageError, match="cannot create an experiment folder .*Permission denied"):
        storage.new_experiment_dir(locked / "inner" / "runs", "x")
    cfg = config.build_config({"output": {"runs_dir": str(locked / "inner" / "runs")}})
    with pytest.raises(storage.StorageError, match="Permission denied"):
        storage.ExperimentWriter.create(cfg, "train", ["relu/seed0"], "cpu")


# --------------------------------------------------------------------------------------------------
# Folders: damaged files, links out of the folder, folders where files go, weights of another net


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    parent = tmp_path_factory.mktemp("more")
    result = invoke("compare", "-a", "relu,prelu", "--seeds", "2", *FAST, "--no-report", "--out", parent)
    assert result.exit_code == 0, result.output
    (path,) = parent.iterdir()
    return path


@pytest.fixture
def copy(folder, tmp_path) -> Path:
    path = tmp_path / "exp"
    shutil.copytree(folder, path)
    return path


def _deep_json(path: Path) -> None:
    (path / "summary.json").write_text("[" * 100_000 + "]" * 100_000)


def _huge_cell(path: Path) -> None:
    with open(path / "metrics.csv", "a") as f:
        f.write("a" * 200_000 + "\r\n")


@pytest.mark.parametrize("spoil,pattern,command", [
    (_deep_json, "summary.json: nested too deeply", "show"),
    (_deep_json, "summary.json: nested too deeply", "report"),
    (_deep_json, "summary.json: nested too deeply", "diff"),
    (_huge_cell, "metrics.csv: not actlab's CSV (field larger than field limit", "show"),
    (_huge_cell, "metrics.csv: not actlab's CSV (field larger than field limit", "report"),
])
def test_damage_python_parsers_choke_on_is_one_line(copy, folder, spoil, pattern, command):
    spoil(copy)
    before = snapshot(copy)
    args = ["diff", folder, copy] if command == "diff" else [command, copy]
    one_line(invoke(*args), pattern)
    assert snapshot(copy) == before


@pytest.mark.parametrize("name", ["loss_curves.png", "report.md.tmp", "metrics.csv", "summary.json"])
@pytest.mark.parametrize("command", ["report", "resume"])
def test_nothing_is_written_through_a_link_out_of_the_folder(copy, tmp_path, name, command):
    victim = tmp_path / "precious.txt"  # a file of the user's, outside the folder (with the data it replaces)
    target = copy / name
    victim.write_bytes(target.read_bytes() if target.exists() else b"the user's own file")
    target.unlink(missing_ok=True)
    target.symlink_to(victim)
    if command == "resume":  # a folder resume would otherwise continue
        status = (copy / "status.json").read_text().replace('"complete"', '"incomplete"')
        (copy / "status.json").write_text(status)
    kept = victim.read_bytes()
    before = snapshot(copy)
    one_line(invoke(command, copy, *(["-q"] if command == "resume" else [])), f"'{target}' is a symbolic link")
    assert victim.read_bytes() == kept
    assert snapshot(copy) == before


@pytest.mark.parametrize("name", ["loss_curves.png", "stats.csv", "report.md"])
def test_a_folder_where_report_writes_a_file_is_one_line(copy, name):
    path = copy / name
    if path.exists():
        path.unlink()
    path.mkdir()
    before = snapshot(copy)
    one_line(invoke("report", copy), f"'{path}' is a folder where actlab writes a file")
    assert snapshot(copy) == before


@pytest.mark.parametrize("change", ["config", "config-unrecorded", "weights"])
def test_weights_of_another_net_are_one_line(copy, change):
    if change.startswith("config"):  # the config edited to another net after training
        text = (copy / "config.yaml").read_text().replace("sizes: [10, 18, 18, 4, 1]", "sizes: [10, 7, 18, 4, 1]")
        assert "[10, 7, 18" in text
        (copy / "config.yaml").write_text(text)
    if change == "config-unrecorded":  # a folder whose env.json recorded no sha256 of its config
        env = json.loads((copy / "env.json").read_text())
        del env["config_sha256"]
        (copy / "env.json").write_text(json.dumps(env))
    if change == "weights":  # a weights file of other shapes
        weights = torch.load(copy / "weights.pt", weights_only=True)
        weights["prelu/seed1"]["1.weight"] = torch.ones(3)
        torch.save(weights, copy / "weights.pt")
    before = snapshot(copy)
    if change == "config":  # found by the sha256 env.json recorded, before anything is read from the config
        line = one_line(invoke("report", copy), "config.yaml' was changed after the experiment ran")
        assert line.endswith("restore it")
    else:
        line = one_line(invoke("report", copy), "weights.pt: run ")
        assert "move weights.pt away" in line
    assert snapshot(copy) == before


# --------------------------------------------------------------------------------------------------
# Checkpoints that read back as tensors and lists but are not what actlab saves


def _state() -> dict:
    n, p = 2, 10
    return {"epoch": 3, "params": torch.zeros(p), "step": 30,
            "optimizer": {"exp_avg": torch.zeros(p), "exp_avg_sq": torch.zeros(p)}, "generators": None,
            "rows": torch.zeros(3, 4, n, dtype=torch.float64), "names": ["a", "b", "c", "d"],
            "alive": torch.ones(n, dtype=torch.bool), "diverged_at": [None, None],
            "initial": {"full_loss": [1.0, 1.0]}, "run_ids": ["relu/seed0", "relu/seed1"],
            "format": checkpoint.FORMAT}


BAD_STATES = {
    "run_ids unhashable": {"run_ids": [["x"], ["y"]]},
    "run_ids repeated": {"run_ids": ["a", "a"]},
    "epoch text": {"epoch": "abc"},
    "epoch a tensor": {"epoch": torch.ones(3)},
    "epoch past the rows": {"epoch": 10**9},
    "epoch negative": {"epoch": -5},
    "params 2-D": {"params": torch.zeros(2, 5)},
    "step text": {"step": "x"},
    "optimizer other shape": {"optimizer": {"exp_avg": torch.zeros(2), "exp_avg_sq": torch.zeros(2)}},
    "optimizer half Adam": {"optimizer": {"exp_avg": torch.zeros(10)}},
    "optimizer unknown buffer": {"optimizer": {"momentum_of_doom": torch.zeros(10)}},
    "generators per run": {"generators": torch.zeros(5, 8, dtype=torch.uint8)},
    "rows 1-D": {"rows": torch.zeros(2)},
    "rows of other runs": {"rows": torch.zeros(3, 4, 7)},
    "names short": {"names": ["a"]},
    "alive per run": {"alive": torch.zeros(7, dtype=torch.bool)},
    "diverged_at a number": {"diverged_at": 5},
    "initial a number": {"initial": 3},
    "initial per run": {"initial": {"full_loss": [1.0]}},
}


def test_a_well_formed_state_reads_back(tmp_path):
    torch.save(_state(), tmp_path / "chunk-0.pt")
    assert checkpoint.read(tmp_path / "chunk-0.pt")["epoch"] == 3


@pytest.mark.parametrize("change", list(BAD_STATES))
def test_a_checkpoint_not_as_saved_is_refused_with_one_reason(tmp_path, change):
    path = tmp_path / "chunk-0.pt"
    torch.save(_state() | BAD_STATES[change], path)
    with pytest.raises(checkpoint.CheckpointError, match=r"chunk-0\.pt: its .*, not what actlab saves; delete it"):
        checkpoint.read(path)


def test_a_checkpoints_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "checkpoints").write_text("x")
    with pytest.raises(checkpoint.CheckpointError, match="checkpoints is not a folder"):
        checkpoint.Checkpoints(tmp_path, 30.0)


# --------------------------------------------------------------------------------------------------
# Signals outside training: start-up and report writing


def _signal_self(signum: int):
    def fire(*args, **kwargs):
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises at the next bytecode: never reached
        raise AssertionError("the signal did not stop the command")
    return fire


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_at_start_up_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, signum):
    from actlab import experiment

    monkeypatch.setattr(experiment, "preflight", _signal_self(signum))
    before = signal.getsignal(signal.SIGTERM)
    result = invoke("compare", "-a", "relu", "--seeds", "2", *FAST, "--out", tmp_path / "runs")
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    one_line(result, f"({name}): stopped before the command finished", code=128 + signum)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before  # the CLI's handlers are gone after it


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_report_is_written_is_one_line(copy, monkeypatch, signum):
    from actlab import report

    monkeypatch.setattr(report, "checks", _signal_self(signum))
    data = {name: (copy / name).read_bytes() for name in ("config.yaml", "metrics.csv", "summary.json",
                                                          "weights.pt", "status.json", "env.json")}
    line = one_line(invoke("report", copy), "while writing the report: the runs are saved in", code=128 + signum)
    assert f"`actlab report {copy}` writes it again" in line
    assert {name: (copy / name).read_bytes() for name in data} == data
    assert not list(copy.glob("*.tmp"))


def test_a_signal_after_compare_trained_names_the_folder(tmp_path, monkeypatch):
    from actlab import report

    monkeypatch.setattr(report, "checks", _signal_self(signal.SIGTERM))
    result = invoke("compare", "-a", "relu", "--seeds", "2", *FAST, "--out", tmp_path)
    (folder,) = tmp_path.iterdir()
    one_line(result, f"terminated (SIGTERM) while writing the report: the runs are saved in {folder}", code=143)
    assert '"complete"' in (folder / "status.json").read_text()
    monkeypatch.undo()
    assert invoke("report", folder).exit_code == 0  # what the line says to do works


def test_nested_blocks_ignore_a_second_signal_until_the_outer_one_ends():
    before = signal.getsignal(signal.SIGTERM)
    with signals.terminate_as_interrupt():
        with pytest.raises(signals.Terminated), signals.terminate_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        # the outer block's cleanup (status, weights) goes on: a second SIGTERM must not cut it
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before
    with signals.terminate_as_interrupt():  # nothing fired inside: the outer handler comes back
        outer = signal.getsignal(signal.SIGTERM)
        with signals.terminate_as_interrupt():
            pass
        assert signal.getsignal(signal.SIGTERM) is outer


def test_an_interrupt_inside_generated_code_still_exits_130():
    """CPython kills itself with SIGINT at exit after a KeyboardInterrupt left exec'd code (dataclasses'
    generated methods, in an import the interrupt landed in), even when it was caught: the CLI clears it."""
    code = ("import sys\nfrom actlab import cli, workflow\n"
            "def boom(*a, **k):\n    exec('raise KeyboardInterrupt')\n"
            "workflow.write_report = boom\nsys.argv = ['actlab', 'report', '.']\ncli.main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert proc.stderr.strip() == "interrupted (Ctrl-C): stopped before the command finished; run it again to finish it"


# --------------------------------------------------------------------------------------------------
# Text the user typed is printed as typed; --out is not an experiment folder; summary rows as written


def test_user_text_is_never_turned_into_emoji(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  options:\n    'nomod_xyz:X': {a: 1}\n")
    one_line(invoke("train", "--config", path, "--out", tmp_path / "runs"), "model.options.nomod_xyz:X: cannot import")
    result = invoke("train", *FAST, "--out", tmp_path / "a:smile:")  # rich would print "a😄"
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "a:smile:") in result.stdout.replace("\n", "") and "\U0001f604" not in result.stdout


@pytest.mark.parametrize("command", ["train", "compare"])
def test_out_into_an_experiment_folder_is_one_line(copy, command):
    before = snapshot(copy)
    one_line(invoke(command, "-a", "relu", *FAST, "--out", copy), f"'{copy}' is an experiment folder; --out names "
             f"the folder that holds experiment folders, e.g. '{copy.parent}'")
    assert snapshot(copy) == before


def _row(change):
    def spoil(path: Path) -> None:
        rows = json.loads((path / "summary.json").read_text())
        (path / "summary.json").write_text(json.dumps(change(rows)))
    return spoil


@pytest.mark.parametrize("change,pattern", [
    (lambda rows: rows + rows[:1], "row 5: run 'relu/seed0' is listed twice"),
    (lambda rows: [rows[0] | {"final_loss": -5.0}, *rows[1:]],
     "row 1: a negative loss, which a mean squared error cannot be"),
    (lambda rows: [rows[0] | {"status": "weird"}, *rows[1:]], "row 1: status 'weird' is neither ok nor diverged"),
], ids=["duplicate", "negative", "status"])
@pytest.mark.parametrize("command", ["show", "report"])
def test_summary_rows_the_statistics_would_miscount_are_one_line(copy, change, pattern, command):
    _row(change)(copy)
    before = snapshot(copy)
    one_line(invoke(command, copy), f"summary.json: {pattern}; the folder is damaged")
    assert snapshot(copy) == before


def test_export_alone_prints_its_help_like_plot():
    result = invoke("export")
    assert result.exit_code == 0 and "tensorboard" in result.stdout and not result.stderr


def test_plot_never_writes_through_a_dangling_link(tmp_path):
    (tmp_path / "acts.png").symlink_to(tmp_path / "elsewhere.png")
    one_line(invoke("plot", "activations", "--out", tmp_path / "acts.png"), "acts.png' exists; actlab does not "
             "overwrite files")
    assert not (tmp_path / "elsewhere.png").exists()


@pytest.mark.parametrize("env", [None, b'{"actlab": [1]}'])
def test_resume_of_a_folder_without_its_version_is_one_line(copy, env):
    (copy / "status.json").write_text((copy / "status.json").read_text().replace('"complete"', '"incomplete"'))
    if env is None:
        (copy / "env.json").unlink()
    else:
        (copy / "env.json").write_bytes(env)
    before = snapshot(copy)
    line = one_line(invoke("resume", copy, "-q"), "env.json' does not say which actlab wrote the folder")
    assert "None" not in line and f"start again with `actlab compare --config {copy / 'config.yaml'}`" in line
    assert snapshot(copy) == before


def test_a_full_disk_while_figures_are_drawn_is_one_line(copy, monkeypatch):
    """matplotlib writes the figures itself (not through actlab.storage): its ENOSPC is said like ours."""
    import errno

    from actlab import plots

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(plots, "save", full)  # forked drawing processes inherit it
    data = {name: (copy / name).read_bytes() for name in ("metrics.csv", "summary.json", "weights.pt", "status.json")}
    one_line(invoke("report", copy), f"cannot write the report in {copy}: No space left on device; the runs are "
             f"saved: free some space, then `actlab report {copy}`")
    assert {name: (copy / name).read_bytes() for name in data} == data


def test_an_out_path_that_is_not_utf8_is_one_line(tmp_path):
    # a byte that is not UTF-8 in argv reaches Python as a lone surrogate (os.fsdecode)
    one_line(invoke("train", *FAST, "--out", tmp_path / os.fsdecode(b"\xffruns")),
             "output.runs_dir: is not UTF-8 text (byte 0xff); name a folder in UTF-8 (--out)")
    assert list(tmp_path.iterdir()) == []


def test_report_of_a_folder_whose_path_is_not_utf8_is_one_line(folder, tmp_path):
    path = tmp_path / os.fsdecode(b"\xffexp")
    shutil.copytree(folder, path)
    before = snapshot(path)
    one_line(invoke("report", path), "the folder's path is not UTF-8 text, and the report names it; rename")
    assert snapshot(path) == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("command", ["report", "resume"])
def test_a_fifo_in_a_folder_is_refused_before_anything_blocks_on_it(copy, command):
    (copy / "status.json").write_text((copy / "status.json").read_text().replace('"complete"', '"incomplete"'))
    (copy / "checkpoints").mkdir()
    os.mkfifo(copy / "checkpoints" / "chunk-0.pt")  # resume would read it and wait forever for a writer
    one_line(invoke(command, copy, *(["-q"] if command == "resume" else [])), "chunk-0.pt' is not a regular file "
             "(a FIFO, socket or device)")


# --- what the checks above must still let through (found by review) ----------------------------------------

def test_a_grid_over_the_nets_shape_reports_again(tmp_path):
    out = tmp_path / "runs"
    assert invoke("compare", "-a", "relu,tanh", "--seeds", "2", *FAST, "--grid", "model.width=4,8", "--no-report",
                  "--out", out).exit_code == 0
    (path,) = out.iterdir()
    result = invoke("report", path)  # each grid point has its own net: its weights are not the base config's
    assert result.exit_code == 0, result.stderr
    assert (path / "report.md").is_file()


@pytest.mark.parametrize("name", ["مقاله\u200cها", "family-\U0001F468\u200d\U0001F469"])
def test_out_paths_spelt_with_joiners_are_accepted(tmp_path, name):
    result = invoke("train", *FAST, "--out", tmp_path / name)
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / name).iterdir())) == 1


def test_a_users_own_dotted_folder_in_an_experiment_folder_is_left_alone(copy):
    (copy / "notes.d").mkdir()
    (copy / "notes.d" / "todo.txt").write_text("mine")
    result = invoke("report", copy)
    assert result.exit_code == 0, result.stderr
    assert (copy / "notes.d" / "todo.txt").read_text() == "mine"


def test_a_report_that_fails_for_another_reason_than_a_full_disk_gives_no_disk_advice(copy, monkeypatch):
    import errno

    from actlab import workflow

    def no_processes(*args, **kwargs):
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")  # fork under a process limit

    monkeypatch.setattr(workflow, "_write_pages", no_processes)  # inside write_pages' handling
    line = one_line(invoke("report", copy), "Resource temporarily unavailable; the runs are saved: then run")
    assert "free some space" not in line


def test_a_signal_while_a_grid_report_is_written_is_the_same_line(tmp_path, monkeypatch):
    from actlab import report

    out = tmp_path / "runs"
    assert invoke("compare", "-a", "relu,tanh", "--seeds", "2", *FAST, "--grid", "train.lr=0.001,0.01",
                  "--no-report", "--out", out).exit_code == 0
    (path,) = out.iterdir()
    monkeypatch.setattr(report, "checks", _signal_self(signal.SIGTERM))
    line = one_line(invoke("report", path), "terminated (SIGTERM) while writing the report: the runs are saved in",
                    code=143)
    assert f"`actlab report {path}` writes it again" in line


def test_an_interrupted_report_says_how_many_runs_are_saved(copy, monkeypatch):
    from actlab import report, workflow

    def stop(an):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "checks", stop)
    with pytest.raises(KeyboardInterrupt) as info:
        workflow.write_report(copy)
    runs = len(json.loads((copy / "summary.json").read_text()))
    assert isinstance(info.value, workflow.Interrupted) and runs == 4
    assert (info.value.runs_done, info.value.runs_total) == (runs, runs)
