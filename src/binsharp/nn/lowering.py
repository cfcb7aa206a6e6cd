"""Deployment extension point: how a module type lowers to the ops of the packed engine.

Each module type declares its lowering next to itself, as it declares its complexity counter
(:func:`binsharp.nn.complexity.register_counter`)::

    def _lower_dynamic_srm(lw: Lowerer, m: DynamicSRM, ins: list[str]) -> list[str]:
        s = lw.b.op("flatten", lw.b.op("mean_hw", ins))[0]
        ...
        return outs

    register_lowering(DynamicSRM, _lower_dynamic_srm)

A lowering ``fn(lw, module, ins) -> outs`` maps the names of the module's input tensors to the names of its
outputs, appending engine ops (:mod:`binsharp.deploy.runtime`) with ``lw.b.op(kind, ins, nout, attrs,
params)`` (params: numpy arrays, see :func:`as_array`) and lowering child modules with ``lw.emit(child,
ins, name)``; ``lw`` is the :class:`binsharp.deploy.export.Lowerer` at work. A module without a lowering
is traced with :mod:`torch.fx` (its children lowered in turn), so only leaf computations and modules whose
forward pass has shape-dependent control flow need one. The lowerings of :mod:`torch.nn` and
:mod:`binsharp.nn` modules are registered by :mod:`binsharp.deploy.export`; activation quantizers declare
how they binarize with ``export_form`` (:class:`binsharp.nn.ActivationQuantizer`).

It lives beside the complexity counters, below the models, and imports neither torch nor the exporter, so
model modules register their lowerings at import without loading the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from binsharp.errors import BinsharpError

__all__ = ["GraphBuilder", "Lowerer", "LoweringFn", "as_array", "lowering_for", "register_lowering"]


class GraphBuilder(Protocol):
    """What a lowering appends engine ops through (:class:`binsharp.deploy.export.Builder`)."""

    def op(
        self,
        kind: str,
        ins: list[str],
        nout: int = 1,
        attrs: dict | None = None,
        params: dict[str, np.ndarray] | None = None,
    ) -> list[str]:
        """Append op ``kind`` on the tensors named ``ins``; returns the names of its ``nout`` outputs."""
        ...


class Lowerer(Protocol):
    """The lowerer at work, as a lowering sees it (:class:`binsharp.deploy.export.Lowerer`)."""

    b: GraphBuilder

    def emit(self, module: Any, ins: list[str], name: str = "") -> list[str]:
        """Lower a child module on the tensors named ``ins``; returns its output names."""
        ...


#: ``fn(lowerer, module, input names) -> output names``
LoweringFn = Callable[[Lowerer, Any, list[str]], list[str]]

_LOWERINGS: dict[type, LoweringFn] = {}


def register_lowering(module_type: type, fn: LoweringFn) -> None:
    """Register (or replace) the lowering of a module type (applies to its subclasses too)."""
    if not isinstance(module_type, type):
        raise BinsharpError(f"register_lowering needs a module class, got {module_type!r}")
    _LOWERINGS[module_type] = fn


def lowering_for(module: object) -> LoweringFn | None:
    """The lowering registered for ``module``'s type or its nearest base class, else ``None``."""
    for cls in type(module).__mro__:
        fn = _LOWERINGS.get(cls)
        if fn is not None:
            return fn
    return None


def as_array(t: Any) -> np.ndarray:
    """A tensor (parameter, buffer) as a C-contiguous float32 numpy array, detached."""
    return np.ascontiguousarray(t.detach().cpu().float().numpy())
