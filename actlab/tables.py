"""The ranking as a terminal table (rich): what `compare` and `show` print under the progress bar."""

from __future__ import annotations

import math

from rich import box
from rich.table import Table

from actlab import config, stats


def ranking_table(cfg: config.Config, table_stats: list[stats.ActivationStats], threshold: float) -> Table:
    """The comparison as a rich table, best first; narrow enough for an 80-column terminal."""
    has_test = any(s.test is not None for s in table_stats)
    seeds = max((s.runs for s in table_stats), default=0)
    table = Table(
        box=box.SIMPLE_HEAD, padding=(0, 1, 0, 1), pad_edge=False, collapse_padding=True,
        title=f"{cfg.data.task}: final loss on the training data after {cfg.train.epochs} epochs, "
        f"{seeds} seeds",
        caption=f"mean ± 95% CI half-width. rank: 1 + activations significantly better (paired Wilcoxon "
        f"over seeds, p < 0.05); = marks ties. epochs: median epochs to reach loss {threshold:.3g}. "
        "wins/p: against #1, paired by seed. div.: diverged runs." + (" test: mean held-out loss." if has_test else "")
        + (" With fewer than 3 seeds, no interval or test means much: use --seeds 5 or more." if seeds < 3 else ""),
    )
    columns = ["rank", "activation", "final loss", "median"] + (["test"] if has_test else []) + [
        "epochs", "wins", "p", "div."]
    for col in columns:
        table.add_column(col, justify="left" if col == "activation" else "right", no_wrap=True)
    ranks = [s.rank for s in table_stats]
    for s in sorted(table_stats, key=lambda s: s.rank):
        half = (s.final.hi - s.final.mean) if math.isfinite(s.final.hi) else float("nan")
        table.add_row(
            f"{s.rank}{'=' if ranks.count(s.rank) > 1 else ''}", s.activation,
            f"{_num(s.final.mean, 3)} ± {_num(half, 2)}", _num(s.final.median, 3),
            *([_num(s.test.mean, 3) if s.test else "-"] if has_test else []),
            "-" if math.isinf(s.epochs_to_threshold) else f"{s.epochs_to_threshold:.0f}",
            "-" if math.isnan(s.win_rate_vs_best) else f"{s.win_rate_vs_best:.0%}",
            "-" if math.isnan(s.p_vs_best) else f"{s.p_vs_best:.2g}",
            f"{s.diverged}" if s.diverged else "0",
        )
    return table


def _num(value: float, digits: int = 4) -> str:
    return "-" if not math.isfinite(value) else f"{value:.{digits}g}"
