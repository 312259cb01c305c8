"""Statistical tests and intervals for losses over seeds: small, pure functions over arrays.

Losses are positive and skewed (a few stuck or diverged seeds), so everything here is rank-based or on the
log scale, and no interval can leave the range of the data:

- ``signed_rank_p``: Wilcoxon signed-rank p-value, exact up to ``EXACT_MAX_N`` pairs (scipy's exact
  distribution without ties; with tied |d|, every one of the 2^n sign patterns enumerated), the normal
  approximation with tie correction above; zero differences dropped.
  ``method`` is always given explicitly, so the p-value does not change with the scipy version (>= 1.15).
- ``holm``: Holm's step-down adjustment (family-wise error rate).
- ``tost``: two one-sided signed-rank tests on paired log-ratios against an equivalence margin.
- ``median_ci``: the distribution-free confidence interval of a median from order statistics.
- ``wilson``: the Wilson score interval of a proportion (scipy's ``binomtest``).
- ``hodges_lehmann`` and ``ratio_effect``: the paired ratio of losses, exp(Hodges-Lehmann shift of the log
  losses), with a bootstrap (BCa, fixed seed) interval on the log scale.
- ``friedman`` and ``nemenyi``: the omnibus rank test over activations and its all-pairs post-hoc test
  (critical difference of mean ranks, Demšar 2006).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
EXACT_MAX_N = 16  # exact p up to 16 pairs (with ties: all 2^16 sign patterns); normal approximation above
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0  # fixed: the same data give the same interval


def signed_rank_p(d: Sequence[float], alternative: str = "two-sided") -> float:
    """Wilcoxon signed-rank p-value of paired differences ``d`` (zeros dropped; NaN when none is left
    and the alternative is one-sided, 1.0 for two-sided)."""
    d = np.asarray(d, dtype=float)
    d = d[d != 0]
    if len(d) == 0:
        return 1.0 if alternative == "two-sided" else math.nan
    n, ties = len(d), len(np.unique(np.abs(d))) < len(d)
    if n > EXACT_MAX_N:
        method: Any = "approx"
    elif ties:  # scipy's "exact" assumes untied ranks; enumerate every sign pattern instead
        method = sps.PermutationMethod(n_resamples=2**n)
    else:
        method = "exact"
    return float(sps.wilcoxon(d, zero_method="wilcox", alternative=alternative, method=method).pvalue)


def min_two_sided_p(n: int) -> float:
    """The smallest two-sided exact signed-rank p-value with n pairs: every sign the same, 2 / 2^n."""
    return min(1.0, 2.0 / 2**n) if n > 0 else 1.0


def seeds_needed(comparisons: int, alpha: float = ALPHA) -> int:
    """Fewest pairs for which the smallest exact p survives Holm's first step over ``comparisons`` tests."""
    n = 1
    while min_two_sided_p(n) * max(comparisons, 1) > alpha:
        n += 1
    return n


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (NaN entries stay NaN and do not count as tests)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    idx = [i for i in np.argsort(p, kind="stable") if math.isfinite(p[i])]
    m, running = len(idx), 0.0
    for step, i in enumerate(idx):
        running = max(running, min(1.0, (m - step) * p[i]))
        out[i] = running
    return out.tolist()


def tost(d: Sequence[float], margin: float) -> float:
    """Equivalence p-value (two one-sided signed-rank tests): small when every plausible median of ``d``
    lies inside (-margin, margin). NaN without data."""
    d = np.asarray(d, dtype=float)
    if len(d) == 0:
        return math.nan
    upper = signed_rank_p(d - margin, "less")  # H0: median >= +margin
    lower = signed_rank_p(d + margin, "greater")  # H0: median <= -margin
    return max(upper, lower)


def median_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(lo, hi, coverage): the narrowest symmetric order-statistic interval x_(j) .. x_(n+1-j) whose exact
    coverage of the median, 1 - 2 P(Binomial(n, 1/2) < j), is at least ``level``; NaNs when n is too small
    (n <= 5 for 95%)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    j, coverage = _order_statistic(n, level)
    return (float(x[j - 1]), float(x[n - j]), coverage) if j else (math.nan, math.nan, math.nan)


@functools.lru_cache(maxsize=256)
def _order_statistic(n: int, level: float) -> tuple[int, float]:
    """``median_ci``'s j (1-based; 0: none) and its coverage for n values: a function of n alone, so worked out
    once per n (every activation of a comparison has the same seeds)."""
    best = (0, math.nan)
    for j in range(1, n // 2 + 1):  # j-th smallest and j-th largest
        coverage = 1 - 2 * float(sps.binom.cdf(j - 1, n, 0.5))
        if coverage >= level:
            best = (j, coverage)
    return best


@functools.lru_cache(maxsize=1024)  # the report asks for the same few counts many times (scipy: ~1 ms each)
def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion k / n (NaNs when n = 0)."""
    if n == 0:
        return math.nan, math.nan
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def hodges_lehmann(d: np.ndarray, axis: int = -1) -> np.ndarray:
    """Hodges-Lehmann location: the median of the Walsh averages (d_i + d_j) / 2, i <= j, along ``axis``."""
    # samples first and contiguous: each d_i + d_j (j >= i) is one contiguous addition, and the selection runs
    # down the columns (fancy indexing and selecting along rows cost twice as much: the bootstrap calls this
    # on 10^4 resamples)
    d = np.ascontiguousarray(np.moveaxis(np.asarray(d, dtype=float), axis, 0))
    n = d.shape[0]
    m = n * (n + 1) // 2
    if m == 0:
        return np.median(np.empty((*d.shape[1:], 0)), axis=-1)  # NaN, as numpy says it
    sums = np.empty((m, *d.shape[1:]))
    start = 0
    for i in range(n):
        np.add(d[i], d[i:], out=sums[start : start + n - i])
        start += n - i
    # np.median's own value (the middle one, or the mean of the middle two) of the Walsh averages sums / 2, by
    # one partition of the sums (halving is exact and keeps the order: the middle of the halves is the half of
    # the middle); np.median also partitions out the largest value to look for NaN
    half = m // 2
    sums.partition(half if m % 2 else [half - 1, half], axis=0)
    middle = sums[half] / 2 if m % 2 else (sums[half - 1] / 2 + sums[half] / 2) / 2
    return np.where(np.isnan(sums).any(axis=0), np.nan, middle)


def ratio_effect(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Paired ratio of positive losses a / b: (exp(HL of log a - log b), 95% bootstrap interval), on the
    pairs where both are finite. Intervals are BCa on the log scale (percentile where BCa is undefined),
    so they stay positive."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    d = np.log(a[keep]) - np.log(b[keep])
    if len(d) == 0:
        return math.nan, math.nan, math.nan
    center = float(hodges_lehmann(d))
    if len(d) < 3 or np.ptp(d) == 0:
        lo = hi = center if np.ptp(d) == 0 else math.nan
        return math.exp(center), _exp(lo), _exp(hi)
    lo, hi = _bootstrap(d, "BCa")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = _bootstrap(d, "percentile")
    return math.exp(center), _exp(lo), _exp(hi)


def _bootstrap(d: np.ndarray, method: str) -> tuple[float, float]:
    import warnings

    with warnings.catch_warnings():
        # BCa is undefined for degenerate resamples: scipy warns and returns NaN, and we fall back
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 in BCa's acceleration: NaN, handled by the caller
        res = sps.bootstrap((d,), hodges_lehmann, vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES,
                            method=method, rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _exp(value: float) -> float:
    return math.exp(value) if math.isfinite(value) else math.nan


def friedman(matrix: np.ndarray) -> tuple[float, float]:
    """Friedman chi-square and p-value for (seeds, activations) losses; NaNs with < 3 activations or
    < 2 seeds (inf = diverged, ranked last)."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[1] < 3 or matrix.shape[0] < 2:
        return math.nan, math.nan
    ranks = mean_ranks(matrix)
    if np.all(ranks == ranks[0]):
        return 0.0, 1.0
    res = sps.friedmanchisquare(*matrix.T)
    return float(res.statistic), float(res.pvalue)


def mean_ranks(matrix: np.ndarray) -> np.ndarray:
    """Mean rank of every column over the rows (rank 1 = lowest loss; ties get the average rank)."""
    return sps.rankdata(np.asarray(matrix, dtype=float), axis=1).mean(axis=0)


@functools.lru_cache(maxsize=256)  # the studentized range's quantile: ~1.5 ms, asked for by every overview
def nemenyi_cd(k: int, n: int, alpha: float = ALPHA) -> float:
    """Critical difference of mean ranks for k activations over n seeds: q_alpha * sqrt(k(k+1) / (6n)),
    q_alpha the studentized range quantile / sqrt(2)."""
    if k < 2 or n < 1:
        return math.nan
    q = float(sps.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n))


def nemenyi_p(rank_diff: float, k: int, n: int) -> float:
    """All-pairs Nemenyi p-value of a difference of mean ranks (family-wise over the k(k-1)/2 pairs)."""
    if k < 2 or n < 1:
        return math.nan
    z = abs(rank_diff) / math.sqrt(k * (k + 1) / (6 * n))
    return float(min(1.0, sps.studentized_range.sf(z * math.sqrt(2), k, np.inf)))


def fisher_less(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided Fisher exact p-value that group 1's rate k1/n1 is lower than group 2's k2/n2."""
    if n1 == 0 or n2 == 0:
        return math.nan
    return float(sps.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="less").pvalue)


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value that a and b come from distributions shifted apart (scipy's exact
    test where there are no ties and the samples are small); nan when either is empty."""
    if not len(a) or not len(b):
        return math.nan
    return float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact one-sided McNemar p-value that outcome 'only b' is more frequent than 'only a' among the
    discordant pairs (binomial test with p = 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    return float(sps.binomtest(only_b, n, 0.5, alternative="greater").pvalue)
