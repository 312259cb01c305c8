"""actlab.workflow: the CLI's whole job as library calls, its sinks and its progress states."""

import json

import pytest
from helpers import same_history

import actlab
from actlab import config, experiment, storage, workflow


@pytest.fixture
def cfg():
    return config.build_config({"train": {"epochs": 4, "workers": 1},
                                "compare": {"activations": ["relu", "tanh"], "seeds": 3}})


class ListSink:
    """A result sink that remembers what it was given."""

    def __init__(self):
        self.added, self.closed = [], []

    def add(self, results):
        self.added.extend(r.spec.run_id for r in results)

    def close(self, status, error=None):
        self.closed.append((status, error))


def test_run_compare_writes_what_the_cli_writes_and_equals_compare_in_memory(cfg, tmp_path):
    sink, states = ListSink(), []
    done = actlab.run_compare(cfg, out=tmp_path, progress=states.append, sinks=[sink])
    assert done.path.parent == tmp_path and done.report == done.path / "report.md" and done.report.is_file()
    for name in ("config.yaml", "metrics.csv", "summary.json", "stats.json", "stats.csv", "weights.pt"):
        assert (done.path / name).is_file(), name
    assert json.loads((done.path / "status.json").read_text())["status"] == "complete"
    assert config.load_config(done.path / "config.yaml").output.runs_dir == str(tmp_path)
    # the same numbers as the in-memory API (the oracle: nothing about writing changes training)
    memory = actlab.compare(cfg)
    assert [r.spec.run_id for r in done.experiment.results] == [r.spec.run_id for r in memory.results]
    for a, b in zip(done.experiment.results, memory.results):
        assert same_history(a.history, b.history)
    # the sink got every run once, then one close
    assert sorted(sink.added) == sorted(r.spec.run_id for r in memory.results) and sink.closed == [("complete", None)]
    # the ranking covers both activations; stats.json holds the same ranks
    ranked = {s.activation: s.rank for s in done.ranking[0]}
    assert set(ranked) == {"relu", "tanh"}
    assert {row["activation"]: row["rank"] for row in json.loads((done.path / "stats.json").read_text())} == ranked
    # progress: counts runs, ends at all runs and all the work
    assert states[0].runs_done == 0 and states[0].fraction == 0 and states[0].runs_total == 6
    assert states[-1].runs_done == 6 and states[-1].fraction == pytest.approx(1.0)
    assert [s.runs_done for s in states] == sorted(s.runs_done for s in states)
    assert "6 runs stacked (2 activations)" in states[0].training


def test_loop_engine_progress_names_the_run_in_training(cfg, tmp_path):
    cfg = config.load_config(None, [("train.engine", "loop", "t"), ("train.epochs", 3, "t"),
                                    ("compare.activations", ["relu", "tanh"], "t"), ("compare.seeds", 2, "t")])
    states = []
    workflow.run_compare(cfg, out=tmp_path, report=False, progress=states.append)
    seen = [s.training for s in states]
    # each run's 3 epochs report it by name, in plan order
    assert [t for i, t in enumerate(seen) if i == 0 or t != seen[i - 1]] == [
        "relu seed 0", "relu seed 1", "tanh seed 0", "tanh seed 1"]
    assert [s.runs_done for s in states if s.measures is None][-4:] == [1, 2, 3, 4]


def test_run_train_and_write_report(cfg, tmp_path):
    done = actlab.run_train(cfg, out=tmp_path)
    assert [r.spec.run_id for r in done.experiment.results] == ["relu/seed0"] and done.report is None
    assert not (done.path / "report.md").exists()
    path = actlab.write_report(str(done.path))  # a str works as well as a Path
    assert path == done.path / "report.md" and path.is_file() and (done.path / "stats.json").is_file()


def test_interrupted_keeps_what_finished(cfg, tmp_path, monkeypatch):
    real_run = experiment.run

    def interrupted(*args, **kwargs):
        chunks = real_run(*args, **kwargs)
        yield next(chunks)
        raise KeyboardInterrupt

    cfg = config.load_config(None, [("train.engine", "loop", "t"), ("train.epochs", 2, "t"),
                                    ("compare.activations", ["relu", "tanh"], "t"), ("compare.seeds", 1, "t")])
    monkeypatch.setattr(experiment, "run", interrupted)
    sink = ListSink()
    with pytest.raises(workflow.Interrupted) as info:
        workflow.run_compare(cfg, out=tmp_path, sinks=[sink])
    assert info.value.runs_done == 1 and info.value.runs_total == 2
    status = json.loads((info.value.path / "status.json").read_text())
    assert status["status"] == "incomplete" and status["runs_done"] == 1
    assert sink.closed == [("incomplete", "interrupted (Ctrl-C)")]
    assert len(storage.load_experiment(info.value.path).summary) == 1


@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("problem", [KeyboardInterrupt, OSError])
def test_a_folder_stopped_before_its_training_started_is_not_left_running(cfg, tmp_path, monkeypatch, problem, grid):
    from actlab import tensorboard

    def sink(*args, **kwargs):
        raise problem()  # a signal, or TensorBoard's writer failing, once the folder exists

    monkeypatch.setattr(tensorboard, "require", lambda: None)
    monkeypatch.setattr(tensorboard, "TensorBoardSink", sink)
    if grid:
        cfg = config.build_config({"train": {"epochs": 2, "workers": 1}, "compare": {
            "activations": ["relu"], "seeds": 2, "grid": {"train.lr": [0.001, 0.01]}}})
    with pytest.raises(problem) as info:  # KeyboardInterrupt caught here: pytest would stop at a stray one
        workflow.run_compare(cfg, out=tmp_path, report=False, tensorboard=True)
    assert problem is OSError or isinstance(info.value, workflow.Interrupted)  # the line that names the folder
    (folder,) = tmp_path.iterdir()
    status = json.loads((folder / "status.json").read_text())
    assert status["status"] == "incomplete" and status["runs_done"] == 0  # resumable without --force


def test_load_config_takes_a_str_and_a_shipped_name():
    assert actlab.load_config("article") == actlab.load_config(str(config.SHIPPED_DIR / "article.yaml"))
    assert "cosine" in actlab.shipped_configs()
    with pytest.raises(actlab.ConfigError, match="shipped: article, cosine"):
        actlab.load_config("no_such_config")


def test_lazy_package_attributes():
    import subprocess
    import sys

    code = "import sys, actlab; v = actlab.__version__; assert 'torch' not in sys.modules; actlab.Config; " \
           "assert 'torch' in sys.modules; print(sorted(set(actlab.__all__) - set(dir(actlab))))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        actlab.nope  # noqa: B018


def test_preload_imports_while_worker_processes_train_and_only_then(tmp_path, monkeypatch):
    """The statistics' and the report's modules are imported in a thread while worker processes train
    (this process only waits then), with the collector's objects frozen meanwhile and unfrozen after (a
    notebook's garbage is collected as before); without workers (this process trains) no thread is started."""
    import gc
    import multiprocessing
    import sys

    (tmp_path / "preloaded_mod.py").write_text("import gc\nLOADED = True\nFROZEN = gc.get_freeze_count()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    alone = workflow._Preload(["preloaded_mod"])
    with alone:
        alone.start()
    assert alone.thread is None and "preloaded_mod" not in sys.modules
    worker = multiprocessing.get_context("fork").Process(target=__import__("time").sleep, args=(5,))
    worker.start()
    try:
        busy = workflow._Preload(["preloaded_mod", "no_such_module_here", "json"])
        with busy:
            busy.start()
            busy.start()  # once
        assert busy.thread is not None and not busy.thread.is_alive()  # joined on leaving the block
        assert sys.modules["preloaded_mod"].LOADED
        assert sys.modules["preloaded_mod"].FROZEN > 0 and gc.get_freeze_count() == 0
    finally:
        worker.kill()
        worker.join()
        sys.modules.pop("preloaded_mod", None)


def test_the_figures_are_started_before_the_comparisons_with_the_best(cfg, tmp_path, monkeypatch):
    # the figures show the ranking only: their processes start once the runs are ranked, and the tests
    # against #1 (and stats.csv) are computed while they draw, before the report's claims read them
    from actlab import plots, report, stats

    order = []

    def recorded(name, fn):
        def wrapper(*args, **kwargs):
            order.append(name)
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(stats, "against_best", recorded("against_best", stats.against_best))
    monkeypatch.setattr(plots, "draw_all", recorded("draw_all", plots.draw_all))
    monkeypatch.setattr(report, "checks", recorded("checks", report.checks))
    done = workflow.run_compare(cfg, out=tmp_path)
    assert order == ["draw_all", "against_best", "checks"]
    assert {s.verdict for s in done.ranking[0]} >= {"best"} and all(s.verdict for s in done.ranking[0])
    # without the report: the comparisons all the same, and stats.csv/json from them
    order.clear()
    done = workflow.run_compare(cfg, out=tmp_path, report=False)
    assert order == ["against_best"] and all(s.verdict for s in done.ranking[0])
    assert [row["verdict"] for row in json.loads((done.path / "stats.json").read_text())] == \
        [s.verdict for s in sorted(done.ranking[0], key=lambda s: s.rank)]


@pytest.mark.parametrize("problem", [KeyboardInterrupt, RuntimeError])
def test_a_report_stopped_before_its_figures_still_leaves_the_statistics(cfg, tmp_path, monkeypatch, problem):
    # stats.csv/json are computed while the figures draw: a report stopped before they start (a Ctrl-C, a
    # failure in the analysis) still leaves them, the comparisons with #1 included, as before the split
    from actlab import analysis

    def analyse(*args, **kwargs):
        raise problem("stopped")

    monkeypatch.setattr(analysis, "analyse", analyse)
    with pytest.raises(problem):
        workflow.run_compare(cfg, out=tmp_path)
    (folder,) = tmp_path.iterdir()
    rows = json.loads((folder / "stats.json").read_text())
    assert [row["activation"] for row in rows] and all(row["verdict"] for row in rows)
    assert (folder / "stats.csv").is_file()


def test_train_with_a_grid_in_its_config_writes_a_folder_every_command_reads(tmp_path):
    # train runs the config's own setting: its folder is no grid study (it was refused as damaged: "grid
    # column 'train.optimizer' missing")
    from actlab import storage

    cfg = config.build_config({"train": {"epochs": 2, "workers": 1}, "compare": {
        "grid": {"train.optimizer": ["adam", "sgd"]}, "tuning_seeds": [0]}})
    done = workflow.run_train(cfg, out=tmp_path)
    stored = storage.load_experiment(done.path)
    assert stored.config.compare.grid == {} and len(stored.summary) == 1
    assert workflow.write_report(done.path).is_file()
