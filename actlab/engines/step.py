"""The stacked engine's training step by hand: forward, MSE and backward of N runs, without autograd.

The net is fixed (Linear, activation, ..., Linear, MSE), so its backward pass is a fixed sequence of
kernels. ``Step`` calls exactly the ones autograd calls through ``StackedLinear``, the activations and
``StackedMSE`` (bitwise the loop engine's, ``stacked``'s docstring says why), in the same order, on
preallocated buffers: no graph, no per-step allocation of layer outputs, and the gradients written
straight into the optimizer's flat gradient buffer instead of concatenated into it.

Per layer l (weight (N, out, in), bias (N, out)), forward: z = baddbmm(b, h, w^T) (``affine``: another
method where a single run's nn.Linear sums otherwise at that shape); per group of runs,
h' = f(z) by the activation's own kernel (``kernels``). Output: MSE loss (N,) from diff = out - y.
Backward from g = diff * (2 / B) (mse_loss_backward's arithmetic): grad_w = bmm(g^T, h), grad_b =
g.sum(1), then grad_h = bmm(g, w) and, per group, the activation's backward kernel for the next g.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from actlab import diagnostics
from actlab.engines import affine, kernels
from actlab.engines.common import without_grad

if TYPE_CHECKING:
    from actlab.engines.stacked import Stack


class Step:
    """Training steps of ``stack`` on mini-batches of ``batch`` rows; gradients go into ``grad`` (flat)."""

    def __init__(self, stack: Stack, batch: int, grad: torch.Tensor) -> None:
        n, sizes, device = stack.n_runs, stack.sizes, stack.flat.device
        grads = stack.views(grad)
        n_layers = self.n_layers = stack.n_layers
        self.weights, self.weights_t, self.biases = _linear_views(stack)
        self.grad_w, self.grad_b = grads[:n_layers], grads[n_layers : 2 * n_layers]
        # mse_loss_backward's 2 / numel, as the float32 its Python number becomes (made once, not every step)
        self.norm = torch.tensor(2.0 / (batch * sizes[-1]), device=device)
        # per hidden layer: z (contiguous, a matmul's output), f(z) and its gradient (padded rows)
        widths = sizes[1:-1]
        self.z = [torch.empty(n, batch, w, device=device) for w in widths]
        self.h = [kernels.padded(n, batch, w, device) for w in widths]
        self.grad_h = [torch.empty(n, batch, w, device=device) for w in widths]
        self.grad_z = [kernels.padded(n, batch, w, device) for w in widths]
        self.out = torch.empty(n, batch, sizes[-1], device=device)
        # each layer's forward product as a single run's nn.Linear computes it at this batch size (affine)
        self.how = [affine.method(i, o, batch, device.type) for i, o in zip(sizes[:-1], sizes[1:])]
        self.diff = torch.empty_like(self.out)
        self.grad_out = torch.empty_like(self.out)
        # each layer's output gradient transposed for its weight gradient: views made once (4 operations a step)
        self.grad_t = [g.transpose(1, 2) for g in (*self.grad_z, self.grad_out)]
        # per hidden layer: (kernel, z, f(z), grad for f(z), grad for z) of each group's runs
        self.acts = []
        for layer in range(len(widths)):
            bound = []
            for g, (start, stop, _) in enumerate(stack.groups):
                kernel = _kernel(stack, grads, g, layer)
                views = (self.z[layer], self.h[layer], self.grad_h[layer], self.grad_z[layer])
                bound.append((kernel, *(v[start:stop] for v in views)))
            self.acts.append(bound)

    @without_grad
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One forward and backward pass on x (N, B, in), y (N, B, 1): the losses (N,); the gradient of
        their sum is in the flat gradient buffer."""
        h = x
        for layer in range(self.n_layers - 1):
            affine.forward(self.biases[layer], h, self.weights_t[layer], self.z[layer], self.how[layer])
            for kernel, z, out, _, _ in self.acts[layer]:
                kernel.forward(z, out)
            h = self.h[layer]
        affine.forward(self.biases[-1], h, self.weights_t[-1], self.out, self.how[-1])
        diff = torch.sub(self.out, y, out=self.diff)
        losses = diff.pow(2).mean(dim=(1, 2))
        g = torch.mul(diff, self.norm, out=self.grad_out)  # StackedMSE's gradient (times a grad of ones)
        for layer in range(self.n_layers - 1, -1, -1):
            h = self.h[layer - 1] if layer else x
            torch.bmm(self.grad_t[layer], h, out=self.grad_w[layer])  # g^T: nn.Linear's orientation
            torch.sum(g, 1, out=self.grad_b[layer])
            if layer:
                torch.bmm(g, self.weights[layer], out=self.grad_h[layer - 1])
                for kernel, z, out, grad, grad_z in self.acts[layer - 1]:
                    kernel.backward(grad, z, out, grad_z)
                g = self.grad_z[layer - 1]
        return losses


class Forward:
    """The outputs of every run on fixed inputs (the per-epoch full-data losses), by the step's kernels: each
    layer's activations written group by group into one buffer in padded rows, where ``diagnostics`` applies
    each group's function to a split of z and concatenates the parts (a copy in rows for each row-wise group,
    a new tensor for each group, a concatenation per layer). The same kernels, so the same bits, as the probe
    checks at the full-data sizes. The kernels are the stack's own (its prelu slopes are views of its
    parameters, so they follow training).

    The buffers are kept from one call to the next (per input size): made anew on every call, these
    full-data arrays (0.8 MB per layer for 115 runs) come back from the allocator as fresh pages, and the
    page faults cost a fifth of the pass. ``release`` lets them go (before the diagnostics' own pass)."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.n_runs, self.widths = stack, stack.n_runs, stack.sizes[1:-1]
        _, self.weights_t, self.biases = _linear_views(stack)
        self.release()

    def release(self) -> None:
        """Free the buffers (and the kernels' scratch): the next call makes them again."""
        # rows -> per layer: (z, f(z), per group (its kernel's value, its slices of both)), the slices made
        # with the buffers, not on every call (two view operations per group and layer)
        self.buffers: dict[int, list[tuple[torch.Tensor, torch.Tensor, list[tuple]]]] = {}
        self.acts = [[(_kernel(self.stack, None, g, layer), start, stop)
                      for g, (start, stop, _) in enumerate(self.stack.groups)] for layer in range(len(self.widths))]

    @without_grad
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Every run's output (N, n, out) for the inputs x (n, in)."""
        buffers = self.buffers.get(len(x))
        if buffers is None:
            buffers = self.buffers[len(x)] = []
            for width, acts in zip(self.widths, self.acts):
                z = torch.empty(self.n_runs, len(x), width, device=x.device)
                out = kernels.padded(self.n_runs, len(x), width, x.device)
                parts = [(kernel.value, z[start:stop], out[start:stop]) for kernel, start, stop in acts]
                buffers.append((z, out, parts))
        h = x.expand(self.n_runs, *x.shape)
        for bias, weight_t, (z, out, parts) in zip(self.biases, self.weights_t, buffers):
            affine.forward(bias, h, weight_t, z)
            for value, z_part, out_part in parts:
                value(z_part, out_part)
            h = out
        return affine.forward(self.biases[-1], h, self.weights_t[-1])

    def hidden(self, layer: int, z: torch.Tensor, groups: Sequence[diagnostics.ActGroup]) -> Measuring:
        """Hidden layer ``layer`` of the diagnostics' measuring pass by these kernels (``diagnostics.HiddenLayer``)."""
        return Measuring(z, self.acts[layer], groups)


class Measuring:
    """A hidden layer of the diagnostics' measuring pass (``diagnostics.Hidden``) by the step's kernels, with the
    bits of ``diagnostics._Hidden``, which reaches the same ATen kernels through autograd: f(z) by each group's
    forward kernel into padded rows (as the loss pass), f'(z) by its backward kernel given ones where any group
    is element-wise, and the backward of the groups whose gradient is not grad * f'(z) (softmax; a custom
    activation that fails ``diagnostics.diagonal``) by their kernel given the gradient. Without the graph, its
    backward pass and the concatenations (each a new full-data array), a measuring pass of a default chunk
    takes 7.2-8.0 ms of CPU instead of 8.0-9.7 (alternating runs); the batched matmuls are half of what is left.
    """

    def __init__(self, z: torch.Tensor, acts: Sequence[tuple[kernels.Kernel, int, int]],
                 groups: Sequence[diagnostics.ActGroup]) -> None:
        n, rows, width = z.shape
        self.z, self.acts, self.groups = z, acts, groups
        self.h = kernels.padded(n, rows, width, z.device)
        self.diagonal = [diagnostics.diagonal(group, width, z.device) for group in groups]
        self.states = (torch.full((n,), math.nan, device=z.device),) * 2  # until the backward pass: see there
        self.slope = kernels.padded(n, rows, width, z.device) if any(g.elementwise for g in groups) else None
        ones = torch.ones(z.shape, device=z.device) if self.slope is not None else None
        with torch.no_grad():
            for (kernel, start, stop), group in zip(acts, groups):
                kernel.forward(z[start:stop], self.h[start:stop])
                if self.slope is not None and group.elementwise:
                    kernel.backward(ones[start:stop], z[start:stop], self.h[start:stop], self.slope[start:stop])
                elif self.slope is not None:  # no unit states (NaN), and its part of grad * f'(z) is replaced
                    self.slope[start:stop].zero_()

    def backward(self, grad: torch.Tensor) -> torch.Tensor:
        """The gradient for z given the gradient for f(z) (N, n, W, contiguous: written over)."""
        exact = [i for i, diagonal in enumerate(self.diagonal) if not diagonal or self.slope is None]
        found = kernels.padded(*grad.shape, grad.device) if exact else None
        with torch.no_grad():
            for i in exact:  # before grad is written over
                kernel, part = self.acts[i][0], slice(*self.acts[i][1:])
                if self.groups[i].elementwise:  # its forward state went to f'(z): made again
                    kernel.forward(self.z[part], kernels.padded(*self.z[part].shape, grad.device))
                kernel.backward(grad[part], self.z[part], self.h[part], found[part])
            if self.slope is None:
                return found.contiguous()
            out = grad.mul_(self.slope)
            for i in exact:
                part = slice(*self.acts[i][1:])
                out[part] = found[part]
        # |f'(z)| overwrites f'(z) (memory per run: no new buffer), which is then let go
        self.states = diagnostics.unit_states(self.slope, self.groups, overwrite=True)
        self.slope = None
        return out


@torch.no_grad()
def linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    """One linear layer's arithmetic in ``Step`` (which inlines it into its buffers), for the probe: [output,
    input gradient, weight gradient, bias gradient] for input h (N, B, in) and output gradient grad."""
    return [affine.forward(b.unsqueeze(1), h, w.transpose(1, 2)), torch.bmm(grad, w),
            torch.bmm(grad.transpose(1, 2), h), torch.sum(grad, 1)]


def _linear_views(stack: Stack) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Each linear layer's weights (N, out, in), their transposes and its biases as (N, 1, out): plain views
    of the stack's flat parameters, which the optimizer updates in place."""
    params, n_layers = stack.views(stack.flat), stack.n_layers
    weights = params[:n_layers]
    return weights, [w.transpose(1, 2) for w in weights], [b.unsqueeze(1) for b in params[n_layers : 2 * n_layers]]


def _kernel(stack: Stack, grads: list[torch.Tensor] | None, g: int, layer: int) -> kernels.Kernel:
    """Group ``g``'s kernel in hidden layer ``layer``: prelu's with its slope (and where its gradient goes;
    ``grads`` None: forward only), its own pair, or autograd."""
    group = stack.groups[g][2]
    index = stack.slope_index.get((g, layer))
    slope = None if index is None else stack.views(stack.flat)[index]
    return kernels.for_group(group.module, stack.act_layers[layer][g].fn, slope,
                             None if index is None or grads is None else grads[index])
