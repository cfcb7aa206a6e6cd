"""Tiled inference for large scenes with bounded memory.

The PAN grid (H x W pixels) is cut into square *core* tiles of ``tile`` pixels (the last row/column of tiles
may be smaller). Each core tile is fused from a *read* window that extends it by ``halo`` pixels on every
side (at the scene border: mirrored or clipped, see below); the fused read window is cropped back to the
core and written. Tiles
and halos are multiples of the ratio, so every PAN window maps onto whole MS pixels: PAN rows
``[y0, y1)`` <-> MS rows ``[y0 / ratio, y1 / ratio)``.

Scene borders (``border``): with ``"mirror"`` (the default for products) every read window extends
``halo`` pixels beyond the core even at the scene border, filled with the scene mirrored about its edge
(symmetric extension, the same on the PAN and the MS grid), so each tile sees the context the untiled run
sees and the fuser's own border rule (the circular 23-tap interpolation) only touches the cropped halo.
For a fuser whose output pixel depends only on inputs within ``halo`` PAN pixels the tiled output then
equals the untiled one to floating-point rounding, borders included. ``"circular"`` keeps the toolbox rule:
windows are clipped at the scene border and the fuser wraps around within its window (the untiled result
is the toolbox's; tiles touching the border differ from it there). Methods that estimate global statistics
(GS, GSA, BDSD-PC, BT-H, ...) estimate them per read window in either case.

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
from binsharp.progress import show_progress
from binsharp.sensors import max_dn

#: Output data types accepted by :func:`fuse_geotiff`.
OUTPUT_DTYPES = ("float32", "float64", "uint16", "int16", "uint8")
#: Scene-border rules of tiled fusion (see the module docstring); the first is the default.
BORDERS = ("mirror", "circular")


@dataclass(frozen=True)
class Tile:
    """One tile, in PAN pixels: the core written to the output and the larger window read and fused.

    Attributes:
        row, col: top-left corner of the core.
        height, width: size of the core.
        read_row, read_col, read_height, read_width: the read window (core plus halo; clipped to the scene,
            or reaching beyond it where the scene is mirrored).
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


def iter_tiles(
    height: int, width: int, *, tile: int, halo: int, ratio: int, beyond_border: bool = False
) -> Iterator[Tile]:
    """Tiles covering a PAN grid of ``height`` x ``width`` pixels, row by row.

    Args:
        height, width: PAN size, multiples of ``ratio``.
        tile: core size in PAN pixels, a positive multiple of ``ratio``; 0 means one tile for the whole scene.
        halo: context on each side in PAN pixels (rounded up to a multiple of ``ratio``).
        ratio: PAN/MS resolution ratio.
        beyond_border: read windows keep their full halo at the scene border (negative or past-the-end
            coordinates, filled by mirroring) instead of being clipped to the scene.
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
    lo_r, hi_r, lo_c, hi_c = (
        (-halo, height + halo, -halo, width + halo) if beyond_border else (0, height, 0, width)
    )
    for row in range(0, height, tile):
        h = min(tile, height - row)
        r0, r1 = max(lo_r, row - halo), min(hi_r, row + h + halo)
        for col in range(0, width, tile):
            w = min(tile, width - col)
            c0, c1 = max(lo_c, col - halo), min(hi_c, col + w + halo)
            yield Tile(row, col, h, w, r0, c0, r1 - r0, c1 - c0)


def mirror_index(start: int, stop: int, n: int) -> np.ndarray:
    """Indices ``start .. stop-1`` folded into ``0 .. n-1`` by symmetric extension (-1 -> 0, n -> n-1)."""
    i = np.mod(np.arange(start, stop), 2 * n)
    return np.where(i < n, i, 2 * n - 1 - i)


def check_border(border: str) -> str:
    """Return ``border`` if it is one of :data:`BORDERS`, else raise :class:`BinsharpError`."""
    if border not in BORDERS:
        raise BinsharpError(f"unknown border rule {border!r}; choose one of {', '.join(BORDERS)}")
    return border


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

    for t in tqdm(
        tiles, desc=f"fuse {fuser.name}", unit="tile", disable=not show_progress(progress) or len(tiles) < 2
    ):
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
    fuser: Fuser,
    ms_lr: np.ndarray,
    pan: np.ndarray,
    *,
    tile: int = 1024,
    halo: int | None = None,
    border: str = "mirror",
) -> np.ndarray:
    """Tiled fusion of in-memory arrays: ``ms_lr`` (C,h,w) DN, ``pan`` (1,H,W) DN -> (C,H,W) float64 DN.

    ``border`` is the scene-border rule, one of :data:`BORDERS` (see the module docstring).
    """
    ratio = int(fuser.ratio)
    c, h, w = ms_lr.shape
    if pan.shape != (1, ratio * h, ratio * w):
        raise BinsharpError(
            f"PAN {tuple(pan.shape)} and MS {tuple(ms_lr.shape)} are not in the ratio {ratio}"
        )
    halo = fuser.halo if halo is None else halo
    out = np.empty((c, ratio * h, ratio * w), dtype=np.float64)
    beyond = check_border(border) == "mirror"
    tiles = list(iter_tiles(ratio * h, ratio * w, tile=tile, halo=halo, ratio=ratio, beyond_border=beyond))

    def window(a: np.ndarray, row: int, col: int, hh: int, ww: int) -> np.ndarray:
        rows = mirror_index(row, row + hh, a.shape[1])
        cols = mirror_index(col, col + ww, a.shape[2])
        return np.asarray(a[:, rows[:, None], cols[None, :]], dtype=np.float64)

    def read_ms(t: Tile) -> np.ndarray:
        return window(ms_lr, *t.ms_read(ratio))

    def read_pan(t: Tile) -> np.ndarray:
        return window(pan, t.read_row, t.read_col, t.read_height, t.read_width)

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
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    p = Path(path)
    if not p.exists():
        raise BinsharpError(f"{what} file not found: {p}")
    try:
        with warnings.catch_warnings():  # inputs without georeferencing are fine
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
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
    """Windowed reads of one raster as float64, checking NaN, no-data and the DN range in every window.

    A window reaching beyond the raster is filled by mirroring the raster about its edges.
    """

    def __init__(
        self, ds, what: str, nodata: float | None, allow_nodata: bool, value_range: tuple[float, float] | None
    ) -> None:
        self.ds = ds
        self.what = what
        self.nodata = ds.nodata if nodata is None else nodata
        self.allow_nodata = allow_nodata
        self.value_range = value_range

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Window (C,height,width) as float64 and the mask of no-data pixels (H,W) when allowed, else None."""
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        rows = mirror_index(row, row + height, self.ds.height)
        cols = mirror_index(col, col + width, self.ds.width)
        r0, c0 = int(rows.min()), int(cols.min())
        box = Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)
        try:
            a = self.ds.read(window=box).astype(np.float64, copy=False)
        except (RasterioError, OSError) as exc:
            raise BinsharpError(
                f"cannot read {self.what} file {self.ds.name} (truncated or corrupt?): {exc}"
            ) from None
        if (box.row_off, box.col_off, box.height, box.width) != (row, col, height, width):
            a = a[:, (rows - r0)[:, None], (cols - c0)[None, :]]
        where = f"rows {row}..{row + height - 1}, cols {col}..{col + width - 1}"
        bad = np.isnan(a)
        if self.nodata is not None and not np.isnan(self.nodata):
            bad |= a == self.nodata
        self._check_range(a, bad, where)
        if not bad.any():
            return a, None
        if not self.allow_nodata:
            n = int(bad.any(axis=0).sum())
            kind = "NaN" if np.isnan(a).any() else f"no-data ({self.nodata:g})"
            raise BinsharpError(
                f"{self.what} file {self.ds.name} has {kind} pixels ({n} in {where}); "
                "pass --allow-nodata to mask them in the output"
            )
        return np.where(np.isnan(a), 0.0, a), bad.any(axis=0)

    def _check_range(self, a: np.ndarray, bad: np.ndarray, where: str) -> None:
        """Raise if a valid DN lies outside the sensor's range (a wrong sensor or bit depth)."""
        if self.value_range is None:
            return
        lo, hi = self.value_range
        out = ((a < lo) | (a > hi)) & ~bad
        if out.any():
            values = a[out]
            raise BinsharpError(
                f"{self.what} file {self.ds.name} has DN outside {lo:g}..{hi:g}, the range of the sensor's "
                f"bit depth ({int(out.any(axis=0).sum())} pixels in {where}, values {values.min():g}.."
                f"{values.max():g}); check --sensor (or --bits for --sensor custom)"
            )


def _output_nodata(dtype: str, declared: float | None, allow_nodata: bool) -> float | None:
    """No-data value of the output: the inputs' when the output type can hold it, else NaN/0 if masking."""
    kind = np.dtype(dtype).kind
    if declared is not None and not np.isnan(declared):
        info = np.iinfo(dtype) if kind in "iu" else None
        if info is None or (float(declared).is_integer() and info.min <= declared <= info.max):
            return float(declared)
    elif declared is not None and kind == "f":
        return float("nan")
    if not allow_nodata:
        return None
    return float("nan") if kind == "f" else 0.0


def _georeferencing(pan, ms):
    """CRS and transform of the output: the PAN grid, with the MS's CRS when the PAN states none.

    The transforms already passed :func:`~binsharp.data.io.check_registration`, so the PAN's is the output's.
    """
    return pan.crs or ms.crs, pan.transform


class _RangeCheck:
    """Rounds integer outputs and counts the pixels outside ``lo .. hi``; clips them only if ``clip``."""

    def __init__(self, dtype: str, max_value: float | None, clip: bool) -> None:
        self.integer = np.dtype(dtype).kind in "iu"
        info = np.iinfo(dtype) if self.integer else None
        self.lo = float(max(0, info.min)) if info is not None else 0.0
        self.hi = float(info.max) if info is not None else float("inf")
        if max_value is not None:
            self.hi = min(self.hi, float(max_value))
        self.dtype = dtype
        self.clip = clip
        self.count = self.total = 0
        self.low, self.high = float("inf"), float("-inf")

    def __call__(self, core: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """``core`` (C,h,w) float DN -> the output type; ``mask`` (h,w) marks no-data pixels (not counted)."""
        if not self.integer:
            return core.astype(self.dtype)
        core = np.rint(core)
        valid = np.ones(core.shape[1:], dtype=bool) if mask is None else ~mask
        below, above = (core < self.lo) & valid, (core > self.hi) & valid
        self.total += int(valid.sum())
        out = (below | above).any(axis=0)
        if out.any():
            self.count += int(out.sum())
            self.low = min(self.low, float(core[below].min(initial=np.inf)))
            self.high = max(self.high, float(core[above].max(initial=-np.inf)))
        return np.clip(core, self.lo, self.hi).astype(self.dtype)

    def check(self) -> None:
        """Raise :class:`BinsharpError` if values fell outside the range and clipping was not allowed."""
        if self.count and not self.clip:
            seen = [f"down to {self.low:g}"] * (self.low < self.lo) + [f"up to {self.high:g}"] * (
                self.high > self.hi
            )
            raise BinsharpError(
                f"{self.count} of {self.total} output pixels ({100.0 * self.count / self.total:.1f} %) fall "
                f"outside {self.lo:g}..{self.hi:g} DN, the range of the {self.dtype} output for this sensor "
                f"(values {' and '.join(seen)}); pass --clip to clip them, or write floats (--dtype float32)"
            )


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
    clip: bool = False,
    border: str = "mirror",
    overwrite: bool = False,
    nodata: float | None = None,
    allow_nodata: bool = False,
    progress: bool = False,
) -> Path:
    """Fuse a PAN GeoTIFF and an MS GeoTIFF into ``out_path``, tile by tile with bounded memory.

    The output has the PAN grid (size, CRS and transform; both taken from the MS when the PAN has none),
    the MS band count and descriptions, the inputs' no-data value (when the output type can hold it), and
    data type ``dtype`` in DN. Integer types are rounded; values outside ``0 .. max_value`` (and the type's
    range) are refused with their count unless ``clip``.

    Args:
        fuser: the :class:`~binsharp.inference.fuser.Fuser` to run; its ``ratio`` must be the PAN/MS size
            ratio.
        pan_path: single-band PAN GeoTIFF, H x W.
        ms_path: C-band MS GeoTIFF, H/ratio x W/ratio, co-registered with the PAN.
        out_path: output GeoTIFF; refused if it exists unless ``overwrite``, or if it names an input.
        tile: core tile size in PAN pixels (multiple of the ratio; 0 fuses the scene in one piece).
        halo: context per side in PAN pixels (default: ``fuser.halo``).
        dtype: output data type, one of :data:`OUTPUT_DTYPES`.
        max_value: largest valid DN (default: ``2**bits - 1`` of the fuser's ``bits``). Input DN outside
            ``0 .. max_value`` are refused (a wrong sensor or bit depth), and so are integer outputs outside
            it unless ``clip``.
        clip: clip integer outputs to the valid range instead of refusing values outside it.
        border: scene-border rule, one of :data:`BORDERS` (see the module docstring).
        overwrite: replace an existing ``out_path``.
        nodata: no-data value of the inputs (default: the value declared in each file).
        allow_nodata: mask no-data/NaN input pixels in the output instead of refusing the input.
        progress: show a progress bar over tiles (on stderr, and only when it is a terminal).

    Returns:
        The output path. Raises :class:`BinsharpError` for bad input; nothing is left at ``out_path`` then.
    """
    from rasterio.errors import NotGeoreferencedWarning

    if dtype not in OUTPUT_DTYPES:
        raise BinsharpError(
            f"output data type {dtype!r} not supported; choose one of {', '.join(OUTPUT_DTYPES)}"
        )
    if max_value is None:
        max_value = float(max_dn(fuser.bits))
    with warnings.catch_warnings():  # inputs without georeferencing are fine: the output has none either
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return _fuse_geotiff(
            fuser,
            Path(pan_path),
            Path(ms_path),
            Path(out_path),
            tile=tile,
            halo=fuser.halo if halo is None else int(halo),
            values=_RangeCheck(dtype, max_value, clip),
            value_range=None if max_value is None else (0.0, float(max_value)),
            beyond_border=check_border(border) == "mirror",
            overwrite=overwrite,
            nodata=nodata,
            allow_nodata=allow_nodata,
            progress=progress,
        )


def _fuse_geotiff(
    fuser: Fuser,
    pan_path: Path,
    ms_path: Path,
    out_path: Path,
    *,
    tile: int,
    halo: int,
    values: _RangeCheck,
    value_range: tuple[float, float] | None,
    beyond_border: bool,
    overwrite: bool,
    nodata: float | None,
    allow_nodata: bool,
    progress: bool,
) -> Path:
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    ratio = int(fuser.ratio)
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
        check_registration(pan_ds.crs, pan_ds.transform, ms_ds.crs, ms_ds.transform, ratio)
        tiles = list(iter_tiles(H, W, tile=tile, halo=halo, ratio=ratio, beyond_border=beyond_border))
        pan_reader = _WindowReader(pan_ds, "PAN", nodata, allow_nodata, value_range)
        ms_reader = _WindowReader(ms_ds, "MS", nodata, allow_nodata, value_range)
        if not allow_nodata:  # fail fast (before any fusing) on NaN/no-data/bad DN, one core at a time
            for t in tiles:
                ms_reader.read(t.row // ratio, t.col // ratio, t.height // ratio, t.width // ratio)
                pan_reader.read(t.row, t.col, t.height, t.width)

        declared = (
            nodata if nodata is not None else pan_ds.nodata if pan_ds.nodata is not None else ms_ds.nodata
        )
        out_nodata = _output_nodata(values.dtype, declared, allow_nodata)
        crs, transform = _georeferencing(pan_ds, ms_ds)
        block = 256
        profile = {
            "driver": "GTiff",
            "width": W,
            "height": H,
            "count": n_bands,
            "dtype": values.dtype,
            "crs": crs,
            "transform": transform,
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

        with atomic_output(out_path, overwrite=overwrite, inputs=(pan_path, ms_path)) as tmp:
            try:
                with rasterio.open(tmp, "w", **profile) as dst:
                    descriptions = ms_ds.descriptions
                    for i, d in enumerate(descriptions, start=1):
                        if d:
                            dst.set_band_description(i, d)
                    dst.update_tags(BINSHARP_FUSER=str(fuser.name), BINSHARP_UNITS="DN")

                    def write(t: Tile, core: np.ndarray) -> None:
                        mask = masks.pop(t, None)
                        if mask is not None:
                            rows, cols = t.crop()
                            mask = mask[rows, cols]
                        core = values(core, mask)
                        if mask is not None:
                            core[:, mask] = out_nodata
                        dst.write(core, window=Window(t.col, t.row, t.width, t.height))

                    fuse_tiles(fuser, tiles, read_ms, read_pan, write, progress=progress)
                values.check()
            except RasterioError as exc:
                raise BinsharpError(f"cannot write output {out_path}: {exc}") from None
    return out_path
