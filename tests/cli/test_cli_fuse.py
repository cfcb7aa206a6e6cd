"""``binsharp fuse`` end to end on generated GeoTIFFs: georeferencing, values, tiling, options."""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

from binsharp.cli import fusers, main
from binsharp.cli.fusers import FUSER_SOURCES, register_fuser_source
from binsharp.inference import method_fuser
from binsharp.inference.tiling import fuse_array_tiled
from geotiff import write_tif

CRS = "EPSG:32613"
X0, Y0, PX = 490000.0, 4450000.0, 0.3


def _scene(bands: int = 8, h: int = 32, w: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth synthetic scene in 11-bit DN: ms (C,h,w), pan (1,4h,4w)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : 4 * h, 0 : 4 * w] / 4.0
    base = 800 + 300 * np.sin(yy / 5.0) * np.cos(xx / 7.0) + rng.normal(0, 20, size=yy.shape)
    pan = np.clip(base, 1, 2047)[None]
    lr = pan[0].reshape(h, 4, w, 4).mean(axis=(1, 3))
    ms = np.stack(
        [np.clip(lr * (0.6 + 0.1 * b) + rng.normal(0, 5, size=lr.shape), 1, 2047) for b in range(bands)]
    )
    return np.rint(ms), np.rint(pan)


_write = partial(write_tif, dtype="uint16", x0=X0, y0=Y0)


@pytest.fixture
def pair(tmp_path):
    ms, pan = _scene()
    return ms, pan, _write(tmp_path / "pan.tif", pan, PX), _write(tmp_path / "ms.tif", ms, 4 * PX)


def test_fuse_untiled_matches_the_method_and_keeps_georeferencing(pair, tmp_path, capsys):
    ms, pan, pan_path, ms_path = pair
    out = tmp_path / "out.tif"
    argv = [
        "fuse",
        "--method",
        "mtf-glp-hpm",
        "--sensor",
        "WV3",
        "--pan",
        str(pan_path),
        "--ms",
        str(ms_path),
    ]
    assert main([*argv, "-o", str(out), "--tile", "0", "--border", "circular"]) == 0
    assert "wrote" in capsys.readouterr().out
    expected = method_fuser("mtf-glp-hpm", "WV3")(ms, pan).astype(np.float32)
    with rasterio.open(out) as d, rasterio.open(pan_path) as p:
        assert (d.count, d.height, d.width, d.dtypes[0]) == (8, 128, 96, "float32")
        assert d.crs == p.crs and d.transform == p.transform
        np.testing.assert_array_equal(d.read(), expected)


EXP = ["--method", "exp", "--sensor", "WV3", "--halo", "48"]
BBCU = ["--model", "bbcu", "--pretrained", "wv3-longmont"]  # default halo, 96


@pytest.mark.parametrize(("source", "border"), [(EXP, "mirror"), (BBCU, "mirror"), (EXP, "circular")])
def test_fuse_tiled_equals_untiled_borders_included(tmp_path, source, border):
    """Mirrored scene borders (the default): every tile sees the context the untiled run sees, so a local
    fuser (the 23-tap interpolation, a convolutional network) gives the untiled result to float rounding.
    With the toolbox's circular rule the tiles touching the scene border differ there."""
    if source[0] == "--model" and "model" not in FUSER_SOURCES:
        pytest.skip("the model zoo source is not registered")
    ms, pan = _scene(bands=8, h=48, w=48)  # 192 x 192 PAN: border tiles do not read the whole scene
    pan_path, ms_path = _write(tmp_path / "pan.tif", pan, PX), _write(tmp_path / "ms.tif", ms, 4 * PX)
    common = ["fuse", *source, "--pan", str(pan_path), "--ms", str(ms_path), "--border", border]
    assert main([*common, "-o", str(tmp_path / "a.tif"), "--tile", "0"]) == 0
    assert main([*common, "-o", str(tmp_path / "b.tif"), "--tile", "64"]) == 0
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        full, tiled = a.read().astype(np.float64), b.read().astype(np.float64)
    if border == "mirror":
        np.testing.assert_allclose(tiled, full, rtol=0, atol=1e-2)
    else:
        assert np.abs(tiled - full).max() > 1.0


def test_fuse_circular_borders_differ_at_the_scene_border_only(pair, tmp_path):
    _, _, pan_path, ms_path = pair
    common = ["fuse", "--method", "exp", "--sensor", "WV3", "--pan", str(pan_path), "--ms", str(ms_path)]
    common += ["--border", "circular"]
    assert main([*common, "-o", str(tmp_path / "a.tif"), "--tile", "0"]) == 0
    assert main([*common, "-o", str(tmp_path / "b.tif"), "--tile", "64", "--halo", "48"]) == 0
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        full, tiled = a.read(), b.read()
        assert a.transform == b.transform
    # EXP (23-tap interpolation) is local: with a halo larger than its support, the interior matches
    # (at the scene border the circular extension of the interpolator sees the window, not the scene)
    np.testing.assert_array_equal(tiled[:, 40:-40, 40:-40], full[:, 40:-40, 40:-40])
    assert not np.array_equal(tiled, full)


def test_fuse_integer_output_and_overwrite(pair, tmp_path):
    ms, pan, pan_path, ms_path = pair
    out = tmp_path / "out.tif"
    argv = [
        "fuse",
        "--method",
        "gs",
        "--sensor",
        "WV3",
        "--pan",
        str(pan_path),
        "--ms",
        str(ms_path),
        "-o",
        str(out),
    ]
    assert main([*argv, "--tile", "0"]) == 0
    assert main([*argv, "--tile", "0"]) == 2  # exists
    assert main([*argv, "--tile", "0", "--dtype", "uint16", "--overwrite", "--border", "circular"]) == 0
    expected = np.clip(np.rint(method_fuser("gs", "WV3")(ms, pan)), 0, 2047).astype(np.uint16)
    with rasterio.open(out) as d:
        assert d.dtypes[0] == "uint16"
        np.testing.assert_array_equal(d.read(), expected)


def test_fuse_custom_sensor_with_four_bands(tmp_path):
    ms, pan = _scene(bands=4, h=16, w=16)
    pan_path, ms_path = _write(tmp_path / "p.tif", pan, PX), _write(tmp_path / "m.tif", ms, 4 * PX)
    argv = ["fuse", "--method", "mtf-glp-fs", "--sensor", "custom", "--bits", "11"]
    assert main([*argv, "--pan", str(pan_path), "--ms", str(ms_path), "-o", str(tmp_path / "o.tif")]) == 0
    with rasterio.open(tmp_path / "o.tif") as d:
        assert d.count == 4 and np.isfinite(d.read()).all()


def test_registered_source_is_exposed_and_used(pair, tmp_path, monkeypatch):
    """A fuser source registered by another package becomes a CLI option of ``fuse``."""
    ms, pan, pan_path, ms_path = pair
    seen = {}

    def factory(value, args, *, sensor, ratio):
        seen["value"] = value
        return method_fuser("exp", "WV3")

    monkeypatch.setattr(fusers, "FUSER_SOURCES", dict(FUSER_SOURCES))
    register_fuser_source("engine", factory, metavar="MODEL.bsp", help="packed model")
    out = tmp_path / "o.tif"
    argv = ["fuse", "--engine", "m.bsp", "--pan", str(pan_path), "--ms", str(ms_path), "-o", str(out)]
    assert main(argv) == 0
    assert seen["value"] == "m.bsp"
    with rasterio.open(out) as d:
        expected = fuse_array_tiled(method_fuser("exp", "WV3"), ms, pan)
        np.testing.assert_array_equal(d.read(), expected.astype(np.float32))


def test_unregistered_sources_are_not_exposed(capsys):
    with pytest.raises(SystemExit):
        main(["fuse", "--help"])
    text = capsys.readouterr().out
    assert "--method" in text
    for option in ("checkpoint", "engine", "model"):
        assert (f"--{option}" in text) == (option in FUSER_SOURCES)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_fuse_without_georeferencing(tmp_path):
    ms, pan = _scene(bands=8, h=16, w=16)
    for name, a in (("p.tif", pan), ("m.tif", ms)):
        with rasterio.open(
            tmp_path / name, "w", driver="GTiff", width=a.shape[2], height=a.shape[1], count=a.shape[0],
            dtype="uint16",
        ) as d:  # fmt: skip
            d.write(a.astype("uint16"))
    argv = ["fuse", "--method", "gsa", "--sensor", "WV3", "--pan", str(tmp_path / "p.tif")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*argv, "--ms", str(tmp_path / "m.tif"), "-o", str(tmp_path / "o.tif")]) == 0
    assert [w for w in caught if w.category is NotGeoreferencedWarning] == []
    with rasterio.open(tmp_path / "o.tif") as d:
        assert d.crs is None and (d.count, d.height, d.width) == (8, 64, 64)
        expected = fuse_array_tiled(method_fuser("gsa", "WV3"), ms, pan)
        np.testing.assert_array_equal(d.read(), expected.astype(np.float32))


def test_fuse_integer_output_out_of_range_is_refused_with_a_count_unless_clip(tmp_path, capsys):
    ms, pan = _scene(bands=8, h=16, w=16)
    ms = np.clip(np.rint(ms * 2.2), 0, 2047)  # a bright scene near saturation: GS injects detail beyond 2047
    pan_path, ms_path = _write(tmp_path / "p.tif", pan, PX), _write(tmp_path / "m.tif", ms, 4 * PX)
    argv = ["fuse", "--method", "gs", "--sensor", "WV3", "--pan", str(pan_path), "--ms", str(ms_path)]
    argv += ["-o", str(tmp_path / "o.tif"), "--dtype", "uint16", "--tile", "0"]
    fused = np.rint(fuse_array_tiled(method_fuser("gs", "WV3"), ms, pan, tile=0))
    n_out = int(((fused < 0) | (fused > 2047)).any(axis=0).sum())
    assert n_out > 0
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{n_out} of 4096 output pixels" in err and "0..2047" in err and "--clip" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "p.tif"]
    assert main([*argv, "--clip"]) == 0
    with rasterio.open(tmp_path / "o.tif") as d:
        np.testing.assert_array_equal(d.read(), np.clip(fused, 0, 2047).astype(np.uint16))


def test_fuse_refuses_input_dn_beyond_the_sensor_bit_depth(tmp_path, capsys):
    ms, pan = _scene(bands=8, h=16, w=16)
    ms = ms.copy()
    ms[2, 3, 4] = 4377  # a 13-bit value in an 11-bit WV3 scene
    pan_path, ms_path = _write(tmp_path / "p.tif", pan, PX), _write(tmp_path / "m.tif", ms, 4 * PX)
    argv = ["fuse", "--method", "exp", "--sensor", "WV3", "--pan", str(pan_path), "--ms", str(ms_path)]
    assert main([*argv, "-o", str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert "m.tif has DN outside 0..2047" in err and "4377" in err and "--sensor" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "p.tif"]
    custom = ["--sensor", "custom", "--bits", "13"]
    assert main([*argv[:3], *custom, *argv[5:], "-o", str(tmp_path / "o.tif")]) == 0


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_fuse_output_takes_the_ms_crs_and_the_inputs_nodata(tmp_path):
    """A PAN without CRS: the output has the MS's CRS on the PAN grid, and the inputs' no-data value."""
    ms, pan = _scene(bands=8, h=16, w=16)
    pan_transform = Affine.translation(X0, Y0) @ Affine.scale(PX, -PX)
    with rasterio.open(
        tmp_path / "p.tif", "w", driver="GTiff", width=64, height=64, count=1, dtype="uint16",
        transform=pan_transform, nodata=65535,
    ) as d:  # fmt: skip
        d.write(pan.astype("uint16"))
    ms_path = _write(tmp_path / "m.tif", ms, 4 * PX, nodata=65535)
    argv = [
        "fuse",
        "--method",
        "exp",
        "--sensor",
        "WV3",
        "--pan",
        str(tmp_path / "p.tif"),
        "--ms",
        str(ms_path),
    ]
    assert main([*argv, "-o", str(tmp_path / "o.tif"), "--dtype", "uint16"]) == 0
    with rasterio.open(tmp_path / "o.tif") as o, rasterio.open(ms_path) as m:
        assert o.crs == m.crs
        assert o.transform == pan_transform == m.transform @ Affine.scale(0.25)
        assert o.nodata == 65535


def test_fuse_refuses_an_output_that_is_an_input_or_unwritable(pair, tmp_path, capsys):
    _, _, pan_path, ms_path = pair
    argv = ["fuse", "--method", "exp", "--sensor", "WV3", "--pan", str(pan_path), "--ms", str(ms_path)]
    before = ms_path.read_bytes()
    assert main([*argv, "-o", str(ms_path), "--overwrite"]) == 2
    assert "is an input file" in capsys.readouterr().err and ms_path.read_bytes() == before
    assert main([*argv, "-o", "/proc/x.tif"]) == 2
    err = capsys.readouterr().err
    assert "cannot write to directory /proc" in err and "Traceback" not in err


@pytest.mark.parametrize(("ratio", "message"), [("0", "power of two"), ("3", "power of two")])
def test_fuse_ratio_must_be_a_power_of_two(pair, tmp_path, capsys, ratio, message):
    _, _, pan_path, ms_path = pair
    argv = ["fuse", "--method", "exp", "--sensor", "WV3", "--pan", str(pan_path), "--ms", str(ms_path)]
    assert main([*argv, "-o", str(tmp_path / "o.tif"), "--ratio", ratio]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()


def test_fuse_sensor_band_mismatch_is_named_before_the_fuser(pair, tmp_path, capsys):
    _, _, pan_path, ms_path = pair
    if "model" not in FUSER_SOURCES:
        pytest.skip("the model zoo source is not registered")
    argv = ["fuse", "--model", "bbcu", "--pretrained", "wv3-longmont", "--sensor", "QB"]
    argv += ["--pan", str(pan_path), "--ms", str(ms_path), "-o", str(tmp_path / "o.tif")]
    assert main(argv) == 2
    assert "band count 8 does not match sensor QB" in capsys.readouterr().err


def test_misspelled_method_gets_a_suggestion(pair, tmp_path, capsys):
    _, _, pan_path, ms_path = pair
    argv = ["fuse", "--method", "awpl", "--sensor", "wv3", "--pan", str(pan_path), "--ms", str(ms_path)]
    assert main([*argv, "-o", str(tmp_path / "o.tif")]) == 2
    assert "did you mean awlp?" in capsys.readouterr().err
    argv[2], argv[4] = "exp", "wv-3"
    assert main([*argv, "-o", str(tmp_path / "o.tif")]) == 2
    assert "did you mean WV3?" in capsys.readouterr().err
