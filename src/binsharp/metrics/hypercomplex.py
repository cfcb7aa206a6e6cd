"""Q2n (Q4, Q8, ...): the hypercomplex quality index of the toolbox (``q2n``/``onions_quality``).

Steps, as in the reference MATLAB code:

1. both images mirror-padded (symmetric, edge included) at the bottom/right to a multiple of the block;
2. both cast to MATLAB ``uint16`` (round half away from zero, negatives -> 0, saturation at 65535);
3. zero bands appended up to a power of two;
4. on every distinct ``block x block`` tile: each reference band normalised by its mean and std (N-1;
   std 0 -> eps), the fused band normalised with the *reference* statistics (only shifted by +1 when the
   reference mean is 0), the fused bands 2..n conjugated; the quality hypercomplex number
   ``(N/(N-1)) (E[x y] - E[x] E[y]) * mean_bias * 2/termine3`` with the Cayley-Dickson product of
   ``onion_mult``; its norm is the tile value;
5. Q2n = mean over tiles.

The product is evaluated through its multiplication table, for all tiles at once: the mean over a tile of
``x * y`` is the table contracted with the cross-moment matrix ``E[x_i y_j]``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from binsharp.metrics._inputs import validated

_EPS = np.finfo(np.float64).eps


def _conj(v: np.ndarray) -> np.ndarray:
    out = -v
    out[..., 0] = v[..., 0]
    return out


def onion_mult(o1: np.ndarray, o2: np.ndarray) -> np.ndarray:
    """Reference hypercomplex product (``onion_mult.m``), components on the last axis (a power of 2)."""
    n = o1.shape[-1]
    if n == 1:
        return o1 * o2
    h = n // 2
    a, b = o1[..., :h], _conj(o1[..., h:])
    c, d = o2[..., :h], _conj(o2[..., h:])
    if n == 2:
        return np.concatenate([a * c - d * b, a * d + c * b], axis=-1)
    return np.concatenate(
        [onion_mult(a, c) - onion_mult(d, _conj(b)), onion_mult(_conj(a), d) + onion_mult(c, b)], axis=-1
    )


@lru_cache(maxsize=8)
def onion_table(n: int) -> np.ndarray:
    """(n, n, n) table T with ``onion_mult(x, y)[k] = sum_ij T[i, j, k] x[i] y[j]`` (entries 0, +-1)."""
    e = np.eye(n)
    left = np.broadcast_to(e[:, None, :], (n, n, n)).copy()
    right = np.broadcast_to(e[None, :, :], (n, n, n)).copy()
    t = onion_mult(left, right)
    t.setflags(write=False)
    return t


def matlab_uint16(x: np.ndarray) -> np.ndarray:
    """MATLAB ``uint16(x)`` as float64: round half away from zero, negatives -> 0, saturate at 65535."""
    f = np.floor(x)
    f += (x - f) >= 0.5
    return np.clip(f, 0, 65535, out=f)


def _tiles(x: np.ndarray, block: int) -> np.ndarray:
    """(C, H, W) with H, W multiples of ``block`` -> (n_tiles, C, block*block), tiles in row-major order."""
    c, h, w = x.shape
    t = x.reshape(c, h // block, block, w // block, block).transpose(1, 3, 0, 2, 4)
    return t.reshape(-1, c, block * block)


@validated("gt", "fused")
def q2n_map(gt: np.ndarray, fused: np.ndarray, block: int = 32) -> np.ndarray:
    """Per-tile Q2n values, (ceil(H/block), ceil(W/block)).

    Args:
        gt: (C, H, W) reference in DN.
        fused: (C, H, W) image under test in DN.
        block: tile size (tiles are distinct: shift = block).
    """
    c, h, w = gt.shape
    ny, nx = -(-h // block), -(-w // block)
    ph, pw = ny * block - h, nx * block - w
    if ph or pw:
        pad = ((0, 0), (0, ph), (0, pw))
        gt = np.pad(gt, pad, mode="symmetric")
        fused = np.pad(fused, pad, mode="symmetric")
    gt = matlab_uint16(gt)
    fused = matlab_uint16(fused)
    n3 = 1 << (c - 1).bit_length()
    if n3 != c:
        z = np.zeros((n3 - c, *gt.shape[1:]))
        gt = np.concatenate([gt, z])
        fused = np.concatenate([fused, z])

    x = _tiles(gt, block)  # (T, n3, P)
    y = _tiles(fused, block)
    npix = block * block
    k = npix / (npix - 1)

    s = x.mean(axis=-1, keepdims=True)
    t = x.std(axis=-1, ddof=1, keepdims=True)
    t = np.where(t == 0, _EPS, t)
    d1 = (x - s) / t + 1
    d2 = (y - s) / t + 1
    zero_mean = s[..., 0] == 0
    if np.any(zero_mean):  # toolbox rule: a reference band with zero mean only shifts the fused band
        d2[zero_mean] = y[zero_mean] - s[zero_mean] + 1
    d2[:, 1:] *= -1

    m1 = d1.mean(axis=-1)  # (T, n3)
    m2 = d2.mean(axis=-1)
    mod_q1m2 = (m1**2).sum(axis=-1)
    mod_q2m2 = (m2**2).sum(axis=-1)
    mod_q1m = np.sqrt(mod_q1m2)
    mod_q2m = np.sqrt(mod_q2m2)
    int1 = k * (np.sqrt((d1**2).sum(axis=1)) ** 2).mean(axis=-1)
    int2 = k * (np.sqrt((d2**2).sum(axis=1)) ** 2).mean(axis=-1)
    termine2 = mod_q1m * mod_q2m
    termine4 = mod_q1m**2 + mod_q2m**2
    termine3 = int1 + int2 - k * (mod_q1m**2 + mod_q2m**2)
    mean_bias = 2 * termine2 / termine4

    table = onion_table(n3)
    cross = np.matmul(d1, d2.transpose(0, 2, 1)) / npix  # E[x_i y_j] per tile
    qv = k * np.einsum("tij,ijk->tk", cross, table)
    qm = np.einsum("ti,tj,ijk->tk", m1, m2, table)
    flat = termine3 == 0
    cbm = 2 / np.where(flat, 1.0, termine3)
    q = (qv - k * qm) * (mean_bias * cbm)[:, None]
    if np.any(flat):
        q[flat] = 0
        q[flat, -1] = mean_bias[flat]
    return np.sqrt((q**2).sum(axis=-1)).reshape(ny, nx)


@validated("gt", "fused")
def q2n(gt: np.ndarray, fused: np.ndarray, block: int = 32) -> float:
    """Q2n index (mean of :func:`q2n_map`); (C, H, W) arrays in DN, ``gt`` the reference."""
    return float(q2n_map.__wrapped__(gt, fused, block).mean())
