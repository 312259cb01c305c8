"""report.md: the answer first (three verdict lines), the setup, the ranking with intervals and effect sizes,
failure rates, each claim's verdict with its evidence, the diagnostics behind them, and the figures.

The numbers come from ``actlab.stats`` (also in stats.csv / stats.json) and from ``actlab.analysis``; the
verdicts from ``actlab.claims``, which says "not shown" whenever its test cannot support more.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from actlab import analysis, claims, inference, stats, tables
from actlab.analysis import Analysis

if TYPE_CHECKING:
    from actlab.studyrun import Answer

FIGURE_TITLES = {
    "loss_curves": "Training loss per epoch",
    "final_loss": "Final loss per activation (every seed)",
    "critical_difference": "Critical-difference diagram (mean ranks, Nemenyi)",
    "gradient_norms": "Gradient norms: first vs last layer",
    "dead_units": "Dead units per hidden layer",
    "fits": "Fitted curves",
    "sensitivity": "Sensitivity to the grid: held-out (or final) loss per setting, every activation",
    "depth_gradient": "Early-layer gradient signal against depth",
}
LEAKY = ("leaky_relu", "prelu", "elu")
FLAT = 0.01  # a stuck run is "flat" when its loss moved less than 1% over the last quarter of the epochs


def _g(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.0f}%"


# --- measures gathered from the analysis ------------------------------------------------------------------

_Measure = TypeVar("_Measure", bound=Callable)


def _once(fn: _Measure) -> _Measure:
    """``fn(an, *args)`` worked out once per analysis and arguments: the claims, stats.csv and the tables each
    ask for the same per-activation measures (``an.memo``)."""
    @functools.wraps(fn)
    def measured(an: Analysis, *args):
        key = (fn.__name__, *args)
        if key not in an.memo:
            an.memo[key] = fn(an, *args)
        return an.memo[key]
    return measured  # type: ignore[return-value]


def _param_counts(an: Analysis) -> list[int]:
    sizes = an.stored.config.model.sizes
    return [a * b + b for a, b in zip(sizes[:-1], sizes[1:])]


@_once
def grad_ratio_training(an: Analysis, act: str) -> float:
    """Median over seeds of the median over the measured epochs (train.diagnostics_dense: empty cells are
    epochs it skipped) of RMS gradient layer 1 / RMS gradient last layer (per-parameter RMS = gradient
    norm / sqrt(parameters)); NaN without diagnostics."""
    counts = _param_counts(an)
    first = an.per_run("grad_norm_L1").get(act, {})
    last = an.per_run(f"grad_norm_L{an.layers()}").get(act, {})
    scale = math.sqrt(counts[-1] / counts[0])
    per_seed = []
    for seed, values in first.items():
        r = [a / b * scale for a, b in zip(values, last.get(seed, [])) if b > 0 and math.isfinite(a)]  # NaN: skipped
        if r:
            per_seed.append(float(np.median(r)))
    return float(np.median(per_seed)) if per_seed else math.nan


@_once
def grad_ratio_init(an: Analysis, act: str) -> float:
    """Median over seeds of RMS gradient layer 1 / last layer at initialisation (epoch 0)."""
    runs = an.units().get(act, [])
    r = [u.start.grad_rms[0] / u.start.grad_rms[-1] for u in runs if u.start.grad_rms[-1] > 0]
    return float(np.median(r)) if r else math.nan


@_once
def moves(an: Analysis, act: str) -> tuple[float, float]:
    """Median over seeds of |W_end - W_0| / |W_0| for the first and the last layer (NaN: no weights)."""
    from actlab import diagnostics

    changes = [diagnostics.relative_change(u.start, u.end) for u in an.units().get(act, []) if u.end]
    if not changes:
        return math.nan, math.nan
    arr = np.array(changes)
    return float(np.median(arr[:, 0])), float(np.median(arr[:, -1]))


@_once
def final_share(an: Analysis, act: str, kind: str) -> tuple[float, float]:
    """(mean over seeds, worst seed) of the final share of ``kind`` (dead | saturated) hidden units from
    metrics.csv (each seed's last measured epoch), weighted by layer width; NaN when not measured."""
    per_layer = [an.last_measured(f"{kind}_L{layer}", act) for layer in range(1, an.hidden_layers() + 1)]
    if not per_layer or not len(per_layer[0]) or all(np.isnan(v).all() for v in per_layer):
        return math.nan, math.nan
    sizes = np.array(an.stored.config.model.sizes[1:-1], dtype=float)
    weighted = (np.array(per_layer) * sizes[:, None]).sum(axis=0) / sizes.sum()
    return float(np.nanmean(weighted)), float(np.nanmax(weighted))


@_once
def unit_counts(an: Analysis, act: str) -> claims.Units | None:
    """Hidden-unit story of ``act`` summed over seeds (None without saved weights)."""
    runs = [u for u in an.units().get(act, []) if u.end is not None]
    if not runs:
        return None
    total = lambda what: sum(sum(u.count(what)) for u in runs)  # noqa: E731
    width = sum(an.stored.config.model.sizes[1:-1])
    return claims.Units(len(runs), width * len(runs), total("born_dead"), total("died"), total("revived"),
                        total("dead_end"), total("negative_end"))


def blowups(an: Analysis, names: list[str]) -> tuple[int, int]:
    """(runs that diverged or ended above BLOWUP x max(initial loss, var(y)), runs) over ``names``."""
    ref = an.reference.constant_loss if an.reference else math.nan
    start = {(a, u.seed): u.start.loss for a in names for u in an.units().get(a, [])}
    k = n = 0
    for row in an.stored.summary:
        if row["activation"] not in names:
            continue
        n += 1
        limit = claims.BLOWUP * np.nanmax([start.get((row["activation"], int(row["seed"])), math.nan), ref])
        k += row["status"] != "ok" or not math.isfinite(row["final_loss"]) or row["final_loss"] > limit
    return k, n


def stuck_by_seed(an: Analysis, act: str) -> dict[int, bool]:
    """seed -> stuck on the monotone plateau (1-D tasks; {} otherwise)."""
    s = _stat_of(an, act)
    mono = an.reference.monotone_loss if an.reference else math.nan
    if s is None or not math.isfinite(mono):
        return {}
    return {seed: not (loss < stats.STUCK_FRACTION * mono) for seed, loss in s.losses.items()}


def flat_stuck(an: Analysis, act: str) -> int:
    """Stuck runs whose full-data loss changed by less than FLAT (relative) over the last quarter of epochs."""
    stuck = stuck_by_seed(an, act)
    curves = an.per_run("full_loss").get(_stat_of(an, act).activation if _stat_of(an, act) else act, {})
    count = 0
    for seed, is_stuck in stuck.items():
        c = curves.get(seed, [])
        if is_stuck and len(c) >= 4:
            a, b = c[-len(c) // 4], c[-1]
            count += math.isfinite(a) and math.isfinite(b) and abs(b - a) <= FLAT * a
    return count


def line_deviations(an: Analysis) -> list[float]:
    """Per identity seed: max |fit - its own least-squares line| / range of the target (1-D tasks)."""
    curves = analysis.fitted_curves(an.stored, weights=an.weights()).get("identity", [])
    _, y = analysis.target_curve(an.stored)
    span = float(np.ptp(y)) or 1.0
    out = []
    for x, pred in curves:
        coef = np.polyfit(x.astype(float), pred.astype(float), 1)
        out.append(float(np.abs(np.polyval(coef, x) - pred).max()) / span)
    return out


KINKS_PER_UNIT = 2  # a hinge between two grid points shows in two second differences


def kink_shares(an: Analysis) -> tuple[dict[str, list[float]], int]:
    """Per activation, each curved fit's share of its curvature (sum of |second differences| of the fit on
    ``analysis.fitted_curves``' grid) at its m sharpest points, m = 2 per hidden unit: 1 where the curvature
    is all in hinges (relu: the fit is straight between them), small where it is spread (sigmoid); and m.
    Only for 1-D nets of one hidden layer (deeper relu nets bend in more places than they have units); a fit
    with no curvature above float32's noise (a straight line, a dead net) has no share."""
    sizes = an.stored.config.model.sizes
    if len(sizes) != 3:
        return {}, 0
    points = KINKS_PER_UNIT * sizes[1]
    out: dict[str, list[float]] = {}
    for act, curves in analysis.fitted_curves(an.stored, weights=an.weights()).items():
        for _, pred in curves:
            bends = np.sort(np.abs(np.diff(pred.astype(np.float64), 2)))
            noise = 1e-6 * len(bends) * max(float(np.abs(pred).max()), 1.0)  # float32 rounding, summed
            if bends.sum() > noise:
                out.setdefault(act, []).append(float(bends[-points:].sum() / bends.sum()))
    return out, points


def _stat_of(an: Analysis, act: str) -> stats.ActivationStats | None:
    """The row holding ``act`` (itself, or the identical activation it was folded into)."""
    return next((s for s in an.stats if s.activation == act or act in s.same_as), None)


def _present(an: Analysis) -> set[str]:
    return {a for s in an.stats for a in (s.activation, *s.same_as)}


# --- claims -----------------------------------------------------------------------------------------------

def checks(an: Analysis) -> list[claims.Verdict]:
    """Every claim of ARTICLES.md §C (and §D for 1-D tasks) checked on this experiment."""
    present = _present(an)
    out = [claims.linear_collapse(list(_stat_of(an, "identity").losses.values()) if "identity" in present else [],
                                  an.least_squares)]
    baselines = {a: grad_ratio_training(an, _stat_of(an, a).activation) for a in ("relu", "identity") if a in present}
    for act in ("sigmoid", "tanh"):
        if act in present:
            ratio = grad_ratio_training(an, act)
            first, last = moves(an, act)
            out.append(claims.vanishing_gradients(act, ratio, first, last, final_share(an, act, "saturated")[0],
                                                  an.hidden_layers(), baselines, an.stored.config.train.optimizer))
    if not any(a in present for a in ("sigmoid", "tanh")):
        out.append(claims.Verdict("C2", "Sigmoid and tanh saturate", claims.NOT_SHOWN,
                                  "neither sigmoid nor tanh is in this comparison."))
    leaky = {a: u for a in LEAKY if a in present and (u := unit_counts(an, a)) is not None}
    out.append(claims.dying_relu(unit_counts(an, "relu") if "relu" in present else None, leaky))
    measured = {a: analysis.bounded(a, an.stored.config.model.options.get(a, {})) for a in sorted(present)}
    out.append(claims.bounded_helps(blowups(an, [a for a, b in measured.items() if b]),
                                    blowups(an, [a for a, b in measured.items() if b is False]),
                                    an.stored.config.train.lr))
    for act, check in (("relu", claims.relu_first), ("sigmoid", claims.avoid_sigmoid)):
        s = _stat_of(an, act)
        out.append(check(s.verdict if s else None, s.rank if s else 0, s.ratio_vs_best if s else math.nan,
                         s.p_vs_best if s else math.nan))
    if _curve_task(an):
        out += _curve_checks(an, present)
    return out


def _curve_task(an: Analysis) -> bool:
    """A 1-D task with a monotone plateau: the curve-fitting article's claims (§D) apply."""
    return an.stored.config.model.sizes[0] == 1 and an.reference is not None and math.isfinite(
        an.reference.monotone_loss)


def _curve_checks(an: Analysis, present: set[str]) -> list[claims.Verdict]:
    out = [claims.straight_line(line_deviations(an) if "identity" in present else [])]
    relu = stuck_by_seed(an, "relu")
    out.append(claims.stuck_often("relu", sum(relu.values()), len(relu), flat_stuck(an, "relu")))
    out.append(claims.leaky_avoids(relu, stuck_by_seed(an, "leaky_relu")))
    for act in ("sigmoid", "tanh"):
        st = stuck_by_seed(an, act)
        out.append(claims.smooth_fit(act, sum(st.values()), len(st)))
    out.append(claims.swish_between(*kink_shares(an)))
    return out


def claims_markdown(verdicts: list[claims.Verdict]) -> list[str]:
    """One paragraph per verdict: claim, verdict, evidence, explanation (only when measured)."""
    return [f"**{v.claim}. {v.title}: {v.verdict}.** {v.evidence}" + (f" {v.explanation}" if v.explanation else "")
            for v in verdicts]


def headline(an: Analysis, verdicts: list[claims.Verdict]) -> list[str]:
    """The three verdict lines of the top of the report, and a one-line tally of the claims."""
    tally = {k: [v.claim for v in verdicts if v.verdict == k]
             for k in (claims.SUPPORTED, claims.CONTRADICTED, claims.NOT_SHOWN)}
    return tables.verdict_lines(an.stats, an.threshold) + [
        "Claims of the articles: " + "; ".join(f"{k}: {', '.join(v) or 'none'}" for k, v in tally.items()) + "."]


def stats_rows(an: Analysis, verdicts: list[claims.Verdict] | None = None) -> list[dict]:
    """stats.csv rows with the report's own numbers added: per activation the diagnostics behind the claims
    (measured boundedness, RMS-gradient ratios, layer motion, unit counts, blow-ups), and on every row each
    claim's verdict, so that every number the report prints can be checked from the folder's files."""
    rows = stats.rows(an.stats, an.threshold, an.reference)
    verdicts = {f"claim {v.claim}": v.verdict for v in (checks(an) if verdicts is None else verdicts)}
    curved = _curve_task(an)
    shares = kink_shares(an)[0] if curved else {}
    for row in rows:
        act = row["activation"]
        if curved:  # claim D5's numbers (1-D tasks)
            row["kink_share_median"] = float(np.median(shares[act])) if shares.get(act) else None
        u = unit_counts(an, act)
        first, last = moves(an, act)
        kb, n = blowups(an, [act, *an.stat(act).same_as])
        row.update(bounded=analysis.bounded(act, an.stored.config.model.options.get(act, {})),
                   grad_rms_ratio_init=grad_ratio_init(an, act), grad_rms_ratio_training=grad_ratio_training(an, act),
                   rel_change_first=first, rel_change_last=last, blown_up=kb,
                   saturated_end=final_share(an, act, "saturated")[0], dead_end_share=final_share(an, act, "dead")[0],
                   **{k: getattr(u, k) if u else None for k in ("units", "born_dead", "died", "revived", "dead_end",
                                                                "negative_end")},
                   **_per_layer_counts(an, act), **verdicts)
    return rows


def _per_layer_counts(an: Analysis, act: str) -> dict[str, int]:
    """born_dead_L1, died_L1, ... : the unit story per hidden layer, summed over seeds."""
    runs = [u for u in an.units().get(act, []) if u.end is not None]
    out = {}
    for what in ("born_dead", "died", "revived", "negative_end"):
        for layer in range(an.hidden_layers()):
            out[f"{what}_L{layer + 1}"] = sum(u.count(what)[layer] for u in runs) if runs else None
    return out


# --- tables -----------------------------------------------------------------------------------------------

def ranking_markdown(an: Analysis) -> str:
    """The ranking with medians, intervals, effect sizes and the verdict against #1 (every number in stats.csv)."""
    has_test = any(s.test is not None for s in an.stats)
    head = ["#", "activation", "mean rank", "median", "95% CI of median", "mean", "std", "best loss (median)"] + (
        ["held-out median"] if has_test else []) + [f"epochs to {_g(an.threshold, 3)}", "ratio to #1 [95% CI]",
                                                    "wins vs #1", "p vs #1 (Holm)", "p equiv. (Holm)", "verdict",
                                                    "diverged"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in an.stats:
        name = f"`{s.activation}`" + "".join(f" = `{a}`" for a in s.same_as)
        cells = [str(s.rank), name, _g(s.mean_rank, 3), _g(s.final.median), f"[{_g(s.final.lo)}, {_g(s.final.hi)}]",
                 _g(s.final.mean), _g(s.final.std, 2), _g(s.best.median)]
        if has_test:
            cells.append(_g(s.test.median) if s.test else "-")
        ratio = "-" if math.isnan(s.ratio_vs_best) else (
            f"{s.ratio_vs_best:.3g} [{_g(s.ratio_lo, 3)}, {_g(s.ratio_hi, 3)}]")
        cells += ["never" if math.isinf(s.epochs_to_threshold) else f"{s.epochs_to_threshold:.0f}", ratio,
                  "-" if math.isnan(s.win_rate_vs_best) else f"{s.win_rate_vs_best:.0%}",
                  _g(s.p_vs_best, 2), _g(s.p_equivalent, 2), s.verdict, f"{s.diverged}/{s.runs}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def failures_markdown(an: Analysis) -> str:
    """Failure (and, for 1-D tasks, stuck) counts per activation with Wilson intervals."""
    one_d = an.reference is not None and math.isfinite(an.reference.monotone_loss)
    head = ["activation", "failed (diverged or >= var(y))", "95% Wilson"] + (["stuck", "95% Wilson"] if one_d else [])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in an.stats:
        lo, hi = inference.wilson(s.failed, s.runs)
        cells = [f"`{s.activation}`", f"{s.failed}/{s.runs}", f"[{_pct(lo)}, {_pct(hi)}]"]
        if one_d:
            lo, hi = inference.wilson(s.stuck, s.runs)
            cells += [f"{s.stuck}/{s.runs}", f"[{_pct(lo)}, {_pct(hi)}]"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def diagnostics_markdown(an: Analysis) -> str:
    """Per activation: measured boundedness, RMS-gradient ratios, layer motion, the unit story, saturation."""
    measured = "grad_norm_L1" in an.table
    head = ["activation", "bounded (measured)", "RMS grad L1/last at init", "during training", "rel. change L1",
            "rel. change last", "born dead", "died", "revived", "dead at end (worst seed)", "all-negative at end",
            "saturated at end"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in an.stats:
        act = s.activation
        u = unit_counts(an, act)
        first, last = moves(an, act)
        dead, worst = final_share(an, act, "dead")
        bounded = analysis.bounded(act, an.stored.config.model.options.get(act, {}))
        cells = [f"`{act}`", "-" if bounded is None else ("yes" if bounded else "no"), _g(grad_ratio_init(an, act), 2),
                 _g(grad_ratio_training(an, act), 2) if measured else "off", _g(first, 2), _g(last, 2)]
        cells += [str(x) for x in (u.born_dead, u.died, u.revived)] if u else ["-"] * 3
        elementwise = getattr(analysis.spec_of(act), "elementwise", False)  # softmax: no unit of its own
        cells += [f"{_pct(dead)} ({_pct(worst)})", str(u.negative_end) if u and elementwise else "-",
                  _pct(final_share(an, act, "saturated")[0])]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _ranking_notes(an: Analysis) -> list[str]:
    ov = an.overview
    notes = []
    for s in an.stats:
        if s.same_as:
            notes.append(f"- `{s.activation}` and {', '.join(f'`{a}`' for a in s.same_as)} have the same final loss "
                         "on every seed: the same function on this data, one row.")
    if ov.powerless:
        notes.append(f"- **Too few seeds for any significance.** With {ov.seeds} common seeds the "
                     f"smallest exact two-sided Wilcoxon p is 2/2^n = {ov.min_p:.3g}; Holm over {ov.comparisons} "
                     f"comparisons with #1 needs p <= {inference.ALPHA / max(ov.comparisons, 1):.3g} for the first: "
                     "at least "
                     f"{ov.seeds_needed} seeds. Nothing below is significant, and nothing can be.")
    cliques = "; ".join("{" + ", ".join(c) + "}" for c in ov.cliques) or "none"
    notes.append(f"- Friedman chi-square {_g(ov.friedman_chi2, 4)}, p {_g(ov.friedman_p, 3)} over {ov.seeds} seeds; "
                 f"Nemenyi critical difference {_g(ov.critical_difference, 3)} mean ranks; groups not separable by "
                 f"it: {cliques}. Nemenyi compares all pairs by mean ranks only and is more conservative than the "
                 "paired Wilcoxon against #1, which also weighs how much each seed differs: an activation can be "
                 "in #1's group here and still *worse* than #1 in the table.")
    notes.append("- #1 is chosen from these same seeds, so 'worse than #1' leans slightly optimistic; a difference "
                 "that matters should be confirmed on new seeds (`--seed`).")
    return notes



def _training_setup(cfg) -> str:
    """'Adam lr 0.001' or 'SGD (momentum 0.9) lr 0.01', with Adam's eps/betas and the initialisation where
    they are not the defaults."""
    t, m = cfg.train, cfg.model
    if t.optimizer == "sgd":
        text = f"SGD{f' (momentum {t.momentum:g})' if t.momentum else ''} lr {t.lr:g}"
    else:
        extra = [f"eps {t.eps:g}"] * (t.eps != 1e-8) + [f"betas {list(t.betas)}"] * (tuple(t.betas) != (0.9, 0.999))
        settings = ", ".join(extra)
        text = f"Adam{f' ({settings})' if extra else ''} lr {t.lr:g}"
    inits = [f"{m.init} weights"] * (m.init != "default") + [f"{m.init_bias} biases"] * (m.init_bias != "default")
    return text + (f", {' and '.join(inits)}" if inits else "")

def _setup_lines(an: Analysis) -> list[str]:
    """The folder's status and the experiment's setup, as Markdown lines."""
    cfg, status, env = an.stored.config, an.stored.status, an.stored.env
    seeds = max((s.runs for s in an.stats), default=0)
    ref = an.reference
    return [
        f"Folder `{an.stored.path.name}` — status **{status.get('status', 'unknown')}**"
        + (f" ({status.get('runs_done')} of {status.get('runs_total')} runs; {status.get('error')})"
           if status.get("status") != "complete" else "") + ".",
        "", "## Setup", "",
        f"- Net {'-'.join(map(str, cfg.model.sizes))}, activation after every hidden layer, linear output.",
        f"- Task `{cfg.data.task}`: {cfg.data.samples} points"
        + (f", {cfg.data.test_fraction:.0%} held out" if cfg.data.test_fraction else "")
        + f", data seed {cfg.data.seed}.",
        f"- {_training_setup(cfg)}, MSE, {cfg.train.epochs} epochs, batches of {cfg.train.batch_size}"
        f" ({'reshuffled every epoch' if cfg.train.shuffle else 'in order'}), {seeds} seeds per activation "
        f"(initial-weight seeds {cfg.train.seed}..{cfg.train.seed + seeds - 1}), engine {cfg.train.engine}.",
        f"- actlab {env.get('actlab', '?')}, torch {env.get('torch', '?')}, Python {env.get('python', '?')}, "
        f"device {env.get('device', '?')}.",
        f"- Replay: `actlab {status.get('command', 'compare')} --config {an.stored.path / 'config.yaml'}`.",
        f"- Task references: constant predictor (var(y)) {_g(ref.constant_loss if ref else math.nan)}, least "
        f"squares {_g(an.least_squares)}" + (f", best monotone fit {_g(ref.monotone_loss)}"
                                             if ref and math.isfinite(ref.monotone_loss) else "") + ".",
    ]


def study_markdown(ans: Answer) -> list[str]:
    """A grid's fair answer as Markdown lines: the rule, the tested ranking at each activation's chosen setting,
    and beside it the fixed-setting ranking and the robustness views (mean rank, expected loss over the grid)."""
    from actlab import studyrun

    f = ans.fair
    chosen = {r.activation: r for r in f.rows}
    shown = {s.activation: s for s in ans.shown_stats}
    shown |= {a: s for s in ans.shown_stats for a in s.same_as}
    loss = studyrun.LOSS_NAMES
    lines = ["## The fair answer: each activation at its own best setting", "",
             f"Grid: {', '.join(f'`{k}`' for k in ans.keys)}, {ans.settings} settings. Each activation's setting is "
             f"the one with the lowest median {loss[f.chosen_on]} over the **tuning seeds "
             f"{studyrun.seeds_text(f.split.tuning)}**; its {loss[f.reported_on]} is then read on the **evaluation "
             f"seeds {studyrun.seeds_text(f.split.evaluation)}**, which played no part in the choice (the test "
             "points are never used to choose). Against #1, paired by evaluation seed: the loss ratio and the exact "
             "Wilcoxon test, Holm-adjusted, and the equivalence test, as in the ranking below. Beside it: the rank "
             f"at the fixed setting ({studyrun.setting_text(ans.shown)}"
             + ("" if ans.fixed is not None else f"; {studyrun.NOT_OWN}")
             + f", every seed), and two views that involve no choice: the mean rank over the {ans.settings} settings "
             f"and the expected {loss[ans.robust_on]} over them (mean of the per-setting medians, every seed).", ""]
    head = ["#", "activation", "chosen setting", f"tuning median ({loss[f.chosen_on]})",
            f"evaluation median ({loss[f.reported_on]})", "95% CI", "ratio to #1", "p vs #1 (Holm)", "verdict",
            "diverged", "fixed-setting rank", "mean rank over grid", "expected loss over grid"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in ans.fair_stats:
        for act in (s.activation, *s.same_as):
            r = chosen[act]
            fixed = shown.get(act)
            lines.append("| " + " | ".join([
                str(s.rank), f"`{act}`", studyrun.setting_text(r.choice.setting), _g(r.choice.tuning_median),
                _g(r.median), f"[{_g(s.final.lo)}, {_g(s.final.hi)}]",
                "-" if math.isnan(s.ratio_vs_best) else f"{s.ratio_vs_best:.3g}", _g(s.p_vs_best, 2), s.verdict,
                f"{r.diverged}/{len(r.evaluation)}", str(fixed.rank) if fixed else "-",
                _g(ans.mean_ranks.get(act, math.nan), 3), _g(ans.expected.get(act, math.nan))]) + " |")
    lines += ["", "Rows are ordered by mean rank over the evaluation seeds; every number is in `study.csv`. The rest "
              "of this report is the experiment at the fixed setting.", ""]
    return lines


def build(an: Analysis, figures: dict[str, Path], study: Answer | None = None,
          verdicts: list[claims.Verdict] | None = None) -> str:
    """The whole report as Markdown; figures are linked by file name (they sit next to report.md). Over a grid
    (``study``) it leads with the fair answer; the rest is the experiment at the fixed setting. ``verdicts``:
    ``checks(an)``, when the caller has them already."""
    cfg = an.stored.config
    verdicts = checks(an) if verdicts is None else verdicts
    ref = an.reference
    lines = [f"# actlab report: {cfg.output.name}", ""]
    if study is not None:
        from actlab import studyrun

        lines += [f"> {line}  " for line in studyrun.headline(study) if line] + [">  "]
    lines += [f"> {line}  " for line in headline(an, verdicts) if line] + [""]
    if study is not None:
        lines += study_markdown(study)
    lines += _setup_lines(an) + [
        "", "## Ranking", "",
        "Final loss on the full training data, over seeds. Order: mean rank over the seeds every activation "
        "finished (rank 1 = lowest loss of that seed; diverged runs rank last), ties by median. The interval is "
        "the distribution-free 95% interval of the median (order statistics; none with fewer than 6 seeds). "
        "Against #1, paired by seed (every activation of a seed starts from the same linear weights and sees the "
        "same data): the loss ratio exp(Hodges-Lehmann shift of log losses) with a bootstrap (BCa, 9999 "
        "resamples, fixed seed) interval; the exact Wilcoxon signed-rank test on log ratios, Holm-adjusted over "
        f"the comparisons with #1 (*worse*/*better*); otherwise an equivalence test (TOST, ratio within "
        f"{1 / (1 + stats.EQUIVALENCE_MARGIN):.3f}..{1 + stats.EQUIVALENCE_MARGIN:g}, Holm-adjusted): *equivalent*, "
        f"else *not separable*. 'epochs to' is the median first epoch at or below {_g(an.threshold, 3)}, "
        f"{stats.THRESHOLD_FRACTION:.0%} of var(y)"
        + (f" capped at {stats.PLATEAU_SHARE:.0%} of the monotone fit's loss" if ref and
           math.isfinite(ref.monotone_loss) else "") + " (set by the task, not by the runs).",
        "", ranking_markdown(an), "", *_ranking_notes(an), "",
        "## Failures", "",
        "Runs that diverged or ended no better than predicting the mean (final loss >= var(y))"
        + (f"; stuck: final loss >= {stats.STUCK_FRACTION:g} x the best monotone fit's (no better than a function "
           "monotone in x, which is all one working unit of a monotone activation can give)"
           if ref and math.isfinite(ref.monotone_loss) else "") + ". Wilson 95% intervals.",
        "", failures_markdown(an), "",
        "## What the data says", "",
    ]
    for paragraph in claims_markdown(verdicts):
        lines += [paragraph, ""]
    lines += ["## Why: diagnostics per activation", "",
              "At initialisation (epoch 0, recomputed from the seed) and at the end (weights.pt). RMS grad: "
              "root-mean-square of the full-data MSE gradient over a layer's parameters, first layer over last "
              "(well below 1: vanishing gradients; unlike the norm, not inflated by a layer's size); during "
              "training: median over seeds of the median over the measured epochs (every epoch early on, sparser "
              "later: train.diagnostics_dense). Relative change |W_end - W_0| / |W_0|: how "
              "far a layer's weights moved. Units, summed over seeds: dead at initialisation, died (alive at "
              "initialisation, dead at the end), revived; all-negative: pre-activation <= 0 on every input "
              "(for leaky variants: alive only through the leak). Bounded: |f| stops growing on [-1e4, 1e4].", ""]
    if "grad_norm_L1" not in an.table:
        lines += ["Per-epoch diagnostics not measured: this experiment ran with train.diagnostics off (losses "
                  "only); the columns at initialisation and at the end come from the saved weights.", ""]
    lines += [diagnostics_markdown(an), "", "## Figures", ""]
    for name, path in figures.items():
        lines += [f"### {FIGURE_TITLES.get(name, name)}", "", f"![{FIGURE_TITLES.get(name, name)}]({path.name})", ""]
    lines += ["## Definitions", "",
              "- *Dead unit*: its activation's derivative is exactly zero on every training input (for the ReLU "
              "family: it outputs 0 everywhere), so its incoming weights get no gradient.",
              "- *Saturated unit*: |derivative| below 1% of the activation's maximum on at least 90% of training "
              "inputs.",
              f"- *Blew up* (claim C4): diverged, or final loss above {claims.BLOWUP:g}x the larger of its initial "
              "loss and var(y).", ""]
    return "\n".join(lines)
