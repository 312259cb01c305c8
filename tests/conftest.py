import pytest
import torch

from actlab import config


@pytest.fixture(autouse=True)
def _one_thread():
    # The loop engine is the reference at one thread (some kernels round differently with more).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_cfg() -> config.Config:
    """The article's setup, shortened: a few epochs, few seeds, in-process."""
    return config.build_config({"train": {"epochs": 5, "workers": 1}, "compare": {"seeds": 2}})
