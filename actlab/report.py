"""report.md: the setup, the ranking with intervals, the figures, and what the data says about each claim.

Each claim of ARTICLES.md §C is checked against the measured numbers and stated plainly — including when
the data does not show it, or when the experiment could not test it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from actlab import activations
from actlab.analysis import Analysis

FIGURE_TITLES = {
    "loss_curves": "Training loss per epoch",
    "final_loss": "Final loss per activation (every seed)",
    "gradient_norms": "Gradient norms: first vs last layer",
    "dead_units": "Dead units per hidden layer",
    "fits": "Fitted curves",
}


def _g(value: float, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.0f}%"


def ranking_markdown(an: Analysis) -> str:
    has_test = any(s.test is not None for s in an.stats)
    head = ["rank", "activation", "mean", "95% CI", "median", "std", "best loss"] + (
        ["held-out"] if has_test else []) + ["epochs to " + _g(an.threshold, 3), "wins vs #1", "p vs #1", "diverged"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ranks = [s.rank for s in an.stats]
    for act in an.activations:
        s = an.stat(act)
        tie = "=" if ranks.count(s.rank) > 1 else ""
        cells = [f"{s.rank}{tie}", f"`{act}`", _g(s.final.mean), f"[{_g(s.final.lo)}, {_g(s.final.hi)}]",
                 _g(s.final.median), _g(s.final.std, 2), _g(s.best.mean)]
        if has_test:
            cells.append(_g(s.test.mean) if s.test else "-")
        cells += ["never" if math.isinf(s.epochs_to_threshold) else f"{s.epochs_to_threshold:.0f}",
                  "-" if math.isnan(s.win_rate_vs_best) else f"{s.win_rate_vs_best:.0%}",
                  "-" if math.isnan(s.p_vs_best) else f"{s.p_vs_best:.2g}", f"{s.diverged}/{s.runs}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _median_ratio(an: Analysis, act: str) -> float:
    """Median over seeds and epochs of |grad layer 1| / |grad last layer|."""
    first = an.per_run("grad_norm_L1").get(act, {})
    last = an.per_run(f"grad_norm_L{an.layers()}").get(act, {})
    ratios = [a / b for seed in first for a, b in zip(first[seed], last.get(seed, [])) if b > 0 and a == a]
    return float(np.median(ratios)) if ratios else math.nan


def _dead_share(an: Analysis, act: str, kind: str = "dead") -> tuple[float, float]:
    """(mean over seeds, worst seed) of the final share of ``kind`` (dead | saturated) hidden units, over all
    hidden layers."""
    per_seed = [an.final(f"{kind}_L{layer}", act) for layer in range(1, an.hidden_layers() + 1)]
    if not per_seed or not len(per_seed[0]) or all(np.isnan(v).all() for v in per_seed):
        return math.nan, math.nan  # no unit states (softmax), or no finished run
    sizes = np.array(an.stored.config.model.sizes[1:-1], dtype=float)
    stacked = np.array(per_seed)  # (layers, seeds)
    weighted = (stacked * sizes[:, None]).sum(axis=0) / sizes.sum()  # share of all hidden units
    return float(np.nanmean(weighted)), float(np.nanmax(weighted))


def diagnostics_markdown(an: Analysis) -> str:
    """Per activation, the measures behind the ranking: gradient ratio, dead and saturated units at the end."""
    if "grad_norm_L1" not in an.table:
        return "Not measured: this experiment ran with train.diagnostics off (losses only)."
    rows = ["| activation | layer-1 / last-layer gradient | dead units at the end (worst seed) | saturated units |",
            "|---|---|---|---|"]
    for act in an.activations:
        dead, worst = _dead_share(an, act)
        saturated, _ = _dead_share(an, act, "saturated")
        ratio = _median_ratio(an, act)
        rows.append(f"| `{act}` | {_g(ratio, 2)} | {_pct(dead)} ({_pct(worst)}) | {_pct(saturated)} |")
    return "\n".join(rows)


def claims(an: Analysis) -> list[str]:
    """One paragraph per claim of ARTICLES.md §C, with the measured numbers and a plain verdict."""
    acts = an.activations
    present = set(acts)
    out = []
    best = acts[0] if acts else None
    ls = an.least_squares

    # C.1 linear collapse
    if "identity" in present:
        s = an.stat("identity")
        lowest = float(np.nanmin(an.final("full_loss", "identity"))) if s.final.n else math.nan
        ratio = s.final.mean / ls
        if lowest < ls * (1 - 1e-4):
            verdict = "below the linear optimum, which a linear map cannot do: this contradicts the claim"
        elif ratio <= 1.05:
            gap = "to 0.1%" if ratio - 1 < 1e-3 else f"within {100 * (ratio - 1):.1f}%"
            verdict = f"behaves as one linear map: as good as linear regression ({gap}), never better"
        else:
            verdict = ("still above the linear optimum (not converged): consistent with the claim, which is an "
                       "upper limit, but more epochs or a larger lr would show it more sharply")
        text = (f"**1. Without a non-linearity the net is one linear map.** identity: final loss {_g(s.final.mean)} "
                f"vs least-squares optimum {_g(ls)} on the same data (ratio {ratio:.3f}) — {verdict}.")
        if best and best != "identity" and an.stat(best).final.mean < ls:
            text += (f" With a non-linearity, {best} reaches {_g(an.stat(best).final.mean)}, "
                     f"{ls / an.stat(best).final.mean:.1f}x below it.")
        out.append(text)
    else:
        out.append(f"**1. Linear collapse:** not tested — identity is not in this comparison (least-squares "
                   f"optimum on this data: {_g(ls)}).")

    measured = "grad_norm_L1" in an.table
    off = "not measured — this experiment ran with train.diagnostics off (losses only)"
    # C.2 vanishing gradients
    ref = "relu" if "relu" in present else None
    sat = [a for a in ("sigmoid", "tanh") if a in present]
    if sat and not measured:
        out.append(f"**2. Vanishing gradients:** {off}.")
    elif sat:
        ref_ratio = _median_ratio(an, ref) if ref else math.nan
        parts = []
        for act in sat:
            r = _median_ratio(an, act)
            sat_share = np.nanmean([np.nanmean(an.final(f"saturated_L{layer}", act))
                                    for layer in range(1, an.hidden_layers() + 1)])
            if not ref:
                verdict = "no relu to compare with"
            elif math.isfinite(r) and math.isfinite(ref_ratio) and r < ref_ratio / 2:
                verdict = "supported"
            else:
                verdict = "not visible here"
            parts.append(f"{act}: first-layer gradient {_fold(r)} the last layer's, {_pct(sat_share)} of hidden "
                         f"units saturated at the end — {verdict}")
        if ref:
            parts.append(f"relu, for reference: {_fold(ref_ratio)} the last layer's")
        out.append("**2. Sigmoid and tanh saturate: vanishing gradients.** " + "; ".join(parts) +
                   " (median over seeds and epochs). Where few units are saturated, a smaller first-layer gradient "
                   "comes from the derivative's ceiling (sigmoid' <= 0.25) compounding layer by layer.")
    else:
        out.append("**2. Vanishing gradients:** not tested — neither sigmoid nor tanh is in this comparison.")

    # C.3 dying relu
    if "relu" in present and not measured:
        out.append(f"**3. Dying ReLU:** {off}.")
    elif "relu" in present:
        mean, worst = _dead_share(an, "relu")
        leaky = [a for a in ("leaky_relu", "prelu", "elu") if a in present]
        leaky_text = ", ".join(f"{a} {_pct(_dead_share(an, a)[0])}" for a in leaky)
        if mean > 0:
            verdict = ("leaky variants keep every unit alive: supported" if leaky and
                       all(_dead_share(an, a)[1] == 0 for a in leaky) else "units die, as claimed")
        else:
            verdict = "no relu unit died in this experiment: the claim is not visible here"
        out.append(f"**3. ReLU units can die.** relu: {_pct(mean)} of hidden units dead at the end (worst seed "
                   f"{_pct(worst)})" + (f"; {leaky_text}" if leaky else "") + f" — {verdict}.")
    else:
        out.append("**3. Dying ReLU:** not tested — relu is not in this comparison.")

    # C.4 bounded activations vs exploding values
    bounded = [s for s in an.stats if "saturating" in _tags(s.activation)]
    unbounded = [s for s in an.stats if "saturating" not in _tags(s.activation)]
    div_b, div_u = sum(s.diverged for s in bounded), sum(s.diverged for s in unbounded)
    if div_b + div_u == 0:
        out.append(f"**4. Bounded activations help against exploding values.** No run diverged at lr "
                   f"{an.stored.config.train.lr:g}: nothing to see in this experiment (a much larger --lr provokes "
                   "it).")
    else:
        n_b, n_u = sum(s.runs for s in bounded), sum(s.runs for s in unbounded)
        verdict = ("bounded activations diverged less often: supported" if n_b and div_b / n_b < div_u / max(n_u, 1)
                   else "bounded activations did not diverge less often here")
        out.append(f"**4. Bounded activations help against exploding values.** Diverged: {div_u} of {n_u} runs "
                   f"with unbounded activations, {div_b} of {n_b} with bounded ones — {verdict}.")

    # C.5 selection advice
    if best:
        tied = [s.activation for s in an.stats if s.tied_with_best]
        text = (f"**5. Selection advice.** Best: {best} (final loss {_g(an.stat(best).final.mean)}); not separable "
                f"from it over these seeds: {', '.join(a for a in tied if a != best) or 'none'}.")
        if "relu" in present:
            s = an.stat("relu")
            text += (" 'ReLU first': relu ranks " + f"#{s.rank} of {len(acts)}" +
                     (", tied with the best — supported." if s.tied_with_best else
                      f", significantly behind {best} (p {_g(s.p_vs_best, 2)}) — not supported here."))
        if "sigmoid" in present:
            s = an.stat("sigmoid")
            text += (f" 'Avoid sigmoid in hidden layers': sigmoid ranks #{s.rank} of {len(acts)}" +
                     (f", significantly worse than {best} (p {_g(s.p_vs_best, 2)}) — supported." if not s.tied_with_best
                      else ", not separable from the best — not supported here."))
        out.append(text)

    dying = [(a, _dead_share(an, a)[0]) for a in acts if a != "relu" and measured]
    dying = [(a, share) for a, share in dying if share >= 0.2]
    if dying:
        out.append("**Also seen: dead units.** " + "; ".join(f"{a}: {_pct(share)} of hidden units dead at the end"
                                                          for a, share in dying) +
                   ". A dead unit passes no gradient to its inputs; a zero band around 0 (softshrink, hardshrink) "
                   "or a flat region (relu6, hardtanh) can kill units just as relu's negative half does.")

    if any(s.test is not None for s in an.stats):
        best_test = min((s for s in an.stats if s.test is not None), key=lambda s: _inf(s.test.mean))
        out.append(f"**Generalisation.** Lowest held-out loss: {best_test.activation} ({_g(best_test.test.mean)}; "
                   f"its training loss {_g(best_test.final.mean)}). The ranking on held-out data can differ from "
                   "the training ranking: memorising is not generalising.")
    return out


def _fold(ratio: float) -> str:
    if not math.isfinite(ratio) or ratio <= 0:
        return "n/a"
    if 0.9 <= ratio <= 1.1:
        return "about the size of"
    return f"{1 / ratio:.1f}x smaller than" if ratio < 1 else f"{ratio:.1f}x the size of"


def _inf(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def _tags(name: str) -> Sequence[str]:
    try:
        return activations.resolve(name, imports=False).tags
    except activations.ActivationError:
        return ()


def build(an: Analysis, figures: dict[str, Path]) -> str:
    """The whole report as Markdown; figures are linked by file name (they sit next to report.md)."""
    cfg = an.stored.config
    status = an.stored.status
    env = an.stored.env
    seeds = max((s.runs for s in an.stats), default=0)
    lines = [
        f"# actlab report: {cfg.output.name}",
        "",
        f"Folder `{an.stored.path.name}` — status **{status.get('status', 'unknown')}**"
        + (f" ({status.get('runs_done')} of {status.get('runs_total')} runs; {status.get('error')})"
           if status.get("status") != "complete" else "")
        + ".",
        "",
        "## Setup",
        "",
        f"- Net {'-'.join(map(str, cfg.model.sizes))}, activation after every hidden layer, linear output.",
        f"- Task `{cfg.data.task}`: {cfg.data.samples} points"
        + (f", {cfg.data.test_fraction:.0%} held out" if cfg.data.test_fraction else "")
        + f", data seed {cfg.data.seed}.",
        f"- Adam lr {cfg.train.lr:g}, MSE, {cfg.train.epochs} epochs, batches of {cfg.train.batch_size}"
        f" ({'reshuffled every epoch' if cfg.train.shuffle else 'in order'}), {seeds} seeds per activation "
        f"(initial-weight seeds {cfg.train.seed}..{cfg.train.seed + seeds - 1}), engine {cfg.train.engine}.",
        f"- actlab {env.get('actlab', '?')}, torch {env.get('torch', '?')}, Python {env.get('python', '?')}, "
        f"device {env.get('device', '?')}.",
        f"- Replay: `actlab {status.get('command', 'compare')} --config {an.stored.path / 'config.yaml'}`.",
        "",
        "## Ranking",
        "",
        "Final loss on the full training data, over seeds. Rank = 1 + the number of activations that beat it "
        "significantly (paired Wilcoxon signed-rank over seeds, p < 0.05, uncorrected); equal ranks (=) are "
        "ties the evidence does not separate. Wins and p are against #1, paired by seed (every activation of a "
        "seed starts from the same linear weights and sees the same data). 'epochs to' is the median number of "
        "epochs to reach half the typical first-epoch loss.",
        "",
        ranking_markdown(an),
        "",
        f"Least-squares optimum of a linear model on the same data: {_g(an.least_squares)}.",
        "",
        "## What the data says",
        "",
    ]
    for paragraph in claims(an):
        lines += [paragraph, ""]
    lines += ["## Why: diagnostics per activation", "",
              "Median over seeds and epochs of the first layer's gradient norm divided by the last layer's "
              "(well below 1: vanishing gradients), and the share of hidden units dead or saturated after the "
              "last epoch (mean over seeds; softmax mixes units, so '-').", "", diagnostics_markdown(an), "",
              "## Figures", ""]
    for name, path in figures.items():
        lines += [f"### {FIGURE_TITLES.get(name, name)}", "", f"![{FIGURE_TITLES.get(name, name)}]({path.name})",
                  "", f"Also as [{path.stem}.svg]({path.stem}.svg).", ""]
    lines += ["## Definitions", "",
              "- *Dead unit*: its activation's derivative is exactly zero on every training input (for the ReLU "
              "family: it outputs 0 everywhere), so its incoming weights get no gradient.",
              "- *Saturated unit*: |derivative| below 1% of the activation's maximum on at least 90% of training "
              "inputs.",
              "- *Gradient norm of layer l*: Euclidean norm of the full-data MSE gradient for that layer's weight "
              "and bias, once per epoch.", ""]
    return "\n".join(lines)
