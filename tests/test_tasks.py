import math

import pytest
import torch

from actlab.tasks import TaskError, make_dataset


def test_noise_is_the_articles_shape_and_seeded():
    a, b, c = make_dataset("noise", 100, 0), make_dataset("noise", 100, 0), make_dataset("noise", 100, 1)
    assert a.x_train.shape == (100, 10) and a.y_train.shape == (100, 1)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert abs(a.y_train.mean().item()) < 0.3 and 0.7 < a.y_train.std().item() < 1.3


def test_cosine_is_cos_plus_one_on_a_grid():
    d = make_dataset("cosine", 100, 0)
    assert d.x_train.shape == (100, 1)
    assert d.x_train[0].item() == 0 and d.x_train[-1].item() == pytest.approx(2 * math.pi)
    assert torch.allclose(d.y_train, torch.cos(d.x_train) + 1)


@pytest.mark.parametrize("task", ["teacher", "friedman1"])
def test_structured_tasks_split_held_out(task):
    d = make_dataset(task, 200, 0, test_fraction=0.25)
    assert d.x_train.shape == (150, 10) and d.x_test.shape == (50, 10)
    # the split partitions the points: no row is in both halves
    rows = {tuple(r.tolist()) for r in d.x_train}
    assert not any(tuple(r.tolist()) in rows for r in d.x_test)


def test_friedman_needs_five_features():
    with pytest.raises(TaskError, match="at least 5"):
        make_dataset("friedman1", 50, 0, features=3)
