"""Explicit randomness: every stream is a ``torch.Generator`` derived from a config seed and a purpose.

Deriving by hashing (seed, purpose) keeps the streams independent: changing how batches are shuffled
never changes the initial weights, and every activation of one seed starts from the same linear weights.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose`` ("init", "shuffle", "data", ...), stable across platforms."""
    digest = hashlib.sha256(f"actlab:{purpose}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator for ``purpose``: draw on the CPU, then move, so every device sees the same numbers."""
    return torch.Generator().manual_seed(derive_seed(seed, purpose))
