"""Statistics over seeds: one seed ranks noise, so every number an activation gets is over its seeds.

Per activation, on the runs that did not diverge: mean, standard deviation, median and a 95% confidence
interval (Student t) of the final full-training-set loss, of the best loss, and of the held-out loss where
there is a split. Every activation of one seed shares the data and the initial linear weights, so
activations are compared *paired by seed*: win rate against the best activation and the two-sided
Wilcoxon signed-rank p-value (exact for small samples; robust to the skew of loss values).

Ranking with ties: an activation's rank is 1 + the number of activations that beat it significantly
(paired Wilcoxon p < 0.05 on the seeds both finished, uncorrected); equal ranks are ties the evidence does
not separate. Activations with diverged runs count the diverged seeds as losses in the pairing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    """Mean, spread and a 95% confidence interval of one measure over seeds."""

    n: int
    mean: float
    std: float
    median: float
    lo: float
    hi: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Interval:
        x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
        n = len(x)
        if n == 0:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan)
        mean, median = float(x.mean()), float(np.median(x))
        if n == 1:
            return cls(1, mean, float("nan"), median, float("nan"), float("nan"))
        std = float(x.std(ddof=1))
        half = float(sps.t.ppf(1 - ALPHA / 2, n - 1)) * std / math.sqrt(n)
        return cls(n, mean, std, median, mean - half, mean + half)


@dataclass
class ActivationStats:
    """One activation's statistics over its seeds."""

    activation: str
    runs: int
    diverged: int
    final: Interval
    best: Interval
    test: Interval | None
    epochs_to_threshold: float  # median over seeds; inf when most never reach it
    rank: int = 0
    tied_with_best: bool = False
    win_rate_vs_best: float = float("nan")  # share of seeds where it beats the best activation
    p_vs_best: float = float("nan")  # paired Wilcoxon p-value against the best activation
    extra: dict[str, float] = field(default_factory=dict)


def paired_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value for paired samples (NaN when not computable)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    if len(diff) < 2 or np.all(diff == 0):
        return float("nan") if len(diff) < 2 else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(sps.wilcoxon(a, b, zero_method="zsplit").pvalue)


def epochs_to_reach(curve: Sequence[float], threshold: float) -> float:
    """First epoch (1-based) at which ``curve`` is at or below ``threshold``; inf if never."""
    for epoch, value in enumerate(curve, start=1):
        if value <= threshold:
            return float(epoch)
    return math.inf


def default_threshold(first_losses: Sequence[float]) -> float:
    """Half the median first-epoch loss over all runs: 'halved the typical starting loss'."""
    finite = [v for v in first_losses if math.isfinite(v)]
    return 0.5 * float(np.median(finite)) if finite else float("nan")


def summarise(
    summary: Sequence[Mapping[str, Any]],
    curves: Mapping[str, Sequence[float]],
    threshold: float | None = None,
) -> tuple[list[ActivationStats], float]:
    """Per-activation statistics, best first, and the loss threshold used for convergence speed.

    ``summary`` holds the rows of summary.csv (run, activation, seed, status, final_loss, best_loss,
    final_test_loss); ``curves`` maps a run id to its per-epoch full-training-set loss.
    """
    by_act: dict[str, list[Mapping[str, Any]]] = {}
    for row in summary:
        by_act.setdefault(row["activation"], []).append(row)
    if threshold is None:
        threshold = default_threshold([c[0] for c in curves.values() if len(c)])
    out = []
    for act, rows in by_act.items():
        ok = [r for r in rows if r["status"] == "ok"]
        has_test = any(math.isfinite(r.get("final_test_loss", float("nan"))) for r in ok)
        reach = sorted(epochs_to_reach(curves.get(r["run"], []), threshold) for r in rows)
        out.append(ActivationStats(
            activation=act,
            runs=len(rows),
            diverged=len(rows) - len(ok),
            final=Interval.of([r["final_loss"] for r in ok]),
            best=Interval.of([r["best_loss"] for r in ok]),
            test=Interval.of([r["final_test_loss"] for r in ok]) if has_test else None,
            epochs_to_threshold=float(np.median(reach)) if reach else math.inf,
        ))
    _rank(out, by_act)
    return out, threshold


def _paired_losses(rows: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """seed -> final loss; a diverged run's loss is +inf (it lost)."""
    return {r["seed"]: (r["final_loss"] if r["status"] == "ok" else math.inf) for r in rows}


def _beats(a: dict[int, float], b: dict[int, float], need_p_above: float = -1.0) -> tuple[float, float]:
    """(share of common seeds where a < b, paired p-value of a vs b); the test is skipped (p NaN) when the
    win share is not above ``need_p_above``."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return float("nan"), float("nan")
    wins = sum(a[s] < b[s] for s in seeds) / len(seeds)
    if not wins > need_p_above:
        return wins, float("nan")
    # Diverged runs (inf) enter the test as ranks: replace inf by a value above every finite loss.
    x = np.array([a[s] for s in seeds])
    y = np.array([b[s] for s in seeds])
    finite = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)]])
    cap = (finite.max() * 2 + 1) if len(finite) else 1.0
    return wins, paired_test(np.where(np.isfinite(x), x, cap), np.where(np.isfinite(y), y, cap))


def _rank(stats: list[ActivationStats], by_act: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Order best first (by mean final loss, then median) and set ranks with ties, win rates, p-values."""
    key = lambda s: (s.diverged == s.runs, _nan_last(s.final.mean), _nan_last(s.final.median))  # noqa: E731
    stats.sort(key=key)
    losses = {s.activation: _paired_losses(by_act[s.activation]) for s in stats}
    for s in stats:
        better = 0
        for other in stats:
            if other is s:
                continue
            wins, p = _beats(losses[other.activation], losses[s.activation], need_p_above=0.5)
            if wins > 0.5 and p < ALPHA:
                better += 1
        s.rank = 1 + better
    best = stats[0] if stats else None
    for s in stats:
        if s is best:
            s.tied_with_best, s.win_rate_vs_best, s.p_vs_best = True, float("nan"), float("nan")
            continue
        wins, p = _beats(losses[s.activation], losses[best.activation])
        s.win_rate_vs_best, s.p_vs_best = wins, p
        s.tied_with_best = not (p < ALPHA)


def _nan_last(value: float) -> float:
    return math.inf if not math.isfinite(value) else value


def rows(act_stats: Sequence[ActivationStats], threshold: float) -> list[dict[str, Any]]:
    """One flat row per activation, best first: what stats.csv and stats.json hold."""
    out = []
    for s in sorted(act_stats, key=lambda s: (s.rank, _nan_last(s.final.mean))):
        row: dict[str, Any] = {"activation": s.activation, "rank": s.rank, "tied_with_best": s.tied_with_best,
                               "runs": s.runs, "diverged": s.diverged}
        for prefix, iv in (("final", s.final), ("best", s.best), ("test", s.test)):
            for field_name in ("mean", "std", "median", "lo", "hi"):
                row[f"{prefix}_{field_name}"] = getattr(iv, field_name) if iv is not None else float("nan")
        row.update(epochs_to_threshold=s.epochs_to_threshold, threshold=threshold,
                   win_rate_vs_best=s.win_rate_vs_best, p_vs_best=s.p_vs_best)
        out.append(row)
    return out
