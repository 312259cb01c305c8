"""actlab: which activation function trains this network best, and why?

From Python::

    import actlab
    cfg = actlab.load_config("article", [("compare.seeds", 5, "notebook")])   # a shipped config, or a path
    exp = actlab.compare(cfg)                     # trains in memory, writes nothing
    exp.result("relu", seed=0).history["full_loss"]
    done = actlab.run_compare(cfg, out="runs")    # what `actlab compare` does: folder, statistics, report
    done.path / "report.md"
"""

# Environment set-up that must precede any import of torch goes first, here, above everything else.

__version__ = "0.1.0"

# Public names, imported on first use: `actlab --help`, `--version` and shell completion import this
# package, and must not pay for importing torch (seconds) to print a few lines.
_LAZY = {
    "Config": "actlab.config",
    "ConfigError": "actlab.config",
    "build_config": "actlab.config",
    "load_config": "actlab.config",
    "shipped_configs": "actlab.config",
    "Experiment": "actlab.experiment",
    "compare": "actlab.experiment",
    "train": "actlab.experiment",
    "Finished": "actlab.workflow",
    "Interrupted": "actlab.workflow",
    "ProgressState": "actlab.workflow",
    "run_compare": "actlab.workflow",
    "run_train": "actlab.workflow",
    "write_report": "actlab.workflow",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str):
    """Import a public name's module when the name is first used (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'actlab' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
