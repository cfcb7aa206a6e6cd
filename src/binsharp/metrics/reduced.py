"""Reduced-resolution quality indexes (toolbox ``indexes_evaluation``) plus PSNR and SSIM.

All functions take (C, H, W) float64 arrays in DN; ``gt`` is the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import correlate1d, uniform_filter1d

from binsharp.errors import BinsharpError
from binsharp.metrics._inputs import as_image, same_shape, validated
from binsharp.metrics.hypercomplex import q2n

#: Window of the toolbox ``Q`` (``img_qi(..., 32)``), independent of the Q2n block size.
Q_AVG_WINDOW = 32


def _box_sums(a: np.ndarray, n: int) -> np.ndarray:
    """Sums over every n x n window ("valid"), (..., H-n+1, W-n+1), by separable running sums.

    Exact for integer-valued input (running sums of integers; the 1/n scaling of the mean filter is undone
    exactly when n is a power of two).
    """
    lo, hi = n // 2, n - 1 - n // 2  # window of output i: i - n//2 .. i + (n-1) - n//2
    r = uniform_filter1d(a, n, axis=-1)[..., lo : a.shape[-1] - hi]
    r = uniform_filter1d(r, n, axis=-2)[..., lo : a.shape[-2] - hi, :]
    r *= n * n
    return r


@validated("gt", "fused")
def q_avg(gt: np.ndarray, fused: np.ndarray, block: int = 32) -> float:
    """Toolbox ``Q``: UIQI (``img_qi``) per band on every ``block x block`` window (stride 1), averaged.

    Flat-window rules of ``img_qi``: where ``var_x + var_y == 0`` the value is ``2 mx my / (mx^2 + my^2)``
    (1 if both means are 0 as well). Window sums are computed from per-band centred data (exact for
    integer-valued DN), so covariance terms do not lose precision to large means.
    """
    n = block * block
    c1 = np.round(gt.mean(axis=(-2, -1), keepdims=True))
    c2 = np.round(fused.mean(axis=(-2, -1), keepdims=True))
    x = gt - c1
    y = fused - c2
    sx, sy, sxx, syy, sxy = _box_sums(np.stack([x, y, x * x, y * y, x * y]), block)
    s1 = sx + n * c1  # window sums of the original data
    s2 = sy + n * c2
    sum_mul = s1 * s2
    sq_sum_mul = s1 * s1 + s2 * s2
    numerator = 4 * (n * sxy - sx * sy) * sum_mul
    denominator1 = n * (sxx + syy) - (sx * sx + sy * sy)
    denominator = denominator1 * sq_sum_mul
    qmap = np.ones_like(denominator)
    flat = (denominator1 == 0) & (sq_sum_mul != 0)
    qmap = np.where(flat, 2 * sum_mul / np.where(flat, sq_sum_mul, 1.0), qmap)
    nz = denominator != 0
    qmap = np.where(nz, numerator / np.where(nz, denominator, 1.0), qmap)
    return float(qmap.mean(axis=(-2, -1)).mean())


@validated("gt", "fused")
def sam(gt: np.ndarray, fused: np.ndarray) -> float:
    """Spectral angle mapper in degrees: mean per-pixel angle; pixels with a zero norm product excluded."""
    dot = (gt * fused).sum(axis=0)
    norm = np.sqrt((gt * gt).sum(axis=0) * (fused * fused).sum(axis=0))
    keep = norm != 0
    if not np.any(keep):
        return 0.0
    cos = np.clip(dot[keep] / norm[keep], -1.0, 1.0)
    return float(np.arccos(cos).sum() / keep.sum() * 180 / np.pi)


@validated("gt", "fused")
def ergas(gt: np.ndarray, fused: np.ndarray, ratio: int = 4) -> float:
    """ERGAS: ``100/ratio * sqrt(mean_b(MSE_b / mean(gt_b)^2))``."""
    mse = ((gt - fused) ** 2).mean(axis=(-2, -1))
    mu = gt.mean(axis=(-2, -1))
    return float(100 / ratio * np.sqrt((mse / mu**2).mean()))


def _sobel_magnitude(x: np.ndarray) -> np.ndarray:
    """Toolbox ``SCC`` gradient: Sobel (and transpose) on ``x[:, 1:-1, 1:-1]``, zero padding."""
    p = np.pad(x[:, 1:-1, 1:-1], ((0, 0), (1, 1), (1, 1)))
    smooth_w = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]  # [1 2 1] along W
    gy = smooth_w[:, :-2] - smooth_w[:, 2:]  # [1 0 -1] along H
    smooth_h = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]
    gx = smooth_h[:, :, :-2] - smooth_h[:, :, 2:]
    return np.sqrt(gy * gy + gx * gx)


@validated("gt", "fused")
def scc(gt: np.ndarray, fused: np.ndarray) -> float:
    """Spatial correlation coefficient (toolbox ``SCC``): one cosine over all Sobel magnitudes."""
    a = _sobel_magnitude(fused)
    b = _sobel_magnitude(gt)
    return float((a * b).sum() / np.sqrt((a * a).sum()) / np.sqrt((b * b).sum()))


@validated("gt", "fused")
def psnr(gt: np.ndarray, fused: np.ndarray, bits: int = 11) -> float:
    """PSNR in dB (not in the toolbox; the usual Python convention).

    Both images divided by ``2**bits - 1`` and clipped to [0, 1]; per band ``10 log10(1 / MSE)``;
    mean over bands (``inf`` for a band with zero error).
    """
    peak = 2.0**bits - 1
    a = np.clip(gt / peak, 0, 1)
    b = np.clip(fused / peak, 0, 1)
    mse = ((a - b) ** 2).mean(axis=(-2, -1))
    with np.errstate(divide="ignore"):
        return float(np.mean(10 * np.log10(1.0 / mse)))


_SSIM_WIN = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
_SSIM_WIN /= _SSIM_WIN.sum()


@validated("gt", "fused")
def ssim(gt: np.ndarray, fused: np.ndarray, bits: int = 11) -> float:
    """SSIM (Wang et al. 2004; not in the toolbox), averaged over bands.

    Data divided by ``2**bits - 1`` and clipped to [0, 1] (dynamic range 1); 11 x 11 Gaussian window,
    sigma 1.5, unit sum; K1 = 0.01, K2 = 0.03; population statistics; mean of the SSIM map over the
    "valid" window positions. Equals ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1)`` per band.
    """
    peak = 2.0**bits - 1
    a = np.clip(gt / peak, 0, 1)
    b = np.clip(fused / peak, 0, 1)
    if min(a.shape[-2:]) < 11:
        raise BinsharpError(f"SSIM needs images of at least 11 x 11 pixels, got {a.shape[-2:]}")
    stack = np.stack([a, b, a * a, b * b, a * b])

    def filt(v):  # "valid" separable Gaussian filtering
        v = correlate1d(v, _SSIM_WIN, axis=-1, mode="constant")[..., 5:-5]
        return correlate1d(v, _SSIM_WIN, axis=-2, mode="constant")[..., 5:-5, :]

    mu1, mu2, e11, e22, e12 = filt(stack)
    c1, c2 = 0.01**2, 0.03**2
    s11, s22, s12 = e11 - mu1 * mu1, e22 - mu2 * mu2, e12 - mu1 * mu2
    smap = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 * mu1 + mu2 * mu2 + c1) * (s11 + s22 + c2))
    return float(smap.mean(axis=(-2, -1)).mean())


def min_image_size(block: int = 32, dim_cut: int = 21) -> int:
    """Smallest image side the reduced-resolution indexes accept with ``block`` and border cut ``dim_cut``."""
    need = max(block, Q_AVG_WINDOW)
    return need + 2 * dim_cut - 1 if dim_cut else need


def reduced_resolution(
    fused: Any,
    gt: Any,
    *,
    ratio: int = 4,
    bits: int = 11,
    block: int = 32,
    dim_cut: int = 21,
    clip: bool = False,
) -> dict[str, float]:
    """Reduced-resolution indexes, exact to the toolbox ``indexes_evaluation``.

    Args:
        fused: (C, H, W) pan-sharpened image in DN (numpy or torch).
        gt: (C, H, W) reference (ground truth) in DN.
        ratio: resolution ratio (ERGAS).
        bits: radiometric depth L (clipping threshold ``2**bits``; PSNR/SSIM peak ``2**bits - 1``).
        block: Q2n tile size (Q_avg always uses 32 x 32 windows, as the toolbox's ``Q``).
        dim_cut: border cut ``X[:, dim_cut-1 : H-dim_cut, dim_cut-1 : W-dim_cut]`` (0 = no cut);
            asymmetric as in the toolbox (256 -> 215 for 21).
        clip: toolbox ``th_values``: clip ``fused`` to ``[0, 2**bits]`` before evaluating.

    Returns:
        dict with ``q2n`` (Q4/Q8/...), ``q_avg``, ``sam`` (degrees), ``ergas``, ``scc`` (toolbox) and
        ``psnr`` (dB), ``ssim`` (Python convention, on [0, 1] data after the border cut).
    """
    f = as_image(fused, "fused")
    g = as_image(gt, "gt")
    same_shape(f, g, "fused", "gt")
    if dim_cut < 0:
        raise BinsharpError(f"dim_cut must be >= 0, got {dim_cut}")
    if dim_cut:
        h, w = f.shape[-2:]
        if min(h, w) < min_image_size(block, dim_cut):
            raise BinsharpError(f"image {h}x{w} too small for a border cut of {dim_cut} and block {block}")
        f = f[:, dim_cut - 1 : h - dim_cut, dim_cut - 1 : w - dim_cut]
        g = g[:, dim_cut - 1 : h - dim_cut, dim_cut - 1 : w - dim_cut]
    if min(f.shape[-2:]) < max(block, Q_AVG_WINDOW):
        raise BinsharpError(f"image {f.shape[-2:]} smaller than the block size {max(block, Q_AVG_WINDOW)}")
    if clip:
        f = np.clip(f, 0, 2.0**bits)
    return {
        "q2n": q2n.__wrapped__(g, f, block),
        "q_avg": q_avg.__wrapped__(g, f, Q_AVG_WINDOW),
        "sam": sam.__wrapped__(g, f),
        "ergas": ergas.__wrapped__(g, f, ratio),
        "scc": scc.__wrapped__(g, f),
        "psnr": psnr.__wrapped__(g, f, bits),
        "ssim": ssim.__wrapped__(g, f, bits),
    }
