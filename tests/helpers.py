"""Comparisons shared by the tests, the probe guard, and a small engine check run in subprocesses."""

import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def same_values(a: list[float], b: list[float]) -> bool:
    """Bitwise-equal lists of floats, NaN equal to NaN."""
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


def same_history(a: dict, b: dict, skip=("seconds",)) -> bool:
    """Every per-epoch measure identical (wall times aside)."""
    keys = set(a) - set(skip)
    return keys == set(b) - set(skip) and all(same_values(a[k], b[k]) for k in keys)


def max_rel_dev(a: list[float], b: list[float]) -> float:
    return max((abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b)), default=0.0)


def probe(specs, data, sizes, batch_size, settings=None) -> dict:
    """The engines' start-up probe for this training setup (``settings``: its optimizer; default Adam)."""
    from actlab.engines import probe as engine_probe

    n_test = len(data.x_test) if data.x_test is not None else 0
    return engine_probe.for_training(specs, sizes, len(data.x_train), n_test, batch_size, settings)


def require_bitwise(specs, data, sizes, batch_size, settings=None) -> None:
    """Skip (with the probe's findings as the reason) where this machine's kernels cannot give the batched
    engine the loop engine's numbers bit for bit: that is a property of the CPU and libraries, not of actlab."""
    import pytest

    result = probe(specs, data, sizes, batch_size, settings)
    if not result["bitwise"]:
        from actlab.engines.probe import kernel_setup

        pytest.skip(f"probe: stacked kernels differ from single-run ones on this machine ({kernel_setup()}): "
                    f"{result['failed'][:4]}")


def run_engine_checks(envs: dict[str, dict[str, str]], activations: list[str]) -> dict[str, dict]:
    """``engine_check`` in one fresh Python process per entry of ``envs`` (its variables added to the
    environment, the CPU-pinning ones removed first), all at once; name -> result (with "stderr")."""
    import json

    base = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    code = f"import helpers, json; print(json.dumps(helpers.engine_check({activations!r})))"
    procs = {name: subprocess.Popen([sys.executable, "-c", code], env={**base, **env}, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, env in envs.items()}
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, (name, stderr)
        results[name] = {**json.loads(stdout.strip().splitlines()[-1]), "stderr": stderr}
    return results


def engine_check(activations: list[str], epochs: int = 3, batch_size: int = 10) -> dict:
    """Both engines on a few runs of the article's setup (shuffled), in this process: are they bitwise equal,
    how far apart, what did the probe say, which kernels ran, and a fingerprint of the batched numbers."""
    import hashlib

    import torch

    # actlab pins the CPU code paths: before torch computes
    from actlab.engines import RunSpec, TrainSettings, probe, train
    from actlab.tasks import make_dataset

    sizes, data = (10, 18, 18, 4, 1), make_dataset("noise", 100, 0)
    specs = [RunSpec(name, seed, 0.003) for name in activations for seed in (0, 1)]
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, shuffle=True)
    loop = {r.spec.run_id: r for c in train(specs, data, sizes, settings, engine="loop", workers=1) for r in c}
    batched = {r.spec.run_id: r for c in train(specs, data, sizes, settings, engine="batched", workers=1) for r in c}
    bitwise = all(same_history(loop[k].history, batched[k].history)
                  and all(torch.equal(loop[k].state[p], batched[k].state[p]) for p in loop[k].state) for k in loop)
    fingerprint = hashlib.sha256()
    for k in sorted(batched):
        for p in sorted(batched[k].state):
            fingerprint.update(batched[k].state[p].numpy().tobytes())
    return {
        "bitwise": bitwise,
        "max_rel_dev": max(max_rel_dev(loop[k].history["full_loss"], batched[k].history["full_loss"]) for k in loop),
        "probe": probe.for_training(specs, sizes, len(data.x_train), 0, batch_size)["bitwise"],
        "setup": probe.kernel_setup(),
        "fingerprint": fingerprint.hexdigest(),
    }


def one_line(result, pattern: str, code: int = 2) -> str:
    """A CLI result (CliRunner) that is one line on stderr holding ``pattern``, exit ``code``, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.stderr, result.stdout)
    assert len(lines) == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert pattern in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry below ``folder``: a regular file's bytes, None for anything else (a folder, a link)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in folder.rglob("*")}
