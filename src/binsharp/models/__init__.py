"""Pan-sharpening networks and their registry.

``create(name, bands=8, pretrained=None, **kw)`` builds a registered model (``load_checkpoint(path)`` and
``load_pretrained(name, dataset)`` with trained weights, see :mod:`binsharp.models.pretrained`),
``list_models(kind=None)`` lists the names (``kind`` = ``"fp"`` or ``"binary"``), ``model_info(name)``
describes one (paper, defaults, training recipe, inputs), ``register_model(name, kind, recipe=...)``
registers a new one.

Every model is called as ``model(ms=..., lms=..., pan=...)`` with tensors normalised to ``[0, 1]``
(see :mod:`binsharp.models.base`) and returns (B, C, H, W).

Modules
-------
fp_baselines      PNN, PanNet, DiCNN, FusionNet, MSDCNN (full precision)
units             binary units (BNN, BinaryConnect, Bi-Real, IR-Net, ReActNet, BTM, BBCU, E2FIF, BiSR-Conv,
                  FABNet block), each C -> C with an optional identity path
bodies            binary bodies: a plain stack of units, the BiSRNet U body (``BinaryUNetBody``, parameterised
                  by a unit factory), the FABNet wavelet body
binary_baselines  the shared binary backbone and the registered binary baselines
registry          the registry; recipes: default training recipes; pretrained: loading trained weights

Every other module of this package is imported on first use of the package, so that a new model file only
needs to decorate its factory with :func:`register_model`.
"""

from __future__ import annotations

import importlib
import pkgutil

from binsharp.models.base import PanModel, example_inputs, quantizers_removed, strip_quantizers
from binsharp.models.pretrained import load_checkpoint, load_pretrained
from binsharp.models.registry import create, list_models, model_info, register_model

__all__ = [
    "PanModel",
    "create",
    "load_checkpoint",
    "load_pretrained",
    "list_models",
    "model_info",
    "register_model",
    "example_inputs",
    "quantizers_removed",
    "strip_quantizers",
]

_CORE = ("fp_baselines", "binary_baselines")
_SKIP = {"base", "registry", "recipes", "pretrained", "units", "bodies", *_CORE}


def _import_model_modules() -> None:
    for name in _CORE:
        importlib.import_module(f"{__name__}.{name}")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in _SKIP:
            continue
        importlib.import_module(f"{__name__}.{info.name}")


_import_model_modules()
