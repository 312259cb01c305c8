"""Initialisation schemes: closed-form spreads, empirical moments, seed pairing, and today's numbers kept."""

import math

import pytest
import torch

from actlab import init, rng
from actlab.model import ARTICLE_SIZES, initial_parameters

WIDE = (400, 300, 1)  # one large layer: 120,000 weights for the empirical checks


def old_initial_parameters(sizes, seed):
    """The oracle: actlab's initial_parameters before schemes existed, copied verbatim."""
    gen = rng.generator(seed, "init")
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        weight = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=gen)
        bias = torch.empty(fan_out).uniform_(-bound, bound, generator=gen)
        params.append((weight, bias))
    return params


@pytest.mark.parametrize("sizes", [ARTICLE_SIZES, (1, 2, 1), (1, 1, 1), (7, 33, 5, 1)])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_default_scheme_is_bitwise_the_previous_implementation(sizes, seed):
    old = old_initial_parameters(sizes, seed)
    for new in (initial_parameters(sizes, seed), initial_parameters(sizes, seed, "default", "default", "tanh"),
                initial_parameters(sizes, seed, scheme="auto", activation="softshrink")):
        assert all(torch.equal(a, b) for pa, pb in zip(old, new) for a, b in zip(pa, pb))


# Closed forms written out independently of the module: (uniform?, spread) per scheme for fan_in, fan_out.
CLOSED = {
    "default": lambda i, o: (True, 1 / math.sqrt(i)),
    "xavier_uniform": lambda i, o: (True, math.sqrt(6 / (i + o))),
    "xavier_normal": lambda i, o: (False, math.sqrt(2 / (i + o))),
    "kaiming_uniform": lambda i, o: (True, math.sqrt(6 / i)),  # relu gain sqrt(2) * sqrt(3 / fan_in)
    "kaiming_normal": lambda i, o: (False, math.sqrt(2 / i)),
    "lecun_normal": lambda i, o: (False, math.sqrt(1 / i)),
}


@pytest.mark.parametrize("scheme", list(CLOSED))
def test_spread_matches_the_closed_form(scheme):
    for fan_in, fan_out in [(10, 18), (18, 4), (1, 2), (400, 300)]:
        _, expected = CLOSED[scheme](fan_in, fan_out)
        assert init.spread(scheme, fan_in, fan_out, "relu") == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("scheme", list(CLOSED))
def test_weights_have_the_schemes_distribution(scheme):
    (weight, _), = initial_parameters(WIDE[:2], 3, scheme, activation="relu")
    uniform, spread = CLOSED[scheme](*WIDE[:2])  # fan_in 400, fan_out 300
    std = spread / math.sqrt(3) if uniform else spread
    # 120,000 draws: the sample std is within ~0.3% of the true one; 2% leaves room without hiding a bug.
    assert weight.std().item() == pytest.approx(std, rel=0.02)
    assert abs(weight.mean().item()) < 0.02 * std
    if uniform:
        assert weight.abs().max().item() <= spread and weight.abs().max().item() > 0.99 * spread
    else:  # a normal's tails go past the uniform bound of the same variance
        assert weight.abs().max().item() > 3.5 * std


def test_uniform_bound_is_respected_on_the_article_net():
    for (weight, bias), fan_in, fan_out in zip(initial_parameters(ARTICLE_SIZES, 0, "xavier_uniform"),
                                               ARTICLE_SIZES[:-1], ARTICLE_SIZES[1:]):
        assert weight.shape == (fan_out, fan_in) and bias.shape == (fan_out,)
        assert weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out))
        assert bias.abs().max() <= 1 / math.sqrt(fan_in)  # default biases stay nn.Linear's


@pytest.mark.parametrize(("activation", "options", "slope"), [
    ("leaky_relu", None, 0.01), ("leaky_relu", {"negative_slope": 0.2}, 0.2), ("prelu", None, 0.25),
    ("prelu", {"init": 0.1}, 0.1), ("relu", None, 0.0), ("tanh", None, 0.0),
])
def test_kaiming_gain_uses_the_negative_slope(activation, options, slope):
    gain = math.sqrt(2 / (1 + slope**2))  # He et al. 2015, eq. for PReLU/leaky units
    assert init.kaiming_gain(activation, options) == pytest.approx(gain, rel=1e-12)
    assert init.spread("kaiming_normal", 50, 20, activation, options) == pytest.approx(gain / math.sqrt(50))


@pytest.mark.parametrize("family", [init.UNIFORM_SCHEMES, init.NORMAL_SCHEMES])
def test_schemes_of_one_seed_are_the_same_draws_scaled(family):
    sizes, seed = ARTICLE_SIZES, 4
    base = initial_parameters(sizes, seed, family[0], activation="leaky_relu")
    for scheme in family[1:]:
        other = initial_parameters(sizes, seed, scheme, activation="leaky_relu")
        for (w0, b0), (w1, b1), fan_in, fan_out in zip(base, other, sizes[:-1], sizes[1:]):
            ratio = init.spread(scheme, fan_in, fan_out, "leaky_relu") / init.spread(
                family[0], fan_in, fan_out, "leaky_relu")
            assert torch.allclose(w1, w0 * ratio, rtol=1e-6, atol=0)  # one constant factor per layer
            assert torch.equal(b0, b1)  # default biases do not depend on the weight scheme


def test_normal_draws_are_standard_normal_from_their_own_stream():
    (weight, _), = initial_parameters((100, 100), 9, "lecun_normal")
    z = torch.empty(100, 100).normal_(0.0, 1.0, generator=rng.generator(9, "init:normal"))
    assert torch.allclose(weight, z / 10, rtol=1e-6, atol=0)


def test_zero_bias_keeps_the_weights():
    for scheme in ("default", "xavier_uniform", "lecun_normal"):
        with_bias = initial_parameters(ARTICLE_SIZES, 2, scheme)
        zero = initial_parameters(ARTICLE_SIZES, 2, scheme, bias="zero")
        for (w0, b0), (w1, b1) in zip(with_bias, zero):
            assert torch.equal(w0, w1) and torch.equal(b1, torch.zeros_like(b0)) and b0.abs().sum() > 0


def test_auto_uses_each_activations_recommended_scheme():
    expected = {"relu": "kaiming_uniform", "leaky_relu": "kaiming_uniform", "tanh": "xavier_uniform",
                "sigmoid": "xavier_uniform", "softsign": "xavier_uniform", "selu": "lecun_normal",
                "softshrink": "default", "mypkg.acts:MyAct": "default"}
    for activation, scheme in expected.items():
        assert init.resolve("auto", activation) == scheme
        auto = initial_parameters(ARTICLE_SIZES, 1, "auto", activation=activation)
        direct = initial_parameters(ARTICLE_SIZES, 1, scheme, activation=activation)
        assert all(torch.equal(a, b) for pa, pb in zip(auto, direct) for a, b in zip(pa, pb))


def test_every_registry_activation_has_a_documented_auto_scheme_or_the_default():
    from actlab import activations

    assert set(init.AUTO) <= set(activations.names())  # no typo in the table
    for name in activations.names():
        assert init.resolve("auto", name) in init.SCHEMES


def test_unknown_scheme_or_bias_is_a_clear_error():
    with pytest.raises(init.InitError, match="unknown initialisation scheme 'glorot'.*xavier_uniform"):
        initial_parameters(ARTICLE_SIZES, 0, "glorot")
    with pytest.raises(init.InitError, match="unknown bias initialisation 'ones'.*zero"):
        initial_parameters(ARTICLE_SIZES, 0, bias="ones")
