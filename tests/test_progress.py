"""The progress bar: counts runs, labels its times, says what trains, and keeps the essentials at 60 columns."""

import io

import pytest
from rich.console import Console

from actlab.progress import ProgressBar, _clock
from actlab.workflow import ProgressState


def console(width: int = 80) -> Console:
    return Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)


def render(bar: ProgressBar) -> list[str]:
    """What the bar draws now, as text lines on its own console."""
    out = bar.bar.console
    out.file = io.StringIO()
    for item in bar.renderables():
        out.print(item)
    return out.file.getvalue().splitlines()


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_bar_shows_runs_times_and_what_trains(width):
    bar = ProgressBar(console(width), enabled=False)
    state = ProgressState("compare", "cpu", 0, 230, 0.0, "230 runs stacked (23 activations)")
    bar(state)
    bar(ProgressState("compare", "cpu", 120, 230, 0.5, "110 runs stacked (23 activations)"))
    first, second = render(bar)
    assert first.startswith("compare ") and "120/230 runs" in first
    assert "elapsed 0:00" in first and "remaining " in first and "…" not in first
    assert len(first) <= width
    assert second.strip().startswith("training 110 runs") and len(second) <= width


def test_at_40_columns_the_run_count_survives():
    bar = ProgressBar(console(40), enabled=False)
    bar(ProgressState("compare", "cpu", 120, 230, 0.5, "110 runs stacked (23 activations)"))
    first, second = render(bar)
    assert "120/230 runs" in first and len(first) <= 40 and len(second) <= 40


def test_measures_reach_the_epoch_log():
    seen = []
    bar = ProgressBar(console(60), enabled=False, on_epoch=lambda console, m: seen.append(m))
    bar(ProgressState("train", "cpu", 0, 1, 0.5, "relu seed 0", {"epoch": 3.0, "full_loss": 0.5}))
    bar(ProgressState("train", "cpu", 1, 1, 1.0, "done"))
    assert seen == [{"epoch": 3.0, "full_loss": 0.5}]
    (line,) = render(bar)
    assert "1/1 runs" in line  # no stale 'training' line when done


@pytest.mark.parametrize("seconds, text", [(None, "?"), (0, "0:00"), (59.9, "0:59"), (61, "1:01"), (3725, "1:02:05")])
def test_clock(seconds, text):
    assert _clock(seconds) == text


def test_an_error_before_training_leaves_nothing_on_the_console():
    out = console()
    with pytest.raises(RuntimeError), ProgressBar(out, enabled=True):
        raise RuntimeError("refused before the first state")  # e.g. a cluster that does not answer
    assert out.file.getvalue() == ""  # not even an empty line above the error's one line


def test_a_bar_stopped_by_a_signal_says_stopped_not_done():
    bar = ProgressBar(console(), enabled=False)
    with pytest.raises(KeyboardInterrupt), bar:
        # every epoch trained (the last chunk's results not yet saved) when SIGTERM came
        bar(ProgressState("compare", "cpu", 110, 230, 1.0, "120 runs stacked (12 activations)"))
        raise KeyboardInterrupt
    (line,) = render(bar)
    assert "110/230 runs" in line and line.rstrip().endswith("stopped") and "done" not in line
