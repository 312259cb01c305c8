"""The stack's linear forward (engines/affine.py) against each run's own nn.Linear, bit for bit, at the shapes
where a plain baddbmm is not: few rows, one output, one row."""

import itertools

import pytest
import torch
from torch.nn import functional as F

from actlab.engines import affine

SHAPES = list(itertools.product([1, 4, 5, 10, 18, 64], [1, 2, 4, 18], [1, 2, 3, 5, 10, 100]))


def _stack(fan_in, fan_out, rows, n=13, seed=1):
    """Other numbers and another stack size than the measurement's."""
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, rows, fan_in, generator=gen)
    w = torch.randn(n, fan_out, fan_in, generator=gen)
    b = torch.randn(n, fan_out, generator=gen)
    return h, w, b


@pytest.mark.parametrize("fan_in,fan_out,rows", SHAPES)
def test_each_runs_product_has_nn_linears_bits(fan_in, fan_out, rows):
    h, w, b = _stack(fan_in, fan_out, rows)
    single = torch.stack([F.linear(*run) for run in zip(h, w, b)])
    assert torch.equal(affine.forward(b.unsqueeze(1), h, w.transpose(1, 2)), single), affine.method(
        fan_in, fan_out, rows)
    out = torch.full_like(single, float("nan"))  # into a given buffer, every element written
    affine.forward(b.unsqueeze(1), h, w.transpose(1, 2), out=out)
    assert torch.equal(out, single)


def test_a_plain_baddbmm_is_not_enough_at_these_shapes():
    """The class of shapes the module exists for: a plain baddbmm differs from nn.Linear at some of them (if this
    ever fails, torch or MKL changed their kernels and the module's methods can go)."""
    differs = []
    for fan_in, fan_out, rows in SHAPES:
        h, w, b = _stack(fan_in, fan_out, rows)
        single = torch.stack([F.linear(*run) for run in zip(h, w, b)])
        if not torch.equal(torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2)), single):
            differs.append((fan_in, fan_out, rows))
    assert differs, "baddbmm equals nn.Linear everywhere here"


@pytest.mark.parametrize("how", affine.METHODS)
def test_every_method_computes_the_product(how):
    """Each method is the same product (to float32 rounding), whatever its summation order; inputs laid out as
    the step lays them (a one-element gap between runs' rows) and a broadcast first-layer input."""
    h, w, b = _stack(10, 4, 3)
    gapped = torch.empty(13 * 3 * 10 + 13).as_strided((13, 3, 10), (31, 10, 1))
    gapped.copy_(h)
    for inputs in (gapped, h[:1].expand(13, 3, 10)):
        got = affine.forward(b.unsqueeze(1), inputs, w.transpose(1, 2), how=how)
        torch.testing.assert_close(got, inputs @ w.transpose(1, 2) + b.unsqueeze(1))


def test_the_measurement_leaves_the_global_random_state_alone():
    affine.method.cache_clear()
    before = torch.random.get_rng_state()
    affine.method(7, 3, 2)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("how", affine.METHODS)
def test_without_a_buffer_every_method_is_differentiable(how):
    """Autograd's reference path (StackedLinear, the probe) calls it without ``out``: gradients flow through
    every method, to the product's own gradients."""
    h, w, b = (t.requires_grad_() for t in _stack(5, 4, 2))
    with torch.no_grad():
        z = affine.forward(b.unsqueeze(1), h, w.transpose(1, 2), how=how)
    assert z.is_contiguous()
    z = affine.forward(b.unsqueeze(1), h, w.transpose(1, 2), how=how)
    grads = torch.autograd.grad(z.sum(), (h, w, b))
    expected = torch.autograd.grad((h @ w.transpose(1, 2) + b.unsqueeze(1)).sum(), (h, w, b))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)
