"""An exported ``.bsp`` model as a :class:`binsharp.inference.fuser.Fuser`.

Inference runs on numpy and the compiled kernels of :mod:`binsharp.deploy`; PyTorch is not imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from binsharp.errors import BinsharpError
from binsharp.inference.fuser import DEFAULT_HALO, fuse_normalised, sensor_from_meta
from binsharp.sensors import Sensor, get_sensor


class EngineFuser:
    """Run a ``.bsp`` model on DN images: ``(ms_lr (C,h,w), pan (1,H,W), lms=None) -> (C,H,W)`` float64 DN.

    Inputs are divided by ``2**bits - 1`` (``bits`` stored in the model file at export, or given), ``lms`` is
    computed with :func:`binsharp.protocol.interp23tap` when not given, and the output is multiplied back
    (:func:`~binsharp.inference.fuser.fuse_normalised`).

    Attributes:
        name: ``"<model> (engine)"``; bands: MS band count; ratio: PAN/MS ratio; sensor: sensor of the
        training data when the file names one of the table (else None); bits: radiometric depth;
        halo: tile overlap for tiled inference; engine: the :class:`binsharp.deploy.runtime.Engine`.
    """

    halo: int = DEFAULT_HALO

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        bits: int | None = None,
        threads: int | None = None,
        kernel_path: str | None = None,
    ) -> None:
        from binsharp.deploy.runtime import Engine

        self.path = Path(path)
        self.engine = Engine(self.path, threads=threads, path=kernel_path)
        meta = self.engine.meta
        self.meta = meta
        self.name = f"{meta.get('name', 'model')} (engine)"
        self.bands: int | None = self.engine.bands
        self.sensor: Sensor | None = sensor_from_meta(meta)
        self.ratio = int(meta.get("ratio") or (self.sensor.ratio if self.sensor else 4))
        b = bits if bits is not None else meta.get("bits")
        if b is None:
            raise BinsharpError(
                f"model file {self.path} does not state the bit depth of its training data "
                "(export it from a checkpoint, or pass --bits)"
            )
        self.bits = int(b)
        if isinstance(meta.get("halo"), int) and meta["halo"] >= 0:
            self.halo = int(meta["halo"])

    def __call__(self, ms_lr: np.ndarray, pan: np.ndarray, lms: np.ndarray | None = None) -> np.ndarray:
        """Fuse ``ms_lr`` (C,h,w) and ``pan`` (1,H,W), both DN; ``lms`` (C,H,W) DN optional."""
        return fuse_normalised(self, self.engine, ms_lr, pan, lms)

    def __repr__(self) -> str:
        return f"EngineFuser({str(self.path)!r}, bands={self.bands}, bits={self.bits})"


def engine_fuser(
    path: str | os.PathLike,
    *,
    sensor: Sensor | str | None = None,
    ratio: int | None = None,
    bits: int | None = None,
    threads: int | None = None,
) -> EngineFuser:
    """Load the ``.bsp`` model at ``path`` as a fuser; a known ``sensor`` (or name) and ``ratio`` of the data
    are checked against the model (bands, bit depth, ratio) and a mismatch raises :class:`BinsharpError`."""
    if isinstance(sensor, str):
        sensor = get_sensor(sensor)
    s_bits = sensor.bits if sensor is not None else None
    fuser = EngineFuser(path, bits=bits, threads=threads)
    s_bands = sensor.n_bands if sensor is not None else None
    if sensor is not None and fuser.bands is not None and int(sensor.n_bands) != fuser.bands:
        raise BinsharpError(
            f"model file {path} takes {fuser.bands}-band MS images, sensor {sensor.name} has {s_bands} bands"
        )
    if bits is None and s_bits is not None and fuser.meta.get("bits") is not None:
        if int(s_bits) != int(fuser.meta["bits"]):
            raise BinsharpError(
                f"model file {path} was trained on {fuser.meta['bits']}-bit data, the input is {s_bits}-bit"
            )
    if ratio is not None and int(ratio) != fuser.ratio:
        raise BinsharpError(
            f"model file {path} was exported for ratio {fuser.ratio}, the input has ratio {ratio}"
        )
    return fuser
