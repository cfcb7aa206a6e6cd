"""Training engine (PyTorch Lightning), run configurations and safe checkpoints.

* :func:`train` (:mod:`binsharp.train.engine`): run a model's (multi-stage) recipe on a dataset, with
  resumable stages, CSV/TensorBoard logs, validation indexes and a final safetensors checkpoint.
* :class:`PanSharpeningTask` (:mod:`binsharp.train.task`): the LightningModule of one stage, and the
  optional model hook protocol (``training_loss``, ``after_optimizer_step``, ...).
* :class:`PanDataModule`, :func:`resolve_data`, :class:`EpochSampler` (:mod:`binsharp.train.data`): loaders
  over dataset splits with a resumable, rank-sharded shuffling order.
* :mod:`binsharp.train.recipe`: recipe/config format, :class:`Stage`, merging rules.
* :mod:`binsharp.train.resume`: resumable Lightning checkpoints, loaded without unpickling objects. The
  final weights use the format of :mod:`binsharp.weights` (safetensors + JSON metadata, never pickle).

Attributes are imported lazily: ``import binsharp.train`` alone loads neither torch nor Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train": "binsharp.train.engine",
    "TrainResult": "binsharp.train.engine",
    "WeightSyncCheck": "binsharp.train.engine",
    "PanSharpeningTask": "binsharp.train.task",
    "PanDataModule": "binsharp.train.data",
    "EpochSampler": "binsharp.train.data",
    "DataInfo": "binsharp.train.data",
    "resolve_data": "binsharp.train.data",
    "Stage": "binsharp.train.recipe",
    "RunConfig": "binsharp.train.recipe",
    "build_run_config": "binsharp.train.recipe",
    "resolve_stages": "binsharp.train.recipe",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'binsharp.train' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))
