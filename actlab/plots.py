"""Figures of an experiment (matplotlib, written as PNG and SVG): the pictures behind the numbers.

Every figure is one function returning a ``Figure``; ``save_all`` writes them into the experiment folder.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe on CI and in worker processes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import LogLocator, NullLocator  # noqa: E402

from actlab import activations  # noqa: E402
from actlab.analysis import Analysis, fitted_curves, target_curve  # noqa: E402
from actlab.devices import available_cores  # noqa: E402

COLUMNS = 6


def _grid(n: int, title: str, *, sharey: bool = True) -> tuple[Figure, list[plt.Axes]]:
    cols = min(COLUMNS, max(1, n))
    rows = math.ceil(n / cols)
    height = 2.0 * rows + 0.7
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, height), sharex=True, sharey=sharey, squeeze=False)
    # Fixed margins, not a layout engine: with dozens of panels, constrained layout costs seconds per figure.
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.45 / height + 0.02, top=1 - 0.55 / height,
                        wspace=0.12, hspace=0.38)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    for ax in flat[:n]:
        ax.tick_params(labelsize=7)
        ax.label_outer()  # tick labels on the outer panels only: less to lay out and draw
    fig.suptitle(title, fontsize=10)
    return fig, flat[:n]


def _log_y(ax: plt.Axes) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(numticks=4))
    ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks on every panel make drawing slow


def _band(ax: plt.Axes, band, **style) -> None:
    line = ax.plot(band.epochs, band.median, **style)[0]
    ax.fill_between(band.epochs, band.lo, band.hi, color=line.get_color(), alpha=0.25, linewidth=0)


def loss_curves(an: Analysis) -> Figure:
    """Full-training-data loss per epoch: median over seeds, 25-75% band; the best activation for reference."""
    acts = an.activations
    cfg = an.stored.config
    fig, axes = _grid(len(acts), f"Training loss per epoch ({cfg.data.task}; median and 25-75% of "
                                 f"{max(s.runs for s in an.stats)} seeds; dashed: #1, dotted: least squares)")
    best = an.band("full_loss", acts[0])
    for ax, act in zip(axes, acts):
        band = an.band("full_loss", act)
        if best is not None and act != acts[0]:
            ax.plot(best.epochs, best.median, "--", color="0.6", linewidth=1)
        if band is not None:
            _band(ax, band, color="C0", linewidth=1.5)
        ax.axhline(an.least_squares, color="C3", linestyle=":", linewidth=1)
        _log_y(ax)
        ax.set_title(f"#{an.stat(act).rank} {act}", fontsize=9)
    for ax in axes[-COLUMNS:]:
        ax.set_xlabel("epoch")
    return fig


def final_losses(an: Analysis) -> Figure:
    """Distribution over seeds of the final loss, one row per activation, best on top."""
    acts = an.activations
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(acts) + 1.4), layout="constrained")  # one axes: cheap
    data = [an.final("full_loss", a) for a in acts]
    data = [d[np.isfinite(d)] if len(d) else d for d in data]
    positions = np.arange(len(acts))[::-1]
    ax.boxplot([d if len(d) else [np.nan] for d in data], positions=positions, orientation="horizontal", widths=0.6,
               showfliers=False)
    for pos, d in zip(positions, data):
        jitter = np.linspace(-0.15, 0.15, len(d)) if len(d) > 1 else np.zeros(len(d))
        ax.plot(d, pos + jitter, "o", color="C0", markersize=3, alpha=0.7)
    ax.axvline(an.least_squares, color="C3", linestyle=":", label="least-squares optimum (linear model)")
    ax.set_yticks(positions, [f"#{an.stat(a).rank} {a}" for a in acts])
    ax.set_xscale("log")
    ax.set_xlabel("final loss on the full training data (each dot: one seed)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Final loss per activation")
    return fig


def gradient_norms(an: Analysis) -> Figure | None:
    """First-layer (solid) and last-layer (dashed) gradient norm per epoch: vanishing gradients show as a gap."""
    if "grad_norm_L1" not in an.table:
        return None  # run with train.diagnostics off
    acts = an.activations
    last = an.layers()
    fig, axes = _grid(len(acts), f"Gradient norm of layer 1 (solid) and layer {last} (dashed), median over seeds")
    for ax, act in zip(axes, acts):
        first_band, last_band = an.band("grad_norm_L1", act), an.band(f"grad_norm_L{last}", act)
        if first_band is not None:
            _band(ax, first_band, color="C0")
        if last_band is not None:
            ax.plot(last_band.epochs, last_band.median, "--", color="C1")
        _log_y(ax)
        ax.set_title(act, fontsize=9)
    for ax in axes[-COLUMNS:]:
        ax.set_xlabel("epoch")
    return fig


def dead_units(an: Analysis) -> Figure | None:
    """Share of dead units per hidden layer per epoch (median over seeds)."""
    acts = [a for a in an.activations if an.band("dead_L1", a) is not None]
    if not acts:
        return None  # softmax only, or train.diagnostics off
    title = "Dead units (no gradient on any training input) per hidden layer, median over seeds"
    fig, axes = _grid(len(acts), title)
    for ax, act in zip(axes, acts):
        for layer in range(1, an.hidden_layers() + 1):
            band = an.band(f"dead_L{layer}", act)
            if band is not None:
                ax.plot(band.epochs, 100 * band.median, label=f"layer {layer}")
        ax.set_ylim(-3, 103)
        ax.set_title(act, fontsize=9)
    if acts:
        axes[0].legend(fontsize=7)
        axes[0].set_ylabel("% dead")
    return fig


def fits(an: Analysis) -> Figure | None:
    """For 1-D tasks: the target against every seed's fit (best seed bold), one panel per activation."""
    curves = fitted_curves(an.stored)
    if not curves:
        return None
    acts = [a for a in an.activations if a in curves]
    x, y = target_curve(an.stored)
    final = {row["run"]: row["final_loss"] for row in an.stored.summary}
    fig, axes = _grid(len(acts), f"Fits of the {an.stored.config.data.task} target (black); each seed thin, "
                                 "the best seed bold")
    for ax, act in zip(axes, acts):
        ax.plot(x, y, color="black", linewidth=2)
        runs = [r["run"] for r in an.stored.summary if r["activation"] == act]
        best = min(runs, key=lambda r: final.get(r, math.inf) if math.isfinite(final.get(r, math.inf)) else math.inf)
        for run, (gx, gy) in zip(runs, curves[act]):
            bold = run == best
            ax.plot(gx, gy, color="C1" if bold else "C0", linewidth=2 if bold else 0.7, alpha=1 if bold else 0.5)
        ax.set_ylim(float(y.min()) - 0.6, float(y.max()) + 0.6)
        ax.set_title(act, fontsize=9)
    return fig


def activation_gallery(names: Sequence[str] | None = None) -> Figure:
    """Every registry activation (solid) and its derivative from autograd (dashed) on [-4, 4]."""
    names = list(names or activations.names())
    fig, axes = _grid(len(names), "Activations (solid) and their derivatives from autograd (dashed)")
    x = torch.linspace(-4, 4, 801, requires_grad=True)
    for ax, name in zip(axes, names):
        spec = activations.resolve(name)
        module = spec.build()
        if spec.elementwise:
            y = module(x)
        else:  # softmax over two units [x, 0]: its first output, which is sigmoid(x) (ARTICLES.md §B)
            y = module(torch.stack([x, torch.zeros_like(x)], dim=1))[:, 0]
            name = f"{name} of [x, 0], 1st"
        (dy,) = torch.autograd.grad(y.sum(), x)
        ax.plot(x.detach(), y.detach(), color="C0")
        ax.plot(x.detach(), dy, "--", color="C1")
        ax.axhline(0, color="0.8", linewidth=0.8)
        ax.axvline(0, color="0.8", linewidth=0.8)
        ax.set_ylim(-2.2, 4.2)
        ax.set_title(name, fontsize=9)
    return fig


FIGURES: dict[str, Callable[[Analysis], Figure | None]] = {
    "loss_curves": loss_curves,
    "final_loss": final_losses,
    "gradient_norms": gradient_norms,
    "dead_units": dead_units,
    "fits": fits,
}


def save(fig: Figure, folder: Path, name: str) -> list[Path]:
    """``name``.png and ``name``.svg in ``folder``."""
    paths = [folder / f"{name}.png", folder / f"{name}.svg"]
    fig.savefig(paths[0], dpi=110)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def _render(name: str, folder: Path) -> Path | None:
    fig = FIGURES[name](_shared_analysis)
    return None if fig is None else save(fig, folder, name)[0]


_shared_analysis: Analysis | None = None  # handed to forked renderers by inheritance, not by pickling


def _one_thread() -> None:
    torch.set_num_threads(1)  # fork after OpenMP: a forked child must not start a parallel region


def save_all(an: Analysis, folder: Path, workers: int | None = None) -> dict[str, Path]:
    """Every figure that applies to the experiment; name -> PNG path. Drawn in ``workers`` forked processes
    (default: one per core): laying out dozens of panels is seconds of single-threaded matplotlib."""
    global _shared_analysis
    _shared_analysis = an
    workers = workers or available_cores()
    try:
        if workers > 1 and sys.platform.startswith("linux"):  # fork is only safe with torch on Linux
            with ProcessPoolExecutor(min(workers, len(FIGURES)), mp_context=mp.get_context("fork"),
                                     initializer=_one_thread) as pool:
                paths = dict(zip(FIGURES, pool.map(_render, FIGURES, [folder] * len(FIGURES))))
        else:
            paths = {name: _render(name, folder) for name in FIGURES}
    finally:
        _shared_analysis = None
    return {name: path for name, path in paths.items() if path is not None}
