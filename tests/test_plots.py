"""Figures: readable (labels, legends that cover nothing), complete (zeros and diverged runs shown), never a crash."""

import csv
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from typer.testing import CliRunner

from actlab import analysis, cli, plots, storage

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def compare(out: Path, *args: str) -> Path:
    result = runner.invoke(cli.app, ["compare", *args, "--set", "train.workers=1", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    (folder,) = out.iterdir()
    return folder


def analysed(folder: Path) -> analysis.Analysis:
    return analysis.analyse(storage.load_experiment(folder))


def panels(fig) -> dict[str, plt.Axes]:
    """Visible panels by title (the rank prefix '#3 ' and any suffix in parentheses dropped)."""
    out = {}
    for ax in fig.axes:
        if ax.get_visible() and ax.get_title():
            out[ax.get_title().split(" (")[0].split(" ")[-1]] = ax
    return out


def marks(ax: plt.Axes, gid: str) -> list:
    return [line for line in ax.lines if line.get_gid() == gid]


def metrics_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """softshrink (first-layer gradient exactly 0), relu (dead units), tanh and sigmoid: none diverges."""
    return compare(tmp_path_factory.mktemp("runs"), "-a", "softshrink,relu,tanh,sigmoid", "--seeds", "3",
                   "--epochs", "6")


@pytest.fixture(scope="module")
def diverged(tmp_path_factory) -> Path:
    """lr 1e5: identity diverges after some epochs, relu and elu in their first; softshrink, tanh don't."""
    return compare(tmp_path_factory.mktemp("runs"), "-a", "identity,relu,elu,tanh,softshrink", "--seeds", "2",
                   "--epochs", "30", "--lr", "1e5", "--batch-size", "100")


def test_log_scale_shows_zeros_and_off_scale_values():
    scale = plots.LogScale.fit([np.array([0.0, 1e-3, 0.5, math.inf, math.nan])], zeros=True)
    assert 0 < scale.floor < 1e-3 and scale.top >= 0.5
    drawn = scale.clip(np.array([0.0, 1e-3, 1e9, math.inf, math.nan]))
    assert drawn[0] == scale.floor and drawn[1] == 1e-3 and drawn[2] == drawn[3] == scale.top
    assert math.isnan(drawn[4])  # a value never measured is not drawn
    assert plots.LogScale.fit([np.array([math.nan, -1.0])]).floor > 0  # nothing positive: still a valid axis


def test_zero_gradient_norms_are_drawn_at_the_floor_and_marked(mixed):
    rows = metrics_rows(mixed)
    zero = {r["activation"] for r in rows if float(r["grad_norm_L1"]) == 0.0}
    assert "softshrink" in zero  # the oracle: softshrink's first layer gets exactly no gradient here
    by_epoch: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        by_epoch.setdefault((r["activation"], r["epoch"]), []).append(float(r["grad_norm_L1"]))
    median_zero = {act for (act, _), values in by_epoch.items() if np.median(values) == 0.0}
    fig = plots.gradient_norms(analysed(mixed))
    for act, ax in panels(fig).items():
        zeros = marks(ax, "zero")
        assert bool(zeros) == (act in median_zero), act
        for line in zeros:
            y = line.get_ydata()
            assert np.all(y > ax.get_ylim()[0]) and np.all(y < ax.get_ylim()[1])  # inside the axes: visible
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any("exactly 0" in label for label in labels)
    plt.close(fig)


def test_dead_units_draws_only_activations_with_dead_units(mixed):
    rows = metrics_rows(mixed)
    columns = [c for c in rows[0] if c.startswith("dead_L")]
    with_dead = {r["activation"] for r in rows if any(r[c] and float(r[c]) > 0 for c in columns)}
    fig = plots.dead_units(analysed(mixed))
    drawn = panels(fig)
    assert set(drawn) == with_dead and "relu" in with_dead
    note = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    for act in {"softshrink", "relu", "tanh", "sigmoid"} - with_dead:
        assert act in note.split("No dead unit in any seed, layer or epoch:")[1]
    plt.close(fig)


@pytest.mark.parametrize("name", ["loss_curves", "gradient_norms", "dead_units"])
def test_every_panel_grid_has_axis_labels_and_a_legend(mixed, name):
    fig = plots.FIGURES[name](analysed(mixed))
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert any(ax.get_ylabel() for ax in shown) and fig.legends
    assert all(ax.get_xlabel() == "epoch" for ax in shown if ax.xaxis.get_tick_params().get("labelbottom", True))
    plt.close(fig)


def test_final_loss_legend_covers_no_data(mixed):
    fig = plots.final_losses(analysed(mixed))
    fig.canvas.draw()
    (ax,) = fig.axes
    (legend,) = fig.legends
    assert not legend.get_window_extent().overlaps(ax.get_window_extent())
    plt.close(fig)


def test_diverged_runs_are_marked_and_nothing_crashes(diverged):
    summary = storage.load_experiment(diverged).summary
    gone = {}
    for row in summary:
        gone.setdefault(row["activation"], []).append(row["status"] == "diverged")
    assert all(gone["identity"]) and not any(gone["tanh"])  # the experiment is what the test needs
    assert {"report.md", "report.html", "loss_curves.png", "final_loss.png"} <= {p.name for p in diverged.iterdir()}
    an = analysed(diverged)
    for name, draw in plots.FIGURES.items():
        fig = draw(an)
        if fig is None:
            continue
        for act, ax in (panels(fig) if name != "final_loss" else {}).items():  # final_loss: checked below
            notes = [t.get_text() for t in ax.texts if t.get_gid() == "diverged-note"]
            k, n = sum(gone[act]), len(gone[act])
            assert notes == ([f"{k} of {n} seeds diverged"] if k else []), (name, act)
        fig.savefig(diverged / f"check_{name}.png")  # drawing it for real must not fail either
        plt.close(fig)
    fig = plots.final_losses(an)
    rows = {t.get_text().split(" ")[-1]: pos for pos, t in zip(fig.axes[0].get_yticks(),
                                                               fig.axes[0].get_yticklabels())}
    x_marks = [y for line in marks(fig.axes[0], "diverged") for y in line.get_ydata()]
    for act, flags in gone.items():  # one x per diverged seed, on its activation's row
        assert sum(abs(y - rows[act]) < 0.5 for y in x_marks) == sum(flags), act
    plt.close(fig)


def test_fits_legend_names_target_and_seeds(tmp_path):
    folder = compare(tmp_path, "--config", str(CONFIGS / "cosine.yaml"), "-a", "relu,tanh", "--seeds", "2",
                     "--epochs", "3")
    fig = plots.fits(analysed(folder))
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert labels[0].startswith("target") and any("fit" in label for label in labels)
    assert all(ax.get_xlabel() == "x" for ax in panels(fig).values())
    plt.close(fig)


@pytest.fixture(scope="module")
def sparse(tmp_path_factory) -> Path:
    """relu and tanh over 14 epochs, the diagnostics measured at epochs 0, 1, 2, 4, 8 and 14 only."""
    return compare(tmp_path_factory.mktemp("runs"), "-a", "relu,tanh", "--seeds", "2", "--epochs", "14",
                   "--set", "train.diagnostics_dense=2")


def test_figures_join_the_measured_epochs_and_say_how_many(sparse):
    rows = metrics_rows(sparse)
    measured = {int(r["epoch"]) for r in rows if r["grad_norm_L1"] != ""}
    assert measured == {0, 1, 2, 4, 8, 14}  # the oracle: the cells metrics.csv holds
    an = analysed(sparse)
    for fig in (plots.gradient_norms(an), plots.dead_units(an)):
        note = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
        assert "Measured at 5 of 14 epochs" in note
        for ax in panels(fig).values():
            for line in ax.lines:
                if len(line.get_xdata()) > 1:  # a median line: the measured epochs, with no gap
                    assert set(line.get_xdata()) == measured - {0} and not np.isnan(line.get_ydata()).any()
        plt.close(fig)
    band = plots.Runs(np.array([[1.0, math.nan, 3.0], [2.0, math.nan, math.nan]]), np.array([False, False])).band()
    assert band.epochs.tolist() == [1, 3] and band.median.tolist() == [1.5, 3.0]


def test_report_ratio_is_a_median_over_the_measured_epochs(sparse):
    from actlab import report

    rows = metrics_rows(sparse)
    sizes = (10, 18, 18, 4, 1)
    scale = math.sqrt((sizes[-2] * sizes[-1] + sizes[-1]) / (sizes[0] * sizes[1] + sizes[1]))
    an = analysed(sparse)
    for act in ("relu", "tanh"):
        per_seed = [np.median([float(r["grad_norm_L1"]) / float(r["grad_norm_L4"]) * scale for r in rows
                               if r["activation"] == act and r["seed"] == seed and r["epoch"] != "0"
                               and r["grad_norm_L1"] != ""]) for seed in ("0", "1")]
        assert math.isclose(report.grad_ratio_training(an, act), float(np.median(per_seed)), rel_tol=1e-12)


def test_the_last_measured_value_of_a_run_that_stopped_between_two_measures():
    """Seed 0 ran 3 epochs, measured at 1 and 2; seed 1 diverged after epoch 3, which was not measured."""
    nan = math.nan
    table = {"activation": ["relu"] * 7, "seed": [0, 0, 0, 0, 1, 1, 1], "epoch": [0, 1, 2, 3, 0, 1, 2],
             "dead_L1": [0.5, 0.25, 0.5, nan, 0.0, 0.125, nan]}
    an = analysis.Analysis(None, table, [], 0.0, 0.0)
    assert an.last_measured("dead_L1", "relu").tolist() == [0.5, 0.125]  # epoch 0 is not "during training"
    assert np.isnan(an.final("dead_L1", "relu")).all()  # the last epoch's cell: empty
    assert np.isnan(analysis.Analysis(None, {**table, "dead_L1": [nan] * 7}, [], 0.0, 0.0)
                    .last_measured("dead_L1", "relu")).all()


def test_forked_drawing_writes_the_same_files_as_drawing_in_process(mixed, tmp_path):
    # the oracle: the same figures drawn one after another in this process (workers=1)
    from actlab import cdplot

    extra = {"critical_difference": lambda an: cdplot.cd_diagram(an.stats, an.overview)}
    an = analysed(mixed)
    paths = {}
    for workers in (1, 2):
        (tmp_path / str(workers)).mkdir()
        with plots.draw_all(an, tmp_path / str(workers), extra, workers=workers) as drawing:
            paths[workers] = drawing.result()
    (tmp_path / "svg").mkdir()  # the SVGs asked for: drawn in the forked processes too, the PNGs unchanged
    with plots.draw_all(an, tmp_path / "svg", extra, workers=2, svg=True) as drawing:
        with_svg = drawing.result()
    assert all(png.with_suffix(".svg").read_text().lstrip().startswith("<?xml") for png in with_svg.values())
    assert list(paths[2]) == list(paths[1]) == ["loss_curves", "final_loss", "gradient_norms", "dead_units",
                                                "critical_difference"]  # fits: 1-D tasks only
    for name, png in paths[1].items():
        assert png.read_bytes() == paths[2][name].read_bytes() == with_svg[name].read_bytes(), name
        assert not png.with_suffix(".svg").exists() and not paths[2][name].with_suffix(".svg").exists()


@pytest.mark.parametrize("name", ["loss_curves", "gradient_norms", "dead_units"])
def test_panels_span_the_epochs_with_matplotlibs_margins(mixed, name):
    # x autoscaling is deferred while the panels are drawn: once drawn, every panel must span epochs 1..6 with
    # matplotlib's default 5% margins, as if it had autoscaled all along
    fig = plots.FIGURES[name](analysed(mixed))
    fig.canvas.draw()
    for ax in fig.axes:
        if ax.get_visible():
            assert ax.get_xlim() == pytest.approx((1 - 0.05 * 5, 6 + 0.05 * 5)), name
            assert ax.get_autoscalex_on()
    plt.close(fig)


def test_quartiles_are_nanpercentiles_without_a_warning():
    # the oracle: np.nanpercentile over the seeds, epoch by epoch; NaN (unmeasured epochs, whole or partial) and
    # inf (a run on its way to diverging) included, and no warning printed for them
    import warnings

    rng = np.random.default_rng(5)
    data = rng.lognormal(size=(7, 40))
    data[rng.random(data.shape) < 0.2] = np.nan
    data[:, ::9] = np.nan
    data[2, 5:9] = np.inf
    data[3, 6] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.array([np.nanpercentile(data[:, e], [25, 50, 75]) for e in range(data.shape[1])]).T
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = analysis.quartiles(data)
    assert np.array_equal(got, expected, equal_nan=True)


def test_the_biggest_figures_are_handed_out_first():
    names = ["final_loss", "critical_difference", "gradient_norms", "dead_units", "loss_curves", "sensitivity"]
    order = plots.handout_order(names)
    assert sorted(order) == sorted(names)  # every figure, once
    assert order[:2] == ["loss_curves", "gradient_norms"]  # the two largest first: one per drawing process
    assert order[2:] == ["dead_units", "final_loss", "critical_difference", "sensitivity"]  # the rest as given
    assert plots.handout_order(["final_loss", "critical_difference"]) == ["final_loss", "critical_difference"]


@pytest.mark.parametrize("scale", ["linear", "log"])
def test_tick_marks_draw_the_pixels_of_the_axis_they_replace(scale):
    # the oracle: matplotlib's own axis, drawn with its ticks (labels hidden as on an inner panel), on the same
    # figure; log: minor ticks too (not at the major ones); limits with a tick exactly at an edge and ticks beyond
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def picture(replace: bool) -> np.ndarray:
        fig = Figure(figsize=(3, 2), dpi=80)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2, sharex=True, sharey=True)
        for ax in axes:
            ax.plot([1, 7], [0.02, 30] if scale == "log" else [0, 7], linewidth=3)
            ax.set_yscale(scale)
            ax.tick_params(labelsize=7, direction="inout", top=True, right=True)
        axes[0].set_xlim(1, 6.5)  # a tick at the left edge (kept), 7 beyond the right (left out)
        axes[1].label_outer()
        if replace:
            axes[1].add_artist(plots.TickMarks(axes[1].yaxis))
            axes[1].yaxis.set_visible(False)
        assert plots._marks_only(axes[1].yaxis)
        assert not plots._marks_only(axes[0].yaxis) and not plots._marks_only(axes[1].xaxis)  # labels shown
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba()).copy()

    before, after = picture(False), picture(True)
    assert (before != 255).any() and np.array_equal(before, after)


@pytest.mark.parametrize("svg", [False, True])
def test_a_figure_that_cannot_be_written_leaves_the_previous_one_whole(tmp_path, monkeypatch, svg):
    import errno

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    old = {suffix: f"the previous {suffix} figure".encode() for suffix in (".png", ".svg")}
    for suffix, data in old.items():
        (tmp_path / f"fig{suffix}").write_bytes(data)

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", full)  # the disk fills as the new file is put in place
    with pytest.raises(storage.StorageError, match=r"fig\.png: No space left on device; free some space"):
        plots.save(fig, tmp_path, "fig", svg=svg)
    monkeypatch.undo()
    assert {p.name for p in tmp_path.iterdir()} == {"fig.png", "fig.svg"}  # no .tmp left behind
    assert all((tmp_path / f"fig{suffix}").read_bytes() == data for suffix, data in old.items())
    plots.save(fig, tmp_path, "fig", svg=svg)  # written in place once the disk has room
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "fig.svg").read_bytes().startswith(b"<?xml") == svg


def test_the_figures_do_not_depend_on_the_comparisons_with_the_best(mixed, tmp_path):
    # the report forks the figures' processes once the runs are ranked and compares each with #1 while they
    # draw (workflow._report): every figure must be the same picture from the ranking alone
    from actlab import cdplot, stats

    stored = storage.load_experiment(mixed)
    reference = analysis.task_reference(stored.config)
    drawers = plots.FIGURES | {"critical_difference": lambda an: cdplot.cd_diagram(an.stats, an.overview)}
    pictures = {}
    for complete in (False, True):
        ranked = stats.rank(stored.summary, stored.curves(), reference=reference)
        if complete:
            stats.against_best(ranked[0])
        an = analysis.analyse(stored, ranked, reference=reference)
        folder = tmp_path / str(complete)
        folder.mkdir()
        for name, draw in drawers.items():
            fig = draw(an)
            if fig is not None:
                pictures.setdefault(name, []).append(plots.save(fig, folder, name)[0].read_bytes())
    assert {"loss_curves", "gradient_norms", "final_loss", "critical_difference"} <= set(pictures)
    assert all(a == b for a, b in pictures.values())
