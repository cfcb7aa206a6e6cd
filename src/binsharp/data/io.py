"""Readers and writers: PanCollection h5, toolbox ``.mat`` files and georeferenced GeoTIFF PAN/MS pairs.

Conventions
-----------
* PanCollection h5: datasets ``gt`` (optional), ``ms``, ``lms``, ``pan``, each ``N x C x H x W`` float64 in
  digital numbers (DN): ``gt`` (N, C, H, W), ``ms`` (N, C, H/r, W/r), ``lms`` (N, C, H, W), ``pan``
  (N, 1, H, W), with ``r`` the PAN/MS resolution ratio. Full-resolution sets have no ``gt``. File attributes
  carry ``sensor``, ``bits`` and ``ratio`` when binsharp wrote the file.
* Toolbox ``.mat``: ``I_GT``, ``I_MS_LR``, ``I_MS``, ``I_PAN`` stored ``H x W x C`` (MATLAB order), returned
  channel-first as ``gt``, ``ms``, ``lms``, ``pan``; fused results are a single variable ``sr`` (H x W x C).
* GeoTIFF: :class:`Raster` keeps the pixel array channel-first (C, H, W) in its stored dtype together with
  the georeferencing (CRS, affine transform, no-data value, rasterio profile).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from binsharp.errors import BinsharpError
from binsharp.fileio import atomic_output

#: Keys of a PanCollection h5 file; ``gt`` is absent from full-resolution sets.
H5_KEYS: tuple[str, ...] = ("gt", "ms", "lms", "pan")
#: Keys every PanCollection h5 file must hold.
H5_REQUIRED: tuple[str, ...] = ("ms", "lms", "pan")
#: Toolbox variable names and the binsharp keys they map to.
MAT_KEYS: dict[str, str] = {"I_GT": "gt", "I_MS_LR": "ms", "I_MS": "lms", "I_PAN": "pan"}


# ----------------------------------------------------------------------------------------------------------
# PanCollection h5
# ----------------------------------------------------------------------------------------------------------
def _open_h5(path: str | os.PathLike) -> h5py.File:
    p = Path(path)
    if not p.is_file():
        raise BinsharpError(f"h5 file not found: {p}")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise BinsharpError(f"cannot read h5 file {p} (truncated or not HDF5): {exc}") from None


def _attr_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_attr_value(v) for v in value.tolist()] if value.dtype.kind in "OSU" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_h5_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """File-level attributes of an h5 file (e.g. ``sensor``, ``bits``, ``ratio``) as plain Python values."""
    with _open_h5(path) as f:
        return {k: _attr_value(f.attrs[k]) for k in sorted(f.attrs.keys())}


def check_arrays(
    arrays: Mapping[str, np.ndarray], *, source: str = "arrays", ratio: int | None = None
) -> int:
    """Check a PanCollection-style batch for consistency and return the PAN/MS ratio.

    ``arrays`` maps any of ``gt`` (N, C, H, W), ``ms`` (N, C, h, w), ``lms`` (N, C, H, W),
    ``pan`` (N, 1, H, W) to 4-D arrays. Checks: 4-D, one N for all, a single PAN band, one band count
    for ``gt``/``ms``/``lms``, ``gt``/``lms``/``pan`` of one size, ``H/h == W/w`` an integer (equal to
    ``ratio`` when given), no NaN or infinity. Raises :class:`BinsharpError` naming ``source`` and the
    offending key.
    """
    for key, arr in arrays.items():
        if arr.ndim != 4:
            raise BinsharpError(f"{source}: '{key}' must be N x C x H x W, got shape {tuple(arr.shape)}")
        if arr.dtype.kind not in "fiu":
            raise BinsharpError(
                f"{source}: '{key}' has unsupported dtype {arr.dtype} (need integer or float DN)"
            )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise BinsharpError(f"{source}: '{key}' contains NaN or infinite values")
    ns = {k: a.shape[0] for k, a in arrays.items()}
    if len(set(ns.values())) > 1:
        raise BinsharpError(f"{source}: inconsistent image counts N: {ns}")
    if "pan" in arrays and arrays["pan"].shape[1] != 1:
        raise BinsharpError(f"{source}: 'pan' must have 1 band, got {arrays['pan'].shape[1]}")
    bands = {k: arrays[k].shape[1] for k in ("gt", "ms", "lms") if k in arrays}
    if len(set(bands.values())) > 1:
        raise BinsharpError(f"{source}: inconsistent band counts: {bands}")
    full = {k: tuple(arrays[k].shape[2:]) for k in ("gt", "lms", "pan") if k in arrays}
    if len(set(full.values())) > 1:
        raise BinsharpError(f"{source}: 'gt', 'lms' and 'pan' must share H x W, got {full}")
    found = ratio
    if "ms" in arrays and full:
        (H, W), (h, w) = next(iter(full.values())), arrays["ms"].shape[2:]
        if h == 0 or w == 0 or H % h or W % w or H // h != W // w:
            raise BinsharpError(f"{source}: PAN/MS size ratio {H}x{W} / {h}x{w} is not one integer ratio")
        found = H // h
        if ratio is not None and found != ratio:
            raise BinsharpError(f"{source}: PAN/MS size ratio is {found}, expected {ratio}")
    return int(found) if found is not None else 0


def check_images_hold_data(arrays: Mapping[str, np.ndarray], *, source: str = "arrays") -> None:
    """Raise :class:`BinsharpError` if an image of a batch is constant in every band (e.g. all zero).

    ``arrays`` maps keys (``gt``, ``ms``, ``lms``, ``pan``) to N x C x H x W arrays. A constant image holds no
    data to evaluate: the indexes would be NaN or infinite (zero means and variances).
    """
    for key, arr in arrays.items():
        flat = arr.reshape(arr.shape[0], -1)
        constant = (flat == flat[:, :1]).all(axis=1)
        if constant.any():
            i = int(np.argmax(constant))
            raise BinsharpError(
                f"{source}: image {i} of '{key}' is constant ({flat[i, 0]:g} everywhere): no data to evaluate"
                + (f" ({int(constant.sum())} such images)" if constant.sum() > 1 else "")
            )


def read_h5(
    path: str | os.PathLike, keys: Iterable[str] | None = None, *, dtype: np.dtype | type = np.float64
) -> dict[str, np.ndarray]:
    """Read a PanCollection h5 file.

    Args:
        path: h5 file with datasets ``gt`` (optional), ``ms``, ``lms``, ``pan``.
        keys: datasets to read; default: ``ms``, ``lms``, ``pan`` (required) and ``gt`` if present.
            Every key asked for must exist.
        dtype: dtype of the returned arrays (float64 by default, as PanCollection loaders expect).

    Returns:
        dict key -> array: ``gt`` (N, C, H, W), ``ms`` (N, C, H/r, W/r), ``lms`` (N, C, H, W),
        ``pan`` (N, 1, H, W), in DN.

    Raises:
        BinsharpError: missing file or keys, unreadable/truncated file, inconsistent N/bands/sizes, a size
        ratio that is not an integer (or not the file's ``ratio`` attribute), NaN or infinite values.
    """
    p = Path(path)
    with _open_h5(p) as f:
        present = set(f.keys())
        if keys is None:
            missing = [k for k in H5_REQUIRED if k not in present]
            wanted = [k for k in H5_KEYS if k in present]
        else:
            wanted = list(keys)
            missing = [k for k in wanted if k not in present]
        if missing:
            raise BinsharpError(
                f"h5 file {p} lacks key(s) {', '.join(missing)} (has: {', '.join(sorted(present)) or 'none'})"
            )
        ratio = f.attrs.get("ratio")
        out: dict[str, np.ndarray] = {}
        for k in wanted:
            node = f[k]
            if not isinstance(node, h5py.Dataset):
                raise BinsharpError(f"h5 file {p}: '{k}' is not a dataset")
            if node.dtype.kind not in "fiu":  # before conversion: bool or complex would convert silently
                raise BinsharpError(
                    f"h5 file {p}: '{k}' has unsupported dtype {node.dtype} (need integer or float DN)"
                )
            try:
                # HDF5 converts while reading: no float64 copy of a large file when float32 is asked for
                arr = node[()] if np.dtype(dtype) == node.dtype else node.astype(np.dtype(dtype))[()]
                out[k] = np.asarray(arr, dtype=dtype)
            except (OSError, ValueError, TypeError) as exc:
                raise BinsharpError(
                    f"cannot read '{k}' from h5 file {p} (truncated or corrupt): {exc}"
                ) from None
    check_arrays(out, source=f"h5 file {p}", ratio=int(ratio) if ratio is not None else None)
    return out


def write_h5(
    path: str | os.PathLike,
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a PanCollection h5 file atomically and byte-reproducibly.

    Datasets are written in the order ``gt``, ``ms``, ``lms``, ``pan`` (then any other key, sorted) as
    contiguous float64 arrays N x C x H x W (DN); attributes in sorted order. No object timestamps are
    stored, so identical inputs give identical bytes. The file appears only once complete.

    Args:
        path: output file; must not exist unless ``overwrite``.
        arrays: ``gt`` (optional) (N, C, H, W), ``ms`` (N, C, h, w), ``lms`` (N, C, H, W),
            ``pan`` (N, 1, H, W).
        attrs: file attributes, e.g. ``{"sensor": "WV3", "bits": 11, "ratio": 4}`` (str, int, float, bool).
    """
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    missing = [k for k in H5_REQUIRED if k not in arrays]
    if missing:
        raise BinsharpError(f"write_h5: missing array(s) {', '.join(missing)}")
    ratio = (attrs or {}).get("ratio")
    check_arrays(
        arrays, source=f"write_h5({Path(path).name})", ratio=int(ratio) if ratio is not None else None
    )
    order = [k for k in H5_KEYS if k in arrays] + sorted(k for k in arrays if k not in H5_KEYS)
    with atomic_output(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
            for k, v in sorted((attrs or {}).items()):
                f.attrs[k] = v
            for k in order:
                f.create_dataset(k, data=np.ascontiguousarray(arrays[k], dtype=np.float64), track_times=False)
    return Path(path)


def write_h5_stream(
    path: str | os.PathLike,
    n: int,
    shapes: Mapping[str, tuple[int, ...]],
    blocks: Iterable[Mapping[str, np.ndarray]],
    attrs: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """:func:`write_h5` for batches too large to hold in memory at once (same layout, same guarantees).

    Args:
        path: output file; must not exist unless ``overwrite``.
        n: total number of images N.
        shapes: per-image shape of each key, e.g. ``{"gt": (C, H, W), "ms": (C, h, w), ...}``.
        blocks: consecutive batches, each a dict key -> (b, *shape) array (DN); together exactly ``n`` images.
        attrs: file attributes (see :func:`write_h5`).
    """
    missing = [k for k in H5_REQUIRED if k not in shapes]
    if missing:
        raise BinsharpError(f"write_h5: missing array(s) {', '.join(missing)}")
    ratio = (attrs or {}).get("ratio")
    name = f"write_h5({Path(path).name})"
    check_arrays(
        {k: np.empty((0, *s)) for k, s in shapes.items()},
        source=name,
        ratio=int(ratio) if ratio is not None else None,
    )
    order = [k for k in H5_KEYS if k in shapes] + sorted(k for k in shapes if k not in H5_KEYS)
    with atomic_output(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
            for k, v in sorted((attrs or {}).items()):
                f.attrs[k] = v
            dsets = {
                k: f.create_dataset(k, shape=(n, *shapes[k]), dtype=np.float64, track_times=False)
                for k in order
            }
            pos = 0
            for block in blocks:
                if set(block) != set(shapes):
                    raise BinsharpError(f"{name}: block keys {sorted(block)} differ from {sorted(shapes)}")
                b = next(iter(block.values())).shape[0]
                check_arrays({k: np.asarray(v) for k, v in block.items()}, source=name)
                if pos + b > n or any(tuple(v.shape[1:]) != tuple(shapes[k]) for k, v in block.items()):
                    raise BinsharpError(f"{name}: block of {b} images does not fit the declared shapes/count")
                for k in order:
                    dsets[k][pos : pos + b] = np.asarray(block[k], dtype=np.float64)
                pos += b
            if pos != n:
                raise BinsharpError(f"{name}: {pos} images written, {n} declared")
    return Path(path)


# ----------------------------------------------------------------------------------------------------------
# Toolbox .mat
# ----------------------------------------------------------------------------------------------------------
def _load_mat_vars(path: Path) -> dict[str, np.ndarray]:
    """All numeric array variables of a ``.mat`` file, in MATLAB axis order (H x W x C)."""
    import scipy.io

    if not path.is_file():
        raise BinsharpError(f".mat file not found: {path}")
    try:
        raw = scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 = HDF5 with column-major (reversed) axes
        out: dict[str, np.ndarray] = {}
        try:
            with h5py.File(path, "r") as f:
                for k, node in f.items():
                    if isinstance(node, h5py.Dataset) and node.dtype.kind in "fiub":
                        out[k] = np.asarray(node[()]).T
        except OSError as exc:
            raise BinsharpError(f"cannot read .mat file {path} (truncated or corrupt): {exc}") from None
        return out
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError/... on corrupt files
        raise BinsharpError(f"cannot read .mat file {path} (truncated or not a MATLAB file): {exc}") from None
    return {k: v for k, v in raw.items() if not k.startswith("__") and isinstance(v, np.ndarray)}


def _hwc_to_chw(arr: np.ndarray, name: str, path: Path) -> np.ndarray:
    if arr.dtype.kind not in "fiu":
        raise BinsharpError(f".mat file {path}: '{name}' has unsupported dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise BinsharpError(f".mat file {path}: '{name}' must be H x W or H x W x C, got {arr.shape}")
    out = np.ascontiguousarray(np.transpose(arr, (2, 0, 1)), dtype=np.float64)
    if not np.isfinite(out).all():
        raise BinsharpError(f".mat file {path}: '{name}' contains NaN or infinite values")
    return out


def read_mat(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a toolbox ``.mat`` file (MATLAB v5 or v7.3).

    Variables ``I_GT``, ``I_MS_LR``, ``I_MS``, ``I_PAN`` (H x W x C, DN) are returned channel-first float64
    as ``gt`` (C, H, W), ``ms`` (C, H/r, W/r), ``lms`` (C, H, W), ``pan`` (1, H, W); absent ones are
    skipped, but ``I_MS_LR`` and ``I_PAN`` are required.
    """
    p = Path(path)
    raw = _load_mat_vars(p)
    out = {key: _hwc_to_chw(raw[name], name, p) for name, key in MAT_KEYS.items() if name in raw}
    missing = [n for n, k in MAT_KEYS.items() if k in ("ms", "pan") and k not in out]
    if missing:
        raise BinsharpError(
            f".mat file {p} lacks variable(s) {', '.join(missing)} (has: {', '.join(sorted(raw))})"
        )
    check_arrays({k: v[None] for k, v in out.items()}, source=f".mat file {p}")
    return out


def read_fused_mat(path: str | os.PathLike, key: str = "sr") -> np.ndarray:
    """Read a fused image saved the toolbox way: variable ``sr`` (H x W x C, DN) -> (C, H, W) float64."""
    p = Path(path)
    raw = _load_mat_vars(p)
    if key not in raw:
        raise BinsharpError(f".mat file {p} lacks variable '{key}' (has: {', '.join(sorted(raw)) or 'none'})")
    return _hwc_to_chw(raw[key], key, p)


def write_mat(
    path: str | os.PathLike, variables: Mapping[str, np.ndarray], *, overwrite: bool = False
) -> Path:
    """Write channel-first arrays (C, H, W) as MATLAB v5 variables H x W x C (e.g. ``{"sr": fused}``)."""
    import scipy.io

    data = {}
    for k, v in variables.items():
        a = np.asarray(v)
        data[k] = np.transpose(a, (1, 2, 0)) if a.ndim == 3 else a
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            scipy.io.savemat(fh, data, do_compression=False)
    return Path(path)


# ----------------------------------------------------------------------------------------------------------
# GeoTIFF
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Raster:
    """A georeferenced image.

    Attributes:
        array: pixels (C, H, W) in the file's dtype (DN).
        crs: coordinate reference system (``rasterio.crs.CRS``) or None.
        transform: affine pixel -> map transform (``affine.Affine``) of the top-left corner.
        nodata: no-data value declared by the file, or None.
        profile: rasterio profile of the source (driver, dtype, count, size, ...).
        path: the file it was read from, if any.
    """

    array: np.ndarray
    crs: Any = None
    transform: Any = None
    nodata: float | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def count(self) -> int:
        return int(self.array.shape[0])

    @property
    def height(self) -> int:
        return int(self.array.shape[1])

    @property
    def width(self) -> int:
        return int(self.array.shape[2])

    def crop(self, rows: int, cols: int, row0: int = 0, col0: int = 0) -> Raster:
        """The window ``[row0:row0+rows, col0:col0+cols]`` with its transform shifted to match."""
        from rasterio.transform import Affine

        arr = self.array[:, row0 : row0 + rows, col0 : col0 + cols]
        transform = self.transform @ Affine.translation(col0, row0) if self.transform is not None else None
        profile = {**self.profile, "height": arr.shape[1], "width": arr.shape[2], "transform": transform}
        return replace(self, array=arr, transform=transform, profile=profile)

    def valid_mask(self) -> np.ndarray:
        """(H, W) bool: True where every band holds data (not 0, not ``nodata``, not NaN)."""
        a = self.array
        bad = a == 0
        if self.nodata is not None:
            bad |= (
                np.isnan(a)
                if (isinstance(self.nodata, float) and math.isnan(self.nodata))
                else a == self.nodata
            )
        if a.dtype.kind == "f":
            bad |= ~np.isfinite(a)
        return ~bad.any(axis=0)


def read_geotiff(path: str | os.PathLike) -> Raster:
    """Read a GeoTIFF (any GDAL raster) as a :class:`Raster` with array (C, H, W) in the stored dtype."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    p = Path(path)
    if not p.is_file():
        raise BinsharpError(f"raster file not found: {p}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(p) as src:
                array = src.read()
                profile = dict(src.profile)
                return Raster(array, src.crs, src.transform, src.nodata, profile, p)
    except (RasterioIOError, OSError) as exc:
        raise BinsharpError(f"cannot read raster {p} (truncated or unsupported): {exc}") from None


def write_geotiff(
    path: str | os.PathLike,
    array: np.ndarray,
    like: Raster,
    *,
    overwrite: bool = False,
    dtype: str | np.dtype | None = None,
) -> Path:
    """Write ``array`` (C, H, W) or (H, W) as a GeoTIFF with the CRS and georeferencing of ``like``.

    The output covers the same ground extent as ``like``: when its size differs, the pixel size is scaled
    (e.g. an MS-sized array written like a PAN raster). ``dtype`` (default: the array's) selects the stored
    type; integer types are rounded and clipped to their range. Written atomically: the file appears only
    once complete, and an existing path is refused unless ``overwrite``.
    """
    import rasterio
    from rasterio.transform import Affine

    a = np.asarray(array)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise BinsharpError(f"write_geotiff: array must be (C, H, W) or (H, W), got {a.shape}")
    out_dtype = np.dtype(dtype) if dtype is not None else a.dtype
    if out_dtype.kind not in "fiu" or a.dtype.kind not in "fiub":
        raise BinsharpError(f"write_geotiff: unsupported dtype {a.dtype} -> {out_dtype}")
    if out_dtype.kind in "iu" and a.dtype != out_dtype:
        info = np.iinfo(out_dtype)
        a = np.clip(np.rint(a), info.min, info.max)
    a = a.astype(out_dtype, copy=False)
    C, H, W = a.shape
    transform = like.transform
    if transform is not None and (H, W) != (like.height, like.width):
        transform = transform @ Affine.scale(like.width / W, like.height / H)
    nodata = like.nodata
    if nodata is not None and out_dtype.kind in "iu":
        info = np.iinfo(out_dtype)
        if not (float(nodata).is_integer() and info.min <= nodata <= info.max):
            nodata = None
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "dtype": out_dtype.name,
        "count": C,
        "height": H,
        "width": W,
        "crs": like.crs,
        "transform": transform,
        "nodata": nodata,
        "interleave": "band" if C > 1 else "pixel",
    }
    if H >= 256 and W >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with atomic_output(path, overwrite=overwrite) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(a)
    return Path(path)


# ----------------------------------------------------------------------------------------------------------
# PAN/MS pairs
# ----------------------------------------------------------------------------------------------------------
def _check_dtype(r: Raster, what: str) -> None:
    kind = r.array.dtype.kind
    if kind not in "iuf":
        raise BinsharpError(
            f"{what} {r.path or ''}: unsupported pixel type {r.array.dtype} (need integer or float DN)"
        )
    if kind == "f":
        nan_nodata = r.nodata is not None and isinstance(r.nodata, float) and math.isnan(r.nodata)
        if not nan_nodata and np.isnan(r.array).any():
            raise BinsharpError(
                f"{what} {r.path or ''}: contains NaN pixels (and NaN is not its no-data value)"
            )
        if np.isinf(r.array).any():
            raise BinsharpError(f"{what} {r.path or ''}: contains infinite values")


def check_pair(pan: Raster, ms: Raster, ratio: int = 4) -> tuple[Raster, Raster]:
    """Validate a PAN/MS pair and crop it to consistent sizes; returns ``(pan, ms)``.

    Checks: PAN single-band; integer or float DN (complex/bool refused; NaN only as declared no-data);
    co-registration by :func:`check_registration` (same CRS, no rotation, same top-left origin within a
    tenth of a PAN pixel, MS pixel = ``ratio`` x PAN pixel). Sizes: the PAN must be ``ratio`` times the MS,
    except that a disagreement of less than one MS pixel per axis is cropped away: the MS keeps
    ``min(h, H // ratio)`` rows (likewise columns) and the PAN ``ratio`` times as many, both anchored at the
    common top-left corner. A larger disagreement is an error. (WV2 Longmont: PAN 2004 x 2000, MS 501 x 500
    agree exactly; the dataset builder later crops each region to multiples of the ratio, as the decimation
    of the protocol needs.)
    """
    if int(ratio) != ratio or ratio < 1:
        raise BinsharpError(f"ratio must be a positive integer, got {ratio}")
    ratio = int(ratio)
    if pan.count != 1:
        raise BinsharpError(f"PAN {pan.path or ''}: expected 1 band, got {pan.count}")
    _check_dtype(pan, "PAN")
    _check_dtype(ms, "MS")
    H, W, h, w = pan.height, pan.width, ms.height, ms.width
    for axis, big, small in (("rows", H, h), ("columns", W, w)):
        if small == 0 or abs(big - ratio * small) >= ratio:
            raise BinsharpError(
                f"PAN/MS size ratio is not the integer {ratio}: PAN {H}x{W}, MS {h}x{w} "
                f"({axis}: {big} vs {small})"
            )
    check_registration(pan.crs, pan.transform, ms.crs, ms.transform, ratio)
    hh, ww = min(h, H // ratio), min(w, W // ratio)
    if (hh, ww) != (h, w):
        ms = ms.crop(hh, ww)
    if (ratio * hh, ratio * ww) != (H, W):
        pan = pan.crop(ratio * hh, ratio * ww)
    return pan, ms


def check_registration(pan_crs: Any, pan_transform: Any, ms_crs: Any, ms_transform: Any, ratio: int) -> None:
    """Raise :class:`BinsharpError` unless a PAN and an MS georeferencing are co-registered.

    The one rule for a PAN/MS pair (:func:`check_pair`, and the tiled fusion of
    :func:`binsharp.inference.tiling.fuse_geotiff`): the same CRS when both state one; when either has a
    non-identity affine transform, no rotation or shear, MS pixel = ``ratio`` x PAN pixel (relative
    tolerance 1e-6) and the same top-left corner within a tenth of a PAN pixel. Two identity (or missing)
    transforms are not georeferenced and pass.
    """
    if pan_crs is not None and ms_crs is not None and pan_crs != ms_crs:
        raise BinsharpError(f"PAN and MS have different CRS: {pan_crs} vs {ms_crs}")
    tp, tm = pan_transform, ms_transform
    if tp is not None and tm is not None and not (tp.is_identity and tm.is_identity):
        if tp.b or tp.d or tm.b or tm.d:
            raise BinsharpError(
                "PAN or MS georeferencing is rotated/sheared; resample to a north-up grid first"
            )
        px = max(abs(tp.a), abs(tp.e))
        if not (
            math.isclose(tm.a, ratio * tp.a, rel_tol=1e-6) and math.isclose(tm.e, ratio * tp.e, rel_tol=1e-6)
        ):
            raise BinsharpError(
                f"PAN/MS not registered: pixel sizes {tp.a:g}x{-tp.e:g} (PAN) and {tm.a:g}x{-tm.e:g} (MS) "
                f"are not in ratio {ratio}: the images are not co-registered"
            )
        if abs(tp.c - tm.c) > 0.1 * px or abs(tp.f - tm.f) > 0.1 * px:
            raise BinsharpError(
                "PAN/MS not registered: top-left corners differ "
                f"({tp.c:.3f}, {tp.f:.3f}) vs ({tm.c:.3f}, {tm.f:.3f}): the images are not co-registered"
            )


def read_pan_ms_pair(
    pan_path: str | os.PathLike, ms_path: str | os.PathLike, ratio: int = 4
) -> tuple[Raster, Raster]:
    """Read and validate a PAN/MS GeoTIFF pair; returns ``(pan (1, H, W), ms (C, H/ratio, W/ratio))``.

    See :func:`check_pair` for the checks and the crop rule (e.g. PAN 2003 rows with MS 501 rows: the MS is
    cropped to 500 rows and the PAN to 2000).
    """
    return check_pair(read_geotiff(pan_path), read_geotiff(ms_path), ratio)
