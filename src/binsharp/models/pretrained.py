"""Models with trained weights: a binsharp checkpoint file, or a model-zoo checkpoint by name and dataset.

:func:`load_checkpoint` rebuilds the registered model a ``.safetensors`` checkpoint names (format:
:mod:`binsharp.weights`) and loads its weights; :func:`load_pretrained` does the same for a checkpoint of
the model zoo (:mod:`binsharp.zoo`), whose SHA-256 is checked first. Neither imports Lightning or
:mod:`binsharp.train`: loading a model needs only the model registry and the weights format.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from binsharp import zoo
from binsharp.errors import BinsharpError
from binsharp.models.base import PanModel
from binsharp.models.registry import create
from binsharp.weights import load_state, read_meta

__all__ = ["load_checkpoint", "load_pretrained"]


def load_checkpoint(
    path: str | os.PathLike, *, device: str | torch.device = "cpu"
) -> tuple[PanModel, dict[str, Any]]:
    """Rebuild the model saved at ``path`` and load its weights.

    The model is created with ``binsharp.models.create(meta["model"], bands=meta["bands"], **meta["config"])``
    and its state dict loaded strictly (every tensor present, same shapes). The model is returned in eval
    mode.

    Returns:
        ``(model, meta)``. Raises :class:`BinsharpError` for a missing, corrupt, truncated or foreign file,
        an unknown model name, or weights that do not fit the rebuilt model.
    """
    meta = read_meta(path)
    state = load_state(path)
    config = dict(meta.get("config") or {})
    config.pop("bands", None)
    try:
        model = create(meta["model"], bands=int(meta["bands"]), **config)
    except BinsharpError as exc:
        raise BinsharpError(f"checkpoint {path}: cannot rebuild model {meta['model']!r}: {exc}") from exc
    except TypeError as exc:
        raise BinsharpError(f"checkpoint {path}: config does not fit model {meta['model']!r}: {exc}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise BinsharpError(
            f"checkpoint {path} does not match model {meta['model']!r}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, value in expected.items():
        if tuple(value.shape) != tuple(state[key].shape):
            raise BinsharpError(
                f"checkpoint {path} does not match model {meta['model']!r}: tensor {key} has shape "
                f"{tuple(state[key].shape)}, the model expects {tuple(value.shape)}"
            )
    model.load_state_dict(state, strict=True)
    model.to(device)
    model.eval()
    return model, meta


def load_pretrained(
    model: str,
    dataset: str,
    *,
    bands: int | None = None,
    root: str | os.PathLike | None = None,
    device: str = "cpu",
    **kwargs: Any,
) -> tuple[PanModel, dict[str, Any]]:
    """Build ``model`` with the weights pretrained on ``dataset``; returns ``(model, checkpoint meta)``.

    The model is rebuilt from the checkpoint's own configuration and returned in eval mode. ``bands`` and
    architecture ``kwargs``, when given, must equal the checkpoint's (BinsharpError otherwise: pretrained
    weights fit one architecture only).
    """
    path = zoo.checkpoint_path(model, dataset, root)
    net, meta = load_checkpoint(path, device=device)
    config = dict(meta.get("config") or {})
    if bands is not None and int(bands) != int(meta["bands"]):
        raise BinsharpError(
            f"pretrained {meta['model']!r} ({dataset}) takes {meta['bands']} bands, not {bands}"
        )
    for key, value in kwargs.items():
        if key not in config:
            raise BinsharpError(f"model {meta['model']!r} has no argument {key!r}")
        if json.loads(json.dumps(value)) != config[key]:
            raise BinsharpError(
                f"pretrained {meta['model']!r} ({dataset}) was trained with {key}={config[key]!r}, "
                f"not {value!r}; build it without pretrained weights to change the architecture"
            )
    return net, meta
