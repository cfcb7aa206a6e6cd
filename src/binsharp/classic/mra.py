"""Multiresolution-analysis methods: MTF-GLP-HPM, MTF-GLP-FS and AWLP, as in the reference MATLAB toolbox.

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
    glp_lowpass,
    is_flat,
    lp_gauss,
    mean2,
    prepare,
    starck_murtagh_lowpass,
    std2,
)
from binsharp.sensors import Sensor


def mtf_glp_hpm(
    ms_lr: np.ndarray,
    pan: np.ndarray,
    *,
    sensor: str | Sensor,
    ratio: int | None = None,
    ms_up: np.ndarray | None = None,
) -> np.ndarray:
    """MTF-GLP-HPM: generalized Laplacian pyramid with MTF-matched filters and high-pass modulation
    (toolbox ``MTF_GLP_HPM``).

    Aiazzi, Alparone, Baronti, Garzelli, Selva, "MTF-tailored multiscale fusion of high-resolution MS and Pan
    imagery", PE&RS 72(5), 2006; Vivone et al., IEEE TGRS 53(5), 2015; Alparone, Garzelli, Vivone, IEEE TGRS
    55(8), 2017.

    Per band, the PAN is matched to the band's mean and standard deviation (the PAN's spread measured after
    the toolbox's Gaussian low-pass), low-passed with the band's MTF filter, decimated and 23-tap
    interpolated back; the fused band is ``ms_up_b * pan_b / (pan_lp_b + eps)``.

    Args:
        ms_lr: (C, h, w) DN. pan: (1, H, W) DN. sensor: MS MTF gains.
        ratio: scale ratio (default: the sensor's).
        ms_up: (C, H, W) DN, default ``interp23tap(ms_lr, ratio)``.

    Returns:
        (C, H, W) float64 DN.
    """
    ms_lr, pan, ms_up, sensor, ratio = prepare(ms_lr, pan, sensor, ratio, ms_up)
    if is_flat(pan):
        return ms_up.copy()
    pan_eq = (pan - mean2(pan)) * (std2(ms_up) / std2(lp_gauss(pan, ratio))) + mean2(ms_up)
    pan_lp = glp_lowpass(pan_eq, sensor.gnyq_ms, ratio)
    return ms_up * (pan_eq / (pan_lp + EPS))


def mtf_glp_fs(
    ms_lr: np.ndarray,
    pan: np.ndarray,
    *,
    sensor: str | Sensor,
    ratio: int | None = None,
    ms_up: np.ndarray | None = None,
) -> np.ndarray:
    """MTF-GLP-FS: MTF-matched generalized Laplacian pyramid with full-scale regression injection gains
    (toolbox ``MTF_GLP_FS``).

    Vivone, Restaino, Chanussot, "Full scale regression-based injection coefficients for panchromatic
    sharpening", IEEE TIP 27(7), 2018.

    Per band, the PAN is low-passed with the band's MTF filter, decimated and 23-tap interpolated back
    (``pan_lp_b``); the gain is ``cov(ms_up_b, pan) / cov(pan_lp_b, pan)`` and the fused band is
    ``ms_up_b + g_b (pan - pan_lp_b)``.

    Args:
        ms_lr: (C, h, w) DN. pan: (1, H, W) DN. sensor: MS MTF gains.
        ratio: scale ratio (default: the sensor's).
        ms_up: (C, H, W) DN, default ``interp23tap(ms_lr, ratio)``.

    Returns:
        (C, H, W) float64 DN.
    """
    ms_lr, pan, ms_up, sensor, ratio = prepare(ms_lr, pan, sensor, ratio, ms_up)
    if is_flat(pan):
        return ms_up.copy()
    c = ms_up.shape[0]
    pan_lp = glp_lowpass(np.repeat(pan, c, axis=0), sensor.gnyq_ms, ratio)
    pc = (pan - mean2(pan)).reshape(-1)
    cov_ms = (ms_up - mean2(ms_up)).reshape(c, -1) @ pc
    cov_lp = (pan_lp - mean2(pan_lp)).reshape(c, -1) @ pc
    gain = (cov_ms / cov_lp)[:, None, None]
    return ms_up + gain * (pan - pan_lp)


def awlp(
    ms_lr: np.ndarray,
    pan: np.ndarray,
    *,
    sensor: str | Sensor,
    ratio: int | None = None,
    ms_up: np.ndarray | None = None,
) -> np.ndarray:
    """AWLP: additive wavelet luminance proportional (toolbox ``AWLP``).

    Otazu, Gonzalez-Audicana, Fors, Nunez, "Introduction of sensor spectral response into image fusion
    methods. Application to wavelet-based methods", IEEE TGRS 43(10), 2005; Vivone et al., IEEE TGRS 53(5),
    2015.

    Per band, the PAN is matched to the band's mean and standard deviation (the PAN's spread measured after a
    bicubic ``imresize`` down and up by ``ratio``); its details with respect to the undecimated B3-spline
    wavelet approximation are injected in proportion to ``ms_up_b / mean_b(ms_up)``.

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
    proportion = ms_up / (ms_up.mean(axis=0, keepdims=True) + EPS)
    pan_lr = protocol.imresize(protocol.imresize(pan, 1.0 / ratio), float(ratio))
    pan_eq = (pan - mean2(pan)) * (std2(ms_up) / std2(pan_lr)) + mean2(ms_up)
    details = pan_eq - starck_murtagh_lowpass(pan_eq, ratio)
    return details * proportion + ms_up
