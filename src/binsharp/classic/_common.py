"""Shared building blocks of the classical methods: input checks, statistics and low-pass operators.

The low-pass operators follow the reference MATLAB toolbox (Vivone et al.) exactly; the MTF filters, the
nearest decimation, the bicubic ``imresize`` and the 23-tap interpolator come from :mod:`binsharp.protocol`.
All arrays are channel-first float64 in DN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.optimize

from binsharp import protocol
from binsharp.errors import BinsharpError
from binsharp.sensors import Sensor, get_sensor

#: Machine epsilon of float64 (MATLAB ``eps``), added to denominators exactly as in the toolbox.
EPS = float(np.finfo(np.float64).eps)

#: Nyquist gain of the toolbox's generic Gaussian PAN low-pass (``LPfilterGauss``).
LP_GAUSS_GNYQ = 0.3

#: 5-tap B3-spline (Starck & Murtagh) kernel of the undecimated wavelet used by GSA and AWLP.
_B3 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


# ---------------------------------------------------------------------------------------------- inputs
def as_image(x: object, name: str) -> np.ndarray:
    """``x`` as a float64 (C, H, W) array; a 2-D array is read as one band. Raises on NaN/inf."""
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise BinsharpError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise BinsharpError(f"{name}: expected a (C, H, W) array, got shape {arr.shape}")
    if arr.size == 0:
        raise BinsharpError(f"{name}: empty array of shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise BinsharpError(f"{name}: contains NaN or infinite values")
    return arr


def prepare(
    ms_lr: object, pan: object, sensor: str | Sensor, ratio: int | None, ms_up: object | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Sensor, int]:
    """Validate the inputs of a classical method.

    Args:
        ms_lr: low-resolution MS, (C, h, w) DN.
        pan: PAN, (1, H, W) (or (H, W)) DN with ``H = h * ratio``, ``W = w * ratio``.
        sensor: sensor name or :class:`~binsharp.sensors.Sensor`; its band count must equal C.
        ratio: PAN/MS scale ratio (a power of two, as the 23-tap interpolator requires); None for the
            sensor's.
        ms_up: MS upsampled to the PAN grid, (C, H, W) DN, or None for ``interp23tap(ms_lr, ratio)``.

    Returns:
        ``(ms_lr, pan, ms_up, sensor, ratio)``: float64 arrays, the :class:`Sensor` and the ratio.
    """
    sensor = get_sensor(sensor)
    ratio = sensor.ratio_or(ratio)
    if (
        isinstance(ratio, bool)
        or not isinstance(ratio, (int, np.integer))
        or ratio < 2
        or ratio & (ratio - 1)
    ):
        raise BinsharpError(f"ratio must be a power of two >= 2, got {ratio!r}")
    ratio = int(ratio)
    ms_lr = as_image(ms_lr, "ms_lr")
    pan = as_image(pan, "pan")
    if pan.shape[0] != 1:
        raise BinsharpError(f"pan: expected a single band (1, H, W), got shape {pan.shape}")
    sensor.check_bands(ms_lr.shape[0])
    c, h, w = ms_lr.shape
    if pan.shape[1:] != (h * ratio, w * ratio):
        raise BinsharpError(
            f"PAN size {pan.shape[1]}x{pan.shape[2]} is not {ratio} x the MS size {h}x{w} "
            f"(expected {h * ratio}x{w * ratio})"
        )
    if ms_up is None:
        ms_up = protocol.interp23tap(ms_lr, ratio)
    ms_up = as_image(ms_up, "ms_up")
    if ms_up.shape != (c, h * ratio, w * ratio):
        raise BinsharpError(f"ms_up: expected shape {(c, h * ratio, w * ratio)}, got {ms_up.shape}")
    return ms_lr, pan, ms_up, sensor, ratio


def is_flat(pan: np.ndarray) -> bool:
    """True if the PAN (1, H, W) is constant: it carries no detail, and every method returns ``ms_up``
    instead of dividing by its zero spread."""
    return bool(np.ptp(pan) == 0.0)


# ------------------------------------------------------------------------------------------ statistics
def mean2(x: np.ndarray) -> np.ndarray:
    """Mean over the two spatial axes, kept as (..., 1, 1) for broadcasting."""
    return x.mean(axis=(-2, -1), keepdims=True)


def std2(x: np.ndarray) -> np.ndarray:
    """Sample standard deviation (N - 1) over the two spatial axes, kept as (..., 1, 1) (MATLAB ``std2``)."""
    return x.std(axis=(-2, -1), ddof=1, keepdims=True)


def safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is exactly 0 (an injection gain for a band without variance)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    out = np.zeros(num.shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def regress(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of ``target`` on the bands of ``design``.

    The toolbox's ``estimation_alpha``, global mode: ``design(:, :) \\ target(:)``, no implicit intercept).

    Args:
        design: (K, H, W) regressors.
        target: (1, H, W) or (H, W) regressand.

    Returns:
        (K,) coefficients.
    """
    a = design.reshape(design.shape[0], -1).T
    coef, *_ = np.linalg.lstsq(a, target.reshape(-1), rcond=None)
    return coef


def nonneg_lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``min ||a x - b||`` subject to ``x >= 0`` (Lawson-Hanson active set on norm-scaled columns,
    then an orthogonal least-squares solve on the free variables).

    Args:
        a: (N, K) design matrix.
        b: (N,) target.

    Returns:
        (K,) solution.
    """
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    an = a / scale
    x, _ = scipy.optimize.nnls(an, b)
    free = np.flatnonzero(x > 0)
    out = np.zeros(a.shape[1])
    if free.size:
        sol, *_ = np.linalg.lstsq(an[:, free], b, rcond=None)
        out[free] = sol
    return out / scale


# ------------------------------------------------------------------------------------------- low-pass
def lp_gauss_gnyq() -> float:
    """Nyquist gain that makes :func:`binsharp.protocol.gen_mtf` reproduce the toolbox's ``LPfilterGauss``.

    ``LPfilterGauss`` designs its Gaussian with ``sigma = N * fcut / 2 / sqrt(-2 ln 0.3)`` (N = 41), whereas
    ``genMTF`` uses ``(N - 1)``; the filter is the same as ``genMTF`` with the gain ``0.3 ** (40/41)**2``.
    """
    return LP_GAUSS_GNYQ ** ((40.0 / 41.0) ** 2)


def lp_gauss(img: np.ndarray, ratio: int) -> np.ndarray:
    """The toolbox's ``LPfilterGauss``: Gaussian FIR low-pass with gain 0.3 at Nyquist, replicate borders.

    Args:
        img: (C, H, W) DN.
        ratio: scale ratio (the cut-off is ``1 / ratio``).

    Returns:
        (C, H, W) filtered image.
    """
    return protocol.mtf_filter(img, [lp_gauss_gnyq()] * img.shape[0], ratio)


def mtf_pan(pan: np.ndarray, sensor: Sensor, ratio: int) -> np.ndarray:
    """The toolbox's ``MTF_PAN``: PAN (1, H, W) low-passed with the sensor's PAN Nyquist gain."""
    return protocol.mtf_filter(pan, [sensor.gnyq_pan] * pan.shape[0], ratio)


def glp_lowpass(img: np.ndarray, gnyq: Sequence[float], ratio: int) -> np.ndarray:
    """MTF-GLP low-pass: per-band MTF filter, nearest decimation, 23-tap interpolation back.

    Args:
        img: (C, H, W) DN, H and W multiples of ``ratio``.
        gnyq: C Nyquist gains.

    Returns:
        (C, H, W) low-resolution version of ``img`` on the original grid.
    """
    return protocol.interp23tap(protocol.decimate(protocol.mtf_filter(img, gnyq, ratio), ratio), ratio)


def _b3_valid(x: np.ndarray, axis: int) -> np.ndarray:
    """'Valid' correlation of ``x`` with the 5-tap B3 kernel along ``axis`` (length shrinks by 4)."""
    n = x.shape[axis] - 4
    out = _B3[0] * np.take(x, range(0, n), axis=axis)
    for t in range(1, 5):
        out = out + _B3[t] * np.take(x, range(t, t + n), axis=axis)
    return out


def starck_murtagh_lowpass(img: np.ndarray, ratio: int) -> np.ndarray:
    """Approximation of the toolbox's undecimated B3-spline wavelet (``ndwt2``/``indwt2`` with all detail
    planes set to zero), as used by ``LPfilterPlusDec`` (GSA) and ``AWLP``.

    The toolbox's transform does not dilate the kernel between levels: each of the ``ceil(log2(ratio))``
    analysis levels extends the array half-point symmetrically by 4 samples and filters it (``valid``), so the
    array grows by 4 per level; each synthesis level filters again (``valid``) and shrinks it back. With zero
    details the analysis/synthesis gains (sqrt 2 per axis and level, 1/4 per synthesis level) cancel.

    Args:
        img: (..., H, W) image (DN).
        ratio: scale ratio; the number of levels is ``ceil(log2(ratio))``.

    Returns:
        (..., H, W) low-pass image.
    """
    levels = math.ceil(math.log2(ratio))
    x = np.asarray(img, dtype=np.float64)
    pad = [(0, 0)] * (x.ndim - 2) + [(4, 4), (4, 4)]
    for _ in range(levels):
        x = _b3_valid(_b3_valid(np.pad(x, pad, mode="symmetric"), -1), -2)
    for _ in range(levels):
        x = _b3_valid(_b3_valid(x, -1), -2)
    return x
