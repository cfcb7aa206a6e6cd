"""Conversion and validation of metric inputs (numpy arrays or torch tensors, (C, H, W), DN)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from binsharp.errors import BinsharpError
from binsharp.protocol._arrays import as_float_image


def as_image(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 (C, H, W) numpy array; :class:`BinsharpError` on wrong ndim, NaN/inf or dtype."""
    if x is None:
        raise BinsharpError(f"{name}: missing image")
    arr = as_float_image(x, name, min_ndim=1)
    if arr.ndim != 3:
        raise BinsharpError(f"{name}: expected an array of shape (C, H, W), got shape {arr.shape}")
    return arr


def same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise BinsharpError(f"shape mismatch: {name_a} {a.shape} vs {name_b} {b.shape}")


def validated(*names: str, same: bool = True):
    """Decorator for public index functions: convert the leading positional arrays named ``names``
    with :func:`as_image` (numpy or torch, (C, H, W), finite) and, if ``same``, require equal shapes of the
    first two. The undecorated function stays available as ``fn.__wrapped__`` for internal callers."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if len(args) < len(names):
                raise BinsharpError(f"{fn.__name__}: expected arrays {', '.join(names)}")
            arrays = [as_image(a, n) for a, n in zip(args, names, strict=False)]
            if same and len(arrays) >= 2:
                same_shape(arrays[0], arrays[1], names[0], names[1])
            return fn(*arrays, *args[len(names) :], **kwargs)

        return wrapper

    return deco
