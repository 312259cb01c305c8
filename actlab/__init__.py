"""actlab: which activation function trains this network best, and why?

From Python::

    import actlab
    cfg = actlab.load_config("article", [("compare.seeds", 5, "notebook")])   # a shipped config, or a path
    exp = actlab.compare(cfg)                     # trains in memory, writes nothing
    exp.result("relu", seed=0).history["full_loss"]
    done = actlab.run_compare(cfg, out="runs")    # what `actlab compare` does: folder, statistics, report
    done.path / "report.md"
"""

# --- Same numbers on every x86-64 CPU (see README "Engines"): pin the code paths of MKL (matmuls), ATen
# (element-wise kernels) and oneDNN (gelu). Each reads its variable when torch first uses it (not when
# torch is imported), so this must run before any torch computation; a user's own setting wins. The
# engines' start-up probe (actlab/engines/probe.py) checks the effect.
import os as _os  # noqa: E402


def _cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "avx2" in line.split() for line in f)
    except OSError:  # not Linux: leave torch's own choice
        return False


if _os.environ.get("ACTLAB_PIN_CPU", "1") != "0":  # ACTLAB_PIN_CPU=0: the libraries' own choice (faster)
    _os.environ.setdefault("MKL_CBWR", "COMPATIBLE")  # MKL's SSE2 branch: the same sums on Intel and AMD
    if _cpu_has_avx2():  # AVX2 kernels, also where torch would pick AVX-512 (Intel Xeon, AMD Zen 4)
        _os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
        _os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
# --- end of the CPU pinning

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
