"""The main process after training, piece by piece, in CPU time: the default `actlab compare` replayed from its
workers' pickled chunks (trained once), so that two source trees can be compared on the same results, A/B in
alternating fresh processes; and the interpreter's teardown with what a compare has imported.

    python benchmarks/bench_post.py                       # this tree, 3 rounds
    python benchmarks/bench_post.py --against /path/tree  # this tree and another one (say main), alternating

CPU time (``time.process_time``) of the main process only: the figures are drawn in forked processes and not
counted. "before the figures" is the part no other process overlaps (the figures' processes start after it),
the rest shares the cores with them. On a shared machine read the differences between trees measured back to
back, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_CAPTURE = r"""
import pickle, sys
from actlab import config, workflow
from actlab.engines.executors import local
raw = []
class Recording:  # the executor's pickle module, keeping the bytes each worker sent back
    dumps = staticmethod(pickle.dumps)
    @staticmethod
    def loads(data):
        raw.append(data)
        return pickle.loads(data)
local.pickle = Recording
workflow.run_compare(config.load_config(None), out=sys.argv[2], report=False)
pickle.dump(raw, open(sys.argv[1], "wb"))
"""

_REPLAY = r"""
import importlib, json, pickle, sys, time
from actlab import config, experiment, storage, workflow
for name in ("actlab.stats", "actlab.analysis", "actlab.plots", "actlab.cdplot", "actlab.report", "actlab.html"):
    importlib.import_module(name)  # what compare's preload thread imports while the workers train
from actlab import analysis, html, report, stats
raw = pickle.load(open(sys.argv[1], "rb"))
spent = {}
def timed(name, fn):
    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.process_time() - start
    return wrapper
W = storage.ExperimentWriter
W.add, W.finish = timed("folder: add (both chunks)", W.add), timed("folder: finish", W.finish)
storage.csv_lines = timed("  metrics.csv rows", storage.csv_lines)
for name in ("summarise", "rank", "against_best"):  # rank + against_best: summarise in two (trees since the split)
    if hasattr(stats, name):
        setattr(stats, name, timed("stats." + name, getattr(stats, name)))
analysis.task_reference = timed("analysis.task_reference", analysis.task_reference)
report.checks = timed("report.checks", report.checks)
report.stats_rows = timed("report.stats_rows", report.stats_rows)
html.write_html = timed("html.write_html", html.write_html)
from actlab import plots
draw_all = plots.draw_all
def drawing(*args, **kwargs):  # the serial part: what the main process did before the figures' processes start
    folder = sum(v for k, v in spent.items() if k.startswith("folder"))
    spent["main process, before the figures"] = time.process_time() - spent["start"] + folder
    return draw_all(*args, **kwargs)
plots.draw_all = drawing
def trained(cfg, command, specs, progress, sinks, tensorboard=False, preload=()):
    writer = storage.ExperimentWriter.create(cfg, command, [s.run_id for s in specs], "cpu")
    spent.clear()  # from the first chunk's arrival on
    results = []
    for data in raw:
        chunk = pickle.loads(data).results()
        results.extend(chunk)
        writer.add(chunk)
    writer.finish("complete")
    order = {s.run_id: i for i, s in enumerate(specs)}
    results.sort(key=lambda r: order[r.spec.run_id])
    spent["start"] = time.process_time()
    return workflow.Finished(experiment.Experiment(cfg, experiment.dataset(cfg), results), writer.path)
workflow._train_into_folder = trained
start = time.process_time()
workflow.run_compare(config.load_config(None), out=sys.argv[2], report=sys.argv[3] == "report")
end = time.process_time()
spent["main process, all of it"] = end - spent.pop("start") + sum(v for k, v in spent.items() if k.startswith("folder"))
print(json.dumps(spent))
"""

_TEARDOWN = r"""
import gc, sys, time
import torch, scipy.stats, matplotlib.pyplot  # what a compare with its report has imported
import actlab.cli, actlab.report, actlab.plots
if sys.argv[1] == "freeze":
    gc.freeze()
sys.stdout.write(repr(time.process_time()))
"""


def _teardown(variant: str) -> float:
    """CPU seconds a fresh process spends after its last line (interpreter teardown), by its rusage."""
    child = subprocess.Popen([sys.executable, "-c", _TEARDOWN, variant], stdout=subprocess.PIPE)
    last = float(child.stdout.read())
    _, _, usage = os.wait4(child.pid, 0)
    return usage.ru_utime + usage.ru_stime - last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="another actlab source tree, measured alternately with this one")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = {"this": Path(__file__).resolve().parents[1]}
    if args.against:
        trees["other"] = Path(args.against).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        chunks = Path(tmp) / "chunks.pkl"
        env = {**os.environ, "PYTHONPATH": str(trees["this"])}
        subprocess.run([sys.executable, "-c", _CAPTURE, chunks, Path(tmp) / "trained"], env=env, cwd=trees["this"],
                       check=True)
        for mode in ("report", "no-report"):
            found: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
            for _ in range(args.rounds):
                for name, root in trees.items():
                    # cwd too: ``python -c`` puts the working directory first on the path
                    out = subprocess.run([sys.executable, "-c", _REPLAY, chunks, Path(tmp) / name, mode], check=True,
                                         env={**os.environ, "PYTHONPATH": str(root)}, cwd=root, capture_output=True,
                                         text=True)
                    found[name].append(json.loads(out.stdout.splitlines()[-1]))
            print(f"\nafter training, default compare ({mode}), main process CPU s, median of {args.rounds}:")
            keys = list(dict.fromkeys(k for runs in found.values() for run in runs for k in run))
            print(f"  {'':32s}" + "".join(f"{name:>10s}" for name in trees))
            for key in keys:
                medians = [sorted(r.get(key, 0.0) for r in runs)[len(runs) // 2] for runs in found.values()]
                print(f"  {key:32s}" + "".join(f"{m:10.3f}" for m in medians))
    rounds = [(_teardown("plain"), _teardown("freeze")) for _ in range(args.rounds)]
    plain, frozen = (sorted(r[i] for r in rounds)[len(rounds) // 2] for i in (0, 1))
    print(f"\ninterpreter teardown with torch, scipy.stats, matplotlib imported (CPU s, median of {args.rounds}):"
          f"\n  plain {plain:.3f}, after gc.freeze() {frozen:.3f} (the actlab command freezes at its end)")


if __name__ == "__main__":
    main()
