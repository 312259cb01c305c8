"""Figures of a grid experiment: sensitivity to the grid (learning rate first) and, over depth, the early-layer
gradient signal. Small multiples, one panel per activation, so 23 activations stay readable.

Pure drawing over numbers ``actlab.study`` and ``actlab.studyrun`` computed; ``save_all`` writes the files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from actlab import plots, study
from actlab.studyrun import LOSS_NAMES, Answer

BEST = dict(marker="*", color="C3", markersize=11, linestyle="none", gid="best")


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def sensitivity_key(keys: Sequence[str]) -> str:
    """The grid key the sensitivity figure runs along: the learning rate when it is on the grid."""
    return "train.lr" if "train.lr" in keys else keys[0]


def sensitivity(rows: Sequence[Mapping[str, Any]], key: str, column: str, order: Sequence[str],
                chosen: Mapping[str, Any] | None = None) -> Figure | None:
    """Loss against ``key`` per activation (panels in ``order``): median over seeds with the 25-75% band, each
    activation's ``chosen`` value (the fair ranking's, from the tuning seeds; default: the lowest median)
    starred; other grid keys pooled. None if nothing finite to draw."""
    curves = study.sensitivity(rows, key, column)
    acts = [a for a in order if a in curves] + [a for a in curves if a not in order]
    finite = [p[m] for a in acts for p in curves[a] for m in ("q1", "median", "q3")
              if math.isfinite(p[m]) and p[m] > 0]
    if not finite:
        return None
    values = [p[key] for p in curves[acts[0]]]
    numeric = _numeric(values)
    log_x = numeric and min(values) > 0 and max(values) / min(values) >= 10
    legend = [Line2D([], [], color="C0", label="median over seeds"), Patch(color="C0", alpha=0.25, label="25-75%"),
              Line2D([], [], **{k: v for k, v in BEST.items() if k != "gid"},
                     label="chosen on the tuning seeds" if chosen else "lowest median"),
              Line2D([], [], **{k: v for k, v in plots.DIVERGED.items() if k != "gid"}, label="median diverged")]
    fig, axes = plots._grid(len(acts), f"{LOSS_NAMES.get(column, column)} against {key}, every seed "
                            "(other grid keys pooled)", ylabel=LOSS_NAMES.get(column, column).split(" (")[0],
                            xlabel=key, legend=legend)
    top = max(finite)
    for ax, act in zip(axes, acts):
        pts = curves[act]
        x = np.array([p[key] for p in pts], dtype=float) if numeric else np.arange(len(pts), dtype=float)
        med, q1, q3 = (np.array([p[m] for p in pts], dtype=float) for m in ("median", "q1", "q3"))
        ok = np.isfinite(med)
        ax.fill_between(x, np.where(np.isfinite(q1), q1, np.nan), np.where(np.isfinite(q3), q3, top),
                        color="C0", alpha=0.25, linewidth=0)
        ax.plot(x[ok], med[ok], color="C0", marker="o", markersize=3)
        if (~ok).any():
            ax.plot(x[~ok], np.full((~ok).sum(), top), **plots.DIVERGED)
        if chosen and act in chosen:
            best = next(i for i, p in enumerate(pts) if repr(p[key]) == repr(chosen[act]))
        else:
            best = int(np.nanargmin(np.where(ok, med, np.inf))) if ok.any() else None
        if best is not None:
            ax.plot([x[best]], [med[best] if ok[best] else top], **BEST)
        ax.set_title(act, fontsize=9)
        _log_y(ax)
        if log_x:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(x, [str(p[key]) for p in pts], rotation=45, fontsize=6)
    return fig


def depth_gradient(signal: Sequence[Mapping[str, Any]], order: Sequence[str]) -> Figure | None:
    """RMS gradient of layer 1 / last layer against the number of hidden layers, per activation: median over
    runs at initialisation (solid) and at the end (dashed), 25-75% band at initialisation. None without data."""
    acts = [a for a in order if any(s["activation"] == a for s in signal)]
    if not acts:
        return None
    legend = [Line2D([], [], color="C0", marker="o", label="at initialisation (median)"),
              Patch(color="C0", alpha=0.25, label="25-75% at initialisation"),
              Line2D([], [], color="C1", linestyle="--", marker=".", label="after training (median)")]
    fig, axes = plots._grid(len(acts), "Early-layer gradient signal: per-parameter RMS gradient of the first layer "
                            "over the last layer's, against depth (1 = no loss of signal)",
                            ylabel="RMS grad L1 / last", xlabel="hidden layers", legend=legend)
    for ax, act in zip(axes, acts):
        mine = [s for s in signal if s["activation"] == act]
        depths = sorted({s["depth"] for s in mine})
        for when, style in (("init", dict(color="C0", marker="o", markersize=3)),
                            ("end", dict(color="C1", linestyle="--", marker=".", markersize=3))):
            q = [np.nanpercentile([s[when] for s in mine if s["depth"] == d] or [np.nan], [25, 50, 75])
                 for d in depths]
            q = np.array(q, dtype=float)
            ax.plot(depths, q[:, 1], **style)
            if when == "init":
                ax.fill_between(depths, q[:, 0], q[:, 2], color="C0", alpha=0.25, linewidth=0)
        ax.axhline(1.0, color="0.6", linewidth=0.8)
        ax.set_title(act, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _log_y(ax)
    return fig


def _log_y(ax) -> None:
    """A log y axis with short plain tick labels (0.05, 1.2), major and minor: a narrow range still reads."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))

    def minor(v: float, _: int) -> str:  # labelled only when the axis spans less than a decade (few majors)
        lo, hi = ax.get_ylim()
        return f"{v:.2g}" if lo > 0 and hi / lo < 10 else ""

    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def save_all(ans: Answer, rows: Sequence[Mapping[str, Any]], signal: Sequence[Mapping[str, Any]],
             folder: Path, svg: bool = False) -> dict[str, Path]:
    """sensitivity.png (and, over depth, depth_gradient.png) in ``folder`` (with ``svg``, SVGs too); name -> PNG
    path."""
    order = [s.activation for s in ans.fair_stats] + [a for s in ans.fair_stats for a in s.same_as]
    out = {}
    key = sensitivity_key(ans.keys)
    chosen = {r.activation: r.choice.setting[key] for r in ans.fair.rows}
    figures = {"sensitivity": sensitivity(rows, key, ans.robust_on, order, chosen),
               "depth_gradient": depth_gradient(signal, order) if signal else None}
    for name, fig in figures.items():
        if fig is not None:
            out[name] = plots.save(fig, folder, name, svg)[0]
    return out

