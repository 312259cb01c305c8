"""The ranking as a terminal table (rich) and the three-line verdict: what `compare` and `show` print.

The table fits the terminal it is printed on: columns are dropped, least important first, until it fits,
so a number is never cut (rich would otherwise shorten `0.0153` to `0.0…`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from actlab import config, stats
from actlab.inference import ALPHA

# Columns in the order they are dropped when the terminal is too narrow (first: dropped first).
OPTIONAL = ("epochs", "test", "fail", "ratio", "wins", "p")


def verdict_lines(act_stats: Sequence[stats.ActivationStats], threshold: float = math.nan) -> list[str]:
    """The answer first, in three lines: the best, what cannot be told from it, and what the seeds allow."""
    if not act_stats:
        return ["No finished run: nothing to rank.", "", ""]
    ov = stats.overview(act_stats, threshold)
    best = act_stats[0]
    twins = f" (= {', '.join(best.same_as)}: identical losses)" if best.same_as else ""
    first = (f"Best: {best.activation}{twins}, median final loss {_num(best.final.median)}, mean rank "
             f"{best.mean_rank:.2f} over {ov.seeds} seeds.")
    by = {v: [s.activation for s in act_stats[1:] if s.verdict == v] for v in
          ("equivalent", "not separable", "worse", "better")}
    second = (f"As good as it (within {stats.EQUIVALENCE_MARGIN:.0%}, TOST): {_names(by['equivalent'])}. "
              f"Not separable from it: {_names(by['not separable'])}. Significantly worse: {len(by['worse'])} "
              f"of {len(act_stats) - 1}" + (f"; better: {_names(by['better'])}" if by["better"] else "") + ".")
    if ov.powerless:
        third = (f"Too few seeds for any significance: with {_seeds(act_stats)} seeds the smallest exact p is "
                 f"{ov.min_p:.3g}, above {ALPHA} / {ov.comparisons} (Holm over {ov.comparisons} comparisons with "
                 f"#1); {ov.seeds_needed} seeds are needed.")
    else:
        third = (f"Tests: Friedman p = {_num(ov.friedman_p)} over {ov.seeds} seeds; Nemenyi critical difference "
                 f"{_num(ov.critical_difference)} mean ranks; vs #1: exact Wilcoxon, Holm-adjusted.")
    return [first, second, third]


def _names(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


def _seeds(act_stats: Sequence[stats.ActivationStats]) -> int:
    return min(len(set(s.losses) & set(act_stats[0].losses)) for s in act_stats)


class RankingTable:
    """A rich renderable: the ranking table built for the width it is rendered at."""

    def __init__(self, cfg: config.Config, act_stats: Sequence[stats.ActivationStats], threshold: float) -> None:
        self.cfg, self.act_stats, self.threshold = cfg, list(act_stats), threshold

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        columns = list(OPTIONAL)
        while True:
            table = self.build(columns)
            natural = console.measure(table, options=options.update_width(10_000)).maximum  # unclamped
            if not columns or natural <= options.max_width:
                break
            columns.pop(0)
        yield table

    def build(self, optional: Sequence[str] = OPTIONAL) -> Table:
        """The table with the optional columns ``optional`` (the rest always)."""
        act_stats = self.act_stats
        has_test = any(s.test is not None for s in act_stats)
        one_d = any(s.stuck for s in act_stats) or self.cfg.model.sizes[0] == 1
        show = [c for c in OPTIONAL if c in optional and (c != "test" or has_test)]
        seeds = max((s.runs for s in act_stats), default=0)
        table = Table(
            box=box.SIMPLE_HEAD, padding=(0, 1, 0, 1), pad_edge=False, collapse_padding=True,
            title=f"{self.cfg.data.task}: final loss on the training data after {self.cfg.train.epochs} epochs, "
            f"{seeds} seeds", caption=self._caption(show, one_d),
        )
        names = ["#", "activation", "median [95% CI]"] + [_HEAD[c] if c != "fail" or not one_d else "stuck"
                                                          for c in show] + ["vs #1"]
        for col in names:
            table.add_column(col, justify="left" if col in ("activation", "vs #1") else "right", no_wrap=True,
                             overflow="fold")
        for s in act_stats:
            cells = {"epochs": "-" if math.isinf(s.epochs_to_threshold) else f"{s.epochs_to_threshold:.0f}",
                     "test": _num(s.test.median) if s.test else "-",
                     "fail": f"{s.stuck if one_d else s.failed}/{s.runs}",
                     "ratio": "-" if math.isnan(s.ratio_vs_best) else f"{s.ratio_vs_best:.2f}x",
                     "wins": "-" if math.isnan(s.win_rate_vs_best) else f"{s.win_rate_vs_best:.0%}",
                     "p": "-" if math.isnan(s.p_vs_best) else f"{s.p_vs_best:.2g}"}
            name = s.activation + (f" ={','.join(s.same_as)}" if s.same_as else "")
            ci = f" [{_num(s.final.lo)}, {_num(s.final.hi)}]" if math.isfinite(s.final.lo) else ""
            table.add_row(str(s.rank), name, _num(s.final.median) + ci, *[cells[c] for c in show],
                          _VERDICT.get(s.verdict, s.verdict) + (f" {s.diverged} div." if s.diverged else ""))
        return table

    def _caption(self, show: Sequence[str], one_d: bool) -> str:
        parts = ["order: mean rank over seeds. median: median final loss, 95% CI of the median (order "
                 "statistics). vs #1: exact Wilcoxon on log loss ratios, Holm-adjusted; 'equiv.': within "
                 f"{stats.EQUIVALENCE_MARGIN:.0%} (TOST); '?': not separable."]
        if "epochs" in show:
            parts.append(f"epochs: median epochs to loss {_num(self.threshold)}.")
        if "fail" in show:
            parts.append("stuck: runs on the monotone plateau." if one_d else
                         "fail: diverged or no better than the mean.")
        if "ratio" in show or "wins" in show or "p" in show:
            parts.append("ratio/wins/p: against #1, paired by seed.")
        return " ".join(parts)


_HEAD = {"epochs": "epochs", "test": "test", "fail": "fail", "ratio": "ratio", "wins": "wins", "p": "p"}
_VERDICT = {"best": "#1", "worse": "worse", "better": "better", "equivalent": "equiv.", "not separable": "?"}


def ranking_table(cfg: config.Config, act_stats: Sequence[stats.ActivationStats], threshold: float) -> RankingTable:
    """The comparison as a rich renderable, best first, that drops columns to fit narrow terminals."""
    return RankingTable(cfg, act_stats, threshold)


def verdict_text(act_stats: Sequence[stats.ActivationStats], threshold: float = math.nan) -> Text:
    """``verdict_lines`` as one rich Text for printing under the table."""
    return Text("\n".join(line for line in verdict_lines(act_stats, threshold) if line))


def _num(value: float, digits: int = 3) -> str:
    return "-" if not math.isfinite(value) else f"{value:.{digits}g}"
