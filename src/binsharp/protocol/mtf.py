"""Sensor MTF-matched Gaussian filters (toolbox ``genMTF``/``MTF``) and their application.

The filter design reproduces the reference MATLAB toolbox exactly:

* ``fcut = 1/ratio``, ``alpha = sqrt(((N-1)*fcut/2)^2 / (-2 ln GNyq))``;
* ``H = fspecial('gaussian', N, alpha)`` (values below ``eps*max`` set to zero, unit sum);
* ``Hd = H / max(H)``;
* ``h = fwind1(Hd, kaiser(N, 0.5))``: one-window (Huang) rotation method, the 1-D Kaiser window
  interpolated radially on ``t = (-(N-1)/2 : (N-1)/2) * 2/(N-1)``, zero outside the unit circle, times
  the frequency-sampled filter ``fsamp2(Hd)``;
* real part; the kernel is *not* renormalised (its sum is slightly below 1, e.g. 0.9988 for GNyq 0.325).

Filtering is ``imfilter(band, h, 'replicate')``: correlation, same output size, replicated borders.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import cast

import numpy as np
from scipy import fft as sfft

from binsharp.errors import BinsharpError
from binsharp.protocol._arrays import as_float_image, check_ratio

_EPS = np.finfo(np.float64).eps


def _fspecial_gaussian(n: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', n, sigma)``: (n, n), unit sum, tiny values zeroed."""
    half = (n - 1) / 2
    x = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(x, x)
    h = np.exp(-(xx * xx + yy * yy) / (2 * sigma * sigma))
    h[h < _EPS * h.max()] = 0
    s = h.sum()
    if s != 0:
        h = h / s
    return h


def _fsamp2(hd: np.ndarray) -> np.ndarray:
    """MATLAB ``fsamp2(Hd)``: frequency-sampling design (complex result, real for symmetric Hd)."""
    hd = np.rot90(np.fft.fftshift(np.rot90(hd, 2)), 2)
    h = np.fft.fftshift(np.fft.ifft2(hd))
    return np.rot90(h, 2)


def _fwind1_rotated(hd: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """MATLAB ``fwind1(Hd, w1)`` with one 1-D window (rotation method); complex (n, n)."""
    n = len(w1)
    t = np.arange(-(n - 1) / 2, (n - 1) / 2 + 1) * (2 / (n - 1))
    t1, t2 = np.meshgrid(t, t)
    t12 = np.sqrt(t1 * t1 + t2 * t2)
    outside = (t12 < t[0]) | (t12 > t[-1])
    t12[outside] = 0
    w = np.interp(t12.ravel(), t, w1).reshape(t12.shape)
    w[outside] = 0
    return _fsamp2(hd) * w


@lru_cache(maxsize=256)
def _gen_mtf_single(gnyq: float, ratio: int, n: int) -> np.ndarray:
    fcut = 1.0 / ratio
    alpha = np.sqrt(((n - 1) * (fcut / 2)) ** 2 / (-2 * np.log(gnyq)))
    big_h = _fspecial_gaussian(n, alpha)
    hd = big_h / big_h.max()
    h = np.real(_fwind1_rotated(hd, np.kaiser(n, 0.5)))
    h = np.ascontiguousarray(h)
    h.setflags(write=False)
    return h


def _gains(gnyq: float | Sequence[float]) -> tuple[bool, tuple[float, ...]]:
    scalar = np.ndim(gnyq) == 0
    gains = (
        (float(cast(float, gnyq)),)
        if scalar
        else tuple(float(g) for g in np.asarray(gnyq, dtype=float).ravel())
    )
    if not gains:
        raise BinsharpError("gen_mtf: no Nyquist gain given")
    for g in gains:
        if not 0.0 < g < 1.0:
            raise BinsharpError(f"MTF Nyquist gain must lie strictly between 0 and 1, got {g}")
    return scalar, gains


def gen_mtf(gnyq: float | Sequence[float], ratio: int = 4, n: int = 41) -> np.ndarray:
    """Toolbox ``genMTF`` filter(s): an (n, n) kernel for a scalar gain, (C, n, n) for C gains.

    Args:
        gnyq: MTF gain(s) at the Nyquist frequency, in (0, 1).
        ratio: PAN/MS resolution ratio (cut-off frequency ``1/ratio``).
        n: kernel size (the toolbox uses 41).

    Returns:
        float64 kernel(s) for correlation; not renormalised (sum slightly below 1).
    """
    ratio = check_ratio(ratio)
    if int(n) != n or n < 3 or n % 2 == 0:
        raise BinsharpError(f"gen_mtf: kernel size must be an odd integer >= 3, got {n}")
    scalar, gains = _gains(gnyq)
    kernels = [np.array(_gen_mtf_single(g, ratio, int(n))) for g in gains]
    return kernels[0] if scalar else np.stack(kernels)


_CHUNK_PIXELS = 8 * 640 * 640  # FFT work arrays of at most ~50 MB per chunk of bands
_SPECTRUM_CACHE_MAX_PIXELS = 640 * 640  # cache kernel spectra of small transforms only (<= 3.3 MB each)


@lru_cache(maxsize=16)
def _kernel_spectrum_cached(gnyq: float, ratio: int, fh: int, fw: int) -> np.ndarray:
    spec = sfft.rfft2(_gen_mtf_single(gnyq, ratio, 41)[::-1, ::-1], s=(fh, fw))
    spec.setflags(write=False)
    return spec


def _kernel_spectra(gains: tuple[float, ...], ratio: int, fh: int, fw: int) -> np.ndarray:
    """rfft2 of the 180-degree-rotated MTF kernels (correlation as convolution), zero-padded to (fh, fw)."""
    if fh * fw <= _SPECTRUM_CACHE_MAX_PIXELS:
        return np.stack([_kernel_spectrum_cached(g, ratio, fh, fw) for g in gains])
    return sfft.rfft2(gen_mtf(gains, ratio)[..., ::-1, ::-1], s=(fh, fw))


def correlate_replicate(img: np.ndarray, kernels: np.ndarray, *, _spectrum=None) -> np.ndarray:
    """``imfilter(img[..., c, :, :], kernels[c], 'replicate')`` for every band c, via FFT.

    Args:
        img: (..., C, H, W) float64.
        kernels: (C, k, k) with k odd (or (k, k), applied to every band).

    Returns:
        (..., C, H, W) float64, same size as ``img`` (correlation with replicated borders).
    """
    kernels = np.asarray(kernels, dtype=np.float64)
    if kernels.ndim == 2:
        kernels = np.broadcast_to(kernels, (img.shape[-3] if img.ndim >= 3 else 1, *kernels.shape))
    k = kernels.shape[-1]
    r = k // 2
    squeeze = img.ndim == 2
    if squeeze:
        img = img[None]
    if kernels.shape[0] != img.shape[-3]:
        raise BinsharpError(f"{kernels.shape[0]} filters for an image with {img.shape[-3]} bands")
    c, h, w = img.shape[-3:]
    lead = img.shape[:-3]
    flat = img.reshape(-1, c, h, w)
    hp, wp = h + 2 * r, w + 2 * r
    fh, fw = sfft.next_fast_len(hp, real=True), sfft.next_fast_len(wp, real=True)
    # correlation = convolution with the kernel rotated by 180 degrees
    kf = _spectrum(fh, fw) if _spectrum is not None else sfft.rfft2(kernels[..., ::-1, ::-1], s=(fh, fw))
    out = np.empty(flat.shape)
    chunk = max(1, _CHUNK_PIXELS // (fh * fw))  # bands transformed together (bounded memory)
    for i in range(flat.shape[0]):
        for b0 in range(0, c, chunk):
            sl = slice(b0, min(c, b0 + chunk))
            padded = np.pad(flat[i, sl], ((0, 0), (r, r), (r, r)), mode="edge")
            full = sfft.irfft2(sfft.rfft2(padded, s=(fh, fw)) * kf[sl], s=(fh, fw))
            out[i, sl] = full[:, k - 1 : hp, k - 1 : wp]
    out = out.reshape(*lead, c, h, w)
    return out[0] if squeeze else out


def mtf_filter(img: np.ndarray, gnyq: float | Sequence[float], ratio: int = 4) -> np.ndarray:
    """Per-band MTF low-pass (toolbox ``MTF``): ``imfilter(band, genMTF(...), 'replicate')``.

    Args:
        img: (C, H, W) image (or (N, C, H, W) batch), any units (DN in the protocol); numpy or torch.
        gnyq: one Nyquist gain per band (a scalar applies to every band).
        ratio: PAN/MS resolution ratio.

    Returns:
        float64 array of the same shape, same units.
    """
    x = as_float_image(img, "mtf_filter input", min_ndim=3)
    c = x.shape[-3]
    scalar, gains = _gains(gnyq)
    if scalar:
        gains = gains * c
    if len(gains) != c:
        raise BinsharpError(f"mtf_filter: {len(gains)} Nyquist gains for an image with {c} bands")
    ratio = check_ratio(ratio)
    return correlate_replicate(
        x, gen_mtf(gains, ratio), _spectrum=lambda fh, fw: _kernel_spectra(gains, ratio, fh, fw)
    )
