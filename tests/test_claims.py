"""Every verdict branch of every claim check, on constructed numbers."""

import math

import pytest

from actlab import claims
from actlab.claims import CONTRADICTED, NOT_SHOWN, SUPPORTED

NAN = math.nan


def test_linear_collapse_branches():
    assert claims.linear_collapse([], 0.7).verdict == NOT_SHOWN
    assert claims.linear_collapse([0.7001, 0.7003], 0.7).verdict == SUPPORTED
    assert claims.linear_collapse([0.69, 0.71], 0.7).verdict == CONTRADICTED  # below the linear optimum
    assert claims.linear_collapse([0.70, 0.90], 0.7).verdict == NOT_SHOWN  # not converged on a seed
    assert claims.linear_collapse([math.inf, NAN], 0.7).verdict == NOT_SHOWN


def _vanish(act="sigmoid", ratio=0.2, first=0.5, last=1.0, saturated=0.02, layers=3, baselines=None):
    return claims.vanishing_gradients(act, ratio, first, last, saturated, layers, baselines or {"relu": 1.0})


def test_vanishing_gradients_branches():
    assert _vanish().verdict == SUPPORTED
    assert _vanish(ratio=NAN).verdict == NOT_SHOWN  # not measured
    assert _vanish(layers=1).verdict == NOT_SHOWN  # no depth to compound over
    assert _vanish(ratio=1.2).verdict == CONTRADICTED  # first layer's gradient not smaller
    assert _vanish(first=1.5).verdict == CONTRADICTED  # first layer moved more (Adam)
    assert _vanish(ratio=0.7).verdict == NOT_SHOWN  # smaller, but not clearly
    assert _vanish(baselines={"identity": 0.3}).verdict == NOT_SHOWN  # identity shrinks as much: confounded
    assert _vanish(baselines={"relu": NAN}).verdict == SUPPORTED  # no reference: the absolute rule


def test_vanishing_explanations_only_where_measured():
    assert "0.25" in _vanish().explanation  # sigmoid, small ratio, low saturation, deep enough
    assert _vanish(act="tanh").explanation == ""  # the sigmoid' <= 0.25 text is about sigmoid only
    assert _vanish(layers=1).explanation == ""
    assert _vanish(saturated=NAN).explanation == ""  # saturation not measured: no explanation
    assert _vanish(ratio=0.7).explanation == ""
    assert "saturated" in _vanish(saturated=0.5).explanation


def _units(died=2, born=4, revived=1, dead_end=5, negative_end=0, runs=10):
    return claims.Units(runs, 40 * runs, born, died, revived, dead_end, negative_end)


def test_dying_relu_branches():
    assert claims.dying_relu(None, {}).verdict == NOT_SHOWN
    assert claims.dying_relu(_units(died=0), {"leaky_relu": _units(0, 0, 0, 0, 6)}).verdict == NOT_SHOWN
    supported = claims.dying_relu(_units(), {"leaky_relu": _units(0, 0, 0, 0, 6)})
    assert supported.verdict == SUPPORTED and "6 with pre-activation <= 0" in supported.evidence
    assert claims.dying_relu(_units(), {"prelu": _units(dead_end=1)}).verdict == CONTRADICTED
    alone = claims.dying_relu(_units(), {})
    assert alone.verdict == SUPPORTED and "not tested" in alone.evidence


def test_bounded_helps_branches():
    assert claims.bounded_helps((0, 0), (3, 10), 0.3).verdict == NOT_SHOWN  # no bounded activation
    assert claims.bounded_helps((0, 20), (0, 70), 0.3).verdict == NOT_SHOWN  # nothing blew up
    assert claims.bounded_helps((0, 20), (30, 70), 0.3).verdict == SUPPORTED
    assert claims.bounded_helps((15, 20), (5, 70), 0.3).verdict == CONTRADICTED
    assert claims.bounded_helps((1, 20), (4, 70), 0.3).verdict == NOT_SHOWN  # not separable


def test_selection_advice_branches():
    assert claims.relu_first(None, 0, NAN, NAN).verdict == NOT_SHOWN
    assert claims.relu_first("best", 1, NAN, NAN).verdict == SUPPORTED
    assert claims.relu_first("equivalent", 2, 1.02, 0.5).verdict == SUPPORTED
    assert claims.relu_first("worse", 5, 3.0, 0.01).verdict == CONTRADICTED
    assert claims.relu_first("not separable", 3, 2.3, 0.23).verdict == NOT_SHOWN  # absence of evidence
    assert claims.avoid_sigmoid(None, 0, NAN, NAN).verdict == NOT_SHOWN
    assert claims.avoid_sigmoid("worse", 20, 50.0, 0.04).verdict == SUPPORTED
    assert claims.avoid_sigmoid("best", 1, NAN, NAN).verdict == CONTRADICTED
    assert claims.avoid_sigmoid("equivalent", 2, 1.0, 0.5).verdict == CONTRADICTED
    assert claims.avoid_sigmoid("not separable", 2, 13.0, 0.08).verdict == NOT_SHOWN


def test_curve_claims_branches():
    assert claims.straight_line([]).verdict == NOT_SHOWN
    assert claims.straight_line([3e-8, 1e-7]).verdict == SUPPORTED
    assert claims.straight_line([3e-8, 0.2]).verdict == CONTRADICTED
    assert claims.stuck_often("relu", 0, 0, 0).verdict == NOT_SHOWN
    assert claims.stuck_often("relu", 7, 10, 4).verdict == SUPPORTED  # Wilson lower bound 40%
    assert claims.stuck_often("relu", 0, 40, 0).verdict == CONTRADICTED  # Wilson upper bound 8.8%
    assert claims.stuck_often("relu", 1, 10, 1).verdict == NOT_SHOWN
    assert claims.smooth_fit("tanh", 0, 0).verdict == NOT_SHOWN
    assert claims.smooth_fit("tanh", 6, 10).verdict == CONTRADICTED
    assert claims.smooth_fit("sigmoid", 1, 10).verdict == SUPPORTED  # upper bound 40% < 50%
    assert claims.smooth_fit("sigmoid", 1, 3).verdict == NOT_SHOWN  # 3 seeds: [6%, 79%]


@pytest.mark.parametrize("relu,leaky,verdict", [
    ({}, {}, NOT_SHOWN),
    ({s: s < 7 for s in range(10)}, {s: False for s in range(10)}, SUPPORTED),  # 7 discordant: p 1/128
    ({s: s < 7 for s in range(10)}, {s: s < 5 for s in range(10)}, CONTRADICTED),  # leaky stuck on 5 too
    ({s: s < 2 for s in range(10)}, {s: False for s in range(10)}, NOT_SHOWN),  # 2 discordant: p 0.25
])
def test_leaky_avoids_branches(relu, leaky, verdict):
    assert claims.leaky_avoids(relu, leaky).verdict == verdict


def test_vanishing_gradient_names_adams_rescaling_only_for_adam():
    args = ("sigmoid", 0.05, 2.0, 0.5, 0.0, 3, {"relu": 1.0})
    adam = claims.vanishing_gradients(*args, optimizer="adam")
    sgd = claims.vanishing_gradients(*args, optimizer="sgd")
    assert adam.verdict == sgd.verdict == claims.CONTRADICTED
    assert "Adam rescales" in adam.evidence and "Adam" not in sgd.evidence


def test_swish_between_branches():
    relu, mid, low = [0.99, 0.98, 1.0, 0.97, 0.96], [0.3, 0.25, 0.35, 0.28, 0.31], [0.02, 0.03, 0.01, 0.025, 0.04]
    between = claims.swish_between({"relu": relu, "silu": mid, "sigmoid": low}, 4)
    assert between.verdict == SUPPORTED and "4 sharpest points" in between.evidence
    # by hand: 5 vs 5 fully separated, no ties: exact two-sided p = 2/252 = 0.0079 each; Holm: 2 x the smaller,
    # and the larger at least that
    assert between.evidence.count("p 0.016") == 2
    assert claims.swish_between({"relu": relu, "silu": [x / 2 for x in low], "sigmoid": low}, 4).verdict == NOT_SHOWN
    assert claims.swish_between({"relu": relu, "silu": [0.001] * 5, "sigmoid": low}, 4).verdict == CONTRADICTED
    assert claims.swish_between({"relu": mid, "silu": relu, "sigmoid": low}, 4).verdict == CONTRADICTED
    assert claims.swish_between({"relu": relu, "silu": mid[:2], "sigmoid": low}, 4).verdict == NOT_SHOWN  # too few
    assert claims.swish_between({"relu": relu, "sigmoid": low}, 4).verdict == NOT_SHOWN  # silu not compared


def test_kink_shares_of_hinged_and_smooth_fits(monkeypatch):
    from types import SimpleNamespace

    import numpy as np

    from actlab import analysis, report

    x = np.linspace(0, 2 * np.pi, 400, dtype=np.float32)
    hinges = np.maximum(x - 1.0, 0) + np.maximum(4.0 - x, 0) * 0.5  # two relu units: straight between the hinges
    bumps = 1 / (1 + np.exp(-(x - 2.0))) - 1 / (1 + np.exp(-(x - 4.0)))  # two sigmoid units
    flat = np.full_like(x, 0.3)  # a dead net: no curvature, no share
    curves = {"relu": [(x, hinges), (x, flat)], "sigmoid": [(x, bumps.astype(np.float32))]}
    monkeypatch.setattr(analysis, "fitted_curves", lambda stored, weights=None: curves)
    an = SimpleNamespace(stored=SimpleNamespace(config=SimpleNamespace(model=SimpleNamespace(sizes=[1, 2, 1]))),
                         weights=lambda: {})
    shares, points = report.kink_shares(an)
    assert points == 4 and len(shares["relu"]) == 1  # the flat fit has none
    assert shares["relu"][0] > 0.99 and shares["sigmoid"][0] < 0.1  # relu's rest: float32 rounding
    an.stored.config.model.sizes = [1, 2, 2, 1]  # two hidden layers: not measured
    assert report.kink_shares(an) == ({}, 0)
