"""The whole job of ``actlab train`` and ``actlab compare`` as library calls: train -> folder -> statistics -> report.

The CLI calls these and only prints; a notebook calls the same::

    import actlab
    done = actlab.run_compare(actlab.load_config("cosine"), out="runs")
    done.path, done.report                    # the experiment folder and its report.md

Results go to *sinks* as runs finish: the experiment folder is one (``FolderSink``); anything with
``add(results)`` and ``close(status, error)`` (a live logger, say) can be passed in ``sinks=`` beside it.
Progress goes to a plain callable that receives a ``ProgressState``: the CLI draws it with rich, a
notebook can print it or ignore it.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import multiprocessing
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from actlab import __version__, checkpoint, config, experiment, folders, signals, storage
from actlab.config import Config
from actlab.engines import RunResult, RunSpec, one_thread
from actlab.experiment import Experiment

if TYPE_CHECKING:
    import torch

    from actlab import analysis, stats
    from actlab.tasks import Dataset

# actlab.stats and actlab.analysis (scipy: half a second or more) are imported where the statistics are
# computed, after training: a compare's first training step does not wait for them.
Ranking = tuple[list["stats.ActivationStats"], float]  # per-activation statistics, best first; the epochs threshold


@dataclass(frozen=True)
class ProgressState:
    """Where training stands, sent to the ``progress`` callable after every epoch of every stack."""

    command: str  # train | compare
    device: str  # what it trains on, e.g. 'cpu'
    runs_done: int  # runs finished (and saved)
    runs_total: int
    fraction: float  # share of all the training work done (run-epochs), 0..1
    training: str  # what is in training now: 'relu seed 3', or '230 runs stacked (23 activations)'
    measures: Mapping[str, float] | None = None  # the epoch's measures when one run trains alone


ProgressFn = Callable[[ProgressState], None]


class ResultSink(Protocol):
    """Where finished runs go as they come (the experiment folder, a live logger...)."""

    def add(self, results: Sequence[RunResult]) -> None:
        """Take runs that just finished."""

    def close(self, status: str, error: str | None = None) -> None:
        """No more runs: ``status`` is complete, or incomplete with the reason in ``error``."""


class FolderSink:
    """The experiment folder (``storage.ExperimentWriter``) as a result sink."""

    def __init__(self, writer: storage.ExperimentWriter) -> None:
        self.writer = writer

    @property
    def path(self) -> Path:
        return self.writer.path

    def add(self, results: Sequence[RunResult]) -> None:
        """Append the runs' metrics rows and rewrite the summary."""
        self.writer.add(results)

    def close(self, status: str, error: str | None = None) -> None:
        """Save the weights and mark the folder complete or incomplete."""
        self.writer.finish(status, error)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP while training: the runs finished so far are saved in ``path``, marked
    incomplete; ``exit_code`` is the shell's convention for that signal (130, 143, 129)."""

    def __init__(self, path: Path, runs_done: int, runs_total: int, reason: str = "interrupted (Ctrl-C)",
                 exit_code: int = 130, *, reporting: bool = False) -> None:
        # reporting: the signal came while the report was written, every run being saved already
        super().__init__(f"{reason} while writing the report: the runs are saved in {path}; `actlab report {path}` "
                         "writes it again" if reporting else f"{reason}: {runs_done} of {runs_total} runs saved in "
                         f"{path}; `actlab resume {path}` trains the rest")
        self.path, self.runs_done, self.runs_total, self.exit_code = path, runs_done, runs_total, exit_code


@dataclass
class Finished:
    """What ``run_train`` and ``run_compare`` return: the experiment in memory and where it was written."""

    experiment: Experiment  # config, data and every RunResult, in plan order
    path: Path  # the new experiment folder
    ranking: Ranking | None = None  # compare: the statistics over seeds
    report: Path | None = None  # compare: report.md, unless report=False
    study: Any = None  # compare over a grid: the fair answer (``actlab.studyrun.Answer``)


def run_train(cfg: Config, out: str | Path | None = None, progress: ProgressFn | None = None,
              sinks: Sequence[ResultSink] = (), tensorboard: bool = False) -> Finished:
    """``actlab train``: one run (model.activation, train.seed) into a new folder under ``out``
    (default: output.runs_dir); ``tensorboard``: also log it live to the folder's ``tensorboard/``."""
    cfg = _one_setting(_with_out(cfg, out))
    return _train_into_folder(cfg, "train", experiment.train_specs(cfg), progress, sinks, tensorboard)


def _one_setting(cfg: Config) -> Config:
    """``train`` runs the config's own setting: its folder's config.yaml holds no grid (with one, the folder
    read back as a grid study, whose summary rows name their setting, and was refused as damaged)."""
    if not cfg.compare.grid and cfg.compare.tuning_seeds is None:
        return cfg
    return dataclasses.replace(cfg, compare=dataclasses.replace(cfg.compare, grid={}, tuning_seeds=None))


def run_compare(cfg: Config, out: str | Path | None = None, report: bool = True, progress: ProgressFn | None = None,
                sinks: Sequence[ResultSink] = (), tensorboard: bool = False) -> Finished:
    """``actlab compare``: every activation x seed into a new folder under ``out`` (default: output.runs_dir),
    then stats.csv/json and, with ``report``, the figures and report.md; ``tensorboard``: every run also
    logged live to the folder's ``tensorboard/`` as it finishes."""
    cfg = _with_out(cfg, out)
    if cfg.compare.grid:  # a grid: every setting into one folder, the fair answer first (actlab.studyrun)
        from actlab import studyrun

        return studyrun.run_compare(cfg, report, progress, sinks, tensorboard)
    done = _train_into_folder(cfg, "compare", experiment.compare_specs(cfg), progress, sinks, tensorboard,
                              preload=_STATISTICS + (_REPORT if report else ()))
    from actlab import analysis, stats

    results = done.experiment.results
    with one_thread():  # tiny tensors from here on (see ``write_pages``)
        curves = {r.spec.run_id: r.history.get("full_loss", []) for r in results}
        reference = analysis.task_reference(cfg)  # the 'epochs to' threshold comes from the task, not the set compared
        done.ranking = stats.rank([storage.run_summary(r) for r in results], curves, reference=reference)
        if report:
            stored = storage.load_experiment(done.path)
            stored.table = storage.metrics_table(cfg, results)  # the numbers of metrics.csv, without reading it back
            weights = {r.spec.run_id: r.state for r in results}  # what weights.pt holds, without reading it back
            done.report = _report(stored, done.ranking, weights, reference=reference)
        else:
            _against_best(done.path, done.ranking, reference)
    return done


def rank(stored: storage.StoredExperiment) -> Ranking:
    """The statistics over seeds of a folder read back (what ``actlab show`` prints; over a grid: at the
    setting its report's body shows)."""
    if stored.config.compare.grid:
        from actlab import studyrun

        stored = studyrun.fixed_view(stored)
    from actlab import analysis, stats

    with one_thread():
        return stats.summarise(stored.summary, stored.curves(), reference=analysis.task_reference(stored.config))


def write_report(folder: str | Path, notes: list[str] | None = None, svg: bool = False) -> Path:
    """(Re)write stats.csv/json, the figures (as SVG too with ``svg``, or where the folder has SVGs already) and
    report.md of an experiment folder from its files; the report's path. What reading tolerated (a cut last
    row) is appended to ``notes``."""
    stored = storage.load_experiment(Path(folder))
    if not stored.summary:
        raise storage.StorageError(f"'{folder}' holds no finished run yet: nothing to report")
    folders.check_writable(stored.path)  # no write through a link out of the folder
    folders.check_config_unchanged(stored)  # the statistics read it: the config the runs were trained with
    with one_thread():  # tiny tensors (see ``write_pages``)
        path = _rewrite_report(stored, svg)
    if notes is not None:
        notes.extend(stored.notes)  # after metrics.csv was read: what reading it tolerated
    return path


def _rewrite_report(stored: storage.StoredExperiment, svg: bool) -> Path:
    """``write_report``'s work on a folder read back: stats.csv/json, the figures, report.md; its path."""
    from actlab import analysis, stats

    # damaged weights: one error before anything is written (and the weights read once, for the report too)
    weights = analysis.saved_weights(stored)
    folders.check_weights(stored, weights)  # weights that do not fit the config's net: one line, not torch's
    # a folder with SVGs (an earlier --svg) gets them redrawn too: none is deleted, none left showing an old figure
    svg = svg or any(p.with_suffix(".png").is_file() for p in stored.path.glob("*.svg"))  # a figure's SVG
    if stored.config.compare.grid:
        from actlab import studyrun

        path = studyrun.write_report(stored, svg, weights)
    else:
        reference = analysis.task_reference(stored.config)
        ranked = stats.rank(stored.summary, stored.curves(), reference=reference)
        path = _report(stored, ranked, weights, svg, reference)
    return path


class ResumeRefused(storage.StorageError):
    """An experiment folder ``actlab resume`` will not continue, with the reason and what to do instead."""


def check_resumable(folder: str | Path, force: bool = False) -> storage.StoredExperiment:
    """The folder read back (nothing imported, nothing written), if ``resume`` can continue it: incomplete,
    its config valid and unchanged since it started, written by this actlab version. ``force``: also a
    folder marked running (its process was killed outright)."""
    stored = storage.load_experiment(Path(folder))  # a config that does not validate: ConfigError
    folders.check_writable(stored.path)  # no write or append through a link out of the folder
    path, status = stored.path, stored.status.get("status")
    replay = f"start again with `actlab {stored.status.get('command', 'compare')} --config {path / 'config.yaml'}`"
    if status == "complete":
        raise ResumeRefused(f"'{path}' is complete ({stored.status.get('runs_done', '?')} runs): nothing to resume")
    if status == "running" and not force:
        raise ResumeRefused(f"'{path}' is marked running: another actlab may still be writing it; if its process "
                            "was killed, resume it with --force")
    if stored.status.get("command") not in ("train", "compare"):
        raise ResumeRefused(f"'{path}' holds a {stored.status.get('command', 'unknown')!r} experiment: resume "
                            "continues only train and compare")
    if stored.config.compare.grid:
        raise ResumeRefused(f"'{path}' is a grid study (compare.grid): resume does not continue grid studies yet; "
                            f"{replay}")
    version = stored.env.get("actlab")
    if not isinstance(version, str):  # env.json missing or damaged: which actlab wrote it is unknown
        raise ResumeRefused(f"'{path / 'env.json'}' does not say which actlab wrote the folder (missing or damaged): "
                            f"resume cannot tell whether it would continue the same computation; {replay}")
    if version != __version__:
        raise ResumeRefused(f"'{path}' was written by actlab {version}, this is actlab {__version__}: resume it with "
                            f"actlab {version}, or {replay}")
    if folders.config_changed(stored):
        raise ResumeRefused(f"'{path / 'config.yaml'}' was changed after the experiment started: resuming would mix "
                            f"two experiments; restore it, or {replay}")
    return stored


def resume(folder: str | Path, progress: ProgressFn | None = None, sinks: Sequence[ResultSink] = (), *,
           report: bool = True, force: bool = False) -> Finished:
    """``actlab resume``: train what an interrupted experiment folder lacks (runs without a summary row; a
    stack in flight from its checkpoint) into the same folder, then, for compare, stats.csv/json and the
    report: the files an uninterrupted run writes, bit for bit (timings aside). ``Finished.experiment``
    holds the runs trained by this call. Refusals (``check_resumable``) change nothing."""
    stored = check_resumable(folder, force)
    command = stored.status["command"]
    cfg = config.load_config(stored.path / "config.yaml")  # now the import paths it names are imported
    # as the folder reads: a config from before train.diagnostics_dense measured every epoch, and so will its rest
    dense = stored.config.train.diagnostics_dense
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, diagnostics_dense=dense))
    specs = experiment.train_specs(cfg) if command == "train" else experiment.compare_specs(cfg)
    device = experiment.preflight(cfg)  # a missing GPU or ray: one line, the folder untouched
    data = experiment.dataset(cfg)
    # unreadable checkpoints, or ones without the optimizer's buffers: refused here, before anything is written
    checkpoint.Checkpoints(stored.path, cfg.train.checkpoint_seconds, (cfg.train.optimizer, cfg.train.momentum))
    writer = storage.ExperimentWriter.reopen(stored, command, [s.run_id for s in specs])
    saved = set(writer.saved_runs)
    done = _train(cfg, command, [s for s in specs if s.run_id not in saved], data, device, writer, progress, sinks)
    if command == "compare":
        from actlab import analysis, stats

        stored = storage.load_experiment(done.path)
        with one_thread():  # tiny tensors (see ``write_pages``)
            reference = analysis.task_reference(cfg)
            done.ranking = stats.rank(stored.summary, stored.curves(), reference=reference)
            if report:
                done.report = _report(stored, done.ranking, reference=reference)
            else:
                _against_best(done.path, done.ranking, reference)
    return done


# --------------------------------------------------------------------------------------------------


def _with_out(cfg: Config, out: str | Path | None) -> Config:
    """``out`` written into the config, so the folder's config.yaml says where it went."""
    if out is None:
        return cfg
    return dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, runs_dir=str(out)))


def _train_into_folder(cfg: Config, command: str, specs: list[RunSpec], progress: ProgressFn | None,
                       sinks: Sequence[ResultSink], tensorboard: bool = False, preload: Sequence[str] = ()) -> Finished:
    """Train ``specs`` into a new experiment folder and ``sinks``; Ctrl-C or a crash keeps what finished.
    ``preload``: modules needed after training, imported meanwhile if worker processes train (``_Preload``)."""
    device = experiment.preflight(cfg, tensorboard)  # before the folder: a missing GPU, ray or tensorboard
    data = experiment.dataset(cfg)
    writer = storage.ExperimentWriter.create(cfg, command, [s.run_id for s in specs], device)
    more = _tensorboard_sink(cfg) if tensorboard else None
    return _train(cfg, command, specs, data, device, writer, progress, sinks, _Preload(preload), more)


def _tensorboard_sink(cfg: Config) -> Callable[[Path], list[ResultSink]]:
    """The TensorBoard sink of a new folder, made inside ``_train`` (a failure or a signal there leaves the
    folder marked incomplete, not running)."""
    from actlab import tensorboard as tb

    return lambda path: [tb.TensorBoardSink(path / tb.DEFAULT_DIR, cfg)]


def _train(cfg: Config, command: str, specs: list[RunSpec], data: Dataset, device: torch.device,
           writer: storage.ExperimentWriter, progress: ProgressFn | None, sinks: Sequence[ResultSink],
           preload: _Preload | None = None, more_sinks: Callable[[Path], list[ResultSink]] | None = None) -> Finished:
    """Train ``specs`` into ``writer``'s folder and ``sinks`` (and ``more_sinks(folder)``'s), stacks checkpointed
    into the folder as they train; Ctrl-C, a signal or a crash from here on keeps what finished (and the
    checkpoints: ``actlab resume`` goes on from them), the folder marked incomplete."""
    folder = FolderSink(writer)
    targets: list[ResultSink] = [folder, *sinks]
    results: list[RunResult] = []
    preload = preload or _Preload(())
    try:
        targets += more_sinks(writer.path) if more_sinks is not None else []
        checkpoints = checkpoint.Checkpoints(writer.path, cfg.train.checkpoint_seconds)
        tracker = _Tracker(cfg, command, specs, str(device), progress, checkpoints.epochs_done())  # calls progress

        def on_epochs(n: int, measures: Mapping[str, float] | None) -> None:
            preload.start()  # the first progress: worker processes, if any, are training by now
            tracker.on_epochs(n, measures)

        # SIGTERM and SIGHUP as Ctrl-C; closing the generator ends its worker processes at once; then the
        # preload's imports are waited for (this thread imports next, and a later fork must not meet them)
        with preload, signals.terminate_as_interrupt(), \
                closing(experiment.run(cfg, specs, data, device, on_epochs, checkpoints)) as chunks:
            for chunk in chunks:
                results.extend(chunk)
                for sink in targets:
                    sink.add(chunk)
                checkpoints.discard(writer.saved_runs)  # their runs are in the folder now
                tracker.on_runs(len(results))
    except KeyboardInterrupt as stop:
        _close(targets, "incomplete", signals.reason(stop))
        raise Interrupted(folder.path, len(writer.saved_runs), len(writer.run_order), signals.reason(stop),
                          signals.exit_code(stop)) from None
    except BaseException as exc:
        _close(targets, "incomplete", f"{type(exc).__name__}: {exc}")
        raise
    _close(targets, "complete")
    checkpoints.clear()
    order = {spec.run_id: i for i, spec in enumerate(specs)}
    results.sort(key=lambda r: order[r.spec.run_id])
    return Finished(Experiment(cfg, data, results), folder.path)


# What a compare imports after training: the statistics (scipy), and the report's figures (matplotlib).
_STATISTICS = ("actlab.stats", "actlab.analysis")
_REPORT = ("actlab.plots", "actlab.cdplot", "actlab.report", "actlab.html")


class _Preload:
    """Imports modules needed after training (about a second of scipy and matplotlib) in a thread of this
    process while worker processes train, when this process has nothing else to do but wait.

    Started at the first progress report, and only if worker processes exist by then (they were forked
    before the thread starts: forking while a thread imports could leave the child a held import lock); in
    a process that trains itself, the thread would take the interpreter from the training: not started."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = list(modules)
        self.thread: threading.Thread | None = None
        self.decided = not self.modules

    def start(self) -> None:
        if self.decided:
            return
        self.decided = True
        if not multiprocessing.active_children():
            return
        self.thread = threading.Thread(target=self._imports, name="actlab-preload", daemon=True)
        self.thread.start()

    def _imports(self) -> None:
        # At normal priority: the import then shares the two cores with the workers, and the single-threaded
        # end of the command (results, statistics, report) no longer waits for it. Default compare with the
        # report, 3 alternating runs each on the quiet 2-core machine: 6.19-6.29 s at normal priority,
        # 6.45-6.50 s at the lowest (os.setpriority 19 on this thread), 6.56-6.62 s without the thread.
        gc.freeze()
        try:
            for name in self.modules:
                try:
                    importlib.import_module(name)
                except Exception:  # noqa: BLE001  the main thread's own import says what is wrong
                    return
        finally:
            gc.unfreeze()

    def __enter__(self) -> _Preload:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread is not None:
            self.thread.join()


def _close(sinks: Sequence[ResultSink], status: str, error: str | None = None) -> None:
    for sink in sinks:
        sink.close(status, error)


class _Tracker:
    """Turns the engines' run-epoch counts into ``ProgressState``s (runs done, share of work, what trains)."""

    def __init__(self, cfg: Config, command: str, specs: list[RunSpec], device: str, fn: ProgressFn | None,
                 run_epochs: int = 0) -> None:
        self.fn, self.specs, self.epochs = fn, specs, cfg.train.epochs
        self.stacked = cfg.train.engine == "batched" and len(specs) > 1
        self.run_epochs = run_epochs  # resumed stacks: the run-epochs their checkpoints hold
        self.state = ProgressState(command, device, 0, len(specs), 0.0, self._training(0))
        if fn is not None:
            fn(self.state)

    def _training(self, runs_done: int) -> str:
        if not self.specs:  # a resumed folder that lacked no run
            return "done"
        if self.stacked:
            left = len(self.specs) - runs_done
            acts = len({s.activation for s in self.specs})
            return f"{left} runs stacked ({acts} activation{'s' * (acts > 1)})" if left else "done"
        # one run at a time, in plan order: the run-epoch count says which one trains
        index = min(self.run_epochs // self.epochs, len(self.specs) - 1)
        spec = self.specs[index]
        return f"{spec.activation} seed {spec.seed}"

    def on_epochs(self, n: int, measures: Mapping[str, float] | None) -> None:
        self.run_epochs += n
        fraction = min(1.0, self.run_epochs / (self.epochs * len(self.specs)))
        self._send(fraction=fraction, measures=measures)

    def on_runs(self, runs_done: int) -> None:
        self._send(runs_done=runs_done, measures=None)

    def _send(self, **changes) -> None:
        self.state = dataclasses.replace(self.state, **changes)
        self.state = dataclasses.replace(self.state, training=self._training(self.state.runs_done))
        if self.fn is not None:
            self.fn(self.state)


def _against_best(folder: Path, ranked: Ranking, reference: stats.Reference) -> None:
    """The comparisons with #1 of runs in ``stats.rank``'s order (``stats.against_best``, in place), and the
    folder's stats.csv/json from them."""
    from actlab import stats

    stats.against_best(ranked[0])
    storage.write_stats(folder, stats.rows(*ranked, reference))


def _report(stored: storage.StoredExperiment, ranked: Ranking, weights: analysis.Weights | None = None,
            svg: bool = False, reference: stats.Reference | None = None) -> Path:
    """stats.csv/json, figures and report.md in an experiment folder, from its data, its runs in ranking order
    (``stats.rank``: completed here by ``stats.against_best``), and its weights.pt read back and the task's
    reference losses, if the caller has them.

    The figures show the ranking only, never a comparison with #1: their processes are forked first and the
    comparisons (scipy's bootstrap and exact tests: about 0.12 s of CPU on the default compare, which the figures
    no longer wait for) computed while they draw."""
    from actlab import analysis

    reference = analysis.task_reference(stored.config) if reference is None else reference
    started: list[bool] = []

    def compare_with_best() -> None:
        started.append(True)
        _against_best(stored.path, ranked, reference)

    try:
        return write_pages(analysis.analyse(stored, ranked, weights, reference), stored.path, svg=svg,
                           meanwhile=compare_with_best)
    finally:
        if not started:  # stopped or failed before the figures started: the folder gets its statistics anyway
            with signals.held(drop=True), suppress(OSError):  # the first problem is the one to tell
                _against_best(stored.path, ranked, reference)


@contextmanager
def _reporting(folder: Path, runs: int) -> Iterator[None]:
    """While a folder's report is written (its ``runs`` all saved): Ctrl-C or SIGTERM is ``Interrupted`` saying
    so and how to write the report again; an OSError not of our own files is one StorageError with the fix."""
    try:
        yield
    except KeyboardInterrupt as stop:  # the figures being drawn are finished, the rest not
        if isinstance(stop, Interrupted):
            raise
        raise Interrupted(folder, runs, runs, signals.reason(stop), signals.exit_code(stop), reporting=True) from None
    except OSError as exc:  # e.g. the figures' processes could not be started (fork: too many processes)
        if isinstance(exc, storage.StorageError):  # our own files (figures included) say it already
            raise
        fix = "free some space, then" if exc.errno in storage.DISK_FULL else "then run"
        raise storage.StorageError(f"cannot write the report in {folder}: {exc.strerror or exc}; the runs are "
                                   f"saved: {fix} `actlab report {folder}`") from None


def write_pages(an: analysis.Analysis, folder: Path, *, svg: bool = False, study: Any = None,
                more_figures: Callable[[], dict[str, Path]] | None = None,
                rows: Callable[[list[dict]], list[dict]] | None = None,
                meanwhile: Callable[[], object] | None = None) -> Path:
    """The figures, stats.csv with the report's numbers, report.md and report.html of an analysis in
    ``folder``; report.md's path. The figures are drawn in forked processes while the claims are checked
    (once, for stats.csv and report.md) and ``more_figures()`` draws its own here (a grid's: name -> PNG);
    ``rows`` turns the report's stats rows into the folder's (a grid adds its columns); ``study``: a grid's
    fair answer, which report.md leads with; ``meanwhile()``: the caller's work that the figures do not need
    and the claims do, done once the figures' processes are started (before the claims are checked).

    At one torch thread (``one_thread``, as the engines and the forked figure processes): the tensors are tiny,
    and at two threads OpenMP's waiting threads cost more CPU than the work (``diagnostics.is_bounded`` of the
    default 23 activations: 47 ms of CPU at 2 threads, 4 ms at one), CPU the figure processes drawing
    meanwhile on the same cores lack."""
    saved = an.stored.status.get("runs_done", len(an.stored.summary))  # all the folder's runs (a grid's view: too)
    with _reporting(folder, saved), one_thread():
        return _write_pages(an, folder, svg, study, more_figures, rows, meanwhile)


def _write_pages(an: analysis.Analysis, folder: Path, svg: bool, study: Any,
                 more_figures: Callable[[], dict[str, Path]] | None,
                 rows: Callable[[list[dict]], list[dict]] | None, meanwhile: Callable[[], object] | None) -> Path:
    from actlab import cdplot, html, plots, report  # matplotlib is only needed here

    cd = {"critical_difference": lambda an: cdplot.cd_diagram(an.stats, an.overview)}
    with plots.draw_all(an, folder, cd, svg=svg) as drawing:  # figures drawn in forked processes meanwhile
        if meanwhile is not None:
            meanwhile()
        verdicts = report.checks(an)
        found = report.stats_rows(an, verdicts)  # stats.csv: also the report's numbers
        storage.write_stats(folder, rows(found) if rows is not None else found)
        extra = more_figures() if more_figures is not None else {}
        figures = drawing.result() | extra
    text = report.build(an, figures, study=study, verdicts=verdicts)
    html.write_html(folder, text, figures)  # report.html: the same page, figures inline, self-contained
    return storage.write_text(folder / "report.md", text)
