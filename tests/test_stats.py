"""Statistics against values computed by hand."""

import math

import pytest

from actlab import stats


def test_interval_by_hand():
    iv = stats.Interval.of([1.0, 2.0, 3.0, 4.0])
    assert (iv.n, iv.mean, iv.median) == (4, 2.5, 2.5)
    assert iv.std == pytest.approx(math.sqrt(5 / 3))  # sample std, ddof=1
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t(0.975, df=3) * s / sqrt(n)
    assert (iv.lo, iv.hi) == (pytest.approx(2.5 - half), pytest.approx(2.5 + half))


def test_interval_ignores_non_finite_and_handles_tiny_samples():
    assert stats.Interval.of([1.0, math.inf, float("nan"), 3.0]).n == 2
    one = stats.Interval.of([2.0])
    assert one.mean == 2.0 and math.isnan(one.lo)
    assert stats.Interval.of([]).n == 0


def test_paired_wilcoxon_exact_p():
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    b = [x + 0.5 + i / 10 for i, x in enumerate(a)]  # every pair differs in the same direction
    assert stats.paired_test(a, b) == pytest.approx(2 / 2**8)  # exact two-sided: 2 * (1/2)^8
    assert stats.paired_test(a, a) == 1.0


def test_epochs_to_reach():
    assert stats.epochs_to_reach([1.0, 0.6, 0.4, 0.3], 0.5) == 3
    assert stats.epochs_to_reach([1.0, 0.9], 0.5) == math.inf


def _rows(activation, finals, status="ok"):
    return [{"run": f"{activation}/seed{s}", "activation": activation, "seed": s, "status": status,
             "final_loss": v, "best_loss": v, "final_test_loss": math.nan} for s, v in enumerate(finals)]


def test_ranking_shows_ties_where_the_evidence_does_not_separate():
    best = [0.10, 0.11, 0.09, 0.12, 0.10, 0.11, 0.10, 0.09]
    mid_a = [0.50, 0.52, 0.49, 0.55, 0.51, 0.48, 0.53, 0.50]
    mid_b = [0.51, 0.50, 0.50, 0.54, 0.52, 0.49, 0.52, 0.51]  # interleaved with mid_a: no clear winner
    rows = _rows("best", best) + _rows("mid_a", mid_a) + _rows("mid_b", mid_b)
    curves = {r["run"]: [1.0, r["final_loss"]] for r in rows}
    result, threshold = stats.summarise(rows, curves)
    by = {s.activation: s for s in result}
    assert threshold == 0.5  # half the median first-epoch loss
    assert result[0].activation == "best" and by["best"].rank == 1
    assert by["mid_a"].rank == by["mid_b"].rank == 2  # a tie
    assert by["mid_a"].win_rate_vs_best == 0.0 and by["mid_a"].p_vs_best == pytest.approx(2 / 2**8)
    assert not by["mid_a"].tied_with_best
    assert by["best"].epochs_to_threshold == 2 and by["mid_a"].epochs_to_threshold == math.inf


def test_diverged_runs_lose_their_pairing():
    rows = _rows("steady", [0.3] * 6) + _rows("wild", [0.1, 0.1, 0.1, math.nan, math.nan, math.nan])
    for r in rows[9:]:
        r["status"] = "diverged"
    result, _ = stats.summarise(rows, {r["run"]: [1.0] for r in rows})
    wild = next(s for s in result if s.activation == "wild")
    assert wild.diverged == 3 and wild.final.n == 3 and wild.final.mean == pytest.approx(0.1)
