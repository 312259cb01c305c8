"""The ``actlab`` command line: options, printing and exit codes over ``actlab.workflow`` and ``actlab.folders``.

Every user error — bad config, unknown activation, bad flag, unusable path, missing CUDA — ends as one
line on stderr and exit code 2, without a traceback, and without touching anything that exists.

torch, scipy and matplotlib are imported inside the commands, never at the top: ``actlab --help``,
``--version`` and shell completion answer in a fraction of a second.
"""

from __future__ import annotations

import gc
import json
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from actlab import __version__

if TYPE_CHECKING:
    from actlab import config

# emoji=False: user text ("mod:X: cannot import", a folder named ':smile:') is printed as typed, never as emoji
out = Console(highlight=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def _is_usage_error(exc: Exception) -> bool:
    # click's ClickException (usage errors, bad values), whether typer bundles click or depends on it:
    # recognised by its public interface, not by importing a private module
    return isinstance(getattr(exc, "exit_code", None), int) and callable(getattr(exc, "format_message", None))


class _OneLineErrors(TyperGroup):
    """Usage errors (unknown flag, bad value) as one line and exit code 2, in the console and in tests."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        from actlab import signals  # no torch: --help stays instant

        try:
            with signals.terminate_as_interrupt():  # SIGTERM and SIGHUP end every command as Ctrl-C does
                code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                    standalone_mode=False, **extra)
        except typer.Abort:
            err.print("aborted: nothing changed")
            code = 1
        except Exception as exc:
            if not _is_usage_error(exc):
                raise
            ctx = getattr(exc, "ctx", None)
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            err.print(f"error: {exc.format_message()}{where}", markup=False)
            code = 2
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):  # noqa: D102
        # Ctrl-C, SIGTERM or SIGHUP anywhere in a command (start-up, training, report): one line and the
        # shell's code for it (130, 143, 129), before click would turn it into "Aborted!" and exit code 1.
        # An interrupted training or report (workflow.Interrupted) says what is saved and what to run next.
        from actlab import signals

        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as stop:
            code = getattr(stop, "exit_code", None)
            line = str(stop) if isinstance(code, int) else f"{signals.reason(stop)}: stopped before the command " \
                "finished; run it again to finish it"
            err.print(line, markup=False)
            # CPython marks a KeyboardInterrupt that left code run by exec() of a string (dataclasses and
            # namedtuple build methods so, e.g. in an import the interrupt landed in) as unhandled, even once
            # caught, and at exit kills itself with SIGINT instead of exiting with our code; running such code
            # to its end clears the mark
            exec("")  # noqa: S102
            raise typer.Exit(code if isinstance(code, int) else signals.exit_code(stop)) from None


def _examples(*commands: str) -> str:
    """An epilog of example commands, one a line (``\\b``: click keeps the line breaks)."""
    return "\b\nExamples:\n" + "\n".join(f"  {c}" for c in commands)


app = typer.Typer(
    cls=_OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # help texts are plain text: [KEY=VALUE] is not markup
    pretty_exceptions_show_locals=False,
    help="Which activation function trains this network best, and why? Train and compare activations "
    "on the articles' 10-18-18-4-1 net from a YAML config; every run writes a new folder under runs/.",
    epilog=_examples("actlab compare", "actlab compare --config cosine",
                     "actlab compare -a relu,tanh --seeds 5 train.lr=3e-3", "actlab runs --status complete",
                     "actlab show runs/<folder>", "actlab COMMAND -h   (each command's options and examples)"),
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="print actlab's version and exit")] = False,
) -> None:
    if version:
        out.print(f"actlab {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:  # `actlab` alone: the help is the answer
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def _user_error_types() -> tuple[type[Exception], ...]:
    from actlab import activations, config, devices, storage, tasks, tensorboard

    return (config.ConfigError, activations.ActivationError, tasks.TaskError, devices.DeviceError,
            storage.StorageError, tensorboard.TensorBoardUnavailable)


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, _user_error_types()):
            raise
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None


def _shipped_names() -> list[str]:
    # config.shipped_configs(), read without importing actlab.config (which imports torch)
    return sorted(path.stem for path in (Path(__file__).parent / "configs").glob("*.yaml"))


def _complete_config(incomplete: str) -> list[str]:
    return [name for name in _shipped_names() if name.startswith(incomplete)]


# Options shared by train and compare. Defaults of None mean "as in the config" (built-in: the article's).
ConfigOpt = Annotated[str | None, typer.Option(
    "--config", "-c", help=f"a YAML file, or a shipped config by name from anywhere: {', '.join(_shipped_names())} "
    "(default: the article's experiment)", show_default=False, autocompletion=_complete_config)]
EpochsOpt = Annotated[int | None, typer.Option(help="train.epochs (article: 150)", show_default=False)]
LrOpt = Annotated[float | None, typer.Option(help="train.lr, Adam's learning rate (article: 0.001)",
                                             show_default=False)]
BatchOpt = Annotated[int | None, typer.Option(help="train.batch_size (article: 10)", show_default=False)]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu | cuda | cuda:N | auto (default: cpu)",
                                               show_default=False)]
SeedOpt = Annotated[int | None, typer.Option(help="train.seed: initial weights and shuffling (default: 0)",
                                             show_default=False)]
NameOpt = Annotated[str | None, typer.Option(help="output.name, part of the folder name", show_default=False)]
OutOpt = Annotated[str | None, typer.Option("--out", help="parent folder of experiment folders "
                                             "(output.runs_dir, default: runs)", show_default=False)]
EngineOpt = Annotated[str | None, typer.Option(help="batched (default) | loop (the reference)",
                                               show_default=False)]
ExecutorOpt = Annotated[str | None, typer.Option(help="train.executor: local (default, processes on this machine) "
                                                 "| ray (a Ray cluster; pip install -e '.[ray]')", show_default=False)]
RayAddressOpt = Annotated[str | None, typer.Option(help="train.ray_address: the Ray cluster for --executor ray, "
                                                   "e.g. 10.0.0.1:6379 (default: RAY_ADDRESS, else a local Ray)",
                                                   show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="any config key: --set data.task=teacher "
                                                  "(repeatable; same as a KEY=VALUE argument)", show_default=False,
                                                  metavar="KEY=VALUE")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or per-epoch log")]
TensorBoardOpt = Annotated[bool, typer.Option("--tensorboard", help="also log every run live to RUN_DIR/tensorboard "
                                              "as it finishes (pip install -e '.[tensorboard]')")]
OverridesArg = Annotated[list[str] | None, typer.Argument(
    help="config overrides, Hydra style: train.lr=3e-3 data.task=teacher (any key of the config reference)",
    show_default=False, metavar="KEY=VALUE")]


def _load(path: str | None, flags: dict[str, tuple[str, Any]], sets: Sequence[str] | None,
          arguments: Sequence[str] | None, grid_options: Sequence[str] | None = None) -> config.Config:
    """The config with --set, KEY=VALUE arguments and the shortcut flags applied (flags last), all through
    one validation; every error names the flag or argument it came from. ``grid_options`` (compare): the
    ``--grid`` axes, merged with the file's ``compare.grid`` and every point validated."""
    with _collector_paused():  # torch's import is the first of train and compare
        from actlab import config, grid

    overrides = []
    for text in sets or []:
        key, value = config.parse_assignment(text)
        overrides.append((key, value, f"--set {key}"))
    for text in arguments or []:
        key, sep, _ = text.partition("=")
        if not sep or not key.strip():
            raise config.ConfigError(f"argument {text!r}: expected section.key=value, e.g. train.lr=0.003 "
                                     "(this command takes no other arguments)")
        key, value = config.parse_assignment(text)
        overrides.append((key, value, f"argument {text}"))
    for flag, (key, value) in flags.items():
        if value is not None:
            overrides.append((key, value, flag))
    _note_imports(path)
    if grid_options is None:
        cfg = config.load_config(path, overrides)
    else:
        cfg = grid.load(config.find_config(path) if path is not None else None, overrides, grid_options)[0]
    _check_executor(cfg)
    from actlab import folders

    folders.check_runs_dir(Path(cfg.output.runs_dir))
    return cfg


def _check_executor(cfg: config.Config) -> None:
    """An unknown executor, or one whose library is missing (ray): one line before any folder is made."""
    from actlab.engines import executors

    executors.module(cfg.train.executor)


def _note_imports(path: str | None) -> None:
    """A replayed experiment folder: say what user code its config imports before anything runs."""
    from actlab import config

    folder_config = Path(path) if path is not None else None
    if folder_config is None or folder_config.name != "config.yaml":
        return
    if not (folder_config.parent / "status.json").is_file():
        return
    for name in config.file_imports(folder_config):
        err.print(f"note: {folder_config} names activation {name}: importing {name.partition(':')[0]} runs its code",
                  markup=False)


def _common_flags(epochs, lr, batch_size, device, seed, name, out_dir, engine, executor=None,
                  ray_address=None) -> dict[str, tuple[str, Any]]:
    return {
        "--executor": ("train.executor", executor), "--ray-address": ("train.ray_address", ray_address),
        "--epochs": ("train.epochs", epochs), "--lr": ("train.lr", lr),
        "--batch-size": ("train.batch_size", batch_size),
        "--device": ("device", device), "--seed": ("train.seed", seed), "--name": ("output.name", name),
        "--out": ("output.runs_dir", None if out_dir is None else str(out_dir)), "--engine": ("train.engine", engine),
    }


@contextmanager
def _training(quiet: bool, on_epoch=None):
    """The progress bar on stderr; Ctrl-C ends the command with the line that says what was kept."""
    from actlab.progress import ProgressBar
    from actlab.workflow import Interrupted

    try:
        with ProgressBar(err, enabled=not quiet, on_epoch=on_epoch) as bar:
            yield bar
    except Interrupted as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(exc.exit_code) from None


@app.command(epilog=_examples(
    "actlab train",
    "actlab train -a tanh --epochs 50",
    "actlab train --config cosine model.activation=sigmoid",
    "actlab train --log-every 1 --quiet",
))
def train(
    overrides: OverridesArg = None,
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
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    sets: SetOpt = None,
    quiet: QuietOpt = False,
    tensorboard: TensorBoardOpt = False,
    log_every: Annotated[int, typer.Option(min=0, help="print the log every N epochs (1: every epoch, as the "
                                           "article); 0: about ten lines")] = 0,
) -> None:
    """Train one network (the article's run by default) and write its per-epoch log to a new folder."""
    from actlab import storage, workflow

    with _user_errors():
        flags = _common_flags(epochs, lr, batch_size, device, seed, name, out_dir, engine, executor, ray_address)
        flags["--activation"] = ("model.activation", activation)
        cfg = _load(config_path, flags, sets, overrides)
        every = log_every or max(1, cfg.train.epochs // 10)
        width = len(str(cfg.train.epochs))

        def on_epoch(console: Console, m: dict) -> None:
            e = int(m["epoch"])
            if e % every == 0 or e == 1 or e == cfg.train.epochs:
                test = f", test {m['test_loss']:.6f}" if "test_loss" in m else ""
                console.print(f"Epoch {e:>{width}}/{cfg.train.epochs}, Loss: {m['last_batch_loss']:.6f} "
                              f"(epoch mean {m['train_loss']:.6f}, full data {m['full_loss']:.6f}{test})")

        with _training(quiet, None if quiet else on_epoch) as bar:
            done = workflow.run_train(cfg, progress=bar, tensorboard=tensorboard)
    row = storage.run_summary(done.experiment.results[0])
    if row["status"] == "diverged":
        out.print(f"[red]{row['run']} diverged at epoch {row['diverged_epoch']}[/] (NaN or infinite loss)")
    else:
        out.print(f"{row['run']}: final loss {row['final_loss']:.6f} on the full training data "
                  f"(best {row['best_loss']:.6f} at epoch {row['best_epoch']}; last mini-batch "
                  f"{row['final_last_batch_loss']:.6f})" + _test_note(row))
    out.print(f"saved in {done.path}")


def _test_note(row: dict[str, Any]) -> str:
    value = row.get("final_test_loss", float("nan"))
    return f", held-out loss {value:.6f}" if math.isfinite(value) else ""


@app.command(epilog=_examples(
    "actlab compare",
    "actlab compare -a relu,tanh,sigmoid --seeds 5",
    "actlab compare --config cosine",
    "actlab compare train.lr=3e-3 data.task=teacher",
    "actlab compare --epochs 20 --no-report --out /tmp/runs",
    "actlab compare -a relu,tanh --grid train.lr=1e-3,1e-2 --dry-run",
    "actlab compare --config lr_study",
))
def compare(
    overrides: OverridesArg = None,
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
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    sets: SetOpt = None,
    quiet: QuietOpt = False,
    tensorboard: TensorBoardOpt = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="skip the figures and report.md")] = False,
    grid_options: Annotated[list[str] | None, typer.Option(
        "--grid", "-g", help="train every activation and seed at each of these values of a config key: --grid "
        "train.lr=1e-4,1e-3,1e-2 (repeatable: every combination; also compare.grid in the config); the report "
        "leads with each activation at its own best setting", show_default=False, metavar="KEY=V1,V2,...")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan (stacks, runs, optimizer steps, "
                                          "estimated time and memory) and exit without writing anything")] = False,
) -> None:
    """Train every activation over several seeds and rank them (mean, spread and ties over seeds)."""
    from actlab import workflow

    with _user_errors():
        flags = _common_flags(epochs, lr, batch_size, device, seed, name, out_dir, engine, executor, ray_address)
        flags["--activations"] = ("compare.activations", activations_)
        flags["--seeds"] = ("compare.seeds", seeds)
        cfg = _load(config_path, flags, sets, overrides, grid_options or [])
        if dry_run:
            from actlab import studyrun

            _print_plan(studyrun.dry_run(cfg))
            return
        with _training(quiet) as bar:
            done = workflow.run_compare(cfg, report=not no_report, progress=bar, tensorboard=tensorboard)
    from actlab.tables import ranking_table, verdict_text  # scipy (via actlab.stats): after training, not before

    if done.study is not None:
        from actlab import studyrun

        for line in studyrun.headline(done.study):
            out.print(line, markup=False)
        out.print(f"study: {done.path / 'study.csv'}; below, the ranking at the fixed setting", markup=False)
    out.print(ranking_table(cfg, *done.ranking))
    out.print(verdict_text(*done.ranking))
    if done.report is not None:
        out.print(f"report: {done.report}")
    out.print(f"saved in {done.path}")


def _print_plan(plan: Any) -> None:
    """The dry run's plan: one line per stack, then the totals (a ``studyrun.DryRun``)."""
    from actlab import budget, studyrun

    for i, st in enumerate(plan.stacks, start=1):
        where = studyrun.setting_text(st.settings) or "the config's settings"
        out.print(f"stack {i}: {where}: net {'-'.join(map(str, st.sizes))}, {st.points} grid point"
                  f"{'s' * (st.points != 1)}, {st.runs:,} runs, {st.steps:,} optimizer steps, about "
                  f"{st.seconds:.3g} s", markup=False)
    free = f" of {budget._size(plan.free)} available" if plan.free is not None else ""
    out.print(f"total: {len(plan.stacks)} stack{'s' * (len(plan.stacks) != 1)}, {plan.runs:,} runs, "
              f"{plan.steps:,} optimizer steps; estimated wall time {plan.seconds:.3g} s on {plan.workers} "
              f"worker{'s' * (plan.workers != 1)} (calibrated: {plan.calibration}); peak memory about "
              f"{budget._size(plan.memory)}{free} (estimate). Dry run: nothing written.", markup=False)


@app.command("activations")
def list_activations() -> None:
    """List the activation registry: names, aliases, options, and what `all` covers."""
    from rich.table import Table

    from actlab import activations

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
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON on stdout instead of a table")]


@app.command("report", epilog=_examples("actlab report runs/20261123-120000_article"))
def report_cmd(
    run_dir: RunDir,
    svg: Annotated[bool, typer.Option("--svg", help="also write each figure as SVG (vector, e.g. for a paper) "
                                      "beside its PNG; it draws every figure a second time (a folder with SVGs "
                                      "keeps them: later reports redraw them)")] = False,
) -> None:
    """Write the figures and report.md of an experiment folder (also for an interrupted one)."""
    from actlab import workflow

    notes: list[str] = []
    with _user_errors():
        path = workflow.write_report(run_dir, notes, svg=svg)
    _print_notes(notes)
    out.print(f"report: {path}")


def _print_notes(notes: Sequence[str]) -> None:
    for note in notes:
        err.print(f"note: {note}", markup=False)


@app.command(epilog=_examples(
    "actlab resume runs/20261123-120000_article",
    "actlab resume --force runs/20261123-120000_article   (a folder whose process was killed outright)",
))
def resume(
    run_dir: RunDir,
    quiet: QuietOpt = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="skip the figures and report.md (compare)")] = False,
    force: Annotated[bool, typer.Option(help="also a folder marked running (its process was killed outright)")] = False,
) -> None:
    """Finish an interrupted train or compare in its own folder: only the missing runs are trained."""
    from actlab import config, workflow

    with _user_errors():
        stored = workflow.check_resumable(run_dir, force)
        for name in config.file_imports(stored.path / "config.yaml"):
            err.print(f"note: {stored.path / 'config.yaml'} names activation {name}: importing "
                      f"{name.partition(':')[0]} runs its code", markup=False)
        with _training(quiet) as bar:
            done = workflow.resume(run_dir, progress=bar, report=not no_report, force=force)
    from actlab.tables import ranking_table, verdict_text  # scipy: after training

    if done.ranking is not None:
        out.print(ranking_table(done.experiment.config, *done.ranking))
        out.print(verdict_text(*done.ranking))
    if done.report is not None:
        out.print(f"report: {done.report}")
    n = len(done.experiment.results)
    out.print(f"trained the {n} missing run{'s' * (n != 1)}; saved in {done.path}")


@app.command(epilog=_examples("actlab show runs/20261123-120000_article"))
def show(run_dir: RunDir) -> None:
    """Reprint an experiment's setup, status and ranking from its folder."""
    from actlab import storage, workflow
    from actlab.tables import ranking_table

    with _user_errors():
        stored = storage.load_experiment(run_dir)
        ranked = workflow.rank(stored) if stored.summary else None  # reads metrics.csv: damage is one line
    _print_notes(stored.notes)
    cfg, status = stored.config, stored.status
    out.print(f"{run_dir}: {status.get('command', '?')}, {status.get('status', 'unknown')} "
              f"({status.get('runs_done', len(stored.summary))} of {status.get('runs_total', '?')} runs)"
              + (f", {status['error']}" if status.get("error") else ""), markup=False)
    out.print(f"net {'-'.join(map(str, cfg.model.sizes))}, task {cfg.data.task}, {cfg.train.epochs} epochs, "
              f"lr {cfg.train.lr:g}, batch {cfg.train.batch_size}, engine {cfg.train.engine}")
    if ranked is None:
        return
    out.print(ranking_table(cfg, *ranked))
    if (run_dir / "report.md").is_file():
        out.print(f"report: {run_dir / 'report.md'}")


@app.command(epilog=_examples(
    "actlab runs",
    "actlab runs --status incomplete",
    "actlab runs --task teacher --command compare",
    "actlab runs --name '*cosine*' --json",
))
def runs(
    runs_dir: Annotated[Path, typer.Argument(help="folder holding experiment folders")] = Path("runs"),
    status: Annotated[str | None, typer.Option(help="only running | complete | incomplete",
                                               show_default=False)] = None,
    task: Annotated[str | None, typer.Option(help="only this data.task, e.g. teacher", show_default=False)] = None,
    command: Annotated[str | None, typer.Option(help="only train | compare", show_default=False)] = None,
    name: Annotated[str | None, typer.Option(help="only folders whose name (or output.name) matches this glob, "
                                             "e.g. '*cosine*'", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """List experiment folders: when, what, status (filtered)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from actlab import folders, storage

    with _user_errors():
        found, damaged = storage.survey(runs_dir)
        rows = folders.select([folders.describe(s) for s in found], status=status, task=task, command=command,
                              name=name)
    if as_json:
        broken = [{"folder": path.name, "status": "damaged", "problem": problem} for path, problem in damaged]
        sys.stdout.write(json.dumps(rows + broken, indent=2) + "\n")
        return
    if not rows and not damaged:
        out.print(f"no experiment folders in {runs_dir}" + (" match" if (status or task or command or name) else ""))
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"experiments in {runs_dir}", pad_edge=False)
    for col in ("folder", "command", "status", "task", "acts", "seeds", "runs"):
        table.add_column(col, no_wrap=col != "folder", justify="right" if col in ("acts", "seeds", "runs") else "left")
    for row in rows:
        acts = row["activations"]
        cells = (row["folder"], row["command"], row["status"], row["task"],
                 acts[0] if len(acts) == 1 else str(len(acts)), str(row["seeds"]),
                 f"{row['runs_done']}/{row['runs_total'] if row['runs_total'] is not None else '?'}")
        table.add_row(*(Text(str(c)) for c in cells))  # Text: a folder's contents are not rich markup
    for path, _ in damaged:
        table.add_row(Text(path.name), "?", "damaged", "?", "?", "?", "?")
    out.print(table)
    for _, problem in damaged:
        err.print(f"damaged: {problem}", markup=False)


@app.command(epilog=_examples("actlab diff runs/20261123-120000_article runs/20261124-090000_article"))
def diff(
    run_a: Annotated[Path, typer.Argument(help="experiment folder A", show_default=False)],
    run_b: Annotated[Path, typer.Argument(help="experiment folder B", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """What differs between two experiments: config keys, and each activation's median final loss (per grid setting)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from actlab import folders, storage

    with _user_errors():
        d = folders.diff(storage.load_experiment(run_a), storage.load_experiment(run_b))
    if as_json:
        sys.stdout.write(json.dumps(d.as_dict(), indent=2) + "\n")
        return
    out.print(f"A: {run_a} ({d.runs[0]} runs)\nB: {run_b} ({d.runs[1]} runs)")
    if d.config:
        table = Table("config key", "A", "B", box=box.SIMPLE_HEAD, pad_edge=False, title="config: keys that differ")
        for key, va, vb in d.config:
            table.add_row(*(Text(c) for c in (key, json.dumps(va), json.dumps(vb))))  # folder text, not markup
        out.print(table)
    else:
        out.print("config: identical")
    if d.final_loss:
        table = Table("activation", "A", "B", "B / A", box=box.SIMPLE_HEAD, pad_edge=False,
                      title="final loss, median over seeds (inf: diverged)")
        for act, setting, va, vb in d.final_loss:
            ratio = vb / va if math.isfinite(va) and math.isfinite(vb) and va > 0 else math.nan
            table.add_row(Text(f"{act} {setting}".strip()), _num(va), _num(vb),
                          "-" if math.isnan(ratio) else f"{ratio:.3g}")
        out.print(table)


def _num(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4g}"


@app.command(epilog=_examples("actlab rm runs/20261123-120000_article", "actlab rm --yes runs/2026*_test"))
def rm(
    run_dirs: Annotated[list[Path], typer.Argument(help="experiment folders to delete", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    force: Annotated[bool, typer.Option(help="also delete folders marked running (a run that died)")] = False,
) -> None:
    """Delete experiment folders, and nothing else: every folder is checked before any is deleted."""
    from actlab import folders

    with _user_errors():
        # one entry per folder, however it is spelled (runs/x, ./runs/x): each is deleted once
        checked = {path.resolve(): folders.check_removable(path, force) for path in run_dirs}.values()
    if not yes:
        for path in checked:
            out.print(f"  {path}")
        if not typer.confirm(f"delete {len(checked)} experiment folder{'s' * (len(checked) > 1)}?", default=False):
            err.print("nothing deleted")
            raise typer.Exit(1)
    for path in checked:
        folders.remove(path)
        out.print(f"deleted {path}")


plot_app = typer.Typer(help="Standalone figures.")
app.add_typer(plot_app, name="plot")


@plot_app.callback(invoke_without_command=True)
def _plot(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:  # `actlab plot` alone: its help
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


@plot_app.command("activations", epilog=_examples("actlab plot activations --out /tmp/acts.png"))
def plot_activations(
    out_file: Annotated[Path, typer.Option("--out", help="PNG to write (an SVG is written next to it)")] = Path(
        "activations.png"),
) -> None:
    """Draw every registry activation with its derivative (from autograd)."""
    from actlab import plots, storage

    with _user_errors():
        folder = out_file.parent
        if not folder.is_dir():
            raise storage.StorageError(f"folder '{folder}' does not exist; create it or choose another --out")
        if out_file.suffix != ".png":
            raise storage.StorageError(f"--out must end in .png (got '{out_file.name}')")
        for path in (out_file, out_file.with_suffix(".svg")):
            if path.exists() or path.is_symlink():  # a dangling link too: the figure would land where it points
                raise storage.StorageError(f"'{path}' exists; actlab does not overwrite files, choose another --out")
        plots.save(plots.activation_gallery(), folder, out_file.stem, svg=True)
    out.print(f"wrote {out_file} and {out_file.with_suffix('.svg')}")


export_app = typer.Typer(help="Export an experiment to other viewers.")
app.add_typer(export_app, name="export")


@export_app.callback(invoke_without_command=True)
def _export(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:  # `actlab export` alone: its help, as `actlab plot` (not an error)
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


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


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The garbage collector off inside: importing torch makes a million objects and hardly any garbage, and
    the collections they trigger cost a tenth of a second of the start-up (0.14 s of 1.25 s CPU, measured)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def main() -> None:
    """The ``actlab`` console script."""
    try:
        app(prog_name="actlab")
    finally:
        from actlab import signals

        signals.ignore_all()  # the command ended (output whole, exit code set): a signal now changes nothing
        # The process ends here: what exists now is never collected (gc.freeze), so the interpreter's exit
        # does not walk torch's, scipy's and matplotlib's objects for garbage (a third of a second of CPU).
        gc.freeze()


if __name__ == "__main__":
    main()
