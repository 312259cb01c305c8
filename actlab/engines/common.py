"""What every engine shares: the run spec, the training settings, the result, activation groups,
mini-batch order and the engine interface. No engine is imported here (the registry is in ``__init__``)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from torch import nn

from actlab import activations, diagnostics, init, rng
from actlab.activations import ActivationSpec
from actlab.devices import resolve_device
from actlab.tasks import Dataset

if TYPE_CHECKING:
    from actlab.checkpoint import Checkpoints
    from actlab.config import Config

# Progress callback: (run-epochs just finished, the epoch's measures when a single run is training).
Progress = Callable[[int, Mapping[str, float] | None], None]

GroupKey = tuple[str, tuple[tuple[str, Any], ...]]


@dataclass(frozen=True)
class RunSpec:
    """One training run: what may differ between the runs of one stack (activation and its options, the
    seed of initial weights and shuffling, lr, the initialisation scheme and bias rule) and a caller's tag."""

    activation: str
    seed: int
    lr: float
    options: Mapping[str, Any] = field(default_factory=dict)
    init: str = "default"  # actlab.init scheme of the weights
    init_bias: str = "default"  # actlab.init bias rule
    tag: str = ""  # a caller's label, e.g. a grid point 'lr=0.003': part of run_id when set

    @property
    def run_id(self) -> str:
        """``relu/seed3``; what is not the default is part of it: ``leaky_relu[negative_slope=0.3]/seed3``,
        ``relu[init=xavier_uniform,init_bias=zero]/seed3``, ``relu/lr=0.003/seed3`` (tag)."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        inits = ",".join(f"{k}={v}" for k, v in (("init", self.init), ("init_bias", self.init_bias))
                         if v != "default")
        # options and inits in separate brackets: prelu's option 'init' must not read as the scheme
        name = f"{self.activation}{f'[{opts}]' if opts else ''}{f'[{inits}]' if inits else ''}"
        return f"{name}{f'/{self.tag}' if self.tag else ''}/seed{self.seed}"

    @property
    def group_key(self) -> GroupKey:
        """Runs with the same key use the same activation function (the batched engine groups them)."""
        return self.activation, tuple(sorted(self.options.items()))


@dataclass(frozen=True)
class TrainSettings:
    """Everything that is the same for every run of a stack. Field names are the config's ``train.*``
    keys (and ``device``): a new setting is a config field, a field here, and its use."""

    epochs: int
    batch_size: int
    shuffle: bool = False
    diagnostics: bool = True  # gradient norms and unit states; False: losses only
    diagnostics_dense: int = 10  # ...measured at the epochs of diagnostics.schedule(epochs, this); 0: every one
    optimizer: Literal["adam", "sgd"] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's
    eps: float = 1e-8  # Adam's
    momentum: float = 0.0  # SGD's
    device: str = "cpu"

    @classmethod
    def from_config(cls, cfg: Config, device: torch.device | str | None = None) -> TrainSettings:
        """The settings of ``cfg.train``; ``device`` (default: ``cfg.device``, resolved) where it trains."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "device"]
        values = {name: getattr(cfg.train, name) for name in names}
        values["betas"] = tuple(values["betas"])
        return cls(**values, device=str(device if device is not None else resolve_device(cfg.device)))

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def measures(self, epoch: int) -> bool:
        """Whether ``epoch`` (0: at initialisation) measures gradient norms and unit states (the schedule)."""
        return diagnostics.is_measured(epoch, self.epochs, self.diagnostics_dense)


@dataclass
class RunResult:
    """A finished (or diverged) run: per-epoch history and final parameters.

    ``history`` maps a measure to one value per completed epoch: train_loss (mean over the epoch's
    mini-batches, weighted by their size), last_batch_loss (what the article prints), full_loss (whole
    training set after the epoch), test_loss (held-out split, when there is one), seconds (elapsed), and
    the diagnostics of ``actlab.diagnostics`` (grad_norm_L*, dead_L*, saturated_L*: NaN at the epochs their
    schedule skips, ``TrainSettings.measures``; slope_L* for prelu, every epoch).
    """

    spec: RunSpec
    history: dict[str, list[float]]
    status: Literal["ok", "diverged"]
    diverged_epoch: int | None
    seconds: float
    engine: str
    state: dict[str, torch.Tensor]  # final state_dict of the equivalent FeedForward, on the CPU
    initial: dict[str, float] = field(default_factory=dict)  # epoch 0: full-data measures before any step

    @property
    def epochs_done(self) -> int:
        return len(self.history.get("full_loss", []))


@dataclass(frozen=True)
class Group:
    """An activation (with options) resolved once: its registry entry and one built module.

    Every engine asks a group, not the name: an import-path activation is imported once, and prelu (the
    one parametric activation the batched engine stacks) is recognised here only.
    """

    key: GroupKey
    act: ActivationSpec
    module: nn.Module  # a fresh instance; build() gives more (every hidden layer its own)

    @classmethod
    def of(cls, spec: RunSpec) -> Group:
        act = activations.resolve(spec.activation)
        return cls(spec.group_key, act, act.build(spec.options))

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.key[1])

    @property
    def is_prelu(self) -> bool:
        """A PReLU with one learned slope (the registry's prelu, or nn.PReLU by import path)."""
        return isinstance(self.module, nn.PReLU) and self.module.weight.numel() == 1

    @property
    def prelu_init(self) -> float:
        """prelu's starting slope (its option, else the module's default)."""
        return float(self.module.weight.detach()[0])

    def build(self) -> nn.Module:
        """A new module of this activation (one per hidden layer: prelu learns a slope in each)."""
        return self.act.build(self.options)


def groups_of(specs: Sequence[RunSpec]) -> dict[GroupKey, Group]:
    """Each distinct activation of ``specs`` resolved once, in first-seen order."""
    groups: dict[GroupKey, Group] = {}
    for spec in specs:
        if spec.group_key not in groups:
            groups[spec.group_key] = Group.of(spec)
    return groups


def initial_parameters(spec: RunSpec, sizes: Sequence[int], group: Group) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The run's initial (weight, bias) per linear layer: its seed, scheme and bias rule (actlab.init)."""
    return init.initial_parameters(sizes, spec.seed, spec.init, spec.init_bias, group.act.name, spec.options)


class EpochOrder:
    """A run's mini-batch row orders when shuffling: one seeded random permutation per epoch, in sequence.

    Drawn on the CPU from the run's own generator, so the order does not depend on the device, on the
    engine or on which other runs share a chunk.
    """

    def __init__(self, seed: int, n: int) -> None:
        self._gen = rng.generator(seed, "shuffle")
        self._n = n

    def next(self) -> torch.Tensor:
        """The next epoch's order: a permutation of range(n), (n,) int64."""
        return torch.rand(self._n, generator=self._gen).argsort(stable=True)

    def get_state(self) -> torch.Tensor:
        """The generator's state (a checkpoint restores the order from here)."""
        return self._gen.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        # a contiguous copy of its own: Generator.set_state on a view into a stacked tensor (a row at a
        # non-zero offset) crashes the process
        self._gen.set_state(state.detach().clone().contiguous())


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) of every mini-batch: X[i:i+b] in order, the last one possibly shorter."""
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


class Engine(Protocol):
    """What ``actlab.engines.ENGINES`` holds: train every spec, yield results a chunk at a time."""

    def __call__(
        self, specs: Sequence[RunSpec], data: Dataset, sizes: Sequence[int], settings: TrainSettings, *,
        executor: str, chunk_size: int, workers: int, progress: Progress | None,
        executor_options: Mapping[str, Any], checkpoints: Checkpoints | None = None,
    ) -> Iterator[list[RunResult]]: ...


def without_grad(method: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.no_grad()`` around a method the training calls every step, entered only where grad mode is on:
    the epoch loop turns it off once per epoch, and entering the context costs 1.4 us of Python (two objects and
    four calls), twice a step; the check alone 0.2 us."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():
            with torch.no_grad():
                return method(*args, **kwargs)
        return method(*args, **kwargs)

    return call


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch at one intra-op thread inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
