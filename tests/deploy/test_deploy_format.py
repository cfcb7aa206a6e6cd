"""Robustness of the ``.bsp`` loader and the engine: truncated, corrupted, foreign and mismatched files give a
clear :class:`BinsharpError`, never a crash or silent garbage."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import numpy as np
import pytest
import torch

from binsharp import models
from binsharp.deploy import bsp
from binsharp.deploy import kernels as K
from binsharp.deploy.export import lower_model
from binsharp.deploy.runtime import Engine
from binsharp.errors import BinsharpError

pytestmark = pytest.mark.skipif(not K.have_kernels(), reason="compiled kernels not built")


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    torch.manual_seed(0)
    m = models.create("bbcu", bands=4, n_units=2)
    return bsp.to_bytes(lower_model(m))


def _rewrite_header(data: bytes, edit) -> bytes:
    """Re-encode ``data`` with ``edit(header_dict)`` applied and a valid header checksum."""
    magic, version, res, hlen, _ = bsp._PREFIX.unpack_from(data, 0)
    header = json.loads(zlib.decompress(data[bsp._PREFIX.size : bsp._PREFIX.size + hlen]))
    body = data[bsp._align(bsp._PREFIX.size + hlen) :]
    edit(header)
    hb = zlib.compress(json.dumps(header).encode())
    head = bsp._PREFIX.pack(magic, version, res, len(hb), hashlib.sha256(hb).digest()) + hb
    head += b"\0" * (bsp._align(len(head)) - len(head))
    return head + body


def test_roundtrip_is_exact(model_bytes):
    m = bsp.from_bytes(model_bytes)
    again = bsp.to_bytes(m)
    assert again == model_bytes
    assert model_bytes[:8] == bsp.MAGIC
    assert struct.unpack_from("<I", model_bytes, 8)[0] == bsp.VERSION


@pytest.mark.parametrize("frac", [0.0, 0.001, 0.01, 0.3, 0.7, 0.999])
def test_truncated_file(model_bytes, frac):
    cut = model_bytes[: int(len(model_bytes) * frac)]
    with pytest.raises(BinsharpError, match="truncated|bad magic|not a .bsp"):
        bsp.from_bytes(cut, "m.bsp")


def test_trailing_bytes(model_bytes):
    with pytest.raises(BinsharpError, match="trailing"):
        bsp.from_bytes(model_bytes + b"\0" * 8)


def test_bad_magic(model_bytes):
    with pytest.raises(BinsharpError, match="bad magic"):
        bsp.from_bytes(b"PK\x03\x04" + model_bytes[4:])


def test_wrong_version(model_bytes):
    data = bytearray(model_bytes)
    struct.pack_into("<I", data, 8, bsp.VERSION + 1)
    with pytest.raises(BinsharpError, match=f"unsupported .bsp format version {bsp.VERSION + 1}"):
        bsp.from_bytes(bytes(data))


def test_corrupted_header_and_data(model_bytes):
    hdr = bytearray(model_bytes)
    hdr[bsp._PREFIX.size + 10] ^= 0x01
    with pytest.raises(BinsharpError, match="header checksum"):
        bsp.from_bytes(bytes(hdr))
    rng = np.random.default_rng(0)
    start = bsp._align(bsp._PREFIX.size + struct.unpack_from("<Q", model_bytes, 16)[0])
    for pos in rng.integers(start, len(model_bytes), 20):
        data = bytearray(model_bytes)
        data[pos] ^= 0x40
        try:
            bsp.from_bytes(bytes(data))
        except BinsharpError as exc:
            assert "checksum" in str(exc)
        else:  # a flipped padding byte between tensors does not matter
            assert bsp.from_bytes(bytes(data)).tensors.keys() == bsp.from_bytes(model_bytes).tensors.keys()


def test_random_garbage_never_crashes():
    rng = np.random.default_rng(1)
    for n in (0, 10, 56, 57, 200, 5000):
        blob = bsp.MAGIC + rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        with pytest.raises(BinsharpError):
            bsp.from_bytes(blob)


def test_header_not_json_or_not_zlib(model_bytes):
    def fake(raw: bytes) -> bytes:
        magic, version, res, hlen, _ = bsp._PREFIX.unpack_from(model_bytes, 0)
        head = bsp._PREFIX.pack(magic, version, res, len(raw), hashlib.sha256(raw).digest()) + raw
        return head + b"\0" * (bsp._align(len(head)) - len(head))

    with pytest.raises(BinsharpError, match="cannot be decompressed"):
        bsp.from_bytes(fake(b"{not zlib}"))
    with pytest.raises(BinsharpError, match="not valid JSON"):
        bsp.from_bytes(fake(zlib.compress(b"{oops")))
    with pytest.raises(BinsharpError, match="size limit|not a complete"):
        bsp.from_bytes(fake(zlib.compress(b" " * (bsp.MAX_HEADER + 10))))


def test_header_tampering_detected(model_bytes):
    def bad_size(h):
        name = next(iter(h["tensors"]))
        h["tensors"][name]["shape"] = [10**6]

    def bad_dtype(h):
        h["tensors"][next(iter(h["tensors"]))]["dtype"] = "object"

    def bad_offset(h):
        t = h["tensors"][next(iter(h["tensors"]))]
        t["offset"] = 10**9

    for edit, msg in ((bad_size, "does not match shape"), (bad_dtype, "unsupported dtype"),
                      (bad_offset, "truncated")):  # fmt: skip
        with pytest.raises(BinsharpError, match=msg):
            bsp.from_bytes(_rewrite_header(model_bytes, edit))


def test_engine_rejects_unknown_ops_and_dangling_tensors(model_bytes):
    def unknown(h):
        h["graph"][0]["op"] = "__import__"

    def dangling(h):
        h["graph"][1]["in"] = ["nowhere"]

    def bad_shape(h):
        op = next(o for o in h["graph"] if o["op"] == "bconv")
        op["attrs"]["wshape"] = [1, 2, 3, 3]

    for edit, msg in ((unknown, "unknown kind"), (dangling, "undefined tensor"), (bad_shape, "does not fit")):
        m = bsp.from_bytes(_rewrite_header(model_bytes, edit))
        with pytest.raises(BinsharpError, match=msg):
            Engine(m)


def test_mismatched_band_count(model_bytes):
    eng = Engine(bsp.from_bytes(model_bytes))
    lms = np.zeros((1, 8, 16, 16), np.float32)
    pan = np.zeros((1, 1, 16, 16), np.float32)
    with pytest.raises(BinsharpError, match="8 channels but the engine model expects 4 bands"):
        eng(lms=lms, pan=pan)
    with pytest.raises(BinsharpError, match="needs input 'pan'"):
        eng(lms=np.zeros((1, 4, 16, 16), np.float32))
    with pytest.raises(BinsharpError, match="differ in size"):
        eng(lms=np.zeros((1, 4, 16, 16), np.float32), pan=np.zeros((1, 1, 8, 8), np.float32))


def test_engine_fuser_band_mismatch_and_missing_file(tmp_path, model_bytes):
    from binsharp.inference.engine import engine_fuser
    from binsharp.sensors import get_sensor

    p = tmp_path / "m.bsp"
    p.write_bytes(model_bytes)
    with pytest.raises(BinsharpError, match="bit depth"):
        engine_fuser(p)
    with pytest.raises(BinsharpError, match="4-band"):
        engine_fuser(p, sensor=get_sensor("WV3"), bits=11)
    f = engine_fuser(p, bits=11)
    with pytest.raises(BinsharpError, match="expects 4 MS bands"):
        f(np.zeros((8, 4, 4)), np.zeros((1, 16, 16)))
    with pytest.raises(BinsharpError, match="cannot read model file"):
        engine_fuser(tmp_path / "missing.bsp", bits=11)


# ------------------------------------------------------------------------------------------------ storage
@pytest.fixture(scope="module")
def lowered():
    torch.manual_seed(0)
    return lower_model(models.create("bnnpan", bands=4, n_modules=1, zero_tail=False))


@pytest.mark.parametrize("storage", bsp.STORAGE)
def test_storage_modes_decode_to_float32(lowered, storage):
    data = bsp.to_bytes(lowered, storage)
    m = bsp.from_bytes(data)
    assert m.storage == storage
    header = json.loads(zlib.decompress(data[bsp._PREFIX.size : bsp._PREFIX.size + bsp._PREFIX.unpack_from(
        data, 0)[3]]))  # fmt: skip
    stored = {name: t["dtype"] for name, t in header["tensors"].items()}
    thresholds = {n for op in lowered.graph for r, n in op["params"].items() if r in bsp.THRESHOLD_ROLES}
    assert thresholds and all(stored[n] == "float32" for n in thresholds)
    for name, ref in lowered.tensors.items():
        got = m.tensors[name]
        assert got.dtype == ref.dtype and got.shape == ref.shape
        if stored[name] == "float16":
            np.testing.assert_array_equal(got, ref.astype(np.float16).astype(np.float32))
        elif stored[name] == "int8":  # half a step of its row's scale
            step = np.abs(ref.reshape(ref.shape[0], -1)).max(axis=1) / 127
            assert (np.abs(got - ref).reshape(ref.shape[0], -1) <= 0.5001 * step[:, None] + 1e-12).all()
        else:
            np.testing.assert_array_equal(got, ref)
    kinds = set(stored.values()) & {"float16", "int8"}
    assert kinds == {"fp32": set(), "fp16": {"float16"}, "int8": {"float16", "int8"}}[storage]
    if storage == "fp16":
        assert bsp.to_bytes(m) == data  # float16 -> float32 -> float16 is exact


def test_storage_sizes_and_unknown_mode(lowered):
    sizes = {s: len(bsp.to_bytes(lowered, s)) for s in bsp.STORAGE}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    with pytest.raises(BinsharpError, match="unknown storage 'fp8'"):
        bsp.to_bytes(lowered, "fp8")


def test_version_1_files_still_load(lowered):
    """A file of format version 1 (float32 tensors, no storage key) loads as fp32."""

    def to_v1(h: dict) -> None:
        del h["storage"]
        h["version"] = 1

    data = bytearray(_rewrite_header(bsp.to_bytes(lowered, "fp32"), to_v1))
    struct.pack_into("<I", data, 8, 1)
    m = bsp.from_bytes(bytes(data))
    assert m.storage == "fp32"
    for name, ref in lowered.tensors.items():
        np.testing.assert_array_equal(m.tensors[name], ref)


def test_version_1_files_cannot_hold_float16(lowered):
    data = bytearray(_rewrite_header(bsp.to_bytes(lowered, "fp16"), lambda h: h.update(version=1)))
    struct.pack_into("<I", data, 8, 1)
    with pytest.raises(BinsharpError, match="unsupported dtype 'float16'"):
        bsp.from_bytes(bytes(data))


def test_int8_scale_checksum(lowered):
    data = bsp.to_bytes(lowered, "int8")

    def corrupt(h):
        t = next(t for t in h["tensors"].values() if t["dtype"] == "int8")
        t["scale"]["sha256"] = "0" * 64

    with pytest.raises(BinsharpError, match="scale'?: checksum mismatch"):
        bsp.from_bytes(_rewrite_header(data, corrupt))


def test_cli_export_storage(tmp_path, capsys):
    from binsharp.cli import main

    cfg = json.dumps({"n_units": 2})
    sizes = {}
    for s in bsp.STORAGE:
        out = tmp_path / f"{s}.bsp"
        assert main(["export", "--model", "bbcu", "--config", cfg, "--storage", s, "-o", str(out)]) == 0
        assert f"float tensors {s}" in capsys.readouterr().out
        assert bsp.load(out).storage == s
        sizes[s] = out.stat().st_size
    assert sizes["fp16"] < sizes["fp32"]
    with pytest.raises(SystemExit) as exc:
        main(["export", "--model", "bbcu", "--storage", "bf16", "-o", str(tmp_path / "x.bsp")])
    assert exc.value.code == 2 and not (tmp_path / "x.bsp").exists()
    assert "invalid choice: 'bf16'" in capsys.readouterr().err
