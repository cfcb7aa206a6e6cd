"""Bit-packed inference engine: compiled XNOR-popcount kernels, the ``.bsp`` model format and its runtime.

* :mod:`binsharp.deploy.kernels`: packing and binary/float convolution kernels (numpy in and out);
  ``cpu_features()`` reports the CPU flags the kernels see and the dispatch path they use (override with the
  ``path`` argument of the kernel functions or the environment variable ``BINSHARP_KERNEL_PATH``).
* :mod:`binsharp.deploy.bsp`: the versioned, checksummed ``.bsp`` file format (specified in its docstring),
  float tensors stored as fp16 (default), fp32 or int8.
* :mod:`binsharp.deploy.runtime`: :class:`Engine`, which runs a ``.bsp`` graph without PyTorch.
* :mod:`binsharp.deploy.export`: ``export_model``, ``lower_model`` (PyTorch model -> ``.bsp``, uses torch).
* :mod:`binsharp.deploy.parity`: engine vs PyTorch with PyTorch's binarization decisions forced, and the
  rounding-tie flips (uses torch).

The deployment extension point, ``register_lowering`` (how a module type lowers to engine ops), lives below
the models in :mod:`binsharp.nn.lowering`; model modules register theirs next to their definitions.

A ``.bsp`` model runs as a fuser through :func:`binsharp.inference.engine_fuser`.
"""

from __future__ import annotations

from typing import Any

from binsharp.deploy.kernels import (
    PATHS,
    Packed,
    available_paths,
    binary_conv2d,
    cpu_features,
    float_conv2d,
    have_kernels,
    pack_activations,
    pack_weights,
)
from binsharp.deploy.runtime import Engine, load_engine

__all__ = [
    "PATHS",
    "Engine",
    "Packed",
    "available_paths",
    "binary_conv2d",
    "cpu_features",
    "export_model",
    "float_conv2d",
    "have_kernels",
    "load_engine",
    "lower_model",
    "pack_activations",
    "pack_weights",
]


def __getattr__(name: str) -> Any:
    # lazy: the exporter imports torch
    if name in ("export_model", "lower_model"):
        from binsharp.deploy import export

        return getattr(export, name)
    raise AttributeError(f"module 'binsharp.deploy' has no attribute {name!r}")
