"""The terminal's progress bar: draws the ``workflow.ProgressState``s of a training with rich.

Line 1, the essentials, fits in 60 columns: ``compare ━━━━━ 12/230 runs  elapsed 0:03  remaining 0:05``.
Line 2 says what is in training (``relu seed 3`` or ``230 runs stacked (23 activations)``) and may be cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from actlab.workflow import ProgressState


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _Elapsed(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"elapsed {_clock(task.elapsed)}", no_wrap=True)


class _Remaining(ProgressColumn):
    max_refresh = 0.5  # a steadier estimate to read

    def render(self, task: Task) -> Text:
        if task.fields.get("stopped"):  # a signal or an error: the epochs may all be trained, the runs not saved
            return Text("stopped", no_wrap=True)
        if task.finished:
            return Text("done", no_wrap=True)
        return Text(f"remaining {_clock(task.time_remaining)}", no_wrap=True)


class _TwoLines(Progress):
    """The bar's row, then what is in training on a line of its own."""

    training = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.training:
            line = Text(f"  training {self.training}", style="dim")
            line.truncate(self.console.width, overflow="ellipsis")  # one line, whatever the terminal's width
            yield line


class ProgressBar:
    """A ``ProgressFn`` drawing on ``console`` (stderr); ``on_epoch(console, measures)`` prints above the bar."""

    def __init__(self, console: Console, enabled: bool = True,
                 on_epoch: Callable[[Console, dict], None] | None = None) -> None:
        self.on_epoch = on_epoch
        self.bar = _TwoLines(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
            TextColumn("{task.fields[runs]}", style="cyan"), _Elapsed(), _Remaining(),
            console=console, disable=not enabled, transient=False, expand=False,
        )
        self.task = None

    def __enter__(self) -> ProgressBar:
        return self  # drawing starts with the first state: an error before training leaves no empty bar behind

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.task is None:
            return  # never drawn: stopping rich's display would still print an empty line before the error
        self.bar.training = ""  # the last drawing keeps the bar, not a stale 'training' line
        if kind is not None:
            self.bar.update(self.task, stopped=True)
        self.bar.stop()

    def __call__(self, state: ProgressState) -> None:
        runs = f"{state.runs_done}/{state.runs_total} runs"
        if self.task is None:
            self.task = self.bar.add_task(state.command, total=1.0, runs=runs)
            self.bar.start()
        self.bar.training = f"{state.training} on {state.device}" if state.training != "done" else ""
        self.bar.update(self.task, completed=state.fraction, runs=runs)
        if state.measures is not None and self.on_epoch is not None:
            self.on_epoch(self.bar.console, dict(state.measures))

    def renderables(self) -> list[RenderableType]:
        """What the bar draws now (for tests: render at a given width)."""
        return list(self.bar.get_renderables())
