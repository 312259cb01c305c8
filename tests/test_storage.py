"""The experiment folder's writers: metrics.csv text as csv.writer would write it, in plan order at the end."""

import csv
import io
import math

import pytest

from actlab import config, experiment, storage

HOSTILE = ["plain", "a,b", 'say "hi"', "two\nlines", "cr\rhere", " lead", "trail ", "", "comma,and\"quote"]


def _oracle(columns) -> str:
    """csv.writer on the rows, NaN as an empty cell: what metrics.csv has always held."""
    buffer = io.StringIO(newline="")
    rows = zip(*[[v if v == v else "" for v in values] for values in columns])
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


@pytest.mark.parametrize("columns", [
    [[0.1, -0.0, 0.0, math.inf, -math.inf, math.nan, 1e-300, 5e-324, 1.0000000000000002, 123456789.125]],
    [[1, -2, 0, 10**20], [True, False, None, 3], HOSTILE[:4]],
    [HOSTILE, [1.5, math.nan, 2, "x,y", None, -0.0, 0.0, "", True]],  # mixed columns: each cell by its type
    [[], []],
    # the float column's ways (storage._float_cells): few values formatted once each (a NaN among them, and
    # -0.0 beside 0.0: equal, one dict key, two texts), mostly NaN, many distinct values
    [[0.5, 0.25, math.nan] * 40, [0.0, -0.0] * 60, [3.0, 0.0] * 60],
    [[math.nan] * 50 + [0.1, -0.0, 2.5, 0.0], [0.1 * i for i in range(54)]],
    [[i / 7 for i in range(1200)] + [-0.0, 0.0, math.nan, math.inf]],
])
def test_csv_lines_are_csv_writers_text_with_nan_empty(columns):
    assert "".join(storage.csv_lines(columns)) == _oracle(columns)
    back = list(csv.reader(io.StringIO("".join(storage.csv_lines(columns)), newline="")))
    assert back == [[_cell(v) for v in row] for row in zip(*columns)]


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return "" if value is None else str(value)


@pytest.fixture(scope="module")
def results():
    cfg = config.build_config({"compare": {"activations": ["relu", "tanh", "leaky_relu"], "seeds": 2},
                               "model": {"options": {"leaky_relu": {"negative_slope": 0.3}}},  # run id with [=]
                               "train": {"epochs": 3}})
    return cfg, experiment.compare(cfg).results


@pytest.mark.parametrize("keep", [True, False])
def test_metrics_csv_ends_in_plan_order_whatever_order_runs_arrive(tmp_path, monkeypatch, results, keep):
    """Chunks arriving last-first: the complete folder's metrics.csv is byte for byte that of chunks arriving in
    order, whether the writer sorts the rows it kept in memory or (a huge study) reads the file back."""
    cfg, runs = results
    if not keep:
        monkeypatch.setattr(storage, "KEEP_METRICS_CHARS", 0)
    ids = [r.spec.run_id for r in runs]
    texts = {}
    for name, chunks in (("ordered", [runs[:2], runs[2:5], runs[5:]]), ("reversed", [runs[5:], runs[2:5], runs[:2]])):
        writer = storage.ExperimentWriter.create(cfg, "compare", ids, "cpu", runs_dir=tmp_path / name)
        for chunk in chunks:
            writer.add(chunk)
        if name == "reversed":  # until the end, rows are where they arrived (a crash keeps them all)
            rows = list(csv.reader(io.StringIO((writer.path / "metrics.csv").read_text(), newline="")))
            assert rows[1][0] == runs[5].spec.run_id
        writer.finish("complete")
        texts[name] = (writer.path / "metrics.csv").read_bytes()
    assert texts["ordered"] == texts["reversed"]
    rows = list(csv.reader(io.StringIO(texts["ordered"].decode(), newline="")))
    assert rows[0] == storage.metric_columns(cfg)
    assert [row[0] for row in rows[1:]] == [i for i, r in zip(ids, runs) for _ in range(r.epochs_done + 1)]
    columns = storage.metrics_table(cfg, runs).values()
    assert texts["ordered"].decode() == _oracle([[c] for c in storage.metric_columns(cfg)]) + _oracle(columns)
