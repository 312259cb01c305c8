"""Each activation's own forward and backward ATen kernels, for the stacked engine's hand-written step.

The stacked engine's training step (``stacked.Step``) runs the net's forward and backward pass by hand,
without autograd: per hidden layer and per group of runs it calls the activation's forward kernel and the
backward kernel autograd would call for it (derivatives.yaml), with the same arguments, so the bits are
autograd's. Each kernel writes its result straight into a slice of a preallocated per-layer buffer
(``out=``), instead of a tensor of its own that a concatenation then copies.

Those output buffers are laid out in padded rows (``rowwise``): run r's B*W elements start at r*(B*W + 1).
The gap stops TensorIterator from merging the runs into one stretch of memory, so every element-wise
kernel loops once per run, over a single run's B*W elements, with a single run's vectorised body and
scalar tail, whatever the CPU's vector width: each run is laid out as when it is computed alone, so the
exp-based activations, whose two paths round differently, get a single run's numbers too. The batched
matmuls and the bias-gradient sums read such buffers as they are (the batch stride is free), with the same
bits (the probe checks both).

gelu keeps a contiguous layout, as a single run has it (oneDNN computes it on a contiguous input, ATen's
own kernel on padded rows): computed on the contiguous slice and copied into the buffer (a copy changes
no bit). Softmax has no public backward op: autograd on its group (below).

The composites softsign and tanhshrink and prelu's stacked slope have kernels written here from the
graph autograd builds for them (``Softsign``, ``Tanhshrink``, ``PReLU``). Any other activation (a custom
module) is differentiated by autograd on its group alone (``Autograd``): the same kernels autograd runs in
the loop engine. ``kernel_for`` is the table; tests/test_kernels.py checks every entry against the module,
run by run, and the start-up probe checks the experiment's activations on its shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from actlab.engines.rowwise import SELU_ALPHA, SELU_SCALE

aten = torch.ops.aten
Tensor = torch.Tensor


def padded(n: int, batch: int, width: int, device: torch.device) -> Tensor:
    """An empty (n, batch, width) buffer in padded rows: run r at r*(batch*width + 1)."""
    return torch.empty_strided((n, batch, width), (batch * width + 1, width, 1), device=device)


class Kernel:
    """An activation on one group of runs: ``forward(z, out)`` writes f(z) into ``out``; ``backward(grad,
    z, out, grad_z)`` writes the gradient for z (given the gradient ``grad`` for f(z)) into ``grad_z``.

    z and grad: contiguous (n, B, W) slices; out and grad_z: slices of padded-row buffers."""

    def forward(self, z: Tensor, out: Tensor) -> None:
        raise NotImplementedError

    def backward(self, grad: Tensor, z: Tensor, out: Tensor, grad_z: Tensor) -> None:
        raise NotImplementedError

    def value(self, z: Tensor, out: Tensor) -> None:
        """f(z) into ``out`` when no backward follows (the per-epoch losses): the forward kernel."""
        self.forward(z, out)


class Pair(Kernel):
    """A forward kernel with an ``out=`` form and its backward kernel with a ``grad_input=`` form."""

    def __init__(self, forward: Callable[..., Any], backward: Callable[..., Any]) -> None:
        # the functions themselves, not methods that call them: the step calls 6 per group, every step
        self.forward, self.backward = forward, backward  # type: ignore[method-assign]


class Identity(Kernel):
    """f(x) = x: the values and the gradient pass through (copied into the buffers)."""

    def forward(self, z: Tensor, out: Tensor) -> None:
        out.copy_(z)

    def backward(self, grad: Tensor, z: Tensor, out: Tensor, grad_z: Tensor) -> None:
        grad_z.copy_(grad)


class Contiguous(Kernel):
    """Kernels that must see contiguous memory (oneDNN's gelu): their ``out=`` forms, ``forward(z, out)`` and
    ``backward(grad, z, grad_z)``, write into contiguous buffers of this kernel's own, made once per shape (no
    allocation per call), then copied into the padded ones (a copy changes no bit). What stays is oneDNN's own
    set-up per call, about 6 us forward and 13 us backward over ATen's kernel at any shape of the same
    elements (measured: (10, 10, 18), (100, 18), (1800,)): the cost of a single run's bits."""

    def __init__(self, forward: Callable[[Tensor, Tensor], Any], backward: Callable[[Tensor, Tensor, Tensor], Any]):
        self._forward, self._backward = forward, backward
        self._out = self._grad = torch.empty(0)

    def forward(self, z: Tensor, out: Tensor) -> None:
        if self._out.shape != z.shape:
            self._out, self._grad = (torch.empty(z.shape, dtype=z.dtype, device=z.device) for _ in range(2))
        self._forward(z, self._out)
        out.copy_(self._out)

    def backward(self, grad: Tensor, z: Tensor, out: Tensor, grad_z: Tensor) -> None:
        self._backward(grad, z, self._grad)
        grad_z.copy_(self._grad)


class Autograd(Kernel):
    """Any other activation (``fn``, as the stack applies it, rows and all): autograd on this group alone."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.fn = fn
        self._saved: tuple[Tensor, Tensor] | None = None

    def forward(self, z: Tensor, out: Tensor) -> None:
        leaf = z.detach().requires_grad_()
        with torch.enable_grad():
            result = self.fn(leaf)
        out.copy_(result)
        self._saved = leaf, result

    def value(self, z: Tensor, out: Tensor) -> None:
        with torch.no_grad():
            out.copy_(self.fn(z))

    def backward(self, grad: Tensor, z: Tensor, out: Tensor, grad_z: Tensor) -> None:
        leaf, result = self._saved
        # through sum(result * grad), whose gradient for result is exactly grad (1 * grad): a tensor
        # grad_outputs would make autograd import sympy (a quarter of a second) on first use
        with torch.enable_grad():
            (found,) = torch.autograd.grad((result * grad).sum(), leaf)
        grad_z.copy_(found)
        self._saved = None


class Softmax(Kernel):
    """nn.Softmax: its forward under autograd, and its backward node (SoftmaxBackward0) called on the
    gradient, so the backward kernel is autograd's own (ATen's softmax backward is a private op): the bits
    of ``Autograd``, without a backward pass through a seed sum (4 operations and the engine's set-up)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._result: Tensor | None = None

    def forward(self, z: Tensor, out: Tensor) -> None:
        with torch.enable_grad():
            self._result = torch.softmax(z.detach().requires_grad_(), self.dim)
        out.copy_(self._result)

    def value(self, z: Tensor, out: Tensor) -> None:
        with torch.no_grad():
            out.copy_(torch.softmax(z, self.dim))

    def backward(self, grad: Tensor, z: Tensor, out: Tensor, grad_z: Tensor) -> None:
        grad_z.copy_(self._result.grad_fn(grad))
        self._result = None


class PReLU(Kernel):
    """PReLU with a stacked slope (n, 1, 1), written with public ops as PReLU's own kernels compute it
    (forward x if x > 0 else w * x; backward grad if x > 0 else w * grad for x, 0 if x > 0 else x * grad for
    w), the slope broadcast over each run as nn.PReLU's one slope is over its input, and its gradient summed
    over each run's B*W elements, as autograd reduces the broadcast. tests/test_kernels.py and the probe
    check it against nn.PReLU bit for bit.

    The mask x > 0 is made once per step (z does not change between forward and backward), the products go
    into scratch buffers, and where's 0 is a tensor made once (a Python number is wrapped into a new tensor
    and converted on every call): 8 operations and no allocation per step instead of 10 and 7."""

    def __init__(self, slope: Tensor, grad_slope: Tensor) -> None:
        self.slope, self.grad_slope = slope, grad_slope  # views of the flat parameters and gradient
        self._zero = torch.zeros((), dtype=slope.dtype, device=slope.device)
        self._mask = self._product = torch.empty(0)

    def forward(self, z: Tensor, out: Tensor) -> None:
        if self._mask.shape != z.shape:  # contiguous, as the temporaries they replace
            self._mask = torch.empty(z.shape, dtype=torch.bool, device=z.device)
            self._product = torch.empty(z.shape, dtype=z.dtype, device=z.device)
        torch.gt(z, self._zero, out=self._mask)
        torch.where(self._mask, z, torch.mul(self.slope, z, out=self._product), out=out)

    def backward(self, grad: Tensor, z: Tensor, out: Tensor, grad_z: Tensor) -> None:
        product = self._product
        torch.where(self._mask, grad, torch.mul(self.slope, grad, out=product), out=grad_z)
        torch.where(self._mask, self._zero, torch.mul(z, grad, out=product), out=product)
        torch.sum(product, dim=(1, 2), keepdim=True, out=self.grad_slope)


class Mish(Kernel):
    """mish_backward has no out= form: it reads z from a buffer in padded rows (so that it loops run by run),
    made once per shape and filled in the forward pass, and its result is copied into the gradient."""

    def __init__(self) -> None:
        self._rows = torch.empty(0)

    def forward(self, z: Tensor, out: Tensor) -> None:
        aten.mish.out(z, out=out)

    def backward(self, grad: Tensor, z: Tensor, out: Tensor, grad_z: Tensor) -> None:
        if self._rows.shape != z.shape:
            self._rows = torch.empty_strided(z.shape, grad_z.stride(), device=z.device)
        grad_z.copy_(aten.mish_backward.default(grad, self._rows.copy_(z)))


class Softsign(Kernel):
    """x / (|x| + 1), as F.softsign computes it, and autograd's gradient through its three nodes: div
    (grad / d for x, -(grad * (x / d / d)) for d), add (passes it), abs (times sgn(x)), summed for x.
    Written as grad / d - (grad * (out / d)) * sgn(x): out is x / d, and a + -(b) is a - b, so the same bits.
    Every intermediate goes into a scratch buffer made once per shape (nine operations, no allocation)."""

    def __init__(self) -> None:
        self._d = self._a = self._b = self._one = torch.empty(0)

    def forward(self, z: Tensor, out: Tensor) -> None:
        if self._d.shape != z.shape:
            self._d, self._a, self._b = (torch.empty(z.shape, device=z.device) for _ in range(3))
            self._one = torch.ones((), dtype=z.dtype, device=z.device)  # add_(1) would convert a new tensor per call
        torch.abs(z, out=self._d).add_(self._one)
        torch.div(z, self._d, out=out)

    def backward(self, grad: Tensor, z: Tensor, out: Tensor, grad_z: Tensor) -> None:
        d, a, b = self._d, self._a, self._b
        torch.div(out, d, out=b).mul_(grad)  # grad * (out / d): the same product either way round
        b.mul_(torch.sgn(z, out=a))
        torch.sub(torch.div(grad, d, out=a), b, out=grad_z)


class Tanhshrink(Kernel):
    """x - tanh(x), as F.tanhshrink computes it (tanh run by run), and autograd's gradient: grad for x,
    tanh_backward(-grad, tanh(x)) through tanh, summed; written grad - tanh_backward(grad, tanh(x)) (the
    same bits: tanh_backward is grad * (1 - t * t), odd in grad)."""

    def __init__(self) -> None:
        self._tanh: Tensor | None = None
        self._through: Tensor | None = None

    def forward(self, z: Tensor, out: Tensor) -> None:
        if self._tanh is None or self._tanh.shape != z.shape:
            self._tanh = torch.empty_strided(z.shape, out.stride(), device=z.device)  # padded rows
            self._through = torch.empty_strided(z.shape, out.stride(), device=z.device)
        torch.tanh(z, out=self._tanh)
        torch.sub(z, self._tanh, out=out)

    def backward(self, grad: Tensor, z: Tensor, out: Tensor, grad_z: Tensor) -> None:
        aten.tanh_backward.grad_input(grad, self._tanh, grad_input=self._through)
        torch.sub(grad, self._through, out=grad_z)


class Gelu(Kernel):
    """gelu as a single run gets it: oneDNN's kernel where the run's input is contiguous and has more than one
    element (approximate='none'), which a contiguous slice of runs also gets; else ATen's, on padded rows."""

    def __init__(self, approximate: str) -> None:
        self.approximate = approximate
        self._contiguous = Contiguous(
            lambda z, o: aten.gelu.out(z, approximate=approximate, out=o),
            lambda g, z, gz: aten.gelu_backward.grad_input(g, z, approximate=approximate, grad_input=gz))

    def _onednn(self, z: Tensor) -> bool:
        return self.approximate == "none" and z.numel() > z.shape[0]  # a run of more than one element

    def forward(self, z: Tensor, out: Tensor) -> None:
        if self._onednn(z):
            self._contiguous.forward(z, out)
        else:  # padded input too: a contiguous one of more than one element would go to oneDNN
            aten.gelu.out(_rows_of(z, out), approximate=self.approximate, out=out)

    def backward(self, grad: Tensor, z: Tensor, out: Tensor, grad_z: Tensor) -> None:
        if self._onednn(z):
            self._contiguous.backward(grad, z, out, grad_z)
        else:
            aten.gelu_backward.grad_input(grad, _rows_of(z, out), approximate=self.approximate, grad_input=grad_z)


def _pair(forward: Callable[..., Any], backward: Callable[..., Any]) -> Pair:
    return Pair(forward, backward)


def kernel_for(module: nn.Module) -> Kernel | None:
    """The kernel pair of ``module`` (the module itself, not a subclass), or None where there is none."""
    kind = type(module)
    if kind is nn.Identity:
        return Identity()
    if kind is nn.ReLU:  # relu is clamp_min(x, 0); autograd: threshold_backward(grad, result, 0)
        return _pair(lambda z, o: torch.clamp_min(z, 0, out=o),
                     lambda g, z, o, gz: aten.threshold_backward.grad_input(g, o, 0, grad_input=gz))
    if kind is nn.Sigmoid:
        return _pair(lambda z, o: torch.sigmoid(z, out=o),
                     lambda g, z, o, gz: aten.sigmoid_backward.grad_input(g, o, grad_input=gz))
    if kind is nn.Tanh:
        return _pair(lambda z, o: torch.tanh(z, out=o),
                     lambda g, z, o, gz: aten.tanh_backward.grad_input(g, o, grad_input=gz))
    if kind is nn.LeakyReLU:
        slope = module.negative_slope
        return _pair(lambda z, o: aten.leaky_relu.out(z, slope, out=o),
                     lambda g, z, o, gz: aten.leaky_relu_backward.grad_input(g, z, slope, False, grad_input=gz))
    if kind in (nn.ELU, nn.CELU, nn.SELU):
        return _elu(module)
    if kind is nn.SiLU:
        return _pair(lambda z, o: aten.silu.out(z, out=o),
                     lambda g, z, o, gz: aten.silu_backward.grad_input(g, z, grad_input=gz))
    if kind is nn.Mish:
        return Mish()
    if kind is nn.Softplus:
        beta, threshold = module.beta, module.threshold
        return _pair(lambda z, o: aten.softplus.out(z, beta, threshold, out=o),
                     lambda g, z, o, gz: aten.softplus_backward.grad_input(g, z, beta, threshold, grad_input=gz))
    if kind in (nn.Hardtanh, nn.ReLU6):  # ReLU6 is Hardtanh(0, 6)
        low, high = module.min_val, module.max_val
        return _pair(lambda z, o: aten.hardtanh.out(z, low, high, out=o),
                     lambda g, z, o, gz: aten.hardtanh_backward.grad_input(g, z, low, high, grad_input=gz))
    if kind is nn.Hardsigmoid:
        return _pair(lambda z, o: aten.hardsigmoid.out(z, out=o),
                     lambda g, z, o, gz: aten.hardsigmoid_backward.grad_input(g, z, grad_input=gz))
    if kind is nn.Hardswish:
        return _pair(lambda z, o: aten.hardswish.out(z, out=o),
                     lambda g, z, o, gz: aten.hardswish_backward.out(g, z, out=gz))
    if kind is nn.LogSigmoid:
        return _log_sigmoid()
    if kind is nn.Softsign:
        return Softsign()
    if kind is nn.Tanhshrink:
        return Tanhshrink()
    if kind is nn.Softshrink:
        lambd = module.lambd
        return _pair(lambda z, o: aten.softshrink.out(z, lambd, out=o),
                     lambda g, z, o, gz: aten.softshrink_backward.grad_input(g, z, lambd, grad_input=gz))
    if kind is nn.Hardshrink:
        lambd = module.lambd
        return _pair(lambda z, o: aten.hardshrink.out(z, lambd, out=o),
                     lambda g, z, o, gz: aten.hardshrink_backward.grad_input(g, z, lambd, grad_input=gz))
    if kind is nn.GELU:
        return Gelu(module.approximate)
    if kind is nn.Softmax and module.dim is not None:  # no public backward op: its autograd node
        return Softmax(module.dim)
    return None


def _rows_of(z: Tensor, like: Tensor) -> Tensor:
    """A copy of z in padded rows (``like``'s strides)."""
    return torch.empty_strided(z.shape, like.stride(), device=z.device).copy_(z)


def _elu(module: nn.Module) -> Pair:
    """elu(x, alpha, scale, input_scale): ELU, CELU (input_scale 1/alpha) and SELU (ATen's constants)."""
    if isinstance(module, nn.SELU):
        alpha, scale, input_scale = SELU_ALPHA, SELU_SCALE, 1.0
    elif isinstance(module, nn.CELU):
        alpha, scale, input_scale = module.alpha, 1.0, 1.0 / module.alpha
    else:
        alpha, scale, input_scale = module.alpha, 1.0, 1.0
    return _pair(lambda z, o: aten.elu.out(z, alpha, scale, input_scale, out=o),
                 lambda g, z, o, gz: aten.elu_backward.grad_input(g, alpha, scale, input_scale, False, z,
                                                                   grad_input=gz))


class _LogSigmoid(Kernel):
    """log_sigmoid_forward gives the output and a buffer that log_sigmoid_backward reads."""

    def __init__(self) -> None:
        self._buffer: Tensor | None = None

    def forward(self, z: Tensor, out: Tensor) -> None:
        if self._buffer is None or self._buffer.shape != z.shape:
            self._buffer = torch.empty_like(out)
        aten.log_sigmoid_forward.output(z, output=out, buffer=self._buffer)

    def backward(self, grad: Tensor, z: Tensor, out: Tensor, grad_z: Tensor) -> None:
        aten.log_sigmoid_backward.grad_input(grad, z, self._buffer, grad_input=grad_z)


def _log_sigmoid() -> Kernel:
    return _LogSigmoid()


def for_group(module: nn.Module, fn: Callable[[Tensor], Tensor], slope: Tensor | None = None,
              grad_slope: Tensor | None = None) -> Kernel:
    """The kernel the step runs for a group of runs: prelu's (``slope`` (n, 1, 1) and where its gradient
    goes), the module's own pair, or autograd through ``fn`` (the group's activation as the stack applies it)."""
    if slope is not None:
        return PReLU(slope, grad_slope)
    return kernel_for(module) or Autograd(fn)


def run(kernel: Kernel, z: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    """(f(z), gradient for z) of ``kernel`` on z, grad (n, B, W), laid out as the step lays them out."""
    n, batch, width = z.shape
    out, grad_z = padded(n, batch, width, z.device), padded(n, batch, width, z.device)
    z, grad = z.detach().contiguous(), grad.contiguous()
    with torch.no_grad():
        kernel.forward(z, out)
        kernel.backward(grad, z, out, grad_z)
    return out, grad_z
