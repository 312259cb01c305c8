"""The optimizers of the stacked engine: torch.optim's single-tensor arithmetic over one flat buffer.

Adam and SGD are element-wise: each element's update depends only on its own gradient and state. So one
update of the flat buffer that holds every run's parameters is, element by element, each run's own
``torch.optim.Adam(foreach=False)`` or ``torch.optim.SGD(foreach=False)`` step, provided every operation
is the one torch runs, in torch's order (``probe`` checks it on this machine). A per-run learning rate is
one value per element, folded in where torch's own scalar would go.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from actlab.engines.common import TrainSettings, without_grad

if TYPE_CHECKING:
    from actlab.engines.stacked import Stack

FLOAT32_TINY = torch.finfo(torch.float32).tiny
SCALE = 16  # the clamped exp_avg_sq times 2**16: above 2**-104, where MKL's sqrt is fast (see Adam)


class FlatOptimizer:
    """Shared by both: the flat parameters, a gradient buffer the engine fills, the step count, the lr."""

    def __init__(self, stack: Stack, lrs: Sequence[float]) -> None:
        self.params = stack.flat
        self.grad = torch.empty_like(self.params)  # the engine concatenates the gradients into it
        self.step_count = 0
        self.lr: float | None = lrs[0] if len(set(lrs)) == 1 else None
        # one lr per element where they differ, in float64 as Python computes a scalar step size
        self.lr_flat = None if self.lr is not None else stack.per_element(
            torch.tensor(lrs, dtype=torch.float64, device=self.params.device))

    def step(self, grad: torch.Tensor) -> None:
        raise NotImplementedError


class Adam(FlatOptimizer):
    """torch.optim.Adam (single-tensor, no weight decay, no amsgrad) with betas and eps, per-run lr."""

    def __init__(self, stack: Stack, lrs: Sequence[float], betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        super().__init__(stack, lrs)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = torch.zeros_like(self.params)
        self.exp_avg_sq = torch.zeros_like(self.params)
        self._denom = torch.empty(0)  # made on first use: where step() is given another gradient than self.grad
        # The clamp of step() changes no result: for v below it, sqrt(v) / sqrt(bc2) (bc2 >= 1 - beta2, its
        # value at step 1) is under a quarter ulp of eps, so denom rounds to eps either way; but sqrt of
        # exact zeros (the weights of dead ReLU units) takes a slow path on this CPU, 5x slower than the
        # rest of the update. 1e-36 for the defaults (as before); lower for a tiny eps or beta2 near 1.
        bound = (eps * 2.0**-26) ** 2 * (1.0 - self.beta2)
        self.floor = min(1e-36, bound) if bound >= FLOAT32_TINY else None
        # MKL's sqrt (torch.sqrt on CPU) also takes a slow path below about 2**-104 under the pinned SSE2
        # code (MKL_CBWR=COMPATIBLE): 2.7 ms instead of 0.07 ms per 147k clamped floats, a third of a
        # 230-run training step. So the clamped values are scaled by 2**SCALE first and the divisor by
        # 2**(SCALE/2): sqrt and division are correctly rounded, and scaling by powers of two is exact in
        # float32's normal range, so the quotient is the same float (tests/test_flat_optim.py: against
        # torch.optim.Adam on zeros, tiny, huge and non-finite values). v >= 2**(128 - SCALE) would
        # overflow: the plain path then.
        self.scaled = self.floor is not None and self.params.device.type == "cpu"
        # the constant scalars as float32 tensors made once: a Python number is wrapped into a float64 tensor
        # and converted to float32 on every call (the same float32 value either way, so the same bits)
        self._beta2, self._scale, self._divisor = (
            torch.tensor(v, dtype=self.params.dtype, device=self.params.device) for v in (self.beta2, 2.0**SCALE, 1.0))
        # eps as a full array, for addcdiv (below): ATen vectorises a three-operand kernel with one broadcast
        # scalar operand at most (with two, its scalar loop is 4x slower than the division and add it replaces)
        self._eps = torch.full_like(self.params, eps)

    @without_grad
    def step(self, grad: torch.Tensor) -> None:
        """One update from the flat gradient (same layout as the parameters). The optimizer's own ``grad``
        buffer serves as scratch once read (the engine writes every element of it again before the next step)."""
        self.step_count += 1
        self.exp_avg.lerp_(grad, 1 - self.beta1)
        self.exp_avg_sq.mul_(self._beta2).addcmul_(grad, grad, value=1 - self.beta2)
        bias_correction1 = 1 - self.beta1**self.step_count
        bias_correction2 = 1 - self.beta2**self.step_count
        # denom = sqrt(exp_avg_sq) / sqrt(bc2) + eps, as Adam computes it, into a reused buffer: the gradient
        # buffer, read for the last time above (one array less for the caches than a buffer of its own)
        if grad is self.grad:
            scratch = grad
        else:
            if self._denom.shape != self.params.shape:
                self._denom = torch.empty_like(self.params)
            scratch = self._denom
        if self.floor is not None:
            denom = torch.clamp_min(self.exp_avg_sq, self.floor, out=scratch)
        else:
            denom = scratch.copy_(self.exp_avg_sq)
        # amax, not max: the same value (NaN propagates: the plain path), without max's index bookkeeping
        if self.scaled and float(self.exp_avg_sq.amax()) < 2.0 ** (128 - SCALE):
            self._divisor.fill_(bias_correction2**0.5 * 2.0 ** (SCALE // 2))
            denom.mul_(self._scale).sqrt_()
        else:
            self._divisor.fill_(bias_correction2**0.5)
            denom.sqrt_()
        # sqrt / divisor + eps in one pass, by addcdiv: eps + (1 * sqrt) / divisor, each operation rounded once,
        # is the division then the add (addition commutes); the divisor as a float32 tensor, the float32 that
        # div_ makes of the Python number (and no conversion of a new tensor every step)
        torch.addcdiv(self._eps, denom, self._divisor, out=denom)
        if self.lr is not None:
            self.params.addcdiv_(self.exp_avg, denom, value=-(self.lr / bias_correction1))
        else:  # (-lr/bc1) * exp_avg / denom: addcdiv's own order of operations
            neg_step = (self.lr_flat / bias_correction1).neg_().float()
            self.params.addcdiv_(self.exp_avg * neg_step, denom)


class SGD(FlatOptimizer):
    """torch.optim.SGD (single-tensor, no dampening, weight decay or nesterov) with momentum, per-run lr."""

    def __init__(self, stack: Stack, lrs: Sequence[float], momentum: float = 0.0) -> None:
        super().__init__(stack, lrs)
        self.momentum = momentum
        self.buf: torch.Tensor | None = None  # torch's momentum_buffer: a copy of the first gradient
        self._neg_lr = None if self.lr_flat is None else self.lr_flat.neg().float()

    @without_grad
    def step(self, grad: torch.Tensor) -> None:
        """One update from the flat gradient (same layout as the parameters)."""
        self.step_count += 1
        if self.momentum != 0:
            if self.buf is None:
                self.buf = grad.detach().clone()
            else:
                self.buf.mul_(self.momentum).add_(grad, alpha=1)
            grad = self.buf
        if self.lr is not None:
            self.params.add_(grad, alpha=-self.lr)
        else:  # param + (-lr) * grad, each element with its run's -lr as add's float32 alpha
            self.params.addcmul_(grad, self._neg_lr)


def make(stack: Stack, lrs: Sequence[float], settings: TrainSettings) -> FlatOptimizer:
    """The flat optimizer ``settings`` ask for, over ``stack``'s parameters."""
    if settings.optimizer == "sgd":
        return SGD(stack, lrs, settings.momentum)
    return Adam(stack, lrs, settings.betas, settings.eps)
