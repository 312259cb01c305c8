"""The fair ranking: disjoint seeds, choice on tuning seeds only, robustness views, the validation split."""

import math
import random

import numpy as np
import pytest
import torch

from actlab import study, tasks

KEYS = ("train.lr",)


def row(activation, lr, seed, loss, status="ok", **extra):
    return {"activation": activation, "train.lr": lr, "seed": seed, "status": status, "final_loss": loss, **extra}


def table(losses):
    """Rows from {(activation, lr): [loss of seed 0, seed 1, ...]}."""
    return [row(a, lr, s, v) for (a, lr), values in losses.items() for s, v in enumerate(values)]


def test_default_split_is_the_first_half_tuning_the_rest_evaluation():
    assert study.split_seeds(range(10)) == study.SeedSplit((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
    assert study.split_seeds([7, 3, 5]) == study.SeedSplit((3,), (5, 7))  # sorted; odd: evaluation gets more
    assert study.split_seeds([1, 0, 1, 0]) == study.SeedSplit((0,), (1,))  # rows repeat seeds
    assert study.split_seeds(range(6), tuning=[4, 1]) == study.SeedSplit((1, 4), (0, 2, 3, 5))


@pytest.mark.parametrize(("seeds", "tuning", "message"), [
    ([0], None, "at least 2 seeds"),
    ([0, 1], [2], r"\[2\] are not seeds"),
    ([0, 1], [0, 1], "at least one seed to tune and one to evaluate"),
    ([0, 1], [], "at least one seed to tune and one to evaluate"),
])
def test_bad_seed_splits_are_clear_errors(seeds, tuning, message):
    with pytest.raises(study.StudyError, match=message):
        study.split_seeds(seeds, tuning)


def test_hand_worked_example():
    # seeds 0, 1 tune; 2, 3 evaluate. relu is best at lr 0.01 on the tuning seeds, though lr 0.1 would have
    # looked better on the evaluation seeds: the fair ranking must report 0.01's evaluation numbers.
    rows = table({
        ("relu", 0.1): [0.50, 0.60, 0.10, 0.10],
        ("relu", 0.01): [0.20, 0.30, 0.40, 0.45],
        ("tanh", 0.1): [0.35, 0.25, 0.30, 0.20],
        ("tanh", 0.01): [0.90, 0.80, 0.05, 0.05],
    })
    fair = study.fair_ranking(rows, KEYS)
    assert fair.split == study.SeedSplit((0, 1), (2, 3))
    assert (fair.chosen_on, fair.reported_on) == ("final_loss", "final_loss")
    by_act = {r.activation: r for r in fair.rows}
    assert by_act["relu"].choice.setting == {"train.lr": 0.01}
    assert by_act["relu"].choice.tuning_median == pytest.approx(0.25)  # median of 0.20, 0.30
    assert by_act["relu"].evaluation == {2: 0.40, 3: 0.45}
    assert by_act["tanh"].choice.setting == {"train.lr": 0.1}
    assert by_act["tanh"].evaluation == {2: 0.30, 3: 0.20}
    assert [r.activation for r in fair.rows] == ["tanh", "relu"]  # evaluation medians 0.25 < 0.425
    assert fair.paired() == {"tanh": [0.30, 0.20], "relu": [0.40, 0.45]}


def random_rows(rng, activations=("relu", "tanh", "selu", "gelu"), lrs=(1e-4, 1e-3, 1e-2, 1e-1), seeds=8):
    rows = []
    for a in activations:
        for lr in lrs:
            for s in range(seeds):
                status = "diverged" if rng.random() < 0.1 else "ok"
                rows.append(row(a, lr, s, rng.lognormvariate(0, 1) if status == "ok" else float("nan"), status))
    return rows


def choices(fair):
    return {r.activation: (r.choice.setting, r.choice.tuning_median) for r in fair.rows}


def test_evaluation_seeds_never_influence_the_choice():
    rng = random.Random(0)
    changed_by_tuning = 0
    for _ in range(30):
        rows = random_rows(rng)
        before = choices(study.fair_ranking(rows, KEYS))
        evaluation = set(study.split_seeds(range(8)).evaluation)
        # new numbers (and new divergences) for the evaluation seeds only: the choice must not move
        shuffled = [dict(r, final_loss=rng.lognormvariate(0, 2), status=rng.choice(["ok", "ok", "diverged"]))
                    if r["seed"] in evaluation else r for r in rows]
        after = study.fair_ranking(shuffled, KEYS)
        assert choices(after) == before
        # the control: the same change on the tuning seeds does move choices, so this test can fail
        retuned = [dict(r, final_loss=rng.lognormvariate(0, 2)) if r["seed"] not in evaluation else r for r in rows]
        changed_by_tuning += choices(study.fair_ranking(retuned, KEYS)) != before
    assert changed_by_tuning >= 20


def test_reported_numbers_come_from_the_evaluation_seeds_at_the_chosen_setting():
    rows = random_rows(random.Random(1))
    fair = study.fair_ranking(rows, KEYS)
    for r in fair.rows:
        for seed, value in r.evaluation.items():
            (source,) = [x for x in rows if x["activation"] == r.activation and x["seed"] == seed
                         and x["train.lr"] == r.choice.setting["train.lr"]]
            assert value == (source["final_loss"] if source["status"] == "ok" else math.inf)
            assert seed not in fair.split.tuning


def test_diverged_and_missing_runs_count_as_infinite():
    rows = table({("relu", 0.1): [0.1, 0.1, 0.1, 0.5, 0.5, 0.5], ("relu", 0.01): [0.3, 0.3, 0.3, 0.5, 0.5, 0.5]})
    rows[1]["status"] = rows[2]["status"] = "diverged"  # lr 0.1: seeds 1 and 2 diverge, median +inf
    fair = study.fair_ranking(rows, KEYS)
    assert fair.rows[0].choice.setting == {"train.lr": 0.01}
    # a setting missing a tuning run cannot win on the runs it has
    rows = table({("relu", 0.1): [0.1, 0.1, 0.5, 0.5], ("relu", 0.01): [0.3, 0.3, 0.5, 0.5]})
    rows = [r for r in rows if not (r["train.lr"] == 0.1 and r["seed"] == 1)]
    assert study.fair_ranking(rows, KEYS).rows[0].choice.setting == {"train.lr": 0.01}
    # an evaluation run that diverged is reported as +inf and counted
    rows = table({("relu", 0.1): [0.1, 0.1, 0.5, 0.5]})
    rows[3]["status"] = "diverged"
    (only,) = study.fair_ranking(rows, KEYS).rows
    assert only.evaluation == {2: 0.5, 3: math.inf} and only.diverged == 1 and only.median == math.inf


def test_ties_are_broken_by_mean_then_by_the_smallest_value_whatever_the_row_order():
    # tuning seeds 0, 1, 2: equal medians (0.2); lr 0.3 has the lower mean
    rows = table({("relu", 0.1): [0.2, 0.2, 0.9, 1, 1, 1], ("relu", 0.3): [0.1, 0.2, 0.2, 1, 1, 1],
                  ("relu", 0.03): [0.2, 0.2, 0.2, 1, 1, 1]})
    for order in range(5):
        random.Random(order).shuffle(rows)
        assert study.fair_ranking(rows, KEYS).rows[0].choice.setting == {"train.lr": 0.3}
    # all equal: the smallest value
    rows = table({("relu", 0.1): [0.2, 0.2, 1, 1], ("relu", 0.03): [0.2, 0.2, 1, 1]})
    assert study.fair_ranking(rows[::-1], KEYS).rows[0].choice.setting == {"train.lr": 0.03}


def test_with_held_out_splits_choose_on_validation_and_report_test():
    rows = []
    for lr, val, test in [(0.1, 0.2, 0.9), (0.01, 0.4, 0.1)]:
        for seed in range(4):
            rows.append(row("relu", lr, seed, 0.01 * lr, final_val_loss=val, final_test_loss=test))
    fair = study.fair_ranking(rows, KEYS)
    assert (fair.chosen_on, fair.reported_on) == ("final_val_loss", "final_test_loss")
    assert fair.rows[0].choice.setting == {"train.lr": 0.1}  # the lower validation loss, not train or test
    assert fair.rows[0].evaluation == {2: 0.9, 3: 0.9}
    # the test loss of the tuning runs is never looked at: changing it changes nothing
    for r in rows:
        if r["seed"] < 2:
            r["final_test_loss"] = -1.0 if r["train.lr"] == 0.01 else 5.0
    assert choices(study.fair_ranking(rows, KEYS)) == choices(fair)


def test_without_validation_a_test_split_is_still_not_used_to_choose():
    rows = [row("relu", lr, s, train, final_test_loss=test, final_val_loss=float("nan"))
            for lr, train, test in [(0.1, 0.3, 0.1), (0.01, 0.2, 0.5)] for s in range(2)]
    fair = study.fair_ranking(rows, KEYS)
    assert (fair.chosen_on, fair.reported_on) == ("final_loss", "final_test_loss")
    assert fair.rows[0].choice.setting == {"train.lr": 0.01} and fair.rows[0].evaluation == {1: 0.5}


def test_several_grid_keys_choose_a_combination():
    keys = ("train.lr", "model.init")
    rows = [dict(row("tanh", lr, s, loss), **{"model.init": init})
            for lr, init, loss in [(0.1, "default", 0.5), (0.1, "xavier_uniform", 0.2), (0.01, "default", 0.3),
                                   (0.01, "xavier_uniform", 0.4)] for s in range(2)]
    assert study.fair_ranking(rows, keys).rows[0].choice.setting == {"train.lr": 0.1, "model.init": "xavier_uniform"}


def test_mean_rank_and_expected_loss_by_hand():
    # median over seeds per (activation, lr); ranks per lr: lr 0.1 -> a 1, b 2.5, c 2.5; lr 0.01 -> c 1, a 2, b 3
    rows = table({("a", 0.1): [1, 2, 3], ("b", 0.1): [4, 5, 6], ("c", 0.1): [5, 5, 5],
                  ("a", 0.01): [2, 2, 2], ("b", 0.01): [9, 9, 9], ("c", 0.01): [0, 1, 2]})
    assert study.mean_ranks(rows, KEYS, "final_loss") == {"a": 1.5, "b": 2.75, "c": 1.75}
    assert study.expected_loss(rows, KEYS, "final_loss") == {"a": 2.0, "b": 7.0, "c": 3.0}
    rows[0]["status"] = rows[1]["status"] = "diverged"  # a at lr 0.1: two of three diverge -> median inf
    assert study.mean_ranks(rows, KEYS, "final_loss")["a"] == 2.5  # last (3) at 0.1, 2nd at 0.01
    assert study.expected_loss(rows, KEYS, "final_loss")["a"] == math.inf


def test_quantile_is_numpys_linear_quantile_and_handles_infinity():
    gen = np.random.default_rng(0)
    for n in (1, 2, 5, 10, 11):
        values = list(gen.normal(size=n))
        for q in (0.0, 0.25, 0.5, 0.75, 1.0):
            assert study.quantile(values, q) == pytest.approx(float(np.quantile(values, q)), rel=1e-12, abs=1e-15)
    assert study.quantile([1.0, math.inf], 0.5) == math.inf
    assert study.quantile([1.0, 2.0, math.inf], 0.5) == 2.0
    assert study.quantile([math.inf, math.inf], 0.75) == math.inf  # numpy: nan
    assert study.quantile([], 0.5) == math.inf


def test_sensitivity_gives_median_and_quartiles_per_value():
    rows = table({("relu", 0.1): [1, 2, 3, 4, 5], ("relu", 0.01): [2, 2, 2, 2, 2]})
    rows[4]["status"] = "diverged"
    (lo, hi) = study.sensitivity(rows, "train.lr", "final_loss")["relu"]
    assert lo == {"train.lr": 0.01, "median": 2, "q1": 2, "q3": 2, "runs": 5, "diverged": 0}
    assert hi == {"train.lr": 0.1, "median": 3, "q1": 2, "q3": 4, "runs": 5, "diverged": 1}


def test_rows_at_picks_the_fixed_setting():
    rows = table({("relu", 0.1): [1, 2], ("relu", 0.001): [3, 4]})
    assert [r["final_loss"] for r in study.rows_at(rows, {"train.lr": 1e-3})] == [3, 4]


def test_carved_validation_is_a_seeded_part_of_the_training_points():
    data = tasks.make_dataset("teacher", 100, 0, test_fraction=0.2)
    n_val = study.validation_size(100, 0.2, 0.1)
    assert n_val == 10
    x, y, x_val, y_val = study.carve_validation(data.x_train, data.y_train, n_val, seed=0)
    assert (len(x), len(x_val)) == (70, 10)
    # a partition of the training points (rows are distinct Gaussian draws), order kept within each part
    train_rows = {tuple(r.tolist()) for r in data.x_train}
    parts = [tuple(r.tolist()) for r in torch.cat([x, x_val])]
    assert set(parts) == train_rows and len(parts) == len(train_rows)
    index = {tuple(r.tolist()): i for i, r in enumerate(data.x_train)}
    for part, targets in ((x, y), (x_val, y_val)):
        positions = [index[tuple(r.tolist())] for r in part]
        assert positions == sorted(positions)
        assert torch.equal(targets, data.y_train[positions])
    again = study.carve_validation(data.x_train, data.y_train, n_val, seed=0)
    other = study.carve_validation(data.x_train, data.y_train, n_val, seed=1)
    assert torch.equal(again[2], x_val) and not torch.equal(other[2], x_val)


def test_validation_size_must_leave_training_points():
    assert study.validation_size(100, 0.0, 0.0) == 0
    with pytest.raises(study.StudyError, match="data.validation_fraction: 0.5 leaves 0 training points"):
        study.validation_size(100, 0.5, 0.5)


def test_without_a_grid_the_fair_ranking_is_the_evaluation_seeds_at_the_one_setting():
    rows = table({("tanh", 1e-3): [0.1, 0.1, 0.5, 0.5], ("relu", 1e-3): [0.9, 0.9, 0.2, 0.3]})
    fair = study.fair_ranking(rows, ())
    assert [(r.activation, r.choice.setting, r.evaluation) for r in fair.rows] == [
        ("relu", {}, {2: 0.2, 3: 0.3}), ("tanh", {}, {2: 0.5, 3: 0.5})]
