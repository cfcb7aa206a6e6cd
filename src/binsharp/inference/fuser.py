"""Fusers: one calling convention for everything that pan-sharpens a single image.

A *fuser* is a callable ``fuser(ms_lr, pan, lms=None) -> fused`` with

* ``ms_lr``: (C, h, w) multispectral image in DN,
* ``pan``: (1, H, W) panchromatic image in DN, ``H = ratio * h``, ``W = ratio * w``,
* ``lms``: optional (C, H, W) upsampled MS in DN (23-tap interpolation of ``ms_lr``; computed when absent),
* ``fused``: (C, H, W) float64 in DN,

and the attributes ``name`` (str), ``bands`` (int, or None when any band count works), ``ratio`` (int),
``sensor`` (the :class:`~binsharp.sensors.Sensor` of the data it is made for, or None when not known),
``bits`` (radiometric depth: DN lie in ``0 .. 2**bits - 1``) and ``halo`` (PAN pixels of context a tile
needs, see :mod:`binsharp.inference.tiling`).

Networks take images normalised to ``[0, 1]`` (DN divided by ``2**bits - 1``); :func:`to_unit`,
:func:`from_unit` and :func:`fuse_normalised` convert, once for every network fuser.

The fusers of this package: :class:`MethodFuser` (a classical method, :func:`method_fuser`),
:class:`~binsharp.inference.checkpoint.CheckpointFuser` (a trained checkpoint),
:class:`~binsharp.inference.engine.EngineFuser` (a ``.bsp`` model on the packed engine) and
:func:`~binsharp.inference.pretrained.pretrained_fuser` (a model-zoo checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from binsharp.errors import BinsharpError
from binsharp.names import resolve_name
from binsharp.sensors import Sensor, get_sensor, max_dn

#: Default halo (PAN pixels) for tiles when a fuser does not state one: covers the 41-tap MTF filter and
#: the 23-tap interpolation (both applied at MS scale, i.e. about 4 x 20 PAN pixels for ratio 4).
DEFAULT_HALO = 96


@runtime_checkable
class Fuser(Protocol):
    """Pan-sharpen one image: ``(ms_lr (C,h,w), pan (1,H,W), lms (C,H,W) | None) -> (C,H,W) float64``, DN.

    Attributes:
        name: what to call it in tables and messages.
        bands: MS band count it takes (None: any).
        ratio: PAN/MS resolution ratio.
        sensor: sensor of the data it is made for (None: not known).
        bits: radiometric depth of that data (DN in ``0 .. 2**bits - 1``).
        halo: context a tile needs on each side, in PAN pixels.
    """

    name: str
    bands: int | None
    ratio: int
    sensor: Sensor | None
    bits: int
    halo: int

    def __call__(self, ms_lr: np.ndarray, pan: np.ndarray, lms: np.ndarray | None = None) -> np.ndarray: ...


def check_fuser_inputs(
    ms_lr: np.ndarray, pan: np.ndarray, lms: np.ndarray | None, *, bands: int | None, ratio: int, name: str
) -> None:
    """Raise :class:`BinsharpError` unless the shapes follow the fuser convention.

    ``ms_lr`` must be (C, h, w) with ``C == bands`` (when ``bands`` is set), ``pan`` (1, ratio*h, ratio*w) and
    ``lms`` (when given) (C, ratio*h, ratio*w).
    """
    if ms_lr.ndim != 3:
        raise BinsharpError(f"{name}: MS must be a (C, h, w) array, got shape {tuple(ms_lr.shape)}")
    if pan.ndim != 3 or pan.shape[0] != 1:
        raise BinsharpError(f"{name}: PAN must be a (1, H, W) array, got shape {tuple(pan.shape)}")
    c, h, w = ms_lr.shape
    if bands is not None and c != bands:
        raise BinsharpError(f"{name} expects {bands} MS bands, got {c}")
    if pan.shape[1:] != (ratio * h, ratio * w):
        raise BinsharpError(
            f"{name}: PAN {pan.shape[1]} x {pan.shape[2]} and MS {h} x {w} are not in the ratio {ratio} "
            f"(PAN must be exactly {ratio} times the MS size in each dimension)"
        )
    if lms is not None and tuple(lms.shape) != (c, ratio * h, ratio * w):
        raise BinsharpError(
            f"{name}: upsampled MS must have shape {(c, ratio * h, ratio * w)}, got {lms.shape}"
        )


class MethodFuser:
    """A classical method of :mod:`binsharp.classic` as a :class:`Fuser`.

    Args:
        name: method name, one of :data:`binsharp.classic.CLASSICAL_METHODS`.
        sensor: sensor of the images (its MTF gains are used by the MTF-based methods, its bit depth is
            ``bits``).
        ratio: PAN/MS resolution ratio (default: the sensor's).
    """

    halo: int = DEFAULT_HALO

    def __init__(self, name: str, sensor: Sensor, ratio: int | None = None) -> None:
        self.name = name
        self.method_sensor = sensor
        self.sensor: Sensor | None = sensor
        self.bands: int | None = sensor.n_bands
        self.bits = sensor.bits
        self.ratio = int(ratio if ratio is not None else sensor.ratio)

    def __call__(self, ms_lr: np.ndarray, pan: np.ndarray, lms: np.ndarray | None = None) -> np.ndarray:
        """Fuse ``ms_lr`` (C,h,w) and ``pan`` (1,H,W), both DN; returns (C,H,W) float64 DN."""
        from binsharp.classic import fuse

        check_fuser_inputs(ms_lr, pan, lms, bands=self.bands, ratio=self.ratio, name=self.name)
        out = fuse(self.name, ms_lr, pan, sensor=self.method_sensor, ratio=self.ratio, ms_up=lms)
        return np.asarray(out, dtype=np.float64)

    def __repr__(self) -> str:
        return f"MethodFuser({self.name!r}, sensor={self.method_sensor.name!r}, ratio={self.ratio})"


def classical_methods() -> tuple[str, ...]:
    """Names accepted by :func:`method_fuser` (those of :data:`binsharp.classic.CLASSICAL_METHODS`)."""
    from binsharp.classic import CLASSICAL_METHODS

    return tuple(CLASSICAL_METHODS)


def method_fuser(name: str, sensor: Sensor | str, ratio: int | None = None) -> MethodFuser:
    """A :class:`Fuser` running the classical method ``name`` for ``sensor`` at ``ratio`` (default: the
    sensor's).

    Raises :class:`BinsharpError` for an unknown method name.
    """
    key = resolve_name(name, classical_methods(), what="method")
    return MethodFuser(key, get_sensor(sensor), ratio)


def check_bands(fuser: Fuser, n_bands: int, where: str = "data") -> None:
    """Raise :class:`BinsharpError` if ``fuser`` cannot take ``n_bands``-band images."""
    bands = fuser.bands
    if bands is None or bands == n_bands:
        return
    if isinstance(fuser, MethodFuser):
        sensor = fuser.method_sensor
        raise BinsharpError(
            f"band count {n_bands} of the {where} does not match sensor {sensor.name} "
            f"({sensor.n_bands} bands: {', '.join(sensor.bands)})"
        )
    raise BinsharpError(f"{fuser.name} expects {bands} MS bands but the {where} has {n_bands}")


def sensor_from_meta(meta: Mapping[str, Any]) -> Sensor | None:
    """The sensor a checkpoint or ``.bsp`` model names in its metadata (None when it names none, or a
    sensor outside the table such as ``custom``)."""
    name = meta.get("sensor")
    if not name:
        return None
    try:
        return get_sensor(str(name))
    except BinsharpError:
        return None


def to_unit(a: np.ndarray, bits: int) -> np.ndarray:
    """DN -> normalised: ``a / (2**bits - 1)`` as a C-contiguous float32 array of the same shape."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64) / float(max_dn(bits)), dtype=np.float32)


def from_unit(a: np.ndarray, bits: int) -> np.ndarray:
    """Normalised -> DN: ``a * (2**bits - 1)`` as float64 (not clipped)."""
    return np.asarray(a, dtype=np.float64) * float(max_dn(bits))


def fuse_normalised(
    fuser: Fuser,
    network: Callable[..., np.ndarray],
    ms_lr: np.ndarray,
    pan: np.ndarray,
    lms: np.ndarray | None = None,
) -> np.ndarray:
    """Run a network that works on normalised images as ``fuser`` on DN images.

    ``ms_lr`` (C,h,w), ``pan`` (1,H,W) and ``lms`` (C,H,W; the 23-tap interpolation of ``ms_lr`` when None)
    are checked against ``fuser`` (bands, ratio), divided by ``2**fuser.bits - 1`` and passed as
    ``network(ms=(1,C,h,w), lms=(1,C,H,W), pan=(1,1,H,W))`` float32 arrays; the network's (1,C,H,W)
    normalised output is returned as (C,H,W) float64 DN.
    """
    from binsharp.protocol import interp23tap

    ms_lr = np.asarray(ms_lr, dtype=np.float64)
    pan = np.asarray(pan, dtype=np.float64)
    check_fuser_inputs(ms_lr, pan, lms, bands=fuser.bands, ratio=fuser.ratio, name=fuser.name)
    lms_a = np.asarray(lms, dtype=np.float64) if lms is not None else interp23tap(ms_lr, fuser.ratio)
    bits = fuser.bits
    out = network(ms=to_unit(ms_lr, bits)[None], lms=to_unit(lms_a, bits)[None], pan=to_unit(pan, bits)[None])
    return from_unit(np.asarray(out)[0], bits)


__all__: Sequence[str] = (
    "DEFAULT_HALO",
    "Fuser",
    "MethodFuser",
    "check_bands",
    "check_fuser_inputs",
    "classical_methods",
    "from_unit",
    "fuse_normalised",
    "method_fuser",
    "sensor_from_meta",
    "to_unit",
)
