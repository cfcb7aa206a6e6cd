"""Inference: everything that pan-sharpens an image, behind one protocol.

* :mod:`binsharp.inference.fuser` -- the :class:`Fuser` protocol (``name``, ``bands``, ``ratio``,
  ``sensor``, ``bits``, ``halo``; DN in, DN out), the DN <-> normalised conversion of the networks
  (:func:`to_unit`, :func:`from_unit`, :func:`fuse_normalised`) and the classical methods
  (:func:`method_fuser`).
* :mod:`binsharp.inference.checkpoint` -- a trained checkpoint (:func:`checkpoint_fuser`).
* :mod:`binsharp.inference.engine` -- a ``.bsp`` model on the packed engine (:func:`engine_fuser`).
* :mod:`binsharp.inference.pretrained` -- a model-zoo checkpoint (:func:`pretrained_fuser`).
* :mod:`binsharp.inference.tiling` -- tiled fusion of large scenes and GeoTIFF pairs
  (:func:`fuse_array_tiled`, :func:`fuse_geotiff`).

Torch, the models and the engine kernels are imported when a network fuser is built, not here.
"""

from binsharp.inference.checkpoint import CheckpointFuser, checkpoint_fuser
from binsharp.inference.engine import EngineFuser, engine_fuser
from binsharp.inference.fuser import (
    DEFAULT_HALO,
    Fuser,
    MethodFuser,
    check_bands,
    check_fuser_inputs,
    classical_methods,
    from_unit,
    fuse_normalised,
    method_fuser,
    sensor_from_meta,
    to_unit,
)
from binsharp.inference.pretrained import DEFAULT_PRETRAINED, pretrained_fuser
from binsharp.inference.tiling import fuse_array_tiled, fuse_geotiff

__all__ = [
    "DEFAULT_HALO",
    "DEFAULT_PRETRAINED",
    "CheckpointFuser",
    "EngineFuser",
    "Fuser",
    "MethodFuser",
    "check_bands",
    "check_fuser_inputs",
    "checkpoint_fuser",
    "classical_methods",
    "engine_fuser",
    "from_unit",
    "fuse_array_tiled",
    "fuse_geotiff",
    "fuse_normalised",
    "method_fuser",
    "pretrained_fuser",
    "sensor_from_meta",
    "to_unit",
]
