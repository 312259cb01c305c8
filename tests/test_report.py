"""Figures, report.md and the read-back commands, on real (small) experiment folders."""

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from actlab import cli, experiment

runner = CliRunner()
FAST = ["--epochs", "4", "--seeds", "2", "--set", "train.workers=1"]


def invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


def only_folder(parent: Path) -> Path:
    (folder,) = [p for p in parent.iterdir() if p.is_dir()]
    return folder


def assert_valid_figure(png: Path) -> None:
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert not png.with_suffix(".svg").exists()  # drawn once, as PNG: SVG only with `report --svg`


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = invoke("compare", "-a", "identity,relu,sigmoid,tanh,leaky_relu", *FAST, "--out", out)
    assert result.exit_code == 0, result.output
    return only_folder(out)


def test_compare_writes_figures_and_a_report_that_links_them(compared):
    report = (compared / "report.md").read_text()
    for name in ("loss_curves", "final_loss", "gradient_norms", "dead_units"):
        assert_valid_figure(compared / f"{name}.png")
        assert f"]({name}.png)" in report and ".svg" not in report
    assert not (compared / "fits.png").exists()  # 10-d inputs: no curve to draw
    assert_valid_figure(compared / "critical_difference.png")
    assert "](critical_difference.png)" in report
    assert "| # | activation | mean rank | median | 95% CI of median |" in report
    ranking = report.split("## Ranking")[1].split("##")[0]
    assert ranking.count("| `") == 5  # one row per activation
    stats_rows = json.loads((compared / "stats.json").read_text())
    assert [r["activation"] for r in stats_rows][0] in report.split("| `")[1]  # best first, as in the report
    assert {r["activation"] for r in stats_rows} == {"identity", "relu", "sigmoid", "tanh", "leaky_relu"}
    assert all(r["runs"] == 2 and r["final_lo"] is None for r in stats_rows)  # 2 seeds: no 95% CI of a median
    assert [r["rank"] for r in stats_rows] == [1, 2, 3, 4, 5]
    assert (compared / "stats.csv").read_text().startswith("activation,rank,tied_with_best,runs,diverged,same_as")


def test_report_answers_first_and_says_when_seeds_are_too_few(compared):
    report = (compared / "report.md").read_text()
    top = report.split("## Setup")[0]
    assert re.search(r"> Best: \w+, median final loss [\d.e-]+, mean rank [\d.]+ over 2 seeds", top)
    assert "> Too few seeds for any significance: with 2 seeds the smallest exact p is 0.5" in top
    assert "> Claims of the articles: supported:" in top
    stats_rows = json.loads((compared / "stats.json").read_text())
    assert all(r["verdict"] in ("best", "not separable") for r in stats_rows)  # nothing can be significant


def test_report_checks_each_claim_with_numbers(compared):
    report = (compared / "report.md").read_text()
    section = report.split("## What the data says")[1].split("## Figures")[0]
    verdict = r": (supported|contradicted|not shown)\.\*\*"
    for claim in ("C1", "C2 sigmoid", "C2 tanh", "C3", "C4", "C5a", "C5b"):
        assert re.search(r"\*\*" + claim + r"\. [^*]+" + verdict, section), claim
    assert re.search(r"identity's final loss over 2 seeds: [\d.]+ to [\d.]+; least-squares optimum", section)
    assert re.search(r"sigmoid: first-layer RMS gradient [\d.]+x the last layer's", section)
    assert re.search(r"relu over 2 runs \(80 hidden units\): \d+ died during training, \d+ were dead", section)
    assert "D1." not in section  # the curve claims only for 1-D tasks


def test_report_command_rewrites_from_disk_alone(compared):
    before = (compared / "report.md").read_text()
    (compared / "report.md").unlink()
    result = invoke("report", compared)
    assert result.exit_code == 0, result.output
    assert (compared / "report.md").read_text() == before


@pytest.mark.parametrize("grid", [False, True])
def test_report_svg_writes_each_figure_as_svg_too_and_a_plain_report_keeps_them_current(compared, tmp_path, grid):
    if grid:  # a grid folder's report: its own figures (sensitivity) too
        result = invoke("compare", "-a", "relu,tanh", "--epochs", "2", "--seeds", "4", "--grid", "train.lr=1e-3,1e-2",
                        "--set", "train.workers=1", "--no-report", "--out", tmp_path / "runs", "-q")
        assert result.exit_code == 0, result.output
        folder = only_folder(tmp_path / "runs")
    else:
        folder = tmp_path / "copy"
        shutil.copytree(compared, folder)
    assert invoke("report", folder).exit_code == 0
    pngs = {p.name: p.read_bytes() for p in folder.glob("*.png")}
    assert "loss_curves.png" in pngs and ("sensitivity.png" in pngs) == grid and not list(folder.glob("*.svg"))
    result = invoke("report", folder, "--svg")
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in folder.glob("*.svg")) == sorted(Path(name).stem for name in pngs)
    for svg in folder.glob("*.svg"):
        assert ET.parse(svg).getroot().tag.endswith("svg"), svg  # well-formed SVG documents
    assert {p.name: p.read_bytes() for p in folder.glob("*.png")} == pngs  # the same pictures as without --svg
    stale = folder / "loss_curves.svg"
    stale.write_text("<svg>an old figure</svg>")
    assert invoke("report", folder).exit_code == 0  # no --svg: the folder's SVGs are redrawn, none deleted
    assert sorted(p.stem for p in folder.glob("*.svg")) == sorted(Path(name).stem for name in pngs)
    assert "an old figure" not in stale.read_text() and ET.parse(stale).getroot().tag.endswith("svg")


def test_show_and_runs_read_folders_back(compared):
    shown = invoke("show", compared)
    assert shown.exit_code == 0 and "complete" in shown.output and "leaky_relu" in shown.output
    listed = invoke("runs", compared.parent)
    assert listed.exit_code == 0 and compared.name in listed.output and "compare" in listed.output


def test_report_on_an_interrupted_folder(tmp_path, monkeypatch):
    real_run = experiment.run

    def interrupted(*args, **kwargs):
        chunks = real_run(*args, **kwargs)
        yield next(chunks)
        yield next(chunks)
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "run", interrupted)
    result = invoke("compare", "-a", "relu,tanh", *FAST, "--engine", "loop", "--out", tmp_path)
    assert result.exit_code == 130
    folder = only_folder(tmp_path)
    assert not (folder / "report.md").exists()
    result = invoke("report", folder)
    assert result.exit_code == 0, result.output
    report = (folder / "report.md").read_text()
    assert "status **incomplete**" in report and "2 of 4 runs" in report
    assert_valid_figure(folder / "loss_curves.png")


def test_cosine_fits_are_drawn(tmp_path):
    config = Path(__file__).parent.parent / "configs" / "cosine.yaml"
    result = invoke("compare", "--config", config, "-a", "relu,tanh", *FAST, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    folder = only_folder(tmp_path)
    assert_valid_figure(folder / "fits.png")
    report = (folder / "report.md").read_text()
    assert "](fits.png)" in report
    for claim in ("D1. identity gives a straight line: not shown", "D2. relu often gets stuck", "D4 tanh. tanh fits",
                  "D3. leaky_relu avoids getting stuck: not shown"):
        assert f"**{claim}" in report, claim
    assert "| stuck | 95% Wilson |" in report and "best monotone fit 0.3446" in report
    rows = json.loads((folder / "stats.json").read_text())
    assert all(r["threshold"] == pytest.approx(0.1 * r["constant_loss"]) for r in rows)  # below the plateau


def test_plot_activations_never_overwrites(tmp_path):
    target = tmp_path / "acts.png"
    assert invoke("plot", "activations", "--out", target).exit_code == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ET.parse(target.with_suffix(".svg")).getroot().tag.endswith("svg")  # one figure, asked for: both
    again = invoke("plot", "activations", "--out", target)
    assert again.exit_code == 2 and "exists" in again.output


def test_report_on_a_folder_that_is_not_an_experiment(tmp_path):
    result = invoke("report", tmp_path)
    assert result.exit_code == 2 and "not an actlab experiment folder" in result.output


def test_metrics_in_memory_equal_metrics_read_back(tmp_path):
    from helpers import same_values

    from actlab import config, storage

    cfg = config.build_config({"train": {"epochs": 3, "workers": 1}, "compare": {"activations": ["relu", "prelu",
                                                                                             "softmax"], "seeds": 2}})
    exp = experiment.compare(cfg)
    writer = storage.ExperimentWriter.create(cfg, "compare", [r.spec.run_id for r in exp.results], "cpu",
                                             runs_dir=tmp_path)
    writer.add(exp.results)
    writer.finish()
    on_disk = storage.load_experiment(writer.path).metrics()
    in_memory = storage.metrics_table(cfg, exp.results)
    assert on_disk.keys() == in_memory.keys()
    for column, values in in_memory.items():
        assert same_values(values, on_disk[column]) if isinstance(values[0], float) else values == on_disk[column]


def test_losses_only_experiment_reports_what_it_measured(tmp_path):
    result = invoke("compare", "-a", "relu,sigmoid,identity", *FAST, "--set", "train.diagnostics=false",
                    "--out", tmp_path)
    assert result.exit_code == 0, result.output
    folder = only_folder(tmp_path)
    header = (folder / "metrics.csv").read_text().splitlines()[0]
    assert "full_loss" in header and "grad_norm" not in header and "dead_L1" not in header
    report = (folder / "report.md").read_text()
    assert "train.diagnostics off" in report
    assert not (folder / "gradient_norms.png").exists() and (folder / "loss_curves.png").exists()


def test_report_tabulates_diagnostics_for_every_activation(compared):
    section = (compared / "report.md").read_text().split("## Why: diagnostics per activation")[1].split("##")[0]
    for name in ("identity", "relu", "sigmoid", "tanh", "leaky_relu"):
        num = r"[\d.e+-]+"
        assert re.search(rf"\| `{name}` \| (yes|no) \| {num} \| {num} \| {num} \| {num} \| \d+ \| \d+ \| \d+ \| "
                         rf"\d+% \(\d+%\) \| \d+ \| \d+% \|", section), name
    assert "| `sigmoid` | yes |" in section and "| `relu` | no |" in section  # bounded, measured


def test_claim_4_counts_finite_blowups_and_diverged_runs_are_reported(tmp_path):
    result = invoke("compare", "-a", "relu,leaky_relu,sigmoid,tanh", "--epochs", "6", "--seeds", "3", "--lr", "1",
                    "--set", "train.workers=1", "--out", tmp_path / "finite")
    assert result.exit_code == 0, result.output
    folder = only_folder(tmp_path / "finite")
    summary = json.loads((folder / "summary.json").read_text())
    assert all(r["status"] == "ok" for r in summary)  # no NaN/inf: every blow-up here is finite
    blown = sum(r["final_loss"] > 2.5 for r in summary if r["activation"] in ("relu", "leaky_relu"))
    c4 = re.search(r"\*\*C4\.[^\n]*unbounded (\d+) of 6", (folder / "report.md").read_text())
    assert c4 and int(c4.group(1)) >= blown > 0

    result = invoke("compare", "-a", "relu,leaky_relu,sigmoid,identity", *FAST, "--lr", "1e6",
                    "--out", tmp_path / "diverged")
    assert result.exit_code == 0, result.output
    folder = only_folder(tmp_path / "diverged")
    rows = json.loads((folder / "stats.json").read_text())
    assert sum(r["diverged"] for r in rows) > 0 and len(rows) == 4  # diverged runs are never "identical"
    assert "unbounded" in (folder / "report.md").read_text()


def test_stats_json_holds_the_numbers_the_report_prints(compared):
    report = (compared / "report.md").read_text()
    rows = {r["activation"]: r for r in json.loads((compared / "stats.json").read_text())}
    died = re.search(r"relu over 2 runs \(80 hidden units\): (\d+) died during training, (\d+) were dead", report)
    assert (int(died.group(1)), int(died.group(2))) == (rows["relu"]["died"], rows["relu"]["born_dead"])
    assert rows["relu"]["died"] == sum(rows["relu"][f"died_L{layer}"] for layer in (1, 2, 3))  # per hidden layer
    for claim in ("C1", "C3", "C4"):
        verdict = re.search(r"\*\*" + claim + r"\. [^*]+: (supported|contradicted|not shown)\.\*\*", report).group(1)
        assert all(r[f"claim {claim}"] == verdict for r in rows.values())
    line = re.search(r"\| `sigmoid` \| yes \| ([\d.e+-]+) \| ([\d.e+-]+) \|", report)
    assert float(line.group(1)) == pytest.approx(rows["sigmoid"]["grad_rms_ratio_init"], rel=0.01)
    assert float(line.group(2)) == pytest.approx(rows["sigmoid"]["grad_rms_ratio_training"], rel=0.01)
    best = re.search(r"> Best: (\w+), median final loss ([\d.e+-]+)", report)
    assert rows[best.group(1)]["rank"] == 1
    assert float(best.group(2)) == pytest.approx(rows[best.group(1)]["final_median"], rel=1e-3)


def test_the_reports_initial_state_is_the_runs_own_initialisation(tmp_path):
    # the epoch-0 row of metrics.csv (the engine's untrained net) is the oracle for the report's recomputed
    # start: with a non-default weight scheme and zero biases the default initialisation would not match it
    from actlab import analysis, storage

    result = invoke("compare", "-a", "relu,tanh", "--epochs", "2", "--seeds", "2", "--set", "train.workers=1",
                    "--set", "model.init=xavier_normal", "--set", "model.init_bias=zero", "--no-report",
                    "--out", tmp_path)
    assert result.exit_code == 0, result.output
    an = analysis.analyse(storage.load_experiment(only_folder(tmp_path)))
    t = an.table
    for act in ("relu", "tanh"):
        initial = {s: v for a, s, e, v in zip(t["activation"], t["seed"], t["epoch"], t["full_loss"])
                   if a == act and e == 0}
        start = {u.seed: u.start.loss for u in an.units()[act]}
        assert sorted(start) == sorted(initial) == [0, 1]
        assert [start[s] for s in (0, 1)] == pytest.approx([initial[s] for s in (0, 1)], rel=1e-5)


def test_run_units_stacked_equal_run_by_run(tmp_path, monkeypatch):
    # oracle: the per-run path (diagnostics.snapshot on each net) on the same folder: prelu's learned slopes,
    # softmax (no unit masks) and relu, at initialisation and at the end
    from actlab import analysis, storage

    result = invoke("compare", "-a", "relu,prelu,softmax", "--epochs", "3", "--seeds", "3", "--set", "train.workers=1",
                    "--set", "train.lr=0.05", "--no-report", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    stored = storage.load_experiment(only_folder(tmp_path))
    stacked = analysis.run_units(stored)
    monkeypatch.setattr(analysis, "_stackable", lambda *_: False)
    one_by_one = analysis.run_units(stored)
    assert list(stacked) == list(one_by_one) == ["relu", "prelu", "softmax"]
    for act in stacked:
        assert [u.seed for u in stacked[act]] == [u.seed for u in one_by_one[act]] == [0, 1, 2]
        for a, b in zip(stacked[act], one_by_one[act]):
            for got, want in ((a.start, b.start), (a.end, b.end)) if a.end else ((a.start, b.start),):
                assert got.loss == pytest.approx(want.loss, rel=1e-5)
                assert got.grad_rms == pytest.approx(want.grad_rms, rel=1e-4)
                for kind in ("dead", "negative", "weights"):
                    assert all(torch.equal(x, y) for x, y in zip(getattr(got, kind), getattr(want, kind), strict=True))
    assert all(u.end is not None for runs in stacked.values() for u in runs)  # every run's end measured
