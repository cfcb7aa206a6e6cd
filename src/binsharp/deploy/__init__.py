"""Bit-packed inference engine: compiled XNOR-popcount kernels, the ``.bsp`` model format and its runtime.

``cpu_features()`` reports the CPU flags the kernels see and the dispatch path they use (override with the
``path`` argument of the kernel functions or the environment variable ``BINSHARP_KERNEL_PATH``).
"""

from __future__ import annotations

from binsharp.deploy.kernels import (
    PATHS,
    Packed,
    available_paths,
    binary_conv2d,
    cpu_features,
    have_kernels,
    pack_activations,
    pack_weights,
)

__all__ = [
    "PATHS",
    "Packed",
    "available_paths",
    "binary_conv2d",
    "cpu_features",
    "have_kernels",
    "pack_activations",
    "pack_weights",
]
