"""Named datasets: built on first use from ``dgsamples`` into the cache, atomically, with fixed layouts."""

from __future__ import annotations

import h5py
import pytest

from binsharp.data import builder, catalog
from binsharp.errors import BinsharpError

pytest.importorskip("dgsamples")


def _shapes(path):
    with h5py.File(path, "r") as f:
        return {k: tuple(f[k].shape) for k in f.keys()}, dict(f.attrs)


@pytest.mark.slow
def test_named_datasets_build_into_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BINSHARP_CACHE", str(tmp_path))
    assert catalog.cache_dir() == tmp_path
    assert not catalog.is_built("wv3-longmont")

    train = catalog.dataset_path("wv3-longmont", "train", progress=False)
    root = tmp_path / "datasets" / "wv3-longmont"
    assert train == root / "train.h5"
    m = catalog.dataset_info("wv3-longmont")
    assert m["name"] == "wv3-longmont" and m["sensor"]["name"] == "WV3"
    counts = {k: v["count"] for k, v in m["splits"].items()}
    assert counts == {"train": 1127, "val": 98, "test_rr": 12, "test_fr": 12}

    def rr(n, size, ratio=4):
        full = (n, 8, size, size)
        return {
            "gt": full,
            "ms": (n, 8, size // ratio, size // ratio),
            "lms": full,
            "pan": (n, 1, size, size),
        }

    expect = {
        "train": rr(1127, 64),
        "val": rr(98, 64),
        "test_rr": rr(12, 128),
        "test_fr": {"ms": (12, 8, 128, 128), "lms": (12, 8, 512, 512), "pan": (12, 1, 512, 512)},
    }
    for split, shapes in expect.items():
        path = catalog.dataset_path("wv3-longmont", split)
        got, attrs = _shapes(path)
        assert got == shapes, split
        assert attrs["sensor"] == "WV3" and attrs["bits"] == 11 and attrs["ratio"] == 4
    # regions are disjoint strips with at least the MTF radius between them
    regs = sorted((r["row0"], r["row0"] + r["rows"]) for r in m["regions"].values())
    assert all(b0 - a1 >= 20 for (_, a1), (b0, _) in zip(regs[:-1], regs[1:], strict=True))
    # second use: no rebuild
    mtime = train.stat().st_mtime_ns
    assert catalog.build("wv3-longmont", progress=False) == root
    assert train.stat().st_mtime_ns == mtime
    # WV2: test splits only
    rr = catalog.dataset_path("wv2-longmont", "test_rr", progress=False)
    got, attrs = _shapes(rr)
    assert got["gt"] == (9, 8, 160, 160) and got["ms"] == (9, 8, 40, 40) and attrs["sensor"] == "WV2"
    got, _ = _shapes(catalog.dataset_path("wv2-longmont", "test_fr"))
    assert got == {"ms": (9, 8, 128, 128), "lms": (9, 8, 512, 512), "pan": (9, 1, 512, 512)}
    with pytest.raises(BinsharpError, match="no split 'train'"):
        catalog.dataset_path("wv2-longmont", "train")
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["wv2-longmont", "wv3-longmont"]


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("BINSHARP_CACHE", str(tmp_path))
    calls = []
    real = builder.write_h5_stream

    def flaky(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(builder, "write_h5_stream", flaky)
    with pytest.raises(KeyboardInterrupt):
        catalog.build("wv2-longmont", progress=False)
    assert len(calls) == 2
    assert list((tmp_path / "datasets").iterdir()) == []
    assert not catalog.is_built("wv2-longmont")


def test_catalog_names_and_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("BINSHARP_CACHE", str(tmp_path))
    assert catalog.list_datasets() == ["wv3-longmont", "wv2-longmont"]
    pan, ms = catalog.source_files("wv3-longmont")
    assert pan.name.endswith(".TIF") and "_PAN" in pan.parent.name and "_MUL" in ms.parent.name
    with pytest.raises(BinsharpError, match="unknown dataset"):
        catalog.dataset_info("wv9-nowhere")
    with pytest.raises(BinsharpError, match="no such file or dataset"):
        catalog.dataset_path("wv9-nowhere", "test_rr")
    with pytest.raises(BinsharpError, match="unknown split"):
        catalog.dataset_path("wv3-longmont", "testing")
    h5 = tmp_path / "mine.h5"
    h5.write_bytes(b"")
    assert catalog.dataset_path(h5, "test_rr") == h5
    assert not (tmp_path / "datasets").exists()  # nothing was built
