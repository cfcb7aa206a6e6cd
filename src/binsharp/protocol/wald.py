"""Wald's reduced-resolution protocol as in the toolbox ``resize_images``."""

from __future__ import annotations

import numpy as np

from binsharp.errors import BinsharpError
from binsharp.protocol._arrays import as_float_image, check_ratio
from binsharp.protocol.interp import interp23tap
from binsharp.protocol.mtf import mtf_filter
from binsharp.protocol.resize import decimate, imresize
from binsharp.sensors import Sensor, get_sensor


def _check_pair(ms: np.ndarray, pan: np.ndarray, ratio: int) -> None:
    if ms.ndim != 3:
        raise BinsharpError(f"MS must have shape (C, H, W), got {ms.shape}")
    if pan.ndim != 3 or pan.shape[0] != 1:
        raise BinsharpError(f"PAN must have shape (1, H, W), got {pan.shape}")
    h, w = ms.shape[-2:]
    if h % ratio or w % ratio:
        raise BinsharpError(f"MS size {h}x{w} is not a multiple of the ratio {ratio}")
    if pan.shape[-2:] != (h * ratio, w * ratio):
        raise BinsharpError(
            f"PAN size {pan.shape[1]}x{pan.shape[2]} is not {ratio} x the MS size {h}x{w} "
            f"(expected {h * ratio}x{w * ratio})"
        )


def resize_images(
    ms: np.ndarray, pan: np.ndarray, sensor: str | Sensor, ratio: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Toolbox ``resize_images``: degrade an MS/PAN pair by ``ratio``.

    MS: per-band MTF low-pass (sensor Nyquist gains, replicate borders) then nearest decimation with the
    toolbox phase. PAN: MATLAB bicubic ``imresize(pan, 1/ratio)`` (antialiased, no MTF filter).

    Args:
        ms: (C, H, W) multispectral image in DN (numpy or torch).
        pan: (1, ratio*H, ratio*W) panchromatic image in DN.
        sensor: sensor name or :class:`~binsharp.sensors.Sensor` (Nyquist gains, band count check).
        ratio: PAN/MS resolution ratio (default: the sensor's).

    Returns:
        ``(ms_lr, pan_lr)``: (C, H/ratio, W/ratio) and (1, H, W), float64 DN.
    """
    s = get_sensor(sensor)
    r = check_ratio(s.ratio_or(ratio))
    ms = as_float_image(ms, "MS", min_ndim=3)
    pan = as_float_image(pan, "PAN", min_ndim=3)
    _check_pair(ms, pan, r)
    s.check_bands(ms.shape[0])
    ms_lr = decimate(mtf_filter(ms, s.gnyq_ms, r), r)
    pan_lr = imresize(pan, 1.0 / r)
    return ms_lr, pan_lr


def reduced_resolution_triplet(
    ms: np.ndarray, pan: np.ndarray, sensor: str | Sensor, ratio: int | None = None
) -> dict[str, np.ndarray]:
    """Wald-protocol training/test sample from an MS/PAN pair.

    Args:
        ms: (C, H, W) multispectral image in DN; becomes the reference ``gt``.
        pan: (1, ratio*H, ratio*W) panchromatic image in DN.
        sensor: sensor name or :class:`~binsharp.sensors.Sensor`.
        ratio: PAN/MS resolution ratio (default: the sensor's).

    Returns:
        dict of float64 DN arrays: ``gt`` (C, H, W), ``ms`` (C, H/ratio, W/ratio), ``lms`` (C, H, W)
        = 23-tap interpolation of ``ms``, ``pan`` (1, H, W).
    """
    ratio = get_sensor(sensor).ratio_or(ratio)
    ms_arr = as_float_image(ms, "MS", min_ndim=3)
    ms_lr, pan_lr = resize_images(ms_arr, pan, sensor, ratio)
    return {"gt": ms_arr.copy(), "ms": ms_lr, "lms": interp23tap(ms_lr, ratio), "pan": pan_lr}
