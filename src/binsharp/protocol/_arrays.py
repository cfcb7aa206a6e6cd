"""Input checking shared by the protocol functions."""

from __future__ import annotations

from typing import Any

import numpy as np

from binsharp.errors import BinsharpError


def as_float_image(x: Any, name: str = "image", *, min_ndim: int = 2) -> np.ndarray:
    """Return ``x`` as a float64 numpy array with at least ``min_ndim`` dimensions (last two = H, W).

    Torch tensors are detached and moved to the CPU. Raises :class:`BinsharpError` for non-numeric data,
    too few dimensions, empty arrays or non-finite values.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise BinsharpError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise BinsharpError(f"{name}: complex values are not supported")
    if arr.ndim < min_ndim:
        raise BinsharpError(
            f"{name}: expected at least {min_ndim} dimensions (..., H, W), got shape {arr.shape}"
        )
    if arr.size == 0:
        raise BinsharpError(f"{name}: empty array of shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise BinsharpError(f"{name}: contains NaN or infinite values")
    return arr


def check_ratio(ratio: Any) -> int:
    """Validate a resolution ratio (positive integer) and return it as ``int``."""
    try:
        r = int(ratio)
    except (TypeError, ValueError):
        raise BinsharpError(f"ratio must be a positive integer, got {ratio!r}") from None
    if r != ratio or r < 1:
        raise BinsharpError(f"ratio must be a positive integer, got {ratio!r}")
    return r
