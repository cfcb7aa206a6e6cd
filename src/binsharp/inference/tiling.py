"""Tiled inference for large scenes with bounded memory.

The PAN grid (H x W pixels) is cut into square *core* tiles of ``tile`` pixels (the last row/column of tiles
may be smaller). Each core tile is fused from a *read* window that extends it by ``halo`` pixels on every
side (clipped at the scene border); the fused read window is cropped back to the core and written. Tiles
and halos are multiples of the ratio, so every PAN window maps onto whole MS pixels: PAN rows
``[y0, y1)`` <-> MS rows ``[y0 / ratio, y1 / ratio)``.

For a fuser whose output pixel depends only on inputs within ``halo`` PAN pixels (with the scene border
handled the same way in a window touching it), the tiled output equals the untiled one exactly. Methods
that estimate global statistics (GS, GSA, BDSD-PC, BT-H, ...) estimate them per read window instead.

:func:`fuse_geotiff` reads PAN and MS GeoTIFFs window by window with rasterio and writes the output
GeoTIFF window by window into the temporary file of :func:`binsharp.fileio.atomic_output`, so memory is
bounded by one read window and a failed run leaves no file behind.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from binsharp.data.io import check_registration
from binsharp.errors import BinsharpError
from binsharp.fileio import atomic_output
from binsharp.inference.fuser import Fuser, check_bands
from binsharp.sensors import max_dn

#: Output data types accepted by :func:`fuse_geotiff`.
OUTPUT_DTYPES = ("float32", "float64", "uint16", "int16", "uint8")


@dataclass(frozen=True)
class Tile:
    """One tile, in PAN pixels: the core written to the output and the larger window read and fused.

    Attributes:
        row, col: top-left corner of the core.
        height, width: size of the core.
        read_row, read_col, read_height, read_width: the read window (core plus halo, clipped to the scene).
    """

    row: int
    col: int
    height: int
    width: int
    read_row: int
    read_col: int
    read_height: int
    read_width: int

    def crop(self) -> tuple[slice, slice]:
        """Slices taking the core out of an array covering the read window."""
        r0, c0 = self.row - self.read_row, self.col - self.read_col
        return slice(r0, r0 + self.height), slice(c0, c0 + self.width)

    def ms_read(self, ratio: int) -> tuple[int, int, int, int]:
        """The read window on the MS grid: ``(row, col, height, width)`` in MS pixels."""
        return (
            self.read_row // ratio,
            self.read_col // ratio,
            self.read_height // ratio,
            self.read_width // ratio,
        )


def _round_up(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)


def iter_tiles(height: int, width: int, *, tile: int, halo: int, ratio: int) -> Iterator[Tile]:
    """Tiles covering a PAN grid of ``height`` x ``width`` pixels, row by row.

    Args:
        height, width: PAN size, multiples of ``ratio``.
        tile: core size in PAN pixels, a positive multiple of ``ratio``; 0 means one tile for the whole scene.
        halo: context on each side in PAN pixels (rounded up to a multiple of ``ratio``).
        ratio: PAN/MS resolution ratio.
    """
    if height % ratio or width % ratio:
        raise BinsharpError(f"PAN size {height} x {width} is not a multiple of the ratio {ratio}")
    if tile < 0 or tile % ratio:
        raise BinsharpError(
            f"tile size {tile} must be a positive multiple of the ratio {ratio} (or 0 for none)"
        )
    if halo < 0:
        raise BinsharpError(f"halo {halo} must not be negative")
    if tile == 0:
        tile = max(height, width)
    halo = _round_up(halo, ratio)
    for row in range(0, height, tile):
        h = min(tile, height - row)
        r0, r1 = max(0, row - halo), min(height, row + h + halo)
        for col in range(0, width, tile):
            w = min(tile, width - col)
            c0, c1 = max(0, col - halo), min(width, col + w + halo)
            yield Tile(row, col, h, w, r0, c0, r1 - r0, c1 - c0)


def count_tiles(height: int, width: int, tile: int) -> int:
    """Number of tiles :func:`iter_tiles` yields."""
    if tile == 0:
        return 1
    return math.ceil(height / tile) * math.ceil(width / tile)


def fuse_tiles(
    fuser: Fuser,
    tiles: list[Tile],
    read_ms: Callable[[Tile], np.ndarray],
    read_pan: Callable[[Tile], np.ndarray],
    write: Callable[[Tile, np.ndarray], None],
    *,
    progress: bool = False,
) -> None:
    """Run ``fuser`` on each tile: read its windows, fuse, crop the halo, ``write(tile, core (C,h,w))``."""
    from tqdm.auto import tqdm

    for t in tqdm(tiles, desc=f"fuse {fuser.name}", unit="tile", disable=not progress or len(tiles) < 2):
        ms = read_ms(t)
        pan = read_pan(t)
        fused = np.asarray(fuser(ms, pan), dtype=np.float64)
        if fused.shape[1:] != pan.shape[1:]:
            raise BinsharpError(
                f"{fuser.name} returned shape {fused.shape} for a PAN window of {pan.shape[1:]}"
            )
        rows, cols = t.crop()
        write(t, fused[:, rows, cols])


def fuse_array_tiled(
    fuser: Fuser, ms_lr: np.ndarray, pan: np.ndarray, *, tile: int = 1024, halo: int | None = None
) -> np.ndarray:
    """Tiled fusion of in-memory arrays: ``ms_lr`` (C,h,w) DN, ``pan`` (1,H,W) DN -> (C,H,W) float64 DN."""
    ratio = int(fuser.ratio)
    c, h, w = ms_lr.shape
    if pan.shape != (1, ratio * h, ratio * w):
        raise BinsharpError(
            f"PAN {tuple(pan.shape)} and MS {tuple(ms_lr.shape)} are not in the ratio {ratio}"
        )
    halo = fuser.halo if halo is None else halo
    out = np.empty((c, ratio * h, ratio * w), dtype=np.float64)
    tiles = list(iter_tiles(ratio * h, ratio * w, tile=tile, halo=halo, ratio=ratio))

    def read_ms(t: Tile) -> np.ndarray:
        r, q, hh, ww = t.ms_read(ratio)
        return np.asarray(ms_lr[:, r : r + hh, q : q + ww], dtype=np.float64)

    def read_pan(t: Tile) -> np.ndarray:
        return np.asarray(
            pan[:, t.read_row : t.read_row + t.read_height, t.read_col : t.read_col + t.read_width],
            dtype=np.float64,
        )

    def write(t: Tile, core: np.ndarray) -> None:
        out[:, t.row : t.row + t.height, t.col : t.col + t.width] = core

    fuse_tiles(fuser, tiles, read_ms, read_pan, write)
    return out


# ----------------------------------------------------------------------------------------------------------
# GeoTIFF
# ----------------------------------------------------------------------------------------------------------


def open_raster(path: str | os.PathLike, what: str):
    """Open a raster for reading; a missing or unreadable file raises :class:`BinsharpError`."""
    import rasterio
    from rasterio.errors import RasterioError

    p = Path(path)
    if not p.exists():
        raise BinsharpError(f"{what} file not found: {p}")
    try:
        return rasterio.open(p)
    except (RasterioError, OSError) as exc:
        raise BinsharpError(f"cannot read {what} file {p}: not a readable raster ({exc})") from None


def _check_dtype(ds, what: str) -> None:
    dtype = np.dtype(ds.dtypes[0])
    if dtype.kind not in "uif":
        raise BinsharpError(
            f"{what} file {ds.name} has data type {dtype.name}; expected integers or floats in DN"
        )


class _WindowReader:
    """Windowed reads of one raster as float64, checking NaN and no-data in every window."""

    def __init__(self, ds, what: str, nodata: float | None, allow_nodata: bool) -> None:
        self.ds = ds
        self.what = what
        self.nodata = ds.nodata if nodata is None else nodata
        self.allow_nodata = allow_nodata

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Window (C,height,width) as float64 and the mask of no-data pixels (H,W) when allowed, else None."""
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        try:
            a = self.ds.read(window=Window(col, row, width, height)).astype(np.float64, copy=False)
        except (RasterioError, OSError) as exc:
            raise BinsharpError(
                f"cannot read {self.what} file {self.ds.name} (truncated or corrupt?): {exc}"
            ) from None
        bad = np.isnan(a)
        if self.nodata is not None and not np.isnan(self.nodata):
            bad |= a == self.nodata
        if not bad.any():
            return a, None
        if not self.allow_nodata:
            n = int(bad.any(axis=0).sum())
            kind = "NaN" if np.isnan(a).any() else f"no-data ({self.nodata:g})"
            raise BinsharpError(
                f"{self.what} file {self.ds.name} has {kind} pixels ({n} in rows {row}..{row + height - 1}, "
                f"cols {col}..{col + width - 1}); pass --allow-nodata to mask them in the output"
            )
        return np.where(np.isnan(a), 0.0, a), bad.any(axis=0)


def _nodata_value(dtype: str) -> float:
    return float("nan") if np.dtype(dtype).kind == "f" else 0.0


def fuse_geotiff(
    fuser: Fuser,
    pan_path: str | os.PathLike,
    ms_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    tile: int = 1024,
    halo: int | None = None,
    dtype: str = "float32",
    max_value: float | None = None,
    overwrite: bool = False,
    nodata: float | None = None,
    allow_nodata: bool = False,
    progress: bool = False,
) -> Path:
    """Fuse a PAN GeoTIFF and an MS GeoTIFF into ``out_path``, tile by tile with bounded memory.

    The output has the PAN grid (size, CRS and transform), the MS band count and descriptions, and data type
    ``dtype`` in DN (integer types are rounded and clipped to ``0 .. max_value``).

    Args:
        fuser: the :class:`~binsharp.inference.fuser.Fuser` to run; its ``ratio`` must be the PAN/MS size
            ratio.
        pan_path: single-band PAN GeoTIFF, H x W.
        ms_path: C-band MS GeoTIFF, H/ratio x W/ratio, co-registered with the PAN.
        out_path: output GeoTIFF; refused if it exists unless ``overwrite``.
        tile: core tile size in PAN pixels (multiple of the ratio; 0 fuses the scene in one piece).
        halo: context per side in PAN pixels (default: ``fuser.halo``).
        dtype: output data type, one of :data:`OUTPUT_DTYPES`.
        max_value: upper clip for integer outputs (default: ``2**bits - 1`` of the fuser's ``bits``).
        overwrite: replace an existing ``out_path``.
        nodata: no-data value of the inputs (default: the value declared in each file).
        allow_nodata: mask no-data/NaN input pixels in the output instead of refusing the input.
        progress: show a progress bar over tiles.

    Returns:
        The output path. Raises :class:`BinsharpError` for bad input; nothing is left at ``out_path`` then.
    """
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():  # inputs without georeferencing are fine: the output has none either
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return _fuse_geotiff(
            fuser,
            pan_path,
            ms_path,
            out_path,
            tile=tile,
            halo=halo,
            dtype=dtype,
            max_value=max_value,
            overwrite=overwrite,
            nodata=nodata,
            allow_nodata=allow_nodata,
            progress=progress,
        )


def _fuse_geotiff(
    fuser: Fuser,
    pan_path: str | os.PathLike,
    ms_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    tile: int,
    halo: int | None,
    dtype: str,
    max_value: float | None,
    overwrite: bool,
    nodata: float | None,
    allow_nodata: bool,
    progress: bool,
) -> Path:
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    if dtype not in OUTPUT_DTYPES:
        raise BinsharpError(
            f"output data type {dtype!r} not supported; choose one of {', '.join(OUTPUT_DTYPES)}"
        )
    ratio = int(fuser.ratio)
    if max_value is None:
        max_value = float(max_dn(fuser.bits))
    halo = fuser.halo if halo is None else int(halo)

    with open_raster(pan_path, "PAN") as pan_ds, open_raster(ms_path, "MS") as ms_ds:
        _check_dtype(pan_ds, "PAN")
        _check_dtype(ms_ds, "MS")
        if pan_ds.count != 1:
            raise BinsharpError(f"PAN file {pan_path} has {pan_ds.count} bands; expected 1")
        n_bands = ms_ds.count
        check_bands(fuser, n_bands, where=f"MS file {ms_path}")
        H, W = pan_ds.height, pan_ds.width
        h, w = ms_ds.height, ms_ds.width
        if (H, W) != (ratio * h, ratio * w):
            raise BinsharpError(
                f"PAN {H} x {W} and MS {h} x {w} are not in the ratio {ratio}: the PAN must be exactly "
                f"{ratio} times the MS size in each dimension"
            )
        if tile % ratio:
            raise BinsharpError(f"tile size {tile} is not a multiple of the ratio {ratio}")
        check_registration(pan_ds.crs, pan_ds.transform, ms_ds.crs, ms_ds.transform, ratio)
        tiles = list(iter_tiles(H, W, tile=tile, halo=halo, ratio=ratio))
        pan_reader = _WindowReader(pan_ds, "PAN", nodata, allow_nodata)
        ms_reader = _WindowReader(ms_ds, "MS", nodata, allow_nodata)
        if not allow_nodata:  # fail fast (before any fusing) on NaN/no-data, one core window at a time
            for t in tiles:
                ms_reader.read(t.row // ratio, t.col // ratio, t.height // ratio, t.width // ratio)
                pan_reader.read(t.row, t.col, t.height, t.width)

        out_nodata = _nodata_value(dtype) if allow_nodata else None
        block = 256
        profile = {
            "driver": "GTiff",
            "width": W,
            "height": H,
            "count": n_bands,
            "dtype": dtype,
            "crs": pan_ds.crs,
            "transform": pan_ds.transform,
            "nodata": out_nodata,
            "interleave": "pixel",
            "BIGTIFF": "IF_SAFER",
        }
        if H >= block and W >= block:
            profile.update(tiled=True, blockxsize=block, blockysize=block)
        masks: dict[Tile, np.ndarray] = {}

        def read_ms(t: Tile) -> np.ndarray:
            a, mask = ms_reader.read(*t.ms_read(ratio))
            if mask is not None:
                up = np.repeat(np.repeat(mask, ratio, axis=0), ratio, axis=1)
                masks[t] = masks[t] | up if t in masks else up
            return a

        def read_pan(t: Tile) -> np.ndarray:
            a, mask = pan_reader.read(t.read_row, t.read_col, t.read_height, t.read_width)
            if mask is not None:
                masks[t] = masks[t] | mask if t in masks else mask
            return a

        with atomic_output(out_path, overwrite=overwrite) as tmp:
            try:
                with rasterio.open(tmp, "w", **profile) as dst:
                    descriptions = ms_ds.descriptions
                    for i, d in enumerate(descriptions, start=1):
                        if d:
                            dst.set_band_description(i, d)
                    dst.update_tags(BINSHARP_FUSER=str(fuser.name), BINSHARP_UNITS="DN")

                    def write(t: Tile, core: np.ndarray) -> None:
                        if np.dtype(dtype).kind in "iu":
                            core = np.clip(np.rint(core), 0, max_value)
                        core = core.astype(dtype)
                        mask = masks.pop(t, None)
                        if mask is not None:
                            rows, cols = t.crop()
                            core[:, mask[rows, cols]] = out_nodata
                        dst.write(core, window=Window(t.col, t.row, t.width, t.height))

                    fuse_tiles(fuser, tiles, read_ms, read_pan, write, progress=progress)
            except RasterioError as exc:
                raise BinsharpError(f"cannot write output {out_path}: {exc}") from None
    return Path(out_path)
