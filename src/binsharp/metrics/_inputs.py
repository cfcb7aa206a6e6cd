"""Conversion and validation of metric inputs (numpy arrays or torch tensors, (C, H, W), DN)."""

from __future__ import annotations

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
