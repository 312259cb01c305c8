"""The critical-difference diagram (Demšar 2006): mean ranks on an axis, cliques the test does not separate.

Each activation is a tick at its mean rank over the seeds (1 = lowest loss on a seed), labelled on the
left (better half) or right; a thick bar joins activations whose mean ranks differ by less than the
Nemenyi critical difference (after a significant Friedman test; otherwise one bar joins them all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from actlab import plots, stats  # noqa: E402


def cd_diagram(act_stats: Sequence[stats.ActivationStats], ov: stats.Overview) -> Figure | None:
    """The diagram, or None when mean ranks are undefined (no seed common to every activation)."""
    items = [(s.activation + (f" (= {', '.join(s.same_as)})" if s.same_as else ""), s.mean_rank)
             for s in act_stats if math.isfinite(s.mean_rank)]
    if len(items) < 2:
        return None
    k = len(items)
    half = math.ceil(k / 2)
    height = 1.2 + 0.22 * half + 0.18 * len(ov.cliques)
    fig, ax = plt.subplots(figsize=(9.0, height))
    pad = 0.4 * k  # room for the labels outside the axis, left and right
    ax.set_xlim(0.7 - pad, k + 0.3 + pad)
    ax.set_ylim(-(half + 1 + 0.5 * len(ov.cliques)), 1.6)
    ax.axis("off")
    ax.hlines(0, 1, k, color="black", linewidth=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.15, color="black", linewidth=0.8)
        ax.text(r, 0.3, str(r), ha="center", fontsize=7)
    for i, (name, rank) in enumerate(items):
        left = i < half
        row = -(i if left else k - 1 - i) - 1
        end = 0.7 if left else k + 0.3
        ax.plot([rank, rank, end], [0, row, row], color="0.3", linewidth=0.7)
        ax.text(end + (-0.1 if left else 0.1), row, f"{name} {rank:.2f}" if left else f"{rank:.2f} {name}",
                ha="right" if left else "left", va="center", fontsize=7)
    ranks = {name: rank for name, rank in items}
    labels = {s.activation: name for s, (name, _) in zip(
        [s for s in act_stats if math.isfinite(s.mean_rank)], items)}
    for j, clique in enumerate(ov.cliques):
        xs = [ranks[labels[a]] for a in clique if a in labels]
        if len(xs) > 1:
            y = -(half + 0.6 + 0.5 * j) if k > 2 else -1.5 - 0.5 * j
            ax.hlines(y, min(xs) - 0.05, max(xs) + 0.05, color="C3", linewidth=3)
    cd = ov.critical_difference
    if math.isfinite(cd) and cd < k:
        ax.hlines(1.2, 1, 1 + cd, color="C3", linewidth=1.5)
        ax.text(1 + cd / 2, 1.3, f"CD = {cd:.2f}", ha="center", fontsize=7)
    ax.set_title(f"Mean rank over {ov.seeds} seeds (1 = best); Friedman p = {ov.friedman_p:.2g}; red bars: not "
                 "separable (Nemenyi)", fontsize=8)
    return fig


def save(act_stats: Sequence[stats.ActivationStats], ov: stats.Overview, folder: Path, svg: bool = False
         ) -> dict[str, Path]:
    """critical_difference.png (with ``svg``, .svg too) in ``folder``; name -> PNG path ({} when there is
    nothing to draw)."""
    fig = cd_diagram(act_stats, ov)
    return {} if fig is None else {"critical_difference": plots.save(fig, folder, "critical_difference", svg)[0]}
