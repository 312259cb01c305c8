"""The terminal table and the verdict lines: every number whole at any width, the answer stated plainly."""

import io
import math
import re

import pytest
from rich.console import Console

from actlab import config, stats, tables


def _result(seeds=10):
    groups = {"prelu": [0.0116 + 0.001 * i for i in range(seeds)],
              "leaky_relu": [0.0212 * (0.5 if i % 2 else 1.8) for i in range(seeds)],
              "relu": [0.0173 + 0.002 * i for i in range(seeds)],
              "relu6": [0.0173 + 0.002 * i for i in range(seeds)],
              "sigmoid": [0.731 + 0.001 * i for i in range(seeds)]}
    rows = [{"run": f"{a}/seed{s}", "activation": a, "seed": s, "status": "ok", "final_loss": v, "best_loss": v,
             "final_test_loss": math.nan} for a, vs in groups.items() for s, v in enumerate(vs)]
    return stats.summarise(rows, {r["run"]: [1.0, r["final_loss"]] for r in rows},
                           reference=stats.Reference(constant_loss=0.84))


def _render(renderable, width):
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("width", [60, 80, 140])
def test_no_number_is_cut_at_any_width(width):
    act_stats, threshold = _result()
    text = _render(tables.ranking_table(config.build_config({}), act_stats, threshold), width)
    assert "…" not in text
    assert all(len(line) <= width for line in text.splitlines())
    for s in act_stats:
        assert f"{s.final.median:.3g}" in text and s.activation in text
    assert "relu =relu6" in text  # identical activations: one row
    if width >= 140:
        assert "ratio" in text and "epochs" in text  # wide terminals keep every column


def test_verdict_lines_state_the_answer_and_the_power():
    act_stats, threshold = _result()
    first, second, third = tables.verdict_lines(act_stats, threshold)
    assert first.startswith("Best: prelu")
    assert "Not separable from it: leaky_relu" in second and re.search(r"Significantly worse: \d of 3", second)
    few, _ = _result(seeds=4)
    third = tables.verdict_lines(few)[2]
    assert third.startswith("Too few seeds") and "0.125" in third and "7 seeds are needed" in third
