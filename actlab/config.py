"""The experiment configuration: a typed, nested, validated object. YAML is only its file form.

Every field has a default; the defaults are the article's experiment (ARTICLES.md §A) exactly. Values
from a file, from ``--set section.key=value`` and from the CLI's shortcut flags all pass through
``build_config``, so they are checked the same way, and every error names the key and where it came from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import stat
import types
import typing
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from actlab import activations, init, tasks

FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max: the engines' numbers are float32
MAX_PATH = 3800  # output.runs_dir: Linux's PATH_MAX is 4096 bytes, and the experiment's own files go inside
MAX_NAME = 200  # output.name: the folder adds a 16-character timestamp and a suffix; file systems allow 255


class ConfigError(ValueError):
    """A configuration problem, as one line that names the key and its source."""


def _doc(text: str, **kwargs: Any) -> Any:
    return field(metadata={"doc": text}, **kwargs)


@dataclass(frozen=True)
class ModelConfig:
    sizes: tuple[int, ...] = _doc("layer widths, input first, output last", default=(10, 18, 18, 4, 1))
    activation: str = _doc("activation after every hidden layer (`actlab activations`)", default="relu")
    options: dict[str, dict[str, Any]] = _doc(
        "per-activation constructor options, e.g. {leaky_relu: {negative_slope: 0.1}}", default_factory=dict)
    init: str = _doc("weight initialisation: default (nn.Linear's) | xavier_uniform | xavier_normal | "
                     "kaiming_uniform | kaiming_normal | lecun_normal | auto (each activation's own); "
                     "every scheme scales the same draws of a seed", default="default")
    init_bias: str = _doc("bias initialisation: default (nn.Linear's) | zero", default="default")
    init_by_activation: dict[str, str] = _doc(
        "per-activation weight schemes that override model.init, e.g. {selu: lecun_normal}", default_factory=dict)


@dataclass(frozen=True)
class DataConfig:
    task: str = _doc("noise | cosine | teacher | friedman1", default="noise")
    samples: int = _doc("number of points, held-out ones included", default=100)
    features: int | None = _doc("input width; null: the task's own (1 for cosine, else 10)", default=None)
    noise: float = _doc("std of Gaussian noise added to the targets (not used by `noise`)", default=0.0)
    test_fraction: float = _doc("share of points held out for a test loss, in [0, 1)", default=0.0)
    validation_fraction: float = _doc("share of all points carved out of the training part as a validation "
                                      "split (seeded by data.seed; val_loss per epoch), in [0, 1)", default=0.0)
    seed: int = _doc("data seed: every run of an experiment sees the same data", default=0)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _doc("passes over the training data", default=150)
    batch_size: int = _doc("mini-batch size", default=10)
    lr: float = _doc("learning rate (of Adam or SGD)", default=0.001)
    optimizer: Literal["adam", "sgd"] = _doc("adam (torch.optim.Adam) | sgd (torch.optim.SGD, plain or with "
                                             "momentum)", default="adam")
    betas: tuple[float, ...] = _doc("Adam's betas: decay rates of its gradient averages, each in [0, 1)",
                                    default=(0.9, 0.999))
    eps: float = _doc("Adam's eps, added to the denominator (Keras's default: 1e-7)", default=1e-8)
    momentum: float = _doc("SGD's momentum, >= 0 (0: plain SGD; Adam ignores it)", default=0.0)
    loss: Literal["mse"] = _doc("loss (nn.MSELoss, mean)", default="mse")
    shuffle: bool = _doc("reshuffle mini-batches every epoch (seeded per run); false: X[i:i+b] in order",
                         default=False)
    seed: int = _doc("initialisation seed of `train`; `compare` uses seed, seed+1, ...", default=0)
    engine: Literal["batched", "loop"] = _doc("batched: all runs as one stacked computation; loop: one "
                                              "nn.Module + optim.Adam per run (the reference)", default="batched")
    chunk_size: int = _doc("most runs the batched engine stacks at once (bounds memory)", default=4096)
    workers: int = _doc("processes the batched engine trains chunks in on the CPU; 0: one per core",
                        default=0)
    executor: Literal["local", "ray"] = _doc("where the batched engine's chunks train: local (processes on "
                                             "this machine) | ray (a Ray cluster)", default="local")
    ray_address: str | None = _doc("Ray cluster to connect to (ray executor); null: RAY_ADDRESS, else a "
                                   "local Ray runtime", default=None)
    diagnostics: bool = _doc("gradient norms and dead/saturated units (at the epochs of diagnostics_dense); "
                             "false: losses only", default=True)
    diagnostics_dense: int = _doc("the gradient norms and unit states are measured at every epoch up to this "
                                  "one, then every 2nd epoch up to twice it, every 4th up to 4 times it, ..., "
                                  "and always at epoch 0 and the last (env.json lists them; other epochs: empty "
                                  "cells); 0: every epoch. Losses are logged every epoch", default=10)
    checkpoint_seconds: float = _doc("most seconds of a stack's training an interrupt can lose: stacks in "
                                     "training save a checkpoint this often (`actlab resume` goes on from it)",
                                     default=30.0)


@dataclass(frozen=True)
class CompareConfig:
    activations: tuple[str, ...] = _doc("activations to compare; [all] = every registry entry",
                                        default=("all",))
    seeds: int = _doc("seeds per activation (initial weights and shuffling)", default=10)
    grid: dict[str, Any] = _doc("settings to train every activation and seed at: {key: [values]}, e.g. "
                                "{train.lr: [1e-3, 1e-2]} (like --grid); {}: the config's own setting only",
                                default_factory=dict)
    tuning_seeds: tuple[int, ...] | None = _doc(
        "with a grid, the seeds that choose each activation's setting; every other seed reports it. null: the "
        "first half of the seeds", default=None)


@dataclass(frozen=True)
class OutputConfig:
    runs_dir: str = _doc("parent folder of experiment folders", default="runs")
    name: str = _doc("experiment name, part of the folder name", default="article")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    device: str = _doc("cpu | cuda | cuda:N | auto (cuda when present)", default="cpu")

    def compared_activations(self) -> list[str]:
        """Canonical names of the activations ``compare`` trains, ``all`` expanded, duplicates dropped."""
        out: list[str] = []
        for name in self.compare.activations:
            for item in activations.names() if name == "all" else [activations.canonical(name)]:
                if item not in out:
                    out.append(item)
        return out

    def options_for(self, activation: str) -> dict[str, Any]:
        return dict(self.model.options.get(activation, {}))

    def init_for(self, activation: str) -> str:
        """The weight scheme of ``activation`` (canonical name): its entry in model.init_by_activation
        (by any of its names), else model.init."""
        for name, scheme in self.model.init_by_activation.items():
            if activations.canonical(name) == activation:
                return scheme
        return self.model.init


# --------------------------------------------------------------------------------------------------
# Building a Config from plain data, with the source of every value for error messages.


class Sources:
    """Where each dotted key's value came from: ``file.yaml line 12``, ``--lr``, ``--set train.lr``."""

    def __init__(self, default: str = "built-in default") -> None:
        self.default = default
        self.by_key: dict[str, str] = {}

    def of(self, key: str) -> str:
        """The source of ``key``: its own, else the latest one set below it (``--set foo.bar`` for an unknown
        section ``foo``), else its nearest parent's (``model.sizes`` for ``model.sizes[1]``)."""
        if key in self.by_key:
            return self.by_key[key]
        below = [source for k, source in self.by_key.items() if k.startswith((f"{key}.", f"{key}["))]
        if below:
            return below[-1]
        while key:
            key = key[: max(key.rfind("."), key.rfind("["), 0)]
            if key in self.by_key:
                return self.by_key[key]
        return self.default


def _fail(key: str, message: str, sources: Sources) -> typing.NoReturn:
    raise ConfigError(f"{key}: {message} ({sources.of(key)})")


def _convert(value: Any, hint: Any, key: str, sources: Sources) -> Any:
    """``value`` checked against the type ``hint`` (and gently converted: lists to tuples, '1e-3' to float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key, sources)
    if origin is Literal:
        if value not in args:
            _fail(key, f"must be one of {', '.join(map(str, args))} (got {value!r})", sources)
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            _fail(key, f"must be a list (got {value!r})", sources)
        return tuple(_convert(v, args[0], f"{key}[{i}]", sources) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            _fail(key, f"must be a mapping (got {value!r})", sources)
        return {str(k): _convert(v, args[1], f"{key}.{k}", sources) for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            _fail(key, f"must be true or false (got {value!r})", sources)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, f"must be a whole number (got {value!r})", sources)
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(key, f"must be a number (got {value!r})", sources)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            _fail(key, f"must be a string (got {value!r})", sources)
        return value
    if dataclasses.is_dataclass(hint):
        return _build_section(hint, value, key, sources)
    raise TypeError(f"unsupported config type {hint!r}")  # a bug in this module, not user input


def _build_section(cls: type, raw: Any, prefix: str, sources: Sources) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        _fail(prefix or "config", f"must be a mapping of keys to values (got {raw!r})", sources)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            full = f"{prefix}.{key}" if prefix else str(key)
            close = [n for n in names if n.startswith(str(key)[:3])]
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(names)}"
            _fail(full, f"unknown key{hint}", sources)
    values = {
        name: _convert(raw[name], hints[name], f"{prefix}.{name}" if prefix else name, sources)
        for name in names
        if name in raw
    }
    return cls(**values)


def build_config(raw: Mapping[str, Any], sources: Sources | None = None, *, imports: bool = True) -> Config:
    """A validated Config from nested plain data (what a YAML file holds).

    ``imports=False`` validates without importing activations named by import path (they are kept as names):
    the mode for reading a folder, which must never run code from it.
    """
    sources = sources or Sources()
    cfg = _build_section(Config, raw, "", sources)
    _validate(cfg, sources, imports)
    return cfg


def _check_activations(cfg: Config, sources: Sources, imports: bool) -> None:
    """Every named activation resolves; one named by import path is imported and probed (unless not
    ``imports``), so a module that changes the width or fails in forward is refused before any training."""
    named = [("model.activation", cfg.model.activation)] + [
        (f"compare.activations[{i}]", n) for i, n in enumerate(cfg.compare.activations) if n != "all"]
    for key, name in named + [(f"model.options.{n}", n) for n in cfg.model.options]:
        try:
            if activations.is_import_path(name) and not imports:
                activations.canonical(name)  # its syntax only
                continue
            spec = activations.resolve(name)
            if key.startswith("model.options."):
                activations.check_options(spec, cfg.model.options[name])
            elif activations.is_import_path(name):
                activations.probe(spec, cfg.options_for(spec.name), cfg.model.sizes[1:-1])
        except activations.ActivationError as exc:
            _fail(key, str(exc), sources)


def _check_init(model: ModelConfig, sources: Sources) -> None:
    """model.init, model.init_bias and model.init_by_activation name schemes of actlab.init (the error lists
    them) and, in the last, activations (not imported: its import paths are checked for syntax only)."""
    checks = [("model.init", model.init, "default"), ("model.init_bias", "default", model.init_bias)]
    checks += [(f"model.init_by_activation.{name}", scheme, "default")
               for name, scheme in model.init_by_activation.items()]
    for key, scheme, bias in checks:
        try:
            init.check(scheme, bias)
        except init.InitError as exc:
            _fail(key, str(exc), sources)
    for name in model.init_by_activation:
        try:
            activations.canonical(name)
        except activations.ActivationError as exc:
            _fail(f"model.init_by_activation.{name}", str(exc), sources)


def _check_optimizer(train: TrainConfig, check: typing.Callable[[bool, str, str], None]) -> None:
    """Adam's betas and eps, SGD's momentum: numbers torch.optim accepts (it would refuse them later)."""
    check(len(train.betas) == 2, "train.betas", f"needs two numbers, e.g. [0.9, 0.999] (got {list(train.betas)})")
    for i, beta in enumerate(train.betas):
        check(0.0 <= beta < 1.0, f"train.betas[{i}]", f"must be in [0, 1) (got {beta})")
    check(math.isfinite(train.eps) and 0 < train.eps <= FLOAT32_MAX, "train.eps",
          f"must be > 0 and at most {FLOAT32_MAX:.3g} (float32's largest), e.g. 1e-8 (got {train.eps})")
    # the engines apply a step as a float32 scalar: Adam's first is lr / (1 - beta1), SGD's lr; one that
    # float32 cannot hold is refused here, not by torch mid-training ("cannot be converted without overflow")
    first = train.lr / (1.0 - train.betas[0]) if train.optimizer == "adam" and len(train.betas) == 2 else train.lr
    check(first <= FLOAT32_MAX, "train.lr",
          f"is too large: the first step, {first:.3g}, exceeds float32's largest number, {FLOAT32_MAX:.3g}; "
          "lower it")
    check(math.isfinite(train.momentum) and train.momentum >= 0, "train.momentum",
          f"must be >= 0 (got {train.momentum})")


def _validate(cfg: Config, sources: Sources, imports: bool = True) -> None:
    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            _fail(key, message, sources)

    sizes = cfg.model.sizes
    check(len(sizes) >= 2, "model.sizes", f"needs at least two layer sizes, input and output (got {list(sizes)})")
    for i, size in enumerate(sizes):
        check(size >= 1, f"model.sizes[{i}]", f"a layer size must be at least 1 (got {size})")
    _check_activations(cfg, sources, imports)
    _check_init(cfg.model, sources)

    data = cfg.data
    check(data.task in tasks.TASKS, "data.task", f"unknown task '{data.task}' (tasks: {', '.join(tasks.TASKS)})")
    check(data.samples >= 2, "data.samples", f"must be at least 2 (got {data.samples})")
    check(data.features is None or data.features >= 1, "data.features", f"must be at least 1 (got {data.features})")
    check(0.0 <= data.test_fraction < 1.0, "data.test_fraction", f"must be in [0, 1) (got {data.test_fraction})")
    check(math.isfinite(data.noise) and data.noise >= 0, "data.noise", f"must be >= 0 (got {data.noise})")
    try:
        width = tasks.task_features(data.task, data.features)
    except tasks.TaskError as exc:
        _fail("data.features", str(exc), sources)
    check(width == sizes[0], "model.sizes[0]",
          f"the input layer has {sizes[0]} units but task {data.task} gives {width} input feature(s); "
          f"set model.sizes[0] to {width} (or data.features to {sizes[0]})")
    check(sizes[-1] == 1, "model.sizes", f"the output layer must have 1 unit: every task has one target "
                                         f"(got {sizes[-1]})")
    if data.task == "friedman1":
        check(width >= 5, "data.features", f"friedman1 needs at least 5 features (got {width})")
    n_test = round(data.samples * data.test_fraction)
    n_train = data.samples - n_test
    check(n_train >= 1, "data.test_fraction", "leaves no training points")
    n_train -= _validation_points(data, sources)
    check(data.test_fraction == 0 or n_test >= 1, "data.test_fraction",
          f"holds out {data.test_fraction} of {data.samples} points, which rounds to none; raise it to at least "
          f"{0.5 / data.samples:.3g} or set 0 for no held-out loss")

    train = cfg.train
    check(train.epochs >= 1, "train.epochs", f"must be at least 1 (got {train.epochs})")
    check(math.isfinite(train.lr) and train.lr > 0, "train.lr", f"must be > 0 (got {train.lr})")
    check(train.batch_size >= 1, "train.batch_size", f"must be at least 1 (got {train.batch_size})")
    check(train.batch_size <= n_train, "train.batch_size",
          f"is larger than the {n_train} training points; lower it or raise data.samples")
    check(train.chunk_size >= 1, "train.chunk_size", f"must be at least 1 (got {train.chunk_size})")
    check(math.isfinite(train.checkpoint_seconds) and train.checkpoint_seconds >= 0, "train.checkpoint_seconds",
          f"must be 0 (every epoch) or more (got {train.checkpoint_seconds})")
    check(train.workers >= 0, "train.workers", f"must be 0 (one per core) or more (got {train.workers})")
    check(train.diagnostics_dense >= 0, "train.diagnostics_dense",
          f"must be 0 (every epoch) or more (got {train.diagnostics_dense})")
    _check_optimizer(train, check)
    check(cfg.compare.seeds >= 1, "compare.seeds", f"must be at least 1 (got {cfg.compare.seeds})")
    check(len(cfg.compare.activations) >= 1, "compare.activations", "needs at least one activation (or all)")
    check_study(cfg, sources)
    check(re.fullmatch(r"cpu|cuda(:\d+)?|auto", cfg.device) is not None, "device",
          f"must be cpu, cuda, cuda:N or auto (got {cfg.device!r})")
    check(re.fullmatch(r"[\w.+-]+", cfg.output.name) is not None, "output.name",
          f"use letters, digits and . _ + - only, it names a folder (got {cfg.output.name!r})")
    check(len(cfg.output.name) <= MAX_NAME, "output.name",
          f"is {len(cfg.output.name)} characters long; at most {MAX_NAME} fit in a folder name")
    check(cfg.output.runs_dir.strip() != "", "output.runs_dir", "is empty; name a folder, e.g. runs")
    _check_runs_dir(cfg.output.runs_dir, check)


JOINERS = {"\u200c", "\u200d"}  # zero-width non-joiner and joiner: part of how some words and emoji are spelt


def _check_runs_dir(runs_dir: str, check: typing.Callable[[bool, str, str], None]) -> None:
    """output.runs_dir is a path the file system can hold, and one a terminal and a shell show as it is."""
    bad_byte = next((c for c in runs_dir if "\udc80" <= c <= "\udcff"), None)  # a byte that was not UTF-8
    check(bad_byte is None, "output.runs_dir", f"is not UTF-8 text (byte 0x{ord(bad_byte or ' ') - 0xDC00:02x}); "
          "name a folder in UTF-8")
    # control characters, line breaks and invisible format characters (bidi overrides could show the path as
    # another); the joiners U+200C/U+200D are letters' business in Persian, Indic scripts and emoji: allowed
    bad = next((c for c in runs_dir if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") and c not in JOINERS),
               None)
    check(bad is None, "output.runs_dir", f"holds the invisible character {bad!r} "
          f"({unicodedata.name(bad or ' ', 'a control character')}), which file listings and shells do not show as "
          f"typed; choose a path without it (got {runs_dir!r})")
    long = next((part for part in Path(runs_dir).parts if len(part.encode()) > 255), None)
    check(long is None, "output.runs_dir", f"the folder name '{(long or '')[:20]}...' is {len((long or '').encode())} "
          "bytes long; file systems allow 255")
    check(len(runs_dir.encode()) <= MAX_PATH, "output.runs_dir",
          f"is {len(runs_dir.encode())} bytes long; at most {MAX_PATH} leave room for the folders inside it")


def _validation_points(data: DataConfig, sources: Sources) -> int:
    """The validation split's size, checked like test_fraction: in [0, 1), leaving a training point."""
    from actlab import study

    if not 0.0 <= data.validation_fraction < 1.0:
        _fail("data.validation_fraction", f"must be in [0, 1) (got {data.validation_fraction})", sources)
    try:
        n_val = study.validation_size(data.samples, data.test_fraction, data.validation_fraction)
    except study.StudyError as exc:
        _fail("data.validation_fraction", str(exc).removeprefix("data.validation_fraction: "), sources)
    if data.validation_fraction > 0 and n_val == 0:
        _fail("data.validation_fraction", f"{data.validation_fraction} of {data.samples} points rounds to none; "
              f"raise it to at least {0.5 / data.samples:.3g} or set 0 for no validation split", sources)
    return n_val


def check_study(cfg: Config, sources: Sources) -> None:
    """compare.grid read by actlab.grid (keys, scopes, lists; each point is validated when expanded) and
    compare.tuning_seeds split from the experiment's seeds by actlab.study."""
    from actlab import grid, study

    grid.check_axes(grid.from_mapping(cfg.compare.grid, sources))
    if cfg.compare.grid or cfg.compare.tuning_seeds is not None:  # a grid is ranked fairly: it needs the split
        seeds = range(cfg.train.seed, cfg.train.seed + cfg.compare.seeds)
        try:
            study.split_seeds(seeds, cfg.compare.tuning_seeds)
        except study.StudyError as exc:
            key = "compare.tuning_seeds" if str(exc).startswith("compare.tuning_seeds") else "compare.seeds"
            _fail(key, str(exc).removeprefix("compare.tuning_seeds: "), sources)


# --------------------------------------------------------------------------------------------------
# YAML at the edges. A config file is untrusted input: it is read with a size cap, must be UTF-8, and is
# composed into a node graph that is checked (expanded size, duplicate keys) before anything is built.

MAX_FILE_BYTES = 1_000_000  # a config is a few hundred bytes; anything this large is not one
MAX_NODES = 100_000  # expanded size of the document: an alias bomb ("billion laughs") expands past it


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (no Python objects), used only through ``_parse`` which checks the graph."""


def _expanded_size(root: yaml.Node, path: str) -> int:
    """The number of nodes the document has once every alias is expanded, counted without expanding."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: a deep document must not hit Python's recursion limit
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if not children_done:
            if id(node) in active:
                raise ConfigError(f"{path} line {node.start_mark.line + 1}: a YAML alias refers to itself; "
                                  "a config cannot be recursive")
            active.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        active.discard(id(node))
        sizes[id(node)] = min(1 + sum(sizes[id(child)] for child in children), MAX_NODES + 1)
    return sizes[id(root)]


def _check_nodes(root: yaml.Node, path: str, sources: Sources) -> None:
    """Refuse duplicate keys (naming both lines) and record the line of every key and list item."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, prefix = stack.pop()
        if id(node) in seen_nodes:  # an alias: its lines are the anchor's
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                name = str(key_node.value)
                if name in lines and name != "<<":
                    raise ConfigError(f"{path} line {line}: duplicate key '{name}' (first on line {lines[name]}); "
                                      "keep one of them")
                lines[name] = line
                key = f"{prefix}.{name}" if prefix else name
                sources.by_key[key] = f"{path} line {line}"
                stack.append((value_node, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                key = f"{prefix}[{i}]"
                sources.by_key.setdefault(key, f"{path} line {item.start_mark.line + 1}")
                stack.append((item, key))


def _parse(text: str, path: str, sources: Sources) -> Any:
    """The data of a YAML document, after the checks of ``_expanded_size`` and ``_check_nodes``."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        if _expanded_size(root, path) > MAX_NODES:
            raise ConfigError(f"{path}: the document expands to more than {MAX_NODES} values through YAML "
                              "aliases (&anchor / *alias); a config is far smaller, write it out plainly")
        _check_nodes(root, path, sources)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _open_regular(path: Path) -> typing.BinaryIO:
    """``path`` opened for reading if it is a regular file (or this process's own standard input, e.g.
    ``--config /dev/stdin``); else ConfigError. Opened without blocking first: a FIFO nobody writes to
    would wait forever, which is no answer."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) and not _is_stdin(info):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a FIFO, socket or device)"
            raise ConfigError(f"cannot read config file {path}: it is {kind}; give a YAML file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # stdin's pipe: wait for what the writer sends
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _is_stdin(info: os.stat_result) -> bool:
    try:
        return os.path.samestat(info, os.fstat(0))
    except OSError:  # no standard input
        return False


def read_yaml(path: Path, sources: Sources) -> dict[str, Any]:
    """The mapping a config file holds (empty file: {}), recording key lines into ``sources``."""
    try:
        with _open_regular(path) as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 1000} kB, too large for a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path} line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                          "save the config as UTF-8") from None
    try:
        raw = _parse(text, str(path), sources)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections (model:, train:, ...)")
    sources.default = f"{path}"
    return raw


def set_key(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``section.key`` in nested plain data, creating the section if needed.

    A section that holds something other than a mapping is left as it is, not replaced, so validation
    reports it where it came from: a flag must not paper over a malformed section (``train: 5`` in a
    file plus ``--epochs 2``).
    """
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            return
        node = child
    node[last] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``section.key=value`` -> (key, value), the value read as YAML (``[1, 2]``, ``true``, ``3e-3``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects section.key=value (got {text!r}), e.g. --set train.lr=0.003")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


SHIPPED_DIR = Path(__file__).parent / "configs"  # package data: the configs named in the README


def shipped_configs() -> list[str]:
    """Names of the configs shipped with actlab (``article``, ``cosine``, ...), usable from anywhere."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def find_config(name: str | Path) -> Path:
    """A config file: ``name`` itself when it exists (a path wins), else the shipped one of that name."""
    if not str(name).strip():
        raise ConfigError(f"the config file's name is empty; give a YAML file or a shipped config "
                          f"({', '.join(shipped_configs())})")
    path = Path(name)
    if path.exists():
        return path
    if path.is_symlink():
        raise ConfigError(f"cannot read config file {name}: it is a symbolic link to nothing (or a loop of links)")
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    if path.parent in (Path("."), Path("configs")) and stem in shipped_configs():
        return SHIPPED_DIR / f"{stem}.yaml"
    raise ConfigError(f"cannot read config file {name}: no such file, and no shipped config of that name "
                      f"(shipped: {', '.join(shipped_configs())})")


def load_config(
    path: str | Path | None = None, overrides: typing.Sequence[tuple[str, Any, str]] = ()
) -> Config:
    """The config in ``path`` (a file, or a shipped name such as ``"cosine"``; None: the built-in default)
    with ``overrides`` (key, value, source) applied."""
    sources = Sources()
    raw = read_yaml(find_config(path), sources) if path is not None else {}
    for key, value, source in overrides:
        set_key(raw, key, value)
        sources.by_key[key] = source
    return build_config(raw, sources)


def read_config(path: Path) -> Config:
    """The config of a stored folder, validated without importing anything it names (reading a folder must
    not run code from it): activations given by import path stay names."""
    sources = Sources()
    raw = read_yaml(path, sources)
    train = raw.get("train") if isinstance(raw, dict) else None
    if isinstance(train, dict) and "diagnostics_dense" not in train:
        # a stored config is resolved (every key written): without this one, it predates the schedule, and
        # its diagnostics were measured every epoch
        train["diagnostics_dense"] = 0
    return build_config(raw, sources, imports=False)


def import_paths(cfg: Config) -> list[str]:
    """The activations ``cfg`` names by import path: the user code that training it will import."""
    named = [cfg.model.activation, *cfg.compare.activations, *cfg.model.options]
    return list(dict.fromkeys(name.strip() for name in named if activations.is_import_path(name)))


def file_imports(path: Path) -> list[str]:
    """The import paths a config file names, read without validating or importing anything: what training
    it will import (a replayed folder's config.yaml can name any module)."""
    raw = read_yaml(path, Sources())
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    compare = raw.get("compare") if isinstance(raw.get("compare"), dict) else {}
    acts = compare.get("activations", [])
    acts = acts.split(",") if isinstance(acts, str) else acts if isinstance(acts, list) else []
    options = model.get("options") if isinstance(model.get("options"), dict) else {}
    named = [model.get("activation"), *acts, *options]
    return list(dict.fromkeys(n.strip() for n in named if isinstance(n, str) and activations.is_import_path(n)))


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain data for YAML and JSON: tuples become lists."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(cfg))


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def reference() -> list[tuple[str, str, str]]:
    """(key, default, description) for every field: the README's config reference is made from this."""
    rows = []
    for section in dataclasses.fields(Config):
        hint = section.type if not isinstance(section.type, str) else typing.get_type_hints(Config)[section.name]
        if dataclasses.is_dataclass(hint):
            for f in dataclasses.fields(hint):
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                rows.append((f"{section.name}.{f.name}", repr(default), f.metadata.get("doc", "")))
        else:
            rows.append((section.name, repr(section.default), section.metadata.get("doc", "")))
    return rows
