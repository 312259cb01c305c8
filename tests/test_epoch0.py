"""Epoch 0: the measures at initialisation, before any step, recorded by both engines and written to
metrics.csv; everything that reads histories keeps epochs 1.. for 'final', 'best' and 'epochs to'."""

import math

import torch
from torch import nn

from actlab import activations, config, diagnostics, experiment, storage
from actlab.engines import RunSpec, TrainSettings
from actlab.engines import train as train_runs
from actlab.model import FeedForward, initial_parameters, load_parameters
from actlab.tasks import make_dataset

SIZES = (10, 18, 18, 4, 1)


def _results(engine):
    data = make_dataset("noise", 100, 0)
    specs = [RunSpec("relu", 3, 1e-3), RunSpec("sigmoid", 4, 1e-3), RunSpec("prelu", 5, 1e-3)]
    chunks = train_runs(specs, data, SIZES, TrainSettings(epochs=2, batch_size=10, shuffle=False), engine=engine,
                        workers=1)
    return data, {r.spec.run_id: r for chunk in chunks for r in chunk}


def test_epoch0_is_the_untrained_net_in_both_engines():
    data, loop = _results("loop")
    _, batched = _results("batched")
    for run_id, r in loop.items():
        spec = activations.resolve(r.spec.activation)
        model = load_parameters(FeedForward(SIZES, spec.build), initial_parameters(SIZES, r.spec.seed))
        loss = nn.MSELoss()(model(data.x_train), data.y_train).item()
        assert math.isclose(r.initial["full_loss"], loss, rel_tol=1e-6), run_id
        other = batched[run_id].initial  # same numbers up to float32 rounding of the stacked kernels
        assert other.keys() == r.initial.keys()
        assert all(math.isclose(v, other[k], rel_tol=1e-5, abs_tol=1e-12) for k, v in r.initial.items()), run_id
        snap = diagnostics.snapshot(model, data.x_train, data.y_train)
        counts = [a * b + b for a, b in zip(SIZES[:-1], SIZES[1:])]
        for layer, (rms, n) in enumerate(zip(snap.grad_rms, counts), start=1):  # norm / sqrt(n) = RMS
            assert math.isclose(r.initial[f"grad_norm_L{layer}"] / math.sqrt(n), rms, rel_tol=1e-5)
        assert r.initial["dead_L1"] == float(snap.dead[0].float().mean())
        assert len(r.history["full_loss"]) == r.epochs_done == 2  # histories hold epochs 1.. only
    assert "slope_L1" in loop["prelu/seed5"].initial and "slope_L1" not in loop["relu/seed3"].initial


def test_metrics_csv_numbers_epoch0_and_summary_ignores_it(tmp_path):
    cfg = config.build_config({"train": {"epochs": 3, "workers": 1, "lr": 0.5},
                               "compare": {"activations": ["relu", "tanh"], "seeds": 2}})
    exp = experiment.compare(cfg)
    writer = storage.ExperimentWriter.create(cfg, "compare", [r.spec.run_id for r in exp.results], "cpu",
                                             runs_dir=tmp_path)
    writer.add(exp.results)
    writer.finish()
    stored = storage.load_experiment(writer.path)
    table = stored.metrics()
    assert table["epoch"][:4] == [0, 1, 2, 3] and math.isnan(table["train_loss"][0])
    for r, row in zip(exp.results, stored.summary):
        full = r.history["full_loss"]
        assert row["final_loss"] == full[-1] and row["best_loss"] == min(full)  # epoch 0 is not "best"
        assert stored.curves()[r.spec.run_id] == full  # curves: epochs 1..
    assert all(torch.isfinite(torch.tensor(v)) for v in (r.initial["full_loss"] for r in exp.results))
