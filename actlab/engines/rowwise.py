"""Element-wise activations on a stack of runs with each run's single-run rounding.

ATen's element-wise CPU kernels walk each contiguous stretch of memory in blocks of 2 x Vec::size elements
on the vectorised path and finish the remainder on the scalar path; for exp-based activations (sigmoid,
elu, selu, celu, silu, mish, softplus, and their backward kernels) the two paths round differently in the
last bit. A contiguous stack (N, B, W) is one stretch of N*B*W elements, so each run's tail lands in
another place than when the run is computed alone (one stretch of B*W elements).

Here every run's B*W elements are laid out as one row of a (N, B*W + 1) buffer: the gap after each row
stops TensorIterator from merging the rows, so the kernel runs its loop once per row, with the body/tail
split of a single run, whatever the vector width of the CPU. The backward kernels get their gradient laid
out the same way, so the gradients match too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Fn = Callable[[torch.Tensor], torch.Tensor]
Backward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (grad, input, output) -> grad
# ATen's SELU constants (selu is elu with these; autograd differentiates that elu)
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def rows(t: torch.Tensor) -> torch.Tensor:
    """A copy of t (N, ...) in which each t[i] is contiguous but no two are adjacent: (N, ...), row stride + 1."""
    inner = [1]
    for size in reversed(t.shape[2:]):
        inner.insert(0, inner[0] * size)
    per_run = inner[0] * t.shape[1] if t.dim() > 1 else 1
    out = torch.empty_strided(t.shape, (per_run + 1, *inner[: t.dim() - 1]), dtype=t.dtype, device=t.device)
    return out.copy_(t)


class _ToRows(torch.autograd.Function):
    """z -> ``rows(z)``; the gradient passes through unchanged."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        return rows(z)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _GradToRows(torch.autograd.Function):
    """The identity, whose gradient reaches the kernels before it laid out by ``rows``."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return rows(grad)


def backward_kernel(module: nn.Module) -> Backward | None:
    """The backward kernel autograd calls for ``module`` (derivatives.yaml), for the exp-based built-ins."""
    aten = torch.ops.aten
    if isinstance(module, nn.Sigmoid):
        return lambda grad, z, out: aten.sigmoid_backward(grad, out)
    if isinstance(module, nn.SiLU):
        return lambda grad, z, out: aten.silu_backward(grad, z)
    if isinstance(module, nn.Mish):
        return lambda grad, z, out: aten.mish_backward(grad, z)
    if isinstance(module, nn.Softplus):
        beta, threshold = module.beta, module.threshold
        return lambda grad, z, out: aten.softplus_backward(grad, z, beta, threshold)
    if isinstance(module, nn.ELU):
        alpha = module.alpha
        return lambda grad, z, out: aten.elu_backward(grad, alpha, 1.0, 1.0, False, z)
    if isinstance(module, nn.CELU):  # celu(x) = elu(x, alpha, scale 1, input_scale 1/alpha)
        alpha = module.alpha
        return lambda grad, z, out: aten.elu_backward(grad, alpha, 1.0, 1.0 / alpha, False, z)
    if isinstance(module, nn.SELU):
        return lambda grad, z, out: aten.elu_backward(grad, SELU_ALPHA, SELU_SCALE, 1.0, False, z)
    return None


class _RowWise(torch.autograd.Function):
    """fn on padded rows, and its backward kernel on padded rows: one autograd node (cheaper than three)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, fn: Fn, backward: Backward) -> torch.Tensor:
        padded = rows(z)
        out = fn(padded)
        ctx.save_for_backward(padded, out)
        ctx.backward_kernel = backward
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        padded, out = ctx.saved_tensors
        return ctx.backward_kernel(rows(grad), padded, out), None, None


def row_wise(fn: Fn, backward: Backward | None = None) -> Fn:
    """``fn`` (element-wise) applied to z (N, B, W) run by run as the kernels see a single run, forward
    and backward: through ``backward`` (the kernel autograd would call) where given, else through autograd
    with the gradient laid out in rows (any module)."""

    def apply(z: torch.Tensor) -> torch.Tensor:
        if z.shape[0] == 1 or z.device.type != "cpu":  # one run is one row already; GPUs have no such tail
            return fn(z)
        if not (torch.is_grad_enabled() and z.requires_grad):
            return fn(rows(z))
        if backward is not None:
            return _RowWise.apply(z, fn, backward)
        return _GradToRows.apply(fn(_ToRows.apply(z)))

    return apply
