"""Diagnostics on hand-built weights where the answer is known, and against independent autograd."""

import torch
from torch import nn

from actlab import activations, diagnostics
from actlab.engines.loop import activation_groups
from actlab.model import FeedForward, initial_parameters, load_parameters
from actlab.tasks import Dataset, make_dataset


def _states(name, bias, sizes=(2, 3, 1), n=50):
    """(dead, saturated) of the single hidden layer when every unit's pre-activation is about ``bias``."""
    spec = activations.resolve(name)
    x = torch.randn(n, sizes[0], generator=torch.Generator().manual_seed(0)) * 0.01
    weights = [torch.zeros(1, sizes[1], sizes[0]), torch.ones(1, sizes[2], sizes[1])]
    biases = [torch.full((1, sizes[1]), bias), torch.zeros(1, sizes[2])]
    group = diagnostics.ActGroup(0, 1, spec.build(), spec.elementwise, diagnostics.max_slope(spec.build()))
    out = diagnostics.evaluate(weights, biases, [[group]], Dataset("hand", x, torch.zeros(n, 1)))
    return out["dead_L1"].item(), out["saturated_L1"].item()


def test_negative_bias_kills_every_relu_unit():
    assert _states("relu", -1.0) == (1.0, 1.0)  # outputs 0 everywhere: dead (and so saturated)
    assert _states("relu", +1.0) == (0.0, 0.0)


def test_leaky_units_never_die():
    for bias in (-1.0, -100.0, 1.0):
        assert _states("leaky_relu", bias)[0] == 0.0
        assert _states("prelu", bias)[0] == 0.0


def test_saturation_of_bounded_activations():
    assert _states("tanh", 5.0) == (0.0, 1.0)  # tanh'(5) = 1.8e-4 < 1% of 1, but not exactly 0
    assert _states("tanh", 0.0) == (0.0, 0.0)
    assert _states("sigmoid", 6.0) == (0.0, 1.0)  # sigmoid'(6) = 2.5e-3 < 1% of 0.25
    assert _states("sigmoid", 50.0) == (1.0, 1.0)  # rounds to exactly 1 in float32: no gradient at all
    assert _states("identity", -50.0) == (0.0, 0.0)


def test_softmax_has_no_unit_states():
    dead, saturated = _states("softmax", 0.0)
    assert dead != dead and saturated != saturated  # NaN: mixes units, so "a unit" has no own derivative


def test_gradient_norms_equal_independent_autograd():
    data = make_dataset("noise", 100, 3)
    for name in ("relu", "tanh", "prelu"):
        spec = activations.resolve(name)
        model = load_parameters(FeedForward((10, 18, 18, 4, 1), spec.build), initial_parameters((10, 18, 18, 4, 1), 5))
        nn.MSELoss()(model(data.x_train), data.y_train).backward()
        weights = [m.weight.unsqueeze(0) for m in model.linears()]
        biases = [m.bias.unsqueeze(0) for m in model.linears()]
        got = diagnostics.evaluate(weights, biases, activation_groups(model, spec.elementwise), data)
        for layer, m in enumerate(model.linears(), start=1):
            want = torch.cat([m.weight.grad.flatten(), m.bias.grad]).norm()
            assert torch.allclose(got[f"grad_norm_L{layer}"][0], want, rtol=1e-5), (name, layer)
        assert torch.allclose(got["full_loss"][0], nn.MSELoss()(model(data.x_train), data.y_train))
