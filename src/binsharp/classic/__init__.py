"""Classical pan-sharpening methods, exact to the reference MATLAB toolbox (Vivone et al., IEEE GRSM 2021, as
distributed with DLPan-Toolbox).

One interface for all of them::

    fused = binsharp.classic.fuse("mtf-glp-fs", ms_lr, pan, sensor="WV3")  # ratio: the sensor's, 4

``ms_lr`` is the low-resolution MS (C, h, w) and ``pan`` the PAN (1, H, W), both in DN with
``H = ratio * h`` and ``W = ratio * w``; the result is (C, H, W) float64 DN (not clipped).
``ms_up`` (C, H, W), the MS on the PAN grid used by every method, defaults to the toolbox's 23-tap
interpolation (:func:`binsharp.protocol.interp23tap`); pass it to reuse a precomputed one.

Methods (:data:`CLASSICAL_METHODS`):

==============  ==========================  ================================================
name            toolbox function            function here
==============  ==========================  ================================================
``exp``         23-tap interpolation (EXP)  :func:`exp`
``bt-h``        ``BroveyRegHazeMin``        :func:`bt_h`
``gs``          ``GS``                      :func:`gs`
``gsa``         ``GSA``                     :func:`gsa`
``bdsd-pc``     ``BDSD_PC``                 :func:`bdsd_pc`
``mtf-glp-hpm`` ``MTF_GLP_HPM``             :func:`mtf_glp_hpm`
``mtf-glp-fs``  ``MTF_GLP_FS``              :func:`mtf_glp_fs`
``awlp``        ``AWLP``                    :func:`awlp`
==============  ==========================  ================================================

The sensor (a name such as ``"WV3"``/``"QB"`` or a :class:`~binsharp.sensors.Sensor`) gives the MTF Nyquist
gains; its band count must match ``ms_lr``.

A constant PAN carries no detail: every method then returns ``ms_up`` (instead of dividing by its zero
spread); a band without variance gets no Gram-Schmidt injection.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from binsharp.classic._common import prepare
from binsharp.classic.cs import bdsd_pc, bt_h, gs, gsa
from binsharp.classic.mra import awlp, mtf_glp_fs, mtf_glp_hpm
from binsharp.names import resolve_name
from binsharp.sensors import Sensor

__all__ = [
    "CLASSICAL_METHODS",
    "awlp",
    "bdsd_pc",
    "bt_h",
    "exp",
    "fuse",
    "get_method",
    "gs",
    "gsa",
    "mtf_glp_fs",
    "mtf_glp_hpm",
]


def exp(
    ms_lr: np.ndarray,
    pan: np.ndarray,
    *,
    sensor: str | Sensor,
    ratio: int | None = None,
    ms_up: np.ndarray | None = None,
) -> np.ndarray:
    """EXP: the MS expanded to the PAN grid by the toolbox's 23-tap interpolator (no PAN information).

    Aiazzi, Alparone, Baronti, Garzelli, "Context-driven fusion of high spatial and spectral resolution images
    based on oversampled multiresolution analysis", IEEE TGRS 40(10), 2002 (the interpolation kernel).

    Args:
        ms_lr: (C, h, w) DN. pan: (1, H, W) DN (only its size is checked). sensor: band count check.
        ratio: scale ratio (default: the sensor's). ms_up: (C, H, W) DN, returned as float64 if given.

    Returns:
        (C, H, W) float64 DN.
    """
    return prepare(ms_lr, pan, sensor, ratio, ms_up)[2].copy()


_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "exp": exp,
    "bt-h": bt_h,
    "gs": gs,
    "gsa": gsa,
    "bdsd-pc": bdsd_pc,
    "mtf-glp-hpm": mtf_glp_hpm,
    "mtf-glp-fs": mtf_glp_fs,
    "awlp": awlp,
}

#: Names accepted by :func:`fuse`, in the order of the toolbox's benchmark tables.
CLASSICAL_METHODS: tuple[str, ...] = tuple(_METHODS)


def get_method(method: str) -> Callable[..., np.ndarray]:
    """The function implementing ``method`` (case-insensitive; ``_`` and ``-`` are interchangeable)."""
    return _METHODS[resolve_name(str(method), CLASSICAL_METHODS, what="classical method")]


def fuse(
    method: str,
    ms_lr: np.ndarray,
    pan: np.ndarray,
    *,
    sensor: str | Sensor,
    ratio: int | None = None,
    ms_up: np.ndarray | None = None,
) -> np.ndarray:
    """Pan-sharpen with a classical method.

    Args:
        method: one of :data:`CLASSICAL_METHODS` (``"exp"``, ``"bt-h"``, ``"gs"``, ``"gsa"``, ``"bdsd-pc"``,
            ``"mtf-glp-hpm"``, ``"mtf-glp-fs"``, ``"awlp"``).
        ms_lr: low-resolution MS, (C, h, w) DN (numpy array or torch tensor).
        pan: PAN, (1, H, W) DN with ``H = ratio * h``, ``W = ratio * w``.
        sensor: sensor name or :class:`~binsharp.sensors.Sensor` (MTF gains; band count must equal C).
        ratio: PAN/MS scale ratio, a power of two (default: the sensor's).
        ms_up: MS on the PAN grid, (C, H, W) DN; default ``binsharp.protocol.interp23tap(ms_lr, ratio)``.

    Returns:
        Fused image, (C, H, W) float64 DN (not clipped to the sensor range).

    Raises:
        BinsharpError: unknown method or sensor, band count not matching the sensor, sizes not in the ratio,
            non-finite values.
    """
    return get_method(method)(ms_lr, pan, sensor=sensor, ratio=ratio, ms_up=ms_up)
