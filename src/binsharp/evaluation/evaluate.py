"""Evaluation of fusers on test sets: loading, quality indexes per image, summary tables and files.

A named dataset is evaluated on its reduced-resolution test split (``test_rr``: the reduced-resolution
indexes of the fused images against ``gt``) and its full-resolution test split (``test_fr``: the
full-resolution indexes with the sensor's MTF). A PanCollection h5 path is a reduced-resolution set if it
holds ``gt`` and a full-resolution one otherwise. :func:`fused_reader` reads images fused elsewhere.
:func:`format_table` shows mean +- std per method and index; :func:`build_report` adds per-image values
and the settings (written by :func:`binsharp.fileio.write_json`); :func:`write_csv` writes one row per
(split, method, image, index).
``binsharp evaluate`` is the command line of this module.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binsharp import __version__
from binsharp.errors import BinsharpError
from binsharp.fileio import atomic_output, sha256_file
from binsharp.inference import Fuser
from binsharp.progress import show_progress
from binsharp.sensors import Sensor, sensor_from_options

SPLITS = {"rr": "test_rr", "fr": "test_fr"}
#: Default block size of the Q2n/QNR indexes and border cut of the reduced-resolution indexes.
BLOCK = 32
DIM_CUT = 21


@dataclass
class TestSet:
    """One test split loaded in memory.

    Attributes:
        split: ``"rr"`` (reduced resolution, has ``gt``) or ``"fr"`` (full resolution).
        path: the h5 file.
        arrays: ``gt`` (N,C,H,W) for rr, ``ms`` (N,C,h,w), ``lms`` (N,C,H,W), ``pan`` (N,1,H,W), DN.
        sensor, ratio, bits: acquisition settings.
        manifest_id: identifier of the data (see :func:`data_manifest_id`).
    """

    split: str
    path: Path
    arrays: dict[str, np.ndarray]
    sensor: Sensor
    ratio: int
    bits: int
    manifest_id: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return int(self.arrays["ms"].shape[0])

    @property
    def n_bands(self) -> int:
        return int(self.arrays["ms"].shape[1])


# ----------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------


def data_manifest_id(h5_path: Path) -> str:
    """Identifier of a test file: ``sha256:`` + 16 hex digits of its dataset's ``manifest.json`` (when the
    file sits in a built dataset directory) or of the h5 file's bytes otherwise."""
    manifest = h5_path.parent / "manifest.json"
    target = manifest if manifest.is_file() else h5_path
    return f"sha256:{sha256_file(target)[:16]}"


def looks_like_path(data: str) -> bool:
    """Whether ``data`` names a file (an existing path, an ``.h5`` name or a path with a separator) rather
    than a named dataset."""
    p = Path(data)
    return p.exists() or p.suffix.lower() in (".h5", ".hdf5") or os.sep in data


def resolve_sensor(
    attrs: dict[str, Any], given: str | Sensor | None, n_bands: int, where: str, *, bits: int | None = None
) -> Sensor:
    """The sensor of a test file from its attributes and/or ``given`` (a sensor or name; ``"custom"`` builds
    one of ``n_bands`` bands and ``bits`` bits, default 11); an error if neither or if they disagree."""
    stored = attrs.get("sensor")
    stored_sensor: Sensor | None = None
    if stored:
        stored_bits, stored_ratio = attrs.get("bits"), attrs.get("ratio")
        stored_sensor = sensor_from_options(
            str(stored),
            n_bands=n_bands,
            bits=int(stored_bits) if stored_bits is not None else None,
            ratio=int(stored_ratio) if stored_ratio is not None else None,
        )
    if given:
        sensor = sensor_from_options(given, n_bands=n_bands, bits=bits)
        if stored_sensor is not None and stored_sensor.name != sensor.name:
            raise BinsharpError(
                f"{where} was made for sensor {stored_sensor.name} but --sensor is {sensor.name}"
            )
    elif stored_sensor is not None:
        sensor = stored_sensor
    else:
        raise BinsharpError(f"{where} does not record its sensor: pass --sensor (e.g. --sensor WV3)")
    sensor.check_bands(n_bands)
    return sensor


def load_test_set(
    path: Path,
    split: str,
    *,
    sensor: str | Sensor | None = None,
    bits: int | None = None,
    limit: int | None = None,
) -> TestSet:
    """Read one h5 test file as split ``split`` (``"rr"`` needs ``gt``).

    Args:
        path: PanCollection h5 file (DN).
        split: ``"rr"`` or ``"fr"``.
        sensor: sensor (or name) when the file does not record it; checked against the file otherwise.
        bits: bit depth of a ``"custom"`` sensor.
        limit: keep the first N images only.
    """
    import h5py

    from binsharp.data import read_h5, read_h5_attrs
    from binsharp.data.io import check_images_hold_data

    attrs = read_h5_attrs(path)
    keys = ["gt", "ms", "lms", "pan"] if split == "rr" else ["ms", "lms", "pan"]
    with h5py.File(path, "r") as f:
        present = set(f.keys())
    if split == "rr" and "gt" not in present:
        raise BinsharpError(
            f"h5 file {path} has no 'gt': it is a full-resolution set; evaluate it with --split fr"
        )
    arrays = read_h5(path, keys=[k for k in keys if k in present or k != "lms"])
    data: dict[str, np.ndarray] = {k: arrays[k] for k in ("gt", "ms", "pan") if k in arrays}
    check_images_hold_data(data, source=f"h5 file {path}")
    n_total = int(arrays["ms"].shape[0])
    if limit is not None:
        if limit < 1:
            raise BinsharpError(f"--limit must be at least 1, got {limit}")
        arrays = {k: v[:limit] for k, v in arrays.items()}
    n_bands = int(arrays["ms"].shape[1])
    found = resolve_sensor(attrs, sensor, n_bands, f"h5 file {path}", bits=bits)
    ratio = int(arrays["pan"].shape[-1] // arrays["ms"].shape[-1])
    return TestSet(
        split,
        path,
        arrays,
        found,
        ratio,
        int(attrs.get("bits", found.bits)),
        data_manifest_id(path),
        {"attrs": attrs, "n_total": n_total},
    )


def load_test_sets(
    data: str,
    split: str | None = None,
    *,
    sensor: str | Sensor | None = None,
    bits: int | None = None,
    limit: int | None = None,
) -> list[TestSet]:
    """The test splits of ``data`` (a dataset name or directory, or an h5 file).

    ``split``: ``"rr"``, ``"fr"``, ``"both"`` or None (both splits of a dataset, what an h5 file holds);
    ``sensor``, ``bits`` and ``limit`` as in :func:`load_test_set`.
    """
    requested = split
    kwargs: dict[str, Any] = {"sensor": sensor, "bits": bits, "limit": limit}
    if looks_like_path(data) and not Path(data).is_dir():
        import h5py

        from binsharp.data import read_h5_attrs

        path = Path(data)
        if not path.is_file():
            raise BinsharpError(f"data file not found: {path}")
        read_h5_attrs(path)  # raises a clear error for unreadable files
        with h5py.File(path, "r") as f:
            has_gt = "gt" in f
        if requested is None:
            splits = ["rr"] if has_gt else ["fr"]
        else:
            splits = ["rr", "fr"] if requested == "both" else [requested]
        return [load_test_set(path, s, **kwargs) for s in splits]
    from binsharp.data.catalog import dataset_path

    splits = ["rr", "fr"] if requested in (None, "both") else [requested]
    return [load_test_set(Path(dataset_path(data, SPLITS[s])), s, **kwargs) for s in splits]


# ----------------------------------------------------------------------------------------------------------
# Externally fused images
# ----------------------------------------------------------------------------------------------------------

FUSED_SUFFIXES = (".mat", ".npy", ".tif", ".tiff")


def _read_fused_file(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".mat":
        from binsharp.data import read_fused_mat

        return read_fused_mat(path)
    if suffix == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise BinsharpError(f"cannot read fused file {path} (truncated or not .npy): {exc}") from None
    else:
        from binsharp.data import read_geotiff

        a = read_geotiff(path).array
    if a.ndim != 3:
        raise BinsharpError(f"fused file {path} must hold a (C, H, W) array, got shape {a.shape}")
    if a.dtype.kind not in "fiu":
        raise BinsharpError(f"fused file {path} has unsupported dtype {a.dtype} (need integer or float DN)")
    return np.asarray(a, dtype=np.float64)


def fused_reader(path: Path, n_images: int) -> tuple[str, Callable[[int], np.ndarray]]:
    """Name and ``read(i) -> (C,H,W) float64 DN`` for the externally fused images at ``path``.

    ``path`` is a directory of per-image ``.mat`` (variable ``sr``, H x W x C), ``.npy`` (C, H, W) or
    ``.tif`` files, taken in name order, or an h5 file with dataset ``sr`` or ``fused`` (N, C, H, W).
    The number of images must be ``n_images`` (the whole test set, even when ``--limit`` uses fewer).
    """
    if not path.exists():
        raise BinsharpError(f"--fused path not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FUSED_SUFFIXES)
        if not files:
            raise BinsharpError(f"--fused directory {path} holds no {', '.join(FUSED_SUFFIXES)} files")
        if len(files) != n_images:
            raise BinsharpError(
                f"--fused directory {path} holds {len(files)} images; the test set has {n_images}"
            )
        return path.name, lambda i: _read_fused_file(files[i])
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise BinsharpError(f"cannot read --fused file {path} (truncated or not HDF5): {exc}") from None
    with f:
        key = next((k for k in ("sr", "fused") if k in f), None)
        if key is None:
            raise BinsharpError(f"--fused h5 file {path} lacks dataset 'sr' or 'fused' (has: {', '.join(f)})")
        shape, dtype = f[key].shape, f[key].dtype
    if dtype.kind not in "fiu":
        raise BinsharpError(
            f"--fused h5 file {path}: '{key}' has unsupported dtype {dtype} (need integer or float DN)"
        )
    if len(shape) != 4:
        raise BinsharpError(f"--fused h5 file {path}: '{key}' must be N x C x H x W, got shape {shape}")
    if shape[0] != n_images:
        raise BinsharpError(f"--fused h5 file {path} holds {shape[0]} images; the test set has {n_images}")

    def read(i: int) -> np.ndarray:
        try:
            with h5py.File(path, "r") as g:
                return np.asarray(g[key][i], dtype=np.float64)
        except OSError as exc:
            raise BinsharpError(f"cannot read image {i} of --fused file {path}: {exc}") from None

    return path.stem, read


# ----------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------


def _check_fused(fused: np.ndarray, ts: TestSet, i: int, name: str) -> np.ndarray:
    expected = (ts.n_bands, *ts.arrays["pan"].shape[2:])
    if tuple(fused.shape) != expected:
        raise BinsharpError(
            f"{name}: image {i} has shape {tuple(fused.shape)}, expected {expected} (C, H, W)"
        )
    if not np.isfinite(fused).all():
        raise BinsharpError(f"{name}: image {i} contains NaN or infinite values")
    return fused


def _iter_fused(source: Fuser | tuple[str, Callable[[int], np.ndarray]], ts: TestSet) -> Iterator[np.ndarray]:
    from tqdm.auto import tqdm

    name = source[0] if isinstance(source, tuple) else source.name
    show = show_progress()
    for i in tqdm(range(ts.n_images), desc=f"{ts.split} {name}", unit="img", disable=not show, leave=False):
        if isinstance(source, tuple):
            fused = source[1](i)
        else:
            lms = ts.arrays.get("lms")
            fused = source(ts.arrays["ms"][i], ts.arrays["pan"][i], None if lms is None else lms[i])
        yield _check_fused(np.asarray(fused, dtype=np.float64), ts, i, name)


def evaluate_source(
    source: Fuser | tuple[str, Callable[[int], np.ndarray]], ts: TestSet, *, variant: str = "hqnr"
) -> dict[str, Any]:
    """Fuse (or read) every image of ``ts``; indexes by :class:`binsharp.metrics.BatchEvaluator`.

    Returns the evaluator's summary: ``mean``, ``std`` (sample std over images), ``per_image`` (one dict of
    indexes per image) and ``settings``.
    """
    from binsharp.metrics import BatchEvaluator

    if ts.split == "rr":
        ev = BatchEvaluator("rr", ratio=ts.ratio, bits=ts.bits, block=BLOCK, dim_cut=DIM_CUT)
        for i, fused in enumerate(_iter_fused(source, ts)):
            ev.add(fused, ts.arrays["gt"][i])
    else:
        ev = BatchEvaluator(
            "fr", sensor=ts.sensor, ratio=ts.ratio, bits=ts.bits, block=BLOCK, variant=variant
        )
        lms = ts.arrays.get("lms")
        for i, fused in enumerate(_iter_fused(source, ts)):
            ev.add(fused, ts.arrays["ms"][i], ts.arrays["pan"][i], ms_up=None if lms is None else lms[i])
    return ev.result()


# ----------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------


def format_table(results: dict[str, dict[str, dict[str, Any]]], sets: Sequence[TestSet]) -> str:
    """Plain-text tables (one per split) of mean +- std per method (rows) and index (columns)."""
    from binsharp.metrics import format_mean_std

    lines: list[str] = []
    by_split = {ts.split: ts for ts in sets}
    for split, methods in results.items():
        ts = by_split[split]
        title = "reduced resolution" if split == "rr" else "full resolution"
        lines.append(f"{title} ({ts.path.name}, {ts.n_images} images, {ts.sensor.name}, ratio {ts.ratio})")
        indexes = list(next(iter(methods.values()))["mean"]) if methods else []
        cells = [["method", *indexes]]
        for name, res in methods.items():
            text = format_mean_std(res)
            cells.append([name, *(text[k] for k in indexes)])
        widths = [max(len(row[j]) for row in cells) for j in range(len(cells[0]))]
        for r, row in enumerate(cells):
            lines.append(
                "  ".join(
                    c.ljust(w) if j == 0 else c.rjust(w)
                    for j, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
            if r == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def build_report(
    results: dict[str, dict[str, dict[str, Any]]], sets: Sequence[TestSet], *, data: str, limit: int | None
) -> dict[str, Any]:
    """The JSON document of an evaluation of ``data`` (with ``limit``): settings, data description and
    per-split, per-method results."""
    first = sets[0]
    settings: dict[str, Any] = {"sensor": first.sensor.name, "ratio": first.ratio, "bits": first.bits}
    for methods in results.values():
        for res in methods.values():
            extra = {k: v for k, v in res.get("settings", {}).items() if k not in ("kind", "n_images")}
            settings.update(_jsonable(extra))
            break
    settings.update(
        binsharp_version=__version__,
        data_manifest_id=first.manifest_id,
        limit=limit,
    )
    report: dict[str, Any] = {
        "binsharp_version": __version__,
        "settings": settings,
        "data": {
            "data": str(data),
            "splits": {
                ts.split: {"file": str(ts.path), "n_images": ts.n_images, "manifest_id": ts.manifest_id}
                for ts in sets
            },
        },
        "results": {},
    }
    for split, methods in results.items():
        report["results"][split] = {
            name: {
                "mean": res["mean"],
                "std": res["std"],
                "per_image": res["per_image"],
                "settings": _jsonable(res.get("settings", {})),
            }
            for name, res in methods.items()
        }
    return report


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Sensor):
        return obj.name
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def write_csv(path: str, results: dict[str, dict[str, dict[str, Any]]], overwrite: bool) -> None:
    """Write a flat table ``split,method,image,index,value`` (image = 0-based number, ``mean`` or ``std``)."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["split", "method", "image", "index", "value"])
            for split, methods in results.items():
                for name, res in methods.items():
                    for i, values in enumerate(res["per_image"]):
                        for k, v in values.items():
                            w.writerow([split, name, i, k, repr(float(v))])
                    for stat in ("mean", "std"):
                        for k, v in res[stat].items():
                            w.writerow([split, name, stat, k, repr(float(v))])
