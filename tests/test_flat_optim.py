"""The flat Adam against torch.optim.Adam on gradients that reach its fast paths' edges: exact zeros (the
clamp), tiny values (MKL's slow sqrt, avoided by scaling), values whose square overflows the scaling
(the plain path) and non-finite ones. Every element must match bit for bit, every step."""

from types import SimpleNamespace

import pytest
import torch

from actlab.engines import flat_optim


def _gradients(steps: int, n: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    grads = []
    for step in range(steps):
        g = torch.randn(n, generator=gen)
        g[: n // 4] = 0.0  # dead units: exp_avg_sq stays exactly zero
        g[n // 4 : n // 2] *= 1e-20  # tiny: exp_avg_sq near 1e-40, below the clamp
        g[n // 2 : n // 2 + 8] = 2.0**57 * (1 + step)  # exp_avg_sq above 2**112 after a few steps
        grads.append(g)
    return grads


@pytest.mark.parametrize("own_buffer", [False, True], ids=["given gradient", "own gradient buffer"])
@pytest.mark.parametrize("eps,betas", [(1e-8, (0.9, 0.999)), (1e-7, (0.8, 0.99)), (1e-12, (0.9, 0.99999))])
def test_flat_adam_equals_torch_adam_at_the_edges_of_its_fast_paths(eps, betas, own_buffer):
    """Given a gradient tensor, or (as the engine does) its own ``grad`` buffer, which it then uses as
    scratch: the same numbers either way."""
    n, steps = 4096, 30
    start = torch.randn(n, generator=torch.Generator().manual_seed(1))
    ref = start.clone().requires_grad_()
    torch_adam = torch.optim.Adam([ref], lr=1e-3, eps=eps, betas=betas, foreach=False)
    flat = start.clone()
    adam = flat_optim.Adam(SimpleNamespace(flat=flat), [1e-3], betas=betas, eps=eps)
    used_plain = used_scaled = False
    for g in _gradients(steps, n):
        ref.grad = g.clone()
        torch_adam.step()
        big = float(adam.exp_avg_sq.mul(betas[1]).addcmul(g, g, value=1 - betas[1]).max())
        used_plain |= big >= 2.0 ** (128 - flat_optim.SCALE)
        used_scaled |= big < 2.0 ** (128 - flat_optim.SCALE)
        adam.step(adam.grad.copy_(g) if own_buffer else g)
        assert torch.equal(flat.view(torch.int32), ref.detach().view(torch.int32))
    assert used_scaled or not adam.scaled  # the fast path was exercised...
    # ...and the plain one, where a finite exp_avg_sq can get that large ((1 - beta2) * g**2, g**2 < 2**128)
    assert used_plain or (1 - betas[1]) * 2.0**128 < 2.0 ** (128 - flat_optim.SCALE)


def test_flat_adam_follows_torch_adam_through_non_finite_gradients():
    n = 512
    start = torch.randn(n, generator=torch.Generator().manual_seed(2))
    ref = start.clone().requires_grad_()
    torch_adam = torch.optim.Adam([ref], lr=1e-3, foreach=False)
    flat = start.clone()
    adam = flat_optim.Adam(SimpleNamespace(flat=flat), [1e-3])
    for step, g in enumerate(_gradients(6, n)):
        if step == 3:
            g[-3:] = torch.tensor([float("inf"), float("-inf"), float("nan")])
        ref.grad = g.clone()
        torch_adam.step()
        adam.step(g)
        same = (flat == ref.detach()) | (flat.isnan() & ref.detach().isnan())
        assert bool(same.all())
