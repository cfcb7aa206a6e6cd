"""Pretrained zoo models as fusers: the ``--model NAME --pretrained DATASET`` source of the command line.

Importing this module (listed in :data:`binsharp.inference.fuser.FUSER_PLUGIN_MODULES`) registers the fuser
source ``model``
(``binsharp evaluate --model s2bnet --pretrained wv3-longmont --data ...``,
``binsharp fuse --model s2bnet --pretrained wv3-longmont --pan ... --ms ...``).
The checkpoint comes from :mod:`binsharp.zoo` and runs through
:class:`binsharp.inference.checkpoint.CheckpointFuser` (heavy imports happen in the factory only).
"""

from __future__ import annotations

import argparse
from typing import Any

from binsharp.errors import BinsharpError
from binsharp.inference.fuser import register_fuser_source

#: Dataset used when ``--pretrained`` is not given.
DEFAULT_PRETRAINED = "wv3-longmont"


def pretrained_fuser(
    model: str,
    dataset: str = DEFAULT_PRETRAINED,
    *,
    sensor: Any = None,
    ratio: int | None = None,
    device: str = "cpu",
    check_sensor: bool = True,
) -> Any:
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
    from binsharp.inference.checkpoint import CheckpointFuser
    from binsharp.weights import check_compatible
    from binsharp.zoo import checkpoint_path

    path = checkpoint_path(model, dataset)
    fuser = CheckpointFuser(path, device=device)
    if isinstance(sensor, str):
        from binsharp.sensors import get_sensor

        sensor = get_sensor(sensor)
    check_compatible(
        fuser.meta,
        bands=getattr(sensor, "n_bands", None),
        bits=getattr(sensor, "bits", None),
        sensor=str(sensor.name) if (check_sensor and sensor is not None) else None,
        ratio=ratio,
        source=f"pretrained {model} ({dataset})",
    )
    return fuser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pretrained",
        metavar="DATASET",
        default=None,
        help=f"training dataset of the --model weights in the model zoo (default {DEFAULT_PRETRAINED})",
    )


def _factory(value: str, args: Any, *, sensor: Any = None, ratio: int | None = None) -> Any:
    dataset = getattr(args, "pretrained", None) or DEFAULT_PRETRAINED
    device = getattr(args, "device", None) or "cpu"
    if not value or not value.strip():
        raise BinsharpError("--model needs a model name (e.g. --model s2bnet)")
    return pretrained_fuser(value.strip().lower(), dataset, sensor=sensor, ratio=ratio, device=str(device))


register_fuser_source(
    "model",
    _factory,
    metavar="NAME",
    help="pretrained network from the model zoo (with --pretrained DATASET, default wv3-longmont)",
    add_arguments=_add_arguments,
)
