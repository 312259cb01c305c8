"""TensorBoard export: the event files, read back with TensorBoard's own reader, hold metrics.csv and the HParams."""

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from actlab import cli, config, experiment, storage
from actlab import tensorboard as tb

runner = CliRunner()


def invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


def read_run(folder: Path) -> tuple[dict[str, list[tuple[int, float]]], dict]:
    """A run folder through TensorBoard's reader: tag -> [(step, value)], and the HParams of its session."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(folder), size_guidance={SCALARS: 0})  # 0: keep every event
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    hparams = {k: v.string_value if v.HasField("string_value") else v.number_value for k, v in info.hparams.items()}
    return scalars, hparams


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = invoke("compare", "-a", "relu,tanh", "--seeds", "2", "--epochs", "3", "--lr", "0.01", "--no-report",
                    "--set", "data.test_fraction=0.2", "--set", "train.workers=1", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    (path,) = out.iterdir()
    return path


def assert_logs_hold_the_folder(folder: Path, logdir: Path, lr: float) -> None:
    """Every run of ``folder`` in ``logdir``: each metrics.csv value at its epoch, and the run's HParams."""
    rows = csv_rows(folder / "metrics.csv")
    summary = {row["run"]: row for row in json.loads((folder / "summary.json").read_text())}
    assert len(summary) == 4
    measures = [c for c in rows[0] if c not in ("run", "activation", "seed", "lr", "epoch", "seconds")]
    assert {"full_loss", "test_loss", "grad_norm_L1", "dead_L1", "saturated_L3"} <= set(measures)
    for run, row in summary.items():
        scalars, hparams = read_run(logdir / run)
        mine = [r for r in rows if r["run"] == run]
        assert len(mine) == 1 + 3  # epoch 0 (the untrained net) and epochs 1-3
        for column in measures:
            expected = [(int(r["epoch"]), float(r[column])) for r in mine if r[column] != ""]
            if not expected:  # not measured for this run (slope_L* is prelu's): no tag either
                assert tb.scalar_tag(column) not in scalars
                continue
            got = scalars[tb.scalar_tag(column)]
            # TensorBoard stores scalars as float32
            assert [s for s, _ in got] == [e for e, _ in expected], column
            np.testing.assert_array_equal(np.float32([v for _, v in got]), np.float32([v for _, v in expected]))
        assert hparams["activation"] == row["activation"] and hparams["seed"] == row["seed"]
        assert hparams["lr"] == lr and hparams["task"] == "noise" and hparams["epochs"] == 3
        assert scalars["hparam/final_loss"] == [(3, pytest.approx(row["final_loss"], rel=1e-6))]
        assert scalars["hparam/best_loss"] == [(3, pytest.approx(row["best_loss"], rel=1e-6))]
        assert scalars["hparam/final_test_loss"] == [(3, pytest.approx(row["final_test_loss"], rel=1e-6))]


def test_export_holds_every_scalar_of_metrics_csv_and_the_hparams(folder):
    pytest.importorskip("tensorboard")
    result = invoke("export", "tensorboard", folder)
    assert result.exit_code == 0, result.output
    assert "wrote 4 runs" in result.output
    assert_logs_hold_the_folder(folder, folder / "tensorboard", lr=0.01)


def test_live_logging_while_training_writes_the_same(tmp_path):
    pytest.importorskip("tensorboard")
    result = invoke("compare", "-a", "sigmoid,relu", "--seeds", "2", "--epochs", "3", "--no-report", "--tensorboard",
                    "--set", "data.test_fraction=0.2", "--set", "train.workers=1", "--out", tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.iterdir()
    assert_logs_hold_the_folder(folder, folder / "tensorboard", lr=0.001)


def test_tags_group_columns_by_kind():
    assert tb.scalar_tag("full_loss") == "loss/full"
    assert tb.scalar_tag("last_batch_loss") == "loss/last_batch"
    assert tb.scalar_tag("grad_norm_L4") == "grad_norm/L4"
    assert tb.scalar_tag("saturated_L2") == "saturated/L2"
    assert tb.scalar_tag("something") == "something"


def test_a_run_id_read_from_a_folder_stays_inside_the_log_directory():
    for run_id in ["../../etc/seed0", "/abs/seed1", "relu/..", "a\\b/seed2"]:
        path = tb.run_folder(run_id)
        assert not path.is_absolute() and ".." not in path.parts, run_id
    assert tb.run_folder("leaky_relu[negative_slope=0.3]/seed3") == Path("leaky_relu[negative_slope=0.3]/seed3")


def test_the_live_sink_logs_what_the_export_writes(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = config.build_config({"train": {"epochs": 3, "workers": 1, "seed": 5}, "compare": {
        "seeds": 1, "activations": ["sigmoid", "leaky_relu"]}, "model": {"options": {
            "leaky_relu": {"negative_slope": 0.2}}}})
    results = experiment.compare(cfg).results
    sink = tb.TensorBoardSink(tmp_path, cfg)
    sink.add(results[:1])  # chunk by chunk, as runs finish
    sink.add(results[1:])
    sink.close()
    assert sink.runs == [r.spec.run_id for r in results]
    for r in results:
        scalars, hparams = read_run(tmp_path / r.spec.run_id)
        expected = [r.initial["full_loss"], *r.history["full_loss"]]  # step 0: the untrained net
        assert [v for _, v in scalars["loss/full"]] == [float(np.float32(v)) for v in expected]
        assert hparams["activation"] == r.spec.activation and hparams["seed"] == 5
        assert json.loads(hparams["options"] or "{}") == dict(r.spec.options)
    assert (tmp_path / "leaky_relu[negative_slope=0.2]" / "seed5").is_dir()


def test_export_never_writes_into_an_existing_folder(folder, tmp_path):
    pytest.importorskip("tensorboard")
    (tmp_path / "keep.txt").write_text("mine")
    result = invoke("export", "tensorboard", folder, "--out", tmp_path)
    assert result.exit_code == 2 and "exists and is not empty" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_export_of_a_folder_that_is_not_an_experiment(tmp_path):
    result = invoke("export", "tensorboard", tmp_path)
    assert result.exit_code == 2 and "not an actlab experiment folder" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_without_tensorboard_one_line_says_how_to_install(folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # None in sys.modules: import fails
    result = invoke("export", "tensorboard", folder, "--out", tmp_path / "tb")
    assert result.exit_code == 2
    assert result.output.strip() == "error: TensorBoard export needs the tensorboard package: " \
                                    "pip install -e '.[tensorboard]'"
    assert not (tmp_path / "tb").exists()


def test_a_diverged_run_exports_its_finite_epochs(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = config.build_config({"train": {"epochs": 30, "lr": 1e5, "batch_size": 100, "workers": 1},
                               "model": {"activation": "identity"}})
    results = experiment.train(cfg).results
    assert results[0].status == "diverged"
    sink = tb.TensorBoardSink(tmp_path, cfg)
    sink.add(results)
    scalars, _ = read_run(tmp_path / results[0].spec.run_id)
    table = storage.metrics_table(cfg, results)
    expected = [v for v in table["full_loss"] if not math.isnan(v)]
    got = [v for _, v in scalars["loss/full"]]
    assert len(got) == len(expected) == 1 + results[0].epochs_done  # with epoch 0
    assert all(a == float(np.float32(b)) or (math.isinf(a) and math.isinf(b)) for a, b in zip(got, expected))


def test_compare_with_tensorboard_logs_every_run_live_into_the_folder(tmp_path):
    pytest.importorskip("tensorboard")
    result = invoke("compare", "-a", "relu,tanh", "--seeds", "2", "--epochs", "3", "--set", "train.workers=1",
                    "--no-report", "--quiet", "--tensorboard", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    rows = csv_rows(folder / "metrics.csv")
    for row in summary:
        scalars, hparams = read_run(folder / "tensorboard" / row["run"])
        expected = [float(np.float32(r["full_loss"])) for r in rows if r["run"] == row["run"]]
        assert [v for _, v in scalars["loss/full"]] == expected  # the live log holds metrics.csv's numbers
        assert hparams["activation"] == row["activation"] and hparams["seed"] == row["seed"]


def test_tensorboard_flag_without_the_package_is_one_line_and_no_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # None in sys.modules: import fails
    result = invoke("train", "--epochs", "2", "--tensorboard", "--out", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.output.strip() == "error: TensorBoard export needs the tensorboard package: " \
                                    "pip install -e '.[tensorboard]'"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("live", [False, True])
def test_a_grid_folder_logs_each_runs_own_setting_as_hparams(tmp_path, live):
    """Over a grid, each run's HParams hold its own grid values (text too: adam), in place of the base
    config's shared entry they vary (sizes); the grid's columns are no scalars (export read 'adam' as a
    number and failed with a traceback)."""
    pytest.importorskip("tensorboard")
    args = ["compare", "-a", "relu", "--seeds", "2", "--epochs", "2", "--grid", "train.optimizer=adam,sgd",
            "--grid", "model.width=4,6", "--no-report", "--set", "train.workers=1", "--out", tmp_path, "--quiet"]
    result = invoke(*args, *(["--tensorboard"] if live else []))
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.iterdir()
    if not live:
        result = invoke("export", "tensorboard", folder)
        assert result.exit_code == 0 and "wrote 8 runs" in result.output, result.output
    summary = json.loads((folder / "summary.json").read_text())
    assert len(summary) == 8
    for row in summary:
        scalars, hparams = read_run(folder / "tensorboard" / tb.run_folder(row["run"]))
        assert hparams["train.optimizer"] == row["train.optimizer"] and hparams["model.width"] == row["model.width"]
        assert "sizes" not in hparams and hparams["epochs"] == 2
        assert "loss/full" in scalars and not any(tag.startswith(("train.", "model.")) for tag in scalars)
