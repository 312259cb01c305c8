"""Analysis of a stored experiment: per-activation curves over seeds, final diagnostics, the linear reference.

Pure functions over what an experiment folder holds (``storage.StoredExperiment``); plots and the report
draw from here, so both show the same numbers.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import isotonic_regression

from actlab import activations, config, diagnostics, experiment, stats, storage
from actlab.model import FeedForward, initial_parameters

Weights = dict[str, dict[str, torch.Tensor]]  # weights.pt: run id -> state_dict


@dataclass
class Band:
    """A measure over epochs, summarised over seeds: median and the 25-75% band, (epochs,) each."""

    epochs: np.ndarray
    median: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


@dataclass
class Analysis:
    stored: storage.StoredExperiment
    table: dict[str, list]  # metrics.csv by column
    stats: list[stats.ActivationStats]  # best first
    threshold: float
    least_squares: float  # the linear model's optimum training MSE on the same data
    reference: stats.Reference | None = None
    _per_run: dict[str, dict[str, dict[int, list[float]]]] = field(default_factory=dict, repr=False)
    _units: dict[str, list[RunUnits]] | None = field(default=None, repr=False)
    _run_rows: dict[str, dict[int, np.ndarray]] | None = field(default=None, repr=False)
    _weights: Weights | None = field(default=None, repr=False)
    memo: dict[tuple, object] = field(default_factory=dict, repr=False)  # the report's measures, each worked out once

    @property
    def overview(self) -> stats.Overview:
        """Friedman, critical difference and power of this comparison."""
        return stats.overview(self.stats, self.threshold, self.reference)

    def units(self) -> dict[str, list[RunUnits]]:
        """activation -> per-seed measures at initialisation and at the end (needs weights.pt; else {})."""
        if self._units is None:
            self._units = run_units(self.stored, self.weights())
        return self._units

    def weights(self) -> Weights:
        """weights.pt read back (once; {} without the file)."""
        if self._weights is None:
            self._weights = saved_weights(self.stored)
        return self._weights

    @property
    def activations(self) -> list[str]:
        """Activations in ranking order."""
        return [s.activation for s in sorted(self.stats, key=lambda s: (s.rank, _finite(s.final.mean)))]

    def stat(self, activation: str) -> stats.ActivationStats | None:
        return next((s for s in self.stats if s.activation == activation), None)

    def per_run(self, measure: str) -> dict[str, dict[int, list[float]]]:
        """activation -> seed -> values of ``measure`` at epochs 1, 2, ... (missing columns: empty)."""
        if measure not in self._per_run:
            values = self.table.get(measure)
            if values is None:
                self._per_run[measure] = {}
            else:  # one gather per run from the rows found once for all measures (tens of thousands of rows)
                column = np.asarray(values, dtype=float)
                self._per_run[measure] = {act: {seed: column[rows].tolist() for seed, rows in seeds.items()}
                                          for act, seeds in self._rows().items()}
        return self._per_run[measure]

    def _rows(self) -> dict[str, dict[int, np.ndarray]]:
        """activation -> seed -> the table's rows of that run at epochs 1, 2, ... (epoch 0 is ``initial``)."""
        if self._run_rows is None:
            t = self.table
            epochs = t.get("epoch") or [1] * len(t.get("activation", []))
            rows: dict[str, dict[int, list[int]]] = {}
            for i, (act, seed, epoch) in enumerate(zip(t.get("activation", []), t.get("seed", []), epochs)):
                if epoch > 0:
                    rows.setdefault(act, {}).setdefault(seed, []).append(i)
            self._run_rows = {act: {seed: np.array(r, dtype=np.intp) for seed, r in seeds.items()}
                              for act, seeds in rows.items()}
        return self._run_rows

    def initial(self, measure: str, activation: str) -> np.ndarray:
        """The epoch-0 value of ``measure`` (before any step) for each seed of ``activation`` (empty for
        folders written before epoch 0 was recorded)."""
        t = self.table
        rows = [v for a, e, v in zip(t["activation"], t.get("epoch", []), t.get(measure, []))
                if a == activation and e == 0]
        return np.array(rows, dtype=float)

    def band(self, measure: str, activation: str) -> Band | None:
        """Median and quartiles over seeds at every epoch all its seeds reached and any measured (NaN-aware:
        the diagnostics skip epochs, train.diagnostics_dense)."""
        runs = self.per_run(measure).get(activation)
        if not runs:
            return None
        length = min(len(v) for v in runs.values())
        if length == 0:
            return None
        data = np.array([v[:length] for v in runs.values()], dtype=float)  # (seeds, epochs)
        if np.all(np.isnan(data)):
            return None
        q = quartiles(data)
        seen = ~np.all(np.isnan(data), axis=0)  # epochs no seed measured (the diagnostics' schedule): left out
        return Band(np.arange(1, length + 1)[seen], q[1][seen], q[0][seen], q[2][seen])

    def final(self, measure: str, activation: str) -> np.ndarray:
        """The last-epoch value of ``measure`` for each seed of ``activation``."""
        runs = self.per_run(measure).get(activation, {})
        return np.array([v[-1] for v in runs.values() if v], dtype=float)

    def last_measured(self, measure: str, activation: str) -> np.ndarray:
        """Per seed of ``activation``, the value of ``measure`` at the last epoch that measured it (the
        diagnostics skip epochs: a run that diverged may have stopped after an unmeasured one); NaN: none."""
        runs = self.per_run(measure).get(activation, {})
        return np.array([next((x for x in reversed(v) if not math.isnan(x)), math.nan) for v in runs.values() if v],
                        dtype=float)

    def hidden_layers(self) -> int:
        return len(self.stored.config.model.sizes) - 2

    def layers(self) -> int:
        return len(self.stored.config.model.sizes) - 1


def quartiles(data: np.ndarray) -> np.ndarray:
    """(3, epochs): the 25th, 50th and 75th percentiles over the seeds of (seeds, epochs) ``data``, NaN-aware
    (``np.nanpercentile``'s values; an epoch no seed measured stays NaN)."""
    data = np.asarray(data, dtype=float)
    out = np.full((3, data.shape[1]), np.nan)
    nan = np.isnan(data)
    full, some = ~nan.any(axis=0), nan.any(axis=0) & ~nan.all(axis=0)
    # nanpercentile loops over the columns in Python (seconds over dozens of panels): the epochs every seed
    # measured go through one vectorised percentile, the same numbers; only partly measured ones go column-wise
    with np.errstate(invalid="ignore"):  # inf values (a run on its way to diverging): inf - inf inside, no warning
        if full.any():
            out[:, full] = np.percentile(data[:, full], [25, 50, 75], axis=0)
        if some.any():
            out[:, some] = np.nanpercentile(data[:, some], [25, 50, 75], axis=0)
    return out


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def least_squares_mse(x: torch.Tensor, y: torch.Tensor) -> float:
    """Training MSE of the best affine map x -> y (ordinary least squares with an intercept, float64)."""
    x1 = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    beta = torch.linalg.lstsq(x1, y.double(), driver="gelsd").solution
    return float(((x1 @ beta - y.double()) ** 2).mean())


def monotone_mse(x: torch.Tensor, y: torch.Tensor) -> float:
    """1-D inputs: training MSE of the best monotone function of x (isotonic least squares, increasing or
    decreasing): no net whose output is monotone in x (one working relu unit, all units one way) beats it."""
    order = x[:, 0].double().argsort()
    target = y[order, 0].double().numpy()
    fits = (isotonic_regression(target, increasing=up).x for up in (True, False))
    return float(min(((f - target) ** 2).mean() for f in fits))


def task_reference(cfg: config.Config) -> stats.Reference:
    """The task's own losses: constant predictor (var(y)), least squares, and for 1-D inputs the monotone fit."""
    data = experiment.dataset(cfg)
    y = data.y_train.double()
    return stats.Reference(
        constant_loss=float(((y - y.mean()) ** 2).mean()),
        least_squares=least_squares_mse(data.x_train, data.y_train),
        monotone_loss=monotone_mse(data.x_train, data.y_train) if data.features == 1 else math.nan,
    )


def analyse(
    stored: storage.StoredExperiment, ranked: tuple[list[stats.ActivationStats], float] | None = None,
    weights: Weights | None = None, reference: stats.Reference | None = None,
) -> Analysis:
    """Everything plots and the report need, from an experiment folder read back (``ranked``: the result of
    ``stats.summarise``, ``weights``: weights.pt read back, ``reference``: ``task_reference`` of its config, when
    the caller has them already)."""
    table = stored.metrics()
    reference = task_reference(stored.config) if reference is None else reference
    if ranked is None:
        ranked = stats.summarise(stored.summary, stored.curves(), reference=reference)
    act_stats, threshold = ranked
    return Analysis(stored, table, act_stats, threshold, reference.least_squares, reference, _weights=weights)


@dataclass(frozen=True)
class RunUnits:
    """One run at initialisation and at the end (its saved weights): the per-unit story and layer motion."""

    seed: int
    start: diagnostics.Snapshot
    end: diagnostics.Snapshot | None  # None: no saved weights (diverged or missing)

    def count(self, what: str) -> list[int]:
        """Per hidden layer: born_dead | died | revived | dead_end | negative_start | negative_end units."""
        return list(self._counts[what])

    @functools.cached_property
    def _counts(self) -> dict[str, list[int]]:  # every count at once: the report asks for each many times
        s, e = self.start, self.end
        # numpy views of the (W,) masks: a dozen tiny operations per run, cheaper than torch's dispatch
        start_dead = [m.numpy() for m in s.dead]
        masks = {"born_dead": start_dead, "negative_start": [m.numpy() for m in s.negative]}
        if e is not None:
            end_dead = [m.numpy() for m in e.dead]
            masks |= {"died": [(~a) & b for a, b in zip(start_dead, end_dead)],
                      "revived": [a & ~b for a, b in zip(start_dead, end_dead)],
                      "dead_end": end_dead, "negative_end": [m.numpy() for m in e.negative]}
        counts = {what: [int(np.count_nonzero(m)) for m in ms] for what, ms in masks.items()}
        zeros = [0 for _ in s.dead]  # no end state: nothing died, revived or ended dead
        return counts | {w: zeros for w in ("died", "revived", "dead_end", "negative_end") if w not in counts}


def run_units(stored: storage.StoredExperiment, weights: Weights | None = None) -> dict[str, list[RunUnits]]:
    """Per activation and seed: ``diagnostics.snapshot`` at the initial parameters (deterministic from the
    seed and the config's initialisation: ``model.initial_parameters``) and at the final ones (``weights``:
    weights.pt read back; default: read here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # hundreds of tiny nets: thread start-up would cost more than the work
    try:
        return _run_units(stored, saved_weights(stored) if weights is None else weights)
    finally:
        torch.set_num_threads(threads)


def _run_units(stored: storage.StoredExperiment, weights: Weights) -> dict[str, list[RunUnits]]:
    cfg = stored.config
    data = experiment.dataset(cfg)
    groups: dict[tuple[str, str], list[dict]] = {}  # (activation, options) -> its rows: nets alike but for weights
    for row in stored.summary:
        if spec_of(row["activation"]) is not None:
            groups.setdefault((row["activation"], row.get("options") or ""), []).append(row)
    found: dict[int, RunUnits] = {}  # id(row) -> its units
    for (act, options), rows in groups.items():
        units = _group_units(cfg, data, act, json.loads(options) if options else {}, rows, weights)
        found |= {id(row): u for row, u in zip(rows, units)}
    out: dict[str, list[RunUnits]] = {}
    for row in stored.summary:  # in the summary's order, as the runs were listed
        if id(row) in found:
            out.setdefault(row["activation"], []).append(found[id(row)])
    return out


def _group_units(cfg: config.Config, data, act: str, options: dict, rows: list[dict], weights: Weights
                 ) -> list[RunUnits]:
    """The runs of one activation: the snapshots at their initial and final parameters, all at once (stacked,
    ``diagnostics.snapshots``) where the activation acts on stacked runs, else run by run."""
    spec = spec_of(act)
    sizes = cfg.model.sizes
    model = FeedForward(sizes, lambda: spec.build(options))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}  # prelu's slope as built
    starts = []
    for row in rows:  # the run's own initialisation: the config's scheme for this activation and its bias rule
        params = initial_parameters(sizes, int(row["seed"]), cfg.init_for(act), cfg.model.init_bias, act, options)
        starts.append(fresh | {f"{name}.{k}": t for name, (w, b) in zip(_linear_names(model), params)
                               for k, t in (("weight", w), ("bias", b))})
    ends = {i: state for i, row in enumerate(rows)
            if row["status"] == "ok" and (state := weights.get(row["run"])) is not None}
    states = starts + list(ends.values())
    if _stackable(model, spec) and all(_fits(fresh, state) for state in states):
        snaps = diagnostics.snapshots(*_stacked(model, states), data.x_train, data.y_train, spec.elementwise)
    else:  # run by run (and a state that does not fit the net fails in load_state_dict, as it always did)
        snaps = []
        for state in states:
            model.load_state_dict(state)
            snaps.append(diagnostics.snapshot(model, data.x_train, data.y_train, spec.elementwise))
    end_of = dict(zip(ends, snaps[len(rows):]))
    return [RunUnits(int(row["seed"]), start, end_of.get(i)) for i, (row, start) in enumerate(zip(rows, snaps))]


def _linear_names(model: FeedForward) -> list[str]:
    return [name for name, m in model.named_children() if isinstance(m, torch.nn.Linear)]


def _is_prelu(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.PReLU) and module.weight.numel() == 1


def _stackable(model: FeedForward, spec: activations.ActivationSpec) -> bool:
    """Whether the activation acts on (N, B, W) as on N nets: a built-in one (element-wise, or softmax over
    the last dimension) without parameters, or prelu (its one slope per layer stacked per run)."""
    return spec in activations.BUILTIN and all(
        _is_prelu(m) or not any(True for _ in m.parameters()) for m in model.activations())


def _fits(fresh: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> bool:
    """Does ``state`` hold exactly the net's tensors (names, shapes, dtypes)?"""
    return state.keys() == fresh.keys() and all(
        state[k].shape == v.shape and state[k].dtype == v.dtype for k, v in fresh.items())


def _stacked(model: FeedForward, states: list[dict[str, torch.Tensor]]):
    """(weights (N, out, in), biases (N, out), activations on (N, B, W)) of N state_dicts of ``model``."""
    names = _linear_names(model)
    weights = [torch.stack([s[f"{name}.weight"] for s in states]) for name in names]
    biases = [torch.stack([s[f"{name}.bias"] for s in states]) for name in names]
    acts = []
    for name, module in model.named_children():
        if _is_prelu(module):  # x if x > 0 else slope * x, as PReLU's kernel, with each run's own slope
            slope = torch.stack([s[f"{name}.weight"].reshape(()) for s in states]).view(-1, 1, 1)
            acts.append(lambda z, slope=slope: torch.where(z > 0, z, slope * z))
        elif not isinstance(module, torch.nn.Linear):
            acts.append(module.forward)
    return weights, biases, acts


def saved_weights(stored: storage.StoredExperiment) -> Weights:
    """weights.pt read back (run id -> state_dict; {} without the file)."""
    path = stored.path / "weights.pt"
    return storage.load_weights(path) if path.is_file() else {}


def spec_of(name: str) -> activations.ActivationSpec | None:
    """The registry entry of ``name`` (None when it cannot be resolved)."""
    try:
        return activations.resolve(name, imports=False)  # reading a folder never imports its code
    except activations.ActivationError:
        return None


def bounded(name: str, options: dict | None = None) -> bool | None:
    """Whether the activation's output is bounded, measured on a wide grid (None: unknown activation)."""
    return _bounded(name, json.dumps(options or {}, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _bounded(name: str, options_json: str) -> bool | None:
    spec = spec_of(name)
    return None if spec is None else diagnostics.is_bounded(spec.build(json.loads(options_json)))


Curve = tuple[np.ndarray, np.ndarray]  # (x, y)


def fitted_curves(stored: storage.StoredExperiment, points: int = 400, weights: Weights | None = None
                  ) -> dict[str, list[Curve]]:
    """For 1-D tasks: activation -> [(x, prediction)] for every saved run (final weights; ``weights``:
    weights.pt read back, default: read here)."""
    path = stored.path / "weights.pt"
    if not path.is_file() or stored.config.model.sizes[0] != 1:
        return {}
    weights = saved_weights(stored) if weights is None else weights  # tensors only: never runs code from it
    data = experiment.dataset(stored.config)
    lo, hi = float(data.x_train.min()), float(data.x_train.max())
    grid = torch.linspace(lo, hi, points).unsqueeze(1)
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for row in stored.summary:
        state = weights.get(row["run"])
        if state is None:
            continue
        options = json.loads(row["options"]) if row.get("options") else {}
        try:
            spec = activations.resolve(row["activation"], imports=False)
        except activations.ActivationError:
            continue  # user code named by import path: reading a folder does not import it
        model = FeedForward(stored.config.model.sizes, lambda spec=spec, options=options: spec.build(options))
        model.load_state_dict(state)
        with torch.no_grad():
            out.setdefault(row["activation"], []).append((grid.squeeze(1).numpy(), model(grid).squeeze(1).numpy()))
    return out


def target_curve(stored: storage.StoredExperiment) -> tuple[np.ndarray, np.ndarray]:
    """The training points of a 1-D task, sorted by x."""
    data = experiment.dataset(stored.config)
    order = data.x_train[:, 0].argsort()
    return data.x_train[order, 0].numpy(), data.y_train[order, 0].numpy()
