"""A trained binsharp checkpoint as a :class:`binsharp.inference.fuser.Fuser`.

Heavy imports (torch, the model registry) happen when a checkpoint is loaded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from binsharp.errors import BinsharpError
from binsharp.inference.fuser import DEFAULT_HALO, fuse_normalised, sensor_from_meta
from binsharp.sensors import Sensor, get_sensor


class CheckpointFuser:
    """Run a trained network on DN images: ``(ms_lr (C,h,w), pan (1,H,W), lms=None) -> (C,H,W)`` float64 DN.

    Inputs are divided by ``2**bits - 1`` (``bits`` of the training data, from the checkpoint), ``lms`` is
    computed with :func:`binsharp.protocol.interp23tap` when not given, the model runs in eval mode without
    gradients (float32, on ``device``) and its output is multiplied back by ``2**bits - 1``
    (:func:`~binsharp.inference.fuser.fuse_normalised`). The output is not clipped.

    Attributes:
        name: ``"<model>"`` (``model_name`` from the checkpoint).
        bands: MS band count the model takes.
        ratio: PAN/MS ratio of the training data.
        sensor: sensor of the training data when the checkpoint names one of the table (else None).
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
        self.sensor: Sensor | None = sensor_from_meta(self.meta)
        self.ratio = int(self.meta.get("ratio") or (self.sensor.ratio if self.sensor else 4))
        b = bits if bits is not None else self.meta.get("bits")
        if b is None:
            raise BinsharpError(f"checkpoint {self.path} does not state the bit depth of its training data")
        self.bits = int(b)
        self.halo = int(getattr(self.model, "halo", DEFAULT_HALO))

    def __call__(self, ms_lr: np.ndarray, pan: np.ndarray, lms: np.ndarray | None = None) -> np.ndarray:
        """Fuse ``ms_lr`` (C,h,w) and ``pan`` (1,H,W), both DN; ``lms`` (C,H,W) DN optional."""
        import torch

        def network(**inputs: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                out = self.model(**{k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()})
            return out.double().cpu().numpy()

        self.model.eval()
        return fuse_normalised(self, network, ms_lr, pan, lms)

    def __repr__(self) -> str:
        return (
            f"CheckpointFuser({str(self.path)!r}, model={self.name!r}, bands={self.bands}, bits={self.bits})"
        )


def checkpoint_fuser(
    path: str | os.PathLike,
    *,
    sensor: Sensor | str | None = None,
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
        sensor = get_sensor(sensor)
    s_name = sensor.name if sensor is not None else None
    s_bits = sensor.bits if sensor is not None else None
    s_bands = sensor.n_bands if sensor is not None else None
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
