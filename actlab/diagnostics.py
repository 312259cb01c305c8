"""Once-per-epoch evaluation on the full data: losses and the measures that show *why* a run trains as it does.

Works on stacked parameters — N runs at once, weight (N, out, in), bias (N, out) — so the loop engine
(N = 1) and the batched engine share one definition of every measure. Definitions:

- ``grad_norm_L{l}``: Euclidean norm of the full-training-set MSE gradient with respect to linear layer l's
  weight and bias together (l = 1 is the input layer). Vanishing gradients show as grad_norm_L1 much
  smaller than the last layer's (ARTICLES.md §C.2).
- ``dead_L{l}``: share of hidden layer l's units whose activation derivative is exactly zero on *every*
  training input, so no gradient reaches their incoming weights. For the ReLU family this is exactly
  "outputs zero for every input" (pre-activation <= 0 everywhere); leaky variants never die (derivative
  >= slope > 0); a sigmoid unit pushed so far that it rounds to exactly 0 or 1 in float32 counts too.
- ``saturated_L{l}``: share of hidden layer l's units whose |derivative| is below 1% of the activation's
  largest |derivative| (over [-10, 10], at its initial parameters) on at least 90% of training inputs.
  Dead units are saturated too. Meaningful for bounded activations: sigmoid, tanh, hardtanh, softsign...
- Neither applies to softmax, which mixes the units of a layer: NaN.
- ``test_loss`` / ``val_loss``: the MSE on the held-out test split / the validation split, when the data has one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from actlab.tasks import Dataset

SATURATION_RATIO = 0.01  # |f'| below 1% of its maximum counts as saturated on that input...
SATURATION_SHARE = 0.90  # ...and a unit saturated on at least 90% of inputs counts as saturated


@dataclass(frozen=True)
class ActGroup:
    """An activation applied to runs ``start:stop`` of the stack: ``fn`` maps (n, B, W) -> (n, B, W)."""

    start: int
    stop: int
    fn: Callable[[torch.Tensor], torch.Tensor]
    elementwise: bool
    max_slope: float  # max |f'| on [-10, 10]: the saturation threshold's scale


def apply_groups(z: torch.Tensor, groups: Sequence[ActGroup]) -> torch.Tensor:
    """Each group's activation on its slice of the run dimension of z (N, B, W)."""
    if len(groups) == 1:
        return groups[0].fn(z)
    # split, not slicing: its backward is one concatenation instead of a zero-filled copy per group
    parts = z.split([g.stop - g.start for g in groups])
    return torch.cat([g.fn(part) for g, part in zip(groups, parts)], dim=0)


def max_slope(fn: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """Largest |f'(x)| for x in [-10, 10] (by autograd on a fine grid)."""
    x = torch.linspace(-10.0, 10.0, 4001).view(1, -1, 1).requires_grad_()
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(fn(x).sum(), x)
    return float(grad.abs().max())


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out - y).pow(2).mean(dim=(1, 2))  # (N,)


def _forward(weights, biases, act_layers, x):
    """Output (N, n, 1) and the pre-activations of every hidden layer [(N, n, W)]."""
    h = x.expand(weights[0].shape[0], *x.shape)
    pre = []
    for layer, (w, b) in enumerate(zip(weights, biases)):
        z = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if layer == len(weights) - 1:
            return z, pre
        pre.append(z)
        h = apply_groups(z, act_layers[layer])
    raise AssertionError("unreachable")


def evaluate(
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    act_layers: Sequence[Sequence[ActGroup]],
    data: Dataset,
    full: bool = True,
) -> dict[str, torch.Tensor]:
    """Every per-epoch measure for N stacked runs: name -> (N,) tensor, on the parameters' device.

    ``weights[l]`` is (N, out, in), ``biases[l]`` (N, out); ``act_layers[l]`` covers hidden layer l.
    ``full=False``: the losses only (one forward pass; no gradient norms or unit states).
    """
    if not full:
        with torch.no_grad():
            out = {"full_loss": _mse(_forward(weights, biases, act_layers, data.x_train)[0], data.y_train)}
        return out | held_out_losses(weights, biases, act_layers, data)
    weights = [w.detach().requires_grad_() for w in weights]
    biases = [b.detach().requires_grad_() for b in biases]
    out: dict[str, torch.Tensor] = {}
    n_layers = len(weights)
    with torch.enable_grad():
        pred, pre = _forward(weights, biases, act_layers, data.x_train)
        loss = _mse(pred, data.y_train)
        # f'(z) of every hidden layer: each activation applied again to a detached copy of its input, in
        # graphs of their own, so that one backward pass yields the weight gradients and all f'(z) at once
        leaves = [z.detach().requires_grad_() for z in pre]
        total = loss.sum()
        for z, groups in zip(leaves, act_layers):
            total = total + apply_groups(z, groups).sum()
        grads = torch.autograd.grad(total, [*weights, *biases, *leaves])
    out["full_loss"] = loss.detach()
    for layer in range(n_layers):
        gw, gb = grads[layer], grads[n_layers + layer]
        out[f"grad_norm_L{layer + 1}"] = (gw.pow(2).sum(dim=(1, 2)) + gb.pow(2).sum(dim=1)).sqrt()
    for layer, slope in enumerate(grads[2 * n_layers :]):
        dead, saturated = unit_states(slope, act_layers[layer])
        out[f"dead_L{layer + 1}"] = dead
        out[f"saturated_L{layer + 1}"] = saturated
    return out | held_out_losses(weights, biases, act_layers, data)


def held_out_losses(weights, biases, act_layers, data: Dataset) -> dict[str, torch.Tensor]:
    """``test_loss`` and ``val_loss`` (N,) on the splits the data has (none: {}); no gradients."""
    out = {}
    with torch.no_grad():
        for name, x, y in (("test_loss", data.x_test, data.y_test), ("val_loss", data.x_val, data.y_val)):
            if x is not None:
                out[name] = _mse(_forward([w.detach() for w in weights], [b.detach() for b in biases],
                                          act_layers, x)[0], y)
    return out


def unit_states(slope: torch.Tensor, groups: Sequence[ActGroup]) -> tuple[torch.Tensor, torch.Tensor]:
    """(dead share, saturated share) of the units of one hidden layer, each (N,), from f'(z) (N, n, W).

    (For element-wise activations the gradient of sum(f(z)) with respect to z is f'(z), element by element.)
    """
    n_runs, n_inputs, width = slope.shape
    device = slope.device
    # |f'| laid out (N, W, n), so that every reduction over the inputs runs along contiguous memory
    slope = torch.abs(slope.transpose(1, 2), out=torch.empty(n_runs, width, n_inputs, device=device))
    scale = torch.cat([torch.full((g.stop - g.start, 1, 1), g.max_slope) for g in groups]).to(device)
    applies = torch.cat([torch.full((g.stop - g.start,), g.elementwise) for g in groups]).to(device)
    dead = (slope.amax(dim=2) == 0).sum(dim=1) / width
    # saturated: |f'| small on at least SATURATION_SHARE of the inputs
    flat_inputs = (slope < SATURATION_RATIO * scale).sum(dim=2, dtype=torch.int32)  # (N, W) counts
    saturated = (flat_inputs >= math.ceil(SATURATION_SHARE * n_inputs)).sum(dim=1) / width
    nan = torch.tensor(float("nan"), device=device)
    return torch.where(applies, dead, nan), torch.where(applies, saturated, nan)


# --- Measures of one run's network, from its parameters alone (initial ones or weights.pt) ---------------
# These take a plain ``FeedForward`` (one run), so the report can measure any saved state without the
# engines: at initialisation (the parameters are deterministic from the seed) and at the end.

BOUND_GRID = 1e4  # "bounded": |f| over [-1e4, 1e4] no larger than over [-100, 100] (it stopped growing)


@dataclass(frozen=True)
class Snapshot:
    """One run's measures at one set of parameters, on the full training data.

    ``dead[l]``: (W,) bool, f'(z) exactly 0 on every input; ``negative[l]``: (W,) bool, pre-activation
    <= 0 on every input (for leaky variants the unit lives on its leaky side only); ``grad_rms[l]``: RMS
    over layer l's parameters (weight and bias) of the full-data MSE gradient; ``weights[l]``: the weight.
    """

    loss: float
    grad_rms: list[float]
    dead: list[torch.Tensor]
    negative: list[torch.Tensor]
    weights: list[torch.Tensor]


def snapshot(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, elementwise: bool = True) -> Snapshot:
    """Loss, per-layer RMS gradient and per-unit dead / all-negative masks of ``model`` (a FeedForward)."""
    linears = model.linears()
    params = [p for layer in linears for p in (layer.weight, layer.bias)]
    with torch.enable_grad():
        h, pre = x, []
        for i, layer in enumerate(linears):
            h = layer(h)
            if i < len(linears) - 1:
                z = h.detach().requires_grad_()
                pre.append(z)
                h = model.activations()[i](h)
        loss = (h - y).pow(2).mean()
        # one backward pass: the parameters' gradients and, through detached copies, every f'(z)
        total = loss + sum(act(z).sum() for act, z in zip(model.activations(), pre)) if elementwise else loss
        grads = torch.autograd.grad(total, params + (pre if elementwise else []))
        slopes = list(grads[len(params):]) if elementwise else [None] * len(pre)
        grads = grads[: len(params)]
    rms = [float(torch.cat([gw.flatten(), gb.flatten()]).pow(2).mean().sqrt())
           for gw, gb in zip(grads[::2], grads[1::2])]
    dead = [(s == 0).all(dim=0) if s is not None else torch.zeros(z.shape[1], dtype=torch.bool)
            for s, z in zip(slopes, pre)]
    negative = [(z <= 0).all(dim=0) for z in pre]
    return Snapshot(float(loss.detach()), rms, dead, negative, [layer.weight.detach().clone() for layer in linears])


def relative_change(start: Snapshot, end: Snapshot) -> list[float]:
    """Per linear layer, |W_end - W_0| / |W_0| (Frobenius norms of the weight matrices)."""
    return [float((b - a).norm() / a.norm()) if float(a.norm()) > 0 else math.nan
            for a, b in zip(start.weights, end.weights)]


def is_bounded(fn: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Whether |fn| stops growing: its largest |value| on [-1e4, 1e4] is within 1% of that on [-100, 100].

    Measured, not declared: relu6, hardtanh, softmax and sigmoid are bounded; relu, elu, softplus,
    logsigmoid and tanhshrink are not. Inputs are laid out (1, G, 4): softmax sees rows of 4 units.
    """
    # rows of 4 values from 4 distant parts of the grid, so that softmax sees large differences in both
    grid = lambda bound, n: torch.linspace(-bound, bound, n).view(4, -1).T.reshape(1, -1, 4)  # noqa: E731
    with torch.no_grad():
        near = fn(grid(100.0, 4000)).abs().max()
        wide = fn(grid(BOUND_GRID, 4000)).abs().max()
    return bool(torch.isfinite(wide)) and float(wide) <= 1.01 * float(near) + 1e-6
