"""Grids of settings: ``--grid train.lr=1e-4,1e-3`` and ``compare.grid:`` expanded into validated configs.

A grid is a list of axes (a config key and its values); its points are every combination of one value per
axis, first axis slowest. Each point is a full Config built through ``config.build_config``, so a bad grid
value fails exactly like a bad ``--set`` value, naming the key and ``--grid`` (or the file and line).

Keys have a scope. **Per-run** keys change only numbers that a run spec carries (the learning rate, the
initialisation, activation options): points that differ only there share one stack of the batched engine.
**Per-stack** keys (everything else: sizes, depth, width, data.*, batch size, epochs, the optimizer and
its hyper-parameters, shuffling, the loss) change shapes, data or the training loop: their points become
separate stacks of one experiment. Keys that do not change what is trained (output, device, engine, chunk
size, workers) and the axes a comparison already has (activations, seeds) are not grid keys.

Conveniences: ``model.depth`` (number of hidden layers) and ``model.width`` (units per hidden layer)
expand to ``model.sizes = [features, width x depth, 1]``: the input width is the task's (``data.task`` and
``data.features`` of that point), the output the config's last size. A missing one keeps the base
config's: its number of hidden layers, or its first hidden width (the article's 10-18-18-4-1: depth 3,
width 18; so depth 3 gives 10-18-18-18-1, not the article's net).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from actlab import config, tasks

Scope = Literal["run", "stack"]

# Per-run keys (and their sub-keys): what RunSpec carries, so runs that differ there can share a stack.
PER_RUN = ("train.lr", "model.options", "model.init", "model.init_bias")
CONVENIENCES = ("model.depth", "model.width")
# Keys that are not grid keys, with the reason and what to do instead (prefixes match sub-keys).
NOT_GRID = {
    "output": "it says where results go, not what is trained",
    "device": "it says where training runs, not what is trained",
    "train.engine": "it says how runs are computed; compare engines with two experiments",
    "train.chunk_size": "it says how runs are computed, not what is trained",
    "train.workers": "it says how runs are computed, not what is trained",
    "train.executor": "it says how runs are computed, not what is trained",
    "train.ray_address": "it says where runs are computed, not what is trained",
    "train.diagnostics": "it changes what is measured, not what is trained",
    "train.diagnostics_dense": "it changes which epochs are measured, not what is trained",
    "train.seed": "seeds are an axis of every comparison already (compare.seeds)",
    "model.activation": "activations are an axis of every comparison already (compare.activations)",
    "compare": "activations and seeds are axes of every comparison already",
}
EXAMPLE = "--grid train.lr=1e-4,3e-4,1e-3"


class GridError(config.ConfigError):
    """A grid that cannot be expanded, as one line naming the key and ``--grid`` or the file."""


@dataclass(frozen=True)
class Axis:
    """One grid key and its values, in the order given; ``source`` names where it came from."""

    key: str
    values: tuple[Any, ...]
    source: str


@dataclass(frozen=True)
class Point:
    """One combination: the grid values (as the config reads them) and the full, validated config."""

    values: dict[str, Any]
    config: config.Config


@dataclass(frozen=True)
class Stack:
    """Points that differ only in per-run keys: one stack of the batched engine (same shapes and data)."""

    settings: dict[str, Any]  # the per-stack grid values these points share
    points: tuple[Point, ...]

    @property
    def config(self) -> config.Config:
        """The stack's shared settings (every point agrees on them; per-run keys are the first point's)."""
        return self.points[0].config


def _matches(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def scope(key: str, source: str = "--grid") -> Scope:
    """``run`` or ``stack`` for a grid key; GridError (with the reason) for a key that is not one."""
    for prefix, reason in NOT_GRID.items():
        if _matches(key, prefix):
            raise GridError(f"{key}: not a grid key: {reason} ({source})")
    return "run" if any(_matches(key, p) for p in PER_RUN) else "stack"


def parse_option(text: str) -> Axis:
    """``section.key=v1,v2,...`` (one ``--grid``) -> an Axis; values read as YAML (``[10, 4, 1]`` too)."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise GridError(f"--grid expects section.key=value1,value2,... (got {text!r}), e.g. {EXAMPLE}")
    if not values.strip():
        raise GridError(f"{key}: no values after '=' (--grid {key}); give a comma-separated list, e.g. {EXAMPLE}")
    try:
        parsed = yaml.safe_load(f"[{values}]")  # a YAML flow list: 1e-4,3e-4 and [10,4,1],[10,8,1] alike
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise GridError(f"{key}: cannot read the values {values!r}: {problem} (--grid {key})") from None
    if any(v is None for v in parsed):
        raise GridError(f"{key}: an empty value in {values!r} (--grid {key}); remove the extra comma")
    return Axis(key, tuple(parsed), f"--grid {key}")


def from_mapping(grid: Any, sources: config.Sources, prefix: str = "compare.grid") -> list[Axis]:
    """The axes of a ``compare.grid:`` mapping (key -> list of values) read from a config file."""
    if grid is None:
        return []
    if not isinstance(grid, Mapping):
        raise GridError(f"{prefix}: must be a mapping of keys to lists of values, e.g. "
                        f"{{train.lr: [1e-4, 1e-3]}} (got {grid!r}) ({sources.of(prefix)})")
    axes = []
    for key, values in grid.items():
        where = sources.of(f"{prefix}.{key}")
        if not isinstance(values, list):
            raise GridError(f"{prefix}.{key}: must be a list of values (got {values!r}) ({where})")
        axes.append(Axis(str(key), tuple(values), where))
    return axes


def split_grid(raw: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """A config file's data without ``compare.grid``, and that grid (None if absent); ``raw`` is unchanged."""
    raw = copy.deepcopy(raw)
    section = raw.get("compare")
    grid = section.pop("grid", None) if isinstance(section, dict) else None
    return raw, grid


def merge(file_axes: Sequence[Axis], option_axes: Sequence[Axis]) -> list[Axis]:
    """The file's axes with ``--grid`` replacing any axis of the same key (flags override files)."""
    seen = set()
    for axis in option_axes:
        if axis.key in seen:
            raise GridError(f"{axis.key}: given twice (--grid); list all its values in one --grid")
        seen.add(axis.key)
    return [a for a in file_axes if a.key not in seen] + list(option_axes)


def check_axes(axes: Sequence[Axis]) -> None:
    """Every axis has values, no repeated key, a grid scope; sizes and depth/width not both."""
    keys = [a.key for a in axes]
    for axis in axes:
        if not axis.values:
            raise GridError(f"{axis.key}: an empty list of values ({axis.source}); give at least one")
        if keys.count(axis.key) > 1:
            raise GridError(f"{axis.key}: on the grid twice ({axis.source}); list all its values once")
        if axis.key not in CONVENIENCES:
            scope(axis.key, axis.source)
    if "model.sizes" in keys and any(k in keys for k in CONVENIENCES):
        raise GridError("model.sizes: on the grid together with model.depth/model.width (--grid); "
                        "use either sizes or depth and width")


def combinations(axes: Sequence[Axis]) -> list[dict[str, Any]]:
    """Every combination of one value per axis, first axis slowest (no axes: one empty combination)."""
    return [dict(zip([a.key for a in axes], values)) for values in itertools.product(*(a.values for a in axes))]


def sizes_for(depth: int, width: int, features: int, outputs: int = 1) -> tuple[int, ...]:
    """``model.sizes`` of a net with ``depth`` hidden layers of ``width`` units: (features, width, ..., outputs)."""
    return (features, *([width] * depth), outputs)


def _whole(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GridError(f"{key}: must be a whole number of at least 1 (got {value!r}) ({source})")
    return value


def _apply_conveniences(raw: dict[str, Any], combo: Mapping[str, Any], axes: Mapping[str, Axis],
                        sources: config.Sources) -> None:
    """Replace model.depth / model.width in ``combo`` by the model.sizes they mean, set into ``raw``."""
    if not any(k in combo for k in CONVENIENCES):
        return
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    base = list(model.get("sizes", config.ModelConfig().sizes))
    source = ", ".join(axes[k].source for k in CONVENIENCES if k in combo)
    depth = _whole(combo.get("model.depth", len(base) - 2), "model.depth", source)
    width = _whole(combo.get("model.width", base[1] if len(base) > 2 else 1), "model.width", source)
    try:
        features = tasks.task_features(data.get("task", config.DataConfig().task), data.get("features"))
    except (tasks.TaskError, KeyError, TypeError):  # a bad task is build_config's to report, with its source
        features = base[0]
    config.set_key(raw, "model.sizes", list(sizes_for(depth, width, features, base[-1])))
    sources.by_key["model.sizes"] = source


def lookup(cfg: config.Config, key: str) -> Any:
    """The value of a dotted key in a Config (``model.options.leaky_relu.negative_slope`` too)."""
    node: Any = cfg
    for part in key.split("."):
        node = node[part] if isinstance(node, Mapping) else getattr(node, part)
    return node


def _record(sources: config.Sources, key: str, source: str) -> None:
    """``key``'s source, and its parents' where unknown: an unknown section (``modle``) names --grid too."""
    sources.by_key[key] = source
    parts = key.split(".")
    sections = {f.name for f in dataclasses.fields(config.Config)}  # their other keys have other sources
    for i in range(1, len(parts)):
        if ".".join(parts[:i]) not in sections:
            sources.by_key.setdefault(".".join(parts[:i]), source)


def _point(base: Mapping[str, Any], sources: config.Sources, combo: Mapping[str, Any],
           axes: Mapping[str, Axis], imports: bool = True) -> Point:
    raw = copy.deepcopy(dict(base))
    point_sources = copy.deepcopy(sources)
    for key, value in combo.items():
        if key not in CONVENIENCES:
            config.set_key(raw, key, value)
            _record(point_sources, key, axes[key].source)
    _apply_conveniences(raw, combo, axes, point_sources)
    try:
        cfg = config.build_config(raw, point_sources, imports=imports)
    except config.ConfigError as exc:
        where = f" [grid point {', '.join(f'{k}={v}' for k, v in combo.items())}]" if len(combo) > 1 else ""
        raise GridError(f"{exc}{where}") from None
    values = {k: (v if k in CONVENIENCES else lookup(cfg, k)) for k, v in combo.items()}
    return Point(values, cfg)


def expand(base: Mapping[str, Any], axes: Sequence[Axis], sources: config.Sources | None = None,
           imports: bool = True) -> list[Point]:
    """Every point of the grid over ``base`` (plain config data, overrides applied), each validated
    (``imports=False``: without importing activations named by import path, for reading a folder)."""
    check_axes(axes)
    sources = sources or config.Sources()
    by_key = {a.key: a for a in axes}
    points = [_point(base, sources, combo, by_key, imports) for combo in combinations(axes)]
    for axis in axes:  # 1e-3 and 0.001 are the same point twice: identical runs under one name
        if len({repr(p.values[axis.key]) for p in points}) < len(axis.values):
            raise GridError(f"{axis.key}: the same value twice on the grid ({axis.source}); list each value once")
    return points


def load(path: Path | None, overrides: Sequence[tuple[str, Any, str]] = (),
         options: Sequence[str] = ()) -> tuple[config.Config, list[Axis], list[Point]]:
    """The base config (file + overrides; its ``compare.grid`` the whole grid, as ``as_mapping`` writes it), the
    grid's axes (``compare.grid`` + ``--grid`` options, which replace a file's axis of the same key), its points."""
    sources = config.Sources()
    raw = config.read_yaml(path, sources) if path is not None else {}
    for key, value, source in overrides:
        config.set_key(raw, key, value)
        sources.by_key[key] = source
    raw, file_grid = split_grid(raw)
    base = config.build_config(raw, sources)
    axes = merge(from_mapping(file_grid, sources), [parse_option(o) for o in options])
    points = expand(raw, axes, sources)
    full = with_grid(base, axes, points)
    config.check_study(full, sources)  # a grid is ranked on disjoint seeds: it needs at least two
    return full, axes, points


def with_grid(cfg: config.Config, axes: Sequence[Axis], points: Sequence[Point]) -> config.Config:
    """``cfg`` with ``compare.grid`` set to the grid of ``axes`` (what the experiment folder's config.yaml holds)."""
    return dataclasses.replace(cfg, compare=dataclasses.replace(cfg.compare, grid=as_mapping(axes, points)))


def of_config(cfg: config.Config, imports: bool = True) -> tuple[list[Axis], list[Point]]:
    """The axes and points of a Config's own ``compare.grid`` (no grid: no axes, one point: the config)."""
    raw, found = split_grid(config.to_dict(cfg))
    sources = config.Sources("compare.grid")
    axes = from_mapping(found, sources)
    return axes, expand(raw, axes, sources, imports)


def stacks(points: Sequence[Point], axes: Sequence[Axis]) -> list[Stack]:
    """Points grouped by their per-stack values, in grid order (no per-stack axis: one stack)."""
    stack_keys = [a.key for a in axes if a.key in CONVENIENCES or scope(a.key) == "stack"]
    groups: dict[str, list[Point]] = {}
    for point in points:
        groups.setdefault(repr([point.values[k] for k in stack_keys]), []).append(point)
    return [Stack({k: group[0].values[k] for k in stack_keys}, tuple(group)) for group in groups.values()]


def as_mapping(axes: Sequence[Axis], points: Sequence[Point]) -> dict[str, list[Any]]:
    """The grid as ``compare.grid`` data, values as the config read them: what a replayable config.yaml holds."""
    out: dict[str, list[Any]] = {}
    for a in axes:
        distinct = {repr(p.values[a.key]): plain_value(p.values[a.key]) for p in points}  # lists are unhashable
        out[a.key] = list(distinct.values())
    return out


def plain_value(value: Any) -> Any:
    """A grid value as YAML and JSON hold it: tuples (``model.sizes``) as lists, the rest as it is."""
    return list(value) if isinstance(value, tuple) else value


def base_setting(base: config.Config, axes: Sequence[Axis], points: Sequence[Point]) -> dict[str, Any] | None:
    """The base config's own values of the grid keys (the fixed-setting ranking), or None if not a grid point."""
    setting = {a.key: own_value(base, a.key) for a in axes}
    found = any(all(repr(p.values[k]) == repr(v) for k, v in setting.items()) for p in points)
    return setting if found else None


def own_value(cfg: config.Config, key: str) -> Any:
    """A config's own value of a grid key: ``model.depth`` and ``model.width`` read from model.sizes (width
    None where the hidden layers differ), any other key looked up."""
    if key not in CONVENIENCES:
        return lookup(cfg, key)
    hidden = cfg.model.sizes[1:-1]
    if key == "model.depth":
        return len(hidden)
    return hidden[0] if hidden and len(set(hidden)) == 1 else None


def label(values: Mapping[str, Any]) -> str:
    """A point's grid values as short stable text for run ids: ``train.lr=0.001,model.init=auto``."""
    return ",".join(f"{k}={plain_value(v)}".replace(" ", "") for k, v in values.items())


def columns(axes: Sequence[Axis]) -> list[str]:
    """The grid keys, in axis order: the extra columns of metrics, summary and stats."""
    return [a.key for a in axes]


def steps_per_run(cfg: config.Config) -> int:
    """Optimizer steps of one run: epochs x mini-batches per epoch of the training points."""
    d = cfg.data
    n_train = d.samples - round(d.samples * d.test_fraction)
    return cfg.train.epochs * -(-n_train // cfg.train.batch_size)


def plan(stack_list: Sequence[Stack]) -> list[dict[str, Any]]:
    """Per stack, what a dry run prints: its settings, points, runs and optimizer steps."""
    rows = []
    for stack in stack_list:
        cfg = stack.config
        runs = len(stack.points) * len(cfg.compared_activations()) * cfg.compare.seeds
        rows.append({"settings": dict(stack.settings), "points": len(stack.points), "runs": runs,
                     "sizes": list(cfg.model.sizes), "steps": runs * steps_per_run(cfg)})
    return rows
