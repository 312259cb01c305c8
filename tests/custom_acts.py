"""User activations for the tests: imported by path, e.g. custom_acts:Cube."""

import torch
from torch import nn


class Cube(nn.Module):
    """x^3: element-wise, parameter-free."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x * x


class Scaled(nn.Module):
    """a * tanh(x) with a learned a: parametric, so the batched engine hands it to the loop engine."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(x)


class RowSoftmax(nn.Module):
    """Softmax over dim 1: shape-dependent, so it must not be stacked (dim 1 is the batch when stacked)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1)


NOT_A_MODULE = 3


class FlatCube(nn.Module):
    """x^3 through a flattening view: element-wise, but needs contiguous memory (so it is not stacked)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1).pow(3).view(x.shape)


class MixUnits(nn.Module):
    """tanh(x) times the mean over the units: declares nothing (element-wise by default) but mixes units."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * x.mean(dim=-1, keepdim=True)
