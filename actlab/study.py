"""A fair answer over a grid: each activation at its own best setting, chosen and reported on disjoint seeds.

Input: one summary row per run (a dict with ``activation``, ``seed``, ``status``, the grid columns such as
``train.lr``, and the losses ``final_loss``, ``final_test_loss``, ``final_val_loss``); pure functions.

The rule (no selection bias):
1. Seeds are split into disjoint **tuning** and **evaluation** sets (``split_seeds``): by default the first
   half of the seeds, sorted (rounded down, at least one), tunes, and the rest evaluates; or the tuning seeds
   are given (``compare.tuning_seeds``) and every other seed evaluates.
2. Each activation's setting (one combination of grid values) is chosen on the tuning seeds only: the lowest
   median of the **choice loss** over them. The choice loss is the validation loss where the data has a
   validation split, else the training loss; it is never the test loss, so the test points stay unseen.
   A diverged run, and a missing one, counts as +inf. Ties: the lower mean, then the setting whose values
   sort first (numbers by value, the rest by text), so the choice never depends on the order of the rows.
3. The **reported loss** of that setting is read on the evaluation seeds only: the test loss where there is
   a held-out split, else the training loss. Evaluation seeds are paired across activations (same initial
   draws and data), so the stats module can test differences seed by seed.

Beside it, a robustness view that involves no choice: each activation's mean rank over the grid (per
setting, the activations ranked by median loss, average ranks for ties) and its expected loss over the grid
(the mean over settings of the per-setting median: a uniform prior over the grid).

Validation split (``carve_validation``): a seeded part of the *training* points, so the test points are the
same with or without one. What ``actlab.tasks`` needs to offer it: a ``data.validation_fraction`` key (a
share of all samples, like ``data.test_fraction``; validated with ``test_fraction + validation_fraction < 1``),
``Dataset.x_val``/``y_val``, and ``make_dataset`` calling ``carve_validation`` on its training part with
``data.seed``; the engines then record ``val_loss`` per epoch like ``test_loss``, and the summary
``final_val_loss``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from actlab import rng

Row = Mapping[str, Any]
Setting = tuple[Any, ...]  # one value per grid key, in the keys' order

CHOICE_LOSSES = ("final_val_loss", "final_loss")  # first present wins; never the test loss
REPORT_LOSSES = ("final_test_loss", "final_loss")


class StudyError(ValueError):
    """A study that cannot be ranked fairly (too few seeds, overlapping seed sets), as one clear line."""


@dataclass(frozen=True)
class SeedSplit:
    """Disjoint seed sets: ``tuning`` chooses each activation's setting, ``evaluation`` reports it."""

    tuning: tuple[int, ...]
    evaluation: tuple[int, ...]


@dataclass(frozen=True)
class Choice:
    """One activation's chosen setting and the tuning seeds' evidence for it."""

    activation: str
    setting: dict[str, Any]
    tuning_median: float
    tuning_mean: float


@dataclass(frozen=True)
class FairRow:
    """One activation at its chosen setting, measured on the evaluation seeds (seed -> loss, inf: diverged)."""

    choice: Choice
    evaluation: dict[int, float]

    @property
    def activation(self) -> str:
        return self.choice.activation

    @property
    def median(self) -> float:
        return quantile(list(self.evaluation.values()), 0.5)

    @property
    def diverged(self) -> int:
        return sum(1 for v in self.evaluation.values() if math.isinf(v))


@dataclass(frozen=True)
class FairRanking:
    """The fair answer: seed split, which losses chose and reported, rows by evaluation median (best first)."""

    split: SeedSplit
    keys: tuple[str, ...]
    chosen_on: str
    reported_on: str
    rows: list[FairRow]

    def paired(self) -> dict[str, list[float]]:
        """Activation -> evaluation losses in evaluation-seed order: paired by seed, for the stats module."""
        return {r.activation: [r.evaluation[s] for s in self.split.evaluation] for r in self.rows}


def split_seeds(seeds: Iterable[int], tuning: Sequence[int] | None = None) -> SeedSplit:
    """Disjoint tuning and evaluation seeds: the given tuning seeds, or the first half of the sorted seeds."""
    ordered = sorted(set(seeds))
    if len(ordered) < 2:
        raise StudyError(f"a fair ranking needs at least 2 seeds, one to tune and one to evaluate "
                         f"(got {len(ordered)}); raise compare.seeds")
    if tuning is None:
        chosen = ordered[: max(1, len(ordered) // 2)]
    else:
        chosen = sorted(set(tuning))
        unknown = [s for s in chosen if s not in ordered]
        if unknown:
            raise StudyError(f"compare.tuning_seeds: {unknown} are not seeds of this experiment ({ordered})")
        if not chosen or len(chosen) == len(ordered):
            raise StudyError("compare.tuning_seeds: must leave at least one seed to tune and one to evaluate")
    return SeedSplit(tuple(chosen), tuple(s for s in ordered if s not in chosen))


def loss_of(row: Row, column: str) -> float:
    """The row's loss in ``column``; a diverged run or a missing or non-finite value is +inf (the worst)."""
    value = row.get(column)
    if row.get("status", "ok") != "ok" or value is None or value == "":
        return math.inf
    value = float(value)
    return value if math.isfinite(value) else math.inf


def _has(rows: Sequence[Row], column: str) -> bool:
    return any(r.get(column) not in (None, "") and math.isfinite(float(r[column])) for r in rows)


def losses_used(rows: Sequence[Row]) -> tuple[str, str]:
    """(choice column, report column): validation if present else training; test if present else training."""
    chosen = next(c for c in CHOICE_LOSSES if c == "final_loss" or _has(rows, c))
    reported = next(c for c in REPORT_LOSSES if c == "final_loss" or _has(rows, c))
    return chosen, reported


def quantile(values: Sequence[float], q: float) -> float:
    """numpy's default (linear) quantile, with +inf allowed: a gap that reaches +inf is +inf, never NaN."""
    if not values:
        return math.inf
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if v[lo] == v[hi] or pos == lo:
        return v[lo]
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def _order(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 0, float(value)
    return 1, repr(value)


def settings_of(rows: Sequence[Row], keys: Sequence[str]) -> list[Setting]:
    """Every distinct setting of the grid ``keys`` in ``rows``, sorted (numbers by value)."""
    found = {repr(s): s for s in (tuple(r[k] for k in keys) for r in rows)}
    return sorted(found.values(), key=lambda s: [_order(v) for v in s])


def _losses(rows: Sequence[Row], keys: Sequence[str], column: str) -> dict[tuple[str, str, int], float]:
    """(activation, repr(setting), seed) -> loss."""
    return {(r["activation"], repr(tuple(r[k] for k in keys)), int(r["seed"])): loss_of(r, column) for r in rows}


def _activations(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r["activation"] for r in rows))


def choose(rows: Sequence[Row], keys: Sequence[str], tuning: Sequence[int], column: str) -> dict[str, Choice]:
    """Each activation's best setting on the ``tuning`` seeds alone (lowest median of ``column``)."""
    losses = _losses(rows, keys, column)
    settings = settings_of(rows, keys)
    choices = {}
    for activation in _activations(rows):
        scored = []
        for setting in settings:
            values = [losses.get((activation, repr(setting), s), math.inf) for s in tuning]  # missing: +inf
            mean = math.fsum(values) / len(values)
            scored.append((quantile(values, 0.5), mean, [_order(v) for v in setting], setting))
        median, mean, _, best = min(scored, key=lambda t: t[:3])
        choices[activation] = Choice(activation, dict(zip(keys, best)), median, mean)
    return choices


def fair_ranking(rows: Sequence[Row], keys: Sequence[str], tuning_seeds: Sequence[int] | None = None,
                 ) -> FairRanking:
    """Each activation at its setting chosen on tuning seeds, reported on the evaluation seeds; best first."""
    split = split_seeds((int(r["seed"]) for r in rows), tuning_seeds)
    tuning = [r for r in rows if int(r["seed"]) in split.tuning]
    evaluation = [r for r in rows if int(r["seed"]) in split.evaluation]
    # Each side decides from its own rows, so no number of an evaluation run can reach the choice.
    chosen_on, reported_on = losses_used(tuning)[0], losses_used(evaluation)[1]
    choices = choose(tuning, keys, split.tuning, chosen_on)
    losses = _losses(evaluation, keys, reported_on)
    fair = []
    for activation, choice in choices.items():
        setting = repr(tuple(choice.setting[k] for k in keys))
        fair.append(FairRow(choice, {s: losses.get((activation, setting, s), math.inf) for s in split.evaluation}))
    fair.sort(key=lambda r: (r.median, math.fsum(r.evaluation.values()), r.activation))
    return FairRanking(split, tuple(keys), chosen_on, reported_on, fair)


def _medians(rows: Sequence[Row], keys: Sequence[str], column: str) -> tuple[list[str], list[list[float]]]:
    """Activations, and per setting (sorted) each activation's median ``column`` over its seeds."""
    acts, seeds = _activations(rows), sorted({int(r["seed"]) for r in rows})
    losses = _losses(rows, keys, column)
    table = [[quantile([losses.get((a, repr(s), seed), math.inf) for seed in seeds], 0.5) for a in acts]
             for s in settings_of(rows, keys)]
    return acts, table


def mean_ranks(rows: Sequence[Row], keys: Sequence[str], column: str) -> dict[str, float]:
    """Activation -> its rank (1 = best, ties averaged) by median ``column``, averaged over every setting."""
    from scipy.stats import rankdata  # here, not at the top: tasks imports this module before training starts

    acts, table = _medians(rows, keys, column)
    ranks = [rankdata(medians, method="average") for medians in table]  # inf ranks last, equal infs tie
    return {a: float(sum(r[i] for r in ranks) / len(ranks)) for i, a in enumerate(acts)}


def expected_loss(rows: Sequence[Row], keys: Sequence[str], column: str) -> dict[str, float]:
    """Activation -> the mean over settings of its median ``column`` (+inf if any setting's median diverged)."""
    acts, table = _medians(rows, keys, column)
    return {a: math.fsum(medians[i] for medians in table) / len(table) for i, a in enumerate(acts)}


def sensitivity(rows: Sequence[Row], key: str, column: str) -> dict[str, list[dict[str, Any]]]:
    """Activation -> per value of grid ``key``: median, quartiles and diverged runs of ``column`` (all seeds)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for activation in _activations(rows):
        mine = [r for r in rows if r["activation"] == activation]
        for (value,) in settings_of(mine, [key]):
            losses = [loss_of(r, column) for r in mine if repr(r[key]) == repr(value)]
            out.setdefault(activation, []).append({
                key: value, "median": quantile(losses, 0.5), "q1": quantile(losses, 0.25),
                "q3": quantile(losses, 0.75), "runs": len(losses), "diverged": sum(map(math.isinf, losses))})
    return out


def rows_at(rows: Sequence[Row], setting: Mapping[str, Any]) -> list[Row]:
    """The rows of one setting (the fixed-setting ranking's input), e.g. the base config's learning rate."""
    return [r for r in rows if all(repr(r[k]) == repr(v) for k, v in setting.items())]


def validation_size(samples: int, test_fraction: float, validation_fraction: float) -> int:
    """Validation points for ``validation_fraction`` of all samples, checked to leave a training point."""
    n_val = round(samples * validation_fraction)
    n_train = samples - round(samples * test_fraction) - n_val
    if not 0.0 <= validation_fraction < 1.0 or n_train < 1:
        raise StudyError(f"data.validation_fraction: {validation_fraction} leaves {n_train} training points "
                         f"of {samples} (test_fraction {test_fraction}); lower it")
    return n_val


def carve_validation(x: torch.Tensor, y: torch.Tensor, n_val: int, seed: int,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val): a seeded random ``n_val`` of the training points, order kept."""
    order = torch.randperm(len(x), generator=rng.generator(seed, "validation"))
    val, train = order[:n_val].sort().values, order[n_val:].sort().values
    return x[train], y[train], x[val], y[val]
