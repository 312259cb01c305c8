"""Diagnostics on hand-built weights where the answer is known, and against independent autograd."""

import math

import pytest
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


def _assert_same_snapshot(got, want, what):
    assert got.loss == pytest.approx(want.loss, rel=1e-5, abs=1e-9), what
    assert got.grad_rms == pytest.approx(want.grad_rms, rel=1e-4, abs=1e-9), what
    for kind in ("dead", "negative", "weights"):  # masks exactly; weights are copies, so exactly too
        pairs = zip(getattr(got, kind), getattr(want, kind), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs), (what, kind)


def test_batched_snapshots_equal_snapshot_run_by_run():
    # oracle: diagnostics.snapshot of each net on its own; the nets are pushed so that the masks are not trivial
    from custom_acts import Cube

    from actlab.analysis import _stacked

    data = make_dataset("noise", 60, 4)
    sizes = (10, 6, 5, 1)
    makers = {name: activations.resolve(name).build for name in ("relu", "sigmoid", "prelu", "softmax", "tanh")}
    makers["custom_acts:Cube"] = Cube
    dead_seen = negative_seen = 0
    for name, make in makers.items():
        elementwise = name != "softmax"
        nets = []
        for seed in range(4):
            model = load_parameters(FeedForward(sizes, make), initial_parameters(sizes, seed))
            with torch.no_grad():
                model[0].bias[: seed + 1] = -30.0 if name != "sigmoid" else 30.0  # dead / all-negative / saturated
                model[2].weight.mul_(1 + seed)
                for i, act in enumerate(model.activations()):
                    for p in act.parameters():  # prelu: each run and layer its own learned slope
                        p.fill_(0.1 * (seed + 1) - 0.15 * i)
            nets.append(model)
        weights, biases, acts = _stacked(nets[0], [m.state_dict() for m in nets])
        got = diagnostics.snapshots(weights, biases, acts, data.x_train, data.y_train, elementwise)
        assert len(got) == len(nets)
        for seed, (snap, model) in enumerate(zip(got, nets)):
            want = diagnostics.snapshot(model, data.x_train, data.y_train, elementwise)
            _assert_same_snapshot(snap, want, (name, seed))
            dead_seen += sum(int(m.sum()) for m in want.dead)
            negative_seen += sum(int(m.sum()) for m in want.negative)
    assert dead_seen > 0 and negative_seen > 0


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


# --- The schedule, and the measuring pass against independent oracles --------------------------------------


def test_schedule_by_hand():
    # every epoch to 10, every 2nd to 20, every 4th to 40, every 8th to 80, every 16th to 160; always 0 and 150
    assert diagnostics.schedule(150, 10) == [*range(11), 12, 14, 16, 18, 20, 24, 28, 32, 36, 40, 48, 56, 64, 72,
                                             80, 96, 112, 128, 144, 150]
    assert diagnostics.schedule(9, 2) == [0, 1, 2, 4, 8, 9]
    assert diagnostics.schedule(20, 0) == list(range(21)) == diagnostics.schedule(20, 20)
    assert diagnostics.schedule(1, 10) == [0, 1]
    for epochs, dense in ((150, 10), (1000, 3), (7, 1)):
        assert all(diagnostics.is_measured(e, epochs, dense) == (e in diagnostics.schedule(epochs, dense))
                   for e in range(epochs + 1))
    assert diagnostics.describe_schedule(150, 10) == ("every epoch to 10, every 2nd to 20, every 4th to 40, "
                                                      "every 8th to 80, every 16th to 150, and epoch 150")
    assert diagnostics.describe_schedule(20, 10) == "every epoch to 10, every 2nd to 20"


def _stack(names, seeds=(0, 1), sizes=(10, 18, 18, 4, 1)):
    from actlab.engines import RunSpec
    from actlab.engines.stacked import Stack

    return Stack([RunSpec(name, seed, 1e-3) for name in names for seed in seeds], sizes, torch.device("cpu"))


def test_a_skipped_epoch_has_the_losses_and_nan_for_everything_else():
    data = make_dataset("teacher", 80, 1, noise=0.1, test_fraction=0.25)
    stack = _stack(["relu", "softmax", "sigmoid"])
    args = (stack.weights, stack.biases, stack.act_layers, data)
    measured, skipped, off = (diagnostics.evaluate(*args, True, True), diagnostics.evaluate(*args, True, False),
                              diagnostics.evaluate(*args, False))
    assert list(measured) == list(skipped)  # the same columns in the same order: the engines stack them
    assert set(off) == {"full_loss", "test_loss"}
    for name, value in skipped.items():
        if name.endswith("_loss"):
            assert torch.equal(value, measured[name]) and torch.equal(value, off[name]), name
        else:
            assert torch.isnan(value).all() and not torch.isnan(measured[name][:2]).all(), name


def _reference(model, x, y, elementwise):
    """Per linear layer the gradient norm, per hidden layer (dead, saturated) shares, by plain autograd on one
    run and the definitions of the module docstring (maximum over inputs, not the engines' sums)."""
    zs, h = [], x
    for i, layer in enumerate(model.linears()):
        h = layer(h)
        if i < len(model.linears()) - 1:
            zs.append(h)
            h = model.activations()[i](h)
    nn.MSELoss()(h, y).backward()
    norms = [torch.cat([m.weight.grad.flatten(), m.bias.grad]).norm() for m in model.linears()]
    states = []
    for act, z in zip(model.activations(), zs):
        if not elementwise:
            states.append((math.nan, math.nan))
            continue
        leaf = z.detach().requires_grad_()
        (slope,) = torch.autograd.grad(act(leaf).sum(), leaf)  # element-wise: f'(z), input by input
        slope = slope.abs()
        scale = diagnostics.max_slope(act)
        small = (slope < diagnostics.SATURATION_RATIO * scale).float().mean(dim=0)
        states.append((float((slope.amax(dim=0) == 0).float().mean()),
                       float((small >= diagnostics.SATURATION_SHARE).float().mean())))
    return norms, states


def test_the_measuring_pass_of_a_mixed_stack_equals_plain_autograd_run_by_run():
    """Every registry activation (prelu's stacked slope, softmax's units that mix, the row-wise exp-based
    kernels) in one stack, moved off its initialisation so that units die and saturate: each run's gradient
    norms and unit states equal those of its own network by autograd."""
    data = make_dataset("noise", 100, 2)
    names = activations.names()
    stack = _stack(names)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # big biases, some +-6 and more: dead and saturated units in many runs and layers
        for b in stack.biases[:-1]:
            b.copy_(6 * torch.randn(b.shape, generator=gen))
    got = diagnostics.evaluate(stack.weights, stack.biases, stack.act_layers, data)
    states = {"dead": 0, "saturated": 0}
    for r, state in enumerate(stack.final().state_dicts()):
        spec = activations.resolve(names[r // 2])
        model = FeedForward((10, 18, 18, 4, 1), spec.build)
        model.load_state_dict(state)
        norms, want = _reference(model, data.x_train, data.y_train, spec.elementwise)
        for layer, norm in enumerate(norms, start=1):
            assert torch.allclose(got[f"grad_norm_L{layer}"][r], norm, rtol=1e-4), (spec.name, layer)
        for layer, (dead, saturated) in enumerate(want, start=1):
            pair = (float(got[f"dead_L{layer}"][r]), float(got[f"saturated_L{layer}"][r]))
            assert pair == (dead, saturated) or (math.isnan(dead) and all(map(math.isnan, pair))), (spec.name, layer)
            states["dead"] += dead > 0
            states["saturated"] += saturated > 0
    assert states["dead"] > 5 and states["saturated"] > 5  # the oracle saw both kinds of units


def test_the_measuring_pass_by_the_step_kernels_equals_the_autograd_one_bit_for_bit():
    """The batched engine's measuring pass (``step.Forward.hidden``: each group's kernels, no graph) against
    the autograd one, on a stack of every registry activation and two user ones, one element-wise and one
    that mixes units while declaring nothing (its gradient the exact one), moved off its initialisation so
    that units die and saturate: every measure the same bits."""
    from actlab.engines.step import Forward

    data = make_dataset("noise", 100, 2)
    stack = _stack(activations.names() + ["custom_acts:Cube", "custom_acts:MixUnits"])
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for b in stack.biases[:-1]:
            b.copy_(6 * torch.randn(b.shape, generator=gen))
    args = (stack.weights, stack.biases, stack.act_layers, data)
    want = diagnostics.evaluate(*args)
    forward = Forward(stack)
    got = diagnostics.evaluate(*args, True, True, forward, forward.hidden)
    assert list(got) == list(want)
    for name, value in want.items():
        assert torch.equal(got[name].isnan(), value.isnan()), name
        assert torch.equal(got[name].nan_to_num().view(torch.int32), value.nan_to_num().view(torch.int32)), name
    assert float(want["dead_L1"].nan_to_num().sum()) > 0 and float(want["saturated_L2"].nan_to_num().sum()) > 0


def test_an_activation_that_mixes_units_gets_its_exact_gradient():
    """A user's activation declares nothing (element-wise by default) and may mix units: its gradient is
    still the vector-Jacobian product, not grad * f'(z)."""
    data = make_dataset("noise", 100, 0)

    class Mix(nn.Module):
        def forward(self, z):
            return torch.tanh(z) * z.mean(dim=-1, keepdim=True)

    model = load_parameters(FeedForward((10, 18, 18, 4, 1), Mix), initial_parameters((10, 18, 18, 4, 1), 1))
    group = [[diagnostics.ActGroup(0, 1, module, True, 1.0)] for module in model.activations()]
    got = diagnostics.evaluate([m.weight.unsqueeze(0) for m in model.linears()],
                               [m.bias.unsqueeze(0) for m in model.linears()], group, data)
    norms, _ = _reference(model, data.x_train, data.y_train, True)
    for layer, norm in enumerate(norms, start=1):
        assert torch.allclose(got[f"grad_norm_L{layer}"][0], norm, rtol=1e-5), layer


def test_unit_states_by_hand():
    """Four units over 10 inputs: f' zero everywhere (dead), small on 9 inputs (saturated), small on 8, and NaN."""
    slope = torch.ones(1, 10, 4)
    slope[0, :, 0] = 0.0
    slope[0, :9, 1] = 0.009  # below 1% of max_slope 1 on 90% of the inputs
    slope[0, :8, 2] = -0.009  # |f'| counts; 80% is not enough
    slope[0, 3, 3] = math.nan
    group = diagnostics.ActGroup(0, 1, torch.relu, True, 1.0)
    dead, saturated = diagnostics.unit_states(slope, [group])
    assert dead.tolist() == [0.25] and saturated.tolist() == [0.5]
    softmax = diagnostics.ActGroup(1, 2, torch.relu, False, 1.0)
    dead, saturated = diagnostics.unit_states(torch.cat([slope, slope]), [group, softmax])
    assert dead[0] == 0.25 and dead[1] != dead[1] and saturated[1] != saturated[1]


def test_metrics_csv_leaves_skipped_epochs_empty_and_env_json_lists_the_measured(tmp_path):
    import csv
    import json

    from actlab import config, experiment, storage

    cfg = config.build_config({"train": {"epochs": 9, "workers": 1, "diagnostics_dense": 2},
                               "compare": {"activations": ["relu", "tanh"], "seeds": 1}})
    exp = experiment.compare(cfg)
    writer = storage.ExperimentWriter.create(cfg, "compare", [r.spec.run_id for r in exp.results], "cpu",
                                             runs_dir=tmp_path)
    writer.add(exp.results)
    writer.finish()
    env = json.loads((writer.path / "env.json").read_text())
    assert env["diagnostics"] == [{"train.epochs": 9, "train.diagnostics_dense": 2, "epochs": [0, 1, 2, 4, 8, 9],
                                   "schedule": "every epoch to 2, every 2nd to 4, every 4th to 8, and epoch 9"}]
    with open(writer.path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        measured = int(row["epoch"]) in (0, 1, 2, 4, 8, 9)
        assert (row["grad_norm_L1"] != "") == measured and (row["dead_L3"] != "") == measured, row["epoch"]
        assert row["full_loss"] != ""  # losses every epoch
    table = storage.load_experiment(writer.path).metrics()
    assert math.isnan(table["saturated_L2"][3]) and not math.isnan(table["saturated_L2"][2])


def test_an_activation_that_cannot_be_hashed_is_measured_too():
    class Tanh:  # equality without a hash, as a dataclass would define it
        __hash__ = None

        def __eq__(self, other):
            return isinstance(other, Tanh)

        def __call__(self, z):
            return torch.tanh(z)

    data = make_dataset("noise", 100, 0)
    model = load_parameters(FeedForward((10, 18, 18, 4, 1), nn.Tanh), initial_parameters((10, 18, 18, 4, 1), 1))
    groups = [[diagnostics.ActGroup(0, 1, Tanh(), True, 1.0)] for _ in model.activations()]
    got = diagnostics.evaluate([m.weight.unsqueeze(0) for m in model.linears()],
                               [m.bias.unsqueeze(0) for m in model.linears()], groups, data)
    norms, states = _reference(model, data.x_train, data.y_train, True)
    assert all(torch.allclose(got[f"grad_norm_L{i}"][0], n, rtol=1e-5) for i, n in enumerate(norms, start=1))
    assert [(float(got[f"dead_L{i}"][0]), float(got[f"saturated_L{i}"][0])) for i in (1, 2, 3)] == states
