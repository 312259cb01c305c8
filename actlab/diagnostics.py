"""Per-epoch evaluation on the full data: losses, and the measures that show *why* a run trains as it does.

Works on stacked parameters — N runs at once, weight (N, out, in), bias (N, out) — so the loop engine
(N = 1) and the batched engine share one definition of every measure, and one computation of it.

The losses are measured every epoch (a no-grad forward pass). The gradient norms and unit states cost about
four forward passes, so they follow a schedule (``schedule``, ``train.diagnostics_dense``): every epoch early
on, where training changes fastest, then sparser, always epoch 0 and the last; the engines record NaN at the
epochs it skips. Where measured, one forward pass keeps every layer's input and each activation's small
graph; f'(z) comes from each activation's own backward kernel given ones; the full-data gradient is worked
back layer by layer by hand (batched matmuls, and grad * f'(z) for the element-wise activations, their
vector-Jacobian product for the others).

Definitions:

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

import functools
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

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
    """Output (N, n, 1) of a no-grad forward pass."""
    from actlab.engines import affine  # here: importing the engines package imports this module
    h = x.expand(weights[0].shape[0], *x.shape)
    for layer, (w, b) in enumerate(zip(weights, biases)):
        z = affine.forward(b.unsqueeze(1), h, w.transpose(1, 2))
        if layer == len(weights) - 1:
            return z
        h = apply_groups(z, act_layers[layer])
    raise AssertionError("unreachable")


# --- The schedule: which epochs measure gradients and unit states -------------------------------------------

def is_measured(epoch: int, epochs: int, dense: int) -> bool:
    """Whether epoch ``epoch`` of ``epochs`` measures gradient norms and unit states: every epoch up to
    ``dense``, then every 2nd up to 2 x dense, every 4th up to 4 x dense, ... (dense/2 measures per doubling
    of the epoch), and always epoch 0 and the last; ``dense`` 0: every epoch."""
    if dense <= 0 or epoch <= dense or epoch == epochs:
        return True
    step = 2
    while dense * step < epoch:
        step *= 2
    return epoch % step == 0


def schedule(epochs: int, dense: int) -> list[int]:
    """The epochs (0 = at initialisation .. ``epochs``) that measure gradient norms and unit states."""
    return [epoch for epoch in range(epochs + 1) if is_measured(epoch, epochs, dense)]


def describe_schedule(epochs: int, dense: int) -> str:
    """The schedule in words: 'every epoch to 10, every 2nd to 20, every 4th to 40, ..., and epoch 150'."""
    if dense <= 0 or dense >= epochs:
        return f"every epoch, 0 to {epochs}"
    parts, step, last = [f"every epoch to {dense}"], 2, dense
    while dense * step // 2 < epochs:
        stop = min(dense * step, epochs)
        if stop // step * step > dense * step // 2:  # a multiple of step in (dense * step / 2, stop]
            suffix = "nd" if step % 10 == 2 and step % 100 != 12 else "th"
            parts.append(f"every {step}{suffix} to {stop}")
            last = stop // step * step
        step *= 2
    return ", ".join(parts) + (f", and epoch {epochs}" if last != epochs else "")


# --- The per-epoch measures ---------------------------------------------------------------------------------

def evaluate(
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    act_layers: Sequence[Sequence[ActGroup]],
    data: Dataset,
    full: bool = True,
    measure: bool = True,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    hidden: HiddenLayer | None = None,
) -> dict[str, torch.Tensor]:
    """Every per-epoch measure for N stacked runs: name -> (N,) tensor, on the parameters' device.

    ``weights[l]`` is (N, out, in), ``biases[l]`` (N, out); ``act_layers[l]`` covers hidden layer l.
    ``full=False``: the losses only (train.diagnostics off: no gradient norms or unit states at all);
    ``measure=False``: the losses, and the gradient norms and unit states as NaN (an epoch the schedule skips).
    ``forward``: the outputs (N, n, 1) for inputs (n, in) where an engine computes them its own way, with
    the same bits as the groups' functions (the batched engine: ``step.Forward``); default: those functions.
    ``hidden``: likewise, the measuring pass's hidden layers (``Hidden``) by an engine's own kernels, with the
    bits of ``_Hidden`` (the batched engine: ``step.Forward.hidden``); default: ``_Hidden``, through autograd.
    """
    weights = [w.detach() for w in weights]
    biases = [b.detach() for b in biases]
    if forward is None:
        forward = functools.partial(_forward, weights, biases, act_layers)
    held_out = held_out_losses(weights, biases, act_layers, data, forward)
    if full and measure:
        return _measured(weights, biases, act_layers, data, hidden) | held_out
    with torch.no_grad():
        out = {"full_loss": _mse(forward(data.x_train), data.y_train)}
    if full:
        nan = torch.full_like(out["full_loss"], math.nan)
        out |= {name: nan for name in _names(len(weights))}
    return out | held_out


def _names(n_layers: int) -> list[str]:
    """The measured columns of a net with ``n_layers`` linear layers, in evaluate's order."""
    hidden = range(1, n_layers)
    return ([f"grad_norm_L{layer}" for layer in range(1, n_layers + 1)]
            + [f"{kind}_L{layer}" for layer in hidden for kind in ("dead", "saturated")])


class Hidden(Protocol):
    """A hidden layer of the measuring pass: f(z) (N, n, W), the unit states (dead, saturated), each (N,), once
    ``backward`` has run, and the gradient for z given the gradient for f(z)."""

    h: torch.Tensor
    states: tuple[torch.Tensor, torch.Tensor]

    def backward(self, grad: torch.Tensor) -> torch.Tensor: ...


HiddenLayer = Callable[[int, torch.Tensor, Sequence[ActGroup]], Hidden]  # (layer, z, groups) -> its Hidden


class _Seed(torch.autograd.Function):
    """A scalar whose backward hands ``grads[i]`` to ``outs[i]``: a vector-Jacobian product through
    autograd without a ``grad_outputs`` tensor (which makes autograd import sympy: half a second)."""

    @staticmethod
    def forward(ctx, grads: list[torch.Tensor], *outs: torch.Tensor) -> torch.Tensor:
        ctx.grads = grads
        return outs[0].new_zeros(())

    @staticmethod
    def backward(ctx, _):
        return None, *ctx.grads


def _vjp(outs: list[torch.Tensor], leaves: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """d/d leaves of sum(outs[i] * grads[i]), each through the graph of its activation (one backward pass)."""
    seed = _Seed.apply(grads, *outs)
    if not seed.requires_grad:  # no output depends on its input (a constant activation)
        return [torch.zeros_like(leaf) for leaf in leaves]
    found = torch.autograd.grad(seed, leaves, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, found)]


@dataclass
class _Hidden:
    """A hidden layer of the measuring pass: its output f(z) as ``apply_groups`` computes it, the unit
    states, f'(z) (N, n, W) where any group is element-wise (each activation's backward kernel given ones),
    and, for the groups whose backward is not grad * f'(z), their input slices as autograd leaves and their
    outputs (everything else is let go once f'(z) is known: memory is per run)."""

    groups: Sequence[ActGroup]
    h: torch.Tensor
    states: tuple[torch.Tensor, torch.Tensor]
    slope: torch.Tensor | None
    exact: list[tuple[int, torch.Tensor, torch.Tensor]]  # (group index, leaf, output) for the vjp

    @classmethod
    def of(cls, z: torch.Tensor, groups: Sequence[ActGroup]) -> _Hidden:
        """f(z) of one hidden layer (N, n, W) and what the backward pass and the unit states need."""
        # per group, not through apply_groups' split and cat: a backward pass then needs no concatenation
        leaves = [part.detach().requires_grad_() for part in z.split([g.stop - g.start for g in groups])]
        with torch.enable_grad():
            outs = [g.fn(leaf) for g, leaf in zip(groups, leaves)]
        h = _cat(outs).detach()
        slope = None
        if any(g.elementwise for g in groups):  # ones broadcast, not filled: one array less to read
            ones = [h.new_ones(()).expand_as(out) for out in outs]
            slope = _cat(_vjp(outs, leaves, ones))
        states = (h.new_full((len(h),), math.nan),) * 2  # until the backward pass: see there
        width = z.shape[2]
        exact = [(i, leaves[i], outs[i]) for i, g in enumerate(groups)
                 if slope is None or not diagonal(g, width, z.device)]
        return cls(groups, h, states, slope, exact)

    def backward(self, grad: torch.Tensor) -> torch.Tensor:
        """The gradient for z given the gradient for f(z) (N, n, W): grad * f'(z) for the element-wise
        groups, each activation's own backward for the others (softmax, and what fails ``diagonal``)."""
        parts = [grad[self.groups[i].start : self.groups[i].stop] for i, _, _ in self.exact]
        found = _vjp([out for _, _, out in self.exact], [leaf for _, leaf, _ in self.exact], parts) if parts else []
        if self.slope is None:
            return _cat(found)
        out = grad.mul_(self.slope)  # grad is this pass's own buffer (the bmm's result): no new one
        for (i, _, _), part in zip(self.exact, found):
            out[self.groups[i].start : self.groups[i].stop] = part
        # f'(z) is used: |f'(z)| overwrites it (memory per run: no new buffer), then it is let go; not where
        # it is the broadcast ones themselves (identity's backward passes them on)
        slope = self.slope
        self.states = _unit_states(slope.abs_() if slope.is_contiguous() else slope.abs(), self.groups)
        self.slope = None
        return out


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


# ActGroup -> {layer width: diagonal?}: checked once per stack, forgotten with it (a prelu group's fn holds the
# stack's parameters: a cache that kept groups alive would keep every stack of a long study)
_DIAGONAL: weakref.WeakKeyDictionary[ActGroup, dict[int, bool]] = weakref.WeakKeyDictionary()


def diagonal(group: ActGroup, width: int, device: torch.device) -> bool:
    """Is the group's activation element-wise in fact, so that its backward is grad * f'(z)? Its declared
    ``elementwise``, checked once on random inputs: a user's activation declares nothing and may mix units."""
    try:
        known = _DIAGONAL.setdefault(group, {})
    except TypeError:  # a user's activation that cannot be hashed (a dataclass module): checked every time
        known = {}
    if width not in known:
        known[width] = group.elementwise and _acts_diagonally(group, width, device)
    return known[width]


def _acts_diagonally(group: ActGroup, width: int, device: torch.device) -> bool:
    gen = torch.Generator().manual_seed(0)
    z = (3 * torch.randn(group.stop - group.start, 4, width, generator=gen)).to(device).requires_grad_()
    grad = torch.randn(z.shape, generator=gen).to(device)
    with torch.enable_grad():
        out = group.fn(z)
    (exact,) = _vjp([out], [z], [grad])
    (slope,) = _vjp([out], [z], [torch.ones_like(grad)])
    return bool(torch.allclose(exact, grad * slope, rtol=1e-4, atol=1e-6))


def _measured(weights, biases, act_layers, data: Dataset, make_hidden: HiddenLayer | None = None
              ) -> dict[str, torch.Tensor]:
    """full_loss, grad_norm_L*, dead_L*, saturated_L*: one forward pass that keeps each layer's input and
    each activation's graph, and the full-data gradient layer by layer by hand (the bmm of
    ``StackedLinear``'s backward; the activations' own backward kernels, through autograd by default)."""
    from actlab.engines import affine  # here: importing the engines package imports this module

    x, y = data.x_train, data.y_train
    n_layers = len(weights)
    make_hidden = make_hidden or (lambda _, z, groups: _Hidden.of(z, groups))
    inputs = [x.expand(weights[0].shape[0], *x.shape)]  # each linear layer's input (N, n, in)
    hidden: list[Hidden] = []
    for layer, (w, b) in enumerate(zip(weights, biases)):
        z = affine.forward(b.unsqueeze(1), inputs[-1], w.transpose(1, 2))
        if layer == n_layers - 1:
            break
        hidden.append(make_hidden(layer, z, act_layers[layer]))
        inputs.append(hidden[-1].h)
    diff = z - y
    out = {"full_loss": diff.pow(2).mean(dim=(1, 2))}
    grad = diff.mul(2.0 / (diff.shape[1] * diff.shape[2]))  # d loss / d output, as mse_loss's backward
    norms: dict[int, torch.Tensor] = {}
    for layer in reversed(range(n_layers)):
        grad_w = torch.bmm(grad.transpose(1, 2), inputs[layer])  # (N, out, in), as StackedLinear
        norms[layer] = (grad_w.pow(2).sum(dim=(1, 2)) + grad.sum(1).pow(2).sum(dim=1)).sqrt()
        if layer > 0:
            grad = hidden[layer - 1].backward(torch.bmm(grad, weights[layer]))
    out |= {f"grad_norm_L{layer + 1}": norms[layer] for layer in range(n_layers)}
    for layer, state in enumerate(hidden, start=1):
        out[f"dead_L{layer}"], out[f"saturated_L{layer}"] = state.states
    return out


def held_out_losses(weights, biases, act_layers, data: Dataset,
                    forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """``test_loss`` and ``val_loss`` (N,) on the splits the data has (none: {}); no gradients. ``forward``:
    as ``evaluate``'s."""
    if forward is None:
        forward = functools.partial(_forward, [w.detach() for w in weights], [b.detach() for b in biases],
                                    act_layers)
    out = {}
    with torch.no_grad():
        for name, x, y in (("test_loss", data.x_test, data.y_test), ("val_loss", data.x_val, data.y_val)):
            if x is not None:
                out[name] = _mse(forward(x), y)
    return out


def unit_states(slope: torch.Tensor, groups: Sequence[ActGroup], overwrite: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(dead share, saturated share) of the units of one hidden layer, each (N,), from f'(z) (N, n, W) of
    the runs ``groups`` cover; NaN for the groups that are not element-wise. Exact counts, so that both
    engines agree whatever the layout; four passes over f'(z), in one buffer: ``slope`` itself where
    ``overwrite`` (|f'(z)| replaces it), else a new one."""
    return _unit_states(slope.abs_() if overwrite else torch.abs(slope), groups)


def _unit_states(magnitude: torch.Tensor, groups: Sequence[ActGroup]) -> tuple[torch.Tensor, torch.Tensor]:
    """``unit_states`` from |f'(z)|, which it overwrites."""
    n_runs, n_inputs, width = magnitude.shape
    threshold, applies = _group_constants(tuple((g.stop - g.start, g.max_slope, g.elementwise) for g in groups),
                                          magnitude.device)
    # A sum of non-negative numbers is 0 exactly when every one is (NaN stays NaN: not dead): |f'| summed
    # over the inputs is a cheaper reduction than their maximum.
    dead = (magnitude.sum(dim=1) == 0).sum(dim=1) / width
    # saturated: |f'| small on at least SATURATION_SHARE of the inputs; lt_ writes 1.0 / 0.0 in place, and
    # the sums of those (counts below 2**24) are exact
    flat_inputs = magnitude.lt_(threshold).sum(dim=1)  # (N, W) counts
    saturated = (flat_inputs >= math.ceil(SATURATION_SHARE * n_inputs)).sum(dim=1) / width
    nan = torch.tensor(math.nan, device=magnitude.device)
    return torch.where(applies, dead, nan), torch.where(applies, saturated, nan)


@functools.lru_cache(maxsize=64)
def _group_constants(groups: tuple[tuple[int, float, bool], ...], device: torch.device
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per run: the saturation threshold (N, 1, 1) and whether unit states apply (N,), from each group's
    (runs, max_slope, elementwise): built once per stack (dozens of small operations when mixed), not every epoch."""
    scale = torch.cat([torch.full((n, 1, 1), slope) for n, slope, _ in groups]).to(device)
    applies = torch.cat([torch.full((n,), elementwise) for n, _, elementwise in groups]).to(device)
    return SATURATION_RATIO * scale, applies


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


def snapshots(
    weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
    acts: Sequence[Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor, y: torch.Tensor,
    elementwise: bool = True,
) -> list[Snapshot]:
    """``snapshot`` of N stacked runs at once: ``weights[l]`` (N, out, in), ``biases[l]`` (N, out); ``acts[l]``
    maps hidden layer l's (N, B, W) to (N, B, W), each run on its own slice (a module acting on the last
    dimension: every element-wise one, softmax over dim -1). The same measures as run by run, in one pass."""
    n_layers = len(weights)
    params = [t.detach().requires_grad_() for pair in zip(weights, biases) for t in pair]
    with torch.enable_grad():
        h, pre = x.expand(len(weights[0]), *x.shape), []
        for i, (w, b) in enumerate(zip(params[::2], params[1::2])):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < n_layers - 1:
                pre.append(h.detach().requires_grad_())
                h = acts[i](h)
        loss = (h - y).pow(2).mean(dim=(1, 2))  # (N,): each run's loss depends on its own parameters only
        # one backward pass: every run's parameter gradients and, through detached copies, every f'(z)
        total = loss.sum() + sum(act(z).sum() for act, z in zip(acts, pre)) if elementwise else loss.sum()
        grads = torch.autograd.grad(total, params + (pre if elementwise else []))
    rms = [torch.cat([gw.flatten(1), gb], dim=1).pow(2).mean(dim=1).sqrt()  # per run, as snapshot's
           for gw, gb in zip(grads[: 2 * n_layers : 2], grads[1 : 2 * n_layers : 2])]
    dead = [(s == 0).all(dim=1) for s in grads[2 * n_layers :]] if elementwise else \
        [torch.zeros(len(z), z.shape[2], dtype=torch.bool) for z in pre]
    negative = [(z <= 0).all(dim=1) for z in pre]
    per_run = lambda tensors: list(zip(*(t.unbind(0) for t in tensors))) or [()] * len(loss)  # noqa: E731
    return [Snapshot(value, list(r), list(d), list(neg), list(w))
            for value, r, d, neg, w in zip(loss.tolist(), torch.stack(rms, dim=1).tolist(), per_run(dead),
                                           per_run(negative), per_run([w.detach().clone() for w in weights]))]


def relative_change(start: Snapshot, end: Snapshot) -> list[float]:
    """Per linear layer, |W_end - W_0| / |W_0| (Frobenius norms of the weight matrices)."""
    norms = [(a.norm(), a, b) for a, b in zip(start.weights, end.weights)]  # |W_0| once per layer
    return [float((b - a).norm() / size) if float(size) > 0 else math.nan for size, a, b in norms]


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
