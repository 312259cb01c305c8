"""The registry against ARTICLES.md §B: reference values, closed-form derivatives, every entry usable."""

import pytest
import torch

from actlab import activations

X = torch.tensor([-1.0, 0.0, 1.0, 2.0])

# ARTICLES.md §B, "Reference values on x = [-1, 0, 1, 2]"
REFERENCE = {
    "sigmoid": [0.2689, 0.5000, 0.7311, 0.8808],
    "tanh": [-0.7616, 0.0000, 0.7616, 0.9640],
    "relu": [0.0, 0.0, 1.0, 2.0],
    "leaky_relu": [-0.0100, 0.0000, 1.0000, 2.0000],
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_values(name):
    got = activations.resolve(name).build()(X)
    assert torch.allclose(got, torch.tensor(REFERENCE[name]), atol=1e-4)


def test_softmax_reference_rows():
    z = torch.tensor([[-1.0, 2.0, -3.0, 4.0], [5.0, -6.0, 7.0, 10.0]])
    got = activations.resolve("softmax").build()(z)
    # Row 1 as the article prints it.
    assert torch.allclose(got[0], torch.tensor([0.0059, 0.1184, 0.0008, 0.8749]), atol=1e-4)
    # Row 2: the article prints [0.0067, 0.0000, 0.0472, 0.9461], which is not softmax([5, -6, 7, 10]):
    # e^5 / (e^5 + e^-6 + e^7 + e^10) = 0.00638 and the largest entry is 0.9465. Hold it to the closed form.
    closed = torch.exp(z[1].double()) / torch.exp(z[1].double()).sum()
    assert torch.allclose(got[1].double(), closed, atol=1e-6)
    assert closed[0].item() == pytest.approx(0.00638, abs=1e-5) and closed[3].item() == pytest.approx(0.9465, abs=1e-4)


def _autograd_derivative(name, x):
    x = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(activations.resolve(name).build()(x).sum(), x)
    return grad


def test_autograd_derivatives_equal_closed_forms():
    x = torch.linspace(-4, 4, 81, dtype=torch.float64)
    sig = 1 / (1 + torch.exp(-x))
    th = (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x))
    assert torch.allclose(_autograd_derivative("sigmoid", x), sig * (1 - sig))  # σ(1-σ)
    assert torch.allclose(_autograd_derivative("tanh", x), 1 - th**2)  # 1 - tanh²
    assert torch.equal(_autograd_derivative("relu", x), (x > 0).double())  # 0 or 1


@pytest.mark.parametrize("name", activations.names())
def test_every_entry_builds_and_is_finite(name):
    module = activations.resolve(name).build()
    x = torch.randn(7, 18, requires_grad=True)
    y = module(x)
    y.square().sum().backward()
    assert y.shape == x.shape
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_aliases_and_names():
    assert activations.canonical("linear") == "identity"
    assert activations.canonical("none") == "identity"
    assert activations.canonical("swish") == "silu"
    assert activations.canonical("Leaky-ReLU") == "leaky_relu"
    assert len(set(activations.names())) == len(activations.names()) >= 20


def test_article_catalogue_is_covered():
    for name in ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "softmax", "silu"]:
        assert name in activations.names()


def test_unknown_name_lists_close_matches():
    with pytest.raises(activations.ActivationError, match="did you mean.*relu"):
        activations.resolve("rleu")


def test_options_are_checked_and_applied():
    spec = activations.resolve("leaky_relu")
    assert spec.build({"negative_slope": 0.2})(torch.tensor([-1.0])).item() == pytest.approx(-0.2)
    with pytest.raises(activations.ActivationError, match="no option 'slope'.*negative_slope"):
        spec.build({"slope": 0.2})
    with pytest.raises(activations.ActivationError, match="must be float"):
        spec.build({"negative_slope": "big"})


def test_selu_constants_from_the_article():
    out = activations.resolve("selu").build()(torch.tensor([1.0, -50.0]))
    assert out[0].item() == pytest.approx(1.0507, abs=1e-4)  # λ
    assert out[1].item() == pytest.approx(-1.0507 * 1.6733, abs=1e-3)  # -λα as x -> -inf


def test_prelu_starts_at_quarter_and_each_build_is_its_own():
    spec = activations.resolve("prelu")
    a, b = spec.build(), spec.build()
    assert a.weight.item() == pytest.approx(0.25)
    assert a.weight is not b.weight


def test_custom_activation_by_import_path():
    spec = activations.resolve("custom_acts:Cube")
    assert spec.name == "custom_acts:Cube"
    assert torch.equal(spec.build()(torch.tensor([2.0])), torch.tensor([8.0]))
    with pytest.raises(activations.ActivationError, match="cannot import"):
        activations.resolve("custom_acts:Missing")
    with pytest.raises(activations.ActivationError, match="not a class or function"):
        activations.resolve("custom_acts:NOT_A_MODULE")
