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


def _hand_net(name, bias1):
    """1 -> 3 -> 1 net whose hidden pre-activations are x + bias1[i] for x in [0, 1]."""
    spec = activations.resolve(name)
    model = FeedForward((1, 3, 1), spec.build)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.copy_(torch.tensor(bias1))
        model[2].weight.fill_(1.0)
        model[2].bias.zero_()
    return model, spec


def test_snapshot_unit_masks_by_hand():
    x = torch.linspace(0, 1, 11).unsqueeze(1)
    y = torch.zeros(11, 1)
    model, spec = _hand_net("relu", [-2.0, -0.5, 0.5])  # unit 0: z <= -1 always; unit 1: crosses 0; unit 2: > 0
    snap = diagnostics.snapshot(model, x, y, spec.elementwise)
    assert snap.dead[0].tolist() == [True, False, False] and snap.negative[0].tolist() == [True, False, False]
    leaky, spec = _hand_net("leaky_relu", [-2.0, -0.5, 0.5])
    snap = diagnostics.snapshot(leaky, x, y, spec.elementwise)
    assert snap.dead[0].tolist() == [False, False, False]  # the leak keeps a gradient...
    assert snap.negative[0].tolist() == [True, False, False]  # ...but unit 0 lives on its negative side only


def test_snapshot_gradient_rms_equals_autograd():
    data = make_dataset("noise", 100, 3)
    model = load_parameters(FeedForward((10, 18, 18, 4, 1), nn.Tanh), initial_parameters((10, 18, 18, 4, 1), 2))
    snap = diagnostics.snapshot(model, data.x_train, data.y_train)
    nn.MSELoss()(model(data.x_train), data.y_train).backward()
    for rms, m in zip(snap.grad_rms, model.linears()):
        g = torch.cat([m.weight.grad.flatten(), m.bias.grad])
        assert rms == torch.sqrt((g**2).mean()).item() or abs(rms / g.pow(2).mean().sqrt().item() - 1) < 1e-5
    assert abs(snap.loss - nn.MSELoss()(model(data.x_train), data.y_train).item()) < 1e-6


def test_relative_weight_change_by_hand():
    x, y = torch.zeros(2, 1), torch.zeros(2, 1)
    a, spec = _hand_net("relu", [0.0, 0.0, 0.0])
    b, _ = _hand_net("relu", [0.0, 0.0, 0.0])
    with torch.no_grad():
        b[0].weight.mul_(3.0)  # |3W - W| / |W| = 2
    change = diagnostics.relative_change(diagnostics.snapshot(a, x, y), diagnostics.snapshot(b, x, y))
    assert change == [2.0, 0.0]


def test_bounded_is_measured_not_declared():
    bounded = {name: diagnostics.is_bounded(activations.resolve(name).build()) for name in activations.names()}
    for name in ("sigmoid", "tanh", "relu6", "hardtanh", "softmax", "softsign", "hardsigmoid"):
        assert bounded[name], name
    for name in ("relu", "identity", "elu", "softplus", "logsigmoid", "tanhshrink", "leaky_relu", "prelu"):
        assert not bounded[name], name


def test_monotone_fit_by_hand():
    from actlab.analysis import monotone_mse

    x = torch.arange(5.0).unsqueeze(1)
    y = torch.tensor([[2.0], [1.0], [0.0], [1.0], [2.0]])
    # best non-decreasing fit (pool-adjacent-violators): 1, 1, 1, 1, 2 -> squared errors 1, 0, 1, 0, 0
    assert abs(monotone_mse(x, y) - 2 / 5) < 1e-12
    assert monotone_mse(x, torch.arange(5.0).unsqueeze(1)) == 0.0  # already monotone


def test_unit_story_from_two_snapshots():
    from actlab.analysis import RunUnits

    def snap(dead):
        mask = [torch.tensor(dead)]
        return diagnostics.Snapshot(0.0, [], mask, mask, [])

    units = RunUnits(0, snap([True, True, False, False]), snap([True, False, True, False]))
    assert units.count("born_dead") == [2] and units.count("died") == [1] and units.count("revived") == [1]
    assert units.count("dead_end") == [2] and RunUnits(0, snap([True]), None).count("died") == [0]
