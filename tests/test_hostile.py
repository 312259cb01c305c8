"""Bad input, as a hostile user gives it: flags, config files and damaged folders.

Every case must end with one line on stderr naming the problem, exit code 2, no traceback, and nothing
created or changed on disk (issue 10, items 3 and 5 to 9).
"""

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from actlab import budget, cli, config, storage

runner = CliRunner()
FAST = ["--epochs", "2", "--set", "train.workers=1", "-q"]


def invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (and every folder, as None)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def assert_one_line_error(result, pattern: str, code: int = 2) -> str:
    """Exit ``code``, exactly one line on stderr matching ``pattern``, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.stderr, result.stdout)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


# --------------------------------------------------------------------------------------------------
# Flags


FLAG_CASES = [
    # errors that name the right source (issue item 8)
    (["train", "--set", "model.sizes=[10,0,1]"], r"model\.sizes\[1\]: a layer size must be .*\(--set model\.sizes\)"),
    (["compare", "-a", "relu,rleu"], r"compare\.activations\[1\]: unknown activation 'rleu'.*\(--activations\)"),
    (["train", "--set", "foo.bar=1"], r"foo: unknown key.*\(--set foo\.bar\)"),
    (["train", "-a", "rleu"], r"model\.activation: unknown activation 'rleu'.*\(--activation\)"),
    # a flag does not paper over a malformed section (item 7)
    (["train", "--set", "train=5", "--epochs", "2"], r"train: must be a mapping .*\(got 5\) \(--set train\)"),
    (["train", "--set", "model=[1]", "-a", "tanh"], r"model: must be a mapping.*\(--set model\)"),
    # import paths (item 7)
    (["train", "-a", ":Tanh"], r"':Tanh' is not an import path"),
    (["train", "-a", ".acts:Cube"], r"'\.acts:Cube' is not an import path"),
    (["train", "-a", "torch.nn:"], r"is not an import path"),
    (["train", "-a", "a:b:c"], r"is not an import path"),
    (["train", "-a", "sys:exit"], r"model\.activation: activation 'sys:exit' could not be built.*SystemExit"),
    (["train", "-a", "hostile_acts:ExitInInit"], r"could not be built without arguments: SystemExit"),
    (["train", "-a", "hostile_acts:RaiseBaseInInit"], r"could not be built without arguments: Sneaky: not today"),
    (["train", "-a", "hostile_import_fails:X"], r"cannot import activation 'hostile_import_fails:X': SystemExit"),
    (["train", "-a", "no_such_module_xyz:X"], r"cannot import activation 'no_such_module_xyz:X'"),
    (["train", "-a", "hostile_acts:Missing"], r"module 'hostile_acts' has no 'Missing'"),
    (["train", "-a", "hostile_acts:not_a_module"], r"returned int, not an nn\.Module"),
    (["train", "-a", "hostile_acts:Widen"], r"turned a \(2, 4\) input into \(2, 8\)"),
    (["compare", "-a", "relu,hostile_acts:Widen"], r"compare\.activations\[1\].*turned a \(2, 4\) input into \(2, 8\)"),
    (["train", "-a", "hostile_acts:Broken"], r"failed on a \(2, 4\) input: RuntimeError: forward is broken"),
    (["train", "-a", "hostile_acts:ReturnsList"], r"turned a \(2, 4\) input into list"),
    # sizes that cannot fit (item 9)
    (["compare", "--set", "model.sizes=[10,300000000,1]"], r"needs about .* memory \(estimate\) but .* is available"),
    (["train", "--set", "model.sizes=[10,300000000,1]"], r"training 1 run of a 10-300000000-1 net needs about"),
    (["compare", "--set", "data.samples=1000000000"], r"needs about .* of memory"),
    (["compare", "--seeds", "100000000"], r"needs about .* TB of memory .*; lower compare\.seeds"),
    (["train", "--name", "x" * 300], r"output\.name: is 300 characters long"),
    (["train", "--log-every", "-1"], r"--log-every"),
    (["train", "--out", ""], r"output\.runs_dir: is empty"),
    (["train", "--set", "data.test_fraction=0.001"],
     r"data\.test_fraction: holds out 0\.001 of 100 points, which rounds to none"),
    # long-standing checks, kept
    (["train", "--epochs", "0"], r"train\.epochs: must be at least 1 \(got 0\) \(--epochs\)"),
    (["train", "--epochs", "abc"], r"epochs"),
    (["train", "--lr", "nan"], r"train\.lr: must be > 0"),
    (["train", "--lr", "-1"], r"train\.lr: must be > 0"),
    (["train", "--batch-size", "0"], r"train\.batch_size"),
    (["train", "--batch-size", "1000"], r"train\.batch_size: is larger than"),
    (["train", "--device", "tpu"], r"device: must be cpu"),
    (["train", "--engine", "fast"], r"train\.engine: must be one of"),
    (["train", "--nope"], r"No such option"),
    (["train", "--set", "train.lr=abc"], r"train\.lr: must be a number"),
    (["train", "--set", "model.sizes=[10,18,2]"], r"output layer must have 1 unit"),
    (["train", "--set", "model.sizes=[3,18,1]"], r"model\.sizes\[0\]: the input layer has 3 units"),
    (["train", "--set", "model.sizes=5"], r"model\.sizes: must be a list"),
    (["train", "--set", "data.task=nope"], r"data\.task: unknown task"),
    (["train", "--set", "model.options={relu: {x: 1}}"], r"model\.options\.relu: relu has no option 'x'"),
    (["train", "--set", "train.epochs=1.5"], r"train\.epochs: must be a whole number"),
    (["train", "--set", "train.shuffle=maybe"], r"train\.shuffle: must be true or false"),
    (["train", "--set", "data.noise=-1"], r"data\.noise: must be >= 0"),
    (["train", "--set", "train"], r"--set expects section\.key=value"),
    (["train", "--set", "=3"], r"--set expects section\.key=value"),
    (["train", "--set", "output.name=a/b"], r"output\.name: use letters"),
    (["train", "--set", "train.workers=-1"], r"train\.workers"),
    (["compare", "--seeds", "0"], r"compare\.seeds: must be at least 1"),
    (["train", "--config", "no/such/file.yaml"], r"cannot read config file"),
]


@pytest.mark.parametrize("args,pattern", FLAG_CASES, ids=[" ".join(c[0])[:60] for c in FLAG_CASES])
def test_bad_flags_are_one_line_and_create_nothing(tmp_path, monkeypatch, args, pattern):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    out = tmp_path / "deep" / "runs"
    extra = [] if "--out" in args else ["--out", out]
    assert_one_line_error(invoke(*args, *extra), pattern)
    assert list(tmp_path.iterdir()) == [], "a bad flag created files"


def test_a_long_name_creates_no_parent_folders(tmp_path):
    """The folder name is checked before any parent folder is made (storage, behind the config check)."""
    with pytest.raises(storage.StorageError, match="too long for a folder name"):
        storage.new_experiment_dir(tmp_path / "a" / "b", "x" * 250)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# Config files

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))

FILE_CASES = [
    (BOMB.encode(), [], r"expands to more than 100000 values through YAML aliases"),
    (b"a: &a [*a]\n", [], r"line 1: a YAML alias refers to itself"),
    (b"[" * 3000 + b"]" * 3000 + b"\n", [], r"nested too deeply|not valid YAML"),
    (b"train:\n  epochs: 3\n" + b"#" * 1_000_001 + b"\n", [], r"too large for a config file"),
    (b"train:\n  epochs: \xff\xfe\n", [], r"line 2: not UTF-8 text \(byte 0xff\)"),
    (b"\xef\xbb\xbftrain:\n  epochs: 3\n  lr: \x80\n", [], r"line 3: not UTF-8 text"),
    (b"train:\n  epochs: 3\n  epochs: 4\n", [], r"line 3: duplicate key 'epochs' \(first on line 2\)"),
    (b"train:\n  epochs: 3\nmodel: {}\ntrain:\n  lr: 0.1\n", [], r"line 4: duplicate key 'train' \(first on line 1\)"),
    (b"train: 5\n", ["--epochs", "2"], r"train: must be a mapping .* \(.*bad\.yaml line 1\)"),
    (b"train: 5\n", [], r"train: must be a mapping .* \(.*bad\.yaml line 1\)"),
    (b"model:\n  activation: relu\n  sizes:\n    - 10\n    - 0\n    - 1\n", [],
     r"model\.sizes\[1\]: a layer size must be at least 1 \(got 0\) \(.*bad\.yaml line 5\)"),
    (b"model:\n  sizes: [10, 0, 1]\n", [], r"model\.sizes\[1\].*bad\.yaml line 2\)"),
    (b"compare:\n  activations:\n    - relu\n    - rleu\n", [], r"compare\.activations\[1\].*bad\.yaml line 4\)"),
    (b"train:\n  lr: 0.1\n  epohcs: 3\n", [],
     r"train\.epohcs: unknown key; did you mean epochs\? \(.*bad\.yaml line 3\)"),
    (b"model:\n  activation: sys:exit\n", [], r"model\.activation: .*SystemExit \(.*bad\.yaml line 2\)"),
    (b"model:\n  activation: hostile_acts:Widen\n", [], r"turned a \(2, 4\) input.*bad\.yaml line 2\)"),
    (b"train:\n  epochs: [1, 2\n", [], r"not valid YAML"),
    (b"train:\n\tepochs: 3\n", [], r"line 2: not valid YAML"),
    (b"x: \x00\n", [], r"not valid YAML"),
    (b"- 1\n- 2\n", [], r"must be a mapping of sections"),
    (b"--- {}\n--- {}\n", [], r"not valid YAML"),
    (b"train: !!python/object:os.system {}\n", [], r"not valid YAML"),
    (b"data:\n  test_fraction: 0.001\n", [], r"data\.test_fraction: holds out.*bad\.yaml line 2\)"),
    (b"data:\n  samples: 1000000000\n", [], r"of memory \(estimate\)"),
]


@pytest.mark.parametrize("content,args,pattern", FILE_CASES, ids=[f"file{i}" for i in range(len(FILE_CASES))])
@pytest.mark.parametrize("command", ["train", "compare"])
def test_bad_config_files_are_one_line_and_create_nothing(tmp_path, monkeypatch, content, args, pattern, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    before = snapshot(tmp_path)
    assert_one_line_error(invoke(command, "--config", path, *args, "--out", tmp_path / "runs"), pattern)
    assert snapshot(tmp_path) == before


def test_a_config_folder_is_one_line(tmp_path):
    assert_one_line_error(invoke("train", "--config", tmp_path, "--out", tmp_path / "runs"), r"cannot read config")
    assert list(tmp_path.iterdir()) == []


def test_alias_bomb_is_refused_by_the_library_too(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    with pytest.raises(config.ConfigError, match="expands to more than"):
        config.load_config(path)


def test_plain_anchors_still_work(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("train: &t\n  epochs: 3\n  lr: 0.01\n")
    assert config.load_config(path).train.epochs == 3


# --------------------------------------------------------------------------------------------------
# Memory budget


def test_budget_names_the_estimate_and_the_memory_available():
    cfg = config.build_config({"train": {"workers": 1}})
    small = budget.check(cfg, 230, free=10**12)
    assert 0 < small.total < 10**9  # the article's compare: well under a GB
    with pytest.raises(budget.BudgetError, match=r"needs about .* of memory \(estimate\) but 1\.0 MB is available"):
        budget.check(cfg, 230, free=10**6)
    grown = budget.estimate(config.build_config({"model": {"sizes": [10, 1000, 1]}}), 230)
    assert grown.total > small.total  # more parameters, more memory
    assert budget.available() is None or budget.available() > 0


def test_the_library_refuses_what_cannot_fit_before_allocating():
    import actlab

    cfg = config.build_config({"compare": {"seeds": 100_000_000}})
    with pytest.raises(budget.BudgetError, match="lower compare.seeds"):
        actlab.compare(cfg)  # one line, at once: not billions of run specs first


# --------------------------------------------------------------------------------------------------
# Damaged folders (item 6) and untrusted folders (item 5)


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory) -> Path:
    """A finished 1-D compare (so `report` reads weights.pt for its fitted curves)."""
    parent = tmp_path_factory.mktemp("good")
    result = invoke("compare", "-a", "relu,tanh", "--seeds", "2", "--config", Path(__file__).parent.parent / "configs"
                    / "cosine.yaml", *FAST, "--no-report", "--out", parent)
    assert result.exit_code == 0, result.output
    (folder,) = parent.iterdir()
    return folder


def _cut_last_row(folder: Path) -> None:
    text = (folder / "metrics.csv").read_text()
    (folder / "metrics.csv").write_text(text[: len(text) - 9])


def _text_cell(folder: Path) -> None:
    lines = (folder / "metrics.csv").read_text().splitlines(keepends=True)
    cells = lines[2].split(",")
    cells[5] = "hello"
    lines[2] = ",".join(cells)
    (folder / "metrics.csv").write_text("".join(lines))


def _extra_cells(folder: Path) -> None:
    lines = (folder / "metrics.csv").read_text().splitlines(keepends=True)
    lines[1] = lines[1].rstrip("\r\n") + ",1,2\r\n"
    (folder / "metrics.csv").write_text("".join(lines))


def _write(name: str, data: bytes):
    return lambda folder: (folder / name).write_bytes(data)


DAMAGE = {
    "summary-cut": (_write("summary.json", b"{"), r"summary\.json: not valid JSON"),
    "summary-object": (_write("summary.json", b'{"run": 1}'), r"summary\.json: expected a list, found dict"),
    "summary-row-number": (_write("summary.json", b"[1]"), r"summary\.json: row 1: not an object"),
    "summary-row-field": (_write("summary.json", b'[{"run": "a", "activation": "relu"}]'),
                          r"summary\.json: row 1: 'seed' missing"),
    "summary-binary": (_write("summary.json", b"\xff\xfe\x00"), r"summary\.json: cannot be read"),
    "summary-markup": (_write("summary.json", b'[{"run": "a", "activation": "[/x]", "seed": 0, "status": "ok", '
                                              b'"final_loss": 1.0, "best_loss": 1.0}]'),
                       r"summary\.json: row 1: activation '\[/x\]' is neither"),
    "status-cut": (_write("status.json", b"{"), r"status\.json: not valid JSON"),
    "status-list": (_write("status.json", b"[]"), r"status\.json: expected an object, found list"),
    "env-garbage": (_write("env.json", b"\x00garbage"), r"env\.json: not valid JSON"),
    "metrics-missing": (lambda f: (f / "metrics.csv").unlink(), r"metrics\.csv is missing"),
    "metrics-text-cell": (_text_cell, r"metrics\.csv line 3: column \w+ holds 'hello', not a number"),
    "metrics-extra-cells": (_extra_cells, r"metrics\.csv line 2: \d+ cells where the header has \d+"),
    "weights-garbage": (_write("weights.pt", b"not a zip file at all"), r"weights\.pt: not a readable weights file"),
    "weights-empty": (_write("weights.pt", b""), r"weights\.pt: not a readable weights file"),
    "config-garbage": (_write("config.yaml", b"model: [\n"), r"config\.yaml line \d+: not valid YAML"),
    "config-bad-value": (_write("config.yaml", b"train:\n  epochs: -1\n"),
                         r"train\.epochs: must be at least 1.*config\.yaml line 2"),
    "config-bomb": (_write("config.yaml", BOMB.encode()), r"config\.yaml: the document expands"),
}
READERS = {"show": "show", "report": "report"}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", list(READERS))
def test_damaged_folders_are_one_line_and_left_unchanged(good_folder, tmp_path, damage, command):
    folder = tmp_path / good_folder.name
    shutil.copytree(good_folder, folder)
    spoil, pattern = DAMAGE[damage]
    spoil(folder)
    if command == "show" and damage.startswith("weights"):
        pattern = None  # show does not read the weights: it must just work
    before = snapshot(tmp_path)
    result = invoke(command, folder)
    if pattern is None:
        assert result.exit_code == 0, result.output
    else:
        line = assert_one_line_error(result, pattern)
        assert str(folder) in line or folder.name in line
    assert snapshot(tmp_path) == before


def test_runs_lists_the_others_and_marks_the_damaged_one(good_folder, tmp_path):
    for name in ("a_good", "b_bad", "c_good"):
        shutil.copytree(good_folder, tmp_path / name)
    (tmp_path / "b_bad" / "summary.json").write_bytes(b"{")
    result = invoke("runs", tmp_path)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()[:2] in ("a_", "b_", "c_")}
    assert "complete" in rows["a_good"] and "complete" in rows["c_good"] and "damaged" in rows["b_bad"]
    assert re.fullmatch(r"damaged: .*b_bad/summary\.json: not valid JSON.*\n", result.stderr)


def test_a_cut_last_row_is_dropped_and_said(good_folder, tmp_path):
    folder = tmp_path / good_folder.name
    shutil.copytree(good_folder, folder)
    rows = (folder / "metrics.csv").read_text().splitlines()
    _cut_last_row(folder)
    stored = storage.load_experiment(folder)
    assert len(stored.metrics()["run"]) == len(rows) - 2  # header and the cut row
    assert stored.notes and "cut short" in stored.notes[0]
    result = invoke("show", folder)
    assert result.exit_code == 0 and "note:" in result.stderr and "cut short" in result.stderr
    result = invoke("report", folder)
    assert result.exit_code == 0, result.output


EVIL = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\nX = None\n"


@pytest.mark.parametrize("command", ["show", "report", "runs"])
def test_reading_a_folder_never_imports_the_activation_it_names(good_folder, tmp_path, monkeypatch, command):
    marker = tmp_path / "marker"
    module = f"evilmod_{command}"  # a fresh name: an import cached by another test would run nothing
    (tmp_path / f"{module}.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))  # as the current folder is, for `python -m actlab`
    runs = tmp_path / "runs"
    folder = runs / good_folder.name
    shutil.copytree(good_folder, folder)
    text = (folder / "config.yaml").read_text()
    # the config and the summary name the same activation: a folder naming runs its config does not plan is
    # refused as damaged before anything is resolved (test_hostile3), which would hide an import here
    text = text.replace("activation: relu", f"activation: {module}:X").replace("- relu", f"- {module}:X")
    text = text.replace("activations: [relu,", f"activations: ['{module}:X',")
    (folder / "config.yaml").write_text(text)
    env = json.loads((folder / "env.json").read_text())  # as if trained so: env.json records its config
    env["config_sha256"] = hashlib.sha256((folder / "config.yaml").read_bytes()).hexdigest()
    (folder / "env.json").write_text(json.dumps(env))
    summary = json.loads((folder / "summary.json").read_text())
    for row in summary:
        row["activation"] = row["activation"].replace("relu", f"{module}:X")
    (folder / "summary.json").write_text(json.dumps(summary))
    result = invoke(command, runs if command == "runs" else folder)
    assert result.exit_code == 0, result.output
    assert not marker.exists(), f"`actlab {command}` ran code named by the folder"


def test_show_does_not_call_a_function_the_folder_names(good_folder, tmp_path, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    folder = tmp_path / good_folder.name
    shutil.copytree(good_folder, folder)
    text = (folder / "config.yaml").read_text().replace("activation: relu", "activation: tempfile:mkdtemp")
    (folder / "config.yaml").write_text(text)
    assert invoke("show", folder).exit_code == 0
    assert list(temp.iterdir()) == []


def test_weights_never_unpickle_code(good_folder, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    folder = tmp_path / good_folder.name
    shutil.copytree(good_folder, folder)
    torch.save({"relu/seed0": {"0.weight": Evil()}}, folder / "weights.pt")
    line = assert_one_line_error(invoke("report", folder), r"weights\.pt: not a readable weights file \(it holds "
                                 r"a Python object, [\w.]*mkdir, which actlab never unpickles")
    assert not marker.exists()
    assert "weights_only" not in line  # torch's advice (load with weights_only=False) would run the code


@pytest.mark.parametrize("damage", ["weights-garbage", "weights-empty"])
def test_a_damaged_weights_file_says_how_to_report_anyway(good_folder, tmp_path, damage):
    folder = tmp_path / good_folder.name
    shutil.copytree(good_folder, folder)
    DAMAGE[damage][0](folder)
    line = assert_one_line_error(invoke("report", folder), r"weights\.pt: not a readable weights file \(damaged")
    assert "weights_only" not in line and "move weights.pt away" in line
    (folder / "weights.pt").rename(tmp_path / "weights.pt")  # what the line says to do works
    assert invoke("report", folder).exit_code == 0


def test_replaying_a_folder_says_what_it_imports(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    assert invoke("train", "-a", "custom_acts:Cube", *FAST, "--out", tmp_path / "a").exit_code == 0
    (first,) = (tmp_path / "a").iterdir()
    result = invoke("train", "--config", first / "config.yaml", "-q", "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert f"note: {first / 'config.yaml'} names activation custom_acts:Cube: importing custom_acts" in \
        result.stderr.replace("\n", "")


PATH_CASES = [
    ("show", "a_file", r"is not an actlab experiment folder"),
    ("show", "missing", r"is not an actlab experiment folder"),
    ("report", "missing", r"is not an actlab experiment folder"),
    ("report", "config_is_a_folder", r"is not an actlab experiment folder"),
    ("runs", "a_file", r"is not a folder"),
    ("runs", "missing", r"is not a folder"),
    ("show", "metrics_is_a_folder", r"metrics\.csv. is a folder where actlab writes a file; move it away"),
    ("report", "metrics_is_a_folder", r"metrics\.csv. is a folder where actlab writes a file; move it away"),
]


@pytest.mark.parametrize("command,name,pattern", PATH_CASES)
def test_paths_that_are_not_folders_are_one_line(good_folder, tmp_path, command, name, pattern):
    (tmp_path / "a_file").write_text("hi")
    (tmp_path / "config_is_a_folder" / "config.yaml").mkdir(parents=True)
    shutil.copytree(good_folder, tmp_path / "metrics_is_a_folder")
    (tmp_path / "metrics_is_a_folder" / "metrics.csv").unlink()
    (tmp_path / "metrics_is_a_folder" / "metrics.csv").mkdir()
    before = snapshot(tmp_path)
    assert_one_line_error(invoke(command, tmp_path / name), pattern)
    assert snapshot(tmp_path) == before


def test_an_absurd_budget_is_said_in_numbers_a_person_reads():
    """Past petabytes the size is a power of ten, not '21160000000.0 PB'; counts get thousands separators."""
    assert budget._size(999) == "999 bytes" and budget._size(24.6e9) == "24.6 GB" and budget._size(3.3e17) == "330.0 PB"
    assert budget._size(2.116e25) == "2.1e+25 bytes"
    result = runner.invoke(cli.app, ["compare", "--seeds", "100000000000000", "-q", "--out", "/nonexistent/x"])
    assert result.exit_code == 2 and "training 2,300,000,000,000,000 runs of a 10-18-18-4-1 net" in result.output
