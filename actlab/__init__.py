"""actlab: which activation function trains this network best, and why?

From Python::

    from actlab import load_config, compare
    cfg = load_config("configs/article.yaml", [("compare.seeds", 5, "notebook")])
    exp = compare(cfg)                      # trains in memory, writes nothing
    exp.result("relu", seed=0).history["full_loss"]
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

from actlab.config import Config, ConfigError, build_config, load_config  # noqa: E402
from actlab.experiment import Experiment, compare, train  # noqa: E402

__all__ = ["Config", "ConfigError", "Experiment", "build_config", "compare", "load_config", "train", "__version__"]
