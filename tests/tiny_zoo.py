"""A tiny model zoo for the zoo, bench and quickstart tests.

:func:`tiny_assets` builds once per session a small generated 8-band WV3-like dataset and a zoo holding
``pnn`` and ``bnn`` trained for a few steps on it by ``benchmarks/train_zoo.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from affine import Affine

from binsharp.data.builder import build_dataset
from binsharp.data.io import Raster

ROOT = Path(__file__).resolve().parents[1]
DATASET = "tiny"
ZOO_MODELS = ("pnn", "bnn")


def make_scene(h: int = 128, w: int = 448, bands: int = 8, seed: int = 0) -> tuple[Raster, Raster]:
    """A smooth synthetic scene: PAN (1, 4h, 4w) and MS (bands, h, w), uint16 DN, north-up, no CRS."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : h * 4, 0 : w * 4].astype(np.float64)
    pan = 700 + 300 * np.sin(x / 23.0) * np.cos(y / 17.0) + 120 * np.sin((x + 2 * y) / 7.0)
    pan += rng.normal(0, 15, x.shape)
    blocks = pan.reshape(h, 4, w, 4).mean(axis=(1, 3))
    ms = np.stack([blocks * (0.7 + 0.08 * b) + 20 * b for b in range(bands)])
    pan_a = np.clip(pan, 1, 2047)[None].astype(np.uint16)
    ms_a = np.clip(ms, 1, 2047).astype(np.uint16)
    return Raster(pan_a, None, Affine(0.5, 0, 0, 0, -0.5, 0)), Raster(ms_a, None, Affine(2, 0, 0, 0, -2, 0))


def load_train_zoo():
    """The ``benchmarks/train_zoo.py`` script as a module."""
    spec = importlib.util.spec_from_file_location("train_zoo", ROOT / "benchmarks" / "train_zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_assets(tmp_path_factory) -> dict[str, Path]:
    """``{"data": dataset dir, "zoo": zoo dir, "runs": run dirs}``, built once per test session."""
    base = tmp_path_factory.getbasetemp() / "binsharp-tiny-assets"
    done = base / "done"
    paths = {"data": base / "data", "zoo": base / "zoo", "runs": base / "runs"}
    if done.is_file():
        return paths
    base.mkdir(parents=True, exist_ok=True)
    pan, ms = make_scene()
    build_dataset(
        pan,
        ms,
        sensor="WV3",
        out_dir=paths["data"],
        name=DATASET,
        splits={"train": 0.35, "val": 0.15, "test": 0.5},
        patch=32,
        stride=16,
        test_tile=96,
        min_test_tiles=2,
        fr_tile=64,
        margin=20,
        progress=False,
        overwrite=True,
    )
    rc = load_train_zoo().main(
        [
            "--models",
            ",".join(ZOO_MODELS),
            "--data",
            str(paths["data"]),
            "--steps",
            "4",
            "--batch",
            "2",
            "--warmup",
            "1",
            "--val-every",
            "2",
            "--out",
            str(paths["zoo"]),
            "--runs",
            str(paths["runs"]),
            "--no-progress",
        ]
    )
    assert rc == 0
    done.write_text("ok")
    return paths
