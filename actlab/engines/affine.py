"""A stack's linear layer forward, z = h @ w^T + b for every run at once, with a single run's bits at any shape.

A single run's ``nn.Linear`` calls ``addmm``: MKL's sgemm, which picks its kernel by shape (a one-row or
one-column product goes to its matrix-vector kernels, which sum in another order). The stack's ``baddbmm``
calls MKL's batched gemm, the same sums per matrix at the article's shapes, but not always: a product under
``SMALL`` multiply-adds (rows x in x out) is computed by ATen's own loop (aten/src/ATen/native/
LinearAlgebra.cpp, ``bmm_out_or_baddbmm_``), and a one-column or one-row product can take another kernel in
the batched call than in the single one. Such shapes come from small mini-batches or held-out sets (a last
mini-batch of 3 after ``data.samples: 93``, ``batch_size: 1``) and from one-output layers after a wide one
(``model.width: 18`` makes an 18 -> 1 layer).

So each shape's method is measured, once per process: the first of ``METHODS`` that gives each run's
``F.linear`` bits on random numbers (kernels are chosen by shape, not by value):
- ``batched``: ``baddbmm``;
- ``padded``: zero rows appended up to ``SMALL`` multiply-adds (each output row is its own dot products:
  the appended rows change no sum), so that MKL's batched gemm computes them; the real rows kept;
- ``transposed``: the same padded product as w @ h^T (a one-output layer becomes a one-row product, which
  MKL's batched call sends to the kernel its single one uses);
- ``per_run``: each run's own ``addmm``, as ``nn.Linear`` calls it (a call per run: the slow exact one).
Where none does (the probe then warns), ``batched``. On a GPU, ``batched`` always. The gradients' products
need none of this at these shapes (the probe checks them).
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F

from actlab.engines.common import one_thread

SMALL = 400  # ATen's batched matmul computes products of fewer multiply-adds by its own loop
METHODS = ("batched", "padded", "transposed", "per_run")
_VALUES = 4096  # outputs compared per shape: with a few, two summation orders can agree by chance


def forward(bias: torch.Tensor, h: torch.Tensor, w_t: torch.Tensor, out: torch.Tensor | None = None,
            how: str | None = None) -> torch.Tensor:
    """z (N, rows, out) = h (N, rows, in) @ w_t (N, in, out) + bias (N, 1, out), into ``out`` if given, with
    each run's ``nn.Linear`` bits; ``how``: a method of ``METHODS`` (default: ``method``'s for the shape)."""
    how = how or method(w_t.shape[1], w_t.shape[2], h.shape[1], h.device.type)
    if how == "batched":
        return torch.baddbmm(bias, h, w_t, out=out)
    if how == "per_run":
        if out is None:  # differentiable (no out=), for autograd's reference path
            return torch.stack([torch.addmm(bias[i], h[i], w_t[i]) for i in range(h.shape[0])])
        for i in range(h.shape[0]):
            torch.addmm(bias[i], h[i], w_t[i], out=out[i])
        return out
    padded = _padded(h, w_t.shape[1] * w_t.shape[2])
    if how == "padded":
        z = torch.baddbmm(bias, padded, w_t)
    else:  # transposed
        z = torch.baddbmm(bias.transpose(1, 2), w_t.transpose(1, 2), padded.transpose(1, 2)).transpose(1, 2)
    z = z[:, : h.shape[1]]
    return z.contiguous() if out is None else out.copy_(z)  # contiguous, as baddbmm's own output


def _padded(h: torch.Tensor, per_row: int) -> torch.Tensor:
    """h with zero rows appended up to ``SMALL`` multiply-adds (``per_row`` a row)."""
    padded = h.new_zeros(h.shape[0], max(h.shape[1], -(-SMALL // per_row)), h.shape[2])
    padded[:, : h.shape[1]] = h
    return padded


@functools.lru_cache(maxsize=256)
def method(fan_in: int, fan_out: int, rows: int, device: str = "cpu") -> str:
    """The first of ``METHODS`` that reproduces each run's ``F.linear`` for this shape on this machine, at one
    thread as the engines compute; ``batched`` where none does or off the CPU."""
    if device != "cpu" or rows == 0:
        return "batched"
    gen = torch.Generator().manual_seed(fan_in * 1_000_003 + fan_out * 1009 + rows)  # not the global RNG
    runs = min(max(8, -(-_VALUES // (rows * fan_out))), 512)
    h = torch.randn(runs, rows, fan_in, generator=gen)
    w = torch.rand(runs, fan_out, fan_in, generator=gen).sub_(0.5)
    b = torch.rand(runs, fan_out, generator=gen).sub_(0.5)
    with one_thread():
        single = torch.stack([F.linear(*run) for run in zip(h, w, b)])
        for how in METHODS:
            if torch.equal(forward(b.unsqueeze(1), h, w.transpose(1, 2), how=how), single):
                return how
    return "batched"
