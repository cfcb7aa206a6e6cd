"""Readers/writers: PanCollection h5, toolbox .mat, GeoTIFF and PAN/MS pair checks (incl. every bad input)."""

from __future__ import annotations

from functools import partial

import h5py
import numpy as np
import pytest
import scipy.io
from rasterio.transform import Affine

from binsharp.data.io import (
    Raster,
    check_pair,
    read_fused_mat,
    read_geotiff,
    read_h5,
    read_h5_attrs,
    read_mat,
    read_pan_ms_pair,
    write_geotiff,
    write_h5,
    write_mat,
)
from binsharp.errors import BinsharpError
from geotiff import write_tif


def from_origin(west, north, xsize, ysize):
    """North-up transform of the top-left corner (west, north) with pixel size xsize x ysize."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


CRS = "EPSG:32613"


def _batch(n=3, c=4, size=32, ratio=4, gt=True, seed=0):
    rng = np.random.default_rng(seed)
    out = {
        "ms": rng.uniform(0, 2047, (n, c, size // ratio, size // ratio)),
        "lms": rng.uniform(0, 2047, (n, c, size, size)),
        "pan": rng.uniform(0, 2047, (n, 1, size, size)),
    }
    if gt:
        out["gt"] = rng.uniform(0, 2047, (n, c, size, size))
    return out


_write_tif = partial(write_tif, pixel=0.3, x0=487546.8, y0=4443553.2)


def _pair(tmp_path, h=20, w=24, ratio=4, bands=4, dtype=np.uint16, pan_rows=None, ms_pixel=None, ms_x0=None):
    rng = np.random.default_rng(1)
    pan = rng.integers(1, 2047, (1, pan_rows or h * ratio, w * ratio)).astype(dtype)
    ms = rng.integers(1, 2047, (bands, h, w)).astype(dtype)
    p = _write_tif(tmp_path / "pan.tif", pan, pixel=0.3)
    m = _write_tif(
        tmp_path / "ms.tif", ms, pixel=ms_pixel or 0.3 * ratio, x0=487546.8 if ms_x0 is None else ms_x0
    )
    return p, m, pan, ms


# ---------------------------------------------------------------------------------------------- h5
def test_h5_round_trip_and_same_bytes(tmp_path):
    arrays = _batch()
    attrs = {"sensor": "QB", "bits": 11, "ratio": 4}
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_h5(a, arrays, attrs)
    write_h5(b, arrays, attrs)
    assert a.read_bytes() == b.read_bytes()
    back = read_h5(a)
    assert list(back) == ["gt", "ms", "lms", "pan"]
    for k, v in arrays.items():
        assert back[k].dtype == np.float64 and np.array_equal(back[k], v)
    assert read_h5_attrs(a) == attrs
    assert set(read_h5(a, keys=["ms", "pan"])) == {"ms", "pan"}
    with h5py.File(a) as f:  # PanCollection layout: plain N x C x H x W float64 datasets
        assert f["pan"].shape == (3, 1, 32, 32) and f["ms"].dtype == np.float64


def test_h5_full_resolution_without_gt(tmp_path):
    write_h5(tmp_path / "fr.h5", _batch(gt=False))
    assert set(read_h5(tmp_path / "fr.h5")) == {"ms", "lms", "pan"}
    with pytest.raises(BinsharpError, match="lacks key.*gt"):
        read_h5(tmp_path / "fr.h5", keys=["gt", "ms"])


def test_h5_refuses_existing_output(tmp_path):
    p = tmp_path / "a.h5"
    write_h5(p, _batch())
    before = p.read_bytes()
    with pytest.raises(BinsharpError, match="exists"):
        write_h5(p, _batch(seed=5))
    assert p.read_bytes() == before
    write_h5(p, _batch(seed=5), overwrite=True)
    assert p.read_bytes() != before


def _raw_h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f[k] = v
    return path


def test_h5_bad_inputs(tmp_path):
    good = _batch()
    with pytest.raises(BinsharpError, match="lacks key.*lms"):
        read_h5(_raw_h5(tmp_path / "nolms.h5", ms=good["ms"], pan=good["pan"]))
    nan = good["gt"].copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(BinsharpError, match="NaN"):
        read_h5(_raw_h5(tmp_path / "nan.h5", **{**good, "gt": nan}))
    with pytest.raises(BinsharpError, match="inconsistent image counts"):
        read_h5(_raw_h5(tmp_path / "n.h5", **{**good, "pan": good["pan"][:2]}))
    with pytest.raises(BinsharpError, match="not one integer ratio"):
        read_h5(_raw_h5(tmp_path / "r.h5", **{**good, "ms": good["ms"][..., :7, :7]}))
    with pytest.raises(BinsharpError, match="'pan' must have 1 band"):
        read_h5(_raw_h5(tmp_path / "p.h5", **{**good, "pan": good["lms"]}))
    with pytest.raises(BinsharpError, match="N x C x H x W"):
        read_h5(_raw_h5(tmp_path / "d.h5", **{**good, "ms": good["ms"][0]}))
    with pytest.raises(BinsharpError, match="expected 2"):
        p = tmp_path / "attr.h5"
        write_h5(p, good, {"ratio": 4})
        with h5py.File(p, "a") as f:
            f.attrs["ratio"] = 2
        read_h5(p)
    with pytest.raises(BinsharpError, match="missing array"):
        write_h5(tmp_path / "x.h5", {"ms": good["ms"]})
    assert not (tmp_path / "x.h5").exists()


def test_h5_truncated_and_unreadable(tmp_path):
    p = tmp_path / "full.h5"
    write_h5(p, _batch(n=4, size=64))
    data = p.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BinsharpError, match="truncated"):
        read_h5(cut)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(BinsharpError, match="cannot read h5"):
        read_h5(junk)
    with pytest.raises(BinsharpError, match="not found"):
        read_h5(tmp_path / "missing.h5")


# ---------------------------------------------------------------------------------------------- .mat
def test_mat_round_trip_v5(tmp_path):
    rng = np.random.default_rng(2)
    gt = rng.uniform(0, 2047, (32, 32, 4))  # toolbox layout H x W x C
    ms_lr = rng.uniform(0, 2047, (8, 8, 4))
    lms = rng.uniform(0, 2047, (32, 32, 4))
    pan = rng.uniform(0, 2047, (32, 32))
    p = tmp_path / "demo.mat"
    scipy.io.savemat(p, {"I_GT": gt, "I_MS_LR": ms_lr, "I_MS": lms, "I_PAN": pan, "sensor": "QB"})
    d = read_mat(p)
    assert d["gt"].shape == (4, 32, 32) and d["ms"].shape == (4, 8, 8) and d["pan"].shape == (1, 32, 32)
    assert np.array_equal(d["gt"], np.transpose(gt, (2, 0, 1)))
    assert np.array_equal(d["pan"][0], pan)
    assert np.array_equal(d["lms"][2], lms[:, :, 2])
    # fused results the toolbox way, and binsharp's writer
    fused = rng.uniform(0, 2047, (4, 32, 32))
    write_mat(tmp_path / "sr.mat", {"sr": fused})
    assert np.array_equal(read_fused_mat(tmp_path / "sr.mat"), fused)
    scipy.io.savemat(tmp_path / "sr2.mat", {"sr": np.transpose(fused, (1, 2, 0)).astype(np.uint16)})
    assert np.array_equal(
        read_fused_mat(tmp_path / "sr2.mat"),
        np.transpose(np.transpose(fused, (1, 2, 0)).astype(np.uint16), (2, 0, 1)),
    )


def _write_v73(path, variables):
    """A MATLAB v7.3 file: HDF5 with a 512-byte MATLAB header and column-major (reversed) axes."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in variables.items():
            f[k] = np.asarray(v).T
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    )
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header)


def test_mat_v73(tmp_path):
    rng = np.random.default_rng(3)
    ms_lr = rng.uniform(0, 2047, (8, 8, 4))
    pan = rng.uniform(0, 2047, (32, 32))
    sr = rng.uniform(0, 2047, (32, 32, 4))
    p = tmp_path / "v73.mat"
    _write_v73(p, {"I_MS_LR": ms_lr, "I_PAN": pan, "sr": sr})
    d = read_mat(p)
    assert set(d) == {"ms", "pan"}
    assert np.array_equal(d["ms"], np.transpose(ms_lr, (2, 0, 1)))
    assert np.array_equal(d["pan"][0], pan)
    assert np.array_equal(read_fused_mat(p), np.transpose(sr, (2, 0, 1)))


def test_mat_bad_inputs(tmp_path):
    p = tmp_path / "x.mat"
    scipy.io.savemat(p, {"I_MS_LR": np.ones((8, 8, 4))})
    with pytest.raises(BinsharpError, match="lacks variable.*I_PAN"):
        read_mat(p)
    with pytest.raises(BinsharpError, match="lacks variable 'sr'"):
        read_fused_mat(p)
    nan = np.ones((8, 8, 4))
    nan[1, 1, 1] = np.nan
    scipy.io.savemat(tmp_path / "nan.mat", {"sr": nan})
    with pytest.raises(BinsharpError, match="NaN"):
        read_fused_mat(tmp_path / "nan.mat")
    scipy.io.savemat(tmp_path / "big.mat", {"sr": np.ones((64, 64, 8))})
    data = (tmp_path / "big.mat").read_bytes()
    (tmp_path / "cut.mat").write_bytes(data[: len(data) // 3])
    with pytest.raises(BinsharpError, match="cannot read .mat"):
        read_fused_mat(tmp_path / "cut.mat")
    (tmp_path / "junk.mat").write_bytes(b"\x00garbage" * 40)
    with pytest.raises(BinsharpError, match="cannot read .mat"):
        read_mat(tmp_path / "junk.mat")


# ---------------------------------------------------------------------------------------------- GeoTIFF
def test_geotiff_round_trip_keeps_georeferencing(tmp_path):
    p, m, pan_arr, ms_arr = _pair(tmp_path)
    ms = read_geotiff(m)
    assert ms.array.shape == (4, 20, 24) and ms.array.dtype == np.uint16
    assert ms.crs.to_epsg() == 32613 and ms.transform == from_origin(487546.8, 4443553.2, 1.2, 1.2)
    assert np.array_equal(ms.array, ms_arr)
    out = tmp_path / "copy.tif"
    write_geotiff(out, ms.array.astype(np.float64) + 0.4, ms, dtype="uint16")
    back = read_geotiff(out)
    assert back.crs == ms.crs and back.transform == ms.transform
    assert back.array.dtype == np.uint16 and np.array_equal(back.array, ms_arr)
    with pytest.raises(BinsharpError, match="exists"):
        write_geotiff(out, ms.array, ms)
    # a PAN-sized array written "like" the MS covers the same extent at PAN resolution
    pan = read_geotiff(p)
    write_geotiff(tmp_path / "up.tif", pan.array.astype(np.float32), ms)
    up = read_geotiff(tmp_path / "up.tif")
    assert up.transform == pan.transform and up.array.dtype == np.float32
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_geotiff_unreadable(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(BinsharpError, match="cannot read raster"):
        read_geotiff(tmp_path / "bad.tif")
    with pytest.raises(BinsharpError, match="not found"):
        read_geotiff(tmp_path / "none.tif")


def test_pair_ok_and_crop_rule(tmp_path):
    p, m, pan_arr, ms_arr = _pair(tmp_path)
    pan, ms = read_pan_ms_pair(p, m)
    assert pan.array.shape == (1, 80, 96) and ms.array.shape == (4, 20, 24)
    # PAN 79 rows for MS 20 rows: MS cropped to 19 rows, PAN to 76 (anchored at the common top-left corner)
    p2, m2, pan_arr, ms_arr = _pair_in(tmp_path, pan_rows=79)
    pan, ms = read_pan_ms_pair(p2, m2)
    assert pan.array.shape == (1, 76, 96) and ms.array.shape == (4, 19, 24)
    assert np.array_equal(ms.array, ms_arr[:, :19]) and np.array_equal(pan.array, pan_arr[:, :76])
    assert pan.transform == from_origin(487546.8, 4443553.2, 0.3, 0.3)


def _pair_in(tmp_path, **kw):
    d = tmp_path / f"pair{len(list(tmp_path.iterdir()))}"
    d.mkdir()
    return _pair(d, **kw)


def test_pair_bad_inputs(tmp_path):
    p, m, *_ = _pair_in(tmp_path, pan_rows=88)  # 88 PAN rows for 20 MS rows: not ratio 4
    with pytest.raises(BinsharpError, match="not the integer 4"):
        read_pan_ms_pair(p, m)
    p, m, *_ = _pair_in(tmp_path, ms_pixel=1.0)  # pixel sizes not in ratio 4
    with pytest.raises(BinsharpError, match="not registered: pixel sizes"):
        read_pan_ms_pair(p, m)
    p, m, *_ = _pair_in(tmp_path, ms_x0=487546.8 + 0.6)  # origin shifted by two PAN pixels
    with pytest.raises(BinsharpError, match="not registered: top-left"):
        read_pan_ms_pair(p, m)
    p, m, *_ = _pair_in(tmp_path, dtype=np.float32)
    pan = read_geotiff(p)
    pan.array[0, 3, 3] = np.nan
    with pytest.raises(BinsharpError, match="NaN"):
        check_pair(pan, read_geotiff(m))
    ms = read_geotiff(m)
    with pytest.raises(BinsharpError, match="unsupported pixel type"):
        check_pair(read_geotiff(p), Raster(ms.array.astype(np.complex64), ms.crs, ms.transform))
    with pytest.raises(BinsharpError, match="unsupported pixel type"):
        check_pair(read_geotiff(p), Raster(ms.array > 0, ms.crs, ms.transform))
    with pytest.raises(BinsharpError, match="expected 1 band"):
        check_pair(ms, ms)
    d = tmp_path / "crs"
    d.mkdir()
    p, m, *_ = _pair(d)
    ms = read_geotiff(m)
    with pytest.raises(BinsharpError, match="different CRS"):
        from rasterio.crs import CRS as RCRS

        check_pair(read_geotiff(p), Raster(ms.array, RCRS.from_epsg(32612), ms.transform))
    # complex GeoTIFF on disk
    d = tmp_path / "cplx"
    d.mkdir()
    _write_tif(d / "ms.tif", np.ones((4, 20, 24), np.complex64), pixel=1.2)
    with pytest.raises(BinsharpError, match="unsupported pixel type"):
        read_pan_ms_pair(p, d / "ms.tif")


def test_nan_as_declared_nodata_is_accepted(tmp_path):
    p, m, *_ = _pair_in(tmp_path, dtype=np.float32)
    pan = read_geotiff(p)
    pan.array[0, 3, 3] = np.nan
    pan.nodata = float("nan")
    pan2, _ = check_pair(pan, read_geotiff(m))
    assert not pan2.valid_mask()[3, 3] and pan2.valid_mask().sum() == pan2.array[0].size - 1
