"""Figures of an experiment (matplotlib, written as PNG; as SVG too on request): the pictures behind the numbers.

Every figure is one function returning a ``Figure``; ``save_all`` writes them into the experiment folder.
Every figure survives what training can produce: runs that diverged (NaN or infinite values) are drawn
apart and marked with a red x, values of exactly zero on a log axis are drawn at its floor and marked.
"""

from __future__ import annotations

import gc
import io
import math
import multiprocessing as mp
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe on CI and in worker processes

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator  # noqa: E402

from actlab import activations, signals, storage  # noqa: E402
from actlab.analysis import Analysis, Band, fitted_curves, quartiles, target_curve  # noqa: E402
from actlab.devices import available_cores  # noqa: E402

COLUMNS = 6
DPI = 110  # of the PNG files
PANEL = (2.6, 2.0)  # inches per panel, its title and spacing included
# Marks shared by the figures (tests find them by gid).
DIVERGED = dict(marker="x", color="C3", linestyle="none", markersize=7, markeredgewidth=2, gid="diverged")
ZERO = dict(marker="v", linestyle="none", markersize=4, gid="zero")
# Panel titles sit right above their panel (x tick labels are below it): where matplotlib places them when
# left to itself, but placing them itself measures every tick label of the panel at every draw.
TITLE_Y = 1.0


def _diverged_handle(label: str = "diverged run, x at its last epoch (off-scale values at the edge)") -> Line2D:
    return Line2D([], [], **{k: v for k, v in DIVERGED.items() if k != "gid"}, label=label)


def _zero_handle() -> Line2D:
    return Line2D([], [], color="0.3", **{k: v for k, v in ZERO.items() if k != "gid"},
                  label="exactly 0, drawn at the bottom edge")


def _grid(n: int, title: str, *, ylabel: str, xlabel: str = "epoch", legend: Sequence[Artist] = (),
          note: str = "", sharey: bool = True, tall_titles: bool = False) -> tuple[Figure, list[plt.Axes]]:
    """A figure of ``n`` panels in rows of ``COLUMNS``: title, axis labels on the outer panels, a legend
    of ``legend`` handles and a ``note`` below the panels; ``tall_titles``: room for a note under panel titles.

    An inner panel's axis, which shows only tick marks, is hidden and drawn by ``TickMarks``: a caller that
    shows its labels later must show the axis again (``axis.set_visible(True)``)."""
    cols = min(COLUMNS, max(1, n))
    rows = math.ceil(n / cols)
    width = max(PANEL[0] * cols + 0.9, 7.5)  # a narrow figure would cut its title and legend
    chars = int(width * 13)  # characters per line at fontsize 8-10
    title = textwrap.fill(title, chars)
    note = textwrap.fill(note, int(chars * 1.2)) if note else ""
    longest = max((len(h.get_label()) for h in legend), default=0)
    ncol = max(1, min(len(legend), int(width // (0.065 * longest + 0.7))))  # as many columns as fit
    top = 0.4 + 0.18 * (title.count("\n") + 1) + 0.15 * tall_titles
    note_height = 0.15 * (note.count("\n") + 1) + 0.08 if note else 0.0
    legend_height = 0.22 * math.ceil(len(legend) / ncol) + 0.05 if legend else 0.0
    bottom = 0.62 + legend_height + note_height  # tick labels and the x label take the first 0.62 in
    height = PANEL[1] * rows + top + bottom
    # what plt.subplots(sharex=True, sharey=sharey) makes, without the empty panels of the last row
    fig = plt.figure(figsize=(width, height))
    grid = fig.add_gridspec(rows, cols)
    flat: list[plt.Axes] = []
    for i in range(n):
        first = flat[0] if flat else None
        flat.append(fig.add_subplot(grid[i // cols, i % cols], sharex=first, sharey=first if sharey else None))
    # Fixed margins, not a layout engine: with dozens of panels, constrained layout costs seconds per figure.
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=bottom / height, top=1 - top / height,
                        wspace=0.12 if sharey else 0.3, hspace=0.38 + 0.1 * tall_titles)
    for i, ax in enumerate(flat):
        ax.tick_params(labelsize=7)
        ax.label_outer()  # tick labels on the outer panels only: less to lay out and draw
        if xlabel == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if i + cols >= n:  # lowest panel of its column (the one below may be missing): show its x axis
            ax.tick_params(labelbottom=True)
            ax.set_xlabel(xlabel, fontsize=8)
        if i % cols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        for axis in (ax.xaxis, ax.yaxis):
            if _marks_only(axis):  # an inner panel's axis: its tick marks alone, drawn lighter (TickMarks)
                ax.add_artist(TickMarks(axis))
                axis.set_visible(False)
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / height, va="top")
    if legend:
        fig.legend(handles=list(legend), loc="lower center", ncol=ncol, fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, (note_height + 0.06) / height), bbox_transform=fig.transFigure,
                   borderaxespad=0, columnspacing=1.5)
    if note:
        fig.text(0.75 / width, 0.06 / height, note, fontsize=8, va="bottom", ha="left", color="0.25")
    return fig, flat


def _marks_only(axis: Axis) -> bool:
    """Whether ``axis`` draws its tick marks and nothing else: no tick label, grid line, axis label or offset."""
    if axis.get_label_text() or axis.offsetText.get_visible():
        return False
    ticks = (axis.get_major_ticks(1)[0], axis.get_minor_ticks(1)[0])
    return not any(a.get_visible() for t in ticks for a in (t.label1, t.label2, t.gridline))


class TickMarks(Artist):
    """The tick marks of an axis that shows nothing else, drawn in its place (the axis hidden): the same marks
    at the same places, as one marker line per kind of mark instead of five artists per tick.

    An axis makes a ``Tick`` (three lines, two texts) per tick location at its first draw: with two axes per
    panel and dozens of panels, a large part of a figure's drawing time, for labels inner panels never show.
    Here: the axis' own locations (major, then minor without the major ones), those in its view as matplotlib
    selects them, and the style of its first tick's marks (which ``tick_params`` sets), at the axis' z-order."""

    def __init__(self, axis: Axis) -> None:
        super().__init__()
        self.axis = axis
        self.set_zorder(axis.get_zorder())

    def in_view(self, locs: Sequence[float]) -> np.ndarray:
        """``locs`` inside the view on the axis' scale, with matplotlib's tolerance for a tick at an edge."""
        locs = np.asarray(locs, dtype=float)
        if not len(locs):
            return locs
        scale = self.axis.get_transform()
        lo, hi = sorted(scale.transform(np.asarray(self.axis.get_view_interval(), dtype=float)))
        slack = (hi - lo) * 1e-10
        at = scale.transform(locs)
        return locs[(lo - slack <= at) & (at <= hi + slack)]

    def draw(self, renderer) -> None:
        if not self.get_visible():
            return
        axis, x = self.axis, self.axis.axis_name == "x"
        for locator, locs, first in ((axis.get_major_locator(), axis.get_majorticklocs, axis.get_major_ticks),
                                     (axis.get_minor_locator(), axis.get_minorticklocs, axis.get_minor_ticks)):
            if isinstance(locator, NullLocator):  # no ticks (the minor ones of most panels): as matplotlib does
                continue
            locs = self.in_view(locs())
            if not len(locs):
                continue
            tick = first(1)[0]
            for line in (tick.tick1line, tick.tick2line):
                if line.get_visible():  # at the tick line's place across the axis (0 or 1, in axes coordinates)
                    across = np.full(len(locs), (line.get_ydata() if x else line.get_xdata())[0])
                    marks = Line2D(locs if x else across, across if x else locs)
                    marks.update_from(line)
                    marks.set_figure(self.get_figure(root=False))
                    marks.draw(renderer)
        self.stale = False


@contextmanager
def _x_scaled_once(axes: Sequence[plt.Axes]) -> Iterator[None]:
    """x autoscaling off while the panels are drawn, back on after: panels that share an axis rescale all
    their siblings for every line or band added (quadratic in the panels); this way once, when drawn, to the
    same limits."""
    for ax in axes:
        ax.set_autoscalex_on(False)
    yield
    for ax in axes:
        ax.autoscale(enable=True, axis="x")


# --------------------------------------------------------------------------------------------------
# Runs over seeds, with the diverged ones apart, and a log axis that shows zeros and off-scale values.


@dataclass
class Runs:
    """One measure of one activation: every seed's per-epoch values, NaN-padded, and which seeds diverged."""

    values: np.ndarray  # (seeds, epochs)
    diverged: np.ndarray  # (seeds,) bool
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def band(self) -> Band | None:
        """Median and 25-75% over the seeds that did not diverge, at the epochs any of them measured (the
        diagnostics skip epochs: train.diagnostics_dense), so that a line joins the measured epochs (None if
        every seed diverged, or nothing was measured)."""
        if "band" not in self._cache:  # a figure asks twice: for its scale and to draw it
            healthy = self.values[~self.diverged]
            seen = ~np.all(np.isnan(healthy), axis=0)
            if not len(healthy) or not seen.any():
                self._cache["band"] = None
            else:
                q = quartiles(healthy[:, seen])
                self._cache["band"] = Band(np.arange(1, len(seen) + 1)[seen], q[1], q[0], q[2])
        return self._cache["band"]

    def measured(self) -> tuple[int, int]:
        """(epochs with a value in any seed, epochs): fewer where the diagnostics' schedule skipped some."""
        return int((~np.all(np.isnan(self.values), axis=0)).sum()), self.values.shape[1]

    def diverged_rows(self) -> np.ndarray:
        return self.values[self.diverged]


def runs_of(an: Analysis, measure: str, activation: str) -> Runs | None:
    """Every seed of ``activation`` for ``measure`` (None if the measure was not recorded)."""
    per_seed = an.per_run(measure).get(activation)
    if not per_seed:
        return None
    status = {(row["activation"], row["seed"]): row.get("status") for row in an.stored.summary}
    values = np.full((len(per_seed), max(len(v) for v in per_seed.values())), np.nan)
    for i, v in enumerate(per_seed.values()):
        values[i, :len(v)] = v
    diverged = np.array([status.get((activation, seed)) == "diverged" for seed in per_seed])
    return Runs(values, diverged)


@dataclass
class LogScale:
    """A log axis fitted to the healthy data: zeros drawn at ``floor``, larger values (diverged) at ``top``."""

    floor: float
    top: float

    @classmethod
    def fit(cls, reference: Iterable[np.ndarray], fallback: Iterable[np.ndarray] = (), zeros: bool = False
            ) -> LogScale:
        """From the positive finite values of ``reference`` (those of ``fallback`` when it has none); with
        ``zeros``, a floor well below the smallest value, so that zeros stand apart."""
        for arrays in (reference, fallback):
            values = np.concatenate([np.ravel(np.asarray(a, dtype=float)) for a in arrays] or [np.zeros(0)])
            values = values[np.isfinite(values) & (values > 0)]
            if len(values):
                return cls(float(values.min()) / (4 if zeros else 1.15), float(values.max()) * 1.15)
        return cls(1e-3, 10.0)  # nothing positive and finite at all: any decent range

    def clip(self, values: np.ndarray) -> np.ndarray:
        """Values as drawn: <= 0 at the floor, above the top (inf too) at the top, NaN left out."""
        return np.clip(np.asarray(values, dtype=float), self.floor, self.top)

    def apply(self, ax: plt.Axes, which: str = "y") -> None:
        """Log scale and these limits on ``ax``'s ``which`` ("x" or "y") axis, with readable tick labels."""
        axis = ax.yaxis if which == "y" else ax.xaxis
        (ax.set_yscale if which == "y" else ax.set_xscale)("log")
        (ax.set_ylim if which == "y" else ax.set_xlim)(self.floor / 1.15, self.top * 1.15)
        span = self.top / self.floor
        if span < (300 if which == "x" else 30):  # 0.4, 0.5, 0.6 ... or 0.2, 0.5, 1 ... not one lone 10^0
            axis.set_major_locator(LogLocator(subs=np.arange(1.0, 10.0) if span < 5 else (1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        else:
            axis.set_major_locator(LogLocator(numticks=5))
        axis.set_minor_locator(NullLocator())  # minor log ticks on every panel make drawing slow


def _draw(ax: plt.Axes, runs: Runs, scale: LogScale, *, fill: bool = True, **style) -> tuple[bool, bool]:
    """The healthy seeds' median (and 25-75% band), each diverged seed apart; returns (zeros drawn, diverged
    drawn)."""
    band = runs.band()
    zeros = False
    if band is not None:
        line = ax.plot(band.epochs, scale.clip(band.median), **style)[0]
        if fill:
            ax.fill_between(band.epochs, scale.clip(band.lo), scale.clip(band.hi), color=line.get_color(),
                            alpha=0.25, linewidth=0)
        at_zero = band.median <= 0
        if at_zero.any():
            step = max(1, int(at_zero.sum()) // 12)  # a few marks, not one per epoch
            ax.plot(band.epochs[at_zero][::step], np.full(int(at_zero.sum()), scale.floor)[::step],
                    color=line.get_color(), **ZERO)
            zeros = True
    for row in runs.diverged_rows():
        seen = np.flatnonzero(~np.isnan(row))
        if len(seen):  # the measured epochs, joined
            epochs = np.arange(1, len(row) + 1)
            ax.plot(epochs[seen], scale.clip(row[seen]), color="C3", linewidth=0.8, alpha=0.6,
                    linestyle=style.get("linestyle"))
            ax.plot(epochs[seen[-1]], scale.clip(row[seen[-1]]), **DIVERGED)
    return zeros, bool(runs.diverged.any())


def _has_zero(bands: Iterable[Band | None]) -> bool:
    return any(b is not None and bool((b.median <= 0).any()) for b in bands)


def _band_arrays(bands: Iterable[Band | None]) -> list[np.ndarray]:
    return [a for b in bands if b is not None for a in (b.median, b.lo, b.hi)]


def divergence(an: Analysis) -> dict[str, tuple[int, int]]:
    """activation -> (runs that diverged, runs), from summary.csv: also the runs that diverged in their first
    epoch, which left no row in metrics.csv."""
    counts: dict[str, tuple[int, int]] = {}
    for row in an.stored.summary:
        k, n = counts.get(row["activation"], (0, 0))
        counts[row["activation"]] = (k + (row.get("status") == "diverged"), n + 1)
    return counts


def _mark_diverged(ax: plt.Axes, counts: tuple[int, int]) -> float:
    """'k of n seeds diverged' between the panel and its title (over no data, and visible even when nothing
    of those runs can be drawn); returns the title's padding."""
    k, n = counts
    if not k:
        return 6.0
    ax.text(0.5, 1.015, f"{k} of {n} seeds diverged", transform=ax.transAxes, ha="center", va="bottom",
            fontsize=7, color="C3", gid="diverged-note")
    return 15.0


# --------------------------------------------------------------------------------------------------
# The figures.


def loss_curves(an: Analysis) -> Figure:
    """Full-training-data loss per epoch: median over seeds, 25-75% band; the best activation for reference."""
    acts = an.activations
    runs = {act: runs_of(an, "full_loss", act) for act in acts}
    bands = {act: r.band() if r is not None else None for act, r in runs.items()}
    reference = _band_arrays(bands.values())  # the runs that did not diverge set the scale, if there are any
    scale = LogScale.fit(reference + [np.array([an.least_squares])] * bool(reference),
                         [r.values for r in runs.values() if r is not None] + [np.array([an.least_squares])],
                         zeros=_has_zero(bands.values()))
    legend: list[Artist] = [
        Line2D([], [], color="C0", linewidth=1.5, label="median over seeds"),
        Patch(color="C0", alpha=0.25, label="25-75% of seeds"),
    ] * bool(reference)
    legend += [Line2D([], [], color="0.6", linestyle="--", label=f"#1 ({acts[0]}), median")] * (
        len(acts) > 1 and bands[acts[0]] is not None)
    legend += [Line2D([], [], color="C3", linestyle=":", label="least-squares optimum (linear model)")]
    legend += [_zero_handle()] * _has_zero(bands.values())
    diverged = divergence(an)
    legend += [_diverged_handle()] * any(k for k, _ in diverged.values())
    seeds = max((s.runs for s in an.stats), default=0)
    fig, axes = _grid(len(acts), f"Training loss per epoch ({an.stored.config.data.task}, whole training "
                                 f"data, {seeds} seeds per activation)", ylabel="MSE (log scale)", legend=legend,
                      tall_titles=any(k for k, _ in diverged.values()))
    best = bands[acts[0]]
    scale.apply(axes[0])  # the panels share their y axis: once for all, and first: nothing drawn rescales it
    with _x_scaled_once(axes):
        for ax, act in zip(axes, acts):
            if best is not None and act != acts[0]:
                ax.plot(best.epochs, scale.clip(best.median), "--", color="0.6", linewidth=1)
            if runs[act] is not None:
                _draw(ax, runs[act], scale, color="C0", linewidth=1.5)
            ax.axhline(an.least_squares, color="C3", linestyle=":", linewidth=1)
            pad = _mark_diverged(ax, diverged.get(act, (0, 0)))
            stat = an.stat(act)
            ax.set_title(f"#{stat.rank if stat else '?'} {act}", fontsize=9, pad=pad, y=TITLE_Y)
    return fig


def final_losses(an: Analysis) -> Figure:
    """Distribution over seeds of the final loss, one row per activation, best on top; diverged runs marked."""
    acts = an.activations
    rows = {act: [r for r in an.stored.summary if r["activation"] == act] for act in acts}
    healthy = {act: np.array([float(r["final_loss"]) for r in rs if r.get("status") != "diverged"
                              and math.isfinite(float(r["final_loss"]))]) for act, rs in rows.items()}
    diverged = {act: sum(r.get("status") == "diverged" or not math.isfinite(float(r["final_loss"])) for r in rs)
                for act, rs in rows.items()}
    scale = LogScale.fit(list(healthy.values()) + [np.array([an.least_squares])],
                         zeros=any((d <= 0).any() for d in healthy.values()))
    legend: list[Artist] = [
        Line2D([], [], marker="o", color="C0", linestyle="none", markersize=4, label="one seed"),
        Patch(facecolor="none", edgecolor="black", label="box: 25-75% of seeds, bar: median, whiskers: 1.5 IQR"),
    ] * any(len(d) for d in healthy.values())
    legend += [Line2D([], [], color="C3", linestyle=":", label="least-squares optimum (linear model)")]
    legend += [_zero_handle()] * any((d <= 0).any() for d in healthy.values())
    legend += [_diverged_handle("diverged run (no final loss to compare): at the right edge, not in the box")] * any(
        diverged.values())
    # one axes: constrained layout is cheap here; the legend below the axes, never over the dots
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(acts) + 1.6 + 0.2 * len(legend)), layout="constrained")
    positions = np.arange(len(acts))[::-1]
    with_data = [(pos, healthy[a]) for pos, a in zip(positions, acts) if len(healthy[a])]
    if with_data:
        ax.boxplot([scale.clip(d) for _, d in with_data], positions=[p for p, _ in with_data], widths=0.6,
                   orientation="horizontal", showfliers=False, medianprops=dict(color="black", linewidth=1.5))
    for pos, act in zip(positions, acts):
        d = healthy[act]
        jitter = np.linspace(-0.15, 0.15, len(d)) if len(d) > 1 else np.zeros(len(d))
        ax.plot(scale.clip(d), pos + jitter, "o", color="C0", markersize=3, alpha=0.7)
        if (d <= 0).any():
            ax.plot(np.full(int((d <= 0).sum()), scale.floor), pos + jitter[d <= 0], color="0.3", **ZERO)
        if diverged[act]:  # at the right edge, one x per diverged seed
            ax.plot(np.full(diverged[act], scale.top), pos + np.linspace(-0.15, 0.15, diverged[act]), **DIVERGED)
    ax.axvline(an.least_squares, color="C3", linestyle=":")
    ax.set_yticks(positions, [f"#{an.stat(a).rank if an.stat(a) else '?'} {a}" for a in acts])
    scale.apply(ax, "x")
    ax.set_xlabel("final loss (MSE) on the whole training data, log scale")
    fig.legend(handles=legend, loc="outside lower center", ncol=1, fontsize=8, frameon=False)
    ax.set_title("Final loss per activation (best first)")
    return fig


def gradient_norms(an: Analysis) -> Figure | None:
    """First-layer (solid) and last-layer (dashed) gradient norm per epoch: vanishing gradients show as a gap."""
    if "grad_norm_L1" not in an.table:
        return None  # run with train.diagnostics off
    acts, last = an.activations, an.layers()
    runs = {act: (runs_of(an, "grad_norm_L1", act), runs_of(an, f"grad_norm_L{last}", act)) for act in acts}
    bands = [r.band() for pair in runs.values() for r in pair if r is not None]
    scale = LogScale.fit(_band_arrays(bands), [r.values for pair in runs.values() for r in pair if r is not None],
                         zeros=_has_zero(bands))
    legend: list[Artist] = [
        Line2D([], [], color="C0", label="layer 1, median over seeds"),
        Patch(color="C0", alpha=0.25, label="layer 1, 25-75% of seeds"),
        Line2D([], [], color="C1", linestyle="--", label=f"layer {last} (output), median"),
    ]
    legend += [_zero_handle()] * _has_zero(bands)
    diverged = divergence(an)
    legend += [_diverged_handle()] * any(k for k, _ in diverged.values())
    fig, axes = _grid(len(acts), "Gradient norm of the first and last layer per epoch (a gap: vanishing "
                                 "gradients)", ylabel="gradient norm (log scale)", legend=legend,
                      note=_schedule_note(r for pair in runs.values() for r in pair),
                      tall_titles=any(k for k, _ in diverged.values()))
    scale.apply(axes[0])  # the panels share their y axis: once for all, and first: nothing drawn rescales it
    with _x_scaled_once(axes):
        for ax, act in zip(axes, acts):
            first, final = runs[act]
            if first is not None:
                _draw(ax, first, scale, color="C0")
            if final is not None:
                _draw(ax, final, scale, fill=False, color="C1", linestyle="--")
            pad = _mark_diverged(ax, diverged.get(act, (0, 0)))
            ax.set_title(act, fontsize=9, pad=pad, y=TITLE_Y)
    return fig


def _schedule_note(runs: Iterable[Runs | None]) -> str:
    """Where the diagnostics skipped epochs: at how many they were measured, and that lines join those."""
    counts = [r.measured() for r in runs if r is not None]
    measured, epochs = max((k for k, _ in counts), default=0), max((n for _, n in counts), default=0)
    if measured >= epochs:
        return ""
    return (f"Measured at {measured} of {epochs} epochs (every epoch early on, sparser later: "
            "train.diagnostics_dense); lines join the measured epochs.")


def _dead_note(quiet: list[str], unmeasured: list[str], gone: list[str], some_diverged: bool) -> str:
    parts = []
    if quiet:
        parts.append(f"No dead unit in any seed, layer or epoch: {', '.join(quiet)}.")
    if gone:
        parts.append(f"Every run diverged (nothing to draw): {', '.join(gone)}.")
    if unmeasured:
        parts.append(f"Not measured (the activation mixes units): {', '.join(unmeasured)}.")
    if some_diverged:
        parts.append("Runs that diverged are left out of the medians.")
    return " ".join(parts)


def dead_units(an: Analysis) -> Figure | None:
    """Share of dead units per hidden layer per epoch (median over seeds), for the activations with any."""
    if "dead_L1" not in an.table:
        return None  # train.diagnostics off
    layers = range(1, an.hidden_layers() + 1)
    diverged = divergence(an)
    runs = {act: [runs_of(an, f"dead_L{layer}", act) for layer in layers] for act in an.activations}
    healthy = {act: [r.values[~r.diverged] for r in rs if r is not None] for act, rs in runs.items()}
    measured = {act: [v for v in vs if not np.all(np.isnan(v))] for act, vs in healthy.items()}
    dead = [act for act, vs in measured.items() if any(np.nan_to_num(v).max() > 0 for v in vs)]
    gone = [act for act, (k, n) in diverged.items() if k == n and act in runs]
    note = _dead_note([act for act, vs in measured.items() if vs and act not in dead],
                      [act for act, vs in measured.items() if not vs and act not in gone], gone,
                      any(0 < k < n for k, n in diverged.values()))
    note = " ".join(filter(None, [note, _schedule_note(r for rs in runs.values() for r in rs)]))
    if not dead:  # nothing to draw: the note alone says so
        fig = plt.figure(figsize=(7.5, 1.2))
        fig.suptitle("Dead units per hidden layer: none", fontsize=10)
        fig.text(0.02, 0.4, textwrap.fill(note, 110), fontsize=9, va="center")
        return fig
    # wider lines for earlier layers: where layers coincide (all dead), every one still shows
    width = {i: 1.2 + 1.2 * (len(layers) - 1 - i) for i in range(len(layers))}
    legend = [Line2D([], [], color=f"C{i}", linewidth=width[i], label=f"hidden layer {layer}, median over seeds")
              for i, layer in enumerate(layers)] + [Patch(color="0.5", alpha=0.2, label="25-75% of seeds")]
    fig, axes = _grid(len(dead), "Dead units per hidden layer (no gradient on any training input)",
                      ylabel="% of the layer's units dead", legend=legend, note=note,
                      tall_titles=any(diverged.get(act, (0, 0))[0] for act in dead))
    axes[0].set_ylim(-3, 103)  # shared by the panels: once for all, and first: nothing drawn rescales it
    with _x_scaled_once(axes):
        for ax, act in zip(axes, dead):
            for i, r in enumerate(runs[act]):
                band = r.band() if r is not None else None
                if band is not None:
                    ax.plot(band.epochs, 100 * band.median, color=f"C{i}", linewidth=width[i])
                    ax.fill_between(band.epochs, 100 * band.lo, 100 * band.hi, color=f"C{i}", alpha=0.2, linewidth=0)
            ax.set_title(act, fontsize=9, pad=_mark_diverged(ax, diverged.get(act, (0, 0))), y=TITLE_Y)
    return fig


def fits(an: Analysis) -> Figure | None:
    """For 1-D tasks: the target against every seed's fit (best seed bold), one panel per activation."""
    curves = fitted_curves(an.stored, weights=an.weights())
    if not curves:
        return None
    acts = [a for a in an.activations if a in curves]
    x, y = target_curve(an.stored)
    summary = {row["run"]: row for row in an.stored.summary}
    legend = [Line2D([], [], color="black", linewidth=2, label=f"target ({an.stored.config.data.task})"),
              Line2D([], [], color="C0", linewidth=0.7, alpha=0.5, label="one seed's fit"),
              Line2D([], [], color="C1", linewidth=2, label="the seed with the lowest final loss")]
    fig, axes = _grid(len(acts), "What the net computes after training: the target against each seed's fit",
                      ylabel="y", xlabel="x", legend=legend)
    for ax, act in zip(axes, acts):
        ax.plot(x, y, color="black", linewidth=2)
        runs = [r["run"] for r in an.stored.summary if r["activation"] == act]
        loss = {r: float(summary[r]["final_loss"]) for r in runs}
        ok = [r for r in runs if summary[r].get("status") != "diverged" and math.isfinite(loss[r])]
        best = min(ok, key=loss.__getitem__, default=None)
        for run, (gx, gy) in zip(runs, curves[act]):
            if run not in ok:
                continue  # a diverged fit is noise or nothing: counted in the title instead
            bold = run == best
            ax.plot(gx, gy, color="C1" if bold else "C0", linewidth=2 if bold else 0.7, alpha=1 if bold else 0.5)
        ax.set_ylim(float(y.min()) - 0.6, float(y.max()) + 0.6)
        gone = len(runs) - len(ok)
        ax.set_title(act + (f" ({gone} diverged, not drawn)" if gone else ""), fontsize=9, y=TITLE_Y,
                     color="C3" if gone else "black")
    return fig


def activation_gallery(names: Sequence[str] | None = None) -> Figure:
    """Every registry activation (solid) and its derivative from autograd (dashed) on [-4, 4]."""
    names = list(names or activations.names())
    legend = [Line2D([], [], color="C0", label="activation f(x)"),
              Line2D([], [], color="C1", linestyle="--", label="derivative f'(x), from autograd")]
    fig, axes = _grid(len(names), "Activations and their derivatives", ylabel="f(x), f'(x)", xlabel="x",
                      legend=legend)
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
        ax.set_title(name, fontsize=9, y=TITLE_Y)
    return fig


FIGURES: dict[str, Callable[[Analysis], Figure | None]] = {
    "loss_curves": loss_curves,
    "final_loss": final_losses,
    "gradient_norms": gradient_norms,
    "dead_units": dead_units,
    "fits": fits,
}


def save(fig: Figure, folder: Path, name: str, svg: bool = False) -> list[Path]:
    """``name``.png in ``folder`` (and with ``svg``, ``name``.svg: vector, for papers); the paths written.

    Each format is a full draw of the figure (seconds for dozens of panels): the SVG only when asked for."""
    png = folder / f"{name}.png"
    image = io.BytesIO()  # drawn in memory, then written as every file of the folder is (storage.write_bytes):
    # a full disk or a signal mid-write leaves the previous figure whole, never a cut one or a stray .tmp
    if fig.get_layout_engine() is None:
        fig.savefig(image, format="png", dpi=DPI)
    else:  # savefig draws such a figure twice, a dry run to lay it out and the picture: drawn once instead
        dpi = fig.get_dpi()
        fig.set_dpi(DPI)
        fig.canvas.draw()  # lays the figure out first, as savefig's dry run does; then the same picture
        matplotlib.image.imsave(image, fig.canvas.buffer_rgba(), format="png", origin="upper", dpi=DPI)
        fig.set_dpi(dpi)  # the SVG (dpi "figure") as before
    storage.write_bytes(png, image.getvalue())
    if svg:
        vector = io.BytesIO()
        fig.savefig(vector, format="svg")
        storage.write_bytes(png.with_suffix(".svg"), vector.getvalue())
    plt.close(fig)
    return [png, png.with_suffix(".svg")] if svg else [png]


Drawer = Callable[[Analysis], Figure | None]


def _render(name: str, folder: Path, svg: bool) -> Path | None:
    an, drawers = _shared
    fig = drawers[name](an)
    return None if fig is None else save(fig, folder, name, svg)[0]


_shared: tuple[Analysis, Mapping[str, Drawer]] | None = None  # handed to forked renderers by inheritance


def _drawing_process() -> None:
    signals.worker_setup()  # exit with the parent (even one killed outright), leave Ctrl-C/SIGTERM to it
    torch.set_num_threads(1)  # fork after OpenMP: a forked child must not start a parallel region


# The figures of dozens of panels, each several times the drawing of any other (biggest first).
BIGGEST = ("loss_curves", "gradient_norms", "fits", "dead_units")


def handout_order(names: Sequence[str]) -> list[str]:
    """``names`` in the order to hand them to the drawing processes: ``BIGGEST`` first (in its order), then the
    others as given; a pool draws in the order it is handed the work, so the longest go first, in parallel."""
    big = [name for name in BIGGEST if name in names]
    return big + [name for name in names if name not in big]


def _share(an: Analysis) -> None:
    """The per-run series the figures draw, computed before the drawing processes are forked: they inherit
    them (each would gather them again from the table), and the report, in this process, reads the same."""
    measures = ["full_loss", "grad_norm_L1", f"grad_norm_L{an.layers()}"]
    for measure in measures + [f"dead_L{layer}" for layer in range(1, an.hidden_layers() + 1)]:
        if measure in an.table:
            an.per_run(measure)


class Drawing:
    """Figures being drawn in forked processes while the caller goes on; ``result()`` waits for them."""

    def __init__(self, an: Analysis, folder: Path, drawers: Mapping[str, Drawer], workers: int,
                 svg: bool = False) -> None:
        global _shared
        self.names, self.pool = list(drawers), None
        _shared = (an, drawers)
        if workers > 1 and sys.platform.startswith("linux"):  # fork is only safe with torch on Linux
            _share(an)
            # what exists now (torch, the analysis) is never garbage here or in the children: the collector
            # leaves it alone (and the children's copies of it stay shared pages); undone in ``close``
            gc.freeze()
            self.pool = ProcessPoolExecutor(min(workers, len(drawers)), mp_context=mp.get_context("fork"),
                                            initializer=_drawing_process)
            # the children are forked here, as the work is handed out: they inherit ``_shared``; handed out
            # biggest first, so that the two largest figures are drawn at once on different processes
            futures = {name: self.pool.submit(_render, name, folder, svg) for name in handout_order(self.names)}
            self.pending = [futures[name] for name in self.names]
        else:
            try:
                self.done = [_render(name, folder, svg) for name in self.names]
            finally:
                _shared = None

    def __enter__(self) -> Drawing:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the drawing processes (figures not started are not drawn)."""
        global _shared
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool, _shared = None, None
            gc.unfreeze()

    def result(self) -> dict[str, Path]:
        """name -> PNG path of every figure drawn (in the order of the drawers; None-returning ones left out)."""
        if self.pool is not None:
            try:
                self.done = [future.result() for future in self.pending]
            finally:
                self.close()
        return {name: path for name, path in zip(self.names, self.done) if path is not None}


def draw_all(an: Analysis, folder: Path, extra: Mapping[str, Drawer] | None = None,
             workers: int | None = None, svg: bool = False) -> Drawing:
    """Start drawing every figure that applies (``FIGURES``, then ``extra``) into ``folder`` as PNG (with
    ``svg``, as SVG too), in ``workers`` forked processes (default: one per core; laying out dozens of panels
    is seconds of single-threaded matplotlib), so that the caller can compute the rest of the report meanwhile.
    A figure shows the statistics as ``stats.rank`` leaves them (order, ranks, mean ranks, folded twins), never
    a comparison with #1: the report computes those while the figures are drawn (``workflow._report``)."""
    return Drawing(an, folder, FIGURES | dict(extra or {}), workers or available_cores(), svg)


def save_all(an: Analysis, folder: Path, workers: int | None = None, svg: bool = False) -> dict[str, Path]:
    """Every figure that applies to the experiment; name -> PNG path (``draw_all``, waited for)."""
    return draw_all(an, folder, workers=workers, svg=svg).result()
