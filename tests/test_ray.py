"""The Ray executor: a compare on a real local Ray runtime equals the local one file by file; results come
once, progress counts every run-epoch, Ctrl-C cancels the remote tasks; without Ray, one line and exit 2."""

import csv
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from actlab import cli, config, experiment
from actlab.engines import executors
from actlab.engines.common import TrainSettings
from actlab.engines.stacked import ChunkTask, train_chunk

runner = CliRunner()
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install -e '.[ray]')")
# 3 activations x 3 seeds x 3 epochs in chunks of 2: 5 Ray tasks, two activations split across chunks
SMALL = ["-a", "relu,tanh,sigmoid", "--seeds", "3", "--epochs", "3", "--set", "train.chunk_size=2",
         "--set", "train.workers=1", "-q", "--no-report"]


# A node whose environment would pick other kernels (no SIMD in ATen, MKL's own branch): the executor must
# give its tasks the driver's CPU pinning for the numbers to be the driver's.
OTHER_NODE = {"MKL_CBWR": "AUTO", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "ALL"}


class ExitOnce(torch.nn.Module):
    """ReLU; but the first Ray worker to apply it dies (as a node can), once per EXIT_ONCE marker file."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        marker = os.environ.get("EXIT_ONCE")  # set in the Ray workers only: the driver never exits
        if marker and not os.path.exists(marker):
            Path(marker).touch()
            os._exit(1)
        return torch.relu(x)


@pytest.fixture(scope="module")
def ray_runtime(tmp_path_factory):
    """One local Ray runtime with 2 CPUs for the module (starting one costs seconds), its workers' environment
    set as on another node; its workers import this module (for ExitOnce) and know the marker's path."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")
    here = Path(__file__).parent
    env = {**OTHER_NODE, "EXIT_ONCE": str(tmp_path_factory.mktemp("ray") / "exited"),
           "PYTHONPATH": os.pathsep.join([str(here.parent), str(here), os.environ.get("PYTHONPATH", "")])}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error",
             runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()


def _tasks(epochs: int = 3, acts=("relu", "tanh", "sigmoid")) -> list[ChunkTask]:
    cfg = config.build_config({"train": {"epochs": epochs}, "compare": {"activations": list(acts), "seeds": 3}})
    specs, data = experiment.compare_specs(cfg), experiment.dataset(cfg)
    settings = TrainSettings(epochs=epochs, batch_size=10)
    return [ChunkTask(i, tuple(specs[lo:lo + 2]), data, tuple(cfg.model.sizes), settings)
            for i, lo in enumerate(range(0, len(specs), 2))]


def test_without_ray_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    monkeypatch.delitem(sys.modules, "actlab.engines.executors.ray", raising=False)
    result = runner.invoke(cli.app, ["compare", *SMALL, "--executor", "ray", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "pip install -e '.[ray]'" in result.output
    assert not (tmp_path / "runs").exists()  # refused before any folder was made


def test_unknown_executor_is_one_line(tmp_path):
    result = runner.invoke(cli.app, ["compare", *SMALL, "--executor", "dask", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "train.executor" in result.output and len(result.output.splitlines()) == 1


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_ray
@pytest.mark.parametrize("address, says", [
    (lambda: f"127.0.0.1:{_closed_port()}", r"nothing answers at 127\.0\.0\.1:\d+"),
    (lambda: f"ray://127.0.0.1:{_closed_port()}", r"nothing answers at 127\.0\.0\.1:\d+"),
    (lambda: "10.0.0.1:99999", r"port 99999 is not in 1-65535"),
    (lambda: "nosuchhost.invalid:6379", r"nothing answers at nosuchhost\.invalid:6379"),
])
def test_a_wrong_cluster_address_is_one_line_before_any_folder(tmp_path, monkeypatch, address, says):
    import re

    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh driver (a module fixture may be up)
    out = tmp_path / "runs"
    result = runner.invoke(cli.app, ["compare", *SMALL[:-2], "--executor", "ray", "--ray-address", address(),
                                     "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and re.search(says, result.output), result.output
    assert "fix --ray-address" in result.output
    assert not out.exists()  # refused before the experiment folder was made


@needs_ray
def test_ray_core_lines_on_stderr_are_set_aside_while_connecting(capfd):
    from actlab.engines.executors import ray as ray_executor

    said: list[str] = []
    line = (b"[2026-11-29 06:01:55,630 W 1053 1053] gcs_client.cc:210: Failed to get cluster ID from GCS server: "
            b"Unauthenticated: RPC error: InvalidAuthToken: Authentication token is missing or incorrect\n")
    with ray_executor._stderr_set_aside(said):
        os.write(2, line)  # as Ray's C++ core writes it (measured against a cluster started with a token)
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    assert ray_executor._why(said) == ("; Ray: Unauthenticated: RPC error: InvalidAuthToken: Authentication "
                                       "token is missing or incorrect")
    assert "RAY_AUTH_MODE=token" in ray_executor._fix(said)
    assert ray_executor._why([]) == "" and "ray start --head" in ray_executor._fix([])


def _rows(path, skip=("seconds",)) -> list[list[str]]:
    """metrics.csv's rows without wall times, in (run, epoch) order (runs land in the order they finish)."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        keep = [i for i, name in enumerate(header) if name not in skip]
        return [[header[i] for i in keep]] + sorted([[row[i] for i in keep] for row in reader],
                                                    key=lambda r: (r[0], int(r[4])))


def _without(data, keys):
    """JSON data (dict or list of dicts) with ``keys`` dropped."""
    if isinstance(data, list):
        return [_without(d, keys) for d in data]
    return {k: v for k, v in data.items() if k not in keys}


def _summary_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return [_without(row, {"seconds"}) for row in csv.DictReader(f)]


@needs_ray
def test_compare_on_ray_equals_the_local_compare_file_by_file(ray_runtime, tmp_path):
    folders = {}
    for executor in ("local", "ray"):
        result = runner.invoke(cli.app, ["compare", *SMALL, "--executor", executor, "--out", str(tmp_path / executor)])
        assert result.exit_code == 0, result.output
        (folders[executor],) = (tmp_path / executor).iterdir()
    local, remote = folders["local"], folders["ray"]
    assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in remote.iterdir())
    assert _rows(local / "metrics.csv") == _rows(remote / "metrics.csv")
    assert len(_rows(local / "metrics.csv")) == 1 + 9 * 4  # 9 runs, epochs 0-3: the check saw every row
    for name in ("summary.json", "stats.json"):
        a, b = (json.loads((f / name).read_text()) for f in (local, remote))
        assert _without(a, {"seconds"}) == _without(b, {"seconds"}), name
    assert _summary_csv(local / "summary.csv") == _summary_csv(remote / "summary.csv")
    assert (local / "stats.csv").read_text() == (remote / "stats.csv").read_text()
    a, b = (json.loads((f / "status.json").read_text()) for f in (local, remote))
    assert _without(a, {"started", "seconds"}) == _without(b, {"started", "seconds"}) and a["status"] == "complete"
    a, b = (json.loads((f / "env.json").read_text()) for f in (local, remote))
    # the command line and the config's hash differ by --executor (config.yaml is compared key by key below)
    assert _without(a, {"command", "config_sha256"}) == _without(b, {"command", "config_sha256"})
    a, b = (yaml.safe_load((f / "config.yaml").read_text()) for f in (local, remote))
    assert a["train"].pop("executor") == "local" and b["train"].pop("executor") == "ray"
    assert _without(a, {"output"}) == _without(b, {"output"})
    a, b = (torch.load(f / "weights.pt", weights_only=True) for f in (local, remote))
    assert sorted(a) == sorted(b) and len(a) == 9
    for run in a:
        assert sorted(a[run]) == sorted(b[run]) and all(torch.equal(a[run][k], b[run][k]) for k in a[run]), run


@needs_ray
def test_each_result_once_progress_counts_every_run_epoch(ray_runtime):
    tasks = _tasks()
    counted = []
    got = list(executors.get("ray")(tasks, workers=2, progress=lambda n, measures: counted.append(n)))
    assert sorted(r.index for r in got) == list(range(len(tasks)))
    assert sum(counted) == 9 * 3 and all(n > 0 for n in counted)
    # the oracle: the same chunk trained here, in this process
    for result in got:
        here = train_chunk(tasks[result.index]).results()
        for a, b in zip(result.results(), here):
            assert a.spec == b.spec and all(torch.equal(a.state[k], b.state[k]) for k in b.state)


@needs_ray
def test_a_task_whose_worker_dies_is_retried_and_comes_back_once(ray_runtime):
    marker = Path(ray_runtime.get_runtime_context().runtime_env["env_vars"]["EXIT_ONCE"])
    tasks = _tasks(acts=("relu", "test_ray:ExitOnce"))
    counted = []
    got = list(executors.get("ray")(tasks, workers=2, progress=lambda n, measures: counted.append(n)))
    assert marker.exists()  # a worker did die: the task ran again
    assert sorted(r.index for r in got) == list(range(len(tasks))) and sum(counted) == 6 * 3
    for result in got:  # the retried task's numbers are the chunk's own
        for a, b in zip(result.results(), train_chunk(tasks[result.index]).results()):
            assert a.spec == b.spec and a.history["full_loss"] == b.history["full_loss"]


@needs_ray
def test_interrupt_cancels_the_remote_tasks(ray_runtime, monkeypatch):
    from actlab.engines.executors import ray as ray_executor

    cancelled, real_cancel = [], ray_runtime.cancel
    monkeypatch.setattr(ray_runtime, "cancel", lambda ref, **kw: (cancelled.append(kw), real_cancel(ref, **kw)))
    tasks = _tasks(epochs=40)
    results = ray_executor.run(tasks, workers=2, progress=None)
    next(results)
    with pytest.raises(KeyboardInterrupt):
        results.throw(KeyboardInterrupt)  # Ctrl-C in the driver while the other tasks run
    assert cancelled == [{"force": True}] * (len(tasks) - 1)
    assert ray_runtime.is_initialized()  # a runtime the caller started is the caller's to shut down


@needs_ray
def test_sigterm_while_waiting_on_ray_is_still_sigterm(ray_runtime):
    import signal
    import threading

    from actlab import signals
    from actlab.engines.executors import ray as ray_executor

    tasks, stop = _tasks(epochs=400), None
    with signals.terminate_as_interrupt():
        results = ray_executor.run(tasks, workers=2, progress=None)
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()  # arrives inside ray.wait
        try:
            list(results)
        except KeyboardInterrupt as exc:  # a plain one too: pytest would take it for the user's Ctrl-C
            stop = exc
    # SIGTERM, not Ctrl-C: status.json names it and the exit code is 143
    assert isinstance(stop, signals.Terminated) and stop.signum == signal.SIGTERM


def test_library_call_without_ray_is_one_error_and_no_folder(tmp_path, monkeypatch):
    """The library checks the executor before it makes a folder, as the CLI does (actlab.experiment.preflight)."""
    from actlab import workflow
    from actlab.engines import executors

    monkeypatch.setitem(sys.modules, "ray", None)  # None in sys.modules: `import ray` fails
    monkeypatch.delitem(sys.modules, executors.EXECUTORS["ray"], raising=False)
    cfg = config.build_config({"train": {"epochs": 2, "executor": "ray"}, "compare": {"seeds": 1}})
    with pytest.raises(executors.ExecutorError, match=r"pip install -e '\.\[ray\]'"):
        workflow.run_compare(cfg, out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
