"""The toolbox 23-tap polynomial interpolator (``interp23tap``).

Per doubling the image is zero-inserted (first doubling: samples at 0-based odd positions ``1::2``; later
doublings: at even positions ``0::2``) and filtered along the rows and then the columns with the
symmetric 23-tap kernel below, circular borders. With ratio 4 an LR pixel ``k`` lands on HR index
``4k + 2``. The kernel is 1 at offset 0, zero at the other even offsets, so samples are kept exactly and
only the inserted positions are computed (12 taps on the LR grid, a polyphase form of the same filter).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

from binsharp.errors import BinsharpError
from binsharp.protocol._arrays import as_float_image, check_ratio

#: One side of the 23-tap kernel, offsets 0..11 (``2 * CDF23`` in the toolbox).
CDF23_HALF = 2.0 * np.array(
    [
        0.5,
        0.305334091185,
        0,
        -0.072698593239,
        0,
        0.021809577942,
        0,
        -0.005192756653,
        0,
        0.000807762146,
        0,
        -0.000060081482,
    ]
)


def kernel23() -> np.ndarray:
    """The full symmetric 23-tap kernel (offsets -11..11)."""
    return np.concatenate([CDF23_HALF[:0:-1], CDF23_HALF])


# The inserted sample at HR index 2k + phase + 1 sees the LR samples k + (m + 1)/2 for the odd offsets
# m = -11, -9, ..., 11, i.e. LR offsets -5..6 with the coefficients below (correlation, origin -1).
_POLY = CDF23_HALF[np.abs(np.arange(-11, 12, 2))]


def _double_axis(x: np.ndarray, axis: int, phase: int) -> np.ndarray:
    """Zero-insert along ``axis`` (samples at ``phase::2``) and filter with the 23-tap kernel, circularly."""
    n = x.shape[axis]
    mid = correlate1d(x, _POLY, axis=axis, mode="wrap", origin=-1)
    shape = list(x.shape)
    shape[axis] = 2 * n
    out = np.empty(shape, dtype=np.float64)
    ov = np.moveaxis(out, axis, -1)
    ov[..., phase::2] = np.moveaxis(x, axis, -1)
    mv = np.moveaxis(mid, axis, -1)
    if phase == 0:
        ov[..., 1::2] = mv
    else:  # inserted positions 2k + 2: index 0 wraps around from k = n - 1
        ov[..., 2::2] = mv[..., :-1]
        ov[..., 0] = mv[..., -1]
    return out


def interp23tap(img: np.ndarray, ratio: int = 4) -> np.ndarray:
    """Upsample by ``ratio`` (a power of 2) with the toolbox 23-tap interpolator.

    Args:
        img: (C, h, w) (or (h, w), or (N, C, h, w)); numpy or torch; any units (DN in the protocol).
        ratio: 2, 4, 8, ...: ``log2(ratio)`` doublings. (The toolbox loops ``ratio/2`` times, which is the
            same for 2 and 4, the ratios it is used with, but not a factor-8 upsampling for 8.)

    Returns:
        float64 array (..., h*ratio, w*ratio), same units.
    """
    r = check_ratio(ratio)
    if r < 2 or r & (r - 1):
        raise BinsharpError(f"interp23tap: ratio must be a power of 2 (>= 2), got {ratio}")
    x = as_float_image(img, "interp23tap input")
    phase = 1
    for _ in range(r.bit_length() - 1):
        x = _double_axis(x, -2, phase)  # along columns (vertical) first, as the toolbox
        x = _double_axis(x, -1, phase)
        phase = 0
    return x
