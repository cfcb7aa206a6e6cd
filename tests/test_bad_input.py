"""Bad input through the command line: a clear message on stderr, exit status 2, no output left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from binsharp.cli import main

CRS = "EPSG:32613"
PX = 0.3


def _write_tif(path: Path, a: np.ndarray, px: float, dtype: str = "uint16", nodata=None) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=a.shape[2],
        height=a.shape[1],
        count=a.shape[0],
        dtype=dtype,
        crs=CRS,
        transform=from_origin(490000.0, 4450000.0, px, px),
        nodata=nodata,
    ) as d:
        d.write(a.astype(dtype))
    return path


def _arrays(bands: int = 8, h: int = 16, w: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ms = rng.integers(200, 1800, size=(bands, h, w)).astype(np.float64)
    pan = rng.integers(200, 1800, size=(1, 4 * h, 4 * w)).astype(np.float64)
    return ms, pan


def _snapshot(d: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in d.iterdir()}


def _fuse(tmp: Path, pan: Path, ms: Path, *extra: str, out: str = "out.tif") -> list[str]:
    return [
        "fuse",
        "--method",
        "gs",
        "--sensor",
        "WV3",
        "--pan",
        str(pan),
        "--ms",
        str(ms),
        "-o",
        str(tmp / out),
        *extra,
    ]


def _expect_error(argv: list[str], directory: Path, capsys, *needles: str) -> str:
    before = _snapshot(directory)
    assert main(argv) == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle.lower() in err.lower(), err
    assert _snapshot(directory) == before, "the directory changed"
    return err


@pytest.fixture
def good(tmp_path):
    ms, pan = _arrays()
    return _write_tif(tmp_path / "pan.tif", pan, PX), _write_tif(tmp_path / "ms.tif", ms, 4 * PX)


def test_size_not_an_integer_ratio(tmp_path, capsys):
    ms, pan = _arrays()
    pan_path = _write_tif(tmp_path / "pan.tif", pan[:, :62, :], PX)
    ms_path = _write_tif(tmp_path / "ms.tif", ms, 4 * PX)
    _expect_error(_fuse(tmp_path, pan_path, ms_path), tmp_path, capsys, "ratio 4", "62 x 64")


def test_band_count_not_matching_sensor(tmp_path, capsys):
    ms, pan = _arrays(bands=4)
    pan_path, ms_path = _write_tif(tmp_path / "pan.tif", pan, PX), _write_tif(tmp_path / "ms.tif", ms, 4 * PX)
    _expect_error(_fuse(tmp_path, pan_path, ms_path), tmp_path, capsys, "band count 4", "WV3")


def test_pan_with_several_bands(tmp_path, capsys):
    ms, pan = _arrays()
    pan_path = _write_tif(tmp_path / "pan.tif", np.concatenate([pan, pan]), PX)
    ms_path = _write_tif(tmp_path / "ms.tif", ms, 4 * PX)
    _expect_error(_fuse(tmp_path, pan_path, ms_path), tmp_path, capsys, "PAN", "2 bands")


def test_nan_pixels(tmp_path, capsys):
    ms, pan = _arrays()
    pan[0, 40, 7] = np.nan
    pan_path = _write_tif(tmp_path / "pan.tif", pan, PX, dtype="float32")
    ms_path = _write_tif(tmp_path / "ms.tif", ms, 4 * PX)
    _expect_error(_fuse(tmp_path, pan_path, ms_path, "--tile", "32"), tmp_path, capsys, "NaN", "pan.tif")


def test_nodata_pixels(tmp_path, capsys):
    ms, pan = _arrays()
    ms[:, 3, 3] = 0
    pan_path = _write_tif(tmp_path / "pan.tif", pan, PX, nodata=0)
    ms_path = _write_tif(tmp_path / "ms.tif", ms, 4 * PX, nodata=0)
    _expect_error(_fuse(tmp_path, pan_path, ms_path), tmp_path, capsys, "no-data", "ms.tif", "--allow-nodata")


def test_wrong_dtype(tmp_path, capsys):
    ms, pan = _arrays()
    pan_path = _write_tif(tmp_path / "pan.tif", pan, PX, dtype="complex64")
    ms_path = _write_tif(tmp_path / "ms.tif", ms, 4 * PX)
    _expect_error(_fuse(tmp_path, pan_path, ms_path), tmp_path, capsys, "data type complex64")


def test_unreadable_file(tmp_path, capsys, good):
    pan_path, _ = good
    bogus = tmp_path / "ms_bogus.tif"
    bogus.write_text("this is not a raster\n")
    _expect_error(_fuse(tmp_path, pan_path, bogus), tmp_path, capsys, "cannot read MS file", "ms_bogus.tif")


def test_truncated_file(tmp_path, capsys, good):
    pan_path, ms_path = good
    data = ms_path.read_bytes()
    cut = tmp_path / "ms_cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    _expect_error(_fuse(tmp_path, pan_path, cut), tmp_path, capsys, "ms_cut.tif", "cannot read MS file")


def test_missing_file(tmp_path, capsys, good):
    pan_path, _ = good
    _expect_error(_fuse(tmp_path, pan_path, tmp_path / "nope.tif"), tmp_path, capsys, "MS file not found")


def test_output_exists(tmp_path, capsys, good):
    pan_path, ms_path = good
    (tmp_path / "out.tif").write_bytes(b"keep me")
    _expect_error(_fuse(tmp_path, pan_path, ms_path), tmp_path, capsys, "output path exists", "--overwrite")
    assert (tmp_path / "out.tif").read_bytes() == b"keep me"


def test_not_coregistered(tmp_path, capsys):
    ms, pan = _arrays()
    pan_path = _write_tif(tmp_path / "pan.tif", pan, PX)
    ms_path = _write_tif(tmp_path / "ms.tif", ms, 3 * PX)
    _expect_error(_fuse(tmp_path, pan_path, ms_path), tmp_path, capsys, "not co-registered")


def test_method_needs_sensor_and_known_name(tmp_path, capsys, good):
    pan_path, ms_path = good
    argv = [
        "fuse",
        "--method",
        "gs",
        "--pan",
        str(pan_path),
        "--ms",
        str(ms_path),
        "-o",
        str(tmp_path / "o.tif"),
    ]
    _expect_error(argv, tmp_path, capsys, "--sensor")
    argv = _fuse(tmp_path, pan_path, ms_path)
    argv[2] = "nosuch"
    _expect_error(argv, tmp_path, capsys, "unknown method 'nosuch'")


def test_failure_while_writing_leaves_nothing(tmp_path, capsys):
    """A no-data pixel found only in the last tile aborts the run after tiles were written: no output left."""
    ms, pan = _arrays()
    ms[:, 15, 15] = 0
    pan_path = _write_tif(tmp_path / "pan.tif", pan, PX)
    ms_path = _write_tif(tmp_path / "ms.tif", ms, 4 * PX, nodata=0)
    argv = _fuse(tmp_path, pan_path, ms_path, "--tile", "16", "--halo", "0")
    _expect_error(argv, tmp_path, capsys, "no-data")


def test_subprocess_exit_status_and_stderr(tmp_path):
    ms, pan = _arrays()
    pan_path = _write_tif(tmp_path / "pan.tif", pan[:, :, :60], PX)
    ms_path = _write_tif(tmp_path / "ms.tif", ms, 4 * PX)
    before = _snapshot(tmp_path)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "binsharp.cli", *_fuse(tmp_path, pan_path, ms_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "binsharp fuse: error:" in proc.stderr and "ratio 4" in proc.stderr
    assert proc.stdout == ""
    assert _snapshot(tmp_path) == before
