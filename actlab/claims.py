"""The articles' claims (ARTICLES.md §C 1-5 and §D), one small function each, checked against measured numbers.

Each returns a ``Verdict``: supported, contradicted or not shown, the evidence it rests on, and an
explanation only when the explanation's own condition was measured. The functions take plain numbers, so
every branch is tested on constructed data; ``actlab.report`` gathers those numbers from a run folder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from actlab import inference
from actlab.inference import ALPHA

SUPPORTED, CONTRADICTED, NOT_SHOWN = "supported", "contradicted", "not shown"
LS_TOLERANCE = 1e-4  # float32 training: below the least-squares optimum by more than this is real
CONVERGED = 1.05  # identity within 5% of the least-squares optimum: it reached the linear limit
VANISHING = 0.5  # first-layer RMS gradient below half the last layer's: "shrinks"
LOW_SATURATION = 0.10  # under 10% of units saturated: saturation cannot explain a small gradient
HIGH_SATURATION = 0.25
BLOWUP = 2.0  # a run "blew up": diverged, or final loss > 2x the larger of its initial loss and var(y)
OFTEN = 0.10  # "often": the Wilson interval's lower bound at or above 10%
STRAIGHT = 1e-4  # a fit is a straight line: max deviation from its own LS line < 1e-4 of the target's range


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict with its evidence (and an explanation only where its condition was measured)."""

    claim: str
    title: str
    verdict: str
    evidence: str
    explanation: str = ""


def _g(value: float, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _rate(k: int, n: int) -> str:
    lo, hi = inference.wilson(k, n)
    return f"{k} of {n} (95% Wilson interval {100 * lo:.0f}-{100 * hi:.0f}%)"


# --- §C ---------------------------------------------------------------------------------------------------

def linear_collapse(identity_losses: Sequence[float], least_squares: float) -> Verdict:
    """C1: identity can do no better than linear regression (final losses vs the least-squares optimum)."""
    title = "Without a non-linearity the net is one linear map"
    losses = [v for v in identity_losses if math.isfinite(v)]
    if not losses:
        return Verdict("C1", title, NOT_SHOWN, "identity is not in this comparison (or no run of it finished).")
    low, high = min(losses), max(losses)
    evidence = (f"identity's final loss over {len(losses)} seeds: {_g(low, 4)} to {_g(high, 4)}; least-squares "
                f"optimum of an affine model on the same data: {_g(least_squares, 4)}")
    if low < least_squares * (1 - LS_TOLERANCE):
        return Verdict("C1", title, CONTRADICTED, evidence + " — below the linear optimum, which one linear map "
                       "cannot reach.")
    if high <= least_squares * CONVERGED:
        return Verdict("C1", title, SUPPORTED, evidence + f" — every seed within {100 * (CONVERGED - 1):.0f}% of "
                       "the optimum and none below it: the linear limit, reached.")
    return Verdict("C1", title, NOT_SHOWN, evidence + " — above the optimum on some seeds (not converged): "
                   "consistent with an upper limit, but the limit itself is not reached.")


def vanishing_gradients(act: str, grad_ratio: float, move_first: float, move_last: float, saturated: float,
                        hidden_layers: int, baselines: Mapping[str, float] | None = None,
                        optimizer: str = "adam") -> Verdict:
    """C2 for sigmoid or tanh: the first layer's per-parameter RMS gradient vs the last layer's (and vs the
    same ratio of non-saturating ``baselines`` such as relu and identity, which set what the architecture
    and data give anyway), and whether the first layer's weights moved less than the last layer's."""
    title = f"{act} saturates: gradients shrink toward the input, early layers learn slowly"
    claim = f"C2 {act}"
    baselines = {k: v for k, v in (baselines or {}).items() if math.isfinite(v)}
    if not (math.isfinite(grad_ratio) and math.isfinite(move_first) and math.isfinite(move_last)):
        return Verdict(claim, title, NOT_SHOWN, f"{act}: not measured (no saved weights or gradient norms).")
    evidence = (f"{act}: first-layer RMS gradient {_g(grad_ratio, 2)}x the last layer's"
                + (" (" + ", ".join(f"{k}: {_g(v, 2)}x" for k, v in baselines.items()) + ")" if baselines else "")
                + f"; relative weight change |W_end - W_0| / |W_0|: first layer {_g(move_first, 2)}, last layer "
                f"{_g(move_last, 2)}" + (f"; {_g(100 * saturated, 2)}% of hidden units saturated at the end"
                                         if math.isfinite(saturated) else ""))
    explanation = ""
    if act == "sigmoid" and grad_ratio < VANISHING and hidden_layers >= 2 and saturated < LOW_SATURATION:
        explanation = ("Few units are saturated, so the small first-layer gradient comes from sigmoid' <= 0.25 "
                       f"multiplying once per hidden layer ({hidden_layers} here).")
    elif grad_ratio < VANISHING and saturated >= HIGH_SATURATION:
        explanation = "Many units are saturated: their derivative is near 0 and passes almost no gradient back."
    if hidden_layers < 2:
        return Verdict(claim, title, NOT_SHOWN, evidence + " — one hidden layer: no layer-by-layer shrinking to "
                       "see (the first layer's gradient also scales with the inputs).")
    if grad_ratio >= 1 or move_first >= move_last:
        why = ("the first layer's gradient is not smaller" if grad_ratio >= 1 else
               "the first layer's weights moved at least as much as the last layer's"
               + (" (Adam rescales each parameter's step)" if optimizer == "adam" else ""))
        return Verdict(claim, title, CONTRADICTED, evidence + f" — {why}.", explanation)
    if grad_ratio < VANISHING and all(grad_ratio < v / 2 for v in baselines.values()):
        return Verdict(claim, title, SUPPORTED, evidence + " — smaller gradients" + (
            " (less than half the non-saturating activations' ratio)" if baselines else "") +
            " and less motion in the first layer.", explanation)
    return Verdict(claim, title, NOT_SHOWN, evidence + " — the first layer moved less, but its gradient is not "
                   "clearly smaller" + (" than without saturation" if baselines else "") + ".", explanation)


@dataclass(frozen=True)
class Units:
    """Hidden-unit counts of one activation, summed over its seeds (from initialisation to the end)."""

    runs: int
    units: int  # hidden units over all runs
    born_dead: int
    died: int
    revived: int
    dead_end: int
    negative_end: int  # pre-activation <= 0 on every input at the end


def dying_relu(relu: Units | None, leaky: Mapping[str, Units]) -> Verdict:
    """C3: relu units die during training; leaky_relu / prelu / elu keep a gradient."""
    title = "ReLU units can die; Leaky ReLU / PReLU / ELU avoid it"
    if relu is None or relu.runs == 0:
        return Verdict("C3", title, NOT_SHOWN, "relu is not in this comparison (or no saved weights to measure).")
    evidence = (f"relu over {relu.runs} runs ({relu.units} hidden units): {relu.died} died during training, "
                f"{relu.born_dead} were dead at initialisation ({relu.revived} of them revived), {relu.dead_end} "
                "dead at the end")
    others = "; ".join(f"{a}: {u.dead_end} dead, {u.negative_end} with pre-activation <= 0 on every input "
                       "(alive only on the leaky side)" for a, u in leaky.items())
    evidence += (f". {others}" if others else ". No leaky variant in this comparison")
    if relu.died == 0:
        return Verdict("C3", title, NOT_SHOWN, evidence + " — no relu unit died during training here.")
    if any(u.dead_end > 0 for u in leaky.values()):
        return Verdict("C3", title, CONTRADICTED, evidence + " — a leaky variant has units with no gradient.")
    return Verdict("C3", title, SUPPORTED, evidence + (" — relu units died; the leaky variants kept a gradient in "
                   "every unit." if leaky else " — relu units died (the leaky part is not tested)."))


def bounded_helps(bounded: tuple[int, int], unbounded: tuple[int, int], lr: float) -> Verdict:
    """C4: bounded activations blow up less often. Each argument is (runs that blew up, runs)."""
    title = "Bounded activations help against exploding values"
    (kb, nb), (ku, nu) = bounded, unbounded
    if nb == 0 or nu == 0:
        return Verdict("C4", title, NOT_SHOWN, "the comparison lacks bounded or unbounded activations (measured "
                       "range).")
    evidence = (f"runs that diverged or ended above {BLOWUP:g}x max(initial loss, var(y)) at lr {lr:g}: bounded "
                f"activations {_rate(kb, nb)}, unbounded {_rate(ku, nu)}")
    if kb + ku == 0:
        return Verdict("C4", title, NOT_SHOWN, evidence + " — nothing blew up: no contrast to see (a larger --lr "
                       "provokes it).")
    p_less, p_more = inference.fisher_less(kb, nb, ku, nu), inference.fisher_less(ku, nu, kb, nb)
    evidence += f"; one-sided Fisher exact p {_g(p_less, 2)} (runs of one seed share data, so p is approximate)"
    if p_less < ALPHA:
        return Verdict("C4", title, SUPPORTED, evidence + " — bounded ones blew up less often.")
    if p_more < ALPHA:
        return Verdict("C4", title, CONTRADICTED, evidence + " — bounded ones blew up more often.")
    return Verdict("C4", title, NOT_SHOWN, evidence + " — the rates are not separable.")


def relu_first(verdict: str | None, rank: int, ratio: float, p: float) -> Verdict:
    """C5a: 'ReLU first for hidden layers': relu is #1, or provably equivalent to #1."""
    title = "ReLU first for hidden layers"
    if verdict is None:
        return Verdict("C5a", title, NOT_SHOWN, "relu is not in this comparison.")
    evidence = f"relu is #{rank}" + (f", loss ratio to #1 {_g(ratio, 3)}, Holm-adjusted p {_g(p, 2)}"
                                      if verdict != "best" else "")
    if verdict in ("best", "equivalent"):
        return Verdict("C5a", title, SUPPORTED, evidence + (" — the best." if verdict == "best" else
                       " — equivalent to #1 within the margin (TOST)."))
    if verdict == "worse":
        return Verdict("C5a", title, CONTRADICTED, evidence + " — significantly worse than #1.")
    return Verdict("C5a", title, NOT_SHOWN, evidence + " — neither shown worse nor shown equivalent: not separable.")


def avoid_sigmoid(verdict: str | None, rank: int, ratio: float, p: float) -> Verdict:
    """C5b: 'avoid sigmoid in hidden layers': sigmoid is significantly worse than #1."""
    title = "Avoid sigmoid in hidden layers"
    if verdict is None:
        return Verdict("C5b", title, NOT_SHOWN, "sigmoid is not in this comparison.")
    evidence = f"sigmoid is #{rank}" + (f", loss ratio to #1 {_g(ratio, 3)}, Holm-adjusted p {_g(p, 2)}"
                                         if verdict != "best" else "")
    if verdict == "worse":
        return Verdict("C5b", title, SUPPORTED, evidence + " — significantly worse than #1.")
    if verdict in ("best", "equivalent", "better"):
        return Verdict("C5b", title, CONTRADICTED, evidence + (" — the best here." if verdict == "best" else
                       " — as good as the best here."))
    return Verdict("C5b", title, NOT_SHOWN, evidence + " — not separable from #1.")


# --- §D: the 1-D curve fits -------------------------------------------------------------------------------

def straight_line(deviations: Sequence[float]) -> Verdict:
    """D1: identity's fit is a straight line (max deviation of each seed's fit from its own line, relative
    to the target's range)."""
    title = "identity gives a straight line"
    if not deviations:
        return Verdict("D1", title, NOT_SHOWN, "identity is not in this comparison (or no saved weights).")
    worst = max(deviations)
    evidence = f"largest deviation of a fit from a straight line: {_g(worst, 2)} of the target's range"
    verdict = SUPPORTED if worst < STRAIGHT else CONTRADICTED
    return Verdict("D1", title, verdict, evidence + (" — straight on every seed." if verdict == SUPPORTED
                                                     else " — not a straight line."))


def stuck_often(act: str, stuck: int, runs: int, flat: int) -> Verdict:
    """D2: relu often gets stuck on a plateau that more epochs do not fix (``flat``: stuck runs whose loss
    changed by less than 1% over the last quarter of the epochs)."""
    title = f"{act} often gets stuck on a plateau"
    if runs == 0:
        return Verdict("D2", title, NOT_SHOWN, f"{act} is not in this comparison.")
    lo, hi = inference.wilson(stuck, runs)
    evidence = (f"{act} stuck on the monotone plateau in {_rate(stuck, runs)}; {flat} of them flat (loss moved "
                "< 1%) over the last quarter of training" + (", so more epochs would not obviously help"
                                                            if stuck and flat == stuck else ""))
    if lo >= OFTEN:
        return Verdict("D2", title, SUPPORTED, evidence + ".")
    if hi < OFTEN:
        return Verdict("D2", title, CONTRADICTED, evidence + " — rarely, if ever.")
    return Verdict("D2", title, NOT_SHOWN, evidence + " — too few seeds to call it often or rare.")


def leaky_avoids(relu_stuck: Mapping[int, bool], leaky_stuck: Mapping[int, bool]) -> Verdict:
    """D3: leaky_relu avoids relu's plateau: paired by seed, exact McNemar test on the discordant seeds."""
    title = "leaky_relu avoids getting stuck"
    seeds = sorted(set(relu_stuck) & set(leaky_stuck))
    if not seeds:
        return Verdict("D3", title, NOT_SHOWN, "relu and leaky_relu are not both in this comparison.")
    only_relu = sum(relu_stuck[s] and not leaky_stuck[s] for s in seeds)
    only_leaky = sum(leaky_stuck[s] and not relu_stuck[s] for s in seeds)
    k = sum(leaky_stuck[s] for s in seeds)
    p = inference.mcnemar_p(only_leaky, only_relu)
    evidence = (f"stuck on {len(seeds)} common seeds: relu {sum(relu_stuck[s] for s in seeds)}, leaky_relu {k}; "
                f"only relu stuck on {only_relu}, only leaky_relu on {only_leaky} (exact McNemar p {_g(p, 2)})")
    if p < ALPHA:
        return Verdict("D3", title, SUPPORTED, evidence + (" — it gets stuck less often (not never)." if k
                                                           else " — it got stuck less often, never here."))
    if inference.wilson(k, len(seeds))[0] >= OFTEN:
        return Verdict("D3", title, CONTRADICTED, evidence + " — leaky_relu gets stuck often too.")
    return Verdict("D3", title, NOT_SHOWN, evidence + " — not separable over these seeds.")


def smooth_fit(act: str, stuck: int, runs: int) -> Verdict:
    """D4: sigmoid and tanh fit (smoothly): they leave the plateau on most seeds."""
    title = f"{act} fits the curve (smoothly)"
    claim = f"D4 {act}"
    if runs == 0:
        return Verdict(claim, title, NOT_SHOWN, f"{act} is not in this comparison.")
    lo, hi = inference.wilson(stuck, runs)
    evidence = (f"{act} stuck on the monotone plateau in {_rate(stuck, runs)} (a smooth activation gives a smooth "
                "curve by construction; what is measured is whether the fit leaves the plateau)")
    if lo >= OFTEN:
        return Verdict(claim, title, CONTRADICTED, evidence + " — it often does not fit.")
    if hi < 0.5:
        return Verdict(claim, title, SUPPORTED, evidence + " — it fits on most seeds.")
    return Verdict(claim, title, NOT_SHOWN, evidence + " — too few seeds to tell.")


def swish_between(shares: Mapping[str, Sequence[float]], points: int) -> Verdict:
    """D5: swish (torch's silu) sits between relu and sigmoid, in the shape of its fits: each curved fit's
    share of its curvature at its ``points`` sharpest points (``report.kink_shares``: 1 for relu's hinges,
    small for sigmoid's smooth bumps), relu's above silu's above sigmoid's, both shifts significant (two-sided
    Mann-Whitney, Holm over the two)."""
    title = "swish (silu) sits between relu and sigmoid"
    few = [act for act in ("relu", "silu", "sigmoid") if len(shares.get(act, ())) < 3]
    if few:
        return Verdict("D5", title, NOT_SHOWN, f"needs at least 3 curved fits each of relu, silu and sigmoid on a net "
                       f"of one hidden layer; too few of {', '.join(few)} here.")
    med = {act: float(np.median(shares[act])) for act in ("relu", "silu", "sigmoid")}
    p_relu, p_sigmoid = inference.holm([inference.mann_whitney_p(shares["relu"], shares["silu"]),
                                        inference.mann_whitney_p(shares["silu"], shares["sigmoid"])])
    evidence = (f"share of a fit's curvature at its {points} sharpest points (1: all in hinges), median over "
                f"curved fits: relu {_g(med['relu'])} ({len(shares['relu'])}), silu {_g(med['silu'])} "
                f"({len(shares['silu'])}), sigmoid {_g(med['sigmoid'])} ({len(shares['sigmoid'])}); Mann-Whitney "
                f"relu vs silu p {_g(p_relu, 2)}, silu vs sigmoid p {_g(p_sigmoid, 2)} (Holm)")
    above, below = p_relu < ALPHA, p_sigmoid < ALPHA
    if above and below and med["relu"] > med["silu"] > med["sigmoid"]:
        return Verdict("D5", title, SUPPORTED,
                       evidence + " — its fits are less hinged than relu's, more than sigmoid's.")
    if (above and med["silu"] > med["relu"]) or (below and med["silu"] < med["sigmoid"]):
        return Verdict("D5", title, CONTRADICTED, evidence + " — its fits lie outside the two.")
    return Verdict("D5", title, NOT_SHOWN, evidence + " — not separable from one of them over these seeds.")

