"""Training semantics, held to oracles: an inline copy of the article's script, least squares, seeds."""

import math

import pytest
import torch
from helpers import same_history
from torch import nn

from actlab import config, experiment
from actlab.engines import RunSpec, TrainSettings, train
from actlab.model import initial_parameters
from actlab.tasks import make_dataset

SIZES = (10, 18, 18, 4, 1)


def _results(specs, data, engine, epochs, **kw):
    kw.setdefault("batch_size", 10)
    kw.setdefault("shuffle", False)
    settings = TrainSettings(epochs=epochs, **kw)
    return {r.spec.run_id: r for chunk in train(specs, data, SIZES, settings, engine=engine, workers=1) for r in chunk}


def test_loop_engine_is_the_articles_script():
    """The article's code, written out plainly, gives the loop engine's numbers bit for bit."""
    data = make_dataset("noise", 100, 0)
    torch.manual_seed(123)  # the script may touch the global RNG; nothing below depends on it
    model = nn.Sequential(nn.Linear(10, 18), nn.ReLU(), nn.Linear(18, 18), nn.ReLU(), nn.Linear(18, 4), nn.ReLU(),
                          nn.Linear(4, 1))
    params = initial_parameters(SIZES, 7)
    with torch.no_grad():
        for layer, (w, b) in zip([model[0], model[2], model[4], model[6]], params):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    criterion, optimizer = nn.MSELoss(), torch.optim.Adam(model.parameters(), lr=0.001)
    X, y = data.x_train, data.y_train
    printed = []
    for _epoch in range(6):
        for i in range(0, 100, 10):
            optimizer.zero_grad()
            loss = criterion(model(X[i : i + 10]), y[i : i + 10])
            loss.backward()
            optimizer.step()
        printed.append(loss.item())  # the article prints the last mini-batch's loss
    result = _results([RunSpec("relu", 7, 0.001)], data, "loop", 6)["relu/seed7"]
    assert result.history["last_batch_loss"] == printed
    with torch.no_grad():
        assert result.history["full_loss"][-1] == criterion(model(X), y).item()


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_loop_engine_with_sgd_is_the_articles_script_with_torch_sgd(momentum):
    """train.optimizer sgd: the article's loop with a plain torch.optim.SGD (its defaults otherwise)."""
    data = make_dataset("noise", 100, 0)
    model = nn.Sequential(nn.Linear(10, 18), nn.Tanh(), nn.Linear(18, 18), nn.Tanh(), nn.Linear(18, 4), nn.Tanh(),
                          nn.Linear(4, 1))
    with torch.no_grad():
        for layer, (w, b) in zip([model[0], model[2], model[4], model[6]], initial_parameters(SIZES, 3)):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    criterion, optimizer = nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum)
    X, y = data.x_train, data.y_train
    for _epoch in range(4):
        for i in range(0, 100, 10):
            optimizer.zero_grad()
            criterion(model(X[i : i + 10]), y[i : i + 10]).backward()
            optimizer.step()
    result = _results([RunSpec("tanh", 3, 0.05)], data, "loop", 4, optimizer="sgd", momentum=momentum)["tanh/seed3"]
    for (name, param), key in zip(model.named_parameters(), result.state):
        assert name == key and torch.equal(param.detach(), result.state[key]), key


def test_loss_falls_on_a_structured_task():
    data = make_dataset("teacher", 200, 0, noise=0.05)
    for engine in ("loop", "batched"):
        r = _results([RunSpec("tanh", 0, 0.01)], data, engine, 20, batch_size=20)["tanh/seed0"]
        assert r.history["full_loss"][-1] < 0.3 * r.history["full_loss"][0]


def test_same_config_and_seed_give_identical_numbers(small_cfg):
    a, b = experiment.compare(small_cfg), experiment.compare(small_cfg)
    for ra, rb in zip(a.results, b.results):
        assert ra.spec == rb.spec
        assert same_history(ra.history, rb.history)


def _least_squares_mse(x, y) -> float:
    x1 = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    beta = torch.linalg.lstsq(x1, y.double()).solution
    return float(((x1 @ beta - y.double()) ** 2).mean())


def test_identity_net_is_one_linear_map():
    """ARTICLES.md §C.1: four stacked linear layers can do no better than linear regression."""
    data = make_dataset("noise", 100, 0)
    optimum = _least_squares_mse(data.x_train, data.y_train)
    runs = _results([RunSpec("identity", s, 0.003) for s in range(3)], data, "batched", 150)
    for r in runs.values():
        full = r.history["full_loss"]
        assert min(full) >= optimum * (1 - 1e-5)  # never below the optimum (float32 slack only)
        assert full[-1] <= optimum * 1.01  # and it gets there: it *is* linear regression
    relu = _results([RunSpec("relu", 0, 0.003)], data, "batched", 150)["relu/seed0"]
    assert relu.history["full_loss"][-1] < 0.5 * optimum  # a non-linearity memorises past it


@pytest.mark.parametrize("engine", ["loop", "batched"])
def test_divergence_is_marked_and_the_others_go_on(engine):
    data = make_dataset("noise", 100, 0)
    specs = [RunSpec("relu", 0, 1e12), RunSpec("relu", 1, 1e-3)]
    runs = _results(specs, data, engine, 4)
    bad, good = runs["relu/seed0"], runs["relu/seed1"]
    assert bad.status == "diverged" and bad.diverged_epoch is not None
    assert bad.epochs_done == bad.diverged_epoch - 1
    assert all(math.isfinite(v) for v in bad.history.get("full_loss", []))
    assert good.status == "ok" and good.epochs_done == 4


def test_compare_plans_every_activation_times_seeds():
    cfg = config.build_config({"compare": {"activations": ["relu", "tanh"], "seeds": 3}, "train": {"seed": 5}})
    specs = experiment.compare_specs(cfg)
    assert [(s.activation, s.seed) for s in specs] == [(a, s) for a in ("relu", "tanh") for s in (5, 6, 7)]
