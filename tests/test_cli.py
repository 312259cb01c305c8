"""The real app through Typer's CliRunner, into temporary folders."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from actlab import cli, experiment, storage

runner = CliRunner()
FAST = ["--epochs", "3", "--set", "train.workers=1"]


def invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


def only_folder(parent: Path) -> Path:
    (folder,) = list(parent.iterdir())
    return folder


def read_metrics(folder: Path) -> list[dict]:
    with open(folder / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_train_writes_the_documented_files(tmp_path):
    result = invoke("train", "--activation", "relu", *FAST, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    folder = only_folder(tmp_path)
    assert folder.name.endswith("_article")
    for name in ("config.yaml", "env.json", "status.json", "metrics.csv", "summary.csv", "summary.json", "weights.pt"):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "status.json").read_text())["status"] == "complete"
    rows = read_metrics(folder)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]  # epoch 0: at initialisation, before any step
    assert rows[0]["train_loss"] == "" and float(rows[0]["full_loss"]) > 0
    assert {"train_loss", "last_batch_loss", "full_loss", "seconds", "grad_norm_L1", "dead_L1"} <= set(rows[0])
    env = json.loads((folder / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert "Epoch 3/3, Loss:" in result.output and f"saved in {folder}" in result.output.replace("\n", "")
    weights = torch.load(folder / "weights.pt", weights_only=True)
    assert set(weights) == {"relu/seed0"} and weights["relu/seed0"]["0.weight"].shape == (18, 10)


def test_a_saved_config_replays_the_same_numbers(tmp_path):
    assert invoke("train", "-a", "tanh", *FAST, "--seed", "4", "--set", "train.shuffle=true",
                  "--out", tmp_path / "a").exit_code == 0
    first = only_folder(tmp_path / "a")
    assert invoke("train", "--config", first / "config.yaml", "--out", tmp_path / "b").exit_code == 0
    second = only_folder(tmp_path / "b")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_metrics(first)) == strip(read_metrics(second))


def test_compare_ranks_and_writes_every_run(tmp_path):
    result = invoke("compare", "--activations", "relu,tanh,identity", "--seeds", "2", *FAST, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    folder = only_folder(tmp_path)
    rows = read_metrics(folder)
    assert len(rows) == 3 * 2 * (3 + 1)  # activations x seeds x (epoch 0 + 3 epochs)
    assert {r["run"] for r in rows} == {f"{a}/seed{s}" for a in ("relu", "tanh", "identity") for s in (0, 1)}
    summary = json.loads((folder / "summary.json").read_text())
    assert len(summary) == 6 and all(r["status"] == "ok" for r in summary)
    for name in ("relu", "tanh", "identity"):
        assert name in result.output
    assert "final loss" in result.output


def test_compare_goes_on_when_runs_diverge(tmp_path):
    result = invoke("compare", "-a", "relu,tanh", "--seeds", "2", *FAST, "--lr", "1e12", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads((only_folder(tmp_path) / "summary.json").read_text())
    assert len(summary) == 4
    # relu's outputs grow without bound and overflow; tanh bounds every hidden unit (ARTICLES.md §C.4)
    assert {r["status"] for r in summary if r["activation"] == "relu"} == {"diverged"}
    assert "diverged" in (only_folder(tmp_path) / "status.json").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_clear_line(tmp_path):
    result = invoke("train", "--device", "cuda", *FAST, "--out", tmp_path)
    assert result.exit_code == 2
    assert "no CUDA GPU" in result.output and "--device cpu" in result.output
    assert "Traceback" not in result.output
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--activation", "rleu"], "unknown activation 'rleu': did you mean relu"),
        (["compare", "--activations", "relu,nope"], "compare.activations[1]: unknown activation 'nope'"),
        (["train", "--epochs", "0"], "train.epochs: must be at least 1 (got 0) (--epochs)"),
        (["train", "--lr", "-1"], "train.lr: must be > 0"),
        (["train", "--batch-size", "500"], "train.batch_size: is larger than the 100 training points"),
        (["train", "--set", "train.epoch=3"], "train.epoch: unknown key; did you mean epochs?"),
        (["train", "--set", "nonsense"], "--set expects section.key=value"),
        (["train", "--engine", "turbo"], "train.engine: must be one of batched, loop"),
        (["train", "--config", "does/not/exist.yaml"], "cannot read config file does/not/exist.yaml: no such file"),
        (["compare", "--config", "cosin"], "no shipped config of that name (shipped: article, cosine, cosine_1_1_1,"),
        (["compare", "train.lr=abc"], "train.lr: must be a number (got 'abc') (argument train.lr=abc)"),
        (["train", "train.epoch=3"], "train.epoch: unknown key; did you mean epochs? (argument train.epoch=3)"),
        (["train", "relu"], "argument 'relu': expected section.key=value"),
        (["compare", "=3"], "argument '=3': expected section.key=value"),
        (["train", "data.task=nope"], "data.task: unknown task 'nope'"),
        (["train", "--epochs", "abc"], "Invalid value for '--epochs'"),
        (["train", "--bogus"], "No such option"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, args, message):
    result = invoke(*args, "--out", tmp_path)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_bad_config_file_names_key_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: 3\n  batch_size: ten\n")
    result = invoke("train", "--config", path, "--out", tmp_path / "runs")
    assert result.exit_code == 2
    assert f"train.batch_size: must be a whole number (got 'ten') ({path} line 3)" in result.output


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("I am a file, not a folder\n")
    result = invoke("train", *FAST, "--out", blocker / "runs")
    assert result.exit_code == 2 and "cannot create an experiment folder" in result.output
    assert blocker.read_text() == "I am a file, not a folder\n"


def test_existing_folders_are_never_overwritten(tmp_path):
    for _ in range(2):
        assert invoke("train", *FAST, "--name", "same", "--out", tmp_path).exit_code == 0
    assert len(list(tmp_path.iterdir())) == 2


def test_interrupted_compare_keeps_what_finished(tmp_path, monkeypatch):
    real_run = experiment.run

    def interrupted(*args, **kwargs):
        chunks = real_run(*args, **kwargs)
        yield next(chunks)
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "run", interrupted)
    result = invoke("compare", "-a", "relu,tanh", "--seeds", "2", *FAST, "--engine", "loop", "--out", tmp_path)
    assert result.exit_code == 130
    folder = only_folder(tmp_path)
    status = json.loads((folder / "status.json").read_text())
    assert status["status"] == "incomplete" and status["runs_done"] == 1 and "interrupted" in status["error"]
    stored = storage.load_experiment(folder)
    assert len(stored.summary) == 1 and len(read_metrics(folder)) == 3 + 1  # epoch 0 and 3 epochs


def test_activations_lists_the_registry():
    result = invoke("activations")
    assert result.exit_code == 0
    for name in ("identity", "leaky_relu", "prelu", "softmax", "hardswish"):
        assert name in result.output


def test_module_entry_point_prints_one_line_errors():
    proc = subprocess.run([sys.executable, "-m", "actlab", "train", "--epochs", "abc"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_auto_device_falls_back_to_the_cpu(tmp_path):
    from actlab import devices

    assert devices.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(devices.DeviceError, match="no CUDA GPU"):
        devices.resolve_device("cuda:1")
    result = invoke("train", *FAST, "--device", "auto", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads((only_folder(tmp_path) / "env.json").read_text())["device"] == "cpu"


# --- shipped configs by name, Hydra-style overrides ------------------------------------------------


def test_a_shipped_config_by_name_from_any_folder(tmp_path, monkeypatch):
    from actlab import config

    monkeypatch.chdir(tmp_path)  # no configs/ here
    for name in ("cosine", "cosine.yaml"):
        result = invoke("train", "--config", name, "--epochs", "2", "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        saved = config.load_config(only_folder(tmp_path / name) / "config.yaml")
        shipped = config.load_config(config.SHIPPED_DIR / "cosine.yaml", [("train.epochs", 2, "test")])
        assert saved.model == shipped.model and saved.data == shipped.data and saved.train == shipped.train


def test_a_path_that_exists_wins_over_a_shipped_name(tmp_path, monkeypatch):
    from actlab import config

    monkeypatch.chdir(tmp_path)
    Path("cosine.yaml").write_text("train:\n  epochs: 7\n")
    assert config.load_config("cosine.yaml").train.epochs == 7  # the local file, not the shipped one
    assert config.load_config("cosine").model.sizes == (1, 2, 1)  # no file named 'cosine': the shipped one
    assert config.load_config("configs/article.yaml") == config.build_config({})  # the README's spelling


def test_key_value_arguments_equal_set_and_flags_win(tmp_path):
    from actlab import config

    assert invoke("train", "train.lr=3e-3", "data.task=teacher", "train.epochs=2", "--out", tmp_path / "a",
                  "-q").exit_code == 0
    assert invoke("train", "--set", "train.lr=3e-3", "--set", "data.task=teacher", "--set", "train.epochs=2",
                  "--out", tmp_path / "b", "-q").exit_code == 0
    a = config.load_config(only_folder(tmp_path / "a") / "config.yaml")
    b = config.load_config(only_folder(tmp_path / "b") / "config.yaml")
    assert a.train.lr == 3e-3 and a.data.task == "teacher" and a.train.epochs == 2
    assert (a.model, a.data, a.train) == (b.model, b.data, b.train)
    assert invoke("train", "train.epochs=5", "--epochs", "1", "--out", tmp_path / "c", "-q").exit_code == 0
    assert config.load_config(only_folder(tmp_path / "c") / "config.yaml").train.epochs == 1


# --- help, version and completion without torch -------------------------------------------------------

PROBE = """
import os, sys
from actlab import cli
try:
    cli.main()
except SystemExit as exc:
    code = exc.code
print("\\nTORCH", "torch" in sys.modules, "SCIPY", "scipy" in sys.modules, "EXIT", code, file=sys.stderr)
"""


def _probe(*args, env=None):
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=full_env)


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"], [], ["compare", "--help"], ["rm", "-h"]])
def test_help_and_version_do_not_import_torch(args):
    proc = _probe(*args)
    assert "TORCH False SCIPY False EXIT 0" in proc.stderr, proc.stderr
    if args == ["--version"]:
        from actlab import __version__

        assert proc.stdout.strip() == f"actlab {__version__}"
    else:
        assert "Usage: actlab" in proc.stdout


def test_module_help_lists_examples():
    proc = subprocess.run([sys.executable, "-m", "actlab", "compare", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "Examples:" in proc.stdout and "  actlab compare --config cosine\n" in proc.stdout
    assert "KEY=VALUE" in proc.stdout
    from actlab import config

    assert all(name in proc.stdout for name in config.shipped_configs())  # --config's help names them all


def test_shell_completion_without_torch():
    env = {"_ACTLAB_COMPLETE": "complete_bash", "COMP_WORDS": "actlab comp", "COMP_CWORD": "1"}
    proc = _probe(env=env)
    assert proc.stdout.split() == ["compare"] and "TORCH False" in proc.stderr, proc.stderr
    env = {"_ACTLAB_COMPLETE": "complete_bash", "COMP_WORDS": "actlab compare --config cos", "COMP_CWORD": "3"}
    proc = _probe(env=env)
    from actlab import config

    expected = [name for name in config.shipped_configs() if name.startswith("cos")]
    assert proc.stdout.split() == expected == ["cosine", "cosine_1_1_1", "cosine_keras"]
    assert "TORCH False" in proc.stderr


def test_no_private_typer_import():
    source = (Path(__file__).parent.parent / "actlab" / "cli.py").read_text()
    assert "_click" not in source and "import click" not in source


def test_module_help_imports_neither_torch_nor_scipy():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "actlab", "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "Usage: actlab" in proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "actlab.cli" in imported  # the probe sees the imports
    assert not {"torch", "scipy", "matplotlib", "numpy"} & imported


def test_shipped_configs_are_package_data():
    import fnmatch

    from actlab import config

    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["actlab"]
    shipped = sorted(config.SHIPPED_DIR.glob("*.yaml"))
    assert len(shipped) == len(config.shipped_configs()) >= 5
    for path in shipped:  # what a wheel carries: `--config NAME` works from an installed package
        assert any(fnmatch.fnmatch(f"configs/{path.name}", pattern) for pattern in patterns), path.name


# --- start-up: what training does not need is imported after it ----------------------------------------

BEFORE_TRAINING = """
import sys
import actlab.engines as engines
from actlab import cli
train = engines.train
def spy(*args, **kwargs):
    print("BEFORE", sorted(m for m in ("scipy", "matplotlib") if m in sys.modules), file=sys.stderr)
    return train(*args, **kwargs)
engines.train = spy
try:
    cli.main()
except SystemExit as exc:
    print("EXIT", exc.code, file=sys.stderr)
"""


def test_compare_imports_scipy_and_matplotlib_only_after_training(tmp_path):
    """Start-up to the first training step pays for torch only: what only the statistics and the figures
    need (scipy, matplotlib) is imported once training is done."""
    proc = subprocess.run([sys.executable, "-c", BEFORE_TRAINING, "compare", "-a", "relu,tanh", "--seeds", "2",
                           "--epochs", "2", "-q", "--out", str(tmp_path)], capture_output=True, text=True)
    assert "BEFORE []" in proc.stderr and "EXIT 0" in proc.stderr, proc.stderr
    assert (only_folder(tmp_path) / "report.md").is_file()  # the report was written: the command ran to its end


def test_the_collector_is_paused_only_inside_and_restored_as_it_was():
    import gc

    assert gc.isenabled()
    with cli._collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with cli._collector_paused():
            pass
        assert not gc.isenabled()  # a caller's own choice is kept
    finally:
        gc.enable()
