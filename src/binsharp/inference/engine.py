"""An exported ``.bsp`` model as a :class:`binsharp.inference.fuser.Fuser`, and the ``--engine MODEL.bsp``
source.

Importing this module registers the fuser source ``engine`` (``binsharp fuse --engine MODEL.bsp``,
``binsharp evaluate --engine MODEL.bsp``). Inference runs on numpy and the compiled kernels; PyTorch is not
imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from binsharp.errors import BinsharpError
from binsharp.inference.fuser import DEFAULT_HALO, check_fuser_inputs, register_fuser_source


class EngineFuser:
    """Run a ``.bsp`` model on DN images: ``(ms_lr (C,h,w), pan (1,H,W), lms=None) -> (C,H,W)`` float64 DN.

    Inputs are divided by ``2**bits - 1`` (``bits`` stored in the model file at export, or given), ``lms`` is
    computed with :func:`binsharp.protocol.interp23tap` when not given, and the output is multiplied back.

    Attributes:
        name: ``"<model> (engine)"``; bands: MS band count; ratio: PAN/MS ratio; bits: radiometric depth;
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
        self.ratio = int(meta.get("ratio") or 4)
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
        from binsharp.protocol import interp23tap

        ms_lr = np.asarray(ms_lr, dtype=np.float64)
        pan = np.asarray(pan, dtype=np.float64)
        check_fuser_inputs(ms_lr, pan, lms, bands=self.bands, ratio=self.ratio, name=self.name)
        lms_a = np.asarray(lms, dtype=np.float64) if lms is not None else interp23tap(ms_lr, self.ratio)
        scale = float(2**self.bits - 1)

        def norm(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a / scale, dtype=np.float32)[None]

        out = self.engine(ms=norm(ms_lr), lms=norm(lms_a), pan=norm(pan))
        return out[0].astype(np.float64) * scale

    def __repr__(self) -> str:
        return f"EngineFuser({str(self.path)!r}, bands={self.bands}, bits={self.bits})"


def engine_fuser(
    path: str | os.PathLike,
    *,
    sensor: Any = None,
    ratio: int | None = None,
    bits: int | None = None,
    threads: int | None = None,
) -> EngineFuser:
    """Load the ``.bsp`` model at ``path`` as a fuser; a known ``sensor``/``ratio`` of the data is checked
    against the model (bands, bit depth, ratio) and a mismatch raises :class:`BinsharpError`."""
    s_bits = getattr(sensor, "bits", None)
    fuser = EngineFuser(path, bits=bits, threads=threads)
    s_bands = getattr(sensor, "n_bands", None)
    if s_bands is not None and fuser.bands is not None and int(s_bands) != fuser.bands:
        raise BinsharpError(
            f"model file {path} takes {fuser.bands}-band MS images, sensor "
            f"{getattr(sensor, 'name', sensor)} has {s_bands} bands"
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


def _factory(value: str, args: Any, *, sensor: Any = None, ratio: int | None = None) -> EngineFuser:
    threads = getattr(args, "threads", None)
    return engine_fuser(value, sensor=sensor, ratio=ratio, threads=threads)


register_fuser_source(
    "engine",
    _factory,
    metavar="MODEL.bsp",
    help="exported binary network (a .bsp file written by 'binsharp export'), run by the packed engine",
)
