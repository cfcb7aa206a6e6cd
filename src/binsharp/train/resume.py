"""Resumable training checkpoints (Lightning ``*.ckpt``), loaded safely.

The resumable checkpoints written during training are read with ``torch.load(weights_only=True)`` only
(:func:`load_resume_checkpoint`, :class:`SafeCheckpointIO`), which refuses pickled objects. The final
weights of a run use the safetensors format of :mod:`binsharp.weights`.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from binsharp.errors import BinsharpError


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers/primitives only.

    A pickle that would construct arbitrary objects or run code is refused with :class:`BinsharpError`,
    as is a missing or corrupt file.
    """
    p = Path(path)
    if not p.is_file():
        raise BinsharpError(f"checkpoint not found: {p}")
    try:
        ckpt = torch.load(str(p), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise BinsharpError(
            f"refusing to load {p}: not a plain-tensor checkpoint (only weights are loaded, never code): "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError) as exc:
        raise BinsharpError(f"corrupt checkpoint {p}: {exc}") from exc
    return ckpt


def load_resume_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a resumable training checkpoint (``*.ckpt``) with :func:`safe_torch_load` and check that it
    holds a ``state_dict`` and a ``global_step``; raises :class:`BinsharpError` otherwise."""
    p = Path(path)
    if not p.is_file():
        raise BinsharpError(f"resume checkpoint not found: {p}")
    ckpt = safe_torch_load(p, map_location=map_location)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "global_step" not in ckpt:
        raise BinsharpError(f"{p} is not a training checkpoint (no state_dict/global_step)")
    return ckpt


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that always loads with ``weights_only=True`` (:func:`safe_torch_load`)."""

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return safe_torch_load(path, map_location=map_location if map_location is not None else "cpu")
