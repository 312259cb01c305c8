"""actlab: which activation function trains this network best, and why?

From Python::

    from actlab import load_config, compare
    cfg = load_config("configs/article.yaml", [("compare.seeds", 5, "notebook")])
    exp = compare(cfg)                      # trains in memory, writes nothing
    exp.result("relu", seed=0).history["full_loss"]
"""

__version__ = "0.1.0"

from actlab.config import Config, ConfigError, build_config, load_config  # noqa: E402
from actlab.experiment import Experiment, compare, train  # noqa: E402

__all__ = ["Config", "ConfigError", "Experiment", "build_config", "compare", "load_config", "train", "__version__"]
