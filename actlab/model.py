"""The articles' feedforward net: linear layers, one activation after every hidden layer, linear output."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from actlab import init
from actlab.init import LayerParams

ARTICLE_SIZES = (10, 18, 18, 4, 1)


class FeedForward(nn.Sequential):
    """Linear(sizes[0], sizes[1]), act, ..., Linear(sizes[-2], sizes[-1]): a regression net.

    ``make_activation`` is called once per hidden layer, so a parametric activation (prelu) gets its own
    instance, and so its own learned slope, in every layer.
    """

    def __init__(self, sizes: Sequence[int], make_activation: Callable[[], nn.Module]) -> None:
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2:  # no activation after the output layer
                layers.append(make_activation())
        super().__init__(*layers)
        self.sizes = tuple(sizes)

    def linears(self) -> list[nn.Linear]:
        return [m for m in self if isinstance(m, nn.Linear)]

    def activations(self) -> list[nn.Module]:
        return [m for m in self if not isinstance(m, nn.Linear)]


def initial_parameters(
    sizes: Sequence[int], seed: int, scheme: str = "default", bias: str = "default",
    activation: str | None = None, options: Mapping[str, Any] | None = None,
) -> list[LayerParams]:
    """The initial (weight, bias) of every linear layer for ``seed``, drawn on the CPU.

    The default is ``nn.Linear``'s own distribution (kaiming-uniform with a=sqrt(5), i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases), but from an explicit generator instead of
    the global RNG, so both engines and every device start each run from identical numbers. ``scheme``
    (xavier_uniform, kaiming_normal, auto, ...) and ``bias`` (default | zero): see ``actlab.init``.
    """
    return init.initial_parameters(sizes, seed, scheme, bias, activation, options)


def load_parameters(model: FeedForward, params: Sequence[LayerParams]) -> FeedForward:
    """Copy ``params`` into ``model``'s linear layers (in place) and return it."""
    with torch.no_grad():
        for layer, (weight, bias) in zip(model.linears(), params):
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
