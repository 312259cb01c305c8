"""The hand-written training step's activation kernels (engines/kernels.py) against the module on one run.

Oracle: each run's slice computed alone by the activation's nn.Module and differentiated by autograd, as
the loop engine does. Every built-in activation, a few with options, and a custom one; shapes with
vector tails of every length; inputs with exact zeros, the kinks of the piecewise ones, and values far
out where the exp-based ones saturate.
"""

import pytest
import torch
from helpers import probe

from actlab import activations
from actlab.engines import RunSpec, TrainSettings
from actlab.engines import kernels as K
from actlab.engines.common import Group
from actlab.engines.stacked import Stack, stacked_activation
from actlab.engines.step import Step
from actlab.tasks import make_dataset

SIZES = (10, 18, 18, 4, 1)
SPECS = [RunSpec(name, 0, 0.0) for name in activations.names()] + [
    RunSpec("leaky_relu", 0, 0.0, {"negative_slope": 0.3}),
    RunSpec("elu", 0, 0.0, {"alpha": 0.5}),
    RunSpec("celu", 0, 0.0, {"alpha": 2.0}),
    RunSpec("softplus", 0, 0.0, {"beta": 2.0, "threshold": 5.0}),
    RunSpec("hardtanh", 0, 0.0, {"min_val": -0.5, "max_val": 2.0}),
    RunSpec("gelu", 0, 0.0, {"approximate": "tanh"}),
    RunSpec("softshrink", 0, 0.0, {"lambd": 1.0}),
    RunSpec("prelu", 0, 0.0, {"init": -0.5}),
    RunSpec("custom_acts:Cube", 0, 0.0),
]
SHAPES = [(10, 18), (7, 4), (1, 1), (3, 33), (10, 1)]
N_RUNS = 5


def _inputs(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    z, grad = 3 * torch.randn(N_RUNS, *shape, generator=gen), torch.randn(N_RUNS, *shape, generator=gen)
    specials = torch.tensor([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 6.0, 3.0, -3.0, 30.0, -30.0, 100.0, -100.0, 1e-30])
    flat = z.view(-1)
    flat[: min(len(specials), flat.numel())] = specials[: flat.numel()]
    return z, grad


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.run_id.rsplit("/", 1)[0])
def test_each_kernel_gives_each_run_its_own_numbers(spec, shape):
    """Output, input gradient (and prelu's slope gradient) equal, run by run, the module's on that run."""
    group = Group.of(spec)
    z, grad = _inputs(shape, len(spec.run_id))
    modules = [group.build() for _ in range(N_RUNS)]
    slope = grad_slope = None
    if group.is_prelu:
        slope = torch.stack([m.weight.detach() for m in modules]).view(N_RUNS, 1, 1)
        grad_slope = torch.full_like(slope, float("nan"))
    kernel = K.for_group(group.module, stacked_activation(group), slope, grad_slope)
    out, grad_z = K.run(kernel, z, grad)
    for i, module in enumerate(modules):
        zi = z[i].clone().requires_grad_()
        oi = module(zi)
        found = torch.autograd.grad((oi * grad[i]).sum(), [zi, *module.parameters()])
        assert torch.equal(out[i], oi), (i, "output")
        assert torch.equal(grad_z[i], found[0]), (i, "input gradient")
        if slope is not None:
            assert torch.equal(grad_slope[i].view(1), found[1]), (i, "slope gradient")


def test_known_kernels_cover_the_builtins_and_the_rest_falls_back_to_autograd():
    """Every built-in but prelu (stacked slope) has kernels of its own (softmax: its autograd node, having
    no public backward op); a custom module gets autograd on its group."""
    for spec in SPECS:
        group = Group.of(spec)
        if group.is_prelu:
            continue
        kernel = K.for_group(group.module, stacked_activation(group))
        by_autograd = spec.activation.startswith("custom_acts")
        assert isinstance(kernel, K.Autograd) == by_autograd, spec.activation
        assert isinstance(kernel, K.Softmax) == (spec.activation == "softmax"), spec.activation


def test_a_subclass_does_not_get_its_parents_kernels():
    class Shifted(torch.nn.ReLU):
        def forward(self, x):
            return super().forward(x) + 1

    assert K.kernel_for(torch.nn.ReLU()) is not None and K.kernel_for(Shifted()) is None


def test_the_step_equals_autograd_through_the_stack():
    """One hand-written step on a stack of every activation (two seeds each): the losses and every
    parameter's gradient equal autograd's through Stack.forward and StackedMSE, bit for bit."""
    from actlab.engines import flat_optim
    from actlab.engines.stacked import StackedMSE

    data = make_dataset("noise", 100, 0)
    specs = [RunSpec(s.activation, seed, 1e-3, s.options) for s in SPECS for seed in (0, 1)]
    if not probe(specs, data, SIZES, 10)["bitwise"]:
        pytest.skip("the probe finds this machine's stacked kernels differ from single-run ones")
    stack = Stack(specs, SIZES, torch.device("cpu"))
    optimizer = flat_optim.make(stack, [s.lr for s in specs], TrainSettings(epochs=1, batch_size=10))
    x, y = data.x_train[:7].expand(len(specs), 7, 10), data.y_train[:7].expand(len(specs), 7, 1)
    losses = Step(stack, 7, optimizer.grad)(x, y)
    reference = StackedMSE.apply(stack.forward(x), y)
    grads = torch.autograd.grad(reference.sum(), stack.leaves)
    assert torch.equal(losses, reference.detach())
    assert torch.equal(optimizer.grad, torch.cat([g.reshape(-1) for g in grads]))
