"""A comparison over a grid of settings, wired: one command, one folder, one progress bar, one report.

``actlab compare --grid train.lr=1e-4,1e-3,1e-2`` (or ``compare.grid:`` in the config) trains every grid
point x activation x seed into ONE experiment folder. Points that differ only in per-run keys (the learning
rate, the initialisation, activation options) share a stack of the batched engine; per-stack keys (sizes,
data, batch size, epochs, optimizer...) are separate calls of the engines, one after the other, under one
progress bar (``actlab.grid`` decides which is which). Run ids carry the point: ``relu/lr=0.003/seed3``;
metrics.csv, summary.csv/json and stats.csv carry every grid key as a column of its own.

The answer (``answer``) is ``actlab.study``'s fair ranking: each activation at its own best setting chosen
on the tuning seeds, reported on the evaluation seeds and tested there with ``actlab.stats`` (paired by
seed, Holm-adjusted), beside the ranking at the config's own setting and the robustness views over the
grid. The report's body (ranking, claims, diagnostics, figures) is the experiment at one setting: the
config's own when it is a grid point, else the first grid point (a *view* of the folder, ``view``).

Pure compute here except ``run_compare`` and ``write_report``, which write the folder through
``actlab.storage`` (as ``actlab.workflow`` does for a plain comparison).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actlab import analysis, budget, devices, experiment, grid, signals, stats, storage, study
from actlab.config import Config
from actlab.engines import RunResult, RunSpec

if TYPE_CHECKING:
    from actlab.workflow import Finished, ProgressFn, ResultSink

Row = Mapping[str, Any]


# --- the plan: points, stacks, tagged run specs ----------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A grid experiment before training: the config (``compare.grid`` set), its axes, points and stacks."""

    config: Config
    axes: list[grid.Axis]
    points: list[grid.Point]
    stacks: list[grid.Stack]

    @property
    def keys(self) -> list[str]:
        """The grid keys: the extra columns of metrics, summary and stats."""
        return grid.columns(self.axes)

    def tag(self, values: Mapping[str, Any]) -> str:
        """A point's part of its run ids: ``lr=0.003`` (the key's last part, unless two axes share it)."""
        last = [k.rsplit(".", 1)[-1] for k in self.keys]
        names = {k: (s if last.count(s) == 1 else k) for k, s in zip(self.keys, last)}
        return ",".join(f"{names[k]}={grid.plain_value(v)}".replace(" ", "") for k, v in values.items())

    def specs(self, stack: grid.Stack) -> list[RunSpec]:
        """Every run of a stack: each point's activations x seeds (as a plain comparison builds them), tagged."""
        return [dataclasses.replace(spec, tag=self.tag(p.values)) if self.axes else spec
                for p in stack.points for spec in experiment.compare_specs(p.config)]

    def grid_values(self) -> dict[str, dict[str, Any]]:
        """run id -> its grid values (lists as lists): the grid columns of every row."""
        return {s.run_id: plain(p.values) for st in self.stacks for p in st.points
                for s in self.specs(grid.Stack(st.settings, (p,)))}


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Grid values as JSON reads them back (tuples as lists), so in-memory and stored rows compare equal."""
    return {k: grid.plain_value(v) for k, v in values.items()}


def plan_of(cfg: Config, imports: bool = True) -> Plan:
    """The plan of a config's ``compare.grid`` (no grid: one stack of one point, the config itself)."""
    axes, points = grid.of_config(cfg, imports)
    return Plan(cfg, axes, points, grid.stacks(points, axes))


# --- dry run ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackPlan:
    """One stack as the dry run prints it, with its calibrated time estimate."""

    settings: dict[str, Any]
    sizes: list[int]
    points: int
    runs: int
    steps: int  # optimizer steps, summed over its runs
    seconds: float  # estimated wall time


@dataclass(frozen=True)
class DryRun:
    """What ``--dry-run`` prints: per stack and in total; memory from ``actlab.budget`` (``free``: None if unknown)."""

    stacks: list[StackPlan]
    workers: int
    memory: int
    free: int | None
    calibration: str

    @property
    def runs(self) -> int:
        return sum(s.runs for s in self.stacks)

    @property
    def steps(self) -> int:
        return sum(s.steps for s in self.stacks)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stacks)


CALIBRATION_EPOCHS = 2
CALIBRATION_RUNS = 256  # at most this many runs of a stack are timed (a stack of the engine's usual width)


def dry_run(cfg: Config) -> DryRun:
    """The plan of ``cfg`` with each stack's wall time from training a slice of it for two epochs (in memory,
    nothing written) and scaling by runs, epochs and the workers; memory from ``budget.estimate``."""
    plan = plan_of(cfg)
    total = sum(len(st.points) for st in plan.stacks) * len(cfg.compared_activations()) * cfg.compare.seeds
    workers = cfg.train.workers or devices.available_cores()
    rows, memory = [], 0
    for st, info in zip(plan.stacks, grid.plan(plan.stacks)):
        memory = max(memory, budget.check(st.config, total).total)  # refuses what cannot fit, as training would
        seconds = _calibrate(st.config, plan.specs(st), workers)
        rows.append(StackPlan(info["settings"], info["sizes"], info["points"], info["runs"], info["steps"], seconds))
    return DryRun(rows, workers, memory, budget.available(), f"{CALIBRATION_EPOCHS} epochs of up to "
                  f"{CALIBRATION_RUNS} runs per stack, scaled")


def _calibrate(cfg: Config, specs: Sequence[RunSpec], workers: int) -> float:
    """Seconds ``specs`` take: a slice of them trained for two epochs at one worker, scaled (rough, high side:
    it includes the start-up of each engine call)."""
    from actlab.engines.batched import MIN_RUNS_PER_WORKER

    chunks = max(1, min(workers, len(specs) // MIN_RUNS_PER_WORKER))  # the workers the batched engine's split fills
    sample = list(specs[: min(len(specs), CALIBRATION_RUNS, math.ceil(len(specs) / chunks))])
    short = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=CALIBRATION_EPOCHS, workers=1))
    data = experiment.dataset(short)
    start = time.perf_counter()
    for _ in experiment.run(short, sample, data, devices.resolve_device(cfg.device)):
        pass
    per_run_epoch = (time.perf_counter() - start) / (len(sample) * CALIBRATION_EPOCHS)
    return per_run_epoch * len(specs) * cfg.train.epochs / chunks


# --- training into one folder -----------------------------------------------------------------------------


def run_compare(cfg: Config, report: bool = True, progress: ProgressFn | None = None,
                sinks: Sequence[ResultSink] = (), tensorboard: bool = False) -> Finished:
    """``actlab compare`` over a grid: every stack into one new folder, stats per setting, the fair answer, and
    with ``report`` the figures and report.md (``tensorboard``: every run also logged live to the folder's
    ``tensorboard/``). Returns ``workflow.Finished`` (``study``: the answer)."""
    from actlab import workflow

    plan = plan_of(cfg)
    path, results, data = _train(plan, progress, sinks, tensorboard)
    values = plan.grid_values()
    rows = [storage.with_grid(storage.run_summary(r), values[r.spec.run_id]) for r in results]
    columns = storage.grid_metric_columns([p.config for p in plan.points], plan.keys)
    table = storage.metrics_table(cfg, results, values, columns)
    done = workflow.Finished(experiment.Experiment(cfg, data, results), path)
    stored = storage.load_experiment(path)
    stored.table = table  # the numbers of metrics.csv, without reading them back
    weights = {r.spec.run_id: r.state for r in results}  # what weights.pt holds, without reading it back
    done.study, done.ranking = _finish(stored, plan, rows, report, weights=weights)
    if report:
        done.report = path / "report.md"
    return done


def _train(plan: Plan, progress: ProgressFn | None, sinks: Sequence[ResultSink], tensorboard: bool = False,
           ) -> tuple[Path, list[RunResult], Any]:
    """Every stack's runs, one engine call per stack, into one new folder and ``sinks``; Ctrl-C keeps what finished."""
    from actlab import workflow

    cfg = plan.config
    device = experiment.preflight(cfg, tensorboard)  # before the folder: a missing GPU, ray or tensorboard
    batches = [(st, plan.specs(st)) for st in plan.stacks]
    n_runs = sum(len(specs) for _, specs in batches)
    for st, _ in batches:
        budget.check(st.config, n_runs)
    datasets = [experiment.dataset(st.config) for st, _ in batches]
    order = [s.run_id for _, specs in batches for s in specs]
    columns = storage.grid_metric_columns([p.config for p in plan.points], plan.keys)
    writer = storage.ExperimentWriter.create(cfg, "compare", order, device, grid=plan.grid_values(), columns=columns)
    folder = workflow.FolderSink(writer)
    targets = [folder, *sinks]
    results: list[RunResult] = []
    try:  # from the folder's making on: a signal or a failure leaves it marked incomplete, never running
        if tensorboard:
            from actlab import tensorboard as tb

            targets.append(tb.TensorBoardSink(folder.path / tb.DEFAULT_DIR, cfg, plan.grid_values()))
        tracker = _Tracker(str(device), [(len(specs), st.config.train.epochs) for st, specs in batches], progress)
        with signals.terminate_as_interrupt():
            for (st, specs), data in zip(batches, datasets):
                with closing(experiment.run(st.config, specs, data, device, tracker.on_epochs)) as chunks:
                    for chunk in chunks:
                        results.extend(chunk)
                        for sink in targets:
                            sink.add(chunk)
                        tracker.on_runs(len(results))
    except KeyboardInterrupt as stop:
        workflow._close(targets, "incomplete", signals.reason(stop))
        raise workflow.Interrupted(folder.path, len(results), n_runs, signals.reason(stop),
                                   signals.exit_code(stop)) from None
    except BaseException as exc:
        workflow._close(targets, "incomplete", f"{type(exc).__name__}: {exc}")
        raise
    workflow._close(targets, "complete")
    position = {run_id: i for i, run_id in enumerate(order)}
    results.sort(key=lambda r: position[r.spec.run_id])
    return folder.path, results, datasets[0]


class _Tracker:
    """The engines' run-epoch counts over every stack as one ``workflow.ProgressState`` stream."""

    def __init__(self, device: str, stacks: Sequence[tuple[int, int]], fn: ProgressFn | None) -> None:
        from actlab.workflow import ProgressState

        self.fn, self.runs = fn, sum(n for n, _ in stacks)
        self.work = sum(n * epochs for n, epochs in stacks)
        self.done = 0
        self.state = ProgressState("compare", device, 0, self.runs, 0.0, self._training(0))
        if fn is not None:
            fn(self.state)

    def _training(self, runs_done: int) -> str:
        left = self.runs - runs_done
        return f"{left} runs of a grid, stack by stack" if left else "done"

    def on_epochs(self, n: int, measures: Mapping[str, float] | None) -> None:
        self.done += n
        self._send(fraction=min(1.0, self.done / max(self.work, 1)), measures=None)

    def on_runs(self, runs_done: int) -> None:
        self._send(runs_done=runs_done, training=self._training(runs_done), measures=None)

    def _send(self, **changes) -> None:
        self.state = dataclasses.replace(self.state, **changes)
        if self.fn is not None:
            self.fn(self.state)


# --- the answer -------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """The fair answer over a grid, with the fixed-setting ranking and the robustness views beside it."""

    keys: tuple[str, ...]
    fair: study.FairRanking
    fair_stats: list[stats.ActivationStats]  # the evaluation seeds' losses at each chosen setting, tested
    fixed: dict[str, Any] | None  # the config's own setting, when it is a grid point
    shown: dict[str, Any]  # the setting of the report's body: ``fixed``, else the first grid point
    shown_stats: list[stats.ActivationStats]  # the plain ranking at ``shown``
    robust_on: str  # the loss of the robustness views (the reported one, over every seed)
    mean_ranks: dict[str, float]
    expected: dict[str, float]
    settings: int


def answer(rows: Sequence[Row], keys: Sequence[str], tuning_seeds: Sequence[int] | None,
           fixed: Mapping[str, Any] | None, shown: Mapping[str, Any], shown_stats: list[stats.ActivationStats],
           ) -> Answer:
    """The fair ranking of ``rows`` (summary rows with grid columns), tested on its evaluation seeds."""
    fair = study.fair_ranking(rows, keys, tuning_seeds)
    tested = [{"run": f"{r.activation}/seed{s}", "activation": r.activation, "seed": s,
               "status": "ok" if math.isfinite(v) else "diverged", "final_loss": v, "best_loss": v}
              for r in fair.rows for s, v in r.evaluation.items()]
    fair_stats, _ = stats.summarise(tested, {}, threshold=math.nan)
    column = fair.reported_on
    return Answer(tuple(keys), fair, fair_stats, dict(fixed) if fixed is not None else None, dict(shown),
                  shown_stats, column, study.mean_ranks(rows, keys, column), study.expected_loss(rows, keys, column),
                  len(study.settings_of(rows, keys)))


def setting_text(setting: Mapping[str, Any]) -> str:
    """``train.lr=0.003, model.depth=2``."""
    return ", ".join(f"{k}={grid.plain_value(v)}" for k, v in setting.items())


def seeds_text(seeds: Sequence[int]) -> str:
    """``0-9`` for a run of seeds, else the list."""
    s = list(seeds)
    return f"{s[0]}-{s[-1]}" if len(s) > 2 and s == list(range(s[0], s[-1] + 1)) else ", ".join(map(str, s))


NOT_OWN = "another grid point (the config's own setting is not on the grid, or has no finished run)"
LOSS_NAMES = {"final_val_loss": "validation loss", "final_test_loss": "test loss",
              "final_loss": "training loss (full training set)"}


def headline(ans: Answer) -> list[str]:
    """The fair answer in three lines: the rule, the best with what cannot be told from it, the fixed setting."""
    f, best = ans.fair, ans.fair_stats[0] if ans.fair_stats else None
    chosen = {r.activation: r.choice.setting for r in f.rows}
    rule = (f"Fair answer: each activation at its own best {', '.join(ans.keys)} (of {ans.settings} settings), "
            f"chosen on tuning seeds {seeds_text(f.split.tuning)} by median {LOSS_NAMES[f.chosen_on]}, reported "
            f"on evaluation seeds {seeds_text(f.split.evaluation)} by {LOSS_NAMES[f.reported_on]}.")
    if best is None:
        return [rule, "No finished run: nothing to rank.", ""]
    by = {v: [s.activation for s in ans.fair_stats[1:] if s.verdict == v] for v in
          ("equivalent", "not separable", "worse", "better")}
    names = lambda xs: ", ".join(xs) or "none"  # noqa: E731
    second = (f"Best: {best.activation} at {setting_text(chosen[best.activation])}, median "
              f"{LOSS_NAMES[f.reported_on]} {best.final.median:.4g}; as good as it (TOST): {names(by['equivalent'])}; "
              f"not separable from it: {names(by['not separable'])}; significantly worse: {len(by['worse'])} of "
              f"{len(ans.fair_stats) - 1} (paired Wilcoxon on the evaluation seeds, Holm-adjusted).")
    ov = stats.overview(ans.fair_stats)
    if ov.powerless:
        second += (f" With {ov.seeds} evaluation seeds nothing can be significant ({ov.seeds_needed} needed).")
    where = "the config's own setting" if ans.fixed is not None else NOT_OWN
    top = ans.shown_stats[0].activation if ans.shown_stats else "-"
    third = (f"At {where}, {setting_text(ans.shown)}, on every seed, by final training loss: best {top} "
             "(the ranking below).")
    return [rule, second, third]


# --- reading back: views, stats per setting, the report ---------------------------------------------------


def shown_setting(cfg: Config, plan: Plan) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the config's own setting if it is a grid point, the setting the report's body shows)."""
    fixed = grid.base_setting(cfg, plan.axes, plan.points)
    fixed = plain(fixed) if fixed is not None else None
    return fixed, fixed if fixed is not None else plain(plan.points[0].values)


def _with_runs(rows: Sequence[Row], plan: Plan, setting: dict[str, Any]) -> dict[str, Any]:
    """``setting`` if it has finished runs, else the first grid point that has (an interrupted grid)."""
    for values in [setting] + [plain(p.values) for p in plan.points]:
        if study.rows_at(rows, values):
            return values
    return setting


def point_of(plan: Plan, setting: Mapping[str, Any]) -> grid.Point:
    """The grid point with these values."""
    want = repr(plain(setting))
    return next(p for p in plan.points if repr(plain(p.values)) == want)


def view(stored: storage.StoredExperiment, plan: Plan, setting: Mapping[str, Any]) -> storage.StoredExperiment:
    """The folder restricted to one setting's runs, with that point's config: what the plain report reads."""
    runs = {r["run"] for r in study.rows_at(stored.summary, setting)}
    table = stored.metrics()
    keep = [i for i, run in enumerate(table.get("run", [])) if run in runs]
    sub = {k: [v[i] for i in keep] for k, v in table.items()}
    summary = [r for r in stored.summary if r["run"] in runs]
    return dataclasses.replace(stored, config=point_of(plan, setting).config, summary=summary, table=sub,
                               notes=stored.notes)


def stats_rows(stored: storage.StoredExperiment, plan: Plan, shown: Mapping[str, Any], shown_rows: list[dict],
               ) -> list[dict[str, Any]]:
    """stats.csv over a grid: per setting (grid columns first) the plain per-activation statistics; the shown
    setting's rows are the report's (``shown_rows``, with its claims and diagnostics)."""
    curves = stored.curves()
    out = []
    for point in plan.points:
        values = plain(point.values)
        if repr(values) == repr(plain(shown)):
            rows = shown_rows
        else:
            summary = study.rows_at(stored.summary, values)
            if not summary:
                continue
            reference = analysis.task_reference(point.config)
            rows = stats.rows(*stats.summarise(summary, curves, reference=reference), reference)
        out += [{**values, **row} for row in rows]
    columns = list(dict.fromkeys(k for row in out for k in row))
    return [{k: row.get(k, math.nan) for k in columns} for row in out]


def fixed_view(stored: storage.StoredExperiment) -> storage.StoredExperiment:
    """A grid folder seen at its shown setting (``actlab show`` ranks that)."""
    plan = plan_of(stored.config, imports=False)
    return view(stored, plan, _with_runs(stored.summary, plan, shown_setting(stored.config, plan)[1]))


def _finish(stored: storage.StoredExperiment, plan: Plan, rows: Sequence[Row], report: bool, svg: bool = False,
            weights: analysis.Weights | None = None) -> tuple[Answer, tuple[list[stats.ActivationStats], float]]:
    """Stats per setting, the fair answer and (with ``report``) figures and report.md of a grid folder
    (``weights``: weights.pt read back, if the caller has it)."""
    fixed, shown = shown_setting(stored.config, plan)
    shown = _with_runs(stored.summary, plan, shown)
    fixed = fixed if fixed == shown else None
    seen = view(stored, plan, shown)
    reference = analysis.task_reference(seen.config)
    ranked = stats.summarise(seen.summary, seen.curves(), reference=reference)
    ans = answer(rows, plan.keys, stored.config.compare.tuning_seeds, fixed, shown, ranked[0])
    storage.write_study(stored.path, fair_rows(ans))
    if not report:
        storage.write_stats(stored.path, stats_rows(stored, plan, shown, stats.rows(*ranked, reference)))
        return ans, ranked
    from actlab import studyplots, workflow

    workflow.write_pages(
        analysis.analyse(seen, ranked, weights), stored.path, svg=svg, study=ans,
        more_figures=lambda: studyplots.save_all(ans, rows, depth_signal(stored, plan), stored.path, svg),
        rows=lambda found: stats_rows(stored, plan, shown, found))
    return ans, ranked


def fair_rows(ans: Answer) -> list[dict[str, Any]]:
    """study.csv / study.json: per activation, the fair ranking's choice and evaluation, the tests, the views."""
    chosen = {r.activation: r for r in ans.fair.rows}
    out = []
    for s in ans.fair_stats:
        for act in (s.activation, *s.same_as):
            r = chosen[act]
            out.append({"activation": act, "rank": s.rank, **{f"chosen {k}": grid.plain_value(v)
                                                               for k, v in r.choice.setting.items()},
                        "chosen_on": ans.fair.chosen_on, "tuning_seeds": seeds_text(ans.fair.split.tuning),
                        "tuning_median": r.choice.tuning_median, "reported_on": ans.fair.reported_on,
                        "evaluation_seeds": seeds_text(ans.fair.split.evaluation), "evaluation_median": r.median,
                        "evaluation_lo": s.final.lo, "evaluation_hi": s.final.hi, "diverged": r.diverged,
                        "ratio_vs_best": s.ratio_vs_best, "p_vs_best": s.p_vs_best, "p_equivalent": s.p_equivalent,
                        "verdict": s.verdict, "mean_rank_over_grid": ans.mean_ranks.get(act, math.nan),
                        "expected_loss_over_grid": ans.expected.get(act, math.nan)})
    return out


def write_report(stored: storage.StoredExperiment, svg: bool = False, weights: analysis.Weights | None = None) -> Path:
    """(Re)write stats, study files, figures (with ``svg``, as SVG too) and report.md of a grid folder
    (``weights``: weights.pt read back, if the caller has it)."""
    plan = plan_of(stored.config, imports=False)
    _finish(stored, plan, stored.summary, True, svg, weights)
    return stored.path / "report.md"


def depth_signal(stored: storage.StoredExperiment, plan: Plan) -> list[dict[str, Any]]:
    """Per run of a grid over depth: its hidden layers and the early-layer gradient signal, RMS gradient of
    layer 1 over the last layer's (per-parameter RMS = norm / sqrt(parameters)), at initialisation (epoch 0)
    and at the end; [] when depth is not on the grid or diagnostics were off."""
    depths = {len(p.config.model.sizes) - 2 for p in plan.points}
    table = stored.metrics()
    if len(depths) < 2 or "grad_norm_L1" not in table:
        return []
    sizes_of = {r["run"]: point_of(plan, {k: r[k] for k in plan.keys}).config.model.sizes for r in stored.summary}
    by_run: dict[str, dict[int, float]] = {}
    for i, run in enumerate(table["run"]):
        sizes = sizes_of.get(run)
        if sizes is None:
            continue
        counts = [a * b + b for a, b in zip(sizes[:-1], sizes[1:])]
        first = table["grad_norm_L1"][i] / math.sqrt(counts[0])
        last = table[f"grad_norm_L{len(counts)}"][i] / math.sqrt(counts[-1])
        if math.isnan(first) or math.isnan(last):
            continue  # an epoch the diagnostics skipped (train.diagnostics_dense): "end" is the last measured
        by_run.setdefault(run, {})[table["epoch"][i]] = first / last if last > 0 else math.nan
    out = []
    for r in stored.summary:
        epochs = by_run.get(r["run"], {})
        if epochs:
            out.append({"activation": r["activation"], "seed": r["seed"], "depth": len(sizes_of[r["run"]]) - 2,
                        "init": epochs.get(0, math.nan), "end": epochs[max(epochs)]})
    return out

