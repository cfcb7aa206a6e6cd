"""A trained binsharp checkpoint as a :class:`binsharp.inference.fuser.Fuser`, and the ``--checkpoint CKPT``
source.

Importing this module registers the fuser source ``checkpoint`` (``binsharp evaluate --checkpoint CKPT``,
``binsharp fuse --checkpoint CKPT``). Heavy imports (torch, the model registry) happen in the factory.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from binsharp.errors import BinsharpError
from binsharp.inference.fuser import DEFAULT_HALO, check_fuser_inputs, register_fuser_source


class CheckpointFuser:
    """Run a trained network on DN images: ``(ms_lr (C,h,w), pan (1,H,W), lms=None) -> (C,H,W)`` float64 DN.

    Inputs are divided by ``2**bits - 1`` (``bits`` of the training data, from the checkpoint), ``lms`` is
    computed with :func:`binsharp.protocol.interp23tap` when not given, the model runs in eval mode without
    gradients (float32, on ``device``) and its output is multiplied back by ``2**bits - 1``. The output is not
    clipped.

    Attributes:
        name: ``"<model>"`` (``model_name`` from the checkpoint).
        bands: MS band count the model takes.
        ratio: PAN/MS ratio of the training data.
        bits: radiometric depth used for normalisation.
        halo: tile overlap (PAN pixels) for tiled inference (the model's ``halo`` attribute if it has one).
        meta: the checkpoint metadata.
        model: the loaded network.
    """

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", bits: int | None = None) -> None:
        from binsharp.models import load_checkpoint

        self.path = Path(path)
        self.model, self.meta = load_checkpoint(self.path, device=device)
        self.device = device
        self.name = str(self.meta["model"])
        self.bands: int | None = int(self.meta["bands"])
        self.ratio = int(self.meta.get("ratio") or 4)
        b = bits if bits is not None else self.meta.get("bits")
        if b is None:
            raise BinsharpError(f"checkpoint {self.path} does not state the bit depth of its training data")
        self.bits = int(b)
        self.halo = int(getattr(self.model, "halo", DEFAULT_HALO))

    def __call__(self, ms_lr: np.ndarray, pan: np.ndarray, lms: np.ndarray | None = None) -> np.ndarray:
        """Fuse ``ms_lr`` (C,h,w) and ``pan`` (1,H,W), both DN; ``lms`` (C,H,W) DN optional."""
        import torch

        from binsharp.protocol import interp23tap

        ms_lr = np.asarray(ms_lr, dtype=np.float64)
        pan = np.asarray(pan, dtype=np.float64)
        check_fuser_inputs(ms_lr, pan, lms, bands=self.bands, ratio=self.ratio, name=self.name)
        lms_a = np.asarray(lms, dtype=np.float64) if lms is not None else interp23tap(ms_lr, self.ratio)
        scale = float(2**self.bits - 1)

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a / scale, dtype=np.float32))[None].to(self.device)

        self.model.eval()
        with torch.no_grad():
            out = self.model(ms=t(ms_lr), lms=t(lms_a), pan=t(pan))
        return out[0].double().cpu().numpy() * scale

    def __repr__(self) -> str:
        return (
            f"CheckpointFuser({str(self.path)!r}, model={self.name!r}, bands={self.bands}, bits={self.bits})"
        )


def checkpoint_fuser(
    path: str | os.PathLike,
    *,
    sensor: Any = None,
    ratio: int | None = None,
    bits: int | None = None,
    device: str = "cpu",
    check_sensor: bool = False,
) -> CheckpointFuser:
    """Load the binsharp checkpoint at ``path`` as a fuser.

    When the data's ``sensor`` (a :class:`binsharp.sensors.Sensor` or name), ``ratio`` or ``bits`` are known
    they are checked against the checkpoint's training data: another band count (from the sensor; also
    checked on every call), bit depth (``bits``, else the sensor's) or ratio raises :class:`BinsharpError`.
    Another sensor of the same bands and bits (cross-sensor evaluation, e.g. a WV3 model on WV2 data) only
    warns, unless ``check_sensor`` makes it an error too.
    """
    from binsharp.weights import check_compatible

    fuser = CheckpointFuser(path, device=device)
    if isinstance(sensor, str):
        from binsharp.sensors import get_sensor

        sensor = get_sensor(sensor)
    s_name = getattr(sensor, "name", sensor)
    s_bits = getattr(sensor, "bits", None)
    s_bands = getattr(sensor, "n_bands", None)
    source = f"checkpoint {path}"
    check_compatible(
        fuser.meta,
        bands=s_bands,
        bits=bits if bits is not None else s_bits,
        ratio=ratio,
        source=source,
    )
    if s_name is not None:
        try:
            check_compatible(fuser.meta, sensor=str(s_name), source=source)
        except BinsharpError as exc:
            if check_sensor:
                raise
            warnings.warn(f"{exc} (cross-sensor use)", stacklevel=2)
    return fuser


def _factory(value: str, args: Any, *, sensor: Any = None, ratio: int | None = None) -> CheckpointFuser:
    device = getattr(args, "device", None) or "cpu"
    return checkpoint_fuser(value, sensor=sensor, ratio=ratio, device=str(device))


register_fuser_source(
    "checkpoint",
    _factory,
    metavar="CKPT",
    help="trained network: a binsharp checkpoint (model.safetensors written by 'binsharp train')",
)
