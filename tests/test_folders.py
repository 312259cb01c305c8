"""Run management: `actlab runs` filters and --json, `actlab diff`, and a delete that only deletes experiments."""

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from actlab import cli, folders, storage

runner = CliRunner()


def invoke(*args, **kwargs):
    return runner.invoke(cli.app, [str(a) for a in args], **kwargs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Three small experiments: a compare on noise, a compare on teacher with another lr, a train."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--epochs", "2", "--seeds", "2", "-q", "--no-report", "--out", root, "train.workers=1"]
    assert invoke("compare", "-a", "relu,tanh", "--name", "first", *common).exit_code == 0
    assert invoke("compare", "-a", "relu,sigmoid", "--name", "second", "data.task=teacher", "train.lr=0.01",
                  *common).exit_code == 0
    assert invoke("train", "--epochs", "2", "-q", "--name", "single", "--out", root).exit_code == 0
    return root


def folder(root: Path, name: str) -> Path:
    (path,) = root.glob(f"*_{name}")
    return path


def test_runs_lists_and_filters(runs):
    result = invoke("runs", runs)
    assert result.exit_code == 0 and all(f"_{n}" in result.output for n in ("first", "second", "single"))
    listed = lambda *args: {row["name"] for row in json.loads(invoke("runs", runs, "--json", *args).output)}  # noqa: E731
    assert listed() == {"first", "second", "single"}
    assert listed("--task", "teacher") == {"second"}
    assert listed("--command", "train") == {"single"}
    assert listed("--command", "compare", "--task", "noise") == {"first"}
    assert listed("--name", "*_s*") == {"second", "single"}
    assert listed("--status", "complete") == {"first", "second", "single"}
    assert listed("--status", "incomplete") == set()
    row = next(r for r in json.loads(invoke("runs", runs, "--json").output) if r["name"] == "second")
    assert row["activations"] == ["relu", "sigmoid"] and row["seeds"] == 2 and row["runs_done"] == 4


def test_diff_names_config_keys_and_median_final_losses(runs):
    a, b = folder(runs, "first"), folder(runs, "second")
    result = invoke("diff", a, b, "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    changed = {row["key"]: (row["a"], row["b"]) for row in d["config"]}
    assert changed["data.task"] == ("noise", "teacher") and changed["train.lr"] == (0.001, 0.01)
    assert changed["compare.activations"] == (["relu", "tanh"], ["relu", "sigmoid"])
    assert changed["output.name"] == ("first", "second")
    assert "train.epochs" not in changed and "model.sizes" not in changed
    # medians by hand from each folder's summary.json (the oracle)
    losses = {row["activation"]: (row["a"], row["b"]) for row in d["final_loss_median"]}
    for side, path in ((0, a), (1, b)):
        for act, values in _by_activation(path).items():
            assert losses[act][side] == pytest.approx(statistics.median(values), rel=0, abs=0)
    assert losses["tanh"][1] is None and losses["sigmoid"][0] is None  # not run on that side
    table = invoke("diff", a, b)
    assert table.exit_code == 0 and "data.task" in table.output and "teacher" in table.output
    same = invoke("diff", a, a)
    assert "config: identical" in same.output


def _by_activation(path: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for row in json.loads((path / "summary.json").read_text()):
        out.setdefault(row["activation"], []).append(row["final_loss"])
    return out


def test_diff_counts_diverged_runs_as_infinite():
    stored = storage.StoredExperiment(Path("x"), None, {}, {}, [
        {"activation": "relu", "final_loss": math.nan}, {"activation": "relu", "final_loss": 1.0},
        {"activation": "relu", "final_loss": math.nan}])
    assert folders._medians(stored) == {("relu", ""): math.inf}


def test_diff_keeps_grid_settings_apart(tmp_path):
    """A grid folder's medians are per activation and setting: pooled over lr=1e-3 and lr=1 they would mix
    two experiments. Oracle: the median of each (activation, lr)'s rows in summary.json, by hand."""
    common = ["-a", "relu,tanh", "--epochs", "2", "--seeds", "3", "-q", "--no-report", "--out", tmp_path,
              "train.workers=1"]
    assert invoke("compare", "--grid", "train.lr=0.001,1.0", "--name", "grid", *common).exit_code == 0
    assert invoke("compare", "--name", "plain", *common).exit_code == 0
    g, plain = folder(tmp_path, "grid"), folder(tmp_path, "plain")
    d = json.loads(invoke("diff", g, plain, "--json").output)
    by_hand: dict[tuple[str, str], list[float]] = {}
    for row in json.loads((g / "summary.json").read_text()):
        by_hand.setdefault((row["activation"], f"train.lr={row['train.lr']}"), []).append(row["final_loss"])
    got = {(r["activation"], r["setting"]): r["a"] for r in d["final_loss_median"] if r["a"] is not None}
    assert got == {key: statistics.median(values) for key, values in by_hand.items()} and len(got) == 4
    # B has no grid: its runs are at its own lr, and meet A's point there, not A's lr=1.0
    b = {(r["activation"], r["setting"]): r["b"] for r in d["final_loss_median"] if r["b"] is not None}
    assert b == {(act, "train.lr=0.001"): statistics.median(values) for act, values in _by_activation(plain).items()}
    table = invoke("diff", g, plain)
    assert table.exit_code == 0 and "relu train.lr=1.0" in table.output and "relu train.lr=0.001" in table.output


@pytest.fixture
def copies(runs, tmp_path) -> Path:
    root = tmp_path / "runs"
    shutil.copytree(runs, root)
    return root


def _one_error_line(result, text: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.output


def test_rm_asks_then_deletes_only_what_was_named(copies, monkeypatch):
    first, second = folder(copies, "first"), folder(copies, "second")
    no = invoke("rm", first, input="n\n")
    assert no.exit_code == 1 and first.is_dir() and "nothing deleted" in no.output
    closed = invoke("rm", first, input="")  # no answer at all (stdin closed): no deletion
    assert closed.exit_code == 1 and first.is_dir() and "aborted: nothing changed" in closed.output
    yes = invoke("rm", first, input="y\n")
    assert yes.exit_code == 0 and not first.exists() and second.is_dir()
    monkeypatch.chdir(copies)
    twice = invoke("rm", "--yes", second, second.name)  # one folder, two spellings
    assert twice.exit_code == 0 and not second.exists() and twice.output.count("deleted") == 1
    assert folder(copies, "single").is_dir()


@pytest.mark.parametrize("make_bad, message", [
    (lambda root: root / "missing", "does not exist"),
    (lambda root: root, "is not an actlab experiment folder"),  # the parent of experiments
    (lambda root: _plain_folder(root), "is not an actlab experiment folder (no env.json, status.json)"),
    (lambda root: _plain_file(root), "is not a folder"),
    (lambda root: _link_to(root, folder(root, "second")), "is a symbolic link"),
    (lambda root: _running(folder(root, "second")), "is marked running"),
])
def test_rm_refuses_anything_else_and_deletes_nothing(copies, make_bad, message):
    good = folder(copies, "first")
    bad = make_bad(copies)
    before = sorted(p.relative_to(copies) for p in copies.rglob("*"))
    result = invoke("rm", "--yes", good, bad)  # one good, one bad: nothing at all is deleted
    _one_error_line(result, message)
    assert sorted(p.relative_to(copies) for p in copies.rglob("*")) == before


def _plain_folder(root: Path) -> Path:
    path = root / "notes"
    path.mkdir()
    (path / "config.yaml").write_text("train: {epochs: 3}\n")  # a config alone does not make an experiment
    return path


def _plain_file(root: Path) -> Path:
    path = root / "file.txt"
    path.write_text("keep me\n")
    return path


def _link_to(root: Path, target: Path) -> Path:
    link = root / "link"
    link.symlink_to(target, target_is_directory=True)
    return link


def _running(path: Path) -> Path:
    status = json.loads((path / "status.json").read_text())
    (path / "status.json").write_text(json.dumps({**status, "status": "running"}))
    return path


def test_rm_force_deletes_a_dead_running_folder(copies):
    path = _running(folder(copies, "second"))
    assert invoke("rm", "--yes", "--force", path).exit_code == 0 and not path.exists()


def test_rm_never_follows_a_symlink_inside(copies, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.txt").write_text("keep\n")
    target = folder(copies, "first")
    (target / "escape").symlink_to(outside, target_is_directory=True)
    (target / "escape_file").symlink_to(outside / "data.txt")
    assert invoke("rm", "--yes", target).exit_code == 0
    assert not target.exists() and (outside / "data.txt").read_text() == "keep\n"


def test_folder_commands_on_bad_folders_are_one_line(tmp_path, runs):
    _one_error_line(invoke("diff", tmp_path / "nope", folder(runs, "first")), "is not an actlab experiment folder")
    _one_error_line(invoke("diff", folder(runs, "first"), tmp_path), "is not an actlab experiment folder")
    _one_error_line(invoke("runs", tmp_path / "nope"), "is not a folder")
    _one_error_line(invoke("runs", runs, "--status", "done"), "--status must be one of running, complete, incomplete")
    _one_error_line(invoke("runs", runs, "--command", "fit"), "--command must be train or compare")
    _one_error_line(invoke("report", tmp_path), "is not an actlab experiment folder")
