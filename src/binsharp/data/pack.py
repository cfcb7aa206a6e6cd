"""A scene packed into one compact file, so that a dataset can be rebuilt where its sources are not installed.

A machine without ``dgsamples`` or ``rasterio`` (e.g. a GPU machine without network access) cannot build
the named datasets of :mod:`binsharp.data.catalog`. :func:`pack_dataset` stores what the builder reads, the
PAN and MS pixel arrays of the scene (uint16 DN, after the pair check of
:func:`binsharp.data.io.read_pan_ms_pair`), losslessly compressed in one ``.npz`` file together with the
builder settings; :func:`build_from_pack` runs the same :func:`binsharp.data.builder.build_dataset` on them.
The patches, the reduced-resolution simulation (MTF filtering, decimation, interpolation) and the splits are
therefore computed by the same protocol code from the same pixels: the rebuilt ``train``/``val`` files hold
the same arrays as the catalog build (tested). The scene of ``wv3-longmont`` packs into 18.8 MiB.

File layout (``np.savez_compressed``, no pickled objects): ``pan`` (1, H, W), ``ms`` (C, H/r, W/r) in the
source dtype, and ``meta``: UTF-8 JSON bytes with ``format``, ``name``, ``sensor``, ``ratio``,
``build_kwargs``, ``nodata_pan``, ``nodata_ms``, ``crs``, ``transform_pan``, ``transform_ms`` (for the
record) and ``sha256`` of each array (checked when the file is read).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from binsharp.errors import BinsharpError

__all__ = ["PACK_FORMAT", "pack_scene", "pack_dataset", "read_pack", "build_from_pack"]

PACK_FORMAT = "binsharp-scene-pack/1"


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def pack_scene(
    pan: Any,
    ms: Any,
    path: str | os.PathLike,
    *,
    name: str,
    sensor: str,
    ratio: int = 4,
    build_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the rasters ``pan`` (1, H, W) and ``ms`` (C, H/ratio, W/ratio) (:class:`binsharp.data.io.Raster`,
    DN) and the builder settings to ``path`` (an ``.npz`` file, written atomically). Returns the metadata."""
    path = Path(path)
    if not path.parent.is_dir():
        raise BinsharpError(f"output folder does not exist: {path.parent}")
    meta = {
        "format": PACK_FORMAT,
        "name": name,
        "sensor": sensor,
        "ratio": int(ratio),
        "build_kwargs": dict(build_kwargs or {}),
        "nodata_pan": pan.nodata,
        "nodata_ms": ms.nodata,
        "crs": pan.crs.to_string() if pan.crs is not None else None,
        "transform_pan": [float(v) for v in tuple(pan.transform)[:6]] if pan.transform is not None else None,
        "transform_ms": [float(v) for v in tuple(ms.transform)[:6]] if ms.transform is not None else None,
        "sha256": {"pan": _digest(pan.array), "ms": _digest(ms.array)},
    }
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("wb") as f:
        np.savez_compressed(
            f, pan=pan.array, ms=ms.array, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        )
    os.replace(tmp, path)
    return meta


def pack_dataset(name: str, path: str | os.PathLike) -> dict[str, Any]:
    """Pack the source scene of the named dataset ``name`` (:mod:`binsharp.data.catalog`, needs ``dgsamples``
    and ``rasterio``) with its builder settings into ``path``. Returns the metadata."""
    from binsharp.data import catalog
    from binsharp.data.io import read_pan_ms_pair

    spec = catalog.CATALOG.get(str(name).strip().lower())
    if spec is None:
        raise BinsharpError(f"unknown dataset {name!r}; known: {', '.join(catalog.list_datasets())}")
    pan_path, ms_path = catalog.source_files(spec.name)
    pan, ms = read_pan_ms_pair(pan_path, ms_path, ratio=4)
    return pack_scene(pan, ms, path, name=spec.name, sensor=spec.sensor, build_kwargs=spec.build_kwargs)


def read_pack(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(pan, ms, meta)`` of a pack file, with the array checksums verified (no pickle is ever loaded)."""
    path = Path(path)
    if not path.is_file():
        raise BinsharpError(f"pack file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            pan, ms = z["pan"], z["ms"]
            meta = json.loads(z["meta"].tobytes().decode())
    except (OSError, ValueError, KeyError) as exc:
        raise BinsharpError(f"{path} is not a binsharp pack file ({exc})") from exc
    if meta.get("format") != PACK_FORMAT:
        raise BinsharpError(f"{path}: unknown pack format {meta.get('format')!r} (expected {PACK_FORMAT})")
    for key, arr in (("pan", pan), ("ms", ms)):
        if _digest(arr) != meta["sha256"][key]:
            raise BinsharpError(f"{path}: the {key} array does not match its checksum (corrupt file)")
    return pan, ms, meta


def build_from_pack(
    path: str | os.PathLike, out_dir: str | os.PathLike, *, progress: bool = True, overwrite: bool = False
) -> dict[str, Any]:
    """Build the dataset of a pack file into ``out_dir`` with :func:`binsharp.data.builder.build_dataset` and
    the packed settings (no ``rasterio`` needed). Returns the dataset manifest, which records the pack file
    under ``pack``."""
    from binsharp.data.builder import _dump_manifest, build_dataset, read_manifest
    from binsharp.data.io import Raster

    pan, ms, meta = read_pack(path)
    build_dataset(
        Raster(pan, nodata=meta.get("nodata_pan")),
        Raster(ms, nodata=meta.get("nodata_ms")),
        sensor=meta["sensor"],
        out_dir=out_dir,
        ratio=int(meta["ratio"]),
        name=meta["name"],
        progress=progress,
        overwrite=overwrite,
        **meta["build_kwargs"],
    )
    manifest_path = Path(out_dir) / "manifest.json"
    record = read_manifest(manifest_path)
    record["pack"] = {"file": Path(path).name, "format": meta["format"], "sha256": meta["sha256"]}
    manifest_path.write_text(_dump_manifest(record), encoding="utf-8")
    return record
