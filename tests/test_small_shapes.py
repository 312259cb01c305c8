"""The batched engine equals the loop engine bit for bit also at the shapes where a stacked product would sum
in another order than a single run's nn.Linear (engines/affine.py): a last mini-batch of 1-5 rows, mini-batches
of one row, a held-out set of 3, a one-output layer after a wide one. Before affine, the probe warned on each
of these and the engines differed in the last bits; now the probe finds them equal and so do the runs."""

import pytest
import torch
from helpers import probe, same_history

from actlab.engines import RunSpec, TrainSettings, train
from actlab.engines.probe import kernel_setup
from actlab.tasks import make_dataset

NAMES = ("relu", "tanh", "prelu", "gelu", "sigmoid", "softmax")

CASES = {  # name: (dataset, layer sizes, batch size)
    "last batch of 3": (lambda: make_dataset("noise", 93, 0), (10, 18, 18, 4, 1), 10),
    "last batch of 1": (lambda: make_dataset("noise", 21, 0), (10, 18, 18, 4, 1), 10),
    "batches of 1": (lambda: make_dataset("noise", 6, 0), (10, 18, 18, 4, 1), 1),
    "held-out set of 3": (lambda: make_dataset("teacher", 30, 1, noise=0.1, test_fraction=0.1), (10, 18, 18, 4, 1), 4),
    "18 -> 1 output layer": (lambda: make_dataset("noise", 40, 0), (10, 18, 18, 18, 1), 10),
    "64 -> 1 after 1 input": (lambda: make_dataset("cosine", 40, 0), (1, 64, 1), 8),
}


@pytest.mark.parametrize("case", list(CASES))
def test_small_and_one_column_products_are_bitwise(case):
    """Asserted, not skipped on the probe's word: with actlab's pinning this is the claim. (A user's other MKL
    branch, MKL_CBWR=AVX2, makes the gradients' small products differ too: the probe warns there.)"""
    if (kernel_setup()["mkl_cbwr"] or "").upper() != "COMPATIBLE":
        pytest.skip(f"MKL_CBWR={kernel_setup()['mkl_cbwr']}: the claim is for actlab's pinning (COMPATIBLE)")
    make, sizes, batch = CASES[case]
    data = make()
    specs = [RunSpec(name, seed, 0.003) for name in NAMES for seed in (0, 1)]
    found = probe(specs, data, sizes, batch)
    assert found["bitwise"], found["failed"][:4]
    settings = TrainSettings(epochs=3, batch_size=batch, shuffle=True)
    runs = {engine: {r.spec.run_id: r for chunk in train(specs, data, sizes, settings, engine=engine, workers=1)
                     for r in chunk} for engine in ("loop", "batched")}
    for run_id, ref in runs["loop"].items():
        got = runs["batched"][run_id]
        assert got.engine == "batched" and same_history(ref.history, got.history), run_id
        assert all(torch.equal(ref.state[k], got.state[k]) for k in ref.state), run_id
