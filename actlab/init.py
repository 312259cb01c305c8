"""Initialisation schemes for the linear layers, paired by seed: every scheme scales the same draws.

A scheme fixes the spread of a layer's weights from its fan-in and fan-out (torch.nn.init's formulas,
with torch.nn.init.calculate_gain for the gains):

| scheme            | weights                      | spread                                         |
|-------------------|------------------------------|------------------------------------------------|
| `default`         | U(-b, b)                     | b = 1/sqrt(fan_in) (nn.Linear's own default)   |
| `xavier_uniform`  | U(-b, b)                     | b = sqrt(6/(fan_in+fan_out)) (Glorot; Keras)   |
| `xavier_normal`   | N(0, s^2)                    | s = sqrt(2/(fan_in+fan_out))                   |
| `kaiming_uniform` | U(-b, b)                     | b = gain*sqrt(3/fan_in)                        |
| `kaiming_normal`  | N(0, s^2)                    | s = gain/sqrt(fan_in)                          |
| `lecun_normal`    | N(0, s^2)                    | s = 1/sqrt(fan_in) (SELU's)                    |
| `auto`            | the activation's own scheme  | see AUTO                                       |

Kaiming's gain is ReLU's, sqrt(2), except for leaky_relu and prelu, whose gain sqrt(2/(1+slope^2))
uses the configured negative slope (prelu: its starting slope). Biases are ``default`` (nn.Linear's
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) whatever the weight scheme) or ``zero`` (Keras's Dense).

Seed pairing. The draws come from two generators of the run's seed: ``rng.generator(seed, "init")``
gives, layer by layer, a uniform weight draw and a uniform bias draw (today's stream exactly, so the
``default`` scheme is bit for bit what actlab always drew), and ``rng.generator(seed, "init:normal")``
gives one standard normal weight draw per layer. Every uniform scheme maps the same uniform draws onto its
own range, every normal scheme scales the same normal draws, and every scheme gets the same default
biases: two schemes of one seed differ by a constant factor per layer (within a family), never by luck.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.nn.init import calculate_gain

from actlab import rng

LayerParams = tuple[torch.Tensor, torch.Tensor]  # weight (out, in), bias (out,)

UNIFORM_SCHEMES = ("default", "xavier_uniform", "kaiming_uniform")
NORMAL_SCHEMES = ("xavier_normal", "kaiming_normal", "lecun_normal")
SCHEMES = (*UNIFORM_SCHEMES, *NORMAL_SCHEMES, "auto")
BIASES = ("default", "zero")

# `auto`: each activation's recommended scheme. Why these:
# - ReLU-shaped units (about half the inputs pass, the rest are squashed towards 0) halve the signal's
#   variance per layer; He et al. (2015) double the weights' variance to keep it: kaiming.
# - Units that are about linear around 0 (tanh, softsign, the sigmoids, hardtanh, identity) keep the
#   variance of forward and backward signals when Var(w) = 2/(fan_in+fan_out): Glorot & Bengio (2010).
# - SELU self-normalises only from Var(w) = 1/fan_in with normal weights (Klambauer et al. 2017).
# - Everything else (shrinks, logsigmoid, tanhshrink, softmax, import-path activations): no standard
#   recommendation, so PyTorch's default.
AUTO: dict[str, str] = {
    **dict.fromkeys(("relu", "relu6", "leaky_relu", "prelu", "elu", "celu", "gelu", "silu", "mish",
                     "hardswish", "softplus"), "kaiming_uniform"),
    **dict.fromkeys(("identity", "tanh", "softsign", "sigmoid", "hardsigmoid", "hardtanh"), "xavier_uniform"),
    "selu": "lecun_normal",
}

# The negative slope that kaiming's gain uses, per activation: (option name, the module's default).
_SLOPES = {"leaky_relu": ("negative_slope", 0.01), "prelu": ("init", 0.25)}


class InitError(ValueError):
    """An unknown initialisation scheme or bias rule."""


def check(scheme: str, bias: str = "default") -> None:
    """Raise InitError (listing the choices) unless ``scheme`` and ``bias`` are known."""
    if scheme not in SCHEMES:
        raise InitError(f"unknown initialisation scheme '{scheme}' (schemes: {', '.join(SCHEMES)})")
    if bias not in BIASES:
        raise InitError(f"unknown bias initialisation '{bias}' (biases: {', '.join(BIASES)})")


def resolve(scheme: str, activation: str | None = None) -> str:
    """The concrete scheme: ``auto`` becomes the activation's entry in AUTO (``default`` if none)."""
    check(scheme)
    if scheme != "auto":
        return scheme
    return AUTO.get(activation or "", "default")


def kaiming_gain(activation: str | None = None, options: Mapping[str, Any] | None = None) -> float:
    """He's gain: sqrt(2) (relu), or sqrt(2/(1+slope^2)) for leaky_relu and prelu at their slope."""
    if activation in _SLOPES:
        key, default = _SLOPES[activation]
        return calculate_gain("leaky_relu", float((options or {}).get(key, default)))
    return calculate_gain("relu")


def spread(scheme: str, fan_in: int, fan_out: int, activation: str | None = None,
           options: Mapping[str, Any] | None = None) -> float:
    """A concrete scheme's weight spread: the bound b of U(-b, b), or the std s of N(0, s^2)."""
    if scheme == "default":
        return 1.0 / math.sqrt(fan_in)
    if scheme in ("xavier_uniform", "xavier_normal"):
        std = calculate_gain("linear") * math.sqrt(2.0 / (fan_in + fan_out))
    elif scheme in ("kaiming_uniform", "kaiming_normal"):
        std = kaiming_gain(activation, options) / math.sqrt(fan_in)
    elif scheme == "lecun_normal":
        std = calculate_gain("linear") / math.sqrt(fan_in)
    else:
        raise InitError(f"'{scheme}' is not a concrete scheme (resolve 'auto' first)")
    # A uniform U(-b, b) has std b/sqrt(3): the uniform variants keep the normal variants' variance.
    return math.sqrt(3.0) * std if scheme in UNIFORM_SCHEMES else std


def initial_parameters(
    sizes: Sequence[int], seed: int, scheme: str = "default", bias: str = "default",
    activation: str | None = None, options: Mapping[str, Any] | None = None,
) -> list[LayerParams]:
    """The initial (weight (out, in), bias (out,)) of every linear layer for ``seed``, drawn on the CPU.

    ``activation`` (canonical name) and its ``options`` choose ``auto``'s scheme and kaiming's gain.
    """
    check(scheme, bias)
    concrete = resolve(scheme, activation)
    uniform_gen = rng.generator(seed, "init")
    normal_gen = rng.generator(seed, "init:normal") if concrete in NORMAL_SCHEMES else None
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        s = spread(concrete, fan_in, fan_out, activation, options)
        bias_bound = 1.0 / math.sqrt(fan_in)
        # The uniform stream is always drawn in full (weight, then bias, per layer), so a layer's draws
        # never depend on the scheme or bias rule of the layers before it.
        weight = torch.empty(fan_out, fan_in).uniform_(-s if normal_gen is None else -1.0,
                                                       s if normal_gen is None else 1.0, generator=uniform_gen)
        b = torch.empty(fan_out).uniform_(-bias_bound, bias_bound, generator=uniform_gen)
        if normal_gen is not None:
            weight = torch.empty(fan_out, fan_in).normal_(0.0, s, generator=normal_gen)
        params.append((weight, torch.zeros(fan_out) if bias == "zero" else b))
    return params
