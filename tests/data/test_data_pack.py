"""Scene pack files: the dataset rebuilt from a pack equals the one built from the source rasters."""

from __future__ import annotations

import numpy as np
import pytest
from test_data_builder import OPTS, make_scene

from binsharp.data.builder import build_dataset
from binsharp.data.io import read_h5, read_pan_ms_pair
from binsharp.data.pack import build_from_pack, pack_scene, read_pack
from binsharp.errors import BinsharpError


def test_pack_rebuilds_the_same_dataset(tmp_path):
    pan, ms = read_pan_ms_pair(*make_scene(tmp_path / "src"))
    opts = {k: v for k, v in OPTS.items() if k not in ("ratio", "progress")}
    build_dataset(pan, ms, sensor="QB", out_dir=tmp_path / "direct", name="tiny", **OPTS)
    meta = pack_scene(pan, ms, tmp_path / "scene.npz", name="tiny", sensor="QB", build_kwargs=opts)
    assert meta["crs"] == "EPSG:32613"
    manifest = build_from_pack(tmp_path / "scene.npz", tmp_path / "rebuilt", progress=False)
    assert manifest["name"] == "tiny" and manifest["pack"]["sha256"] == meta["sha256"]
    for split in ("train", "val", "test_rr"):
        a, b = read_h5(tmp_path / "direct" / f"{split}.h5"), read_h5(tmp_path / "rebuilt" / f"{split}.h5")
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_corrupt_or_foreign_pack_is_refused(tmp_path):
    pan, ms = read_pan_ms_pair(*make_scene(tmp_path / "src"))
    pack_scene(pan, ms, tmp_path / "scene.npz", name="tiny", sensor="QB")
    with np.load(tmp_path / "scene.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["pan"] = arrays["pan"].copy()
    arrays["pan"][0, 5, 5] += 1
    np.savez_compressed(tmp_path / "bad.npz", **arrays)
    with pytest.raises(BinsharpError, match="checksum"):
        read_pack(tmp_path / "bad.npz")
    np.savez_compressed(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(BinsharpError, match="not a binsharp pack"):
        read_pack(tmp_path / "other.npz")
