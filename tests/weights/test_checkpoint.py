"""Safe checkpoints: exact round trip, metadata, refusal of corrupt/foreign/pickled files and of mismatched
inputs, the checkpoint fuser and ``binsharp evaluate/fuse --checkpoint``."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from safetensors.torch import save_file

from binsharp import __version__, inference
from binsharp.cli import main
from binsharp.cli.fusers import fuser_sources
from binsharp.data.io import write_h5
from binsharp.errors import BinsharpError
from binsharp.inference.checkpoint import CheckpointFuser, checkpoint_fuser
from binsharp.models import create, example_inputs, load_checkpoint
from binsharp.protocol import interp23tap
from binsharp.train.resume import load_resume_checkpoint
from binsharp.weights import check_compatible, read_meta, save_checkpoint

META = {"sensor": "QB", "bits": 11, "ratio": 4, "data_manifest": {"name": "tiny", "sha256": "ab"}, "step": 7}


def _model(name: str = "pnn", **kw):
    torch.manual_seed(0)
    return create(name, bands=4, **kw)


@pytest.fixture
def ckpt(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "m.safetensors", _model(channels=8), META)


@pytest.mark.parametrize(
    "name, kw", [("pnn", {"channels": 8}), ("irnet", {"zero_tail": False}), ("bireal", {"zero_tail": False})]
)
def test_round_trip_reproduces_outputs_exactly(tmp_path, name, kw):
    model = _model(name, **kw)
    model.eval()
    x = example_inputs(4, 16, batch=2)
    with torch.no_grad():
        ref = model(**x)
    path = save_checkpoint(tmp_path / "m.safetensors", model, META)
    loaded, meta = load_checkpoint(path)
    assert type(loaded) is type(model) and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(**x), ref)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert meta["model"] == name and meta["bands"] == 4 and meta["config"] == model.config


def test_metadata_contents_and_sidecar(ckpt):
    meta = read_meta(ckpt)
    for key in ("model", "config", "bands", "kind", "sensor", "bits", "ratio", "data_manifest", "recipe",
                "binsharp_version", "step", "format", "format_version", "created"):  # fmt: skip
        assert key in meta
    assert meta["binsharp_version"] == __version__ and meta["step"] == 7
    assert meta["data_manifest"] == {"name": "tiny", "sha256": "ab"}
    assert json.loads(ckpt.with_suffix(".json").read_text()) == meta


def test_existing_output_is_refused(ckpt):
    with pytest.raises(BinsharpError, match="exists"):
        save_checkpoint(ckpt, _model(channels=8), META)


def test_corrupt_truncated_and_foreign_files_are_refused(ckpt, tmp_path):
    data = ckpt.read_bytes()
    cases = {
        "truncated.safetensors": data[: len(data) // 2],
        "header_only.safetensors": data[:12],
        "empty.safetensors": b"",
        "random.safetensors": os.urandom(4096),
        "text.safetensors": b"hello, not a checkpoint\n" * 10,
    }
    for name, payload in cases.items():
        p = tmp_path / name
        p.write_bytes(payload)
        with pytest.raises(BinsharpError):
            load_checkpoint(p)
    plain = tmp_path / "plain.safetensors"  # a valid safetensors file without binsharp metadata
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(BinsharpError, match="no binsharp metadata"):
        load_checkpoint(plain)
    with pytest.raises(BinsharpError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_weights_that_do_not_fit_the_model_are_refused(tmp_path):
    model = _model(channels=8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    meta = {"format": "binsharp-checkpoint", "format_version": 1, "model": "pnn", "config": {"channels": 16},
            "bands": 4}  # fmt: skip
    p = tmp_path / "wrong.safetensors"
    save_file(state, str(p), metadata={"binsharp": json.dumps(meta)})
    with pytest.raises(BinsharpError, match="does not match model"):
        load_checkpoint(p)
    meta["model"] = "no-such-model"
    save_file(state, str(p), metadata={"binsharp": json.dumps(meta)})
    with pytest.raises(BinsharpError, match="no-such-model"):
        load_checkpoint(p)


class _Payload:
    """Unpickling this object would create a file (the attack a safe loader must refuse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_pickle_payloads_are_refused_without_running(tmp_path):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "global_step": 1, "x": _Payload(marker)}, evil)
    with pytest.raises(BinsharpError, match="refusing to load"):
        load_resume_checkpoint(evil)
    assert not marker.exists()
    raw = tmp_path / "evil.safetensors"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(BinsharpError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_unsafe_resume_checkpoint_is_refused_by_the_engine(tmp_path):
    from binsharp.train.engine import train

    rng = np.random.default_rng(0)
    gt = rng.uniform(200, 1800, size=(4, 4, 16, 16))
    ms = gt.reshape(4, 4, 4, 4, 4, 4).mean(axis=(3, 5))
    data = write_h5(tmp_path / "train.h5", {"gt": gt, "ms": ms, "lms": np.kron(ms, np.ones((4, 4))),
                    "pan": gt.mean(1, keepdims=True)}, {"sensor": "QB", "bits": 11, "ratio": 4})  # fmt: skip
    cfg = {"model": {"channels": 4}, "recipe": {"batch_size": 2, "steps": 2, "ckpt_every": 1}}
    out = tmp_path / "run"
    train("pnn", data, out=out, config=cfg, progress=False)
    for p in (out / "model.safetensors", out / "stages/01-main/weights.safetensors"):
        p.unlink()  # make the run look interrupted
    marker = tmp_path / "marker.txt"
    last = out / "stages/01-main/checkpoints/last.ckpt"
    good = torch.load(last, weights_only=True)
    torch.save({**good, "x": _Payload(marker)}, last)
    with pytest.raises(BinsharpError, match="refusing to load"):
        train("pnn", data, out=out, config=cfg, progress=False, resume=True)
    assert not marker.exists()
    torch.save(good, last)  # the genuine checkpoint resumes
    res = train("pnn", data, out=out, config=cfg, progress=False, resume=True)
    assert read_meta(res.checkpoint)["step"] == 2


def test_check_compatible_refuses_mismatches(ckpt):
    meta = read_meta(ckpt)
    check_compatible(meta, bands=4, bits=11, sensor="QB", ratio=4)
    check_compatible(meta, sensor="QuickBird")  # alias of QB
    with pytest.raises(BinsharpError, match="4-band MS images, the input has 8 bands"):
        check_compatible(meta, bands=8)
    with pytest.raises(BinsharpError, match="11-bit data, the input is 12-bit"):
        check_compatible(meta, bits=12)
    with pytest.raises(BinsharpError, match="trained on QB data, the input is from GF2"):
        check_compatible(meta, sensor="GF2")
    with pytest.raises(BinsharpError, match="ratio"):
        check_compatible(meta, ratio=2)


def test_checkpoint_fuser_matches_the_model_in_dn(ckpt):
    rng = np.random.default_rng(1)
    ms = rng.uniform(100, 2000, size=(4, 8, 8))
    pan = rng.uniform(100, 2000, size=(1, 32, 32))
    fuser = checkpoint_fuser(ckpt)
    assert isinstance(fuser, inference.Fuser) and (fuser.name, fuser.bands, fuser.ratio, fuser.bits) == (
        "pnn",
        4,
        4,
        11,
    )
    out = fuser(ms, pan)
    model, _ = load_checkpoint(ckpt)
    s = 2047.0
    t = lambda a: torch.from_numpy((a / s).astype(np.float32))[None]  # noqa: E731
    with torch.no_grad():
        ref = model(ms=t(ms), lms=t(interp23tap(ms, 4)), pan=t(pan))[0].double().numpy() * s
    assert out.dtype == np.float64 and out.shape == (4, 32, 32)
    np.testing.assert_array_equal(out, ref)
    lms = interp23tap(ms, 4) + 50
    assert not np.array_equal(fuser(ms, pan, lms=lms), out)  # a given lms is used
    with pytest.raises(BinsharpError, match="expects 4 MS bands"):
        fuser(rng.uniform(0, 1, (8, 8, 8)), pan)
    with pytest.raises(BinsharpError, match="4-band MS images"):
        checkpoint_fuser(ckpt, sensor="WV3")
    with pytest.raises(BinsharpError, match="11-bit data, the input is 10-bit"):
        checkpoint_fuser(ckpt, sensor="GF2")  # 4 bands, 10 bits
    with pytest.warns(UserWarning, match="trained on QB data, the input is from IKONOS"):
        checkpoint_fuser(ckpt, sensor="IKONOS")  # 4 bands, 11 bits: cross-sensor use is allowed
    with pytest.raises(BinsharpError, match="trained on QB data"):
        checkpoint_fuser(ckpt, sensor="IKONOS", check_sensor=True)
    assert "checkpoint" in fuser_sources()


def _write_tif(path: Path, a: np.ndarray, px: float) -> Path:
    c, h, w = a.shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": c, "dtype": "uint16", "crs": "EPSG:32613",
               "transform": Affine(px, 0.0, 490000.0, 0.0, -px, 4450000.0)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as d:
        d.write(a.astype("uint16"))
    return path


def test_cli_fuse_and_evaluate_with_a_checkpoint(ckpt, tmp_path, capsys):
    rng = np.random.default_rng(2)
    ms = np.rint(rng.uniform(200, 1800, size=(4, 16, 16)))
    pan = np.rint(np.kron(ms.mean(0), np.ones((4, 4)))[None])
    pan_p, ms_p = _write_tif(tmp_path / "pan.tif", pan, 0.5), _write_tif(tmp_path / "ms.tif", ms, 2.0)
    out = tmp_path / "out.tif"
    argv = [
        "fuse",
        "--checkpoint",
        str(ckpt),
        "--pan",
        str(pan_p),
        "--ms",
        str(ms_p),
        "-o",
        str(out),
        "--tile",
        "0",
        "--border",
        "circular",  # the fuser's own border rule, as when it is called directly
    ]
    assert main(argv) == 0
    with rasterio.open(out) as d:
        fused = d.read().astype(np.float64)
    np.testing.assert_allclose(fused, CheckpointFuser(ckpt)(ms, pan), rtol=1e-6, atol=1e-3)
    capsys.readouterr()
    # reduced-resolution evaluation on a PanCollection file recording sensor QB
    gt = rng.uniform(200, 1800, size=(2, 4, 128, 128))
    ms_lr = gt.reshape(2, 4, 32, 4, 32, 4).mean(axis=(3, 5))
    lms = np.stack([interp23tap(m, 4) for m in ms_lr])
    h5 = write_h5(tmp_path / "test.h5", {"gt": gt, "ms": ms_lr, "lms": lms, "pan": gt.mean(1, keepdims=True)},
                  {"sensor": "QB", "bits": 11, "ratio": 4})  # fmt: skip
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(h5)]) == 0
    text = capsys.readouterr().out
    assert "pnn" in text.lower()
    # an 8-band set is refused with a clear message
    gt8 = np.concatenate([gt, gt], axis=1)
    h58 = write_h5(tmp_path / "test8.h5", {"gt": gt8, "ms": np.concatenate([ms_lr, ms_lr], 1),
                   "lms": np.concatenate([lms, lms], 1), "pan": gt.mean(1, keepdims=True)},
                   {"sensor": "WV3", "bits": 11, "ratio": 4})  # fmt: skip
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(h58)]) == 2
    assert "8 bands" in capsys.readouterr().err
