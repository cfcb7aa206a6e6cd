"""The engine on a real WV3 tile: decision-forced parity with PyTorch; ``--engine`` fuses like
``--checkpoint`` (export from a saved checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from binsharp import models
from binsharp.deploy import kernels as K
from binsharp.deploy.export import lower_model
from binsharp.deploy.parity import forced_run, record
from binsharp.deploy.runtime import Engine

pytestmark = pytest.mark.skipif(not K.have_kernels(), reason="compiled kernels not built")


def _model(name: str, **kw):
    torch.manual_seed(1)
    m = models.create(name, bands=8, **kw).eval()
    with torch.no_grad():
        for pname, p in m.named_parameters():
            if (p.dim() == 1 or (p.dim() == 4 and p.shape[0] == 1)) and "weight" not in pname:
                p.add_(torch.randn_like(p) * 0.05)
    return m


@pytest.mark.parametrize(
    "name,kw",
    [
        ("bbcu", {"n_units": 6, "zero_tail": False}),
        ("s2bnet", {"dim": 16, "zero_tail": False}),
        ("bnnpan", {"n_modules": 2, "zero_tail": False}),
    ],
)
def test_real_tile_forced_decisions(conformance_case, name, kw):
    case = conformance_case("rr_wv3")
    s = 2047.0
    lms = torch.from_numpy(case["ms_up"][:, 64:104, 96:138].astype(np.float32) / s)[None]
    pan = torch.from_numpy(case["pan"][:, 64:104, 96:138].astype(np.float32) / s)[None]
    m = _model(name, **kw)
    rec = record(m, {"lms": lms, "pan": pan})
    assert len(rec.negative) > 0
    out, flips = forced_run(Engine(lower_model(m)), {"lms": lms.numpy(), "pan": pan.numpy()}, rec)
    assert all(f.in_tie_band for f in flips), flips
    assert np.abs(out - rec.output).max() <= 1e-4 * np.abs(rec.output).max()


def test_engine_fuser_equals_checkpoint_fuser(tmp_path, conformance_case):
    from binsharp.cli import main
    from binsharp.inference.checkpoint import checkpoint_fuser
    from binsharp.inference.engine import engine_fuser
    from binsharp.weights import save_checkpoint

    m = _model("bbcu", n_units=4, zero_tail=False)
    ckpt = save_checkpoint(tmp_path / "bbcu.safetensors", m, {"sensor": "WV3", "bits": 11, "ratio": 4})
    out = tmp_path / "bbcu.bsp"
    assert main(["export", "--checkpoint", str(ckpt), "--storage", "fp32", "-o", str(out)]) == 0
    case = conformance_case("rr_wv3")
    ms, pan, lms = case["ms_lr"][:, :16, :20], case["pan"][:, :64, :80], case["ms_up"][:, :64, :80]
    eng = engine_fuser(out)
    ref = checkpoint_fuser(ckpt)(ms, pan, lms)
    got = eng(ms, pan, lms)
    assert eng.bits == 11 and eng.ratio == 4
    assert got.shape == ref.shape == (8, 64, 80)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_cli_fuse_with_engine_geotiff(tmp_path):
    import rasterio
    from rasterio.transform import Affine

    from binsharp.cli import main
    from binsharp.inference.engine import engine_fuser

    model = tmp_path / "m.bsp"
    assert (
        main(["export", "--model", "bbcu", "--config", '{"n_units": 2}', "--bits", "11", "-o", str(model)])
        == 0
    )
    rng = np.random.default_rng(0)
    ms = rng.integers(100, 2000, (8, 12, 10)).astype(np.uint16)
    pan = rng.integers(100, 2000, (1, 48, 40)).astype(np.uint16)
    crs, px = "EPSG:32613", 0.3
    for path, a, step in ((tmp_path / "pan.tif", pan, px), (tmp_path / "ms.tif", ms, 4 * px)):
        with rasterio.open(path, "w", driver="GTiff", width=a.shape[2], height=a.shape[1], count=a.shape[0],
                           dtype="uint16", crs=crs, transform=Affine.translation(490000.0, 4450000.0)
                           @ Affine.scale(step, -step)) as d:  # fmt: skip
            d.write(a)
    out = tmp_path / "out.tif"
    argv = [
        "fuse",
        "--engine",
        str(model),
        "--pan",
        str(tmp_path / "pan.tif"),
        "--ms",
        str(tmp_path / "ms.tif"),
    ]
    assert main([*argv, "-o", str(out), "--tile", "0", "--border", "circular"]) == 0
    with rasterio.open(out) as d, rasterio.open(tmp_path / "pan.tif") as p:
        assert (d.count, d.height, d.width) == (8, 48, 40)
        assert d.crs == p.crs and d.transform == p.transform
        got = d.read().astype(np.float64)
    ref = engine_fuser(model)(ms.astype(np.float64), pan.astype(np.float64))
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
