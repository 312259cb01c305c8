"""Same numbers on every CPU: the pinning of MKL's, ATen's and oneDNN's code paths, tested from this machine.

A developer has one CPU; CI may run on Intel with AVX-512 or on AMD. What differs between them is which
code path each library picks: MKL's branch (MKL_CBWR), ATen's vector width (ATEN_CPU_CAPABILITY: AMD Zen 2/3
pick avx2, Intel Xeon and AMD Zen 4 avx512), oneDNN's ISA. Each can be forced through its variable, so
these tests run the engine check in subprocesses under the other family's settings.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, run_engine_checks

from actlab.engines.probe import kernel_setup

ACTS = ["relu", "sigmoid", "mish", "gelu"]  # piecewise-linear, exp-based (row by row), oneDNN's gelu


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


FLAGS = _cpu_flags()
x86_avx2 = pytest.mark.skipif("avx2" not in FLAGS, reason="the pinning targets x86-64 CPUs with AVX2; not this one")
MKL = pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="this torch has no MKL: MKL_CBWR does not apply")


@pytest.fixture(scope="module")
def checks():
    """The engine check under each setting, in subprocesses started together."""
    envs = {
        "actlab's pinning": {},
        "pinned by hand": {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        "aten default": {"ATEN_CPU_CAPABILITY": "default"},
        "mkl avx2": {"MKL_CBWR": "AVX2"},
    }
    if "avx512f" in FLAGS:
        envs["aten avx512"] = {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
        envs["mkl avx512"] = {"MKL_CBWR": "AVX512"}
    return run_engine_checks(envs, ACTS)


def test_the_pinning_is_in_effect_in_the_test_process():
    """conftest imports torch before actlab: harmless, as long as torch computed nothing before."""
    setup = kernel_setup()
    assert os.environ.get("MKL_CBWR")  # actlab's COMPATIBLE unless the environment chose
    if setup["aten_cpu_capability"] is not None:
        assert setup["aten_pinned"], setup


@x86_avx2
@MKL
def test_pinned_numbers_do_not_depend_on_the_cpus_own_choice(checks):
    """An AVX-512 Intel picks avx512 by itself, an AMD Zen 3 avx2: with actlab's pinning both run avx2, so
    a run here gives the numbers the pinned settings give anywhere, bit for bit."""
    mine, by_hand = checks["actlab's pinning"], checks["pinned by hand"]
    assert mine["setup"]["cpu_capability"] == "AVX2" and mine["setup"]["mkl_cbwr"] == "COMPATIBLE"
    assert mine["fingerprint"] == by_hand["fingerprint"]
    assert mine["bitwise"] and mine["probe"] and mine["stderr"] == ""


@MKL
@pytest.mark.parametrize("setting", ["aten default", "pinned by hand", "aten avx512"])
def test_bitwise_equal_on_every_aten_code_path(checks, setting):
    """With MKL pinned, ATen's vector width does not matter to the equality of the engines: the exp-based
    activations get a single run's body/tail split whatever the width."""
    if setting not in checks:
        pytest.skip("this CPU has no AVX-512: ATen's avx512 path cannot run here")
    result = checks[setting]
    capability = {"aten default": "DEFAULT", "pinned by hand": "AVX2", "aten avx512": "AVX512"}[setting]
    assert result["setup"]["cpu_capability"] == capability
    assert result["probe"] and result["bitwise"], result


@MKL
@pytest.mark.parametrize("setting", ["mkl avx2", "mkl avx512"])
def test_other_mkl_branches_are_caught_by_the_probe(checks, setting):
    """MKL's AVX2 and AVX-512 branches (what an unpinned MKL picks on such CPUs) may round the 4 -> 1 layer
    otherwise than ATen's small-matrix kernel. Whatever they do, the probe tells the truth: where it says
    bitwise, the engines are; where not, one warning line says so and the engines agree to rounding."""
    if setting not in checks:
        pytest.skip("this CPU has no AVX-512: MKL's AVX-512 branch cannot run here")
    result = checks[setting]
    if result["probe"]:
        assert result["bitwise"], result
    else:
        lines = [line for line in result["stderr"].splitlines() if "bit for bit" in line]
        assert len(lines) == 1 and "MKL_CBWR" in lines[0], result["stderr"]
        assert result["max_rel_dev"] < 1e-4, result


def test_python_m_actlab_pins_and_records_the_probe(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "actlab", "train", "-a", "mish", "--epochs", "1", "--quiet",
                           "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (folder,) = tmp_path.iterdir()
    recorded = json.loads((folder / "env.json").read_text())
    assert recorded["cpu"] and recorded["cpu_capability"]
    assert set(recorded["equivalence"]) == {"bitwise", "checked", "failed"}
    assert "mish" in recorded["equivalence"]["checked"] and "linear 4->1" in recorded["equivalence"]["checked"]
    if "avx2" in FLAGS and torch.backends.mkl.is_available():
        assert recorded["mkl_cbwr"] == "COMPATIBLE" and recorded["aten_pinned"]
        assert recorded["equivalence"]["bitwise"], recorded["equivalence"]["failed"]


def test_env_json_records_the_probe_of_the_shapes_the_engine_trains(monkeypatch):
    """With test and validation points held out, env.json's probe checks the sizes the engine's own probe
    checks (training, test and validation sets): one probe, the same record."""
    from actlab import config, experiment, storage
    from actlab.engines import TrainSettings, batched
    from actlab.engines import probe as engine_probe

    cfg = config.build_config({"data": {"samples": 90, "test_fraction": 0.2, "validation_fraction": 0.1},
                               "compare": {"activations": ["relu", "mish"], "seeds": 1}, "train": {"epochs": 1}})
    sizes = []
    real = engine_probe.for_training

    def spy(specs, layers, n_train, n_test, batch_size, settings=None, n_val=0):
        sizes.append((n_train, n_test, n_val))
        return real(specs, layers, n_train, n_test, batch_size, settings, n_val)

    monkeypatch.setattr(engine_probe, "for_training", spy)
    recorded = storage.environment(torch.device("cpu"), [], cfg)["equivalence"]
    data = experiment.dataset(cfg)
    engine = batched.check_equivalence(experiment.compare_specs(cfg), data, cfg.model.sizes,
                                       TrainSettings.from_config(cfg, "cpu"))
    assert (len(data.x_train), len(data.x_test), len(data.x_val)) == (63, 18, 9)
    assert sizes == [(63, 18, 9)] * 2 and recorded == engine
