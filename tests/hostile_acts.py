"""Hostile user activations for tests/test_hostile.py: each one breaks a rule an activation must keep."""

import sys

import torch
from torch import nn


class ExitInInit(nn.Module):
    """Calls sys.exit while being built."""

    def __init__(self) -> None:
        super().__init__()
        sys.exit(0)


class Sneaky(BaseException):
    """Not an Exception: slips past ``except Exception``, like KeyboardInterrupt or SystemExit."""


class RaiseBaseInInit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        raise Sneaky("not today")


class Widen(nn.Module):
    """Doubles the layer width: the next layer cannot take it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x], dim=-1)


class Broken(nn.Module):
    """Fails in forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("forward is broken")


class ReturnsList(nn.Module):
    def forward(self, x: torch.Tensor) -> list:
        return [x]


def not_a_module() -> int:
    return 3
