"""MATLAB-compatible ``imresize`` (bicubic with antialiasing, nearest) and toolbox-phase decimation.

``imresize`` reproduces MATLAB's algorithm: for each output index ``x`` (1-based) the input coordinate is
``u = x/scale + 0.5*(1 - 1/scale)``; the cubic kernel (a = -0.5) is stretched by ``1/scale`` and scaled by
``scale`` when shrinking with antialiasing (the default for bicubic, not for nearest); weights are
normalised to unit sum per output pixel; out-of-range indices are mirror-reflected (symmetric borders).
Dimensions are resized one at a time, the most reduced first (rows first on ties), as MATLAB does.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from binsharp.errors import BinsharpError
from binsharp.protocol._arrays import as_float_image, check_ratio


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


def _box(x: np.ndarray) -> np.ndarray:
    return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


_KERNELS = {"bicubic": (_cubic, 4.0), "nearest": (_box, 1.0)}


@lru_cache(maxsize=64)
def contributions(
    in_len: int, out_len: int, scale: float, method: str = "bicubic"
) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``contributions``: weights (out_len, P) and 0-based input indices (out_len, P) of one dimension.

    Indices are already mirror-reflected into ``0 .. in_len-1``; columns whose weights are all zero are
    dropped, as in MATLAB.
    """
    kernel, width = _KERNELS[method]
    antialias = method != "nearest"
    if scale < 1 and antialias:

        def h(x):
            return scale * kernel(scale * x)

        width = width / scale
    else:
        h = kernel
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    p = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]
    w = h(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(1, in_len + 1), np.arange(in_len, 0, -1)])
    idx = aux[np.mod(idx.astype(np.int64) - 1, len(aux))] - 1
    keep = np.any(w != 0, axis=0)
    w, idx = np.ascontiguousarray(w[:, keep]), np.ascontiguousarray(idx[:, keep])
    w.setflags(write=False)
    idx.setflags(write=False)
    return w, idx


def resize_matrix(in_len: int, out_len: int, scale: float, method: str = "bicubic") -> np.ndarray:
    """Dense (out_len, in_len) matrix of MATLAB ``imresize`` weights along one dimension."""
    w, idx = contributions(in_len, out_len, scale, method)
    m = np.zeros((out_len, in_len))
    np.add.at(m, (np.repeat(np.arange(out_len), w.shape[1]), idx.ravel()), w.ravel())
    return m


_DENSE_MAX = 2048 * 2048  # up to this matrix size the resize runs as a dense matrix product


def _resize_axis(x: np.ndarray, axis: int, out_len: int, scale: float, method: str) -> np.ndarray:
    """Resize ``x`` along ``axis`` (-2 or -1)."""
    in_len = x.shape[axis]
    if in_len * out_len <= _DENSE_MAX:
        m = _dense_matrix(in_len, out_len, scale, method)
        return np.matmul(m, x) if axis == -2 else np.matmul(x, m.T)
    w, idx = contributions(in_len, out_len, scale, method)
    xs = np.moveaxis(x, axis, -1)
    out = np.zeros((*xs.shape[:-1], out_len))
    for j in range(w.shape[1]):  # one tap at a time: bounded memory for large scenes
        out += xs[..., idx[:, j]] * w[:, j]
    return np.moveaxis(out, -1, axis)


@lru_cache(maxsize=16)
def _dense_matrix(in_len: int, out_len: int, scale: float, method: str) -> np.ndarray:
    m = resize_matrix(in_len, out_len, scale, method)
    m.setflags(write=False)
    return m


def imresize(img: np.ndarray, scale: float, method: str = "bicubic") -> np.ndarray:
    """MATLAB ``imresize(img, scale, method)`` on the last two axes (antialiased bicubic by default).

    Args:
        img: (C, H, W) (or (H, W), or (N, C, H, W)); numpy or torch; any units (DN in the protocol).
        scale: resize factor (0.25 shrinks by 4); output size ``ceil(H*scale) x ceil(W*scale)``.
        method: ``"bicubic"`` (a = -0.5, antialiased when shrinking) or ``"nearest"`` (no antialiasing).

    Returns:
        float64 array (..., ceil(H*scale), ceil(W*scale)), same units.
    """
    if method not in _KERNELS:
        raise BinsharpError(f"imresize: unknown method {method!r} (use 'bicubic' or 'nearest')")
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise BinsharpError(f"imresize: scale must be a number, got {scale!r}") from None
    if not (scale > 0 and math.isfinite(scale)):
        raise BinsharpError(f"imresize: scale must be positive, got {scale}")
    x = as_float_image(img, "imresize input")
    h, w = x.shape[-2:]
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    # MATLAB resizes the most-reduced dimension first; both scales are equal here, so rows first.
    out = _resize_axis(x, -2, oh, scale, method)
    return _resize_axis(out, -1, ow, scale, method)


def decimate(img: np.ndarray, ratio: int = 4) -> np.ndarray:
    """Nearest-neighbour decimation with the toolbox phase: ``imresize(img, 1/ratio, 'nearest')``.

    Keeps 0-based rows and columns ``ratio//2, ratio//2 + ratio, ...`` (``x[..., 2::4, 2::4]`` for ratio 4).

    Args:
        img: (C, H, W) (or (H, W), or (N, C, H, W)) with H and W multiples of ``ratio``; numpy or torch.
        ratio: integer decimation factor.

    Returns:
        float64 array (..., H/ratio, W/ratio), same units.
    """
    r = check_ratio(ratio)
    x = as_float_image(img, "decimate input")
    h, w = x.shape[-2:]
    if h % r or w % r:
        raise BinsharpError(f"decimate: image size {h}x{w} is not a multiple of the ratio {r}")
    return np.ascontiguousarray(x[..., r // 2 :: r, r // 2 :: r])
