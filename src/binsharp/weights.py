"""Safe model checkpoints: safetensors weights with binsharp metadata, and safe resume-checkpoint loading.

Format of a binsharp checkpoint (``model.safetensors``)
-------------------------------------------------------
A plain `safetensors <https://github.com/huggingface/safetensors>`_ file: the model's ``state_dict``
(parameters and persistent buffers, float32 unless the model stores otherwise) plus, in the safetensors
header's string metadata, one key ``"binsharp"`` whose value is a JSON object:

=================  ===========================================================================
``format``         ``"binsharp-checkpoint"``
``format_version`` ``1``
``model``          registered model name (``binsharp.models.create`` rebuilds it)
``config``         the model's constructor keyword arguments (``model.config``)
``bands``          number of MS bands the model takes
``kind``           ``"fp"`` or ``"binary"``
``sensor``         sensor name of the training data (or ``null``)
``bits``           radiometric depth of the training data; inputs are normalised by ``2**bits - 1``
``ratio``          PAN/MS resolution ratio
``data_manifest``  the training dataset's ``manifest.json`` (a mapping; ``{}`` when unknown)
``recipe``         the resolved training stages (list of mappings)
``step``           total optimiser steps the weights have seen
``binsharp_version``, ``torch_version``, ``created`` (UTC, ISO 8601), and any extra keys given
=================  ===========================================================================

A copy of the metadata is written beside the weights as ``<name>.json`` for reading; loading uses only the
header of the safetensors file. Loading never executes code: safetensors holds raw tensors only. The
resumable Lightning checkpoints (``*.ckpt``) are read with ``torch.load(weights_only=True)`` only
(:func:`load_resume_checkpoint`, :class:`SafeCheckpointIO`), which refuses pickled objects.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from binsharp import __version__
from binsharp.errors import BinsharpError
from binsharp.fileio import atomic_output

FORMAT = "binsharp-checkpoint"
FORMAT_VERSION = 1
META_KEY = "binsharp"

_REQUIRED = ("model", "config", "bands")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | set):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def build_meta(model: torch.nn.Module, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The metadata mapping written for ``model``: its name, config, bands and kind, then ``meta``.

    ``meta`` supplies (and may override) ``sensor``, ``bits``, ``ratio``, ``data_manifest``, ``recipe``,
    ``step`` and any extra JSON-serialisable keys.
    """
    name = getattr(model, "model_name", None)
    if not name:
        raise BinsharpError("model has no model_name: only registered binsharp models can be checkpointed")
    out: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": name,
        "config": dict(getattr(model, "config", {}) or {}),
        "bands": int(model.bands),
        "kind": getattr(model, "kind", None),
        "sensor": None,
        "bits": None,
        "ratio": 4,
        "data_manifest": {},
        "recipe": None,
        "step": 0,
        "binsharp_version": __version__,
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    for key, value in (meta or {}).items():
        if key in ("format", "format_version"):
            continue
        out[key] = value
    return out


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    meta: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``model``'s weights and metadata to ``path`` (``.safetensors``) and ``path`` with ``.json``.

    Args:
        path: output file; must not exist unless ``overwrite``.
        model: a registered binsharp model (has ``model_name``, ``bands``, ``config``).
        meta: training metadata, see the module docstring (``sensor``, ``bits``, ``ratio``, ``data_manifest``,
            ``recipe``, ``step``, ...).
        overwrite: replace existing files.

    Returns:
        The path written. Both files are written atomically.
    """
    out = Path(path)
    full = build_meta(model, meta)
    try:
        text = json.dumps(full, default=_json_default, sort_keys=True)
    except TypeError as exc:
        raise BinsharpError(f"checkpoint metadata is not JSON-serialisable: {exc}") from exc
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_output(out, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: text})
    with atomic_output(out.with_suffix(".json"), overwrite=overwrite) as tmp:
        tmp.write_text(
            json.dumps(full, default=_json_default, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    return out


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate the metadata of the checkpoint at ``path`` without loading any weight.

    Raises :class:`BinsharpError` when the file is missing, not a safetensors file, truncated, or carries
    no binsharp metadata.
    """
    p = Path(path)
    if not p.is_file():
        raise BinsharpError(f"checkpoint not found: {p}")
    try:
        with safe_open(str(p), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise BinsharpError(f"not a binsharp checkpoint (unreadable safetensors file {p}: {exc})") from exc
    if META_KEY not in header:
        raise BinsharpError(f"not a binsharp checkpoint: {p} has no binsharp metadata")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as exc:
        raise BinsharpError(f"corrupt checkpoint metadata in {p}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else meta
        raise BinsharpError(f"not a binsharp checkpoint: {p} (format {fmt!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise BinsharpError(
            f"checkpoint {p} has format version {meta['format_version']}; "
            f"this binsharp reads up to {FORMAT_VERSION}"
        )
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise BinsharpError(f"corrupt checkpoint metadata in {p}: missing {', '.join(missing)}")
    return meta


def load_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read all tensors of the safetensors file at ``path`` (CPU); BinsharpError for a corrupt file."""
    p = Path(path)
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(p), framework="pt", device="cpu") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                tensors[key] = f.get_tensor(key)
        return tensors
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise BinsharpError(f"corrupt checkpoint {p}: {exc}") from exc


def load_checkpoint(
    path: str | os.PathLike, *, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model saved at ``path`` and load its weights.

    The model is created with ``binsharp.models.create(meta["model"], bands=meta["bands"], **meta["config"])``
    and its state dict loaded strictly (every tensor present, same shapes). The model is returned in eval
    mode.

    Returns:
        ``(model, meta)``. Raises :class:`BinsharpError` for a missing, corrupt, truncated or foreign file,
        an unknown model name, or weights that do not fit the rebuilt model.
    """
    from binsharp import models

    meta = read_meta(path)
    state = load_state(path)
    config = dict(meta.get("config") or {})
    config.pop("bands", None)
    try:
        model = models.create(meta["model"], bands=int(meta["bands"]), **config)
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


def check_compatible(
    meta: Mapping[str, Any],
    *,
    bands: int | None = None,
    bits: int | None = None,
    sensor: str | None = None,
    ratio: int | None = None,
    source: str = "checkpoint",
) -> None:
    """Refuse (BinsharpError) input data that does not match the checkpoint's training data.

    Each argument left ``None`` is not checked; ``sensor`` is checked only when both sides name one
    (a custom sensor name ``"custom"`` matches anything with the same bands and bits).
    """
    name = meta.get("model", "?")
    if bands is not None and int(meta["bands"]) != int(bands):
        raise BinsharpError(
            f"{source}: model {name!r} takes {meta['bands']}-band MS images, the input has {bands} bands"
        )
    if bits is not None and meta.get("bits") is not None and int(meta["bits"]) != int(bits):
        raise BinsharpError(
            f"{source}: model {name!r} was trained on {meta['bits']}-bit data, the input is {bits}-bit"
        )
    if ratio is not None and meta.get("ratio") is not None and int(meta["ratio"]) != int(ratio):
        raise BinsharpError(
            f"{source}: model {name!r} was trained for ratio {meta['ratio']}, the input has ratio {ratio}"
        )
    if sensor is not None and meta.get("sensor") not in (None, "", "custom") and sensor.lower() != "custom":
        from binsharp.sensors import get_sensor

        try:
            a, b = get_sensor(str(meta["sensor"])).name, get_sensor(sensor).name
        except BinsharpError:
            a, b = str(meta["sensor"]).upper(), sensor.upper()
        if a != b:
            raise BinsharpError(f"{source}: model {name!r} was trained on {a} data, the input is from {b}")


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
