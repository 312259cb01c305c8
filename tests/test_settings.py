"""The training contract: config keys -> TrainSettings and RunSpecs, their validation, executors by name."""

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

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


def test_cosine_keras_is_the_articles_keras_setup():
    """ARTICLES.md §D's Keras defaults, as real keys: Glorot-uniform weights, zero biases, Adam eps 1e-7,
    leaky slope 0.2, batches of 32 reshuffled, lr 0.04, 300 epochs."""
    path = Path(__file__).parent.parent / "configs" / "cosine_keras.yaml"
    assert "#+" not in path.read_text()
    cfg = config.load_config(path)
    assert (cfg.model.init, cfg.model.init_bias, cfg.train.eps, cfg.train.optimizer) == (
        "xavier_uniform", "zero", 1e-7, "adam")
    assert cfg.model.options["leaky_relu"] == {"negative_slope": 0.2}
    assert (cfg.model.sizes, cfg.train.lr, cfg.train.epochs, cfg.train.batch_size, cfg.train.shuffle) == (
        (1, 2, 1), 0.04, 300, 32, True)
    assert config.load_config("cosine_keras") == cfg


@pytest.mark.parametrize(("raw", "text"), [
    ({}, "Adam lr 0.001"),
    ({"train": {"optimizer": "sgd", "lr": 0.01}}, "SGD lr 0.01"),
    ({"train": {"optimizer": "sgd", "momentum": 0.9}}, "SGD (momentum 0.9) lr 0.001"),
    ({"train": {"eps": 1e-7, "betas": [0.8, 0.99]}, "model": {"init": "auto", "init_bias": "zero"}},
     "Adam (eps 1e-07, betas [0.8, 0.99]) lr 0.001, auto weights and zero biases"),
])
def test_the_report_states_the_optimizer_and_initialisation_it_ran(raw, text):
    from actlab import report

    assert report._training_setup(config.build_config(raw)) == text


def test_a_new_executor_is_one_module_and_one_registry_line(monkeypatch):
    """tests/reverse_executor.py ships every chunk pickled and finishes them last-first: the same runs, bit
    for bit, as the local executor, every run-epoch reported, each run once."""
    from helpers import same_history

    from actlab.engines import train
    from actlab.tasks import make_dataset

    monkeypatch.setitem(executors.EXECUTORS, "reverse", "reverse_executor")
    data = make_dataset("noise", 60, 0)
    specs = [RunSpec(name, seed, 1e-3 * (1 + seed)) for name in ("relu", "prelu", "mish") for seed in range(3)]
    settings = TrainSettings(epochs=3, batch_size=10, shuffle=True)
    counted = []
    local = {r.spec.run_id: r for c in train(specs, data, (10, 18, 4, 1), settings, chunk_size=4, workers=1) for r in c}
    chunks = list(train(specs, data, (10, 18, 4, 1), settings, executor="reverse", chunk_size=4,
                        progress=lambda n, _m: counted.append(n)))
    assert len(chunks) == 3 and chunks[0][-1].spec == specs[-1]  # the last chunk came first
    other = {r.spec.run_id: r for c in chunks for r in c}
    assert sorted(other) == sorted(local) and sum(counted) == len(specs) * 3
    for run_id, ref in local.items():
        assert same_history(ref.history, other[run_id].history), run_id
        assert all(torch.equal(ref.state[k], other[run_id].state[k]) for k in ref.state), run_id


def test_initialisation_per_activation_overrides_the_common_scheme():
    cfg = config.build_config({"model": {"init": "xavier_uniform", "init_by_activation": {"SELU": "lecun_normal",
                                                                                        "swish": "auto"}},
                               "compare": {"activations": ["relu", "selu", "silu"], "seeds": 1}})
    assert [s.init for s in experiment.compare_specs(cfg)] == ["xavier_uniform", "lecun_normal", "auto"]
    with pytest.raises(ConfigError, match=r"^model\.init_by_activation\.selu: unknown initialisation scheme 'he'"):
        config.build_config({"model": {"init_by_activation": {"selu": "he"}}})
    with pytest.raises(ConfigError, match=r"^model\.init_by_activation\.rleu: unknown activation 'rleu'"):
        config.build_config({"model": {"init_by_activation": {"rleu": "auto"}}})
