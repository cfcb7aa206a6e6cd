"""Bad input through the command line: a clear message on stderr, exit status 2, no output left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pytest

from binsharp.cli import main
from geotiff import write_tif

CRS = "EPSG:32613"
PX = 0.3


_write_tif = partial(write_tif, dtype="uint16")


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


def test_nodata_in_the_last_tile_only(tmp_path, capsys):
    """A no-data pixel in the last of 16 tiles is found and reported; no output is left."""
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


# ----------------------------------------------------------------------------------------------------------
# binsharp evaluate
# ----------------------------------------------------------------------------------------------------------


def _h5(
    path: Path, *, n: int = 2, bands: int = 8, drop: str | None = None, attrs: dict | None = None, **override
):
    """A small full-resolution PanCollection h5 (pan 64 x 64) written with h5py, optionally broken."""
    ms, pan = _arrays(bands=bands)
    arrays = {
        "ms": np.stack([ms] * n),
        "lms": np.stack([np.repeat(np.repeat(ms, 4, axis=1), 4, axis=2)] * n),
        "pan": np.stack([pan] * n),
    }
    arrays.update(override)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            if k != drop:
                f[k] = v
        for k, v in ({"sensor": "WV3", "bits": 11, "ratio": 4} if attrs is None else attrs).items():
            f.attrs[k] = v
    return path


def _evaluate(data: Path, *extra: str) -> list[str]:
    return ["evaluate", "--method", "exp", "--data", str(data), *extra]


def test_h5_missing_key(tmp_path, capsys):
    path = _h5(tmp_path / "t.h5", drop="pan")
    _expect_error(_evaluate(path), tmp_path, capsys, "lacks key", "pan")


def test_h5_reduced_split_without_gt(tmp_path, capsys):
    path = _h5(tmp_path / "t.h5")
    _expect_error(_evaluate(path, "--split", "rr"), tmp_path, capsys, "no 'gt'", "--split fr")


def test_h5_truncated_or_not_hdf5(tmp_path, capsys):
    path = _h5(tmp_path / "t.h5")
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 3])
    _expect_error(_evaluate(cut), tmp_path, capsys, "cut.h5")
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    _expect_error(_evaluate(junk), tmp_path, capsys, "cannot read h5 file", "junk.h5")


def test_h5_nan_values(tmp_path, capsys):
    ms, pan = _arrays()
    pan = pan.copy()
    pan[0, 5, 5] = np.nan
    path = _h5(tmp_path / "t.h5", pan=np.stack([pan] * 2))
    _expect_error(_evaluate(path), tmp_path, capsys, "'pan'", "NaN")


def test_h5_wrong_dtype(tmp_path, capsys):
    path = _h5(tmp_path / "t.h5", pan=np.full((2, 1, 64, 64), b"x", dtype="S1"))
    _expect_error(_evaluate(path), tmp_path, capsys, "'pan'", "t.h5")


def test_h5_size_not_an_integer_ratio(tmp_path, capsys):
    path = _h5(tmp_path / "t.h5", ms=np.ones((2, 8, 15, 16)) * 500)
    _expect_error(_evaluate(path), tmp_path, capsys, "ratio")


def test_h5_band_count_not_matching_sensor(tmp_path, capsys):
    path = _h5(tmp_path / "t.h5", bands=4)
    _expect_error(_evaluate(path), tmp_path, capsys, "band count 4", "WV3")


def test_evaluate_unknown_dataset_and_missing_file(tmp_path, capsys):
    _expect_error(_evaluate(Path("no-such-dataset")), tmp_path, capsys, "no-such-dataset")
    _expect_error(_evaluate(tmp_path / "absent.h5"), tmp_path, capsys, "not found", "absent.h5")


def test_evaluate_json_output_exists(tmp_path, capsys):
    path = _h5(tmp_path / "t.h5")
    (tmp_path / "r.json").write_text("{}")
    _expect_error(_evaluate(path, "--json", str(tmp_path / "r.json")), tmp_path, capsys, "output path exists")
    assert (tmp_path / "r.json").read_text() == "{}"


def test_evaluate_fused_outputs_that_do_not_fit(tmp_path, capsys):
    path = _h5(tmp_path / "t.h5", n=2)
    fused = tmp_path / "fused"
    fused.mkdir()
    np.save(fused / "a.npy", np.zeros((8, 64, 64)))
    _expect_error(
        ["evaluate", "--fused", str(fused), "--data", str(path)], tmp_path, capsys, "holds 1 images", "2"
    )
    np.save(fused / "b.npy", np.zeros((8, 32, 32)))
    _expect_error(
        ["evaluate", "--fused", str(fused), "--data", str(path)], tmp_path, capsys, "shape (8, 32, 32)"
    )
    bad = tmp_path / "fused.h5"
    with h5py.File(bad, "w") as f:
        f["other"] = np.zeros((2, 8, 64, 64))
    _expect_error(
        ["evaluate", "--fused", str(bad), "--data", str(path)], tmp_path, capsys, "lacks dataset 'sr'"
    )


def test_evaluate_failure_midway_leaves_no_json(tmp_path, capsys):
    """A bad second fused image aborts after the first was evaluated: no --json/--csv written."""
    path = _h5(tmp_path / "t.h5", n=2)
    fused = tmp_path / "fused"
    fused.mkdir()
    np.save(fused / "a.npy", np.full((8, 64, 64), 700.0))
    np.save(fused / "b.npy", np.full((8, 64, 64), np.nan))
    argv = ["evaluate", "--fused", str(fused), "--data", str(path), "--json", str(tmp_path / "r.json")]
    _expect_error([*argv, "--csv", str(tmp_path / "r.csv")], tmp_path, capsys, "image 1", "NaN")


def test_fuse_takes_one_method(tmp_path, capsys, good):
    pan_path, ms_path = good
    argv = _fuse(tmp_path, pan_path, ms_path)
    argv[2] = "all"
    _expect_error(argv, tmp_path, capsys, "one method at a time")


# ----------------------------------------------------------------------------------------------------------
# Outputs that cannot be written: refused before any work, exit 2, no traceback
# ----------------------------------------------------------------------------------------------------------


def _unwritable_dirs(tmp_path: Path) -> list[Path]:
    """``/proc`` (no file can be created there, even by root) and, for other users, a read-only directory."""
    dirs = [Path("/proc")]
    if os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        dirs.append(ro)
    return dirs


def test_unwritable_output_directories(tmp_path, capsys, good):
    pan_path, ms_path = good
    data = _h5(tmp_path / "t.h5")
    for d in _unwritable_dirs(tmp_path):
        commands = [
            _fuse(tmp_path, pan_path, ms_path)[:-2] + ["-o", str(d / "x.tif")],
            ["export", "--model", "bbcu", "--bands", "8", "-o", str(d / "x.bsp")],
            [
                "data",
                "build",
                "--pan",
                str(pan_path),
                "--ms",
                str(ms_path),
                "--sensor",
                "WV3",
                "-o",
                str(d / "ds"),
            ],
            ["train", "--model", "pnn", "--data", str(data), "--out", str(d / "run")],
            _evaluate(data, "--json", str(d / "r.json")),
        ]
        for argv in commands:
            assert main(argv) == 2, argv
            captured = capsys.readouterr()
            assert f"cannot write to directory {d}" in captured.err, captured.err
            assert captured.out == ""  # refused before any work (evaluate prints no table first)


def test_evaluate_fused_h5_of_strings(tmp_path, capsys):
    path = _h5(tmp_path / "t.h5", n=2)
    bad = tmp_path / "fused.h5"
    with h5py.File(bad, "w") as f:
        f["sr"] = np.full((2, 8, 64, 64), b"x", dtype="S1")
    argv = ["evaluate", "--fused", str(bad), "--data", str(path)]
    _expect_error(argv, tmp_path, capsys, "fused.h5", "'sr'", "unsupported dtype")


def test_train_config_that_is_a_binary_file(tmp_path, capsys):
    path = _h5(tmp_path / "t.h5")
    config = tmp_path / "model.bin"
    config.write_bytes(bytes(range(256)) * 4)
    argv = [
        "train",
        "--model",
        "pnn",
        "--data",
        str(path),
        "--config",
        str(config),
        "--out",
        str(tmp_path / "r"),
    ]
    _expect_error(argv, tmp_path, capsys, "model.bin", "not a text (YAML) file")


def test_h5_bool_pan_and_complex_ms_are_named(tmp_path, capsys):
    path = _h5(tmp_path / "b.h5", pan=np.ones((2, 1, 64, 64), dtype=bool))
    _expect_error(_evaluate(path), tmp_path, capsys, "'pan'", "unsupported dtype bool")
    ms, _ = _arrays()
    path = _h5(tmp_path / "c.h5", ms=np.stack([ms, ms]).astype(np.complex128))
    err = _expect_error(_evaluate(path), tmp_path, capsys, "'ms'", "unsupported dtype complex128")
    assert "truncated" not in err


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_all_zero_data_is_refused(tmp_path, capsys):
    zeros = np.zeros((8, 16, 16))
    path = _h5(
        tmp_path / "z.h5",
        ms=np.stack([zeros] * 2),
        lms=np.zeros((2, 8, 64, 64)),
        pan=np.zeros((2, 1, 64, 64)),
    )
    err = _expect_error(_evaluate(path), tmp_path, capsys, "image 0 of 'ms' is constant", "no data")
    assert "Warning" not in err


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_perfect_fusion_shows_inf_without_a_spread(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gt = rng.uniform(100, 1000, size=(2, 8, 128, 128))
    data = tmp_path / "g.h5"
    with h5py.File(data, "w") as f:
        f["gt"], f["ms"], f["lms"] = gt, gt[:, :, 2::4, 2::4], gt
        f["pan"] = gt.mean(axis=1, keepdims=True)
        for k, v in {"sensor": "WV3", "bits": 11, "ratio": 4}.items():
            f.attrs[k] = v
    with h5py.File(tmp_path / "sr.h5", "w") as f:
        f["sr"] = gt
    assert main(["evaluate", "--fused", str(tmp_path / "sr.h5"), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert " inf" in out and "nan" not in out


def test_misspelled_method_is_refused_before_a_dataset_is_built(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BINSHARP_CACHE", str(tmp_path / "cache"))
    assert main(["evaluate", "--method", "awpl", "--data", "wv2-longmont"]) == 2
    assert "did you mean awlp?" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()
    assert main(["evaluate", "--method", "exp", "--data", "wv3-longmnt"]) == 2
    assert "did you mean wv3-longmont" in capsys.readouterr().err
