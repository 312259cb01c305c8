"""Statistics against independent oracles: hand-enumerated exact Wilcoxon, Holm and Wilson by hand, order
statistics by the binomial, and the ranking on constructed summaries."""

import itertools
import math

import numpy as np
import pytest

from actlab import inference, stats

# --- inference: oracles -----------------------------------------------------------------------------------

def _ranks(values):
    """Average ranks (1-based) of ``values``, ties sharing the mean of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _enumerated_wilcoxon(d, alternative="two-sided"):
    """Exact signed-rank p by enumerating all 2^n sign patterns of the ranks of |d| (zeros dropped)."""
    d = [x for x in d if x != 0]
    r = _ranks([abs(x) for x in d])
    t_obs = sum(rk for rk, x in zip(r, d) if x > 0)
    ts = [sum(rk for rk, s in zip(r, signs) if s) for signs in itertools.product([0, 1], repeat=len(d))]
    le = sum(t <= t_obs + 1e-9 for t in ts) / len(ts)
    ge = sum(t >= t_obs - 1e-9 for t in ts) / len(ts)
    return {"less": le, "greater": ge, "two-sided": min(1.0, 2 * min(le, ge))}[alternative]


@pytest.mark.parametrize("d", [
    [0.3, -0.1, 0.5, 0.7, 0.2, 0.9, -0.4, 1.1],  # no ties
    [1, 2, 2, 3, -1, 4, 5, 6, 7, 8],  # tied |d| (1 and -1, 2 and 2)
    [0.5, -0.5, 0.5, 0.5, 0, 1.5, -2.0, 0.25, 3.0],  # ties and a zero
])
def test_signed_rank_p_is_the_enumerated_exact_p(d):
    for alternative in ("two-sided", "less", "greater"):
        assert inference.signed_rank_p(d, alternative) == pytest.approx(_enumerated_wilcoxon(d, alternative))


def test_signed_rank_extremes():
    assert inference.signed_rank_p([1.0] * 8) == pytest.approx(2 / 2**8)  # every sign the same
    assert inference.signed_rank_p([0.0, 0.0]) == 1.0
    assert inference.min_two_sided_p(10) == 2 / 1024


def test_seeds_needed_for_holm():
    # 2 / 2^n * m <= 0.05  <=>  2^n >= 40 m
    assert inference.seeds_needed(20) == 10  # 2^10 = 1024 >= 800
    assert inference.seeds_needed(210) == 14  # 2^14 = 16384 >= 8400 > 2^13
    assert inference.seeds_needed(1) == 6  # 2/64 = 0.031; 2/32 = 0.0625 is not enough


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06 for the last
    assert inference.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = inference.holm([0.5, math.nan, 0.9])
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1]) and out[2] == pytest.approx(1.0)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (7, 10), (10, 10), (1, 37)])
def test_wilson_closed_form(k, n):
    z = 1.959963984540054
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = inference.wilson(k, n)
    assert (lo, hi) == (pytest.approx(max(0.0, center - half), abs=1e-12), pytest.approx(min(1.0, center + half)))


def test_median_ci_from_order_statistics():
    x = [9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0, 10.0]
    lo, hi, coverage = inference.median_ci(x)
    assert (lo, hi) == (2.0, 9.0)  # 2nd and 9th of 10
    assert coverage == pytest.approx(1 - 2 * 11 / 1024)  # 1 - 2 P(Bin(10, .5) <= 1)
    assert all(math.isnan(v) for v in inference.median_ci([1.0, 2.0, 3.0, 4.0, 5.0]))  # best coverage 93.75%


def test_hodges_lehmann_along_any_axis_at_the_ends_of_the_float_range():
    # the oracle: Walsh averages pair by pair and np.median; sums that overflow, subnormal halves, inf + -inf
    rng = np.random.default_rng(3)
    for n in (2, 5, 6, 10):
        d = rng.normal(size=(4, 3, n)) * 10.0 ** rng.integers(-320, 308, size=(4, 3, n))
        d[0, 0, 0], d[0, 0, -1] = np.inf, -np.inf  # NaN Walsh average: NaN
        d[1, 1, :] = 1.7e308  # every pair sum overflows: inf
        with np.errstate(over="ignore", invalid="ignore"):
            expected = np.array([[np.median([(r[i] + r[j]) / 2 for i in range(n) for j in range(i, n)])
                                  for r in m] for m in d])
            for axis, data in ((-1, d), (0, np.moveaxis(d, -1, 0)), (1, np.moveaxis(d, -1, 1))):
                got = inference.hodges_lehmann(data, axis=axis)
                assert np.array_equal(got, expected, equal_nan=True), (n, axis)
        assert np.isnan(expected[0, 0]) and np.isinf(expected[1, 1])


def test_median_ci_order_statistic_by_coverage():
    # the oracle: the largest j whose 1 - 2 P(Bin(n, 1/2) < j) >= 95%, from the binomial sum by hand
    for n in range(1, 30):
        x = list(range(n, 0, -1))
        cover = {j: 1 - 2 * sum(math.comb(n, i) for i in range(j)) / 2**n for j in range(1, n // 2 + 1)}
        ok = [j for j, c in cover.items() if c >= 0.95]
        lo, hi, coverage = inference.median_ci(x)
        if ok:
            assert (lo, hi) == (ok[-1], n + 1 - ok[-1]) and coverage == pytest.approx(cover[ok[-1]], rel=1e-12)
        else:
            assert math.isnan(lo) and math.isnan(hi) and math.isnan(coverage)


def test_hodges_lehmann_by_hand():
    # Walsh averages of [1, 2, 10]: 1, 1.5, 5.5, 2, 6, 10 -> median 3.75
    assert inference.hodges_lehmann(np.array([1.0, 2.0, 10.0])) == pytest.approx(3.75)


def test_hodges_lehmann_is_the_median_of_every_walsh_average_on_every_row():
    # the oracle: the Walsh averages enumerated pair by pair and np.median, row by row (odd and even counts,
    # ties, NaN and inf), against one vectorised call along an axis, as the bootstrap makes it
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 4, 7, 10):
        d = np.round(rng.normal(size=(5, n)), 1)  # rounded: tied values
        d[1, 0] = np.nan
        d[2, -1] = np.inf
        walsh = [[(row[i] + row[j]) / 2 for i in range(n) for j in range(i, n)] for row in d]
        expected = np.array([np.median(w) for w in walsh])
        assert np.array_equal(inference.hodges_lehmann(d.T, axis=0), expected, equal_nan=True)
        assert np.isnan(expected[1]) and not np.isnan(expected[0])


def test_ratio_effect_known_cases():
    a = [0.1, 0.2, 0.4, 0.05, 0.3, 0.15]
    ratio, lo, hi = inference.ratio_effect(a, [2 * v for v in a])  # every seed exactly half
    assert (ratio, lo, hi) == (pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.5))
    rng = np.random.default_rng(1)
    b = rng.lognormal(0, 1, 40)
    a = b * 2 * np.exp(rng.normal(0, 0.05, 40))  # true ratio 2, small symmetric noise on the log scale
    ratio, lo, hi = inference.ratio_effect(a, b)
    assert 0 < lo < 2 < hi and lo < ratio < hi and hi / lo < 1.1
    assert inference.ratio_effect(a, b) == (ratio, lo, hi)  # fixed bootstrap seed: reproducible


def test_tost_on_constructed_data():
    margin = math.log(1.1)
    close = [0.01, -0.02, 0.015, -0.01, 0.005, 0.02, -0.015, 0.0125, -0.005, 0.0075]  # all well inside
    assert inference.tost(close, margin) == pytest.approx(1 / 1024)  # each one-sided test: every sign agrees
    far = [0.3 + 0.01 * i for i in range(10)]  # every ratio about 1.35: outside the margin
    assert inference.tost(far, margin) == 1.0


def test_nemenyi_critical_difference_matches_demsar_table():
    # Demšar (2006), Table 5: q_0.05 = 2.728 for k = 5, 3.164 for k = 10
    assert inference.nemenyi_cd(5, 10) == pytest.approx(2.728 * math.sqrt(5 * 6 / 60), rel=1e-3)
    assert inference.nemenyi_cd(10, 20) == pytest.approx(3.164 * math.sqrt(10 * 11 / 120), rel=1e-3)


def test_mean_ranks_and_mcnemar_by_hand():
    m = np.array([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [1.0, 1.0, np.inf]])
    assert inference.mean_ranks(m) == pytest.approx([(1 + 2 + 1.5) / 3, (2 + 1 + 1.5) / 3, 3.0])
    assert inference.mcnemar_p(0, 6) == pytest.approx(1 / 64)
    assert inference.mcnemar_p(0, 0) == 1.0


# --- stats: the ranking on constructed summaries ------------------------------------------------------------

def _rows(activation, finals, status="ok"):
    return [{"run": f"{activation}/seed{s}", "activation": activation, "seed": s, "status": status,
             "final_loss": v, "best_loss": v, "final_test_loss": math.nan} for s, v in enumerate(finals)]


def _summarise(groups, reference=None):
    rows = [r for name, finals in groups.items() for r in _rows(name, finals)]
    curves = {r["run"]: [1.0, r["final_loss"]] for r in rows}
    result, threshold = stats.summarise(rows, curves, reference=reference)
    return {s.activation: s for s in result}, result, threshold


def test_interval_is_the_median_with_an_order_statistic_ci_that_stays_positive():
    iv = stats.Interval.of([0.0004] * 9 + [0.35, math.inf, math.nan])
    assert iv.n == 10 and iv.median == pytest.approx(0.0004)
    assert iv.lo == pytest.approx(0.0004) and iv.hi == pytest.approx(0.0004) and iv.lo > 0
    assert stats.Interval.of([]).n == 0 and math.isnan(stats.Interval.of([2.0]).std)


def test_the_order_is_by_mean_rank_not_by_mean():
    # 'sig' beats 'gel' on 9 of 10 seeds but one bad seed gives it the larger mean (issue 8, point 1)
    sig = [0.0004, 0.0002, 0.35, 0.0003, 0.0004, 0.0009, 0.0002, 0.0005, 0.0004, 0.0003]
    gel = [0.005, 0.0051, 0.0049, 0.0048, 0.0066, 0.0041, 0.0041, 0.0067, 0.006, 0.004]
    by, result, _ = _summarise({"gel": gel, "sig": sig})
    assert [s.activation for s in result] == ["sig", "gel"] and by["sig"].rank == 1
    assert by["gel"].win_rate_vs_best == pytest.approx(0.1)


def test_verdicts_against_the_best():
    base = [0.10, 0.12, 0.09, 0.11, 0.10, 0.13, 0.08, 0.12, 0.10, 0.11]
    groups = {
        "best": base,
        "worse": [3 * v for v in base],  # 3x on every seed: Holm over 3 comparisons still significant
        "equal": [v * (0.99 if i < 4 else 1.01) for i, v in enumerate(base)],  # within 1%: equivalent
        "mixed": [v * (2.0 if i % 2 else 0.5) for i, v in enumerate(base)],  # half better, half worse
    }
    by, result, _ = _summarise(groups)
    assert by["best"].verdict == "best"
    assert by["worse"].verdict == "worse" and by["worse"].p_vs_best == pytest.approx(3 * 2 / 1024)
    assert by["worse"].ratio_vs_best == pytest.approx(3.0) and by["worse"].ratio_lo > 0
    assert by["equal"].verdict == "equivalent" and by["equal"].tied_with_best
    assert by["mixed"].verdict == "not separable" and by["mixed"].tied_with_best


def test_identical_activations_are_one_row():
    a = [0.2, 0.3, 0.25, 0.22, 0.28, 0.31]
    by, result, _ = _summarise({"relu6": a, "relu": list(a), "tanh": [v * 2 for v in a]})
    assert set(by) == {"relu", "tanh"} and by["relu"].same_as == ["relu6"]
    assert stats.rows(result, 0.1)[0]["same_as"] == "relu6"


def test_too_few_seeds_is_said_plainly():
    by, result, _ = _summarise({"a": [0.1] * 5, "b": [0.2, 0.3, 0.4, 0.5, 0.6], "c": [1.0, 2.0, 3.0, 4.0, 5.0]})
    ov = stats.overview(result)
    assert ov.powerless and ov.min_p == 2 / 32 and ov.seeds_needed == 7  # 2/2^7 * 2 = 0.031
    assert by["c"].verdict == "not separable"  # 5 of 5 seeds worse, yet nothing can be significant


def test_threshold_comes_from_the_task_not_from_the_runs():
    ref = stats.Reference(constant_loss=0.5, monotone_loss=0.34)
    _, _, t1 = _summarise({"a": [0.1] * 6, "b": [0.2] * 6}, ref)
    _, _, t2 = _summarise({"a": [0.1] * 6, "c": [0.9] * 6}, ref)
    assert t1 == t2 == pytest.approx(min(0.1 * 0.5, 0.5 * 0.34))
    assert stats.Reference(constant_loss=0.8).threshold == pytest.approx(0.08)


def test_failures_and_stuck_counts():
    ref = stats.Reference(constant_loss=0.5, monotone_loss=0.34)
    by, _, _ = _summarise({"r": [0.35, 0.31, 0.30, 0.6, 0.01, 0.02]}, ref)
    assert by["r"].failed == 1  # 0.6 >= var(y)
    assert by["r"].stuck == 3  # >= 0.9 * 0.34 = 0.306: 0.35, 0.31 and 0.6


def test_diverged_runs_rank_last_and_lose_the_pairing():
    rows = _rows("steady", [0.3] * 6) + _rows("wild", [0.1, 0.1, 0.1, math.nan, math.nan, math.nan])
    for r in rows[9:]:
        r["status"] = "diverged"
    result, _ = stats.summarise(rows, {r["run"]: [1.0] for r in rows})
    wild = next(s for s in result if s.activation == "wild")
    assert wild.diverged == 3 and wild.final.n == 3 and wild.final.median == pytest.approx(0.1)
    assert wild.losses[5] == math.inf
    d = stats.log_ratios(wild.losses, result[0].losses if result[0] is not wild else result[1].losses)
    assert np.all(np.isfinite(d)) and (d > 0).sum() == 3


def test_epochs_to_reach():
    assert stats.epochs_to_reach([1.0, 0.6, 0.4, 0.3], 0.5) == 3
    assert stats.epochs_to_reach([1.0, 0.9], 0.5) == math.inf


def test_verdict_rule_every_branch():
    assert stats.verdict(0.01, 0.9, 0.1) == "worse"
    assert stats.verdict(0.01, 0.9, 0.8) == "better"  # significant, and it wins most seeds
    assert stats.verdict(0.01, 0.01, 0.2) == "worse"  # a consistent small difference is still a difference
    assert stats.verdict(0.3, 0.01, 0.5) == "equivalent"
    assert stats.verdict(0.3, 0.3, 0.5) == "not separable"
    assert stats.verdict(math.nan, math.nan, math.nan) == "not separable"


def test_rank_is_summarise_before_its_comparisons_with_the_best():
    base = [0.10, 0.12, 0.09, 0.11, 0.10, 0.13, 0.08, 0.12, 0.10, 0.11]
    groups = {"best": base, "worse": [3 * v for v in base], "same": list(base),
              "equal": [v * (0.99 if i < 4 else 1.01) for i, v in enumerate(base)]}
    rows = [r for name, finals in groups.items() for r in _rows(name, finals)]
    curves = {r["run"]: [1.0, r["final_loss"]] for r in rows}
    ranked, threshold = stats.rank(rows, curves)
    # the order, ranks and folding are summarise's; no comparison with #1 is made yet
    full, full_threshold = stats.summarise(rows, curves)
    assert threshold == full_threshold
    assert [(s.activation, s.rank, s.mean_rank, s.same_as) for s in ranked] == \
        [(s.activation, s.rank, s.mean_rank, s.same_as) for s in full]
    assert all(s.verdict == "" and math.isnan(s.p_vs_best) for s in ranked)
    # against_best completes them in place: then every statistic is summarise's
    stats.against_best(ranked)
    assert stats.rows(ranked, threshold) == stats.rows(full, full_threshold)
    assert {s.activation: s.verdict for s in ranked} == {"best": "best", "worse": "worse", "equal": "equivalent"}
