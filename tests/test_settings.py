"""The training contract: config keys -> TrainSettings and RunSpecs, their validation, executors by name."""

import dataclasses
import sys

import pytest

from actlab import config, experiment
from actlab.config import ConfigError
from actlab.engines import ENGINES, RunSpec, TrainSettings, executors


def test_settings_fields_are_the_config_keys():
    """A new setting is a config field, a TrainSettings field and its use: the names must line up."""
    train_keys = {f.name for f in dataclasses.fields(config.TrainConfig)}
    fields = {f.name for f in dataclasses.fields(TrainSettings)}
    assert fields - {"device"} <= train_keys
    cfg = config.build_config({"train": {"epochs": 7, "batch_size": 5, "shuffle": True, "diagnostics": False,
                                         "optimizer": "sgd", "momentum": 0.5, "eps": 1e-7, "betas": [0.8, 0.99]}})
    s = TrainSettings.from_config(cfg)
    assert (s.epochs, s.batch_size, s.shuffle, s.diagnostics, s.optimizer, s.momentum, s.eps, s.betas, s.device) == (
        7, 5, True, False, "sgd", 0.5, 1e-7, (0.8, 0.99), "cpu")
    default = TrainSettings.from_config(config.build_config({}))
    assert (default.optimizer, default.betas, default.eps, default.momentum) == ("adam", (0.9, 0.999), 1e-8, 0.0)
    assert set(ENGINES) == {"batched", "loop"}


@pytest.mark.parametrize(("raw", "pattern"), [
    ({"train": {"betas": [1.0, 0.999]}}, r"^train\.betas\[0\]: must be in \[0, 1\) \(got 1\.0\)"),
    ({"train": {"betas": [0.9, -0.1]}}, r"^train\.betas\[1\]: must be in \[0, 1\)"),
    ({"train": {"betas": [0.9]}}, r"^train\.betas: needs two numbers"),
    ({"train": {"eps": 0}}, r"^train\.eps: must be > 0"),
    ({"train": {"eps": float("nan")}}, r"^train\.eps: must be > 0"),
    ({"train": {"momentum": -0.5}}, r"^train\.momentum: must be >= 0"),
    ({"train": {"optimizer": "rmsprop"}}, r"^train\.optimizer: must be one of adam, sgd"),
    ({"train": {"executor": "dask"}}, r"^train\.executor: must be one of local, ray"),
    ({"model": {"init": "glorot"}}, r"^model\.init: unknown initialisation scheme 'glorot' \(schemes: default, "),
    ({"model": {"init_bias": "ones"}}, r"^model\.init_bias: unknown bias initialisation 'ones' \(biases: "),
])
def test_bad_training_keys_name_their_key(raw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config.build_config(raw)


def test_specs_carry_the_initialisation_and_name_it_in_the_run_id():
    cfg = config.build_config({"model": {"init": "xavier_uniform", "init_bias": "zero"},
                               "compare": {"activations": ["relu", "prelu"], "seeds": 2}})
    specs = experiment.compare_specs(cfg)
    assert {(s.init, s.init_bias) for s in specs} == {("xavier_uniform", "zero")}
    assert specs[0].run_id == "relu[init=xavier_uniform,init_bias=zero]/seed0"
    assert experiment.compare_specs(config.build_config({}))[0].run_id == "identity/seed0"  # defaults: unchanged
    # prelu's option 'init' (its slope) and the weight scheme stay apart
    assert RunSpec("prelu", 3, 1e-3, {"init": 0.5}, "auto").run_id == "prelu[init=0.5][init=auto]/seed3"
    assert RunSpec("relu", 3, 1e-3, tag="lr=0.003").run_id == "relu/lr=0.003/seed3"
    assert RunSpec("relu", 3, 1e-3, init="auto").group_key == RunSpec("relu", 4, 1e-2).group_key  # one stack


def test_executors_by_name():
    assert executors.get("local").__module__ == "actlab.engines.executors.local"
    with pytest.raises(executors.ExecutorError, match=r"^unknown executor 'dask' \(executors: local, ray\)$"):
        executors.get("dask")


def test_ray_without_ray_is_one_line_that_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as where it is not installed
    monkeypatch.delitem(sys.modules, "actlab.engines.executors.ray", raising=False)
    with pytest.raises(executors.ExecutorError, match=r"pip install -e '\.\[ray\]'") as info:
        executors.get("ray")
    assert "\n" not in str(info.value)
