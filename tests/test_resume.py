"""Checkpoint and resume (issue 10, item 2): an interrupted experiment, resumed, ends with the files of an
uninterrupted one, bit for bit (wall times aside); a folder resume must not continue is refused with one
line and exit 2, and nothing in it changes.

Fault injection: KeyboardInterrupt raised from the progress callback after some run-epochs (in-process,
both engines, one and two workers), and SIGTERM to a real ``actlab compare`` process.
"""

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from actlab import checkpoint, cli, config, storage, workflow

ROOT = Path(__file__).parent.parent
runner = CliRunner()
TIMING = {"seconds"}  # the only columns and fields that may differ between an interrupted and a whole run

# Small, but with every kind of state: shuffled batches (generator states), prelu (learned slopes in the flat
# buffer), an exp-based activation (row-wise kernels), a held-out split; 4 runs per stack, 3 stacks.
SETUP = {"compare": {"activations": ["relu", "prelu", "sigmoid"], "seeds": 4},
         "train": {"epochs": 6, "shuffle": True, "chunk_size": 4, "checkpoint_seconds": 0.0},
         "data": {"test_fraction": 0.2}}


def make_cfg(tmp: Path, engine: str, workers: int, **train) -> config.Config:
    raw = json.loads(json.dumps(SETUP))
    raw["train"].update(engine=engine, workers=workers, **train)
    raw["output"] = {"runs_dir": str(tmp)}
    return config.build_config(raw)


class StopAfter:
    """A progress callback that raises KeyboardInterrupt (as Ctrl-C would) once ``share`` of the work is done."""

    def __init__(self, share: float) -> None:
        self.share = share

    def __call__(self, state: workflow.ProgressState) -> None:
        if state.fraction >= self.share:
            raise KeyboardInterrupt


def interrupted(cfg: config.Config, command: str, share: float) -> Path:
    """A folder of ``command`` interrupted after ``share`` of its run-epochs."""
    run = workflow.run_compare if command == "compare" else workflow.run_train
    kwargs = {"report": False} if command == "compare" else {}
    with pytest.raises(workflow.Interrupted) as stop:
        run(cfg, progress=StopAfter(share), **kwargs)
    return stop.value.path


def csv_without_timing(path: Path) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(path.read_text(), newline="")))
    keep = [i for i, name in enumerate(rows[0]) if name not in TIMING]
    return [[row[i] for i in keep] for row in rows]


def json_without_timing(path: Path):
    data = json.loads(path.read_text())
    return [{k: v for k, v in row.items() if k not in TIMING} for row in data] if isinstance(data, list) else data


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32) if t.dtype == torch.float32 else t  # NaN == NaN, -0.0 != 0.0


def assert_same_folder(resumed: Path, whole: Path) -> None:
    """Every result file of ``resumed`` equals ``whole``'s, wall times aside; nothing of the resume is left."""
    for name in ("metrics.csv", "summary.csv", "stats.csv"):
        if (whole / name).is_file() or (resumed / name).is_file():
            assert csv_without_timing(resumed / name) == csv_without_timing(whole / name), name
    for name in ("summary.json", "stats.json"):
        if (whole / name).is_file() or (resumed / name).is_file():
            assert json_without_timing(resumed / name) == json_without_timing(whole / name), name
    a, b = storage.load_weights(resumed / "weights.pt"), storage.load_weights(whole / "weights.pt")
    assert list(a) == list(b)
    for run in a:
        assert list(a[run]) == list(b[run]) and all(torch.equal(bits(a[run][k]), bits(b[run][k])) for k in a[run]), run
    status = json.loads((resumed / "status.json").read_text())
    assert status["status"] == "complete" and status["runs_done"] == status["runs_total"]
    assert not (resumed / checkpoint.FOLDER).exists()
    assert sorted(p.name for p in resumed.iterdir()) == sorted(p.name for p in whole.iterdir())


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """Uninterrupted reference folders, one per (command, engine), trained once for the module."""
    made: dict[tuple[str, str], Path] = {}

    def get(command: str, engine: str) -> Path:
        if (command, engine) not in made:
            cfg = make_cfg(tmp_path_factory.mktemp("whole"), engine, 1)
            done = workflow.run_compare(cfg, report=False) if command == "compare" else workflow.run_train(cfg)
            made[command, engine] = done.path
        return made[command, engine]

    return get


def record_loads(monkeypatch, log: Path) -> None:
    """Note the epoch of every checkpoint a stack resumes from (in a file: workers are other processes)."""
    load = checkpoint.Checkpoint.load

    def spy(self):
        state = load(self)
        if state is not None:
            with open(log, "a") as f:
                f.write(f"{state['epoch']}\n")
        return state

    monkeypatch.setattr(checkpoint.Checkpoint, "load", spy)


@pytest.mark.parametrize("engine", ["batched", "loop"])
@pytest.mark.parametrize("workers", [1, 2])
def test_interrupted_compare_resumes_to_the_uninterrupted_files(tmp_path, whole, monkeypatch, engine, workers):
    folder = interrupted(make_cfg(tmp_path, engine, workers), "compare", 0.5)
    status = json.loads((folder / "status.json").read_text())
    assert status["status"] == "incomplete" and status["runs_done"] < status["runs_total"]
    saved = sorted((folder / checkpoint.FOLDER).glob("chunk-*.pt")) if engine == "batched" else []
    if engine == "batched":
        assert saved, "the stack in flight was not checkpointed"
    else:
        assert not (folder / checkpoint.FOLDER).exists()  # the loop engine saves each run as it finishes
    epochs = [int(checkpoint.read(path)["epoch"]) for path in saved]
    log = tmp_path / "loaded"
    record_loads(monkeypatch, log)

    done = workflow.resume(folder, report=False)

    assert done.path == folder and len(done.experiment.results) == status["runs_total"] - status["runs_done"]
    loaded = sorted(int(e) for e in log.read_text().split()) if log.exists() else []
    assert loaded == sorted(epochs) and all(e > 0 for e in loaded)  # every saved stack went on from its epoch
    assert_same_folder(folder, whole("compare", engine))


@pytest.mark.parametrize("engine", ["batched", "loop"])
def test_interrupted_train_resumes_to_the_uninterrupted_files(tmp_path, whole, engine):
    folder = interrupted(make_cfg(tmp_path, engine, 1), "train", 0.4)
    assert (folder / checkpoint.FOLDER).exists() == (engine == "batched")
    result = runner.invoke(cli.app, ["resume", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    assert assert_same_folder(folder, whole("train", engine)) is None


def test_a_resume_interrupted_in_turn_resumes_to_the_same_files(tmp_path, whole):
    folder = interrupted(make_cfg(tmp_path, "batched", 1), "compare", 0.3)
    with pytest.raises(workflow.Interrupted) as stop:
        workflow.resume(folder, progress=StopAfter(0.5), report=False)
    assert stop.value.path == folder and "actlab resume" in str(stop.value)
    assert json.loads((folder / "status.json").read_text())["status"] == "incomplete"
    workflow.resume(folder, report=False)
    assert_same_folder(folder, whole("compare", "batched"))


def test_sgd_momentum_buffers_resume_too(tmp_path):
    """SGD's momentum buffer (made at its first step) is part of the state: the resumed runs are the same."""
    settings = {"optimizer": "sgd", "momentum": 0.9, "lr": 0.01}
    reference = workflow.run_compare(make_cfg(tmp_path / "a", "batched", 1, **settings), report=False).path
    folder = interrupted(make_cfg(tmp_path / "b", "batched", 1, **settings), "compare", 0.5)
    (saved,) = (folder / checkpoint.FOLDER).glob("chunk-*.pt")
    assert set(checkpoint.read(saved)["optimizer"]) == {"buf"}
    workflow.resume(folder, report=False)
    assert_same_folder(folder, reference)


def test_a_folder_from_before_the_diagnostics_schedule_goes_on_measuring_every_epoch(tmp_path):
    folder = interrupted(make_cfg(tmp_path, "batched", 1, epochs=14, diagnostics_dense=0), "compare", 0.3)
    # as such a folder was written: no train.diagnostics_dense in its config.yaml (its diagnostics: every epoch)
    text = (folder / "config.yaml").read_text()
    assert "  diagnostics_dense: 0\n" in text
    (folder / "config.yaml").write_text(text.replace("  diagnostics_dense: 0\n", ""))
    env = json.loads((folder / "env.json").read_text())
    env["config_sha256"] = hashlib.sha256((folder / "config.yaml").read_bytes()).hexdigest()
    (folder / "env.json").write_text(json.dumps(env))
    workflow.resume(folder, report=False)
    with open(folder / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    grad = next(key for key in rows[0] if key.startswith("grad"))
    assert len(rows) == 12 * 15 and all(row[grad] != "" for row in rows)  # the default schedule skips 11 and 13


def test_resume_with_the_report_writes_what_compare_writes(tmp_path):
    cfg = make_cfg(tmp_path / "a", "batched", 1)
    reference = workflow.run_compare(cfg, report=True).path
    folder = interrupted(make_cfg(tmp_path / "b", "batched", 1), "compare", 0.3)
    result = runner.invoke(cli.app, ["resume", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    assert "report:" in result.output and "saved in" in result.output
    assert_same_folder(folder, reference)  # stats.csv with the report's columns too


def test_a_run_killed_mid_save_leaves_its_previous_checkpoint(tmp_path):
    """A worker ended during a save leaves a .tmp beside the last whole checkpoint: resume drops the .tmp."""
    folder = interrupted(make_cfg(tmp_path, "batched", 1), "compare", 0.5)
    saved = next((folder / checkpoint.FOLDER).glob("chunk-*.pt"))
    (saved.parent / (saved.name + ".tmp")).write_bytes(b"half a file")
    store = checkpoint.Checkpoints(folder, 0.0)
    assert not list(saved.parent.glob("*.tmp")) and len(store.saved()) == 1


def test_checkpoint_files_hold_plain_tensors_and_name_their_runs(tmp_path):
    folder = interrupted(make_cfg(tmp_path, "batched", 1), "compare", 0.5)
    (path,) = (folder / checkpoint.FOLDER).glob("chunk-*.pt")
    state = torch.load(path, weights_only=True)  # no code runs on loading
    assert set(checkpoint.STATE_KEYS) <= set(state) and state["format"] == checkpoint.FORMAT
    n = len(state["run_ids"])
    assert state["rows"].shape[0] == state["epoch"] and state["rows"].shape[2] == n
    assert state["generators"].shape[0] == n  # shuffled: every run's generator
    assert state["alive"].shape == (n,) and state["step"] == state["epoch"] * 8  # 80 points, batches of 10


def test_a_checkpoint_of_other_runs_is_refused(tmp_path):
    path = tmp_path / "chunk-0.pt"
    checkpoint.Checkpoint(path, ("relu/seed0",), 0.0).save({key: 0 for key in checkpoint.STATE_KEYS})
    with pytest.raises(checkpoint.CheckpointError, match="other runs"):
        checkpoint.Checkpoint(path, ("relu/seed1",), 0.0).load()
    path.write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint"):
        checkpoint.read(path)


# --------------------------------------------------------------------------------------------------
# SIGTERM to a real process, then resume.


def test_sigtermed_compare_resumes_to_the_uninterrupted_result(tmp_path, whole):
    args = ["compare", "-q", "--no-report", "--out", str(tmp_path), "--engine", "batched", "--epochs", "100",
            "-a", "relu,prelu,sigmoid", "--seeds", "2", "--set", "train.shuffle=true", "--set", "train.chunk_size=2",
            "--set", "train.workers=1", "--set", "train.checkpoint_seconds=0.1", "--set", "data.test_fraction=0.2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "actlab", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(f"*/{checkpoint.FOLDER}/chunk-*.pt")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    (folder,) = tmp_path.iterdir()
    assert json.loads((folder / "status.json").read_text())["status"] == "incomplete"
    assert list((folder / checkpoint.FOLDER).glob("chunk-*.pt"))
    cfg = config.read_config(folder / "config.yaml")
    reference = workflow.run_compare(config.build_config({**config.to_dict(cfg), "output": {
        "runs_dir": str(tmp_path / "whole"), "name": cfg.output.name}}), report=False).path
    result = runner.invoke(cli.app, ["resume", str(folder), "-q", "--no-report"])
    assert result.exit_code == 0, result.output
    assert_same_folder(folder, reference)


# --------------------------------------------------------------------------------------------------
# Folders resume refuses: one line, exit 2, nothing changed.


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """An interrupted compare (loop engine: quick), to copy and damage."""
    return interrupted(make_cfg(tmp_path_factory.mktemp("stopped"), "loop", 1), "compare", 0.5)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _edit(name: str, old: str, new: str):
    def edit(folder: Path) -> None:
        text = (folder / name).read_text()
        assert old in text
        (folder / name).write_text(text.replace(old, new))
    return edit


def _status(value: str):
    return _edit("status.json", '"status": "incomplete"', f'"status": "{value}"')


REFUSED = {
    "complete": (_status("complete"), r"is complete .*nothing to resume"),
    "running": (_status("running"), r"is marked running.*--force"),
    "invalid config": (_edit("config.yaml", "epochs: 6", "epochs: -1"), r"train\.epochs: must be at least 1"),
    "edited config": (_edit("config.yaml", "epochs: 6", "epochs: 7"), r"config\.yaml' was changed after"),
    "other version": (_edit("env.json", '"actlab": "', '"actlab": "0.0.0'), r"written by actlab 0\.0\.0"),
    "not a folder": (lambda folder: (folder / "config.yaml").unlink(), r"not an actlab experiment folder"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_resume_refuses_with_one_line_and_changes_nothing(tmp_path, stopped, case):
    import shutil

    damage, message = REFUSED[case]
    folder = tmp_path / stopped.name
    shutil.copytree(stopped, folder)
    damage(folder)
    before = snapshot(folder)
    result = runner.invoke(cli.app, ["resume", str(folder)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output and lines[0].startswith("error: "), result.output
    assert __import__("re").search(message, lines[0]), lines[0]
    assert snapshot(folder) == before


def test_a_folder_marked_running_resumes_with_force(tmp_path, stopped):
    import shutil

    folder = tmp_path / stopped.name
    shutil.copytree(stopped, folder)
    _status("running")(folder)
    result = runner.invoke(cli.app, ["resume", str(folder), "--force", "-q", "--no-report"])
    assert result.exit_code == 0, result.output
    assert json.loads((folder / "status.json").read_text())["status"] == "complete"


def test_resume_says_what_it_will_import(tmp_path):
    cfg = config.build_config({"compare": {"activations": ["relu", "custom_acts:Cube"], "seeds": 2},
                               "train": {"epochs": 4, "workers": 1}, "output": {"runs_dir": str(tmp_path)}})
    folder = interrupted(cfg, "compare", 0.5)
    result = runner.invoke(cli.app, ["resume", str(folder), "-q", "--no-report"])
    assert result.exit_code == 0, result.output
    assert "names activation custom_acts:Cube: importing custom_acts runs its code" in result.stderr
