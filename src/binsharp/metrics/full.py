"""Full-resolution quality indexes (toolbox ``indexes_evaluation_FS``): HQNR and QNR.

No border cut; image sides must be multiples of the block size S (32). The universal image quality index
``uqi`` is evaluated on distinct S x S blocks, ``4 cov(x, y) mx my / ((var x + var y)(mx^2 + my^2))``
with N-1 (co)variances, and averaged over the blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from binsharp.errors import BinsharpError
from binsharp.metrics._inputs import as_image, same_shape, validated
from binsharp.metrics.hypercomplex import q2n
from binsharp.protocol import imresize, interp23tap, mtf_filter
from binsharp.protocol._arrays import check_ratio
from binsharp.sensors import Sensor, get_sensor


def _blocks(x: np.ndarray, s: int) -> np.ndarray:
    """(..., H, W) -> (..., n_blocks, s*s)."""
    *lead, h, w = x.shape
    t = x.reshape(*lead, h // s, s, w // s, s)
    t = np.moveaxis(t, -3, -2)
    return t.reshape(*lead, (h // s) * (w // s), s * s)


def uqi_blocks(x: np.ndarray, y: np.ndarray, s: int = 32) -> np.ndarray:
    """Mean block UQI of ``x`` against ``y`` over distinct ``s x s`` blocks, for every leading index.

    Args:
        x, y: (..., H, W) arrays with H, W multiples of ``s`` (broadcastable leading dims).

    Returns:
        (...) array of mean UQI values.
    """
    bx = _blocks(x, s)
    by = _blocks(y, s)
    n = s * s
    mx = bx.mean(axis=-1, keepdims=True)
    my = by.mean(axis=-1, keepdims=True)
    cx = bx - mx
    cy = by - my
    vx = (cx * cx).sum(axis=-1) / (n - 1)
    vy = (cy * cy).sum(axis=-1) / (n - 1)
    cxy = (cx * cy).sum(axis=-1) / (n - 1)
    mx, my = mx[..., 0], my[..., 0]
    q = 4 * cxy * mx * my / (vx + vy) / (mx**2 + my**2)
    return q.mean(axis=-1)


@validated("fused", "ms_up")
def d_lambda_k(
    fused: np.ndarray, ms_up: np.ndarray, sensor: str | Sensor, ratio: int | None = None, block: int = 32
) -> float:
    """Khan's spectral distortion: ``1 - Q2n(ms_up, MTF(fused))`` (fused low-passed at PAN scale).

    ``fused`` and ``ms_up``: (C, H, W) DN; ``sensor`` gives the MTF Nyquist gains (and ``ratio`` when None).
    """
    s = get_sensor(sensor)
    fused_lp = mtf_filter(fused, s.gnyq_ms, s.ratio_or(ratio))
    return 1.0 - q2n.__wrapped__(ms_up, fused_lp, block)


@validated("fused", "ms_up", "pan", same=False)
def d_s(fused: np.ndarray, ms_up: np.ndarray, pan: np.ndarray, ratio: int = 4, block: int = 32) -> float:
    """Spatial distortion: ``mean_b |Q(F_b, PAN) - Q(MS_b, PAN_lp)|`` with
    ``PAN_lp = interp23tap(imresize(PAN, 1/ratio), ratio)`` (q = 1).

    ``fused``, ``ms_up``: (C, H, W) DN; ``pan``: (1, H, W) DN; sides multiples of ``block``.
    """
    if fused.shape != ms_up.shape or pan.shape != (1, *fused.shape[1:]):
        raise BinsharpError(f"shape mismatch: fused {fused.shape}, ms_up {ms_up.shape}, pan {pan.shape}")
    pan_lp = interp23tap(imresize(pan, 1.0 / ratio), ratio)
    q_high = uqi_blocks(fused, pan, block)
    q_low = uqi_blocks(ms_up, pan_lp, block)
    return float(np.abs(q_high - q_low).mean())


@validated("fused", "ms_up")
def d_lambda(fused: np.ndarray, ms_up: np.ndarray, block: int = 32) -> float:
    """QNR spectral distortion: mean over band pairs i < j of ``|Q(F_i, F_j) - Q(MS_i, MS_j)|`` (p = 1)."""
    c = fused.shape[0]
    if c < 2:
        raise BinsharpError("QNR D_lambda needs at least 2 bands")
    i, j = np.triu_indices(c, 1)
    q_f = uqi_blocks(fused[i], fused[j], block)
    q_m = uqi_blocks(ms_up[i], ms_up[j], block)
    return float(np.abs(q_f - q_m).mean())


def full_resolution(
    fused: Any,
    ms_lr: Any,
    pan: Any,
    *,
    sensor: str | Sensor,
    ratio: int | None = None,
    bits: int = 11,
    block: int = 32,
    ms_up: Any = None,
    variant: str = "hqnr",
    clip: bool = False,
) -> dict[str, float]:
    """Full-resolution indexes, exact to the toolbox ``indexes_evaluation_FS``.

    Args:
        fused: (C, H, W) pan-sharpened image in DN (numpy or torch); H, W multiples of ``block``.
        ms_lr: (C, H/ratio, W/ratio) original MS in DN.
        pan: (1, H, W) original PAN in DN.
        sensor: sensor name or :class:`~binsharp.sensors.Sensor` (MTF gains of D_lambda^K).
        ratio: PAN/MS resolution ratio (default: the sensor's).
        bits: radiometric depth L (only used by ``clip``).
        block: block size S of the UQI/Q2n evaluations.
        ms_up: (C, H, W) upsampled MS (toolbox ``I_MS``); default ``interp23tap(ms_lr, ratio)``.
        variant: ``"hqnr"`` (flagQNR 0) -> ``d_lambda_k``, ``d_s``, ``hqnr``;
            ``"qnr"`` (flagQNR 1) -> ``d_lambda``, ``d_s``, ``qnr``.
        clip: toolbox ``th_values``: clip ``fused`` to ``[0, 2**bits]`` first.

    Returns:
        dict of floats as described for ``variant``.
    """
    if variant not in ("hqnr", "qnr"):
        raise BinsharpError(f"unknown full-resolution variant {variant!r} (use 'hqnr' or 'qnr')")
    s = get_sensor(sensor)
    r = check_ratio(s.ratio_or(ratio))
    f = as_image(fused, "fused")
    lr = as_image(ms_lr, "ms_lr")
    p = as_image(pan, "pan")
    c, h, w = f.shape
    if p.shape != (1, h, w):
        raise BinsharpError(f"shape mismatch: pan {p.shape} vs fused {f.shape} (expected (1, {h}, {w}))")
    if lr.shape != (c, h // r, w // r) or h % r or w % r:
        raise BinsharpError(f"shape mismatch: ms_lr {lr.shape} vs fused {f.shape} at ratio {r}")
    if h % block or w % block:
        raise BinsharpError(f"full-resolution indexes need sides that are multiples of {block}, got {h}x{w}")
    s.check_bands(c)
    up = interp23tap(lr, r) if ms_up is None else as_image(ms_up, "ms_up")
    same_shape(up, f, "ms_up", "fused")
    if clip:
        f = np.clip(f, 0, 2.0**bits)
    ds = d_s.__wrapped__(f, up, p, r, block)
    if variant == "hqnr":
        dl = d_lambda_k.__wrapped__(f, up, s, r, block)
        return {"d_lambda_k": dl, "d_s": ds, "hqnr": (1 - dl) * (1 - ds)}
    dl = d_lambda.__wrapped__(f, up, block)
    return {"d_lambda": dl, "d_s": ds, "qnr": (1 - dl) * (1 - ds)}
