"""``binsharp data build|info|list`` end to end on generated GeoTIFFs, and its bad inputs."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
from rasterio.transform import Affine

from binsharp.cli import main
from binsharp.data.io import read_h5_attrs
from geotiff import write_tif


def from_origin(west, north, xsize, ysize):
    """North-up transform of the top-left corner (west, north) with pixel size xsize x ysize."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


SMALL = [
    "--splits", "train=0.4,val=0.15,test=0.45", "--patch", "32", "--stride", "8", "--test-tile", "96",
    "--min-test-tiles", "1", "--fr-tile", "128", "--margin", "20", "--no-progress",
]  # fmt: skip


_tif = partial(write_tif, x0=500000.0, y0=4400000.0)


def _scene(folder, h=128, w=256, pan_rows=None):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0 : 4 * h, 0 : 4 * w]
    pan = (900 + 400 * np.sin(x / 31.0) * np.cos(y / 17.0) + rng.normal(0, 20, x.shape)).clip(1, 2047)
    ms = pan.reshape(h, 4, w, 4).mean(axis=(1, 3))
    ms = np.stack([ms * g for g in (0.8, 0.9, 1.0, 1.2)]).clip(1, 2047).astype(np.uint16)
    pan = pan.astype(np.uint16)[None, : pan_rows or 4 * h]
    folder.mkdir(parents=True, exist_ok=True)
    return _tif(folder / "pan.tif", pan, 0.5), _tif(folder / "ms.tif", ms, 2.0)


def test_build_custom_pair_and_info(tmp_path, capsys):
    pan, ms = _scene(tmp_path / "src")
    out = tmp_path / "ds"
    argv = ["data", "build", "--pan", str(pan), "--ms", str(ms), "--sensor", "QB", "-o", str(out), *SMALL]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "train.h5" in text and "test_fr" in text
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["splits"]) == {"train", "val", "test_rr", "test_fr"}
    assert m["sensor"]["name"] == "QB" and m["splits"]["test_rr"]["count"] >= 1
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # an existing output is refused (exit 2) and left untouched
    assert main(argv) == 2
    assert "exists" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # info on the directory and on one h5 file
    assert main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"train     train.h5     {m['splits']['train']['count']:>6}" in text
    assert "QB" in text and "gt 32x32  ms 8x8" in text
    assert main(["data", "info", str(out / "test_fr.h5")]) == 0
    text = capsys.readouterr().out
    assert "pan       " in text and "x 1 x 128 x 128" in text
    assert main(["data", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == m


def test_build_custom_sensor(tmp_path, capsys):
    pan, ms = _scene(tmp_path / "src")
    out = tmp_path / "custom"
    argv = ["data", "build", "--pan", str(pan), "--ms", str(ms), "--sensor", "custom", "--bands", "4"]
    argv += ["--bits", "12", "--gnyq-ms", "0.3", "0.3", "0.29", "0.28", "--gnyq-pan", "0.15", "-o", str(out)]
    assert main(argv + SMALL) == 0
    attrs = read_h5_attrs(out / "test_rr.h5")
    assert attrs["sensor"] == "custom" and attrs["bits"] == 12
    assert attrs["gnyq_ms"] == [0.3, 0.3, 0.29, 0.28]


def test_build_bad_inputs_exit_2_without_output(tmp_path, capsys):
    pan, ms = _scene(tmp_path / "bad", pan_rows=500)  # 500 PAN rows for 128 MS rows: not ratio 4
    out = tmp_path / "ds"
    assert main(["data", "build", "--pan", str(pan), "--ms", str(ms), "--sensor", "QB", "-o", str(out)]) == 2
    assert "not the integer 4" in capsys.readouterr().err
    pan, ms = _scene(tmp_path / "good")
    assert main(["data", "build", "--pan", str(pan), "--ms", str(ms), "--sensor", "WV3", "-o", str(out)]) == 2
    assert "band count 4 does not match sensor WV3" in capsys.readouterr().err
    assert main(["data", "build", "--pan", str(pan), "--ms", str(ms), "-o", str(out)]) == 2
    assert "--sensor" in capsys.readouterr().err
    assert main(["data", "build", "--pan", str(pan), "--ms", str(ms), "--sensor", "QB", "-o", str(out),
                 "--splits", "train=x"]) == 2  # fmt: skip
    assert "NAME=FRACTION" in capsys.readouterr().err
    # default settings ask for 9 test tiles of at least 128 px: this scene is too small
    assert main(["data", "build", "--pan", str(pan), "--ms", str(ms), "--sensor", "QB", "-o", str(out),
                 "--no-progress"]) == 2  # fmt: skip
    assert "fewer than 9" in capsys.readouterr().err
    assert main(["data", "build", "no-such-set"]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "nothing")]) == 2
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good"]


def test_list(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BINSHARP_CACHE", str(tmp_path))
    assert main(["data", "list"]) == 0
    text = capsys.readouterr().out
    assert "wv3-longmont" in text and "wv2-longmont" in text and "not built" in text
    assert str(tmp_path) in text


def _hidden(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_force_replaces_only_a_binsharp_dataset(tmp_path, capsys):
    pan, ms = _scene(tmp_path / "src")
    out = tmp_path / "ds"
    argv = ["data", "build", "--pan", str(pan), "--ms", str(ms), "--sensor", "QB", "-o", str(out), *SMALL]
    # a directory of the user's: refused with --force, everything kept
    (out / "sub").mkdir(parents=True)
    (out / "thesis.txt").write_text("years of work")
    (out / "sub" / "code.py").write_text("print(1)")
    assert main([*argv, "--force"]) == 2
    assert "not a binsharp dataset" in capsys.readouterr().err
    assert (out / "thesis.txt").read_text() == "years of work" and (out / "sub" / "code.py").is_file()
    # a file at -o: refused, kept, nothing hidden left beside it
    target = tmp_path / "file-out"
    target.write_text("a file")
    assert main([*argv[: -len(SMALL) - 2], "-o", str(target), *SMALL, "--force"]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert target.read_text() == "a file" and _hidden(tmp_path) == []
    # a binsharp dataset: replaced; with a file added by the user: refused
    ds = tmp_path / "real"
    argv_ds = [*argv[: -len(SMALL) - 2], "-o", str(ds), *SMALL]
    assert main(argv_ds) == 0
    (ds / "notes.txt").write_text("mine")
    assert main([*argv_ds, "--force"]) == 2
    assert "notes.txt" in capsys.readouterr().err and (ds / "notes.txt").is_file()
    (ds / "notes.txt").unlink()
    assert main([*argv_ds, "--force"]) == 0
    assert (ds / "manifest.json").is_file() and _hidden(tmp_path) == []


def test_test_tile_too_small_to_evaluate_and_bad_ratio(tmp_path, capsys):
    pan, ms = _scene(tmp_path / "src")
    argv = ["data", "build", "--pan", str(pan), "--ms", str(ms), "--sensor", "QB", "-o", str(tmp_path / "ds")]
    assert main([*argv, *SMALL, "--test-tile", "64"]) == 2
    assert "too small to evaluate" in capsys.readouterr().err
    for ratio in ("0", "3"):
        assert main([*argv, *SMALL, "--ratio", ratio]) == 2
        assert "power of two" in capsys.readouterr().err
    assert main(["data", "build", "wv3-longmnt"]) == 2
    assert "did you mean wv3-longmont" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_data_help_is_plain_text(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["data", "--help"])
    text = capsys.readouterr().out
    assert "binsharp data build" in text and "``" not in text
