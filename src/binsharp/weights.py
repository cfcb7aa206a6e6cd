"""The weights format: safetensors weights with binsharp metadata (write, read, compatibility checks).

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
header of the safetensors file. Loading never executes code: safetensors holds raw tensors only.

This module sits below :mod:`binsharp.models` and imports neither the models nor Lightning:
:func:`binsharp.models.load_checkpoint` rebuilds a model from a file, :mod:`binsharp.zoo` indexes the
pretrained files, and the resumable training checkpoints (``*.ckpt``) belong to :mod:`binsharp.train.resume`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
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
        "bands": int(cast(Any, model).bands),
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
