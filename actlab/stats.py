"""Statistics over seeds: one seed ranks noise, so every number an activation gets is over its seeds.

What the comparison computes from summary.csv (final, best and held-out loss per run) and the per-epoch
full-data loss of metrics.csv, with the tests of ``actlab.inference``:

- **Order**: by mean rank over the seeds every activation finished (rank 1 = lowest final loss of that
  seed; a diverged run ranks last), then by median final loss. Activations with the same final loss on
  every seed (relu and relu6 when no unit reaches 6, elu and celu at alpha = 1) are one row (``same_as``).
- **Location**: median final loss with its distribution-free 95% interval (order statistics: it cannot
  leave the data, so it stays positive); mean and standard deviation are kept as descriptions.
- **Against #1**, paired by seed (every activation of a seed starts from the same linear weights): the
  ratio of losses exp(Hodges-Lehmann shift of log losses) with a bootstrap interval; the exact Wilcoxon
  signed-rank test on the log ratios, Holm-adjusted over the k - 1 comparisons with #1; an equivalence
  test (TOST, margin ``EQUIVALENCE_MARGIN`` on the ratio), Holm-adjusted too. Verdict: ``worse`` /
  ``better`` (Wilcoxon significant), ``equivalent`` (TOST significant), else ``not separable``.
- **Groups**: Friedman's test over all activations and the Nemenyi critical difference of mean ranks
  (the critical-difference diagram): activations closer than it are not separable by that test.
- **Failures**: runs that diverged or ended no better than the constant predictor (final loss >= var(y));
  for 1-D tasks **stuck** runs: final loss >= ``STUCK_FRACTION`` x the best *monotone* fit's loss (isotonic
  least squares: the best any net whose output is monotone in x can do, e.g. one working relu unit), with
  Wilson intervals.
- **'epochs to'**: the first epoch at or below a threshold set by the task, not by the runs:
  ``THRESHOLD_FRACTION`` x var(y), and for 1-D tasks at most half the monotone fit's loss (below the plateau).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actlab import inference
from actlab.inference import ALPHA

EQUIVALENCE_MARGIN = 0.10  # "as good as": the paired loss ratio provably within [1/1.1, 1.1]
THRESHOLD_FRACTION = 0.10  # 'epochs to': loss at or below 10% of the constant predictor's (var(y))
PLATEAU_SHARE = 0.5  # ...and, for 1-D tasks, at most half the best monotone fit's loss
STUCK_FRACTION = 0.9  # stuck: final loss at or above 90% of the best monotone fit's loss
SAME_RTOL = 1e-9  # final losses this close on every seed: the same function on this data


@dataclass(frozen=True)
class Reference:
    """Losses that depend on the task's data only: what the threshold and the failure rates are set by."""

    constant_loss: float  # MSE of predicting mean(y): var(y)
    least_squares: float = math.nan  # best affine map
    monotone_loss: float = math.nan  # 1-D tasks: best monotone (isotonic) fit

    @property
    def threshold(self) -> float:
        """The 'epochs to' loss: THRESHOLD_FRACTION var(y), below the monotone plateau for 1-D tasks."""
        t = THRESHOLD_FRACTION * self.constant_loss
        if math.isfinite(self.monotone_loss):
            t = min(t, PLATEAU_SHARE * self.monotone_loss)
        return t


@dataclass(frozen=True)
class Interval:
    """Median with its distribution-free 95% interval (lo, hi; NaN with fewer than 6 values), mean and std
    of one measure over seeds (finite values only)."""

    n: int
    mean: float
    std: float
    median: float
    lo: float
    hi: float
    coverage: float = math.nan  # exact coverage of [lo, hi] for the median

    @classmethod
    def of(cls, values: Sequence[float]) -> Interval:
        x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
        n = len(x)
        if n == 0:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan)
        lo, hi, coverage = inference.median_ci(x)
        std = float(x.std(ddof=1)) if n > 1 else math.nan
        return cls(n, float(x.mean()), std, float(np.median(x)), lo, hi, coverage)


@dataclass
class ActivationStats:
    """One activation's statistics over its seeds (``losses``: seed -> final loss, inf when diverged)."""

    activation: str
    runs: int
    diverged: int
    final: Interval
    best: Interval
    test: Interval | None
    epochs_to_threshold: float  # median over seeds; inf when most never reach it
    losses: dict[int, float] = field(default_factory=dict)
    same_as: list[str] = field(default_factory=list)  # identical activations folded into this row
    failed: int = 0  # diverged, or final loss >= var(y)
    stuck: int = 0  # 1-D tasks: final loss on the monotone plateau (diverged runs included)
    rank: int = 0  # position in the order, 1 = best
    mean_rank: float = math.nan
    verdict: str = ""  # against #1: best | worse | better | equivalent | not separable
    tied_with_best: bool = False  # not shown to differ from #1 (equivalent or not separable)
    win_rate_vs_best: float = math.nan  # share of common seeds with a lower loss than #1
    p_vs_best_raw: float = math.nan  # exact Wilcoxon on log ratios vs #1, unadjusted
    p_vs_best: float = math.nan  # ... Holm-adjusted over the k - 1 comparisons with #1
    p_equivalent: float = math.nan  # TOST vs #1, Holm-adjusted
    ratio_vs_best: float = math.nan  # paired loss ratio to #1 (HL on the log scale) and its interval
    ratio_lo: float = math.nan
    ratio_hi: float = math.nan
    nemenyi_p_vs_best: float = math.nan
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Overview:
    """What holds for the whole comparison: the omnibus test, critical difference and power."""

    activations: int  # rows (identical activations folded)
    seeds: int  # seeds every activation finished: the Friedman blocks
    friedman_chi2: float
    friedman_p: float
    critical_difference: float  # Nemenyi, in mean ranks
    cliques: list[list[str]]  # maximal groups closer than the critical difference (all one if Friedman p >= alpha)
    min_p: float  # smallest exact two-sided p with that many seeds
    comparisons: int  # tests against #1 (Holm family)
    seeds_needed: int  # seeds at which the smallest exact p survives Holm over those comparisons
    threshold: float
    reference: Reference | None

    @property
    def powerless(self) -> bool:
        """True when no comparison with #1 can be significant at these seeds."""
        return self.comparisons > 0 and self.min_p * self.comparisons > ALPHA


def epochs_to_reach(curve: Sequence[float], threshold: float) -> float:
    """First epoch (1-based) at which ``curve`` is at or below ``threshold``; inf if never."""
    for epoch, value in enumerate(curve, start=1):
        if value <= threshold:
            return float(epoch)
    return math.inf


def default_threshold(first_losses: Sequence[float]) -> float:
    """Fallback without a task reference: half the median first-epoch loss over the runs given."""
    finite = [v for v in first_losses if math.isfinite(v)]
    return 0.5 * float(np.median(finite)) if finite else math.nan


def summarise(
    summary: Sequence[Mapping[str, Any]],
    curves: Mapping[str, Sequence[float]],
    threshold: float | None = None,
    reference: Reference | None = None,
) -> tuple[list[ActivationStats], float]:
    """Per-activation statistics, best first, and the loss threshold used for 'epochs to'.

    ``summary`` holds the rows of summary.csv (run, activation, seed, status, final_loss, best_loss,
    final_test_loss); ``curves`` maps a run id to its per-epoch full-training-set loss; ``reference`` the
    task's losses (without it the threshold falls back to half the median first-epoch loss).
    """
    out, threshold = rank(summary, curves, threshold, reference)
    against_best(out)
    return out, threshold


def rank(
    summary: Sequence[Mapping[str, Any]],
    curves: Mapping[str, Sequence[float]],
    threshold: float | None = None,
    reference: Reference | None = None,
) -> tuple[list[ActivationStats], float]:
    """``summarise`` without the comparisons with #1 (``against_best`` adds them): each activation's own
    statistics, identical ones folded, in ranking order (rank and mean rank set). What the figures show;
    the tests against #1 (three quarters of ``summarise``'s time, scipy's bootstrap most) can then be
    computed while the figures are drawn."""
    by_act: dict[str, list[Mapping[str, Any]]] = {}
    for row in summary:
        by_act.setdefault(row["activation"], []).append(row)
    if threshold is None:
        threshold = reference.threshold if reference else default_threshold(
            [c[0] for c in curves.values() if len(c)])
    out = [_one(act, rows, curves, threshold, reference) for act, rows in by_act.items()]
    out = _fold_identical(out)
    _order(out)
    return out, threshold


def _one(act: str, rows: Sequence[Mapping[str, Any]], curves: Mapping[str, Sequence[float]], threshold: float,
         reference: Reference | None) -> ActivationStats:
    ok = [r for r in rows if r["status"] == "ok"]
    has_test = any(math.isfinite(r.get("final_test_loss", math.nan)) for r in ok)
    reach = sorted(epochs_to_reach(curves.get(r["run"], []), threshold) for r in rows)
    losses = {int(r["seed"]): (float(r["final_loss"]) if r["status"] == "ok" else math.inf) for r in rows}
    constant = reference.constant_loss if reference else math.nan
    monotone = reference.monotone_loss if reference else math.nan
    return ActivationStats(
        activation=act, runs=len(rows), diverged=len(rows) - len(ok),
        final=Interval.of([r["final_loss"] for r in ok]),
        best=Interval.of([r["best_loss"] for r in ok]),
        test=Interval.of([r["final_test_loss"] for r in ok]) if has_test else None,
        epochs_to_threshold=float(np.median(reach)) if reach else math.inf,
        losses=losses,
        failed=sum(not (v < constant) for v in losses.values()) if math.isfinite(constant) else 0,
        stuck=sum(not (v < STUCK_FRACTION * monotone) for v in losses.values()) if math.isfinite(monotone) else 0,
    )


def same_losses(a: Mapping[int, float], b: Mapping[int, float]) -> bool:
    """True when two activations have the same seeds and the same finite final loss on each (diverged runs
    say nothing about the function: never the same)."""
    if set(a) != set(b) or not a or not all(math.isfinite(v) for v in a.values()):
        return False
    return all(a[s] == b[s] or math.isclose(a[s], b[s], rel_tol=SAME_RTOL, abs_tol=0.0) for s in a)


def _fold_identical(act_stats: list[ActivationStats]) -> list[ActivationStats]:
    """Keep one of every set of identical activations (the shortest name: relu over relu6, elu over celu);
    the others are listed in its ``same_as``."""
    kept: list[ActivationStats] = []
    for s in sorted(act_stats, key=lambda s: (len(s.activation), s.activation)):
        twin = next((k for k in kept if same_losses(k.losses, s.losses)), None)
        if twin is None:
            kept.append(s)
        else:
            twin.same_as.append(s.activation)
    return kept


def loss_matrix(act_stats: Sequence[ActivationStats]) -> tuple[list[int], np.ndarray]:
    """(seeds every activation has, (seeds, activations) final losses with inf for diverged runs)."""
    common = sorted(set.intersection(*(set(s.losses) for s in act_stats))) if act_stats else []
    return common, np.array([[s.losses[seed] for s in act_stats] for seed in common], dtype=float)


def _order(act_stats: list[ActivationStats]) -> None:
    """Sort in place: mean rank over the common seeds, then median final loss (diverged = inf)."""
    seeds, matrix = loss_matrix(act_stats)
    ranks = inference.mean_ranks(matrix) if len(seeds) else np.full(len(act_stats), math.nan)
    for s, r in zip(act_stats, ranks):
        s.mean_rank = float(r)

    def key(s: ActivationStats) -> tuple:
        median = float(np.median(list(s.losses.values()))) if s.losses else math.inf
        return (s.diverged == s.runs, _nan_last(s.mean_rank), _nan_last(median), s.activation)

    act_stats.sort(key=key)
    for position, s in enumerate(act_stats, start=1):
        s.rank = position


def log_ratios(a: Mapping[int, float], b: Mapping[int, float]) -> np.ndarray:
    """log(a / b) on the seeds both have; a diverged side (inf) becomes a difference larger than every
    finite one, in its direction (both diverged: 0)."""
    seeds = sorted(set(a) & set(b))
    x = np.array([a[s] for s in seeds], dtype=float)
    y = np.array([b[s] for s in seeds], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log(np.maximum(x, 1e-300)) - np.log(np.maximum(y, 1e-300))
    d[np.isinf(x) & np.isinf(y)] = 0.0
    finite = d[np.isfinite(d)]
    cap = 2 * float(np.abs(finite).max()) + 1 if len(finite) else 1.0
    return np.where(np.isfinite(d), d, np.sign(d) * cap)


def against_best(act_stats: list[ActivationStats]) -> None:
    """Win rate, ratio, Holm-adjusted Wilcoxon and TOST against #1, the verdict and the Nemenyi p, set in
    place on ``act_stats`` as ``rank`` ordered them (``summarise``: both)."""
    if not act_stats:
        return
    best, others = act_stats[0], act_stats[1:]
    best.verdict, best.tied_with_best = "best", True
    for s in others:
        d = log_ratios(s.losses, best.losses)
        s.win_rate_vs_best = float(np.mean(d < 0)) if len(d) else math.nan
        s.p_vs_best_raw = inference.signed_rank_p(d) if len(d) >= 1 else math.nan
        seeds = sorted(set(s.losses) & set(best.losses))
        mine, theirs = [s.losses[x] for x in seeds], [best.losses[x] for x in seeds]
        s.ratio_vs_best, s.ratio_lo, s.ratio_hi = inference.ratio_effect(mine, theirs)
        both_finite = all(math.isfinite(v) for v in mine + theirs)
        s.p_equivalent = inference.tost(d, math.log1p(EQUIVALENCE_MARGIN)) if both_finite and len(d) else 1.0
    for s, p in zip(others, inference.holm([s.p_vs_best_raw for s in others])):
        s.p_vs_best = p
    for s, p in zip(others, inference.holm([s.p_equivalent for s in others])):
        s.p_equivalent = p
    ov = overview(act_stats)
    for s in others:
        s.verdict = verdict(s.p_vs_best, s.p_equivalent, s.win_rate_vs_best)
        s.tied_with_best = s.verdict in ("equivalent", "not separable")
        s.nemenyi_p_vs_best = inference.nemenyi_p(s.mean_rank - best.mean_rank, ov.activations, ov.seeds)


def verdict(p_difference: float, p_equivalent: float, win_rate: float) -> str:
    """Against #1: worse / better when the (adjusted) difference test is significant, equivalent when the
    (adjusted) equivalence test is, else not separable (absence of evidence is not equivalence)."""
    if p_difference < ALPHA:
        return "worse" if win_rate < 0.5 else "better"
    if p_equivalent < ALPHA:
        return "equivalent"
    return "not separable"


def overview(act_stats: Sequence[ActivationStats], threshold: float = math.nan,
             reference: Reference | None = None) -> Overview:
    """Friedman, the Nemenyi critical difference and its cliques, and the power of the tests vs #1."""
    seeds, matrix = loss_matrix(act_stats)
    k, n = len(act_stats), len(seeds)
    chi2, p = inference.friedman(matrix) if n else (math.nan, math.nan)
    cd = inference.nemenyi_cd(k, n) if n else math.nan
    ranks = [s.mean_rank for s in act_stats]
    if math.isfinite(p) and p < ALPHA:
        cliques = _cliques([s.activation for s in act_stats], ranks, cd)
    else:
        cliques = [[s.activation for s in act_stats]] if k else []
    pair_seeds = min((len(set(s.losses) & set(act_stats[0].losses)) for s in act_stats[1:]), default=0)
    return Overview(
        activations=k, seeds=n, friedman_chi2=chi2, friedman_p=p, critical_difference=cd, cliques=cliques,
        min_p=inference.min_two_sided_p(pair_seeds), comparisons=max(k - 1, 0),
        seeds_needed=inference.seeds_needed(max(k - 1, 1)), threshold=threshold, reference=reference,
    )


def _cliques(names: Sequence[str], ranks: Sequence[float], cd: float) -> list[list[str]]:
    """Maximal runs of activations (in rank order) whose mean ranks span less than ``cd``."""
    out: list[list[str]] = []
    for i in range(len(names)):
        j = i
        while j + 1 < len(names) and ranks[j + 1] - ranks[i] < cd:
            j += 1
        group = list(names[i : j + 1])
        if len(group) > 1 and not any(set(group) <= set(g) for g in out):
            out.append(group)
    return out


def _nan_last(value: float) -> float:
    return math.inf if not math.isfinite(value) else value


def rows(act_stats: Sequence[ActivationStats], threshold: float, reference: Reference | None = None
         ) -> list[dict[str, Any]]:
    """One flat row per activation, best first: what stats.csv and stats.json hold (every number the table
    and the report print; the comparison-wide ones repeated on every row)."""
    ov = overview(act_stats, threshold, reference)
    out = []
    for s in sorted(act_stats, key=lambda s: s.rank):
        row: dict[str, Any] = {"activation": s.activation, "rank": s.rank, "tied_with_best": s.tied_with_best,
                               "runs": s.runs, "diverged": s.diverged, "same_as": " ".join(s.same_as),
                               "mean_rank": s.mean_rank}
        for prefix, iv in (("final", s.final), ("best", s.best), ("test", s.test)):
            for name in ("mean", "std", "median", "lo", "hi"):
                row[f"{prefix}_{name}"] = getattr(iv, name) if iv is not None else math.nan
        has_constant = reference is not None and math.isfinite(reference.constant_loss)
        has_plateau = reference is not None and math.isfinite(reference.monotone_loss)
        fail_lo, fail_hi = inference.wilson(s.failed, s.runs) if has_constant else (math.nan, math.nan)
        stuck_lo, stuck_hi = inference.wilson(s.stuck, s.runs) if has_plateau else (math.nan, math.nan)
        row.update(
            median_ci_coverage=s.final.coverage, epochs_to_threshold=s.epochs_to_threshold, threshold=threshold,
            verdict=s.verdict, win_rate_vs_best=s.win_rate_vs_best, ratio_vs_best=s.ratio_vs_best,
            ratio_lo=s.ratio_lo, ratio_hi=s.ratio_hi, p_vs_best_raw=s.p_vs_best_raw, p_vs_best=s.p_vs_best,
            p_equivalent=s.p_equivalent, equivalence_margin=EQUIVALENCE_MARGIN,
            nemenyi_p_vs_best=s.nemenyi_p_vs_best, failed=s.failed if has_constant else math.nan,
            failed_lo=fail_lo, failed_hi=fail_hi, stuck=s.stuck if has_plateau else math.nan,
            stuck_lo=stuck_lo, stuck_hi=stuck_hi,
            friedman_chi2=ov.friedman_chi2, friedman_p=ov.friedman_p, critical_difference=ov.critical_difference,
            common_seeds=ov.seeds, min_p=ov.min_p, seeds_needed=ov.seeds_needed,
            constant_loss=reference.constant_loss if reference else math.nan,
            monotone_loss=reference.monotone_loss if reference else math.nan,
        )
        out.append(row)
    return out
