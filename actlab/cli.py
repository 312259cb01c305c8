"""The ``actlab`` command line: a thin layer over config, experiment, storage, stats and report.

Every user error — bad config, unknown activation, bad flag, unusable path, missing CUDA — ends as one
line on stderr and exit code 2, without a traceback, and without touching anything that exists.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer import _click
from typer.core import TyperGroup

from actlab import activations, config, devices, experiment, stats, storage, tasks
from actlab.engines import RunResult, RunSpec
from actlab.tables import ranking_table

USER_ERRORS = (
    config.ConfigError, activations.ActivationError, tasks.TaskError, devices.DeviceError, storage.StorageError,
)

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class _OneLineErrors(TyperGroup):
    """Usage errors (unknown flag, bad value) as one line and exit code 2, in the console and in tests."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        except _click.exceptions.NoArgsIsHelpError:
            code = 0  # `actlab` alone: the help (already printed) is the answer, not an error
        except _click.exceptions.ClickException as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if getattr(exc, "ctx", None) else ""
            err.print(f"error: {exc.format_message()}{where}", markup=False)
            code = 2
        except typer.Abort:
            code = 130
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Which activation function trains this network best, and why? Train and compare activations "
    "on the articles' 10-18-18-4-1 net from a YAML config; every command writes a new folder under runs/.",
)


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None


# Options shared by train and compare. Defaults of None mean "as in the config" (built-in: the article's).
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (default: the article's "
                                                "experiment; see configs/)", show_default=False)]
EpochsOpt = Annotated[int | None, typer.Option(help="train.epochs (article: 150)", show_default=False)]
LrOpt = Annotated[float | None, typer.Option(help="train.lr, Adam's learning rate (article: 0.001)",
                                             show_default=False)]
BatchOpt = Annotated[int | None, typer.Option(help="train.batch_size (article: 10)", show_default=False)]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu | cuda | cuda:N | auto (default: cpu)",
                                               show_default=False)]
SeedOpt = Annotated[int | None, typer.Option(help="train.seed: initial weights and shuffling (default: 0)",
                                             show_default=False)]
NameOpt = Annotated[str | None, typer.Option(help="output.name, part of the folder name", show_default=False)]
OutOpt = Annotated[Path | None, typer.Option("--out", help="parent folder of experiment folders "
                                             "(output.runs_dir, default: runs)", show_default=False)]
EngineOpt = Annotated[str | None, typer.Option(help="batched (default) | loop (the reference)",
                                               show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="any config key: --set data.task=teacher "
                                                  "(repeatable)", show_default=False)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or per-epoch log")]


def _load(path: Path | None, flags: dict[str, tuple[str, Any]], sets: Sequence[str] | None) -> config.Config:
    """The config with --set and the shortcut flags applied (flags last), all through one validation."""
    overrides = []
    for text in sets or []:
        key, value = config.parse_assignment(text)
        overrides.append((key, value, f"--set {key}"))
    for flag, (key, value) in flags.items():
        if value is not None:
            overrides.append((key, value, flag))
    return config.load_config(path, overrides)


def _common_flags(epochs, lr, batch_size, device, seed, name, out_dir, engine) -> dict[str, tuple[str, Any]]:
    return {
        "--epochs": ("train.epochs", epochs), "--lr": ("train.lr", lr),
        "--batch-size": ("train.batch_size", batch_size),
        "--device": ("device", device), "--seed": ("train.seed", seed), "--name": ("output.name", name),
        "--out": ("output.runs_dir", None if out_dir is None else str(out_dir)), "--engine": ("train.engine", engine),
    }


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=err, disable=quiet, transient=False,
    )


def _execute(
    cfg: config.Config, command: str, specs: list[RunSpec], quiet: bool, on_epoch=None,
) -> tuple[storage.ExperimentWriter, list[RunResult]]:
    """Train ``specs`` into a new experiment folder, with a progress bar; Ctrl-C keeps what finished."""
    device = devices.resolve_device(cfg.device)
    data = experiment.dataset(cfg)
    writer = storage.ExperimentWriter.create(cfg, command, [spec.run_id for spec in specs], device)
    total = len(specs) * cfg.train.epochs
    with _progress(quiet) as bar:
        task = bar.add_task(f"{command} on {devices.describe(device)}", total=total, info="")

        def progress(n: int, measures) -> None:
            info = "" if measures is None else f"loss {measures['full_loss']:.4g}"
            bar.update(task, advance=n, info=info)
            if measures is not None and on_epoch is not None:
                on_epoch(bar.console, measures)

        try:
            for chunk in experiment.run(cfg, specs, data, device, progress):
                writer.add(chunk)
        except KeyboardInterrupt:
            writer.finish("incomplete", "interrupted (Ctrl-C)")
            err.print(f"interrupted: {len(writer.results)} of {len(specs)} runs saved in {writer.path}")
            raise typer.Exit(130) from None
        except BaseException as exc:
            writer.finish("incomplete", f"{type(exc).__name__}: {exc}")
            raise
    writer.finish("complete")
    return writer, writer.results


@app.command()
def train(
    activation: Annotated[str | None, typer.Option(
        "--activation", "-a", help="model.activation, e.g. relu, tanh, mypkg.acts:MyAct (default: relu)",
        show_default=False)] = None,
    config_path: ConfigOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    name: NameOpt = None,
    out_dir: OutOpt = None,
    engine: EngineOpt = None,
    sets: SetOpt = None,
    quiet: QuietOpt = False,
    log_every: Annotated[int, typer.Option(help="print the log every N epochs (1: every epoch, as the "
                                           "article); 0: about ten lines")] = 0,
) -> None:
    """Train one network (the article's run by default) and write its per-epoch log to a new folder."""
    with _user_errors():
        flags = _common_flags(epochs, lr, batch_size, device, seed, name, out_dir, engine)
        flags["--activation"] = ("model.activation", activation)
        cfg = _load(config_path, flags, sets)
        specs = experiment.train_specs(cfg)
        every = log_every or max(1, cfg.train.epochs // 10)
        width = len(str(cfg.train.epochs))

        def on_epoch(console: Console, m) -> None:
            e = int(m["epoch"])
            if not quiet and (e % every == 0 or e == 1 or e == cfg.train.epochs):
                test = f", test {m['test_loss']:.6f}" if "test_loss" in m else ""
                console.print(f"Epoch {e:>{width}}/{cfg.train.epochs}, Loss: {m['last_batch_loss']:.6f} "
                              f"(epoch mean {m['train_loss']:.6f}, full data {m['full_loss']:.6f}{test})")

        writer, results = _execute(cfg, "train", specs, quiet, on_epoch)
    row = storage.run_summary(results[0])
    if row["status"] == "diverged":
        out.print(f"[red]{row['run']} diverged at epoch {row['diverged_epoch']}[/] (NaN or infinite loss)")
    else:
        out.print(f"{row['run']}: final loss {row['final_loss']:.6f} on the full training data "
                  f"(best {row['best_loss']:.6f} at epoch {row['best_epoch']}; last mini-batch "
                  f"{row['final_last_batch_loss']:.6f})" + _test_note(row))
    out.print(f"saved in {writer.path}")


def _test_note(row: dict[str, Any]) -> str:
    value = row.get("final_test_loss", float("nan"))
    return f", held-out loss {value:.6f}" if math.isfinite(value) else ""


@app.command()
def compare(
    activations_: Annotated[str | None, typer.Option("--activations", "-a", help="comma-separated names, or "
                                                     "all (default: all)", show_default=False)] = None,
    seeds: Annotated[int | None, typer.Option(help="compare.seeds per activation (default: 10)",
                                              show_default=False)] = None,
    config_path: ConfigOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    name: NameOpt = None,
    out_dir: OutOpt = None,
    engine: EngineOpt = None,
    sets: SetOpt = None,
    quiet: QuietOpt = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="skip the figures and report.md")] = False,
) -> None:
    """Train every activation over several seeds and rank them (mean, spread and ties over seeds)."""
    with _user_errors():
        flags = _common_flags(epochs, lr, batch_size, device, seed, name, out_dir, engine)
        flags["--activations"] = ("compare.activations", activations_)
        flags["--seeds"] = ("compare.seeds", seeds)
        cfg = _load(config_path, flags, sets)
        specs = experiment.compare_specs(cfg)
        writer, results = _execute(cfg, "compare", specs, quiet)
    curves = {r.spec.run_id: r.history.get("full_loss", []) for r in results}
    table_stats, threshold = stats.summarise([storage.run_summary(r) for r in results], curves)
    storage.write_stats(writer.path, stats.rows(table_stats, threshold))
    out.print(ranking_table(cfg, table_stats, threshold))
    if not no_report:
        stored = storage.load_experiment(writer.path)
        stored.table = storage.metrics_table(cfg, results)  # the numbers of metrics.csv, without reading it back
        path = _write_report(stored, (table_stats, threshold))
        out.print(f"report: {path}")
    out.print(f"saved in {writer.path}")


def _write_report(stored: storage.StoredExperiment, ranked: tuple[list[stats.ActivationStats], float]) -> Path:
    """Figures and report.md in an experiment folder, from its data and its statistics (``stats.summarise``)."""
    from actlab import analysis, html, plots, report  # matplotlib is only needed here

    an = analysis.analyse(stored, ranked)
    figures = plots.save_all(an, stored.path)
    text = report.build(an, figures)
    html.write_html(stored.path, text, figures)  # report.html: the same page, figures inline, self-contained
    return storage.write_text(stored.path / "report.md", text)


@app.command("activations")
def list_activations() -> None:
    """List the activation registry: names, aliases, options, and what `all` covers."""
    table = Table(title="actlab activations (`all` = every row)")
    for col in ("name", "aliases", "options (defaults)", "description"):
        table.add_column(col)
    for spec in activations.BUILTIN:
        opts = ", ".join(f"{k}={v!r}" for k, v in spec.options().items()) or "-"
        table.add_row(spec.name, ", ".join(spec.aliases) or "-", opts, spec.description)
    out.print(table)
    out.print("Your own: --activation mypkg.acts:MyAct (a class or function returning an nn.Module).")


RunDir = Annotated[Path, typer.Argument(help="an experiment folder, e.g. runs/20261123-120000_article",
                                         show_default=False)]


@app.command("report")
def report_cmd(run_dir: RunDir) -> None:
    """Write the figures and report.md of an experiment folder (also for an interrupted one)."""
    with _user_errors():
        stored = storage.load_experiment(run_dir)
        if not stored.summary:
            raise storage.StorageError(f"'{run_dir}' holds no finished run yet: nothing to report")
        ranked = stats.summarise(stored.summary, stored.curves())
        storage.write_stats(run_dir, stats.rows(*ranked))
        path = _write_report(stored, ranked)
    out.print(f"report: {path}")


@app.command()
def show(run_dir: RunDir) -> None:
    """Reprint an experiment's setup, status and ranking from its folder."""
    with _user_errors():
        stored = storage.load_experiment(run_dir)
    cfg, status = stored.config, stored.status
    out.print(f"{run_dir}: {status.get('command', '?')}, {status.get('status', 'unknown')} "
              f"({status.get('runs_done', len(stored.summary))} of {status.get('runs_total', '?')} runs)"
              + (f", {status['error']}" if status.get("error") else ""))
    out.print(f"net {'-'.join(map(str, cfg.model.sizes))}, task {cfg.data.task}, {cfg.train.epochs} epochs, "
              f"lr {cfg.train.lr:g}, batch {cfg.train.batch_size}, engine {cfg.train.engine}")
    if not stored.summary:
        return
    table_stats, threshold = stats.summarise(stored.summary, stored.curves())
    out.print(ranking_table(cfg, table_stats, threshold))
    if (run_dir / "report.md").is_file():
        out.print(f"report: {run_dir / 'report.md'}")


@app.command()
def runs(
    runs_dir: Annotated[Path, typer.Argument(help="folder holding experiment folders")] = Path("runs"),
) -> None:
    """List experiment folders: when, what, status."""
    with _user_errors():
        folders = storage.list_experiments(runs_dir)
    if not folders:
        out.print(f"no experiment folders in {runs_dir}")
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"experiments in {runs_dir}", pad_edge=False)
    for col in ("folder", "command", "status", "task", "acts", "seeds", "runs"):
        numeric = col in ("acts", "seeds", "runs")
        table.add_column(col, no_wrap=True, justify="right" if numeric else "left")
    for stored in folders:
        cfg, status = stored.config, stored.status
        acts = sorted({row["activation"] for row in stored.summary})
        table.add_row(stored.path.name, status.get("command", "?"), status.get("status", "?"), cfg.data.task,
                      acts[0] if len(acts) == 1 else str(len(acts)), str(len({row["seed"] for row in stored.summary})),
                      f"{status.get('runs_done', '?')}/{status.get('runs_total', '?')}")
    out.print(table)


plot_app = typer.Typer(help="Standalone figures.", no_args_is_help=True)
app.add_typer(plot_app, name="plot")


@plot_app.command("activations")
def plot_activations(
    out_file: Annotated[Path, typer.Option("--out", help="PNG to write (an SVG is written next to it)")] = Path(
        "activations.png"),
) -> None:
    """Draw every registry activation with its derivative (from autograd)."""
    from actlab import plots

    with _user_errors():
        folder = out_file.parent
        if not folder.is_dir():
            raise storage.StorageError(f"folder '{folder}' does not exist; create it or choose another --out")
        if out_file.suffix != ".png":
            raise storage.StorageError(f"--out must end in .png (got '{out_file.name}')")
        for path in (out_file, out_file.with_suffix(".svg")):
            if path.exists():
                raise storage.StorageError(f"'{path}' exists; actlab does not overwrite files, choose another --out")
        plots.save(plots.activation_gallery(), folder, out_file.stem)
    out.print(f"wrote {out_file} and {out_file.with_suffix('.svg')}")


export_app = typer.Typer(help="Export an experiment to other viewers.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("tensorboard")
def export_tensorboard(
    run_dir: RunDir,
    out_dir: Annotated[Path | None, typer.Option("--out", help="log directory to create (default: "
                                                 "RUN_DIR/tensorboard)", show_default=False)] = None,
) -> None:
    """Write every run's per-epoch scalars and HParams as TensorBoard logs (`tensorboard --logdir ...`)."""
    from actlab import tensorboard

    with _user_errors():
        try:
            logdir, n = tensorboard.export(run_dir, out_dir)
        except tensorboard.TensorBoardUnavailable as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(2) from None
    out.print(f"wrote {n} runs to {logdir}; view them with: tensorboard --logdir {logdir}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
