"""Comparisons shared by the tests."""

import math


def same_values(a: list[float], b: list[float]) -> bool:
    """Bitwise-equal lists of floats, NaN equal to NaN."""
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


def same_history(a: dict, b: dict, skip=("seconds",)) -> bool:
    """Every per-epoch measure identical (wall times aside)."""
    keys = set(a) - set(skip)
    return keys == set(b) - set(skip) and all(same_values(a[k], b[k]) for k in keys)


def max_rel_dev(a: list[float], b: list[float]) -> float:
    return max((abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b)), default=0.0)
