"""The activation registry: name -> how to build the ``torch.nn`` module, as plain data.

Every entry is element-wise except ``softmax`` (over the feature dimension, as in the articles).
``all`` in a comparison means every built-in entry below, in this order. Left out on purpose:

- ``RReLU``: samples its negative slope from the global RNG while training, so a run could not be
  replayed from actlab's seeds;
- ``GLU`` (halves the width), ``Softmin``, ``LogSoftmax`` and ``Softmax2d`` (vector-wise, like softmax,
  which stands for them), ``Threshold`` (needs two arbitrary numbers), ``MultiheadAttention``.

Any of them, or your own module, can still be named by import path: ``mypkg.acts:MyAct``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


class ActivationError(ValueError):
    """An activation name or option that cannot be resolved."""


@dataclass(frozen=True)
class ActivationSpec:
    """One registry entry."""

    name: str
    factory: Callable[..., nn.Module]
    description: str
    aliases: tuple[str, ...] = ()
    elementwise: bool = True  # False: mixes units (softmax); dead/saturation measures do not apply
    fixed: Mapping[str, Any] = field(default_factory=dict)  # constructor arguments users cannot set
    tags: tuple[str, ...] = ()  # "linear", "saturating", "relu-like" (can die), "leaky": read by the report

    def options(self) -> dict[str, Any]:
        """The constructor options a config may set, with their defaults."""
        try:
            params = inspect.signature(self.factory).parameters.values()
        except (TypeError, ValueError):  # builtins without a signature
            return {}
        return {
            p.name: p.default
            for p in params
            if p.name not in ("inplace", "self", *self.fixed)
            and p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def build(self, options: Mapping[str, Any] | None = None) -> nn.Module:
        """A new module with ``options`` applied (unknown or ill-typed options raise ActivationError)."""
        kwargs = dict(self.fixed)
        kwargs.update(check_options(self, options or {}))
        return self.factory(**kwargs)


def _prelu(init: float = 0.25) -> nn.Module:
    # One learned slope per layer (nn.PReLU's default), so every layer gets its own instance.
    return nn.PReLU(num_parameters=1, init=init)


BUILTIN: tuple[ActivationSpec, ...] = (
    ActivationSpec("identity", nn.Identity, "f(x) = x: no non-linearity, the net collapses to one linear map",
                   aliases=("linear", "none"), tags=("linear",)),
    ActivationSpec("sigmoid", nn.Sigmoid, "1/(1+e^-x), range (0, 1); saturates: vanishing gradients",
                   tags=("saturating",)),
    ActivationSpec("tanh", nn.Tanh, "(e^x-e^-x)/(e^x+e^-x), range (-1, 1), zero-centred; saturates",
                   tags=("saturating",)),
    ActivationSpec("relu", nn.ReLU, "max(0, x): cheap and sparse; units can die", tags=("relu-like",)),
    ActivationSpec("leaky_relu", nn.LeakyReLU, "x if x >= 0 else slope*x (slope 0.01): ReLU that cannot die",
                   aliases=("lrelu", "leakyrelu"), tags=("leaky",)),
    ActivationSpec("prelu", _prelu, "leaky ReLU whose slope is learned (one per layer, starts at 0.25)",
                   tags=("leaky",)),
    ActivationSpec("elu", nn.ELU, "x if x >= 0 else alpha*(e^x-1): smooth negative part", tags=("leaky",)),
    ActivationSpec("selu", nn.SELU, "scaled ELU (lambda 1.0507, alpha 1.6733): self-normalising",
                   tags=("leaky",)),
    ActivationSpec("celu", nn.CELU, "continuously differentiable ELU: max(0,x)+min(0, alpha*(e^(x/alpha)-1))",
                   tags=("leaky",)),
    ActivationSpec("gelu", nn.GELU, "x*Phi(x): Gaussian-weighted ReLU (transformers' default)"),
    ActivationSpec("silu", nn.SiLU, "x*sigmoid(x), a.k.a. swish (beta 1): between ReLU and sigmoid",
                   aliases=("swish",)),
    ActivationSpec("mish", nn.Mish, "x*tanh(softplus(x)): smooth, non-monotonic"),
    ActivationSpec("softplus", nn.Softplus, "log(1+e^(beta*x))/beta: a smooth ReLU"),
    ActivationSpec("softsign", nn.Softsign, "x/(1+|x|), range (-1, 1); saturates slowly", tags=("saturating",)),
    ActivationSpec("relu6", nn.ReLU6, "min(max(0, x), 6): ReLU capped at 6; units can die",
                   tags=("relu-like",)),
    ActivationSpec("hardtanh", nn.Hardtanh, "x clipped to [-1, 1]: piecewise-linear tanh; zero gradient outside",
                   tags=("saturating",)),
    ActivationSpec("hardsigmoid", nn.Hardsigmoid, "x/6+1/2 clipped to [0, 1]: piecewise-linear sigmoid",
                   tags=("saturating",)),
    ActivationSpec("hardswish", nn.Hardswish, "x*hardsigmoid(x): piecewise swish (MobileNetV3)"),
    ActivationSpec("logsigmoid", nn.LogSigmoid, "log(sigmoid(x)), range (-inf, 0)"),
    ActivationSpec("tanhshrink", nn.Tanhshrink, "x - tanh(x): near-cubic at 0, linear far out"),
    ActivationSpec("softshrink", nn.Softshrink, "x-lambd, 0 or x+lambd (lambd 0.5): zero band around 0"),
    ActivationSpec("hardshrink", nn.Hardshrink, "x outside [-lambd, lambd], else 0 (lambd 0.5)"),
    ActivationSpec("softmax", nn.Softmax, "e^z_j / sum_k e^z_k over the units of a layer: vector-wise",
                   elementwise=False, fixed={"dim": -1}),
)


def _index() -> dict[str, ActivationSpec]:
    table: dict[str, ActivationSpec] = {}
    for spec in BUILTIN:
        for key in (spec.name, *spec.aliases):
            table[key] = spec
    return table


def names() -> list[str]:
    """Canonical names of the built-in entries: what ``all`` expands to."""
    return [spec.name for spec in BUILTIN]


def resolve(name: str, *, imports: bool = True) -> ActivationSpec:
    """The spec for a built-in name or alias, or for an import path ``module:Attribute``.

    ``imports=False`` (reading a folder someone else wrote): an import path is an ActivationError instead
    of an import, because importing runs the module's code.
    """
    key = name.strip().lower().replace("-", "_")
    table = _index()
    if key in table:
        return table[key]
    if ":" in name:
        path = _checked_import_path(name)
        if not imports:
            raise ActivationError(f"activation '{path}' is an import path; it is not imported here")
        return _from_import_path(path)
    close = difflib.get_close_matches(key, list(table), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run `actlab activations` for the list"
    raise ActivationError(
        f"unknown activation '{name}': {hint} (or give an import path such as mypkg.acts:MyAct)"
    )


def canonical(name: str) -> str:
    """The name a result is filed under: the registry name, or the import path as given (not imported)."""
    key = name.strip().lower().replace("-", "_")
    if key not in _index() and ":" in name:
        return _checked_import_path(name)
    return resolve(name).name


def is_import_path(name: str) -> bool:
    """Does ``name`` name user code (``module:Attribute``) rather than a registry entry?"""
    return name.strip().lower().replace("-", "_") not in _index() and ":" in name


def is_name(name: str) -> bool:
    """Is ``name`` a canonical registry name or a well-formed import path? (Checked without importing.)"""
    return name in names() or IMPORT_PATH.fullmatch(name) is not None


IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def _checked_import_path(name: str) -> str:
    path = name.strip()
    if not IMPORT_PATH.fullmatch(path):
        raise ActivationError(
            f"'{path}' is not an import path: write module.submodule:Name (an absolute module, then one "
            "class or function name), e.g. mypkg.acts:MyAct")
    return path


def _guarded(what: str, call: Callable[[], Any]) -> Any:
    """``call()`` with any failure of user code, SystemExit and the like included, as an ActivationError."""
    try:
        return call()
    except KeyboardInterrupt:  # the user's own Ctrl-C, not the module's doing
        raise
    except BaseException as exc:  # noqa: BLE001  user code may raise anything, SystemExit included
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ActivationError(f"{what}: {detail}".splitlines()[0]) from None


def _from_import_path(path: str) -> ActivationSpec:
    module_name, _, attr = path.partition(":")
    module = _guarded(f"cannot import activation '{path}'", lambda: importlib.import_module(module_name))
    if not hasattr(module, attr):
        raise ActivationError(f"cannot import activation '{path}': module '{module_name}' has no '{attr}'")
    obj = getattr(module, attr)
    if not callable(obj):
        raise ActivationError(f"activation '{path}' is not a class or function that builds an nn.Module")
    spec = ActivationSpec(path, obj, (inspect.getdoc(obj) or "user activation").splitlines()[0])
    built = _guarded(f"activation '{path}' could not be built without arguments", spec.build)
    if not isinstance(built, nn.Module):
        raise ActivationError(f"activation '{path}' returned {type(built).__name__}, not an nn.Module")
    return spec


def probe(spec: ActivationSpec, options: Mapping[str, Any], widths: Sequence[int]) -> None:
    """Build ``spec`` and run it on a tiny (2, w) input for each hidden width: it must keep the shape.

    Catches a user activation that changes the layer width or fails in forward before anything is written.
    """
    module = _guarded(f"activation '{spec.name}' could not be built", lambda: spec.build(options))
    for width in sorted(set(widths)):
        x = torch.linspace(-2.0, 2.0, 2 * width).view(2, width)
        with torch.no_grad():
            y = _guarded(f"activation '{spec.name}' failed on a (2, {width}) input", lambda x=x: module(x))
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ActivationError(f"activation '{spec.name}' turned a (2, {width}) input into {got}; an "
                                  "activation must keep the layer's shape")


def check_options(spec: ActivationSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against the constructor's keyword arguments and the types of their defaults."""
    allowed = spec.options()
    checked: dict[str, Any] = {}
    for key, value in options.items():
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ActivationError(f"{spec.name} has no option '{key}' (its options: {known})")
        default = allowed[key]
        if isinstance(default, bool) or default is None:
            ok = True if default is None else isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = type(default)(value) if ok and isinstance(default, float) else value
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ActivationError(
                f"{spec.name} option '{key}' must be {type(default).__name__} (got {value!r})"
            )
        checked[key] = value
    return checked
