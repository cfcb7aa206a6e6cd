"""Dataset builder on a small generated scene: disjoint regions, no-data, content, reproducibility."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import Affine

from binsharp.data.builder import build_dataset, guard_radius, read_manifest, trim_box
from binsharp.data.datasets import PanDataset
from binsharp.data.io import read_h5, read_h5_attrs, read_pan_ms_pair
from binsharp.errors import BinsharpError
from binsharp.protocol import interp23tap, reduced_resolution_triplet


def from_origin(west, north, xsize, ysize):
    """North-up transform of the top-left corner (west, north) with pixel size xsize x ysize."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


RATIO = 4
H, W = 200, 320  # MS pixels
INTERIOR_BAD = (150, 60)  # MS pixel made no-data through one zero PAN pixel (inside the train strip)
OPTS = dict(
    ratio=RATIO,
    splits={"train": 0.4, "val": 0.15, "test": 0.45},
    patch=32,
    stride=8,
    test_tile=96,
    min_test_tiles=2,
    fr_tile=128,
    margin=20,
    progress=False,
)


def make_scene(folder, seed=0):
    """QuickBird-like scene: PAN (1, 800, 1280) and MS (4, 200, 320) uint16 GeoTIFFs with no-data edges."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : H * RATIO, 0 : W * RATIO].astype(np.float64)
    pan = 900 + 400 * np.sin(x / 37.0) * np.cos(y / 23.0) + 150 * np.sin((x + 2 * y) / 9.0)
    pan += rng.normal(0, 20, pan.shape)
    blocks = pan.reshape(H, RATIO, W, RATIO).mean(axis=(1, 3))
    ms = np.stack([blocks * g + o for g, o in ((0.8, 50), (0.9, 30), (1.0, 0), (1.3, -100))])
    pan = np.clip(pan, 1, 2047).astype(np.uint16)[None]
    ms = np.clip(ms, 1, 2047).astype(np.uint16)
    ms[:, 0, :] = 0  # no-data top row (MS)
    pan[0, :, -3:] = 0  # no-data right edge (PAN) -> last MS column invalid
    r, c = INTERIOR_BAD
    pan[0, RATIO * r + 1, RATIO * c + 2] = 0
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr, px in (("pan.tif", pan, 0.6), ("ms.tif", ms, 2.4)):
        with rasterio.open(
            folder / name,
            "w",
            driver="GTiff",
            count=arr.shape[0],
            height=arr.shape[1],
            width=arr.shape[2],
            dtype="uint16",
            crs="EPSG:32613",
            transform=from_origin(500000.0, 4400000.0, px, px),
        ) as dst:
            dst.write(arr)
    return folder / "pan.tif", folder / "ms.tif"


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    pan_path, ms_path = make_scene(root / "src")
    pan, ms = read_pan_ms_pair(pan_path, ms_path)
    out = root / "ds"
    manifest = build_dataset(pan, ms, sensor="QB", out_dir=out, **OPTS)
    return {"root": root, "pan": pan, "ms": ms, "out": out, "manifest": manifest}


def _intervals(reg, axis):
    start = reg["row0"] if axis == 0 else reg["col0"]
    size = reg["rows"] if axis == 0 else reg["cols"]
    return start, start + size


def test_regions_disjoint_with_margin(scene):
    m = scene["manifest"]
    regs = m["regions"]
    assert set(regs) == {"train", "val", "test"}
    box = m["valid_box"]
    assert (box["row0"], box["col0"], box["rows"], box["cols"]) == (1, 0, H - 1, W - 1)
    axis = 1  # the scene is wider than tall: strips side by side
    spans = sorted(_intervals(r, axis) for r in regs.values())
    for (_, a1), (b0, _) in zip(spans[:-1], spans[1:], strict=True):
        assert b0 - a1 >= m["margin"]["ms_px"] >= 20
    for r in regs.values():  # inside the valid box
        assert r["row0"] >= box["row0"] and r["row0"] + r["rows"] <= box["row0"] + box["rows"]
        assert r["col0"] >= box["col0"] and r["col0"] + r["cols"] <= box["col0"] + box["cols"]
    # every patch/tile lies inside its own region
    for split, reg_name, size_key in (("train", "train", "patch"), ("val", "val", "patch")):
        reg = regs[reg_name]
        size = m["splits"][split][size_key]
        for r, c in m["splits"][split]["positions_ms_px"]:
            assert reg["row0"] <= r and r + size <= reg["row0"] + reg["rows"]
            assert reg["col0"] <= c and c + size <= reg["col0"] + reg["cols"]
    reg = regs["test"]
    for split, size in (
        ("test_rr", m["splits"]["test_rr"]["tile"]),
        ("test_fr", m["splits"]["test_fr"]["tile_ms"]),
    ):
        tiles = m["splits"][split]["tiles_ms_px"]
        assert len(tiles) == m["splits"][split]["count"] >= 2
        for r, c in tiles:
            assert reg["row0"] <= r and r + size <= reg["row0"] + reg["rows"]
            assert reg["col0"] <= c and c + size <= reg["col0"] + reg["cols"]
        occupied = np.zeros((H, W), int)
        for r, c in tiles:
            occupied[r : r + size, c : c + size] += 1
        assert occupied.max() == 1  # tiles are disjoint


def test_no_data_excluded(scene):
    m = scene["manifest"]
    guard = m["guard_ms_px"]
    assert guard == guard_radius(RATIO) >= 20
    br, bc = INTERIOR_BAD
    n_clean = 0
    for r, c in m["splits"]["train"]["positions_ms_px"]:
        size = m["splits"]["train"]["patch"]
        assert not (r - guard <= br < r + size + guard and c - guard <= bc < c + size + guard)
        n_clean += 1
    reg = m["regions"]["train"]
    full_grid = ((reg["rows"] - 32) // 8 + 1) * ((reg["cols"] - 32) // 8 + 1)
    assert 0 < n_clean < full_grid  # the interior no-data pixel removed patches, not all of them
    for name in ("train.h5", "val.h5", "test_rr.h5"):
        d = read_h5(scene["out"] / name)
        assert d["gt"].min() > 0  # no no-data (0) pixel in any reference patch
    fr = read_h5(scene["out"] / "test_fr.h5")
    assert fr["pan"].min() > 0 and fr["ms"].min() > 0


def test_content_matches_sources_and_protocol(scene):
    m, out = scene["manifest"], scene["out"]
    ms_src = scene["ms"].array.astype(np.float64)
    pan_src = scene["pan"].array.astype(np.float64)
    train = read_h5(out / "train.h5")
    assert train["gt"].shape[1:] == (4, 32, 32) and train["ms"].shape[1:] == (4, 8, 8)
    assert train["pan"].shape[1:] == (1, 32, 32) and train["lms"].shape[1:] == (4, 32, 32)
    for i, (r, c) in enumerate(m["splits"]["train"]["positions_ms_px"][:20]):
        assert np.array_equal(train["gt"][i], ms_src[:, r : r + 32, c : c + 32])
    rr = read_h5(out / "test_rr.h5")
    t = m["splits"]["test_rr"]["tile"]
    for i, (r, c) in enumerate(m["splits"]["test_rr"]["tiles_ms_px"]):
        ref = reduced_resolution_triplet(
            ms_src[:, r : r + t, c : c + t],
            pan_src[:, 4 * r : 4 * (r + t), 4 * c : 4 * (c + t)],
            "QB",
            ratio=4,
        )
        for k in ("gt", "ms", "lms", "pan"):
            assert np.array_equal(rr[k][i], ref[k]), k
    fr = read_h5(out / "test_fr.h5")
    assert "gt" not in fr and fr["pan"].shape[1:] == (1, 128, 128) and fr["ms"].shape[1:] == (4, 32, 32)
    for i, (r, c) in enumerate(m["splits"]["test_fr"]["tiles_ms_px"]):
        assert np.array_equal(fr["pan"][i], pan_src[:, 4 * r : 4 * r + 128, 4 * c : 4 * c + 128])
        assert np.array_equal(fr["ms"][i], ms_src[:, r : r + 32, c : c + 32])
        assert np.array_equal(fr["lms"][i], interp23tap(fr["ms"][i], 4))
    for name in ("train.h5", "val.h5", "test_rr.h5", "test_fr.h5"):
        attrs = read_h5_attrs(out / name)
        assert (attrs["sensor"], attrs["bits"], attrs["ratio"]) == ("QB", 11, 4)
    for split, info in m["splits"].items():
        n = read_h5(out / info["file"], keys=["ms"])["ms"].shape[0]
        assert n == info["count"], split
        assert hashlib.sha256((out / info["file"]).read_bytes()).hexdigest() == info["sha256"]
    assert read_manifest(out) == m
    assert m["sources"]["pan"]["sha256"] == hashlib.sha256(scene["pan"].path.read_bytes()).hexdigest()


def test_same_bytes_every_build(scene, tmp_path):
    out2 = tmp_path / "again"
    build_dataset(scene["pan"], scene["ms"], sensor="QB", out_dir=out2, **OPTS)
    files = sorted(p.name for p in scene["out"].iterdir())
    assert files == ["manifest.json", "test_fr.h5", "test_rr.h5", "train.h5", "val.h5"]
    assert sorted(p.name for p in out2.iterdir()) == files
    for name in files:
        assert (scene["out"] / name).read_bytes() == (out2 / name).read_bytes(), name


def test_build_refusals_leave_nothing(scene, tmp_path):
    pan, ms = scene["pan"], scene["ms"]
    with pytest.raises(BinsharpError, match="exists"):
        build_dataset(pan, ms, sensor="QB", out_dir=scene["out"], **OPTS)
    with pytest.raises(BinsharpError, match="fewer than 99 valid"):
        build_dataset(pan, ms, sensor="QB", out_dir=tmp_path / "x", **{**OPTS, "min_test_tiles": 99})
    with pytest.raises(BinsharpError, match="band count 4 does not match sensor WV3"):
        build_dataset(pan, ms, sensor="WV3", out_dir=tmp_path / "x", **OPTS)
    with pytest.raises(BinsharpError, match="below the MTF filter radius"):
        build_dataset(pan, ms, sensor="QB", out_dir=tmp_path / "x", **{**OPTS, "margin": 8})
    with pytest.raises(BinsharpError, match="multiple of the ratio"):
        build_dataset(pan, ms, sensor="QB", out_dir=tmp_path / "x", **{**OPTS, "stride": 6})
    assert list(tmp_path.iterdir()) == []  # no partial directory, no temporary left behind


def test_trim_box_keeps_interior_holes():
    valid = np.ones((50, 60), bool)
    valid[0, :] = False
    valid[:, -2:] = False
    valid[25, 30] = False
    assert trim_box(valid) == (1, 0, 49, 58)


def _dihedral(x, k, flip):
    return torch.rot90(torch.flip(x, (-1,)) if flip else x, k, (-2, -1))


def test_pan_dataset(scene):
    ds = PanDataset(scene["out"] / "train.h5")
    raw = read_h5(scene["out"] / "train.h5")
    assert len(ds) == raw["gt"].shape[0] and ds.bits == 11 and ds.has_gt and ds.bands == 4
    item = ds[3]
    assert set(item) == {"gt", "ms", "lms", "pan"}
    assert all(v.dtype == torch.float32 for v in item.values())
    assert item["ms"].shape == (4, 8, 8) and item["pan"].shape == (1, 32, 32)
    np.testing.assert_allclose(item["gt"].numpy(), raw["gt"][3] / 2047, rtol=1e-6)
    assert float(item["pan"].max()) <= 1.0
    ds10 = PanDataset(scene["out"] / "train.h5", bits=10)
    np.testing.assert_allclose(ds10[3]["pan"].numpy(), raw["pan"][3] / 1023, rtol=1e-6)
    fr = PanDataset(scene["out"], split="test_fr")
    assert not fr.has_gt and set(fr[0]) == {"ms", "lms", "pan"}
    # augmentation: one dihedral transform applied to every key
    aug = PanDataset(scene["out"] / "train.h5", augment=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        a = aug[5]
        ref = ds[5]
        match = None
        for k in range(4):
            for flip in (False, True):
                if all(torch.equal(a[key], _dihedral(ref[key], k, flip)) for key in ref):
                    match = (k, flip)
        assert match is not None
        seen.add(match)
    assert len(seen) > 1
