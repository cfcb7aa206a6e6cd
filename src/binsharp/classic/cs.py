"""Component-substitution methods: BT-H, GS, GSA and BDSD-PC, as in the reference MATLAB toolbox.

Each function takes the low-resolution MS ``ms_lr`` (C, h, w) and the PAN ``pan`` (1, H, W) in DN, the
sensor (name or :class:`~binsharp.sensors.Sensor`), the scale ratio and optionally the MS already
interpolated to the PAN grid ``ms_up`` (C, H, W) (default: 23-tap interpolation of ``ms_lr``), and returns the
fused image (C, H, W) float64 in DN.
"""

from __future__ import annotations

import numpy as np

from binsharp import protocol
from binsharp.classic._common import (
    EPS,
    is_flat,
    lp_gauss,
    mean2,
    mtf_pan,
    nonneg_lstsq,
    prepare,
    regress,
    safe_ratio,
    starck_murtagh_lowpass,
    std2,
)
from binsharp.sensors import Sensor

#: Haze fractions of the 1st percentile for 4-band (B, G, R, NIR) images in BT-H.
_BTH_HAZE_4 = (0.95, 0.45, 0.40, 0.05)


def _gs_inject(ms_up: np.ndarray, intensity: np.ndarray, pan0: np.ndarray) -> np.ndarray:
    """Gram-Schmidt injection shared by GS and GSA.

    Args:
        ms_up: (C, H, W) interpolated MS.
        intensity: (1, H, W) zero-mean synthetic intensity ``I0``.
        pan0: (1, H, W) PAN matched to the intensity (zero mean for GSA, histogram matched for GS).

    Returns:
        (C, H, W) fused image: ``ms0_b + g_b (pan0 - I0)`` with ``g_b = cov(I0, ms_b) / var(I0)``, then
        each band shifted to the mean of ``ms_up``.
    """
    ms_mean = mean2(ms_up)
    ms0 = ms_up - ms_mean
    i0 = intensity.reshape(-1)
    n = i0.size
    i0c = i0 - i0.mean()
    cov = (ms0.reshape(ms0.shape[0], -1) - ms0.reshape(ms0.shape[0], -1).mean(axis=1, keepdims=True)) @ i0c
    gain = safe_ratio(cov / (n - 1), i0c @ i0c / (n - 1))
    fused = ms0 + gain[:, None, None] * (pan0 - intensity)
    return fused - mean2(fused) + ms_mean


def bt_h(
    ms_lr: np.ndarray,
    pan: np.ndarray,
    *,
    sensor: str | Sensor,
    ratio: int | None = None,
    ms_up: np.ndarray | None = None,
) -> np.ndarray:
    """BT-H: Brovey transform with haze correction and regressed intensity (toolbox ``BroveyRegHazeMin``).

    Lolli, Alparone, Garzelli, Vivone, "Haze correction for contrast-based multispectral pansharpening",
    IEEE GRSL 14(12), 2017; settings of Vivone et al., IEEE GRSM 2021 ("A new benchmark based on recent
    advances in multispectral pansharpening").

    Haze per band: for 4 bands ``(0.95, 0.45, 0.40, 0.05) x`` the 1st percentile of B, G, R, NIR,
    otherwise the band minimum. The intensity weights regress the Gaussian-low-passed PAN
    (``LPfilterGauss``) on the interpolated MS; the PAN is matched to the haze-free
    intensity and modulates the haze-free bands.

    Args:
        ms_lr: (C, h, w) DN. pan: (1, H, W) DN. sensor: band count check.
        ratio: scale ratio (default: the sensor's).
        ms_up: (C, H, W) DN, default ``interp23tap(ms_lr, ratio)``.

    Returns:
        (C, H, W) float64 DN.
    """
    ms_lr, pan, ms_up, sensor, ratio = prepare(ms_lr, pan, sensor, ratio, ms_up)
    if is_flat(pan):
        return ms_up.copy()
    c = ms_up.shape[0]
    if c == 4:
        # MATLAB/Octave prctile: piecewise linear with the k-th sorted value at (k - 0.5) / n ("hazen").
        p1 = np.percentile(ms_up.reshape(c, -1), 1.0, axis=1, method="hazen")
        haze = np.asarray(_BTH_HAZE_4) * p1
    else:
        haze = ms_up.reshape(c, -1).min(axis=1)
    haze = haze[:, None, None]
    pan_lp = lp_gauss(pan, ratio)
    weights = regress(ms_up, pan_lp)
    intensity = np.tensordot(weights, ms_up - haze, axes=1)[None]
    pan_eq = (pan - mean2(pan_lp)) * (std2(intensity) / std2(pan_lp)) + mean2(intensity)
    return np.maximum(ms_up - haze, 0.0) * (pan_eq / (intensity + EPS)) + haze


def gs(
    ms_lr: np.ndarray,
    pan: np.ndarray,
    *,
    sensor: str | Sensor,
    ratio: int | None = None,
    ms_up: np.ndarray | None = None,
) -> np.ndarray:
    """GS: Gram-Schmidt spectral sharpening with the band average as intensity (toolbox ``GS``).

    Laben & Brower, US Patent 6,011,875 (2000); Aiazzi, Baronti, Selva, IEEE TGRS 45(10), 2007; Vivone et al.,
    IEEE TGRS 53(5), 2015.

    The intensity is the mean of the interpolated bands; the PAN is matched in mean and standard deviation
    to it; band ``b`` receives ``cov(I, MS_b) / var(I)`` times the difference, then is shifted back to its
    mean.

    Args:
        ms_lr: (C, h, w) DN. pan: (1, H, W) DN. sensor: band count check.
        ratio: scale ratio (default: the sensor's).
        ms_up: (C, H, W) DN, default ``interp23tap(ms_lr, ratio)``.

    Returns:
        (C, H, W) float64 DN.
    """
    ms_lr, pan, ms_up, sensor, ratio = prepare(ms_lr, pan, sensor, ratio, ms_up)
    if is_flat(pan):
        return ms_up.copy()
    intensity = ms_up.mean(axis=0, keepdims=True)
    i0 = intensity - mean2(intensity)
    pan_eq = (pan - mean2(pan)) * (std2(i0) / std2(pan)) + mean2(i0)
    return _gs_inject(ms_up, i0, pan_eq)


def gsa(
    ms_lr: np.ndarray,
    pan: np.ndarray,
    *,
    sensor: str | Sensor,
    ratio: int | None = None,
    ms_up: np.ndarray | None = None,
) -> np.ndarray:
    """GSA: Gram-Schmidt adaptive, intensity weights regressed at low resolution (toolbox ``GSA``).

    Aiazzi, Baronti, Selva, "Improving component substitution pansharpening through multivariate regression of
    MS+Pan data", IEEE TGRS 45(10), 2007; Vivone et al., IEEE TGRS 53(5), 2015.

    The zero-mean PAN is low-passed with the undecimated B3-spline wavelet and decimated
    (``LPfilterPlusDec``); the weights (with an offset) regress it on the zero-mean ``ms_lr``; the
    intensity applies them to the zero-mean ``ms_up``; injection as in :func:`gs` with the zero-mean PAN.

    Args:
        ms_lr: (C, h, w) DN. pan: (1, H, W) DN. sensor: band count check.
        ratio: scale ratio (default: the sensor's).
        ms_up: (C, H, W) DN, default ``interp23tap(ms_lr, ratio)``.

    Returns:
        (C, H, W) float64 DN.
    """
    ms_lr, pan, ms_up, sensor, ratio = prepare(ms_lr, pan, sensor, ratio, ms_up)
    if is_flat(pan):
        return ms_up.copy()
    pan0 = pan - mean2(pan)
    pan_lr = protocol.decimate(starck_murtagh_lowpass(pan0, ratio), ratio)
    ms_lr0 = ms_lr - mean2(ms_lr)
    weights = regress(np.concatenate([ms_lr0, np.ones_like(ms_lr0[:1])]), pan_lr)
    ms0 = ms_up - mean2(ms_up)
    intensity = (np.tensordot(weights[:-1], ms0, axes=1) + weights[-1])[None]
    i0 = intensity - mean2(intensity)
    return _gs_inject(ms_up, i0, pan0)


def bdsd_pc(
    ms_lr: np.ndarray,
    pan: np.ndarray,
    *,
    sensor: str | Sensor,
    ratio: int | None = None,
    ms_up: np.ndarray | None = None,
) -> np.ndarray:
    """BDSD-PC: band-dependent spatial detail with physical constraints (toolbox ``BDSD_PC``).

    Vivone, "Robust band-dependent spatial-detail approaches for panchromatic sharpening",
    IEEE TGRS 57(9), 2019.

    At reduced scale (``ms_up`` bicubic-shrunk by ``1/ratio`` as reference, its MTF-filtered version and the
    MTF-filtered, decimated PAN as regressors), band ``b`` gets coefficients ``gamma`` minimising
    ``||ref_b - ms_lp_b - [pan_lr, ms_lp] gamma||`` with the PAN coefficient >= 0 and the MS ones <= 0;
    the fused band is ``ms_up_b + [pan, ms_up] gamma``.

    Args:
        ms_lr: (C, h, w) DN. pan: (1, H, W) DN. sensor: MTF gains (MS and PAN).
        ratio: scale ratio (default: the sensor's).
        ms_up: (C, H, W) DN, default ``interp23tap(ms_lr, ratio)``.

    Returns:
        (C, H, W) float64 DN.
    """
    ms_lr, pan, ms_up, sensor, ratio = prepare(ms_lr, pan, sensor, ratio, ms_up)
    if is_flat(pan):
        return ms_up.copy()
    ref = protocol.imresize(ms_up, 1.0 / ratio)
    ms_lp = protocol.mtf_filter(ref, sensor.gnyq_ms, ratio)
    pan_lr = protocol.decimate(mtf_pan(pan, sensor, ratio), ratio)
    design = np.concatenate([pan_lr, ms_lp]).reshape(ms_lp.shape[0] + 1, -1).T
    sign = np.ones(design.shape[1])
    sign[1:] = -1.0
    hr = np.concatenate([pan, ms_up]).reshape(design.shape[1], -1)
    fused = np.empty_like(ms_up)
    for b in range(ms_up.shape[0]):
        gamma = sign * nonneg_lstsq(design * sign, (ref[b] - ms_lp[b]).reshape(-1))
        fused[b] = ms_up[b] + (gamma @ hr).reshape(ms_up.shape[1:])
    return fused
