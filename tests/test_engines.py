"""The batched engine against the loop engine (the reference): the same numbers, bit for bit.

Bitwise equality needs every stacked kernel to round as the single-run one does. With actlab's CPU pinning
(MKL_CBWR=COMPATIBLE, ATen and oneDNN at AVX2: actlab/__init__.py) that does not depend on the CPU model;
each bitwise test first asks the engines' start-up probe and skips, saying why, where this machine's
kernels cannot give it (tests/test_portability.py runs the other code paths in subprocesses).
"""

import logging
import math

import pytest
import torch
from helpers import max_rel_dev, probe, require_bitwise, same_history, same_values

from actlab import activations
from actlab.engines import RunSpec, TrainSettings, train
from actlab.engines.stacked import ROW_WISE, can_batch, stacked_activation
from actlab.tasks import make_dataset

SIZES = (10, 18, 18, 4, 1)
ALL = activations.names()  # all 23, the exp-based ones included (laid out run by run: engines/rowwise.py)


SETTINGS = {f for f in TrainSettings.__dataclass_fields__}


def _run(specs, data, engine, epochs=6, **kw):
    kw.setdefault("batch_size", 10)
    kw.setdefault("shuffle", False)
    kw.setdefault("workers", 1)
    settings = TrainSettings(epochs=epochs, **{k: kw.pop(k) for k in list(kw) if k in SETTINGS})
    return {r.spec.run_id: r for chunk in train(specs, data, SIZES, settings, engine=engine, **kw) for r in chunk}


def _assert_bitwise(loop, batched):
    for run_id, ref in loop.items():
        got = batched[run_id]
        assert got.engine == "batched"
        assert same_history(ref.history, got.history), run_id
        assert ref.state.keys() == got.state.keys()
        assert all(torch.equal(ref.state[k], got.state[k]) for k in ref.state), run_id


SETUPS = {
    "in order": (lambda: make_dataset("noise", 100, 0), False),
    "shuffled": (lambda: make_dataset("noise", 100, 0), True),
    # 60 training points, 20 held out for a test loss
    "held-out": (lambda: make_dataset("teacher", 80, 1, noise=0.1, test_fraction=0.25), True),
}


@pytest.mark.parametrize("setup", list(SETUPS))
def test_bitwise_equal_to_the_loop_engine(setup):
    make, shuffle = SETUPS[setup]
    data = make()
    specs = [RunSpec(name, seed, 0.003) for name in ALL for seed in (0, 1)]
    require_bitwise(specs, data, SIZES, 10)
    loop, batched = _run(specs, data, "loop", shuffle=shuffle), _run(specs, data, "batched", shuffle=shuffle)
    _assert_bitwise(loop, batched)
    if data.x_test is not None:
        assert "test_loss" in batched["relu/seed0"].history


@pytest.mark.parametrize("name", sorted(ROW_WISE))
@pytest.mark.parametrize("shape", [(10, 18), (7, 4), (100, 18), (1, 1), (3, 33)])
def test_row_wise_activations_compute_each_run_as_a_single_run(name, shape):
    """Forward and backward of an exp-based activation on a stack equal, run by run, the module on one run
    (its kernels see each run as one stretch of memory of its own, as with a single run)."""
    gen = torch.Generator().manual_seed(1)
    z, grad = 3 * torch.randn(5, *shape, generator=gen), torch.randn(5, *shape, generator=gen)
    z.requires_grad_()
    out = stacked_activation(RunSpec(name, 0, 0.0))(z)
    (gz,) = torch.autograd.grad((out * grad).sum(), z)
    module = activations.resolve(name).build()
    for i in range(5):
        zi = z[i].detach().requires_grad_()
        oi = module(zi)
        (gi,) = torch.autograd.grad((oi * grad[i]).sum(), zi)
        assert torch.equal(out[i], oi) and torch.equal(gz[i], gi), i


def test_odd_batch_sizes_and_a_short_last_batch():
    """48 training points in batches of 10 end on a batch of 8; in batches of 7, on a batch of 6."""
    data = make_dataset("teacher", 60, 1, noise=0.1, test_fraction=0.2)
    specs = [RunSpec(name, 0, 0.003) for name in ("relu", "tanh", "identity", "prelu", "mish")]
    for batch_size in (10, 7):
        require_bitwise(specs, data, SIZES, batch_size)
        loop = _run(specs, data, "loop", batch_size=batch_size, shuffle=True)
        _assert_bitwise(loop, _run(specs, data, "batched", batch_size=batch_size, shuffle=True))


def test_where_the_probe_fails_it_says_so_and_the_engines_agree_to_rounding(caplog):
    """Batches of 2: the probe knows whether this machine's kernels give bitwise equality. Where it does,
    the engines are bitwise equal; where not, one warning line says so and the run goes on, within float32
    rounding amplified over 60 steps (the activations themselves differ by 1e-2 and more)."""
    data = make_dataset("noise", 20, 0)
    specs = [RunSpec(name, 0, 0.001) for name in ("relu", "tanh", "sigmoid")]
    with caplog.at_level(logging.WARNING, logger="actlab"):
        batched = _run(specs, data, "batched", batch_size=2)
    loop = _run(specs, data, "loop", batch_size=2)
    if probe(specs, data, SIZES, 2)["bitwise"]:
        _assert_bitwise(loop, batched)
        assert not caplog.records
    else:
        (record,) = caplog.records
        assert "not reproduce the loop engine bit for bit" in record.getMessage()
        assert "\n" not in record.getMessage()
        for run_id, ref in loop.items():
            for key in ("train_loss", "full_loss"):
                assert max_rel_dev(ref.history[key], batched[run_id].history[key]) < 1e-4, (run_id, key)


def test_a_diverging_run_leaves_the_others_untouched():
    data = make_dataset("noise", 100, 0)
    calm = [RunSpec("relu", 0, 1e-3), RunSpec("tanh", 0, 1e-3), RunSpec("prelu", 1, 1e-3)]
    alone = _run(calm, data, "batched")
    mixed = _run([*calm[:2], RunSpec("relu", 9, 1e12), calm[2]], data, "batched")
    assert mixed["relu/seed9"].status == "diverged"
    for spec in calm:
        assert same_history(alone[spec.run_id].history, mixed[spec.run_id].history)


def test_results_do_not_depend_on_chunking_or_workers():
    """Every run is computed as it would be alone (exp-based activations included), so which runs share its
    stack, and in which process, changes no bit of it."""
    data = make_dataset("noise", 100, 0)
    specs = [RunSpec(name, seed, 0.001) for name in ("relu", "tanh", "prelu", "mish", "sigmoid") for seed in range(5)]
    require_bitwise(specs, data, SIZES, 10)  # "as alone" is the stacked kernels' equality with single runs
    reference = _run(specs, data, "batched", chunk_size=len(specs))
    for kw in ({"chunk_size": 1}, {"chunk_size": 7}, {"chunk_size": 7, "workers": 2}, {"workers": 2}):
        other = _run(specs, data, "batched", **kw)
        for k, ref in reference.items():
            assert same_history(ref.history, other[k].history), (kw, k)
            assert all(torch.equal(ref.state[p], other[k].state[p]) for p in ref.state), (kw, k)


@pytest.mark.parametrize("chunk_size,parts", [(4096, 2), (4096, 3), (50, 2), (7, 2), (4096, 1)])
def test_chunks_cover_every_run_in_order_within_the_size_and_balance_the_cost(chunk_size, parts):
    """The batched engine's cut: contiguous chunks, every run once in order, at most ``chunk_size`` runs,
    as many chunks as before (``parts`` at least where there are enough runs); the default comparison's
    two chunks cut between activations (a group cut in two pays its kernel calls twice), their larger cost
    within 5% of the best of every possible cut in two (enumerated)."""
    from actlab.engines import batched
    from actlab.engines.common import groups_of

    specs = [RunSpec(name, seed, 0.001) for name in ALL for seed in range(10)]
    groups = groups_of(specs)
    chunks = batched.split(specs, chunk_size, parts, groups)
    assert [s for chunk in chunks for s in chunk] == specs
    assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
    assert len(chunks) == max(-(-len(specs) // chunk_size), parts)

    def cost(chunk):
        costs = [batched._cost(groups[spec.group_key]) for spec in chunk]
        return (sum(batched.RUN_COST + run for _, run in costs)
                + sum(batched._cost(groups[key])[0] for key in {spec.group_key for spec in chunk}))

    if (chunk_size, parts) == (4096, 2):
        assert chunks[0][-1].activation != chunks[1][0].activation
        best = min(max(cost(specs[:cut]), cost(specs[cut:])) for cut in range(1, len(specs)))
        assert max(map(cost, chunks)) <= 1.05 * best


def test_per_run_learning_rates_and_options_in_one_stack():
    data = make_dataset("noise", 100, 0)
    specs = [RunSpec("relu", 0, 1e-3), RunSpec("relu", 1, 3e-2), RunSpec("prelu", 0, 1e-2),
             RunSpec("leaky_relu", 0, 1e-3), RunSpec("leaky_relu", 0, 1e-3, {"negative_slope": 0.3}),
             RunSpec("prelu", 1, 1e-3, {"init": 0.5})]
    require_bitwise(specs, data, SIZES, 10)
    loop, batched = _run(specs, data, "loop"), _run(specs, data, "batched")
    assert "leaky_relu[negative_slope=0.3]/seed0" in loop and len(loop) == len(batched) == 6
    for run_id, ref in loop.items():
        assert same_history(ref.history, batched[run_id].history), run_id
    slopes = batched["prelu[init=0.5]/seed1"].history["slope_L1"]
    assert slopes[0] != 0.5 and abs(slopes[0] - 0.5) < 0.05  # learned, starting from the option's 0.5


def test_custom_activations_batch_or_fall_back():
    data = make_dataset("noise", 100, 0)
    cube, scaled, rows = (RunSpec(f"custom_acts:{n}", 0, 1e-3) for n in ("Cube", "Scaled", "RowSoftmax"))
    assert can_batch(cube) and not can_batch(scaled) and not can_batch(rows)
    assert not can_batch(RunSpec("custom_acts:FlatCube", 0, 1e-3))  # needs contiguous memory: not row by row
    got = _run([cube, scaled, rows], data, "batched", epochs=3)
    assert got[cube.run_id].engine == "batched"
    assert got[scaled.run_id].engine == "loop" and got[rows.run_id].engine == "loop"
    require_bitwise([cube], data, SIZES, 10)
    ref = _run([cube], data, "loop", epochs=3)
    assert same_history(ref[cube.run_id].history, got[cube.run_id].history)


@pytest.mark.parametrize("engine", ["loop", "batched"])
def test_losses_only_mode_gives_the_same_losses(engine):
    """train.diagnostics off skips gradient norms and unit states; the training and the losses are unchanged."""
    data = make_dataset("teacher", 80, 1, noise=0.1, test_fraction=0.25)
    specs = [RunSpec(name, 0, 0.003) for name in ("relu", "tanh", "prelu")]
    full = _run(specs, data, engine, shuffle=True)
    lean = _run(specs, data, engine, shuffle=True, diagnostics=False)
    for run_id, ref in full.items():
        got = lean[run_id].history
        assert "grad_norm_L1" in ref.history and "grad_norm_L1" not in got and "dead_L1" not in got
        for key in ("train_loss", "last_batch_loss", "full_loss", "test_loss"):
            assert ref.history[key] == got[key], (run_id, key)


def test_the_diagnostics_schedule_skips_the_same_epochs_in_both_engines():
    """train.diagnostics_dense=2 over 9 epochs measures epochs 0, 1, 2, 4, 8 and 9: both engines leave the
    others NaN (not carried forward), bit for bit alike, and the schedule changes nothing else: the losses
    and the measured epochs' values are those of a run measured every epoch."""
    data = make_dataset("teacher", 80, 1, noise=0.1, test_fraction=0.25)
    specs = [RunSpec(name, 0, 0.003) for name in ("relu", "sigmoid", "prelu", "softmax", "gelu")]
    sparse = {engine: _run(specs, data, engine, epochs=9, shuffle=True, diagnostics_dense=2)
              for engine in ("loop", "batched")}
    every = _run(specs, data, "batched", epochs=9, shuffle=True, diagnostics_dense=0)
    measured = [e in (1, 2, 4, 8, 9) for e in range(1, 10)]
    for spec in specs:
        got, ref = sparse["batched"][spec.run_id], every[spec.run_id]
        assert got.initial.keys() == ref.initial.keys()
        for key, values in got.history.items():
            if key.startswith(("grad_norm_", "dead_", "saturated_")):
                units_of_softmax = spec.activation == "softmax" and not key.startswith("grad_norm_")  # NaN always
                assert [v == v for v in values] == measured or units_of_softmax, (spec.run_id, key)
                assert all(math.isnan(v) for v, m in zip(values, measured) if not m), (spec.run_id, key)
                assert same_values([v for v, m in zip(values, measured) if m],
                                   [v for v, m in zip(ref.history[key], measured) if m]), (spec.run_id, key)
            elif key != "seconds":
                assert same_values(values, ref.history[key]), (spec.run_id, key)
    require_bitwise(specs, data, SIZES, 10)
    _assert_bitwise(sparse["loop"], sparse["batched"])


def test_a_run_that_diverges_keeps_every_epoch_before_it_in_both_engines():
    """lr 1e5 on one batch of 100: the loss overflows after a few epochs. Both engines stop the run at the
    same epoch and keep every measure of every epoch before it (the wall times too: one row per epoch)."""
    data = make_dataset("noise", 100, 0)
    specs = [RunSpec("identity", seed, 1e5) for seed in (0, 1)]
    runs = {engine: _run(specs, data, engine, epochs=30, batch_size=100) for engine in ("loop", "batched")}
    for spec in specs:
        loop, batched = runs["loop"][spec.run_id], runs["batched"][spec.run_id]
        assert loop.status == batched.status == "diverged"
        assert loop.diverged_epoch == batched.diverged_epoch and loop.diverged_epoch > 1
        for result in (loop, batched):
            assert {len(v) for v in result.history.values()} == {result.diverged_epoch - 1}, result.engine
            assert set(result.history) == set(runs["loop"][spec.run_id].history)
    require_bitwise(specs, data, SIZES, 100)
    for spec in specs:
        assert same_history(runs["loop"][spec.run_id].history, runs["batched"][spec.run_id].history)


OPTIMIZERS = {
    "sgd": {"optimizer": "sgd"},
    "sgd with momentum": {"optimizer": "sgd", "momentum": 0.9},
    "adam, keras eps and other betas": {"optimizer": "adam", "eps": 1e-7, "betas": (0.8, 0.99)},
}
SOME = ["identity", "relu", "tanh", "prelu", "sigmoid", "mish", "gelu", "softmax"]  # each kind of kernel path


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_optimizer_is_bitwise_equal_to_the_loop_engine(optimizer):
    """torch.optim.SGD (plain and with momentum) and Adam with other eps and betas, replayed over the flat
    buffer, with a different lr per run in one stack: every weight after every step equals the loop's."""
    data = make_dataset("teacher", 80, 1, noise=0.1, test_fraction=0.25)
    specs = [RunSpec(name, seed, lr) for name in SOME for seed, lr in ((0, 0.01), (1, 0.003))]
    settings = OPTIMIZERS[optimizer]
    require_bitwise(specs, data, SIZES, 10, TrainSettings(epochs=1, batch_size=10, **settings))
    loop = _run(specs, data, "loop", shuffle=True, **settings)
    batched = _run(specs, data, "batched", shuffle=True, **settings)
    _assert_bitwise(loop, batched)
    adam = _run(specs[:2], data, "loop", shuffle=True)
    assert not same_history(adam["identity/seed0"].history, loop["identity/seed0"].history)  # it did change


def test_sgd_momentum_changes_the_training_and_zero_momentum_is_plain_sgd():
    data = make_dataset("noise", 100, 0)
    specs = [RunSpec("tanh", 0, 0.01)]
    plain = _run(specs, data, "batched", optimizer="sgd")["tanh/seed0"]
    zero = _run(specs, data, "batched", optimizer="sgd", momentum=0.0)["tanh/seed0"]
    heavy = _run(specs, data, "batched", optimizer="sgd", momentum=0.9)["tanh/seed0"]
    assert same_history(plain.history, zero.history)
    assert plain.history["full_loss"] != heavy.history["full_loss"]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_probe_catches_an_optimizer_that_rounds_differently(monkeypatch, optimizer):
    """The probe is not vacuous: an update a few float32 ulps off (lr * 1.000001) makes it fail, by name."""
    from actlab.engines import flat_optim
    from actlab.engines import probe as engine_probe

    settings = TrainSettings(epochs=1, batch_size=10, optimizer=optimizer, momentum=0.5)
    specs = [RunSpec("relu", 0, 1e-3)]
    data = make_dataset("noise", 100, 0)
    require_bitwise(specs, data, SIZES, 10, settings)
    original = flat_optim.make

    def off(stack, lrs, s):
        return original(stack, [lr * 1.000001 for lr in lrs], s)

    monkeypatch.setattr(flat_optim, "make", off)
    engine_probe._probe.cache_clear()
    try:
        result = engine_probe.for_training(specs, SIZES, 100, 0, 10, settings)
    finally:
        engine_probe._probe.cache_clear()
    assert not result["bitwise"] and optimizer in result["checked"]
    assert any(f.startswith(f"{optimizer}: ") for f in result["failed"])


INITS = [(scheme, bias) for scheme in ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
                                       "lecun_normal", "auto") for bias in ("default", "zero")]


def test_initialisation_per_run_is_bitwise_equal_to_the_loop_engine():
    """Every scheme and bias rule, per run, mixed in one stack with the default ones: same numbers as the loop."""
    data = make_dataset("noise", 100, 0)
    names = ("relu", "tanh", "selu", "leaky_relu", "prelu", "softshrink")
    specs = [RunSpec(name, seed, 0.003, init=scheme, init_bias=bias)
             for name in names for seed in (0,) for scheme, bias in INITS + [("default", "default")]]
    assert len({s.run_id for s in specs}) == len(specs)
    require_bitwise(specs, data, SIZES, 10)
    loop, batched = _run(specs, data, "loop", epochs=3), _run(specs, data, "batched", epochs=3)
    _assert_bitwise(loop, batched)
    default, xavier = batched["relu/seed0"], batched["relu[init=xavier_uniform,init_bias=zero]/seed0"]
    assert default.initial["full_loss"] != xavier.initial["full_loss"]


@pytest.mark.parametrize("engine", ["loop", "batched"])
def test_each_run_starts_from_its_own_scheme_paired_by_seed(engine):
    """Epoch 0 of each run is the net with init.initial_parameters(seed, scheme, bias, activation): through
    the engines, ``auto`` gives each activation its own scheme, and the schemes of one seed share its draws."""
    from actlab import init
    from actlab.model import FeedForward, load_parameters

    data = make_dataset("noise", 100, 0)
    specs = [RunSpec(name, 2, 0.003, init="auto", init_bias="zero") for name in ("relu", "tanh", "selu", "hardshrink")]
    if engine == "batched":  # equal to one model's loss when the stacked kernels are the single-run ones
        require_bitwise(specs, data, SIZES, 10)
    got = _run(specs, data, engine, epochs=1)
    for spec in specs:
        scheme = init.AUTO.get(spec.activation, "default")
        params = init.initial_parameters(SIZES, 2, scheme, "zero", spec.activation)
        model = load_parameters(FeedForward(SIZES, activations.resolve(spec.activation).build), params)
        with torch.no_grad():
            expected = torch.nn.functional.mse_loss(model(data.x_train), data.y_train).item()
        assert got[spec.run_id].initial["full_loss"] == expected, spec.run_id
    # relu (kaiming_uniform) and tanh (xavier_uniform) of one seed: the same uniform draws, scaled per layer
    from actlab.engines.stacked import Stack

    stack = Stack(specs[:2], SIZES, torch.device("cpu"))
    for w in stack.weights:
        ratio = w[0] / w[1]
        assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-5)
    assert all(torch.equal(b[0], torch.zeros_like(b[0])) for b in stack.biases)
