import math

import torch
from torch import nn

from actlab import activations
from actlab.model import ARTICLE_SIZES, FeedForward, count_parameters, initial_parameters, load_parameters


def test_article_net_shape_and_parameter_count():
    model = FeedForward(ARTICLE_SIZES, nn.ReLU)
    assert [(m.in_features, m.out_features) for m in model.linears()] == [(10, 18), (18, 18), (18, 4), (4, 1)]
    # activation after each of the three hidden layers, none after the output layer
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert count_parameters(model) == 621  # 10*18+18 + 18*18+18 + 18*4+4 + 4*1+1


def test_prelu_gets_one_slope_per_layer():
    model = FeedForward(ARTICLE_SIZES, lambda: activations.resolve("prelu").build())
    slopes = [m.weight for m in model.activations()]
    assert len({id(s) for s in slopes}) == 3
    assert count_parameters(model) == 624


def test_initial_parameters_are_seeded_and_in_pytorch_bounds():
    a, b = initial_parameters(ARTICLE_SIZES, 0), initial_parameters(ARTICLE_SIZES, 0)
    c = initial_parameters(ARTICLE_SIZES, 1)
    assert all(torch.equal(x, y) for pa, pb in zip(a, b) for x, y in zip(pa, pb))
    assert not torch.equal(a[0][0], c[0][0])
    for (weight, bias), fan_in in zip(a, ARTICLE_SIZES[:-1]):
        bound = 1 / math.sqrt(fan_in)  # nn.Linear's default init range
        assert weight.abs().max() <= bound and bias.abs().max() <= bound
        if weight.numel() >= 50:
            assert weight.abs().max() > 0.8 * bound  # uses the range, not a narrower one


def test_load_parameters_round_trip():
    model = load_parameters(FeedForward(ARTICLE_SIZES, nn.Tanh), initial_parameters(ARTICLE_SIZES, 3))
    assert torch.equal(model.linears()[2].weight, initial_parameters(ARTICLE_SIZES, 3)[2][0])
