"""Pretrained zoo models as fusers (``binsharp evaluate|fuse --model NAME --pretrained DATASET``).

The checkpoint comes from :mod:`binsharp.zoo` and runs through
:class:`binsharp.inference.checkpoint.CheckpointFuser`.
"""

from __future__ import annotations

from binsharp.inference.checkpoint import CheckpointFuser
from binsharp.sensors import Sensor, get_sensor

#: Dataset used when ``--pretrained`` is not given.
DEFAULT_PRETRAINED = "wv3-longmont"


def pretrained_fuser(
    model: str,
    dataset: str = DEFAULT_PRETRAINED,
    *,
    sensor: Sensor | str | None = None,
    ratio: int | None = None,
    device: str = "cpu",
    check_sensor: bool = True,
) -> CheckpointFuser:
    """A :class:`~binsharp.inference.checkpoint.CheckpointFuser` running ``model`` pretrained on ``dataset``.

    Args:
        model: registered model name.
        dataset: training dataset of the zoo checkpoint (e.g. ``"wv3-longmont"``).
        sensor: sensor (or name) of the data to fuse; checked against the training data when
            ``check_sensor`` (bands and bit depth are always checked when known).
        ratio: PAN/MS ratio of the data, checked when given.
        device: torch device.
        check_sensor: refuse data of another sensor (``False`` for cross-sensor evaluation).

    Raises :class:`BinsharpError` when the zoo has no such checkpoint (naming what it has) or the data
    does not fit the model.
    """
    from binsharp.weights import check_compatible
    from binsharp.zoo import checkpoint_path

    path = checkpoint_path(model, dataset)
    fuser = CheckpointFuser(path, device=device)
    if isinstance(sensor, str):
        sensor = get_sensor(sensor)
    check_compatible(
        fuser.meta,
        bands=sensor.n_bands if sensor is not None else None,
        bits=sensor.bits if sensor is not None else None,
        sensor=str(sensor.name) if (check_sensor and sensor is not None) else None,
        ratio=ratio,
        source=f"pretrained {model} ({dataset})",
    )
    return fuser
