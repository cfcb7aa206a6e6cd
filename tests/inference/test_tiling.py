"""Tiled inference: tile geometry, exactness for local fusers, bounded windows, georeferencing kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy.ndimage import maximum_filter

from binsharp.errors import BinsharpError
from binsharp.inference.tiling import count_tiles, fuse_array_tiled, fuse_geotiff, iter_tiles
from geotiff import write_tif


class LocalFuser:
    """A purely local fuser: nearest-upsampled MS plus PAN detail (PAN minus its (2k+1)^2 maximum).

    Each output pixel depends on PAN pixels within ``k`` and on the MS pixel above it only; the maximum
    filter replicates borders and is exact in floating point, so tiled and untiled results agree bit for bit.
    """

    name = "local"
    ratio = 4
    sensor = None
    bits = 11

    def __init__(self, bands: int = 3, k: int = 5) -> None:
        self.bands = bands
        self.k = k
        self.halo = k
        self.windows: list[tuple[int, int]] = []

    def __call__(self, ms_lr: np.ndarray, pan: np.ndarray, lms: np.ndarray | None = None) -> np.ndarray:
        self.windows.append(pan.shape[1:])
        r = self.ratio
        up = np.repeat(np.repeat(ms_lr, r, axis=1), r, axis=2)
        detail = pan[0] - maximum_filter(pan[0], size=2 * self.k + 1, mode="nearest")
        return up + detail[None]


def _scene(bands: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ms = rng.integers(0, 2048, size=(bands, h, w)).astype(np.float64)
    pan = rng.integers(0, 2048, size=(1, 4 * h, 4 * w)).astype(np.float64)
    return ms, pan


def _write_pair(tmp: Path, ms: np.ndarray, pan: np.ndarray, dtype: str = "uint16") -> tuple[Path, Path]:
    pan_path = write_tif(tmp / "pan.tif", pan, 0.3, dtype=dtype)
    return pan_path, write_tif(tmp / "ms.tif", ms, 1.2, dtype=dtype)


@pytest.mark.parametrize(
    ("height", "width", "tile", "halo"), [(40, 56, 16, 8), (64, 64, 64, 4), (36, 20, 8, 0)]
)
def test_tiles_cover_the_scene_once_and_stay_aligned(height, width, tile, halo):
    cover = np.zeros((height, width), dtype=int)
    tiles = list(iter_tiles(height, width, tile=tile, halo=halo, ratio=4))
    assert len(tiles) == count_tiles(height, width, tile)
    for t in tiles:
        cover[t.row : t.row + t.height, t.col : t.col + t.width] += 1
        for v in (t.row, t.col, t.height, t.width, t.read_row, t.read_col, t.read_height, t.read_width):
            assert v % 4 == 0
        assert t.read_row == max(0, t.row - halo) and t.read_col == max(0, t.col - halo)
        assert t.read_row + t.read_height == min(height, t.row + t.height + halo)
        assert t.read_col + t.read_width == min(width, t.col + t.width + halo)
    np.testing.assert_array_equal(cover, 1)


def test_tile_geometry_errors():
    with pytest.raises(BinsharpError, match="multiple of the ratio"):
        list(iter_tiles(40, 40, tile=10, halo=4, ratio=4))
    with pytest.raises(BinsharpError, match="not a multiple of the ratio"):
        list(iter_tiles(42, 40, tile=8, halo=4, ratio=4))
    assert len(list(iter_tiles(40, 40, tile=0, halo=4, ratio=4))) == 1


def test_tiled_equals_untiled_for_a_local_fuser():
    ms, pan = _scene(3, 13, 11)
    fuser = LocalFuser(k=5)
    full = fuser(ms, pan)
    tiled = fuse_array_tiled(fuser, ms, pan, tile=16, halo=8)
    np.testing.assert_array_equal(tiled, full)
    # the check is sensitive: too small a halo changes pixels near interior tile edges
    short = fuse_array_tiled(LocalFuser(k=5), ms, pan, tile=16, halo=0)
    assert not np.array_equal(short, full)


def test_geotiff_tiled_equals_untiled_and_keeps_georeferencing(tmp_path):
    ms, pan = _scene(3, 13, 11, seed=1)
    pan_path, ms_path = _write_pair(tmp_path, ms, pan)
    fuser = LocalFuser(k=5)
    out = fuse_geotiff(fuser, pan_path, ms_path, tmp_path / "out.tif", tile=16, halo=8)
    expected = LocalFuser(k=5)(ms, pan).astype(np.float32)
    with rasterio.open(out) as d, rasterio.open(pan_path) as p:
        assert d.count == 3 and d.dtypes[0] == "float32"
        assert (d.height, d.width) == (52, 44)
        assert d.crs == p.crs and d.transform == p.transform
        assert d.tags()["BINSHARP_FUSER"] == "local"
        np.testing.assert_array_equal(d.read(), expected)
    # bounded memory: no read window exceeds tile + 2 * halo on a side
    assert max(max(s) for s in fuser.windows) <= 16 + 2 * 8
    assert len(fuser.windows) == count_tiles(52, 44, 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ms.tif", "out.tif", "pan.tif"]


def test_geotiff_integer_output_out_of_range_is_refused_unless_clipped(tmp_path):
    ms, pan = _scene(2, 8, 8, seed=2)
    pan_path, ms_path = _write_pair(tmp_path, ms, pan)
    fused = np.rint(LocalFuser(bands=2, k=2)(ms, pan))
    n_out = int(((fused < 0) | (fused > 2047)).any(axis=0).sum())
    assert n_out > 0
    args = (pan_path, ms_path, tmp_path / "o.tif")
    with pytest.raises(BinsharpError, match=f"{n_out} of 1024 output pixels .* outside 0..2047 .* --clip"):
        fuse_geotiff(LocalFuser(bands=2, k=2), *args, tile=16, dtype="uint16", max_value=2047)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ms.tif", "pan.tif"]
    # uint8: the type's own range (0..255) applies, never a wrap-around
    with pytest.raises(BinsharpError, match="outside 0..255"):
        fuse_geotiff(LocalFuser(bands=2, k=2), *args, tile=16, dtype="uint8", max_value=2047)
    out = fuse_geotiff(LocalFuser(bands=2, k=2), *args, tile=16, dtype="uint16", max_value=2047, clip=True)
    expected = np.clip(np.rint(LocalFuser(bands=2, k=2)(ms, pan)), 0, 2047).astype(np.uint16)
    with rasterio.open(out) as d:
        assert d.dtypes[0] == "uint16"
        np.testing.assert_array_equal(d.read(), expected)


def test_allow_nodata_masks_output(tmp_path):
    ms, pan = _scene(2, 8, 8, seed=3)
    ms[:, 0, 0] = 0
    pan_path, ms_path = _write_pair(tmp_path, ms, pan)
    with pytest.raises(BinsharpError, match="no-data"):
        fuse_geotiff(LocalFuser(bands=2, k=2), pan_path, ms_path, tmp_path / "o.tif", tile=16, nodata=0)
    assert not (tmp_path / "o.tif").exists()
    out = fuse_geotiff(
        LocalFuser(bands=2, k=2), pan_path, ms_path, tmp_path / "o.tif", tile=16, nodata=0, allow_nodata=True
    )
    with rasterio.open(out) as d:
        a = d.read()
        assert d.nodata == 0  # the inputs' no-data value is the output's
    expected = fuse_array_tiled(LocalFuser(bands=2, k=2), ms, pan, tile=16).astype(np.float32)
    expected[:, :4, :4] = 0
    np.testing.assert_array_equal(a, expected)


class _FailingFuser(LocalFuser):
    """Fails on its third tile, after two tiles were written."""

    def __call__(self, ms_lr, pan, lms=None):
        if len(self.windows) == 2:
            raise BinsharpError("model failed on tile 3")
        return super().__call__(ms_lr, pan, lms)


def test_failure_after_some_tiles_leaves_no_output(tmp_path):
    ms, pan = _scene(2, 8, 8, seed=4)
    pan_path, ms_path = _write_pair(tmp_path, ms, pan)
    fuser = _FailingFuser(bands=2, k=2)
    with pytest.raises(BinsharpError, match="tile 3"):
        fuse_geotiff(fuser, pan_path, ms_path, tmp_path / "o.tif", tile=8, halo=4)
    assert len(fuser.windows) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ms.tif", "pan.tif"]


def test_nodata_is_found_before_any_tile_is_fused(tmp_path):
    ms, pan = _scene(2, 8, 8, seed=5)
    ms[:, 7, 7] = 0
    pan_path, ms_path = _write_pair(tmp_path, ms, pan)
    fuser = LocalFuser(bands=2, k=2)
    with pytest.raises(BinsharpError, match="no-data"):
        fuse_geotiff(fuser, pan_path, ms_path, tmp_path / "o.tif", tile=8, halo=4, nodata=0)
    assert fuser.windows == []
